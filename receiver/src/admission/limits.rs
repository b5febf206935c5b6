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
//!
//! Concurrent single requests of one subject share a call: while one call of a subject is
//! under way, the requests that arrive wait for the next, which counts them together, in
//! arrival order, exactly as one call each would have (a campaign's burst on one token costs
//! Redis a call per round trip instead of one per request).

use super::intake_records::ClaimedKey;
use crate::infra::redis_client::{RedisClient, RedisUnavailable};
use shared::intake::QUEUED_RECORD_TTL_SECS;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
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
    /// `refused` is the first refused request's decision, if one was refused.
    Counted {
        decision: Decision,
        admitted: usize,
        waits: Vec<Duration>,
        refused: Option<Decision>,
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

/// Most requests one shared call counts.
const MOST_SHARED: usize = 256;

/// A single request waiting for the next call of its subject.
struct Waiting {
    record: Option<(String, String)>,
    decision: oneshot::Sender<Result<Decision, RedisUnavailable>>,
}

/// The single requests of one subject and limit that wait for the next call.
type Queue = Vec<Waiting>;

/// Subject and limit → its queue, while a task makes its calls (the task removes it when
/// it finds it empty, so a queue here always has a task).
type Queues = Mutex<HashMap<(String, u32), Queue>>;

/// The script and the queues of single requests, shared with the tasks that make the calls.
struct Shared {
    script: redis::Script,
    queues: Queues,
    /// Script calls made.
    calls: AtomicU64,
}

/// The sliding-window limits: the script, loaded once per Redis server (EVALSHA afterwards),
/// and the name of each subject's sorted set.
pub struct Limiter {
    shared: Arc<Shared>,
    prefix: String,
}

impl Limiter {
    pub fn new(redis_prefix: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                script: redis::Script::new(ADMIT),
                queues: Mutex::default(),
                calls: AtomicU64::new(0),
            }),
            prefix: redis_prefix.to_owned(),
        }
    }

    /// Script calls made so far (read by the tests of call sharing).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
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

    /// Runs the script on `batch`, named `op` in metrics and logs. A single request without
    /// an `Idempotency-Key` shares its call with the other single requests of its subject
    /// that arrive meanwhile (see the module's doc).
    pub async fn run(
        &self,
        redis: &RedisClient,
        op: &'static str,
        batch: Batch<'_>,
    ) -> Result<Reply, RedisUnavailable> {
        match (batch.key, batch.records.as_slice()) {
            (None, [_]) => {
                let Batch {
                    subject,
                    limit,
                    mut records,
                    ..
                } = batch;
                let record = records.pop().flatten();
                let decision = self.single(redis, op, subject, limit, record).await?;
                Ok(Reply::Counted {
                    decision,
                    admitted: usize::from(decision.admitted),
                    waits: if decision.admitted {
                        Vec::new()
                    } else {
                        vec![decision.wait]
                    },
                    refused: (!decision.admitted).then_some(decision),
                })
            }
            _ => self.shared.call(redis, op, batch).await,
        }
    }

    /// Counts one request in the next call of its subject's queue, starting the task that
    /// makes the calls if none is under way.
    async fn single(
        &self,
        redis: &RedisClient,
        op: &'static str,
        subject: &str,
        limit: u32,
        record: Option<(String, String)>,
    ) -> Result<Decision, RedisUnavailable> {
        let (decision, decided) = oneshot::channel();
        let waiting = Waiting { record, decision };
        let start = {
            let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            match queues.entry((subject.to_owned(), limit)) {
                Entry::Occupied(mut queue) => {
                    queue.get_mut().push(waiting);
                    None
                }
                Entry::Vacant(vacant) => {
                    let key = vacant.key().clone();
                    vacant.insert(vec![waiting]);
                    Some(key)
                }
            }
        };
        if let Some(key) = start {
            tokio::spawn(self.shared.clone().drain(redis.clone(), op, key));
        }
        // A dropped sender means the task ended without an answer: as if Redis had none.
        decided.await.unwrap_or(Err(RedisUnavailable))
    }
}

/// A queue's task under way. Dropped before the task finished (a panic, or the runtime
/// shutting down), it removes the queue, so that the requests waiting there learn that no
/// answer comes (as if Redis had none) and the next request starts a new task.
struct Running<'a> {
    queues: &'a Queues,
    key: &'a (String, u32),
    finished: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
            queues.remove(self.key);
        }
    }
}

impl Shared {
    /// Calls the script for the waiting requests of the queue `key` until none waits, then
    /// removes the queue (in the same hold of the lock, so a request that arrives later
    /// finds no queue and starts a task of its own).
    async fn drain(self: Arc<Self>, redis: RedisClient, op: &'static str, key: (String, u32)) {
        let mut running = Running {
            queues: &self.queues,
            key: &key,
            finished: false,
        };
        loop {
            let waiting: Vec<Waiting> = {
                let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
                let Some(queue) = queues.get_mut(&key).filter(|q| !q.is_empty()) else {
                    queues.remove(&key);
                    running.finished = true;
                    return;
                };
                let n = queue.len().min(MOST_SHARED);
                queue.drain(..n).collect()
            };
            let (records, senders): (Vec<_>, Vec<_>) =
                waiting.into_iter().map(|w| (w.record, w.decision)).unzip();
            let batch = Batch {
                subject: &key.0,
                limit: key.1,
                records,
                key: None,
            };
            let reply = self.call(&redis, op, batch).await;
            for (i, sender) in senders.into_iter().enumerate() {
                let _ = sender.send(decision_of(&reply, i));
            }
        }
    }

    /// One call of the script on `batch`.
    async fn call(
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
        self.calls.fetch_add(1, Ordering::Relaxed);
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
    let refused = refused
        .first()
        .map(|us| Decision::from_script(limit, 0, 0, *us, now_us));
    Ok(Reply::Counted {
        decision,
        admitted,
        waits,
        refused,
    })
}

/// The decision on the `i`-th request of a shared call, as a call of its own at its turn
/// would have made it: an admitted one sees the requests admitted after it as not yet
/// counted; a refused one, like the first refused (a refused request is not counted, so the
/// ones after it wait as long).
fn decision_of(
    reply: &Result<Reply, RedisUnavailable>,
    i: usize,
) -> Result<Decision, RedisUnavailable> {
    match reply {
        Ok(Reply::Counted {
            decision,
            admitted,
            refused,
            ..
        }) => {
            if i < *admitted {
                let later = u32::try_from(admitted - 1 - i).unwrap_or(u32::MAX);
                Ok(Decision {
                    remaining: decision.remaining.saturating_add(later),
                    ..*decision
                })
            } else {
                refused.ok_or(RedisUnavailable)
            }
        }
        // Without a key the script never answers with one.
        Ok(Reply::Known(_)) | Err(_) => Err(RedisUnavailable),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis client, a limiter with a prefix of its own, and the intake subject of `token_id`.
    fn limiter_of_token(token_id: i64) -> (RedisClient, Arc<Limiter>, String) {
        let redis =
            RedisClient::new(&testkit::redis_url(), Duration::from_secs(2)).expect("redis client");
        let prefix = format!("test:shared-calls:{}:", Uuid::new_v4().simple());
        let limiter = Arc::new(Limiter::new(&prefix));
        let subject = limiter.intake_key(token_id);
        (redis, limiter, subject)
    }

    /// The requests counted in `subject`'s window; the window is removed.
    async fn counted_then_removed(redis: &RedisClient, subject: &str) -> u64 {
        let mut conn = redis.conn();
        let counted: u64 = redis::cmd("ZCARD")
            .arg(subject)
            .query_async(&mut conn)
            .await
            .expect("zcard");
        let _: () = redis::cmd("DEL")
            .arg(subject)
            .query_async(&mut conn)
            .await
            .expect("del");
        counted
    }

    /// Concurrent single requests of one subject share calls, and each gets the decision a
    /// call of its own would have given at its turn: exactly `limit` admitted, their
    /// `remaining` each value from `limit - 1` down to 0 once, the others refused with the
    /// wait until the oldest counted request leaves the window.
    #[tokio::test]
    async fn concurrent_single_requests_share_calls_and_keep_their_own_decisions() {
        let (redis, limiter, subject) = limiter_of_token(7);
        const REQUESTS: usize = 64;
        const LIMIT: u32 = 40;
        let decisions = futures_util::future::join_all((0..REQUESTS).map(|_| {
            let limiter = limiter.clone();
            let redis = redis.clone();
            let subject = subject.clone();
            async move { limiter.count(&redis, "test", &subject, LIMIT).await }
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("every request decided");

        let mut remaining: Vec<u32> = decisions
            .iter()
            .filter(|d| d.admitted)
            .map(|d| d.remaining)
            .collect();
        remaining.sort_unstable();
        assert_eq!(remaining, (0..LIMIT).collect::<Vec<_>>());
        for refused in decisions.iter().filter(|d| !d.admitted) {
            assert_eq!(refused.remaining, 0);
            assert!(
                refused.wait > WINDOW - Duration::from_secs(5) && refused.wait <= WINDOW,
                "a refused request waits until the first counted one leaves: {:?}",
                refused.wait
            );
        }
        let counted = counted_then_removed(&redis, &subject).await;
        assert_eq!(
            counted,
            u64::from(LIMIT),
            "only the admitted ones are counted"
        );
        assert!(
            limiter.calls() < REQUESTS as u64,
            "{} calls for {REQUESTS} concurrent requests",
            limiter.calls()
        );
    }

    /// Waves of requests that start and end calls of one subject from several threads: every
    /// request gets its decision (none is answered as if Redis were down) and is counted once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_request_is_decided_while_calls_start_and_end_on_several_threads() {
        let (redis, limiter, subject) = limiter_of_token(8);
        let mut decided = 0;
        for wave in 0..300 {
            let handles: Vec<_> = (0..1 + wave % 4)
                .map(|_| {
                    let limiter = limiter.clone();
                    let redis = redis.clone();
                    let subject = subject.clone();
                    tokio::spawn(
                        async move { limiter.count(&redis, "test", &subject, 100_000).await },
                    )
                })
                .collect();
            for handle in handles {
                let decision = handle.await.expect("task").expect("decided");
                assert!(decision.admitted);
                decided += 1;
            }
        }
        let counted = counted_then_removed(&redis, &subject).await;
        assert_eq!(counted, decided);
    }

    /// A task that finished leaves alone the queue a later request made after it (the
    /// request is answered by that queue's own task); one that ends unfinished removes its
    /// queue, so the requests waiting there are answered at once, as if Redis had none.
    #[tokio::test]
    async fn only_an_unfinished_task_takes_its_queue_down() {
        let key = ("subject".to_owned(), 10);
        let queues: Queues = Mutex::default();
        let (sender, mut decided) = oneshot::channel();
        queues.lock().expect("lock").insert(
            key.clone(),
            vec![Waiting {
                record: None,
                decision: sender,
            }],
        );
        drop(Running {
            queues: &queues,
            key: &key,
            finished: true,
        });
        assert!(queues.lock().expect("lock").contains_key(&key));
        assert!(decided.try_recv().is_err(), "still waiting for its answer");

        drop(Running {
            queues: &queues,
            key: &key,
            finished: false,
        });
        assert!(!queues.lock().expect("lock").contains_key(&key));
        assert!(
            matches!(decided.await, Err(oneshot::error::RecvError { .. })),
            "answered at once: no decision comes"
        );
    }
}
