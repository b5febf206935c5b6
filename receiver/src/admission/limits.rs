//! Sliding-window rate limits in Redis.
//!
//! Each limited subject (a token, a client IP's failed authentications) has a sorted set of
//! the times of its counted requests. One script per request drops entries older than the
//! window, counts the rest and admits the request only if fewer than `limit` remain. So no
//! 60-second span, wherever it starts, ever holds more than `limit` admitted requests (a
//! fixed per-minute counter would admit 2× the limit around a minute boundary), and the
//! wait of a refused request is exact: the moment the oldest entry that must leave does.
//!
//! Time is Redis's own clock, so every receiver instance agrees on it.

use crate::infra::redis_client::{RedisClient, Unavailable};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The span every limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The sliding-window log in Lua, with `$before` run first and `$on_admit` run for an
/// admitted request just before its reply. KEYS[1]: the subject's sorted set. ARGV[1..3]:
/// limit, window in ms, a unique member. Replies {admitted (1/0), remaining, wait in µs,
/// Redis time in µs}: for an admitted request the wait is until the oldest counted request
/// leaves the window (when `remaining` next grows); for a refused one, until a request
/// would be admitted.
macro_rules! sliding_window_script {
    ($before:literal, $on_admit:literal) => {
        concat!(
            $before,
            r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
",
            $on_admit,
            r"
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, tonumber(oldest[2]) + window - now, now}
end
local blocking = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
return {0, 0, tonumber(blocking[2]) + window - now, now}
"
        )
    };
}
pub(crate) use sliding_window_script;

/// One subject's limit.
const SLIDING_WINDOW: &str = sliding_window_script!("", "");

/// The verdict on one request, and what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Refused: how long until a request would be admitted. Admitted: how long until the
    /// oldest counted request leaves the window.
    pub wait: Duration,
    /// Unix time (seconds, rounded up) at which `wait` ends.
    pub reset_at: u64,
}

impl Decision {
    /// The decision of a sliding-window script's reply {admitted, remaining, wait µs, now µs}.
    pub fn from_script(
        limit: u32,
        admitted: i64,
        remaining: i64,
        wait_us: i64,
        now_us: i64,
    ) -> Self {
        let wait_us = u64::try_from(wait_us.max(0)).unwrap_or(0);
        let now_us = u64::try_from(now_us.max(0)).unwrap_or(0);
        Self {
            admitted: admitted == 1,
            limit,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(0),
            wait: Duration::from_micros(wait_us),
            reset_at: (now_us + wait_us).div_ceil(1_000_000),
        }
    }

    /// `retry_after_ms` of a 429 body: the exact wait, rounded up to the millisecond.
    pub fn retry_after_ms(&self) -> u64 {
        u64::try_from(self.wait.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
    }

    /// `Retry-After`: whole seconds, rounded up.
    pub fn retry_after_secs(&self) -> u64 {
        u64::try_from(self.wait.as_micros().div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// The sliding-window script, loaded once per Redis server (EVALSHA afterwards).
pub struct Limiter {
    script: redis::Script,
    prefix: String,
}

impl Limiter {
    pub fn new(redis_prefix: &str) -> Self {
        Self {
            script: redis::Script::new(SLIDING_WINDOW),
            prefix: redis_prefix.to_owned(),
        }
    }

    /// The sorted set of `token_id`'s intake requests (counted by [`crate::admission`]).
    pub fn intake_key(&self, token_id: i64) -> String {
        format!("{}rl:intake:{token_id}", self.prefix)
    }

    /// Counts a read-API request of `token_id` against `limit` per window (a budget of its
    /// own: polling intake statuses never eats into the intake limit).
    pub async fn check_read(
        &self,
        redis: &RedisClient,
        token_id: i64,
        limit: u32,
    ) -> Result<Decision, Unavailable> {
        let key = format!("{}rl:read:{token_id}", self.prefix);
        self.check(redis, "read_rate_limit", &key, limit).await
    }

    /// Counts a failed authentication from `ip` against `limit` per window.
    pub async fn check_auth_failure(
        &self,
        redis: &RedisClient,
        ip: IpAddr,
        limit: u32,
    ) -> Result<Decision, Unavailable> {
        let key = format!("{}rl:auth-failures:{ip}", self.prefix);
        self.check(redis, "auth_failures", &key, limit).await
    }

    async fn check(
        &self,
        redis: &RedisClient,
        op: &'static str,
        key: &str,
        limit: u32,
    ) -> Result<Decision, Unavailable> {
        let member = uuid::Uuid::new_v4().simple().to_string();
        let window_ms = WINDOW.as_millis() as u64;
        let mut conn = redis.conn();
        let (admitted, remaining, wait_us, now_us): (i64, i64, i64, i64) = redis
            .run(op, async {
                self.script
                    .key(key)
                    .arg(limit)
                    .arg(window_ms)
                    .arg(&member)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(Decision::from_script(
            limit, admitted, remaining, wait_us, now_us,
        ))
    }
}

/// Client IPs refused for too many failed authentications, remembered in-process so a
/// blocked client is refused before its token is even looked at (otherwise a correct
/// guess would still get through). Redis holds the shared count; each instance learns of
/// a block on the blocked client's next failure there.
#[derive(Default)]
pub struct AuthFailureBlocks {
    until: Mutex<HashMap<IpAddr, (Instant, Decision)>>,
}

/// Blocks remembered at most; a flood of addresses beyond it only drops expired ones.
const MAX_BLOCKS: usize = 100_000;

impl AuthFailureBlocks {
    /// The refusal of `ip`, with its remaining wait, while it is blocked.
    pub fn blocked(&self, ip: IpAddr) -> Option<Decision> {
        let mut map = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let (until, decision) = *map.get(&ip)?;
        let now = Instant::now();
        if now >= until {
            map.remove(&ip);
            return None;
        }
        Some(Decision {
            wait: until - now,
            ..decision
        })
    }

    /// Remembers that `ip` is refused for `decision.wait`.
    pub fn block(&self, ip: IpAddr, decision: Decision) {
        let mut map = self.until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if map.len() >= MAX_BLOCKS {
            map.retain(|_, (until, _)| *until > now);
        }
        if map.len() < MAX_BLOCKS {
            map.insert(ip, (now + decision.wait, decision));
        }
    }
}
