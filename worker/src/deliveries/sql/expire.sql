-- Removes the events written before the time of $1 (event ids are UUIDv7, ordered by the
-- time they were written, so $1 is a uuid of the cutoff's time), with their deliveries and
-- every attempt of those (the endpoints' totals no longer count them), at most $2 events a
-- statement (the oldest first); rows another
-- loop is removing are skipped. Returns how many events went.
WITH ev AS (
    SELECT id FROM events WHERE id < $1::uuid ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM event_deliveries WHERE event_id IN (SELECT id FROM ev)
    RETURNING id, endpoint_id, status
), totals AS (
    UPDATE webhook_endpoint_totals t
    SET delivered = t.delivered - g.delivered, failed = t.failed - g.failed
    FROM (SELECT endpoint_id, count(*) FILTER (WHERE status = 'delivered') AS delivered,
                 count(*) FILTER (WHERE status = 'failed') AS failed
          FROM gone GROUP BY endpoint_id) g
    WHERE t.endpoint_id = g.endpoint_id
), attempts AS (
    DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM gone)
), events_gone AS (
    DELETE FROM events WHERE id IN (SELECT id FROM ev) RETURNING 1
)
SELECT count(*) AS removed FROM events_gone
