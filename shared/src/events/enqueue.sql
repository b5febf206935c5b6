-- The lead path's outbox: a transaction's events as one row, $1..$6 being their columns as
-- arrays (see record.sql); the delivery loops, woken when the transaction commits, turn it
-- into events and deliveries (expand.sql).
WITH batch AS (
    INSERT INTO event_batches (ids, account_ids, types, intake_ids, contact_ids, bodies)
    VALUES ($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::bigint[], $6::text[])
    RETURNING 1
)
SELECT pg_notify('events_due', '') FROM batch
