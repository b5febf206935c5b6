-- Records intakes whose processing failed and will be retried: `processing`, with the
-- attempts so far and the last error, so the read API tells the truth during trouble.
-- A final record (contact outcome or dead letter) is never downgraded; an unknown account
-- leaves no record.
--   $1 jsonb  [{id, account_id, user_id, token_id, payload, attempts, last_error, received_at}]
INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload,
                          attempts, last_error, received_at, updated_at)
SELECT r.id, r.account_id, r.user_id, t.id, 'processing', r.payload,
       r.attempts, r.last_error, r.received_at, now()
FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, account_id bigint, user_id bigint,
                                        token_id bigint, payload jsonb, attempts int,
                                        last_error text, received_at timestamptz)
JOIN accounts a ON a.id = r.account_id
LEFT JOIN api_tokens t ON t.id = r.token_id
ON CONFLICT (id) DO UPDATE SET status = 'processing',
  attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, updated_at = now()
WHERE lead_intakes.status IN ('queued', 'processing')
