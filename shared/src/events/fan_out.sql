-- Each event of `ev` gets a delivery, due now, for every enabled endpoint of its account
-- whose list names its type (an empty list: every type); an event no endpoint wants is not
-- kept. `scheduled` has a row per delivery. Each event asks its account's endpoints (an
-- index lookup per event): matching `ev` against `subs` instead would pair every event with
-- every subscription, since neither has an index and the worker's sessions join by index
-- only (worker::db::SESSION_OPTIONS).
subs AS (
    SELECT ev.id AS event_id, w.id AS endpoint_id
    FROM ev
    JOIN webhook_endpoints w
      ON w.account_id = ev.account_id AND w.enabled
     AND (cardinality(w.events) = 0 OR ev.type = ANY (w.events))
), kept AS (
    INSERT INTO events (id, account_id, type, intake_id, contact_id, body, created_at)
    SELECT ev.id, ev.account_id, ev.type, ev.intake_id, ev.contact_id, ev.body, ev.created_at
    FROM ev
    WHERE EXISTS (
        SELECT 1 FROM webhook_endpoints w
        WHERE w.account_id = ev.account_id AND w.enabled
          AND (cardinality(w.events) = 0 OR ev.type = ANY (w.events)))
), scheduled AS (
    INSERT INTO event_deliveries (event_id, endpoint_id, next_attempt_at)
    SELECT event_id, endpoint_id, now() FROM subs
    RETURNING 1
)
