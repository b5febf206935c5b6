-- The top and bottom positions of each user's queued PowerDialer entries ($1 bigint[]: the
-- users). min/max per user read the two ends of the (user_id, position) index, not the
-- whole list, however long it grows. Users with an empty list are left out.
SELECT u.id AS user_id, b.top, b.bottom
FROM unnest($1::bigint[]) AS u(id)
CROSS JOIN LATERAL (
  SELECT min(p.position) AS top, max(p.position) AS bottom
  FROM powerdialer_items p
  WHERE p.user_id = u.id AND p.status = 'queued'
) AS b
WHERE b.top IS NOT NULL
