-- Takes the transaction-scoped advisory locks of the keys in $1 (text[]), in the order of
-- their hashes. OFFSET 0 keeps the sorted subquery from being flattened, so the locks are
-- taken in that order.
SELECT count(pg_advisory_xact_lock(k))
FROM (SELECT DISTINCT hashtextextended(t, 0) AS k FROM unnest($1::text[]) AS t ORDER BY 1 OFFSET 0) AS s
