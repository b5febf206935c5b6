//! The outbox's rows without foreign keys to the rows many transactions share.
//!
//! A foreign key's check locks the referenced row (`FOR KEY SHARE`) for every inserted row:
//! each lead transaction writing deliveries locked its account's endpoint, and each batch of
//! attempts locked the deliveries the same statement updates. Concurrent lockers of one row
//! share it through a multixact, which every further locker rewrites; that was most of the
//! cost of recording attempts (docs/performance.md, "Events"). The references hold by
//! construction instead: deliveries are written with their event in one statement, for the
//! endpoints that statement reads; attempts only for deliveries just claimed; and removing
//! an endpoint deletes its deliveries and attempts explicitly. A delivery whose endpoint
//! was removed while its transaction ran is never claimed (every read joins the endpoints).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE event_deliveries DROP CONSTRAINT IF EXISTS event_deliveries_event_id_fkey;
ALTER TABLE event_deliveries DROP CONSTRAINT IF EXISTS event_deliveries_endpoint_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_delivery_id_fkey;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "ALTER TABLE event_deliveries ADD CONSTRAINT event_deliveries_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE;
ALTER TABLE event_deliveries ADD CONSTRAINT event_deliveries_endpoint_id_fkey
    FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES event_deliveries (id) ON DELETE CASCADE;",
        )
        .await
    }
}
