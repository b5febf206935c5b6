//! What the receiver writes to Redis about accepted intakes: the `queued` record that
//! `GET /api/v1/intakes/{id}` reads until the worker's own record exists, and
//! `Idempotency-Key` claims, so a client's retry of the same request within 24 h gets the
//! first 202 again instead of a second message in the queue.
//!
//! A key is looked up before anything else about a request, and claimed (`pending`) with
//! the rate limit and the record in one script ([`crate::admission`]); it is completed with
//! the intake id after the broker's confirm (and, for a synchronous request, again with the
//! outcome it answered with), and a failed publish releases it. A second
//! request arriving while the first is still being published gets 409 rather than a second
//! publish.

use crate::outcomes::Outcome;
use crate::store::{Redis, Unavailable};
use sha2::{Digest, Sha256};
use shared::intake::{IntakeStatus, QueuedIntake};
use std::time::Duration;
use uuid::Uuid;

/// How long an `Idempotency-Key` is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Deletes the key only if it still holds our claim.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

const PENDING: &str = "pending:";

/// What an earlier request with the same key left on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// An earlier request with this key was accepted as this intake; a synchronous one
    /// that heard the worker's outcome was answered with it.
    Accepted {
        intake_id: Uuid,
        answered: Option<Outcome>,
    },
    /// An earlier request with this key is still being published.
    InProgress,
}

/// A claimed key, to complete or release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    redis_key: String,
    pending: String,
}

impl ClaimedKey {
    pub fn redis_key(&self) -> &str {
        &self.redis_key
    }

    /// The value that marks the key as held by a request still being published.
    pub fn pending(&self) -> String {
        self.pending.clone()
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
    release: redis::Script,
    /// How long a claim outlives a publish that never finished (a crashed process).
    claim_ttl: Duration,
}

impl IntakeRecords {
    /// `publish_timeout` bounds how long a claim can stay pending.
    pub fn new(redis_prefix: &str, publish_timeout: Duration) -> Self {
        Self {
            prefix: redis_prefix.to_owned(),
            release: redis::Script::new(RELEASE),
            claim_ttl: publish_timeout + Duration::from_secs(5),
        }
    }

    /// The key of `intake_id`'s `queued` record.
    pub fn status_key(&self, intake_id: Uuid) -> String {
        shared::keys::intake_status(&self.prefix, intake_id)
    }

    /// The claim `intake_id` makes on `key` of `token_id` (taken by [`crate::admission`]).
    pub fn claim_for(&self, token_id: i64, key: &str, intake_id: Uuid) -> ClaimedKey {
        ClaimedKey {
            redis_key: format!(
                "{}idem:{token_id}:{}",
                self.prefix,
                hex::encode(Sha256::digest(key.as_bytes()))
            ),
            pending: format!("{PENDING}{intake_id}"),
        }
    }

    pub fn claim_ttl_ms(&self) -> u64 {
        u64::try_from(self.claim_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// What the value an earlier request left on a key says: `<intake id>` for a 202, or
    /// `<intake id> <status> <contact id or ->` for a synchronous answer with the outcome.
    pub fn interpret(value: &str) -> Claim {
        if value.starts_with(PENDING) {
            return Claim::InProgress;
        }
        let mut parts = value.split(' ');
        let intake_id = parts.next().and_then(|id| Uuid::parse_str(id).ok());
        let answered = match (parts.next(), parts.next()) {
            (None, _) => Some(None),
            (Some(status), Some(contact)) => IntakeStatus::parse(status).map(|status| {
                Some(Outcome {
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
        redis: &Redis,
        key: &ClaimedKey,
        intake_id: Uuid,
        answered: Option<Outcome>,
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
                redis::cmd("SET")
                    .arg(&key.redis_key)
                    .arg(value)
                    .arg("PX")
                    .arg(KEY_TTL.as_millis() as u64)
                    .query_async::<()>(&mut conn)
                    .await
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
    /// gives its key (if it claimed one) back, so the client's retry can use it.
    pub async fn abandon(&self, redis: &Redis, intake_id: Uuid, key: Option<&ClaimedKey>) {
        let mut conn = redis.conn();
        let status_key = self.status_key(intake_id);
        let _ = redis
            .run("intake_record", async {
                let mut pipe = redis::pipe();
                pipe.cmd("DEL").arg(&status_key).ignore();
                if let Some(key) = key {
                    pipe.invoke_script(self.release.key(&key.redis_key).arg(&key.pending))
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await
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
                answered: Some(Outcome {
                    status: IntakeStatus::Created,
                    contact_id: Some(42)
                })
            }
        );
        assert_eq!(
            IntakeRecords::interpret(&format!("{id} dead_lettered -")),
            Claim::Accepted {
                intake_id: id,
                answered: Some(Outcome {
                    status: IntakeStatus::DeadLettered,
                    contact_id: None
                })
            }
        );
        assert_eq!(
            IntakeRecords::interpret(&format!("pending:{id}")),
            Claim::InProgress
        );
        for garbage in [
            "",
            "nope",
            &format!("{id} sideways 1"),
            &format!("{id} created"),
        ] {
            assert_eq!(
                IntakeRecords::interpret(garbage),
                Claim::InProgress,
                "{garbage}"
            );
        }
    }
}
