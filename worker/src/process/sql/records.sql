-- The final records of a batch's planned leads, in one statement of fixed text (planned
-- once per connection, whatever the batch's size). Each parameter is one column, an
-- element per lead: $1 ids, $2 accounts, $3 users, $4 tokens (0: the token is gone),
-- $5 statuses, $6 payloads, $7 contacts, $8 actions and $9 warnings (JSON as text),
-- $10 attempts, $11 received; $12 when they were processed. A record the lead's earlier
-- attempts left (queued or processing) takes the outcome.
INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, contact_id,
                          actions, warnings, attempts, last_error, received_at,
                          processed_at, updated_at)
SELECT r.id, r.account_id, r.user_id, nullif(r.token_id, 0), r.status, r.payload::jsonb,
       r.contact_id, r.actions::jsonb, r.warnings::jsonb, r.attempts, NULL, r.received_at,
       $12::timestamptz, $12::timestamptz
FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
            $7::bigint[], $8::text[], $9::text[], $10::int[], $11::timestamptz[])
     AS r(id, account_id, user_id, token_id, status, payload, contact_id, actions, warnings,
          attempts, received_at)
ON CONFLICT (id) DO UPDATE
SET status = EXCLUDED.status, payload = EXCLUDED.payload, contact_id = EXCLUDED.contact_id,
    actions = EXCLUDED.actions, warnings = EXCLUDED.warnings, attempts = EXCLUDED.attempts,
    last_error = NULL, processed_at = EXCLUDED.processed_at, updated_at = EXCLUDED.updated_at
