//! Where a new PowerDialer entry goes without reading or locking its list: a "bottom" entry
//! takes the next value of `powerdialer_positions`, a "top" entry its negation. Each value is
//! larger than every value drawn before it, so a bottom entry lands below every entry placed
//! before it and a top entry above, as `min - 1` / `max + 1` of the list did; but batches
//! placing on one busy list no longer wait for each other's commits (they held the list's
//! lock from the placement to the commit). The sequence starts beyond every position already
//! stored.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "CREATE SEQUENCE powerdialer_positions AS bigint;
SELECT setval('powerdialer_positions',
              (SELECT coalesce(max(abs(position)), 0) + 1 FROM powerdialer_items), false);",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "DROP SEQUENCE IF EXISTS powerdialer_positions;").await
    }
}
