-- Tries the transaction-scoped advisory lock of every key in $1 (text[]); says which it got.
SELECT k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) AS locked
FROM unnest($1::text[]) AS k
