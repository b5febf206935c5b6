-- The outbox: $1..$6 are the events' columns as arrays (id, account_id, type, intake_id,
-- contact_id, body), so that no body is parsed on the way in; a missing intake_id is the
-- nil uuid and a missing contact_id 0. Each event gets a delivery, due now, for every
-- enabled endpoint of its account whose list names its type (an empty list: every type);
-- an event no endpoint wants is not kept. The notification reaches the delivery loops when
-- the caller's transaction commits.
WITH ev AS (
    SELECT x.id, x.account_id, x.type,
           nullif(x.intake_id, '00000000-0000-0000-0000-000000000000'::uuid) AS intake_id,
           nullif(x.contact_id, 0) AS contact_id, x.body
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::bigint[], $6::text[])
         AS x(id, account_id, type, intake_id, contact_id, body)
), subs AS (
    SELECT ev.id AS event_id, w.id AS endpoint_id
    FROM ev
    JOIN webhook_endpoints w
      ON w.account_id = ev.account_id AND w.enabled
     AND (cardinality(w.events) = 0 OR ev.type = ANY (w.events))
), kept AS (
    INSERT INTO events (id, account_id, type, intake_id, contact_id, body)
    SELECT ev.id, ev.account_id, ev.type, ev.intake_id, ev.contact_id, ev.body
    FROM ev WHERE ev.id IN (SELECT event_id FROM subs)
), scheduled AS (
    INSERT INTO event_deliveries (event_id, endpoint_id, next_attempt_at)
    SELECT event_id, endpoint_id, now() FROM subs
    RETURNING 1
)
SELECT count(*) AS deliveries,
       CASE WHEN count(*) > 0 THEN pg_notify('events_due', '') END AS notified
FROM scheduled
