-- A batch's new tags of contacts, in one statement of fixed text (planned once per
-- connection, whatever the batch's size). Each parameter is one column, an element per
-- tag: $1 accounts, $2 contacts, $3 tags; $4 when. A tag the contact has already (a
-- redelivered lead's) is left as it is.
INSERT INTO contact_tags (account_id, contact_id, tag_id, created_at)
SELECT t.account_id, t.contact_id, t.tag_id, $4::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS t(account_id, contact_id, tag_id)
ON CONFLICT DO NOTHING
