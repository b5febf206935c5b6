-- Writes do-not-contact entries of account $1 and, in the same statement, revokes the
-- standing consent records of the numbers' contacts on the channels the written entries
-- cover: a revocation is recorded (revoked_at, revoked_reason), the evidence is kept.
--
-- $2 numbers (E.164), $3 channels (call|sms|all), $4 reasons ('' = none), $5 expiries
-- (RFC 3339, '' = never): one entry per index, no (number, channel) twice.
-- $6 the source of new entries (operator|import).
-- $7 whether an entry already there takes the given reason and expiry and revokes again
--    (an operator's `dnc add`), or is left as it is (an import: run again, it changes
--    nothing).
WITH input AS (
    SELECT i.phone_number, i.channel, NULLIF(i.reason, '') AS reason,
           NULLIF(i.expires_at, '')::timestamptz AS expires_at
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
        AS i(phone_number, channel, reason, expires_at)
),
written AS (
    INSERT INTO do_not_contact AS d (account_id, phone_number, channel, reason, source, expires_at)
    SELECT $1::bigint, phone_number, channel, reason, $6::text, expires_at FROM input
    ON CONFLICT (account_id, phone_number, channel) DO UPDATE
        SET reason = EXCLUDED.reason, expires_at = EXCLUDED.expires_at
        WHERE $7::boolean
    -- xmax is 0 on a row this statement inserted, non-zero on one it updated.
    RETURNING d.phone_number, d.channel, d.reason, (d.xmax = 0) AS inserted
),
-- A number belongs to at most one contact of the account (contact_phone_numbers' unique
-- (account_id, phone_number)), primary or other; `all` covers call and sms, not email.
revoked AS (
    UPDATE contact_consents c
    SET revoked_at = greatest(now(), c.given_at),
        revoked_reason = left('do-not-contact: ' || coalesce(w.reason, $6::text), 255)
    FROM written w
    JOIN contact_phone_numbers n ON n.account_id = $1 AND n.phone_number = w.phone_number
    WHERE c.account_id = $1
      AND c.contact_id = n.contact_id
      AND c.revoked_at IS NULL
      AND (c.channel = w.channel OR (w.channel = 'all' AND c.channel IN ('call', 'sms')))
    RETURNING c.id
)
SELECT (SELECT count(*) FROM written WHERE inserted) AS added,
       -- The new entries, to be announced (dnc.added): [number, channel, reason or ''].
       (SELECT coalesce(json_agg(json_build_array(phone_number, channel, coalesce(reason, ''))),
                        '[]'::json)
        FROM written WHERE inserted) AS added_entries,
       (SELECT count(*) FROM written WHERE NOT inserted) AS updated,
       (SELECT count(*) FROM revoked) AS revoked
