//! Every array of an outbox row compressed with lz4, as its bodies already are. A batch's
//! row holds hundreds of event ids and intake ids (random bytes, which no compressor
//! shrinks) and the events' types, accounts and contacts; each array passes the size at
//! which PostgreSQL tries to compress a value, and compressing them with the server's
//! default method (pglz) cost the database about five times what compressing every body
//! with lz4 did (docs/performance.md, "Outbound events").

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE event_batches
    ALTER COLUMN ids SET COMPRESSION lz4,
    ALTER COLUMN account_ids SET COMPRESSION lz4,
    ALTER COLUMN types SET COMPRESSION lz4,
    ALTER COLUMN intake_ids SET COMPRESSION lz4,
    ALTER COLUMN contact_ids SET COMPRESSION lz4;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE event_batches
    ALTER COLUMN ids SET COMPRESSION default,
    ALTER COLUMN account_ids SET COMPRESSION default,
    ALTER COLUMN types SET COMPRESSION default,
    ALTER COLUMN intake_ids SET COMPRESSION default,
    ALTER COLUMN contact_ids SET COMPRESSION default;",
        )
        .await
    }
}
