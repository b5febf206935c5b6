//! Sliding-window rate limits in Redis.
//!
//! Each limited subject (a token's leads, a token's reads, a client IP's failed
//! authentications) has a sorted set of the times of its counted requests. One script
//! (`admit.lua`) drops entries older than the window, counts the rest and admits
//! as many of the call's requests as fit under `limit`, in order. So no
//! 60-second span, wherever it starts, ever holds more than `limit` admitted requests (a
//! fixed per-minute counter would admit 2× the limit around a minute boundary), and the
//! wait of a refused request is exact: the moment the oldest entry that must leave does.
//!
//! Time is Redis's own clock, so every receiver instance agrees on it.

use super::intake_records::ClaimedKey;
use crate::infra::redis_client::{RedisClient, RedisUnavailable};
use shared::intake::QUEUED_RECORD_TTL_SECS;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The span every limit counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

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

/// The one admission script (`admit.lua`): counts up to n requests of one
/// subject against its limit, and for an intake also looks up and claims its
/// `Idempotency-Key` and writes the `queued` records of the admitted leads.
const ADMIT: &str = include_str!("admit.lua");

/// What the script said of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An earlier request holds the `Idempotency-Key`: the value it left there.
    Known(String),
    /// The first `admitted` requests are counted (and the records among them written);
    /// the others would be admitted after `waits[i]` each. `decision` is what the
    /// rate-limit headers say: the first refused request's wait when none was admitted.
    Counted {
        decision: Decision,
        admitted: usize,
        waits: Vec<Duration>,
    },
}

/// An `Idempotency-Key` as one call uses it.
#[derive(Debug, Clone, Copy)]
pub struct KeyUse<'a> {
    pub key: &'a ClaimedKey,
    /// Claimed when at least one request is admitted; else only looked up.
    pub claim: bool,
}

/// One call of the script: up to n requests of one subject.
pub struct Batch<'a> {
    /// The subject's sorted set.
    pub subject: &'a str,
    pub limit: u32,
    /// One per request, in order: the key and JSON of the `queued` record an admitted
    /// request writes, `None` for none.
    pub records: Vec<Option<(String, String)>>,
    pub key: Option<KeyUse<'a>>,
}

/// The sliding-window limits: the script, loaded once per Redis server (EVALSHA afterwards),
/// and the name of each subject's sorted set.
pub struct Limiter {
    script: redis::Script,
    prefix: String,
}

impl Limiter {
    pub fn new(redis_prefix: &str) -> Self {
        Self {
            script: redis::Script::new(ADMIT),
            prefix: redis_prefix.to_owned(),
        }
    }

    /// The sorted set of `token_id`'s intake requests.
    pub fn intake_key(&self, token_id: i64) -> String {
        format!("{}rl:intake:{token_id}", self.prefix)
    }

    /// The sorted set of `token_id`'s read-API requests (a budget of its own: polling
    /// intake statuses never eats into the intake limit).
    pub fn read_key(&self, token_id: i64) -> String {
        format!("{}rl:read:{token_id}", self.prefix)
    }

    /// The sorted set of failed authentications from `ip`.
    pub fn auth_failures_key(&self, ip: IpAddr) -> String {
        format!("{}rl:auth-failures:{ip}", self.prefix)
    }

    /// Counts one request on `subject` against `limit` per window.
    pub async fn count(
        &self,
        redis: &RedisClient,
        op: &'static str,
        subject: &str,
        limit: u32,
    ) -> Result<Decision, RedisUnavailable> {
        let batch = Batch {
            subject,
            limit,
            records: vec![None],
            key: None,
        };
        match self.run(redis, op, batch).await? {
            Reply::Counted { decision, .. } => Ok(decision),
            // Without a key the script never answers with one.
            Reply::Known(_) => Err(RedisUnavailable),
        }
    }

    /// Runs the script on `batch`, named `op` in metrics and logs.
    pub async fn run(
        &self,
        redis: &RedisClient,
        op: &'static str,
        batch: Batch<'_>,
    ) -> Result<Reply, RedisUnavailable> {
        let Batch {
            subject,
            limit,
            records,
            key,
        } = batch;
        let mut invocation = self.script.key(subject);
        match key {
            Some(k) => invocation.key(k.key.redis_key()).key(k.key.lock_key()),
            None => invocation.key(subject).key(subject),
        };
        for (record_key, _) in records.iter().flatten() {
            invocation.key(record_key);
        }
        invocation
            .arg(limit)
            .arg(WINDOW.as_millis() as u64)
            .arg(Uuid::new_v4().simple().to_string())
            .arg(records.len())
            .arg(match key {
                None => "",
                Some(k) if k.claim => "claim",
                Some(_) => "look",
            })
            .arg(key.map(|k| k.key.open()).unwrap_or_default())
            .arg(key.map_or(0, |k| k.key.open_ttl_ms()))
            .arg(key.map(|k| k.key.holder()).unwrap_or_default())
            .arg(key.map_or(0, |k| k.key.lock_ttl_ms()))
            .arg(QUEUED_RECORD_TTL_SECS);
        for record in &records {
            invocation.arg(record.as_ref().map_or("", |(_, json)| json.as_str()));
        }
        let mut conn = redis.conn();
        let reply: redis::Value = redis
            .run(op, async { invocation.invoke_async(&mut conn).await })
            .await?;
        reply_of(reply, limit)
    }
}

/// What the script's reply says: {2, value} for a known key, else {1, admitted, remaining,
/// wait µs, now µs, refused waits µs…} of a call counted against `limit`.
fn reply_of(reply: redis::Value, limit: u32) -> Result<Reply, RedisUnavailable> {
    let redis::Value::Array(items) = reply else {
        return Err(RedisUnavailable);
    };
    if let [redis::Value::Int(2), redis::Value::BulkString(stored)] = items.as_slice() {
        return Ok(Reply::Known(String::from_utf8_lossy(stored).into_owned()));
    }
    let numbers = items
        .iter()
        .map(|item| match item {
            redis::Value::Int(n) => Ok(*n),
            _ => Err(RedisUnavailable),
        })
        .collect::<Result<Vec<i64>, RedisUnavailable>>()?;
    let [1, admitted, remaining, wait_us, now_us, refused @ ..] = numbers.as_slice() else {
        return Err(RedisUnavailable);
    };
    let (admitted, remaining, wait_us, now_us) = (*admitted, *remaining, *wait_us, *now_us);
    let admitted = usize::try_from(admitted.max(0)).unwrap_or(0);
    let decision = match (admitted, refused.first()) {
        (0, Some(first)) => Decision::from_script(limit, 0, 0, *first, now_us),
        _ => Decision::from_script(limit, 1, remaining, wait_us, now_us),
    };
    let waits = refused
        .iter()
        .map(|us| Duration::from_micros(u64::try_from((*us).max(0)).unwrap_or(0)))
        .collect();
    Ok(Reply::Counted {
        decision,
        admitted,
        waits,
    })
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
