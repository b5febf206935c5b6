-- What the read API shows of contacts beyond their rows (§5), one row per contact, each
-- column JSON in the shape of its view, sent as text (the reader parses it straight into
-- the view, with no JSON value between). $1 bigint[], $2 bigint[], $3 text[]: the
-- contacts' ids, accounts and primary numbers. Every lookup goes through an index on the
-- contact (do-not-contact: on the account and number); the queued PowerDialer entry is
-- found as `status || ''` so that no partial index on the status can serve (see
-- snapshot/related.sql). One statement of fixed text for any number of contacts: planned
-- once per connection, one round trip.
SELECT c.id,
  (SELECT coalesce(json_agg(json_build_object('label', p.label, 'phone_number', p.phone_number)
                            ORDER BY p.id), '[]'::json)
   FROM contact_phone_numbers p
   WHERE p.contact_id = c.id AND NOT p.is_primary)::text AS other_phone_numbers,
  (SELECT coalesce(json_agg(t.tag_id ORDER BY t.tag_id), '[]'::json)
   FROM contact_tags t WHERE t.contact_id = c.id)::text AS tag_ids,
  (SELECT coalesce(json_agg(json_build_object('body', n.body, 'created_at', n.created_at)
                            ORDER BY n.created_at, n.id), '[]'::json)
   FROM contact_notes n WHERE n.contact_id = c.id)::text AS notes,
  (SELECT coalesce(json_agg(json_build_object('sequence_id', e.sequence_id, 'status', e.status)
                            ORDER BY e.id), '[]'::json)
   FROM sequence_enrollments e WHERE e.contact_id = c.id)::text AS sequence_enrollments,
  (SELECT json_build_object('user_id', d.user_id, 'position', d.position,
                            'not_before', d.not_before)
   FROM powerdialer_items d
   WHERE d.contact_id = c.id AND (d.status::text || '') = 'queued'
   LIMIT 1)::text AS powerdialer,
  (SELECT coalesce(json_agg(json_build_object(
              'channel', k.channel, 'given_at', k.given_at, 'text', k.text,
              'source_url', k.source_url, 'trustedform_cert_url', k.trustedform_cert_url,
              'leadid_token', k.leadid_token, 'revoked_at', k.revoked_at)
            ORDER BY k.id), '[]'::json)
   FROM contact_consents k WHERE k.contact_id = c.id)::text AS consent,
  (SELECT coalesce(json_agg(x.channel ORDER BY x.channel), '[]'::json)
   FROM do_not_contact x
   WHERE x.account_id = c.account_id AND x.phone_number = c.phone_number
     AND (x.expires_at IS NULL OR x.expires_at > now()))::text AS do_not_contact
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS c(id, account_id, phone_number)
