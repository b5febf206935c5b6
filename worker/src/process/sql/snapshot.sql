-- What a transaction reads about its leads, in one round trip, once their locks are held.
-- Every lookup takes a typed array parameter and descends a unique index once per key, so
-- its cost follows the batch, never the table.
--   $1 uuid[]    intake ids              $7  bigint[] ring group ids
--   $2 bigint[]  account ids             $8  bigint[] line ids
--   $3 bigint[]  token ids               $9  bigint[] tag ids
--   $4 bigint[]  account of each number  $10 bigint[] disposition status ids
--   $5 text[]    E.164 numbers           $11 bigint[] sequence ids
--   $6 bigint[]  user ids                $12 int      contact ids to reserve
SELECT json_build_object(
  'intakes', (
    SELECT coalesce(json_agg(json_build_object('id', i.id, 'status', i.status,
             'contact_id', i.contact_id, 'actions', i.actions, 'warnings', i.warnings)), '[]'::json)
    FROM lead_intakes i WHERE i.id = ANY ($1::uuid[])),
  'accounts', (
    SELECT coalesce(json_agg(a.id), '[]'::json) FROM accounts a WHERE a.id = ANY ($2::bigint[])),
  'tokens', (
    SELECT coalesce(json_agg(t.id), '[]'::json) FROM api_tokens t WHERE t.id = ANY ($3::bigint[])),
  -- (account, number) pairs joined to the unique (account_id, phone_number) index.
  'numbers', (
    SELECT coalesce(json_agg(json_build_array(n.account_id, n.phone_number, n.contact_id)), '[]'::json)
    FROM unnest($4::bigint[], $5::text[]) AS k(account_id, phone_number)
    JOIN contact_phone_numbers n
      ON n.account_id = k.account_id AND n.phone_number = k.phone_number),
  'users', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM users WHERE id = ANY ($6::bigint[])),
  'ring_groups', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM ring_groups WHERE id = ANY ($7::bigint[])),
  'lines', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM lines WHERE id = ANY ($8::bigint[])),
  'tags', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM tags WHERE id = ANY ($9::bigint[])),
  'dispositions', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM disposition_statuses WHERE id = ANY ($10::bigint[])),
  'sequences', (
    SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json)
    FROM sequences WHERE id = ANY ($11::bigint[])),
  'members', (
    SELECT coalesce(json_agg(json_build_array(m.ring_group_id, u.id, u.active, u.available)
             ORDER BY m.ring_group_id, u.id), '[]'::json)
    FROM ring_group_members m
    JOIN users u ON u.account_id = m.account_id AND u.id = m.user_id
    WHERE m.ring_group_id = ANY ($7::bigint[])),
  'ids', (
    SELECT coalesce(json_agg(nextval(q.seq)), '[]'::json)
    FROM (SELECT pg_get_serial_sequence('contacts', 'id')::regclass AS seq) AS q,
         generate_series(1, $12::int))
) AS snapshot
