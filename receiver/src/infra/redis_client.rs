//! The receiver's one Redis handle. Every call is bounded by a timeout, and after a
//! connection failure Redis is skipped for a moment, so an unreachable Redis costs each
//! request microseconds instead of a timeout (the rate limit then fails open or closed).

use crate::infra::prometheus;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long Redis is skipped after it failed to answer.
const COOL_DOWN: Duration = Duration::from_millis(500);

/// Redis did not answer (unreachable, too slow, or skipped during the cool-down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Redis is unavailable")]
pub struct RedisUnavailable;

/// Cheap to clone: the clones share the connection and the cool-down.
#[derive(Clone)]
pub struct RedisClient {
    /// Reconnects by itself; created lazily so the receiver starts while Redis is down.
    conn: ConnectionManager,
    /// Bound on one call.
    timeout: Duration,
    /// Milliseconds after `epoch` until which calls fail at once.
    skip_until_ms: Arc<AtomicU64>,
    /// Reference point of `skip_until_ms`.
    epoch: Instant,
}

impl RedisClient {
    /// A handle on `url`; no connection is made until the first call.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            timeout,
            skip_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    /// A connection to run commands on (cheap: a clone of the multiplexed handle).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs `call`, named `op` in metrics and logs, within the timeout.
    pub async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisUnavailable> {
        let now_ms = self.now_ms();
        if now_ms < self.skip_until_ms.load(Ordering::Relaxed) {
            metrics::counter!(prometheus::REDIS_ERRORS, "op" => op).increment(1);
            return Err(RedisUnavailable);
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                metrics::counter!(prometheus::REDIS_ERRORS, "op" => op).increment(1);
                tracing::warn!(op, %error, "Redis call failed");
                if is_connection_error(&error) {
                    self.cool_down();
                }
                Err(RedisUnavailable)
            }
            Err(_) => {
                metrics::counter!(prometheus::REDIS_ERRORS, "op" => op).increment(1);
                tracing::warn!(
                    op,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "Redis call timed out"
                );
                self.cool_down();
                Err(RedisUnavailable)
            }
        }
    }

    /// Whether Redis answers a PING now (ignores the cool-down: readiness wants the truth).
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        let ping = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_)))
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn cool_down(&self) {
        let until = self.now_ms() + u64::try_from(COOL_DOWN.as_millis()).unwrap_or(0);
        self.skip_until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}
