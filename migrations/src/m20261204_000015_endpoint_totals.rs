//! How many deliveries each webhook endpoint has delivered and failed for good, kept as the
//! deliveries settle instead of counted: `leadctl webhook list` and the console's webhooks
//! page counted every delivery of an endpoint (about 0.2 s per million), and an endpoint of
//! a busy account holds millions over its retention. The delivery loops add what each
//! attempt settles; a replay takes back what it sends again, and the retention's removal
//! what it removes. Pending deliveries are still counted (a range of the due index).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "-- No foreign key: a key's check would lock the endpoint's row for every settle
-- (migration m20261203_000011); removing an endpoint removes its row here.
CREATE TABLE webhook_endpoint_totals (
    endpoint_id  BIGINT PRIMARY KEY,
    delivered    BIGINT NOT NULL DEFAULT 0,
    failed       BIGINT NOT NULL DEFAULT 0
);
INSERT INTO webhook_endpoint_totals (endpoint_id, delivered, failed)
SELECT endpoint_id, count(*) FILTER (WHERE status = 'delivered'),
       count(*) FILTER (WHERE status = 'failed')
FROM event_deliveries GROUP BY endpoint_id;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "DROP TABLE IF EXISTS webhook_endpoint_totals;").await
    }
}
