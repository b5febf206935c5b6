-- A batch's new notes, in one statement of fixed text (planned once per connection,
-- whatever the batch's size). Each parameter is one column, an element per note:
-- $1 accounts, $2 contacts, $3 bodies, $4 the intakes that brought them; $5 when.
INSERT INTO contact_notes (account_id, contact_id, body, intake_id, created_at)
SELECT n.account_id, n.contact_id, n.body, n.intake_id, $5::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::uuid[])
     AS n(account_id, contact_id, body, intake_id)
