//! `testkit-env`: a throwaway environment for scripts that run the real binaries
//! (`scripts/check-deploy`), isolated like a test's: its own migrated database, RabbitMQ
//! prefix and Redis prefix.
//!
//! - `testkit-env create` prints `DATABASE_URL=…`, `AMQP_PREFIX=…`, `REDIS_PREFIX=…` lines
//!   (for `export`);
//! - `testkit-env drop` (with those variables set) drops the database and deletes the
//!   prefix's queues and exchanges. It refuses names that are not a test's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sea_orm::{ConnectionTrait, Database};
use shared::config::Settings;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("create") => {
            // Kept: the caller drops it with `testkit-env drop`.
            let db = std::mem::ManuallyDrop::new(testkit::TestDb::new().await);
            let settings = testkit::settings(&db);
            println!("DATABASE_URL={}", db.url);
            println!("AMQP_PREFIX={}", settings.amqp_prefix);
            println!("REDIS_PREFIX={}", settings.redis_prefix);
            ExitCode::SUCCESS
        }
        Some("drop") => {
            let settings = match Settings::load() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let name = settings
                .database_url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            if !name.starts_with("test_") || !settings.amqp_prefix.starts_with("test.") {
                eprintln!(
                    "error: refusing to drop {name:?} / {:?}: not a test environment",
                    settings.amqp_prefix
                );
                return ExitCode::FAILURE;
            }
            testkit::delete_topology(&settings).await;
            if let Ok(admin) =
                Database::connect(format!("{}/postgres", testkit::server_url())).await
            {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            }
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: testkit-env create | drop");
            ExitCode::FAILURE
        }
    }
}
