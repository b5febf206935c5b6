-- What a transaction reads about its leads, in one round trip, once their locks are held
-- (and what the validate endpoint reads about one lead, without locks). Every lookup takes
-- typed array parameters and descends an index once per key, so its cost follows the
-- batch, never the table. Linked ids are looked up as (account, id) pairs: another
-- account's id is simply not found.
--   $1 uuid[]    intake ids              $6, $7   users (account, id)
--   $2 bigint[]  account ids             $8, $9   ring groups
--   $3 bigint[]  token ids               $10, $11 lines
--   $4 bigint[]  account of each number  $12, $13 tags
--   $5 text[]    E.164 numbers           $14, $15 disposition statuses
--                                        $16, $17 sequences
--   $18 int      contact ids to reserve (0 for a read that creates nothing: no nextval)
SELECT json_build_object(
  'intakes', (
    SELECT coalesce(json_agg(json_build_object('id', i.id, 'status', i.status,
             'contact_id', i.contact_id, 'actions', i.actions, 'warnings', i.warnings)), '[]'::json)
    FROM lead_intakes i WHERE i.id = ANY ($1::uuid[])),
  -- Each account with its consent settings and the event types its enabled endpoints
  -- want (`*`: every type), so a lead's events are built only when someone wants them.
  'accounts', (
    SELECT coalesce(json_agg(json_build_array(a.id, a.require_consent,
             (SELECT coalesce(json_agg(DISTINCT t), '[]'::json)
              FROM webhook_endpoints w,
                   unnest(CASE WHEN cardinality(w.events) = 0 THEN ARRAY['*'] ELSE w.events END) AS t
              WHERE w.account_id = a.id AND w.enabled))), '[]'::json)
    FROM accounts a WHERE a.id = ANY ($2::bigint[])),
  'tokens', (
    SELECT coalesce(json_agg(t.id), '[]'::json) FROM api_tokens t WHERE t.id = ANY ($3::bigint[])),
  -- Each lookup of a key takes the row through a correlated subquery (`LATERAL`, kept apart by
  -- `OFFSET 0`), so the key's values are the index condition whatever the statistics say. As
  -- plain joins, a generic plan made while a table was empty or small (a new account's
  -- do-not-contact list) read the whole index once and compared every entry with every key:
  -- 3.4 s per batch of 128 numbers once that list held 300,000 entries, until the next ANALYZE.
  -- (account, number) pairs on the unique (account_id, phone_number) index.
  'numbers', (
    SELECT coalesce(json_agg(json_build_array(n.account_id, n.phone_number, n.contact_id)), '[]'::json)
    FROM unnest($4::bigint[], $5::text[]) AS k(account_id, phone_number)
    CROSS JOIN LATERAL (
      SELECT n.account_id, n.phone_number, n.contact_id FROM contact_phone_numbers n
      WHERE n.account_id = k.account_id AND n.phone_number = k.phone_number OFFSET 0) AS n),
  -- The do-not-contact entries of the same pairs, on the unique (account_id, phone_number,
  -- channel) index's prefix.
  'dnc', (
    SELECT coalesce(json_agg(json_build_array(d.account_id, d.phone_number, d.channel, d.expires_at)), '[]'::json)
    FROM unnest($4::bigint[], $5::text[]) AS k(account_id, phone_number)
    CROSS JOIN LATERAL (
      SELECT d.account_id, d.phone_number, d.channel, d.expires_at FROM do_not_contact d
      WHERE d.account_id = k.account_id AND d.phone_number = k.phone_number OFFSET 0) AS d),
  -- Linked ids by (account, id): every index that can serve leads with the id or the account,
  -- so a lookup reads one row, or at worst the account's own catalog.
  'users', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($6::bigint[], $7::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM users t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  'ring_groups', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($8::bigint[], $9::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM ring_groups t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  'lines', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($10::bigint[], $11::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM lines t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  'tags', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($12::bigint[], $13::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM tags t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  'dispositions', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($14::bigint[], $15::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM disposition_statuses t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  'sequences', (
    SELECT coalesce(json_agg(json_build_array(t.account_id, t.id)), '[]'::json)
    FROM unnest($16::bigint[], $17::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT t.account_id, t.id FROM sequences t
                        WHERE t.account_id = k.account_id AND t.id = k.id OFFSET 0) AS t),
  -- Each ring group's members on (ring_group_id, …), each member's user by (account, id).
  'members', (
    SELECT coalesce(json_agg(json_build_array(m.ring_group_id, u.id, u.active, u.available)
             ORDER BY m.ring_group_id, u.id), '[]'::json)
    FROM unnest($8::bigint[], $9::bigint[]) AS k(account_id, id)
    CROSS JOIN LATERAL (SELECT m.ring_group_id, m.account_id, m.user_id FROM ring_group_members m
                        WHERE m.ring_group_id = k.id AND m.account_id = k.account_id OFFSET 0) AS m
    CROSS JOIN LATERAL (SELECT u.id, u.active, u.available FROM users u
                        WHERE u.account_id = m.account_id AND u.id = m.user_id OFFSET 0) AS u),
  'ids', (
    SELECT coalesce(json_agg(nextval(q.seq)), '[]'::json)
    FROM (SELECT pg_get_serial_sequence('contacts', 'id')::regclass AS seq) AS q,
         generate_series(1, $18::int))
) AS snapshot
