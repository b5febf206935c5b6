//! Every array of an outbox row compressed with lz4, as its bodies already are. A batch's
//! row holds hundreds of event ids and intake ids (random bytes, which no compressor
//! shrinks) and the events' types, accounts and contacts; each array passes the size at
//! which PostgreSQL tries to compress a value, and compressing them with the server's
//! default method (pglz) cost the database about five times what compressing every body
//! with lz4 did (docs/performance.md, "Outbound events").

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The arrays of `event_batches` besides `bodies` (lz4 since `m20261204_000014`).
const ARRAYS: [&str; 5] = ["ids", "account_ids", "types", "intake_ids", "contact_ids"];

/// The statement that sets the compression `method` of every one of [`ARRAYS`].
fn set_compression(method: &str) -> String {
    let columns: Vec<String> = ARRAYS
        .iter()
        .map(|c| format!("ALTER COLUMN {c} SET COMPRESSION {method}"))
        .collect();
    format!("ALTER TABLE event_batches {};", columns.join(", "))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, &set_compression("lz4")).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, &set_compression("default")).await
    }
}
