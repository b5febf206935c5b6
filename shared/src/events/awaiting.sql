-- The outbox's rows not yet turned into events: how many events they hold and since when
-- the oldest has been waiting (the table holds a row per batch of leads, and only while
-- the delivery loops are behind).
SELECT coalesce(sum(cardinality(ids)), 0)::bigint AS events, min(created_at) AS oldest
FROM event_batches
