-- What a transaction must know of the contacts it locked beyond their rows: tags, active
-- enrollments, queued PowerDialer entries. $1 bigint[], $2 bigint[]: each contact's account
-- and id. Each lookup matches an index exactly: contact_tags_pkey (contact_id, …),
-- sequence_enrollments_one_active_idx (contact_id) WHERE active, and
-- powerdialer_items_one_queued_idx (account_id, contact_id) WHERE queued, and
-- contact_consents_contact_idx (contact_id, channel).
SELECT json_build_object(
  'tags', (
    SELECT coalesce(json_agg(json_build_array(contact_id, tag_id)), '[]'::json)
    FROM contact_tags WHERE contact_id = ANY ($2::bigint[])),
  'active', (
    SELECT coalesce(json_agg(json_build_array(contact_id, sequence_id) ORDER BY id), '[]'::json)
    FROM sequence_enrollments WHERE status = 'active' AND contact_id = ANY ($2::bigint[])),
  'consents', (
    SELECT coalesce(json_agg(json_build_array(contact_id, channel, given_at, revoked_at) ORDER BY id), '[]'::json)
    FROM contact_consents WHERE contact_id = ANY ($2::bigint[]) AND channel IN ('call', 'sms')),
  'queued', (
    SELECT coalesce(json_agg(p.contact_id), '[]'::json)
    FROM unnest($1::bigint[], $2::bigint[]) AS k(account_id, contact_id)
    JOIN powerdialer_items p
      ON p.account_id = k.account_id AND p.contact_id = k.contact_id AND p.status = 'queued')
) AS related
