-- Claims up to $2 steps due by $1 (an index range read over the scheduled steps only),
-- locking them for this transaction; other workers skip them. With each step, what sending
-- it needs: the contact, the template, the sending numbers and what the contact policy
-- judges by (§9).
WITH due AS (
    SELECT * FROM messages
    WHERE status = 'scheduled' AND due_at <= $1::timestamptz
    ORDER BY due_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
SELECT m.id, m.account_id, m.contact_id, m.enrollment_id, m.intake_id, m.attempts, m.due_at,
       m.policy IS NOT NULL AS judged_before,
       e.status = 'active' AS enrolled,
       e.sequence_id,
       st.position,
       st.body AS template,
       to_jsonb(c) AS contact,
       coalesce(cl.number, sl.number) AS line_number,
       a.require_consent::text[] AS require_consent,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'given_at', cc.given_at, 'revoked_at', cc.revoked_at)), '[]'::jsonb)
        FROM contact_consents cc
        WHERE cc.contact_id = c.id AND cc.channel = 'sms') AS consents,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'channel', d.channel, 'expires_at', d.expires_at)), '[]'::jsonb)
        FROM do_not_contact d
        WHERE d.account_id = m.account_id AND d.phone_number = c.phone_number) AS dnc,
       (SELECT coalesce(jsonb_agg(s.sent_at), '[]'::jsonb)
        FROM messages s
        WHERE s.account_id = m.account_id AND s.to_number = c.phone_number
          AND s.status = 'sent' AND s.sent_at > $1::timestamptz - interval '24 hours') AS recent_sends
-- Each row is looked up by its key (`LATERAL … OFFSET 0`), whatever the statistics: a plan
-- made while the tables were small would otherwise read them whole and pair their rows with
-- the steps claimed. Every index that can serve a lookup is given its first column (the
-- enrollment by contact and id: by id alone the planner may walk `(contact_id, id)`).
FROM due AS m
CROSS JOIN LATERAL (
    SELECT status, account_id, sequence_id FROM sequence_enrollments
    WHERE contact_id = m.contact_id AND id = m.enrollment_id OFFSET 0) e
CROSS JOIN LATERAL (SELECT require_consent FROM accounts WHERE id = m.account_id OFFSET 0) a
LEFT JOIN LATERAL (
    SELECT position, body FROM sequence_steps WHERE id = m.step_id OFFSET 0) st ON true
LEFT JOIN LATERAL (
    SELECT * FROM contacts WHERE account_id = m.account_id AND id = m.contact_id OFFSET 0) c ON true
LEFT JOIN LATERAL (
    SELECT number FROM lines WHERE account_id = c.account_id AND id = c.line_id OFFSET 0) cl ON true
LEFT JOIN LATERAL (
    SELECT account_id, line_id FROM sequences
    WHERE account_id = e.account_id AND id = e.sequence_id OFFSET 0) sq ON true
LEFT JOIN LATERAL (
    SELECT number FROM lines WHERE account_id = sq.account_id AND id = sq.line_id OFFSET 0) sl ON true
ORDER BY m.due_at
