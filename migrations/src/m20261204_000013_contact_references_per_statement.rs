//! The references every lead writes, checked once per statement instead of once per row: a
//! contact's account, and the contact of a phone number, a consent record and an intake
//! record.
//!
//! A foreign key checks each inserted row with a query of its own that locks the referenced
//! row (`FOR KEY SHARE`); a new lead paid four such checks, one of them on its account's row,
//! which every concurrent transaction of the account shares through a multixact. Measured
//! with `pgbench` (4 clients, batches of 60 contacts, their numbers and intake records): the
//! three checks of that batch cost about a tenth of its time and the statement-level checks
//! below recover most of it (docs/performance.md, "PostgreSQL's time in the worker drain").
//!
//! Each check is one query per statement over the statement's rows (its transition table):
//! a lookup per row, by key (`OFFSET 0` keeps each lookup a correlated subquery, so no plan
//! made while a table was small can turn it into a read of the whole table; sequential
//! scans are off inside the functions for the same reason). An update is checked only where
//! it changed a reference, so the clearing that follows a removal (a contact's owner, an
//! intake record's contact) never trips over the row being removed. A violation raises
//! SQLSTATE 23503 naming the first missing row, like a foreign key.
//!
//! What the keys' `ON DELETE` did, triggers on the referenced tables do: removing an account
//! removes its contacts; removing a contact removes its numbers and consent records and
//! clears it from its intake records. What the keys did and these do not: lock the
//! referenced row while the writing transaction is open. The worker writes a lead's numbers,
//! consents and intake record in the transaction that wrote (and so locked) its contact;
//! removing a contact or an account with leads in flight is not an operation the product
//! offers.
//!
//! The intake record's check of migration 12 (account and token) takes the contact in and
//! follows the same rules.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_account_id_fkey;
ALTER TABLE contact_phone_numbers DROP CONSTRAINT IF EXISTS contact_phone_numbers_contact_fkey;
ALTER TABLE contact_consents DROP CONSTRAINT IF EXISTS contact_consents_contact_fkey;
ALTER TABLE lead_intakes DROP CONSTRAINT IF EXISTS lead_intakes_contact_fkey;

CREATE FUNCTION contacts_check_account() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_nestloop = off AS $$
DECLARE
    missing bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT w.account_id INTO missing
        FROM written w
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.account_id OFFSET 0)
        LIMIT 1;
    ELSE
        SELECT w.account_id INTO missing
        FROM written w JOIN before b ON b.id = w.id
        WHERE w.account_id <> b.account_id
          AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.account_id OFFSET 0)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'a contact refers to account % which does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_account_inserted
    AFTER INSERT ON contacts REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_check_account();
CREATE TRIGGER contacts_account_updated
    AFTER UPDATE ON contacts REFERENCING OLD TABLE AS before NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_check_account();

-- For the tables whose rows belong to a contact of their account: `account_id`, `contact_id`.
CREATE FUNCTION contact_rows_check_contact() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_nestloop = off AS $$
DECLARE
    missing bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT w.contact_id INTO missing
        FROM written w
        WHERE NOT EXISTS (SELECT 1 FROM contacts c
                          WHERE c.account_id = w.account_id AND c.id = w.contact_id OFFSET 0)
        LIMIT 1;
    ELSE
        SELECT w.contact_id INTO missing
        FROM written w JOIN before b ON b.id = w.id
        WHERE (w.account_id, w.contact_id) IS DISTINCT FROM (b.account_id, b.contact_id)
          AND NOT EXISTS (SELECT 1 FROM contacts c
                          WHERE c.account_id = w.account_id AND c.id = w.contact_id OFFSET 0)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'a row of % refers to contact % which its account does not have',
            TG_TABLE_NAME, missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER contact_phone_numbers_contact_inserted
    AFTER INSERT ON contact_phone_numbers REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contact_rows_check_contact();
CREATE TRIGGER contact_phone_numbers_contact_updated
    AFTER UPDATE ON contact_phone_numbers REFERENCING OLD TABLE AS before NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contact_rows_check_contact();
CREATE TRIGGER contact_consents_contact_inserted
    AFTER INSERT ON contact_consents REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contact_rows_check_contact();
CREATE TRIGGER contact_consents_contact_updated
    AFTER UPDATE ON contact_consents REFERENCING OLD TABLE AS before NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION contact_rows_check_contact();

-- An intake record's account, token and contact; an update checks the ones it changed.
CREATE OR REPLACE FUNCTION lead_intakes_check_references() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_nestloop = off AS $$
DECLARE
    missing text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT x.missing INTO missing
        FROM (
            SELECT CASE
                WHEN NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.account_id OFFSET 0)
                    THEN 'account ' || w.account_id
                WHEN w.token_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = w.token_id OFFSET 0)
                    THEN 'api token ' || w.token_id
                WHEN w.contact_id IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM contacts c
                                 WHERE c.account_id = w.account_id AND c.id = w.contact_id
                                 OFFSET 0)
                    THEN 'contact ' || w.contact_id || ' of account ' || w.account_id
            END AS missing
            FROM written w
        ) x
        WHERE x.missing IS NOT NULL
        LIMIT 1;
    ELSE
        SELECT x.missing INTO missing
        FROM (
            SELECT CASE
                WHEN w.account_id <> b.account_id
                 AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.account_id OFFSET 0)
                    THEN 'account ' || w.account_id
                WHEN w.token_id IS NOT NULL AND w.token_id IS DISTINCT FROM b.token_id
                 AND NOT EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = w.token_id OFFSET 0)
                    THEN 'api token ' || w.token_id
                WHEN w.contact_id IS NOT NULL
                 AND (w.account_id, w.contact_id) IS DISTINCT FROM (b.account_id, b.contact_id)
                 AND NOT EXISTS (SELECT 1 FROM contacts c
                                 WHERE c.account_id = w.account_id AND c.id = w.contact_id
                                 OFFSET 0)
                    THEN 'contact ' || w.contact_id || ' of account ' || w.account_id
            END AS missing
            FROM written w JOIN before b ON b.id = w.id
        ) x
        WHERE x.missing IS NOT NULL
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'an intake record refers to % which does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER lead_intakes_references_updated ON lead_intakes;
CREATE TRIGGER lead_intakes_references_updated
    AFTER UPDATE ON lead_intakes REFERENCING OLD TABLE AS before NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION lead_intakes_check_references();

CREATE FUNCTION contacts_remove_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contact_phone_numbers WHERE contact_id IN (SELECT id FROM removed);
    DELETE FROM contact_consents WHERE contact_id IN (SELECT id FROM removed);
    UPDATE lead_intakes SET contact_id = NULL WHERE contact_id IN (SELECT id FROM removed);
    RETURN NULL;
END
$$;
CREATE TRIGGER contacts_remove_rows
    AFTER DELETE ON contacts REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION contacts_remove_rows();

CREATE FUNCTION accounts_remove_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM contacts WHERE account_id IN (SELECT id FROM removed);
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_remove_contacts
    AFTER DELETE ON accounts REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION accounts_remove_contacts();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS accounts_remove_contacts ON accounts;
DROP FUNCTION IF EXISTS accounts_remove_contacts();
DROP TRIGGER IF EXISTS contacts_remove_rows ON contacts;
DROP FUNCTION IF EXISTS contacts_remove_rows();
DROP TRIGGER IF EXISTS lead_intakes_references_updated ON lead_intakes;
CREATE TRIGGER lead_intakes_references_updated
    AFTER UPDATE ON lead_intakes REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION lead_intakes_check_references();
DROP TRIGGER IF EXISTS contact_consents_contact_updated ON contact_consents;
DROP TRIGGER IF EXISTS contact_consents_contact_inserted ON contact_consents;
DROP TRIGGER IF EXISTS contact_phone_numbers_contact_updated ON contact_phone_numbers;
DROP TRIGGER IF EXISTS contact_phone_numbers_contact_inserted ON contact_phone_numbers;
DROP FUNCTION IF EXISTS contact_rows_check_contact();
DROP TRIGGER IF EXISTS contacts_account_updated ON contacts;
DROP TRIGGER IF EXISTS contacts_account_inserted ON contacts;
DROP FUNCTION IF EXISTS contacts_check_account();
ALTER TABLE lead_intakes ADD CONSTRAINT lead_intakes_contact_fkey
    FOREIGN KEY (account_id, contact_id)
    REFERENCES contacts (account_id, id) ON DELETE SET NULL (contact_id);
ALTER TABLE contact_consents ADD CONSTRAINT contact_consents_contact_fkey
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE;
ALTER TABLE contact_phone_numbers ADD CONSTRAINT contact_phone_numbers_contact_fkey
    FOREIGN KEY (account_id, contact_id) REFERENCES contacts (account_id, id) ON DELETE CASCADE;
ALTER TABLE contacts ADD CONSTRAINT contacts_account_id_fkey
    FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, DOWN).await?;
        crate::run_sql(
            manager,
            crate::m20261204_000012_intake_references_per_statement::CHECK_REFERENCES,
        )
        .await
    }
}
