//! What the receiver writes to Redis about accepted intakes: the `queued` record that
//! `GET /api/v1/intakes/{id}` reads until the worker's own record exists, and
//! `Idempotency-Key` claims, so a client's retry of the same request within 24 h gets the
//! first 202 again instead of a second message in the queue.
//!
//! A key is looked up before anything else about a request, and claimed with the rate limit
//! and the records in one script ([`super::limits`]). A claim is two keys: the key itself,
//! holding `open:<intake id>` until the broker confirmed that intake, then the intake id
//! (and, for a synchronous request, again with the outcome it answered with), and a short
//! lock held while one request publishes (a second request meanwhile gets 409 rather than a
//! second publish). A publish that ends without a confirm — refused, timed out, or the
//! process killed — may still have reached the queue, so the key is not given up: the lock
//! goes (or expires), the key stays `open:<intake id>`, and the client's retry publishes
//! *the same intake id* again. The worker does an intake id only once, so whichever copy it
//! sees first is the lead, and a retry never doubles it.
//!
//! A bulk request's key is claimed the same way, except that its claim expires with its
//! lock: its leads get new intake ids on a retry, so a key whose request died mid-publish
//! is free again once the lock is gone. Its completed value is the whole 207.

use crate::infra::redis_client::{RedisClient, RedisUnavailable};
use crate::infra::waiters::Answer;
use sha2::{Digest, Sha256};
use shared::intake::{IntakeStatus, QueuedIntake};
use std::time::Duration;
use uuid::Uuid;

/// How long an `Idempotency-Key` is remembered.
pub(crate) const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted `Idempotency-Key`.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// Completes a claimed key with the answer a retry gets (`complete.lua`).
const COMPLETE: &str = include_str!("complete.lua");
/// Deletes a `queued` record or gives a claimed key back, with the lock if it is still
/// ours (`release.lua`).
const RELEASE: &str = include_str!("release.lua");

/// What the admission script answers for a key whose lock is held.
pub(crate) const PENDING: &str = "pending:";
/// Prefix of a key whose intake was published but not (yet) confirmed.
const OPEN: &str = "open:";

/// What an earlier request with the same key left on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// An earlier request with this key was accepted as this intake; a synchronous one
    /// that heard the worker's outcome was answered with it.
    Accepted {
        intake_id: Uuid,
        answered: Option<Answer>,
    },
    /// An earlier request with this key is still being published.
    InProgress,
    /// An earlier request with this key published this intake without a confirm (it may
    /// be in the queue): a retry publishes the same intake id again.
    Unconfirmed(Uuid),
}

/// A claimed key, to complete or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    redis_key: String,
    lock_key: String,
    /// The lock's value: this request's own, so a late release cannot free another's lock.
    holder: String,
    open: String,
    /// How long the key holds `open` once claimed.
    open_ttl: Duration,
    /// How long the lock outlives a publish that never finished (a crashed process).
    lock_ttl: Duration,
}

impl ClaimedKey {
    pub fn redis_key(&self) -> &str {
        &self.redis_key
    }

    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// The key's value while its intake is not confirmed (`open:<intake id>`).
    pub fn open(&self) -> &str {
        &self.open
    }

    /// How long the key holds [`Self::open`] once claimed, ms.
    pub(crate) fn open_ttl_ms(&self) -> u64 {
        millis(self.open_ttl)
    }

    /// How long the lock outlives a publish that never finished, ms.
    pub(crate) fn lock_ttl_ms(&self) -> u64 {
        millis(self.lock_ttl)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A syntactically valid `Idempotency-Key`: 1–255 printable ASCII characters.
pub(crate) fn valid_key(key: &str) -> bool {
    !key.trim().is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub struct IntakeRecords {
    prefix: String,
    complete: redis::Script,
    release: redis::Script,
    /// How long a lock outlives a publish that never finished (a crashed process).
    claim_ttl: Duration,
}

impl IntakeRecords {
    /// `publish_timeout` bounds how long a claim can stay pending.
    pub fn new(redis_prefix: &str, publish_timeout: Duration) -> Self {
        Self {
            prefix: redis_prefix.to_owned(),
            complete: redis::Script::new(COMPLETE),
            release: redis::Script::new(RELEASE),
            claim_ttl: publish_timeout + Duration::from_secs(5),
        }
    }

    /// The key of `intake_id`'s `queued` record.
    pub(crate) fn status_key(&self, intake_id: Uuid) -> String {
        shared::keys::intake_status(&self.prefix, intake_id)
    }

    /// The claim `intake_id` makes on `key` of `token_id`: `open:<intake id>` for
    /// [`KEY_TTL`], so a retry after a publish without a confirm publishes that intake again.
    pub fn claim_for(&self, token_id: i64, key: &str, intake_id: Uuid) -> ClaimedKey {
        self.claim(token_id, key, intake_id, KEY_TTL)
    }

    /// The claim of a bulk request on `key` of `token_id`: apart from single leads' keys,
    /// and held only as long as its lock.
    pub(crate) fn claim_for_bulk(&self, token_id: i64, key: &str) -> ClaimedKey {
        self.claim(
            token_id,
            &format!("bulk:{key}"),
            Uuid::now_v7(),
            self.claim_ttl,
        )
    }

    fn claim(&self, token_id: i64, key: &str, intake_id: Uuid, open_ttl: Duration) -> ClaimedKey {
        let redis_key = format!(
            "{}idem:{token_id}:{}",
            self.prefix,
            hex::encode(Sha256::digest(key.as_bytes()))
        );
        ClaimedKey {
            lock_key: format!("{redis_key}:lock"),
            redis_key,
            holder: Uuid::new_v4().simple().to_string(),
            open: format!("{OPEN}{intake_id}"),
            open_ttl,
            lock_ttl: self.claim_ttl,
        }
    }

    /// How long a lock outlives a publish that never finished (a crashed process), ms.
    pub fn claim_ttl_ms(&self) -> u64 {
        millis(self.claim_ttl)
    }

    /// How long a key is remembered, ms.
    pub fn key_ttl_ms(&self) -> u64 {
        millis(KEY_TTL)
    }

    /// What the value an earlier request left on a key says: `<intake id>` for a 202,
    /// `<intake id> <status> <contact id or ->` for a synchronous answer with the outcome,
    /// `open:<intake id>` for a publish without a confirm.
    pub(crate) fn interpret(value: &str) -> Claim {
        if value.starts_with(PENDING) {
            return Claim::InProgress;
        }
        if let Some(id) = value.strip_prefix(OPEN) {
            return Uuid::parse_str(id).map_or(Claim::InProgress, Claim::Unconfirmed);
        }
        let mut parts = value.split(' ');
        let intake_id = parts.next().and_then(|id| Uuid::parse_str(id).ok());
        let answered = match (parts.next(), parts.next()) {
            (None, _) => Some(None),
            (Some(status), Some(contact)) => IntakeStatus::parse(status).map(|status| {
                Some(Answer {
                    status,
                    contact_id: contact.parse().ok(),
                })
            }),
            _ => None,
        };
        match (intake_id, answered) {
            (Some(intake_id), Some(answered)) => Claim::Accepted {
                intake_id,
                answered,
            },
            // Not ours to interpret: behave as if another request held it.
            _ => Claim::InProgress,
        }
    }

    /// The value a single lead's key keeps once the broker confirmed its intake, and again
    /// with the outcome a synchronous request answered with (see [`Self::interpret`]).
    pub(crate) fn key_value(intake_id: Uuid, answered: Option<Answer>) -> String {
        match answered {
            None => intake_id.to_string(),
            Some(o) => format!(
                "{intake_id} {} {}",
                o.status.as_str(),
                o.contact_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string())
            ),
        }
    }

    /// Completes a claimed key with `answer`: a retry within [`KEY_TTL`] gets that answer.
    pub(crate) async fn complete(
        &self,
        redis: &RedisClient,
        key: &ClaimedKey,
        answer: &str,
    ) -> Result<(), RedisUnavailable> {
        let mut conn = redis.conn();
        redis
            .run("idempotency", async {
                self.complete
                    .key(&key.redis_key)
                    .key(&key.lock_key)
                    .arg(answer)
                    .arg(self.key_ttl_ms())
                    .arg(&key.holder)
                    .invoke_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Gives a claimed key back: nothing of its request was queued, so a retry is a new
    /// request.
    pub(crate) async fn release(&self, redis: &RedisClient, key: &ClaimedKey) {
        let mut conn = redis.conn();
        let _ = redis
            .run("idempotency", async {
                self.release
                    .key(&key.redis_key)
                    .key(&key.lock_key)
                    .arg(&key.holder)
                    .invoke_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    /// The `queued` record of `intake_id`, if this receiver (or another) accepted it and the
    /// record has not expired.
    pub(crate) async fn queued(
        &self,
        redis: &RedisClient,
        intake_id: Uuid,
    ) -> Result<Option<QueuedIntake>, RedisUnavailable> {
        let status_key = self.status_key(intake_id);
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

    /// Undoes the admission of a lead whose publish failed: deletes its `queued` record and
    /// releases its key's lock (if it claimed one), so the client's retry can publish the
    /// same intake id again at once. The key stays `open:<intake id>`: the broker may have
    /// stored the message even though no confirm came.
    pub(crate) async fn abandon(
        &self,
        redis: &RedisClient,
        intake_id: Uuid,
        key: Option<&ClaimedKey>,
    ) {
        let mut conn = redis.conn();
        let status_key = self.status_key(intake_id);
        let _ = redis
            .run("intake_record", async {
                let mut invocation = self.release.key(&status_key);
                if let Some(key) = key {
                    invocation.key(&key.lock_key).arg(&key.holder);
                }
                invocation.invoke_async::<()>(&mut conn).await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_answers_read_back_as_they_were_given() {
        let id = Uuid::now_v7();
        assert_eq!(
            IntakeRecords::interpret(&id.to_string()),
            Claim::Accepted {
                intake_id: id,
                answered: None
            }
        );
        assert_eq!(
            IntakeRecords::interpret(&format!("{id} created 42")),
            Claim::Accepted {
                intake_id: id,
                answered: Some(Answer {
                    status: IntakeStatus::Created,
                    contact_id: Some(42)
                })
            }
        );
        assert_eq!(
            IntakeRecords::interpret(&format!("{id} dead_lettered -")),
            Claim::Accepted {
                intake_id: id,
                answered: Some(Answer {
                    status: IntakeStatus::DeadLettered,
                    contact_id: None
                })
            }
        );
        assert_eq!(IntakeRecords::interpret(PENDING), Claim::InProgress);
        assert_eq!(
            IntakeRecords::interpret(&format!("open:{id}")),
            Claim::Unconfirmed(id)
        );
        for garbage in [
            "",
            "nope",
            &format!("{id} sideways 1"),
            &format!("{id} created"),
            "open:nope",
        ] {
            assert_eq!(
                IntakeRecords::interpret(garbage),
                Claim::InProgress,
                "{garbage}"
            );
        }
    }
}
