-- A batch's new contacts, whole rows, in one statement of fixed text (planned once per
-- connection, whatever the batch's size). Each parameter is one column, an element per
-- contact, in the table's order: $1 ids, $2 accounts, $3 primary numbers, $4..$19 the
-- nullable text columns (name .. website, timezone), $20 dates of birth, $21 owners,
-- $22 lines, $23 dispositions (0: none), $24 created, $25 updated. The driver cannot bind a
-- null inside an array: bit i of $26 says the i-th nullable text column ($4 + i) is null,
-- bit 16 the date of birth. A plain insert: the ids were drawn from the sequence by this
-- transaction, so none can exist (an upsert's speculative insertion would cost more per row,
-- and would overwrite a row that had one). The batch's changed contacts are
-- `contact_updates.sql`, with the same parameters.
INSERT INTO contacts (id, account_id, phone_number, name, first_name, last_name,
                      company_name, email, lead_source, source, address, city, state,
                      zipcode, country, csf1, csf2, website, timezone, date_of_birth,
                      owner_id, line_id, disposition_status_id, created_at, updated_at)
SELECT r.id, r.account_id, r.phone_number,
       CASE WHEN r.nulls & 1 = 0 THEN r.name END,
       CASE WHEN r.nulls & 2 = 0 THEN r.first_name END,
       CASE WHEN r.nulls & 4 = 0 THEN r.last_name END,
       CASE WHEN r.nulls & 8 = 0 THEN r.company_name END,
       CASE WHEN r.nulls & 16 = 0 THEN r.email END,
       CASE WHEN r.nulls & 32 = 0 THEN r.lead_source END,
       CASE WHEN r.nulls & 64 = 0 THEN r.source END,
       CASE WHEN r.nulls & 128 = 0 THEN r.address END,
       CASE WHEN r.nulls & 256 = 0 THEN r.city END,
       CASE WHEN r.nulls & 512 = 0 THEN r.state END,
       CASE WHEN r.nulls & 1024 = 0 THEN r.zipcode END,
       CASE WHEN r.nulls & 2048 = 0 THEN r.country END,
       CASE WHEN r.nulls & 4096 = 0 THEN r.csf1 END,
       CASE WHEN r.nulls & 8192 = 0 THEN r.csf2 END,
       CASE WHEN r.nulls & 16384 = 0 THEN r.website END,
       CASE WHEN r.nulls & 32768 = 0 THEN r.timezone END,
       CASE WHEN r.nulls & 65536 = 0 THEN r.date_of_birth END,
       nullif(r.owner_id, 0), nullif(r.line_id, 0), nullif(r.disposition_status_id, 0),
       r.created_at, r.updated_at
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
            $19::text[], $20::date[], $21::bigint[], $22::bigint[], $23::bigint[],
            $24::timestamptz[], $25::timestamptz[], $26::int[])
     AS r(id, account_id, phone_number, name, first_name, last_name, company_name, email,
          lead_source, source, address, city, state, zipcode, country, csf1, csf2, website,
          timezone, date_of_birth, owner_id, line_id, disposition_status_id, created_at,
          updated_at, nulls)
