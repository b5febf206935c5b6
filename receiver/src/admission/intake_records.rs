//! What the receiver writes to Redis about accepted intakes: the `queued` record that
//! `GET /api/v1/intakes/{id}` reads until the worker's own record exists, and
//! `Idempotency-Key` claims, so a client's retry of the same request within 24 h gets the
//! first 202 again instead of a second message in the queue.
//!
//! A key is looked up before anything else about a request, and claimed with the rate limit
//! and the record in one script ([`crate::admission`]). A claim is two keys: the key itself,
//! holding `open:<intake id>` until the broker confirmed that intake, then the intake id
//! (and, for a synchronous request, again with the outcome it answered with), and a short
//! lock held while one request publishes (a second request meanwhile gets 409 rather than a
//! second publish). A publish that ends without a confirm — refused, timed out, or the
//! process killed — may still have reached the queue, so the key is not given up: the lock
//! goes (or expires), the key stays `open:<intake id>`, and the client's retry publishes
//! *the same intake id* again. The worker does an intake id only once, so whichever copy it
//! sees first is the lead, and a retry never doubles it.

use crate::infra::redis_client::{RedisClient, Unavailable};
use crate::infra::waiters::Answer;
use sha2::{Digest, Sha256};
use shared::intake::{IntakeStatus, QueuedIntake};
use std::time::Duration;
use uuid::Uuid;

/// How long an `Idempotency-Key` is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// KEYS: the key, its lock. ARGV: the key's value, its TTL in ms, the lock's holder.
/// Completes the key; deletes the lock only if it is still ours.
const COMPLETE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
";

/// KEYS: the `queued` record, the lock (optional). ARGV: the lock's holder. Deletes the
/// record, and the lock only if it is still ours.
const ABANDON: &str = r"
redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
";

/// What the admission script answers for a key whose lock is held.
pub const PENDING: &str = "pending:";
/// Prefix of a key whose intake was published but not (yet) confirmed.
const OPEN: &str = "open:";

/// What an earlier request with the same key left on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
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
}

impl ClaimedKey {
    pub fn redis_key(&self) -> &str {
        &self.redis_key
    }

    pub fn lock_key(&self) -> &str {
        &self.lock_key
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The key's value while its intake is not confirmed (`open:<intake id>`).
    pub fn open(&self) -> &str {
        &self.open
    }
}

/// A syntactically valid `Idempotency-Key`: 1–255 printable ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.trim().is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub struct IntakeRecords {
    prefix: String,
    complete: redis::Script,
    abandon: redis::Script,
    /// How long a lock outlives a publish that never finished (a crashed process).
    claim_ttl: Duration,
}

impl IntakeRecords {
    /// `publish_timeout` bounds how long a claim can stay pending.
    pub fn new(redis_prefix: &str, publish_timeout: Duration) -> Self {
        Self {
            prefix: redis_prefix.to_owned(),
            complete: redis::Script::new(COMPLETE),
            abandon: redis::Script::new(ABANDON),
            claim_ttl: publish_timeout + Duration::from_secs(5),
        }
    }

    /// The key of `intake_id`'s `queued` record.
    pub fn status_key(&self, intake_id: Uuid) -> String {
        shared::keys::intake_status(&self.prefix, intake_id)
    }

    /// The claim `intake_id` makes on `key` of `token_id` (taken by [`crate::admission`]).
    pub fn claim_for(&self, token_id: i64, key: &str, intake_id: Uuid) -> ClaimedKey {
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
        }
    }

    /// How long a lock outlives a publish that never finished (a crashed process), ms.
    pub fn claim_ttl_ms(&self) -> u64 {
        u64::try_from(self.claim_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// How long a key is remembered, ms.
    pub fn key_ttl_ms(&self) -> u64 {
        u64::try_from(KEY_TTL.as_millis()).unwrap_or(u64::MAX)
    }

    /// What the value an earlier request left on a key says: `<intake id>` for a 202,
    /// `<intake id> <status> <contact id or ->` for a synchronous answer with the outcome,
    /// `open:<intake id>` for a publish without a confirm.
    pub fn interpret(value: &str) -> Claim {
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

    /// Completes a claimed key once the broker confirmed its intake, and again with the
    /// outcome a synchronous request answered with: a retry within [`KEY_TTL`] gets the
    /// same answer.
    pub async fn complete(
        &self,
        redis: &RedisClient,
        key: &ClaimedKey,
        intake_id: Uuid,
        answered: Option<Answer>,
    ) -> Result<(), Unavailable> {
        let value = match answered {
            None => intake_id.to_string(),
            Some(o) => format!(
                "{intake_id} {} {}",
                o.status.as_str(),
                o.contact_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string())
            ),
        };
        let mut conn = redis.conn();
        redis
            .run("idempotency", async {
                self.complete
                    .key(&key.redis_key)
                    .key(&key.lock_key)
                    .arg(value)
                    .arg(self.key_ttl_ms())
                    .arg(&key.holder)
                    .invoke_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// The `queued` record of `intake_id`, if this receiver (or another) accepted it and the
    /// record has not expired.
    pub async fn queued(
        &self,
        redis: &RedisClient,
        intake_id: Uuid,
    ) -> Result<Option<QueuedIntake>, Unavailable> {
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
    pub async fn abandon(&self, redis: &RedisClient, intake_id: Uuid, key: Option<&ClaimedKey>) {
        let mut conn = redis.conn();
        let status_key = self.status_key(intake_id);
        let _ = redis
            .run("intake_record", async {
                let mut invocation = self.abandon.key(&status_key);
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
