-- The outbox's oldest $1 rows (enqueue.sql) become their events and deliveries
-- (fan_out.sql), and the rows go, in one statement: each event is written exactly once, and
-- only after the transaction that enqueued it committed. Rows another loop is expanding are
-- skipped. The events keep the time of the transaction that enqueued them.
WITH batch AS (
    DELETE FROM event_batches
    WHERE id IN (SELECT id FROM event_batches ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING ids, account_ids, types, intake_ids, contact_ids, bodies, created_at
), ev AS (
    SELECT x.id, x.account_id, x.type,
           nullif(x.intake_id, '00000000-0000-0000-0000-000000000000'::uuid) AS intake_id,
           nullif(x.contact_id, 0) AS contact_id, x.body, batch.created_at
    FROM batch
    CROSS JOIN LATERAL unnest(batch.ids, batch.account_ids, batch.types, batch.intake_ids,
                              batch.contact_ids, batch.bodies)
         AS x(id, account_id, type, intake_id, contact_id, body)
),
