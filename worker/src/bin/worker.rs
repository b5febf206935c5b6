//! The worker binary: settings, logging, then the library's worker until SIGTERM/SIGINT.

use anyhow::Context;
use shared::config::Settings;
use worker::app::{Worker, shutdown_signal};

/// A batch allocates and frees its messages, rows, JSON and event bodies; with glibc's
/// malloc, freeing and consolidating those blocks was half the worker's CPU while events
/// were delivered (docs/performance.md, "The worker's allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The settings come first, since they size the runtime (`WORKER__RUNTIME_THREADS`); the
/// stop signal's handlers are installed first thing in it.
fn main() -> anyhow::Result<()> {
    let settings = Settings::load().context("Failed to load settings")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.worker.runtime_threads)
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    runtime.block_on(async {
        // From now on a stop signal is a clean stop.
        let stop = shutdown_signal();
        let _logs = shared::telemetry::init(settings.log_format)
            .context("Failed to start the log writer")?;
        let worker = Worker::build(settings).await?;
        tracing::info!(metrics_addr = %worker.metrics_addr(), "Worker started");
        // A task of the runtime, not the main thread's future: the loop that hands each
        // delivery to the consumer tasks runs on the runtime's thread, so that waking a
        // consumer task wakes no other thread (docs/performance.md, "The worker's runtime
        // threads").
        tokio::spawn(worker.run_until_stopped(stop))
            .await
            .context("The worker's task failed")?
    })
}
