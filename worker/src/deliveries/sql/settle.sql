-- Records attempts: $1 is a JSON array of {id, endpoint_id, event_id, status, next_attempt_at,
-- status_code, latency_ms, response_body, error, attempted_at, gone}. Each delivery still
-- pending takes its new status and due time (and its endpoint's totals count it when it is
-- finished); every attempt joins the log; an endpoint that
-- answered 410 Gone is disabled and its other pending deliveries wait for it to be enabled.
WITH r AS (
    SELECT *
    FROM jsonb_to_recordset($1::jsonb) AS x(
        id bigint, endpoint_id bigint, event_id uuid, status text, next_attempt_at timestamptz,
        status_code int, latency_ms int, response_body text, error text,
        attempted_at timestamptz, gone boolean)
), batch AS (
    -- The batch as arrays in one row, so that each delivery updated below finds its outcome
    -- by its position: a join of the deliveries with `r` would pair every row of the batch
    -- with every other (the sessions join by index only, and `r` has none).
    SELECT array_agg(id) AS ids, array_agg(status) AS statuses,
           array_agg(next_attempt_at) AS due, array_agg(status_code) AS codes,
           array_agg(error) AS errors, array_agg(attempted_at) AS attempted
    FROM r
), settled AS (
    UPDATE event_deliveries d
    SET status = b.statuses[array_position(b.ids, d.id)],
        attempts = d.attempts + 1,
        next_attempt_at = b.due[array_position(b.ids, d.id)],
        last_status = b.codes[array_position(b.ids, d.id)],
        last_error = b.errors[array_position(b.ids, d.id)],
        delivered_at = CASE WHEN b.statuses[array_position(b.ids, d.id)] = 'delivered'
                            THEN b.attempted[array_position(b.ids, d.id)] END,
        updated_at = now()
    FROM batch b
    -- Pending, said so that the plan cannot be a read of every pending delivery (the
    -- partial index's predicate) however the statistics stand; each row by its key, `= ANY`
    -- of the batch's ids, so that a plan made while the table was small cannot read it
    -- whole either.
    WHERE d.id = ANY (b.ids) AND d.next_attempt_at IS NOT NULL
    RETURNING d.id, d.endpoint_id, d.status
), totals AS (
    -- The endpoints' counts of deliveries finished (webhook_endpoint_totals).
    INSERT INTO webhook_endpoint_totals AS t (endpoint_id, delivered, failed)
    SELECT endpoint_id, count(*) FILTER (WHERE status = 'delivered'),
           count(*) FILTER (WHERE status = 'failed')
    FROM settled WHERE status <> 'pending'
    GROUP BY endpoint_id
    ON CONFLICT (endpoint_id) DO UPDATE
    SET delivered = t.delivered + excluded.delivered, failed = t.failed + excluded.failed
), logged AS (
    INSERT INTO delivery_attempts (delivery_id, endpoint_id, event_id, attempted_at,
                                   status_code, latency_ms, response_body, error)
    SELECT r.id, r.endpoint_id, r.event_id, r.attempted_at, r.status_code, r.latency_ms,
           r.response_body, r.error
    FROM r
), gone AS (
    UPDATE webhook_endpoints w
    SET enabled = false,
        disabled_reason = 'the endpoint answered 410 Gone',
        updated_at = now()
    WHERE w.id = ANY (ARRAY(SELECT endpoint_id FROM r WHERE r.gone)) AND w.enabled
    RETURNING w.id
), parked AS (
    -- By the disabled endpoints' keys (none, nearly always: then nothing is read), never a
    -- read of an endpoint's whole history to join them.
    UPDATE event_deliveries d
    SET next_attempt_at = 'infinity', updated_at = now()
    WHERE d.endpoint_id = ANY (ARRAY(SELECT id FROM gone))
      AND d.status = 'pending' AND d.next_attempt_at IS NOT NULL
      AND d.id <> ALL (ARRAY(SELECT id FROM r))
)
SELECT (SELECT count(*) FROM settled) AS settled, (SELECT count(*) FROM gone) AS disabled
