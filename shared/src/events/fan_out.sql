-- Each event of `ev` gets a delivery, due now, for every enabled endpoint of its account
-- whose list names its type (an empty list: every type); an event no endpoint wants is not
-- kept. `scheduled` has a row per delivery. Each event asks its account's endpoints once
-- (an index lookup) and carries their ids: matching events against a separate list of
-- subscriptions would pair every event with every subscription, since neither has an
-- index and the worker's sessions join by index only (worker::db::SESSION_OPTIONS).
matched AS (
    SELECT ev.*, m.endpoints
    FROM ev
    CROSS JOIN LATERAL (
        SELECT array_agg(w.id) AS endpoints
        FROM webhook_endpoints w
        WHERE w.account_id = ev.account_id AND w.enabled
          AND (cardinality(w.events) = 0 OR ev.type = ANY (w.events))
    ) m
    WHERE m.endpoints IS NOT NULL
), kept AS (
    INSERT INTO events (id, account_id, type, intake_id, contact_id, body, created_at)
    SELECT id, account_id, type, intake_id, contact_id, body, created_at FROM matched
), scheduled AS (
    INSERT INTO event_deliveries (event_id, endpoint_id, next_attempt_at)
    SELECT m.id, e.endpoint_id, now()
    FROM matched m CROSS JOIN LATERAL unnest(m.endpoints) AS e(endpoint_id)
    RETURNING 1
)
