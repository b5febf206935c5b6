//! The worker binary: settings, logging, then the library's worker until SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;
use worker::app::{Worker, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("Failed to load settings")?;
    shared::telemetry::init(settings.log_format);
    let worker = Worker::build(settings).await?;
    tracing::info!(metrics_addr = %worker.metrics_addr(), "Worker started");
    worker.run_until_stopped(shutdown_signal()).await
}
