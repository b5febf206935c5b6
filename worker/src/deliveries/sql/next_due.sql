-- The earliest due time of any enabled endpoint's pending delivery: the first entry of each
-- endpoint's range of the due index.
SELECT min(n.next_attempt_at) AS due
FROM webhook_endpoints w
CROSS JOIN LATERAL (
    SELECT next_attempt_at FROM event_deliveries
    WHERE endpoint_id = w.id AND status = 'pending'
    ORDER BY next_attempt_at
    LIMIT 1
) n
WHERE w.enabled
