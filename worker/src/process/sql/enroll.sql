-- A batch's new enrollments (§4.8) and the first step of each active one (§10), due at the
-- enrollment time plus the step's delay; a notification wakes the send loops at commit when
-- one is due within a second. $1: jsonb array of {account_id, contact_id, sequence_id,
-- ended, intake_id}; $2: the enrollment time.
WITH input AS MATERIALIZED (
    -- Each enrollment's id is drawn here, so that its first message is planned from the
    -- same row (joining the inserted rows back to the input would pair every enrollment
    -- with every input row: neither has an index).
    SELECT x.*, nextval(q.seq) AS id
    FROM (SELECT pg_get_serial_sequence('sequence_enrollments', 'id')::regclass AS seq) AS q,
         jsonb_to_recordset($1::jsonb)
        AS x(account_id bigint, contact_id bigint, sequence_id bigint, ended boolean, intake_id uuid)
), enrolled AS (
    INSERT INTO sequence_enrollments (id, account_id, contact_id, sequence_id, status,
                                      enrolled_at, disenrolled_at)
    SELECT id, account_id, contact_id, sequence_id,
           CASE WHEN ended THEN 'disenrolled' ELSE 'active' END,
           $2::timestamptz,
           CASE WHEN ended THEN $2::timestamptz END
    FROM input
), scheduled AS (
    INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, step_id,
                          intake_id, due_at, created_at, updated_at)
    SELECT i.account_id, i.contact_id, 'outbound', 'scheduled', i.id, s.id, i.intake_id,
           $2::timestamptz + make_interval(secs => s.delay_seconds), $2::timestamptz, $2::timestamptz
    FROM input i
    CROSS JOIN LATERAL (
        SELECT st.id, st.delay_seconds FROM sequence_steps st
        WHERE st.sequence_id = i.sequence_id
        ORDER BY st.position
        LIMIT 1
    ) s
    WHERE NOT i.ended
    RETURNING due_at
)
SELECT pg_notify('messages_due', '')
WHERE EXISTS (SELECT 1 FROM scheduled WHERE due_at <= $2::timestamptz + interval '1 second')
