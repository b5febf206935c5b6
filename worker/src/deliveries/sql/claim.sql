-- Claims deliveries due by $1 for this dispatcher: per enabled endpoint at most its free
-- slots ($2, less what $4/$5 say is in flight to it), oldest due first, $3 in all. Each
-- claimed delivery moves $6 seconds ahead (a lease): if this dispatcher dies, it is due
-- again then. Rows another dispatcher is claiming are skipped.
WITH due AS (
    SELECT d.id
    FROM webhook_endpoints w
    CROSS JOIN LATERAL (
        SELECT id FROM event_deliveries
        WHERE endpoint_id = w.id AND status = 'pending' AND next_attempt_at <= $1::timestamptz
        ORDER BY next_attempt_at
        LIMIT greatest(0, $2::int - coalesce(
            (SELECT b.n FROM unnest($4::bigint[], $5::int[]) AS b(id, n) WHERE b.id = w.id), 0))
        FOR UPDATE SKIP LOCKED
    ) d
    WHERE w.enabled
    LIMIT $3
), claimed AS (
    UPDATE event_deliveries d
    SET next_attempt_at = $1::timestamptz + make_interval(secs => $6::int),
        updated_at = $1::timestamptz
    WHERE d.id = ANY (ARRAY(SELECT id FROM due))
    RETURNING d.id, d.event_id, d.endpoint_id, d.attempts
)
-- The endpoint and the event by their keys, whatever the statistics (a plan made while the
-- tables were small would otherwise read them whole and pair them with the claimed rows).
SELECT c.id, c.event_id, c.endpoint_id, c.attempts, w.url, w.secret, w.previous_secret,
       w.previous_secret_until, e.body, e.created_at AS event_created_at
FROM claimed c
CROSS JOIN LATERAL (
    SELECT url, secret, previous_secret, previous_secret_until FROM webhook_endpoints
    WHERE id = c.endpoint_id OFFSET 0) w
CROSS JOIN LATERAL (SELECT body, created_at FROM events WHERE id = c.event_id OFFSET 0) e
