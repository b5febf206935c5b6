//! What the receiver writes to Redis about accepted intakes: the `queued` record that
//! `GET /api/v1/intakes/{id}` reads until the worker's own record exists, and
//! `Idempotency-Key` claims, so a client's retry of the same request within 24 h gets the
//! first 202 again instead of a second message in the queue.
//!
//! A key is claimed (`pending`) before publishing and completed with the intake id after
//! the broker's confirm; a failed publish releases it. A second request arriving while the
//! first is still being published gets 409 rather than a second publish.

use crate::store::{Redis, Unavailable};
use sha2::{Digest, Sha256};
use shared::intake::{QUEUED_RECORD_TTL_SECS, QueuedIntake};
use std::time::Duration;
use uuid::Uuid;

/// How long an `Idempotency-Key` is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Returns the stored value, or claims the key with ARGV[1] for ARGV[2] ms and returns nil.
const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes the key only if it still holds our claim.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const PENDING: &str = "pending:";

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours; publish, then [`IntakeRecords::accepted`] or [`IntakeRecords::release`].
    Claimed(ClaimedKey),
    /// An earlier request with this key was accepted as this intake.
    Accepted(Uuid),
    /// An earlier request with this key is still being published.
    InProgress,
}

/// A claimed key, to complete or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    redis_key: String,
    pending: String,
}

/// A syntactically valid `Idempotency-Key`: 1–255 printable ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.trim().is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub struct IntakeRecords {
    prefix: String,
    claim: redis::Script,
    release: redis::Script,
    /// How long a claim outlives a publish that never finished (a crashed process).
    claim_ttl: Duration,
}

impl IntakeRecords {
    /// `publish_timeout` bounds how long a claim can stay pending.
    pub fn new(redis_prefix: &str, publish_timeout: Duration) -> Self {
        Self {
            prefix: redis_prefix.to_owned(),
            claim: redis::Script::new(CLAIM),
            release: redis::Script::new(RELEASE),
            claim_ttl: publish_timeout + Duration::from_secs(5),
        }
    }

    /// Claims `key` of `token_id` for `intake_id`, or finds who has it.
    pub async fn claim(
        &self,
        redis: &Redis,
        token_id: i64,
        key: &str,
        intake_id: Uuid,
    ) -> Result<Claim, Unavailable> {
        let redis_key = format!(
            "{}idem:{token_id}:{}",
            self.prefix,
            hex::encode(Sha256::digest(key.as_bytes()))
        );
        let pending = format!("{PENDING}{intake_id}");
        let mut conn = redis.conn();
        let found: Option<String> = redis
            .run("idempotency", async {
                self.claim
                    .key(&redis_key)
                    .arg(&pending)
                    .arg(self.claim_ttl.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match found {
            None => Claim::Claimed(ClaimedKey { redis_key, pending }),
            Some(v) if v.starts_with(PENDING) => Claim::InProgress,
            Some(v) => match Uuid::parse_str(&v) {
                Ok(id) => Claim::Accepted(id),
                // Not ours to interpret: behave as if another request held it.
                Err(_) => Claim::InProgress,
            },
        })
    }

    /// Records an intake the broker confirmed: its `queued` status and, if the request had
    /// one, its idempotency key — in one round trip.
    pub async fn accepted(
        &self,
        redis: &Redis,
        record: &QueuedIntake,
        key: Option<&ClaimedKey>,
    ) -> Result<(), Unavailable> {
        let status_key = shared::keys::intake_status(&self.prefix, record.intake_id);
        let json = serde_json::to_string(record).map_err(|_| Unavailable)?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&status_key)
            .arg(json)
            .arg("EX")
            .arg(QUEUED_RECORD_TTL_SECS)
            .ignore();
        if let Some(key) = key {
            pipe.cmd("SET")
                .arg(&key.redis_key)
                .arg(record.intake_id.to_string())
                .arg("PX")
                .arg(KEY_TTL.as_millis() as u64)
                .ignore();
        }
        let mut conn = redis.conn();
        redis
            .run("intake_record", async {
                pipe.query_async::<()>(&mut conn).await
            })
            .await
    }

    /// The `queued` record of `intake_id`, if this receiver (or another) accepted it and the
    /// record has not expired.
    pub async fn queued(
        &self,
        redis: &Redis,
        intake_id: Uuid,
    ) -> Result<Option<QueuedIntake>, Unavailable> {
        let status_key = shared::keys::intake_status(&self.prefix, intake_id);
        let mut conn = redis.conn();
        let found: Option<String> = redis
            .run("intake_record", async {
                redis::cmd("GET")
                    .arg(&status_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(found.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Gives a claimed key back after a failed publish, so the client's retry can use it.
    pub async fn release(&self, redis: &Redis, key: &ClaimedKey) {
        let mut conn = redis.conn();
        let _ = redis
            .run("idempotency", async {
                self.release
                    .key(&key.redis_key)
                    .arg(&key.pending)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }
}
