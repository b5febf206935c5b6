//! Tracing setup: `LOG_FORMAT=json` for log shippers, `pretty` for terminals; `RUST_LOG`
//! filters (default `info`).
//!
//! Lines are formatted where they are logged and written to stdout by a thread of their own,
//! many lines a write: at the default level the receiver logs two lines a request, and
//! written one `write(2)` a line from the request's thread they cost about a fifth of its
//! CPU (docs/performance.md, "Logging off the request's thread"). No line is dropped: when
//! the writer falls behind by [`BUFFERED_LINES`], logging waits for it.

use crate::config::LogFormat;
use std::io::BufWriter;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Lines formatted and not yet written before a logging thread waits for the writer.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// Bytes the writer gathers before one write to stdout; it also writes whenever it has no
/// more lines waiting.
const WRITE_BYTES: usize = 64 * 1024;

/// The log writer's thread: dropping it writes what is still waiting, so `main` holds it
/// until it returns.
#[must_use = "dropping the guard stops the log writer; hold it until main returns"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard.
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::with_capacity(WRITE_BYTES, std::io::stdout()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(writer))
            .try_init(),
    };
    // A second init (tests calling several mains) keeps the first subscriber and its writer.
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}
