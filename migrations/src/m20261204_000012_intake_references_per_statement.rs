//! An intake record's account and token, checked and followed once per statement instead
//! of once per row.
//!
//! A foreign key checks each inserted row with a query of its own that locks the referenced
//! row (`FOR KEY SHARE`): the worker's batch of intake records paid two such checks per
//! lead on two rows every batch of the account shares (its account and, mostly, one token),
//! about 13 µs per lead of PostgreSQL's time (docs/performance.md). Here a statement-level
//! trigger checks a whole statement's records in one query each, and two more do what the
//! keys' `ON DELETE` did: removing an account removes its intake records, removing a token
//! clears it from the records it sent. The link to the contact stays a foreign key.
//!
//! What the keys did and these do not: lock the account and the token while a transaction
//! writing their records is open. An account or a token removed while a batch of its leads
//! is being written can leave those few records behind (the worker reads the account and
//! the token under its own locks just before; removing an account with leads in flight is
//! not an operation the product offers).

use sea_orm_migration::prelude::*;

/// The check of this migration's triggers (a later migration replaces it; its `down`
/// restores this one).
pub(crate) const CHECK_REFERENCES: &str = r#"
CREATE OR REPLACE FUNCTION lead_intakes_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    SELECT 'account ' || w.account_id INTO missing
    FROM written w
    WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w.account_id)
    LIMIT 1;
    IF missing IS NULL THEN
        SELECT 'api token ' || w.token_id INTO missing
        FROM written w
        WHERE w.token_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM api_tokens t WHERE t.id = w.token_id)
        LIMIT 1;
    END IF;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'an intake record refers to % which does not exist', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
"#;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
ALTER TABLE lead_intakes DROP CONSTRAINT IF EXISTS lead_intakes_account_id_fkey;
ALTER TABLE lead_intakes DROP CONSTRAINT IF EXISTS lead_intakes_token_id_fkey;
"#,
        )
        .await?;
        crate::run_sql(manager, CHECK_REFERENCES).await?;
        crate::run_sql(
            manager,
            r#"
CREATE TRIGGER lead_intakes_references_inserted
    AFTER INSERT ON lead_intakes REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION lead_intakes_check_references();
CREATE TRIGGER lead_intakes_references_updated
    AFTER UPDATE ON lead_intakes REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION lead_intakes_check_references();

CREATE FUNCTION accounts_remove_intakes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM lead_intakes WHERE account_id IN (SELECT id FROM removed);
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_remove_intakes
    AFTER DELETE ON accounts REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION accounts_remove_intakes();

CREATE FUNCTION api_tokens_clear_intakes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lead_intakes SET token_id = NULL WHERE token_id IN (SELECT id FROM removed);
    RETURN NULL;
END
$$;
CREATE TRIGGER api_tokens_clear_intakes
    AFTER DELETE ON api_tokens REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_clear_intakes();
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TRIGGER IF EXISTS api_tokens_clear_intakes ON api_tokens;
DROP FUNCTION IF EXISTS api_tokens_clear_intakes();
DROP TRIGGER IF EXISTS accounts_remove_intakes ON accounts;
DROP FUNCTION IF EXISTS accounts_remove_intakes();
DROP TRIGGER IF EXISTS lead_intakes_references_updated ON lead_intakes;
DROP TRIGGER IF EXISTS lead_intakes_references_inserted ON lead_intakes;
DROP FUNCTION IF EXISTS lead_intakes_check_references();
ALTER TABLE lead_intakes ADD CONSTRAINT lead_intakes_account_id_fkey
    FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE;
ALTER TABLE lead_intakes ADD CONSTRAINT lead_intakes_token_id_fkey
    FOREIGN KEY (token_id) REFERENCES api_tokens (id) ON DELETE SET NULL;",
        )
        .await
    }
}
