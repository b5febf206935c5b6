-- Claims up to $2 steps due by $1 (an index range read over the scheduled steps only),
-- locking them for this transaction; other workers skip them. With each step, what sending
-- it needs: the contact, the template, the sending numbers and what the contact policy
-- judges by (§9).
WITH due AS (
    SELECT id FROM messages
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
FROM due
JOIN messages m ON m.id = due.id
JOIN sequence_enrollments e ON e.id = m.enrollment_id
JOIN accounts a ON a.id = m.account_id
LEFT JOIN sequence_steps st ON st.id = m.step_id
LEFT JOIN contacts c ON c.account_id = m.account_id AND c.id = m.contact_id
LEFT JOIN lines cl ON cl.account_id = c.account_id AND cl.id = c.line_id
LEFT JOIN sequences sq ON sq.account_id = e.account_id AND sq.id = e.sequence_id
LEFT JOIN lines sl ON sl.account_id = sq.account_id AND sl.id = sq.line_id
ORDER BY m.due_at
