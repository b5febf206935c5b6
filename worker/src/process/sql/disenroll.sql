-- Ends the active enrollments of contacts ($1) at $2 and cancels their steps not yet sent.
WITH ended AS (
    UPDATE sequence_enrollments SET status = 'disenrolled', disenrolled_at = $2::timestamptz
    WHERE contact_id = ANY($1::bigint[]) AND status = 'active'
    RETURNING id
)
UPDATE messages SET status = 'cancelled', due_at = NULL, updated_at = $2::timestamptz
WHERE status = 'scheduled' AND enrollment_id IN (SELECT id FROM ended)
