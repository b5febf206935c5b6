-- A batch's changed contacts, each written whole from the copy read under its lock, in one
-- statement of fixed text (planned once per connection, whatever the batch's size). The
-- parameters are those of `contacts.sql` (one column each, the same null mask); the id,
-- account, primary number and creation time are not changed, every other column is.
UPDATE contacts AS c
SET name = CASE WHEN r.nulls & 1 = 0 THEN r.name END,
    first_name = CASE WHEN r.nulls & 2 = 0 THEN r.first_name END,
    last_name = CASE WHEN r.nulls & 4 = 0 THEN r.last_name END,
    company_name = CASE WHEN r.nulls & 8 = 0 THEN r.company_name END,
    email = CASE WHEN r.nulls & 16 = 0 THEN r.email END,
    lead_source = CASE WHEN r.nulls & 32 = 0 THEN r.lead_source END,
    source = CASE WHEN r.nulls & 64 = 0 THEN r.source END,
    address = CASE WHEN r.nulls & 128 = 0 THEN r.address END,
    city = CASE WHEN r.nulls & 256 = 0 THEN r.city END,
    state = CASE WHEN r.nulls & 512 = 0 THEN r.state END,
    zipcode = CASE WHEN r.nulls & 1024 = 0 THEN r.zipcode END,
    country = CASE WHEN r.nulls & 2048 = 0 THEN r.country END,
    csf1 = CASE WHEN r.nulls & 4096 = 0 THEN r.csf1 END,
    csf2 = CASE WHEN r.nulls & 8192 = 0 THEN r.csf2 END,
    website = CASE WHEN r.nulls & 16384 = 0 THEN r.website END,
    timezone = CASE WHEN r.nulls & 32768 = 0 THEN r.timezone END,
    date_of_birth = CASE WHEN r.nulls & 65536 = 0 THEN r.date_of_birth END,
    owner_id = nullif(r.owner_id, 0),
    line_id = nullif(r.line_id, 0),
    disposition_status_id = nullif(r.disposition_status_id, 0),
    updated_at = r.updated_at
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
            $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[],
            $19::text[], $20::date[], $21::bigint[], $22::bigint[], $23::bigint[],
            $24::timestamptz[], $25::timestamptz[], $26::int[])
     AS r(id, account_id, phone_number, name, first_name, last_name, company_name, email,
          lead_source, source, address, city, state, zipcode, country, csf1, csf2, website,
          timezone, date_of_birth, owner_id, line_id, disposition_status_id, created_at,
          updated_at, nulls)
WHERE c.id = r.id
