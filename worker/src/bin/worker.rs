//! The worker binary: settings, logging, then the library's worker until SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;
use worker::app::{Worker, shutdown_signal};

/// A batch allocates and frees its messages, rows, JSON and event bodies; with glibc's
/// malloc, freeing and consolidating those blocks was half the worker's CPU while events
/// were delivered (docs/performance.md, "The worker's allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, so that a stop signal from now on is a clean stop.
    let stop = shutdown_signal();
    let settings = Settings::load().context("Failed to load settings")?;
    shared::telemetry::init(settings.log_format);
    let worker = Worker::build(settings).await?;
    tracing::info!(metrics_addr = %worker.metrics_addr(), "Worker started");
    // A task of the runtime, not the main thread's future: the loop that hands each
    // delivery to the consumer tasks then runs on the runtime's threads, where waking a
    // consumer task needs no other thread woken (docs/performance.md, "The worker's loop
    // on the runtime's threads").
    tokio::spawn(worker.run_until_stopped(stop))
        .await
        .context("The worker's task failed")?
}
