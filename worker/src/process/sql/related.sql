-- What a transaction must know of the contacts it locked beyond their rows: tags, active
-- enrollments, queued PowerDialer entries. $1 bigint[]: the contact ids. Each lookup is an
-- index range per contact.
SELECT json_build_object(
  'tags', (
    SELECT coalesce(json_agg(json_build_array(contact_id, tag_id)), '[]'::json)
    FROM contact_tags WHERE contact_id = ANY ($1::bigint[])),
  'active', (
    SELECT coalesce(json_agg(json_build_array(contact_id, sequence_id) ORDER BY id), '[]'::json)
    FROM sequence_enrollments WHERE status = 'active' AND contact_id = ANY ($1::bigint[])),
  'queued', (
    SELECT coalesce(json_agg(contact_id), '[]'::json)
    FROM powerdialer_items WHERE status = 'queued' AND contact_id = ANY ($1::bigint[]))
) AS related
