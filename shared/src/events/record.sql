-- Events written where they happen, one statement per call: $1..$6 are the events' columns
-- as arrays (id, account_id, type, intake_id, contact_id, body), so that no body is parsed
-- on the way in; a missing intake_id is the nil uuid and a missing contact_id 0. The
-- deliveries follow (fan_out.sql); the notification reaches the delivery loops when the
-- caller's transaction commits.
WITH ev AS (
    SELECT x.id, x.account_id, x.type,
           nullif(x.intake_id, '00000000-0000-0000-0000-000000000000'::uuid) AS intake_id,
           nullif(x.contact_id, 0) AS contact_id, x.body, now() AS created_at
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::bigint[], $6::text[])
         AS x(id, account_id, type, intake_id, contact_id, body)
),
