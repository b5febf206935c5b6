//! What the services leave in Redis for `leadctl status`: per-second counts of intake
//! answers (written by every receiver) and one heartbeat per worker process. Every key
//! starts with the configured `redis_prefix`, and every key expires by itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Seconds of intake counts `leadctl status` adds up (its "last minute").
pub const INTAKE_WINDOW_SECS: i64 = 60;

/// How long a per-second count is kept.
pub const INTAKE_STATS_TTL_SECS: i64 = 120;

/// How often a worker writes its heartbeat.
pub const HEARTBEAT_EVERY_SECS: u64 = 5;

/// A heartbeat older than this means the worker is gone (stopped, killed or cut off).
pub const HEARTBEAT_STALE_SECS: i64 = 30;

/// A gone worker's heartbeat is dropped from the list after this long.
pub const HEARTBEAT_FORGET_SECS: i64 = 3600;

/// Hash of intake answers in second `unix_second`: field = HTTP status, value = count.
pub fn intake_stats_key(prefix: &str, unix_second: i64) -> String {
    format!("{prefix}stats:intake:{unix_second}")
}

/// Hash of worker heartbeats: field = worker id, value = a [`Heartbeat`] as JSON.
pub fn workers_key(prefix: &str) -> String {
    format!("{prefix}workers")
}

/// One worker process's latest report of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Heartbeat {
    /// `host-pid-random`, unique per process start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// When this heartbeat was written.
    pub at: DateTime<Utc>,
    /// Connected to the broker and consuming.
    pub consuming: bool,
    /// Transactions it runs at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Deliveries received and not yet settled.
    pub in_flight: u64,
    /// Leads it has finished since it started (any outcome).
    pub leads: u64,
    /// When the newest lead it took from the queue was received: the head of the queue as
    /// this worker last saw it (`None` before its first lead).
    pub head_received_at: Option<DateTime<Utc>>,
}

impl Heartbeat {
    /// Seconds since it was written, at `now`.
    pub fn age_seconds(&self, now: DateTime<Utc>) -> i64 {
        (now - self.at).num_seconds().max(0)
    }

    /// Whether it is recent enough to count the worker as alive.
    pub fn is_alive(&self, now: DateTime<Utc>) -> bool {
        self.age_seconds(now) <= HEARTBEAT_STALE_SECS
    }
}
