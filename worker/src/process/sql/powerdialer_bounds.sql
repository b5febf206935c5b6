-- The top and bottom positions of each user's queued PowerDialer entries ($1 bigint[]: the
-- users; NULLs for an empty list). Each end is the first entry of the (user_id, position)
-- index in one direction, so a list of any length costs two index descents. (A min/max
-- aggregate may be planned as a read of the user's whole list, and such a plan, made
-- while the list was short, would be kept as it grows.)
SELECT u.id AS user_id,
  (SELECT p.position FROM powerdialer_items p
   WHERE p.user_id = u.id AND p.status = 'queued' ORDER BY p.position ASC LIMIT 1) AS top,
  (SELECT p.position FROM powerdialer_items p
   WHERE p.user_id = u.id AND p.status = 'queued' ORDER BY p.position DESC LIMIT 1) AS bottom
FROM unnest($1::bigint[]) AS u(id)
