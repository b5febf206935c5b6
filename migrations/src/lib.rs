//! The lead-intake schema as SeaORM migrations.
//!
//! Every invariant the product relies on is a constraint or an index here, not only code:
//! cross-account links are impossible because child tables reference `(account_id, id)`
//! pairs; a phone number belongs to at most one contact per account; a contact has at most
//! one active sequence enrollment and at most one queued PowerDialer entry.
//!
//! The migrations are plain PostgreSQL: the product targets PostgreSQL only, and partial
//! unique indexes, composite foreign keys and CHECK constraints read best as SQL.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_tenancy;
mod m20261125_000002_create_catalog;
mod m20261125_000003_create_contacts;
mod m20261125_000004_create_automation;
mod m20261125_000005_create_lead_intakes;
mod m20261128_000006_token_sources;
mod m20261202_000007_contacts_created_index;
mod m20261202_000008_contact_policy;
mod m20261202_000009_message_steps;
mod m20261203_000010_outbound_events;
mod m20261203_000011_outbox_without_row_locks;
mod m20261204_000012_intake_references_per_statement;
mod m20261204_000013_contact_references_per_statement;
mod m20261204_000014_event_batches;
mod m20261204_000015_endpoint_totals;
mod m20261206_000016_powerdialer_positions;
mod m20261207_000017_event_batches_lz4;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tenancy::Migration),
            Box::new(m20261125_000002_create_catalog::Migration),
            Box::new(m20261125_000003_create_contacts::Migration),
            Box::new(m20261125_000004_create_automation::Migration),
            Box::new(m20261125_000005_create_lead_intakes::Migration),
            Box::new(m20261128_000006_token_sources::Migration),
            Box::new(m20261202_000007_contacts_created_index::Migration),
            Box::new(m20261202_000008_contact_policy::Migration),
            Box::new(m20261202_000009_message_steps::Migration),
            Box::new(m20261203_000010_outbound_events::Migration),
            Box::new(m20261203_000011_outbox_without_row_locks::Migration),
            Box::new(m20261204_000012_intake_references_per_statement::Migration),
            Box::new(m20261204_000013_contact_references_per_statement::Migration),
            Box::new(m20261204_000014_event_batches::Migration),
            Box::new(m20261204_000015_endpoint_totals::Migration),
            Box::new(m20261206_000016_powerdialer_positions::Migration),
            Box::new(m20261207_000017_event_batches_lz4::Migration),
        ]
    }
}

/// Runs each statement of `sql` (separated by `;` at line ends) on the migration's connection.
pub(crate) async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}
