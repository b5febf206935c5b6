-- Records what became of claimed steps, in one statement. $1: jsonb array of
-- {id, status, due_at, attempts, from_number, to_number, body, provider_sid, error_code,
-- error_message, policy, sent_at}; $2: now.
UPDATE messages m SET
    status = x.status,
    due_at = x.due_at,
    attempts = x.attempts,
    from_number = coalesce(x.from_number, m.from_number),
    to_number = coalesce(x.to_number, m.to_number),
    body = coalesce(x.body, m.body),
    provider_sid = coalesce(x.provider_sid, m.provider_sid),
    error_code = x.error_code,
    error_message = x.error_message,
    policy = coalesce(x.policy, m.policy),
    sent_at = x.sent_at,
    updated_at = $2::timestamptz
FROM jsonb_to_recordset($1::jsonb) AS x(
    id bigint, status text, due_at timestamptz, attempts int, from_number text,
    to_number text, body text, provider_sid text, error_code text, error_message text,
    policy jsonb, sent_at timestamptz)
-- The rows by their keys whatever the statistics (a plan made while the table was small
-- would otherwise read it whole); the pairing with x is of the batch with itself.
WHERE m.id = x.id
  AND m.id = ANY (ARRAY(SELECT (e ->> 'id')::bigint FROM jsonb_array_elements($1::jsonb) AS e))
