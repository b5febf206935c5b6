//! Tracing setup: `LOG_FORMAT=json` for log shippers, `pretty` for terminals; `RUST_LOG`
//! filters (default `info`).

use crate::config::LogFormat;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. Call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests calling several mains) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}
