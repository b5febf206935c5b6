-- Removes the events written before the time of $1 (event ids are UUIDv7, ordered by the
-- time they were written, so $1 is a uuid of the cutoff's time), with their deliveries and
-- every attempt of those (the endpoints' totals no longer count them), at most $2 events a
-- statement (the oldest first); rows another loop is removing are skipped. Returns how
-- many events went.
--
-- Each table is reached by key (`= ANY` of the ids found before it), never by a join with
-- the rows found: a plan made while the tables were small would otherwise read their
-- indexes whole and compare every entry with every id, once per call.
WITH ev AS (
    SELECT id FROM events WHERE id < $1::uuid ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM event_deliveries WHERE event_id = ANY (ARRAY(SELECT id FROM ev))
    RETURNING id, endpoint_id, status
), counts AS (
    -- A row per endpoint: the pairing below is of endpoints with endpoints, a catalog's size.
    SELECT endpoint_id, count(*) FILTER (WHERE status = 'delivered') AS delivered,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM gone GROUP BY endpoint_id
), totals AS (
    UPDATE webhook_endpoint_totals t
    SET delivered = t.delivered - (SELECT c.delivered FROM counts c WHERE c.endpoint_id = t.endpoint_id),
        failed = t.failed - (SELECT c.failed FROM counts c WHERE c.endpoint_id = t.endpoint_id)
    WHERE t.endpoint_id = ANY (ARRAY(SELECT endpoint_id FROM counts))
), attempts AS (
    DELETE FROM delivery_attempts WHERE delivery_id = ANY (ARRAY(SELECT id FROM gone))
), events_gone AS (
    DELETE FROM events WHERE id = ANY (ARRAY(SELECT id FROM ev)) RETURNING 1
)
SELECT count(*) AS removed FROM events_gone
