//! `migrations up|down|fresh|status|…`: the sea-orm-migration CLI over the lead-intake schema.
//! Reads `DATABASE_URL` (or `-u`).

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migrations::Migrator).await;
}
