-- A batch's new phone numbers, in one statement of fixed text (planned once per
-- connection, whatever the batch's size). Each parameter is one column, an element per
-- number: $1 accounts, $2 contacts, $3 numbers (E.164), $4 labels and $5 whether each has
-- one (an array parameter carries no nulls), $6 whether primary; $7 when they were added.
INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, label, is_primary,
                                   created_at)
SELECT n.account_id, n.contact_id, n.phone_number,
       CASE WHEN n.labelled THEN n.label END, n.is_primary, $7::timestamptz
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::boolean[],
            $6::boolean[])
     AS n(account_id, contact_id, phone_number, label, labelled, is_primary)
