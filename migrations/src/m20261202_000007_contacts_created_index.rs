//! The contacts' creation-date index serves date filters only.
//!
//! Every composite foreign key onto `contacts (account_id, id)` checks each inserted row with
//! `WHERE account_id = $1 AND id = $2`, and PostgreSQL keeps that check's plan for the life
//! of the connection. `(account_id, created_at, id)` matched the check as well as
//! `contacts_account_id_id_key` does while the table was small (both estimated one row, and
//! on a tie the newer index wins), so a connection that first checked a key in a nearly
//! empty account went on walking the date index through every contact of the account,
//! `id` compared on each entry, as the account grew. Dropping `id` from it does not help:
//! `(account_id, created_at)` ties the same way, with `id` then read from the table row.
//!
//! The index is partial on a condition that is always true (`created_at` is NOT NULL) and
//! that PostgreSQL can prove only from a condition on `created_at` itself: the read API's
//! `created_after`/`created_before` filters use it, and a lookup by key never can. The key
//! lookups are left with one index that holds both their columns, whatever the statistics.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP INDEX IF EXISTS contacts_account_created_idx;
CREATE INDEX contacts_account_created_idx ON contacts (account_id, created_at, id)
    WHERE created_at IS NOT NULL;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP INDEX IF EXISTS contacts_account_created_idx;
CREATE INDEX contacts_account_created_idx ON contacts (account_id, created_at, id);",
        )
        .await
    }
}
