//! The lead path's outbox: one row per transaction.
//!
//! A batch of leads reports about two events per lead. Writing each as a row of `events`,
//! with a row of `event_deliveries` per subscribed endpoint, in the batch's transaction cost
//! the intake about a fifth of its speed (docs/performance.md, "Outbound events"). The batch
//! writes its events as one row here instead, the columns of its events as arrays, the
//! bodies compressed with lz4; the delivery loops turn each row into its events and their
//! deliveries later, in one statement that removes the row (`shared::events::EXPAND`), so
//! an event still exists if and only if the work it reports committed, and exactly once.
//! Until then an event is in this table and not yet in `events`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "-- The events of one transaction, element i of each array being event i: its id,
-- account, type, intake (the nil uuid: none), contact (0: none) and body. `created_at` is
-- the time of the transaction, which the events keep.
CREATE TABLE event_batches (
    id           BIGSERIAL PRIMARY KEY,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    ids          UUID[] NOT NULL,
    account_ids  BIGINT[] NOT NULL,
    types        TEXT[] NOT NULL,
    intake_ids   UUID[] NOT NULL,
    contact_ids  BIGINT[] NOT NULL,
    bodies       TEXT[] COMPRESSION lz4 NOT NULL,
    CHECK (cardinality(ids) = cardinality(bodies))
);
-- A queue: rows come and go by the thousand, so its dead rows are vacuumed early.
ALTER TABLE event_batches SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000);",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "DROP TABLE IF EXISTS event_batches;").await
    }
}
