//! The lead-intake HTTP receiver: settings → telemetry → application → serve until
//! SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;

/// Every request allocates and frees its body, headers, lead and message; malloc and free
/// were a tenth of the receiver's CPU under load. jemalloc's thread caches cut the CPU per
/// request by about a tenth at the same memory (mimalloc cut it as much but held 70 MB at
/// 256 connections against jemalloc's 45; measured with scripts/bench --only receiver).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("Failed to load settings")?;
    shared::telemetry::init(settings.log_format);
    let app = receiver::Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr()?, "Receiver listening");
    app.run_until_stopped(shared::runtime::shutdown_signal())
        .await
}
