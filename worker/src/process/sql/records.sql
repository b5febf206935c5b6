-- The final records of a batch's planned leads, in one statement of fixed text (planned
-- once per connection, whatever the batch's size). Each parameter is one column, an
-- element per lead: $1 ids, $2 accounts, $3 users, $4 tokens (0: the token is gone),
-- $5 statuses, $6 payloads, $7 contacts, $8 actions and $9 warnings (JSON as text),
-- $10 attempts, $11 received, $13 whether the lead's earlier attempts left a record
-- (queued or processing; the batch's snapshot read it under the lead's lock); $12 when
-- they were processed. A record that exists takes the outcome; the others are inserted
-- plainly (an upsert's speculative insertion costs about a fifth more per row). A record
-- written meanwhile outside the lock protocol fails the batch with a unique violation,
-- which is retried after a new read.
WITH r AS (
    SELECT *
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                $6::text[], $7::bigint[], $8::text[], $9::text[], $10::int[],
                $11::timestamptz[], $13::boolean[])
         AS r(id, account_id, user_id, token_id, status, payload, contact_id, actions,
              warnings, attempts, received_at, existing)
), updated AS (
    UPDATE lead_intakes i
    SET status = r.status, payload = r.payload::jsonb, contact_id = r.contact_id,
        actions = r.actions::jsonb, warnings = r.warnings::jsonb, attempts = r.attempts,
        last_error = NULL, processed_at = $12::timestamptz, updated_at = $12::timestamptz
    FROM r
    WHERE r.existing AND i.id = r.id
)
INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, contact_id,
                          actions, warnings, attempts, last_error, received_at,
                          processed_at, updated_at)
SELECT r.id, r.account_id, r.user_id, nullif(r.token_id, 0), r.status, r.payload::jsonb,
       r.contact_id, r.actions::jsonb, r.warnings::jsonb, r.attempts, NULL, r.received_at,
       $12::timestamptz, $12::timestamptz
FROM r
WHERE NOT r.existing
