-- Schedules the step after each sent one, due its delay after the send; a step already
-- scheduled for the enrollment is left as it is. $1: jsonb array of {enrollment_id,
-- account_id, contact_id, sequence_id, position, intake_id}; $2: now.
INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, step_id,
                      intake_id, due_at, created_at, updated_at)
SELECT x.account_id, x.contact_id, 'outbound', 'scheduled', x.enrollment_id, s.id, x.intake_id,
       $2::timestamptz + make_interval(secs => s.delay_seconds), $2::timestamptz, $2::timestamptz
FROM jsonb_to_recordset($1::jsonb) AS x(
    enrollment_id bigint, account_id bigint, contact_id bigint, sequence_id bigint,
    position int, intake_id uuid)
CROSS JOIN LATERAL (
    SELECT st.id, st.delay_seconds FROM sequence_steps st
    WHERE st.sequence_id = x.sequence_id AND st.position > x.position
    ORDER BY st.position
    LIMIT 1
) s
ON CONFLICT DO NOTHING
