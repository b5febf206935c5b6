//! The lead-intake HTTP receiver: settings → telemetry → application → serve until
//! SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;

/// Every request allocates and frees its body, headers, lead and message; jemalloc's
/// thread caches make that cheaper at the same memory (docs/performance.md, "The
/// receiver's allocator", has the figures).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, so that a stop signal from now on is a clean stop.
    let stop = shared::runtime::shutdown_signal();
    let settings = Settings::load().context("Failed to load settings")?;
    let _logs =
        shared::telemetry::init(settings.log_format).context("Failed to start the log writer")?;
    let app = receiver::Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr()?, "Receiver listening");
    app.run_until_stopped(stop).await
}
