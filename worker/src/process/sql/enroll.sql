-- A batch's new enrollments (§4.8) and the first step of each active one (§10), due at the
-- enrollment time plus the step's delay; a notification wakes the send loops at commit when
-- one is due within a second. $1: jsonb array of {account_id, contact_id, sequence_id,
-- ended, intake_id}; $2: the enrollment time.
WITH input AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS x(account_id bigint, contact_id bigint, sequence_id bigint, ended boolean, intake_id uuid)
), enrolled AS (
    INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id, status, enrolled_at, disenrolled_at)
    SELECT account_id, contact_id, sequence_id,
           CASE WHEN ended THEN 'disenrolled' ELSE 'active' END,
           $2::timestamptz,
           CASE WHEN ended THEN $2::timestamptz END
    FROM input
    RETURNING id, account_id, contact_id, sequence_id, status
), scheduled AS (
    INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, step_id,
                          intake_id, due_at, created_at, updated_at)
    SELECT e.account_id, e.contact_id, 'outbound', 'scheduled', e.id, s.id, i.intake_id,
           $2::timestamptz + make_interval(secs => s.delay_seconds), $2::timestamptz, $2::timestamptz
    FROM enrolled e
    JOIN input i ON i.contact_id = e.contact_id AND NOT i.ended
    CROSS JOIN LATERAL (
        SELECT st.id, st.delay_seconds FROM sequence_steps st
        WHERE st.sequence_id = e.sequence_id
        ORDER BY st.position
        LIMIT 1
    ) s
    WHERE e.status = 'active'
    RETURNING due_at
)
SELECT pg_notify('messages_due', '')
WHERE EXISTS (SELECT 1 FROM scheduled WHERE due_at <= $2::timestamptz + interval '1 second')
