//! Per-second counts of intake answers by HTTP status, flushed to Redis every second for
//! `leadctl status` (the intake rate of the last minute, summed over every receiver). The
//! request path only bumps an in-process counter; one background task writes the counts in
//! one pipeline per second. Counts that cannot be written (Redis down) are dropped: they
//! are an operator's view, not the record of a lead.

use redis::aio::ConnectionManager;
use shared::status::{INTAKE_STATS_TTL_SECS, intake_stats_key};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One counter per HTTP status code (100–599); the index is the code.
static COUNTS: [AtomicU64; 600] = [const { AtomicU64::new(0) }; 600];

/// Counts one lead from `source` (`form`, `bulk`, `google_ads`) answered with `status`,
/// here and in [`crate::infra::prometheus::INTAKE_LEADS`].
pub fn record(source: &'static str, status: u16) {
    if let Some(c) = COUNTS.get(usize::from(status)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    metrics::counter!(crate::infra::prometheus::INTAKE_LEADS, "source" => source, "status" => status.to_string())
        .increment(1);
}

/// Takes (and resets) every non-zero count.
fn take() -> Vec<(u16, u64)> {
    let mut out = Vec::new();
    for (code, c) in COUNTS.iter().enumerate() {
        let n = c.swap(0, Ordering::Relaxed);
        if n > 0 {
            out.push((code as u16, n));
        }
    }
    out
}

/// Writes the counts every second until `stop`.
pub async fn run(mut conn: ConnectionManager, prefix: String, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        let counts = take();
        if !counts.is_empty() {
            let key = intake_stats_key(&prefix, chrono::Utc::now().timestamp());
            let mut pipe = redis::pipe();
            for (code, n) in &counts {
                pipe.hincr(&key, code, *n).ignore();
            }
            pipe.expire(&key, INTAKE_STATS_TTL_SECS).ignore();
            let written = tokio::time::timeout(
                Duration::from_millis(500),
                pipe.query_async::<()>(&mut conn),
            )
            .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::debug!("Failed to write intake counts to Redis");
            }
        }
        if stopping {
            break;
        }
    }
}
