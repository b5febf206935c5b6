-- What a transaction must know of the contacts it locked beyond their rows: tags, active
-- enrollments, queued PowerDialer entries. $1 bigint[], $2 bigint[]: each contact's account
-- and id. Each lookup goes through an index on the contact: contact_tags_pkey
-- (contact_id, …), sequence_enrollments_contact_idx (contact_id, id),
-- powerdialer_items_contact_idx (contact_id) and contact_consents_contact_idx (contact_id,
-- channel); a contact id belongs to one account, so the account only confirms it. The
-- statuses are compared as `status || ''` so that no partial index on the status can serve:
-- with `status = 'active'`/`'queued'`, a planner whose statistics still said the tables were
-- small (an account growing from empty) walked a partial index of every active enrollment or
-- queued entry of the database instead (sequence_enrollments_sequence_idx,
-- powerdialer_items_user_position_idx), once per batch.
SELECT json_build_object(
  'tags', (
    SELECT coalesce(json_agg(json_build_array(contact_id, tag_id)), '[]'::json)
    FROM contact_tags WHERE contact_id = ANY ($2::bigint[])),
  'active', (
    SELECT coalesce(json_agg(json_build_array(contact_id, sequence_id) ORDER BY id), '[]'::json)
    FROM sequence_enrollments
    WHERE contact_id = ANY ($2::bigint[]) AND (status::text || '') = 'active'),
  'consents', (
    SELECT coalesce(json_agg(json_build_array(contact_id, channel, given_at, revoked_at) ORDER BY id), '[]'::json)
    FROM contact_consents WHERE contact_id = ANY ($2::bigint[]) AND channel IN ('call', 'sms')),
  'queued', (
    SELECT coalesce(json_agg(contact_id), '[]'::json)
    FROM powerdialer_items
    WHERE contact_id = ANY ($2::bigint[]) AND account_id = ANY ($1::bigint[])
      AND (status::text || '') = 'queued')
) AS related
