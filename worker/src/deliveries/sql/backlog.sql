-- Per enabled endpoint: how many deliveries are pending and since
-- when the oldest has been waiting (a range read of the endpoint's pending deliveries).
SELECT w.id AS endpoint_id, b.pending, b.oldest
FROM webhook_endpoints w
CROSS JOIN LATERAL (
    SELECT count(*) AS pending, min(created_at) AS oldest
    FROM event_deliveries
    WHERE endpoint_id = w.id AND status = 'pending'
) b
WHERE w.enabled
