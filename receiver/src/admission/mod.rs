//! Admission: whether a request gets in. Who sent it ([`token`]), whether it fits its
//! limits ([`limits`]), and whether it was seen before ([`intake_records`]).
//!
//! One Redis script (`admit.lua`) does every count. It admits an intake request's n leads
//! in one round trip (a single lead is n = 1): its `Idempotency-Key` looked up first (a
//! stored request is answered as before, never charged or judged again), then the token's
//! sliding-window limit, then, for the admitted valid leads, their `queued` intake records
//! and the claim of the key. A read and a failed authentication are counted by the same
//! script, with n = 1 and nothing else.
//!
//! The records are written before the publish: nobody knows an intake id until the 202, and
//! a failed publish deletes its record and releases the key's lock (a second round trip
//! only on that rare path). A request with an `Idempotency-Key` completes its key after the
//! broker's confirm; a plain request costs Redis at most one call, shared with the plain
//! requests of its token that arrive while the one before is under way.
//!
//! When Redis cannot count a request, the configured fail mode (`RATE_LIMIT_FAIL_MODE`)
//! decides, here and only here: open lets it through uncounted, closed refuses it. Nothing
//! here knows HTTP: a refusal is a [`Refusal`], which the HTTP layer answers.

pub mod intake_records;
pub(crate) mod limits;
pub mod token;

use crate::infra::prometheus;
use crate::infra::redis_client::{RedisClient, RedisUnavailable};
use intake_records::IntakeRecords;
use limits::{AuthFailureBlocks, Batch, Decision, KeyUse, Limiter, Reply};
use shared::config::{FailMode, RateLimitSettings, Settings};
use shared::intake::QueuedIntake;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use token::{Authenticator, Principal};
use tokio::sync::Semaphore;

/// Why a request is not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No known token; with the count of failed authentications from the client's address
    /// when Redis made it.
    Unauthenticated(Option<Decision>),
    /// Over the token's limit, or too many failed authentications from the client's
    /// address.
    RateLimited(Decision),
    /// What could not be reached (the database, or Redis in fail-closed mode).
    Unavailable(&'static str),
}

/// What admission decided for the leads of an intake request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// An earlier request with the same `Idempotency-Key` holds it: the value it left there
    /// (see [`IntakeRecords::interpret`]).
    Known(String),
    /// The first `admitted` leads (at least one) are counted against the token's limit,
    /// the valid ones among them recorded, and the key (if any, and if asked) claimed; the
    /// others would fit after `waits[i]` each. `decision` is what the rate-limit headers say.
    Counted {
        decision: Decision,
        admitted: usize,
        waits: Vec<Duration>,
    },
    /// Redis could not be asked and the limit fails open: every lead goes on, uncounted,
    /// unrecorded, its key neither looked up nor claimed.
    Uncounted,
}

/// Everything that admits requests: the token cache, the limits, the intake records.
pub(crate) struct Admission {
    /// Rate limits, `Idempotency-Key` claims and intake records.
    pub redis: RedisClient,
    /// Token → principal, cached.
    pub tokens: Arc<Authenticator>,
    /// The `queued` records and `Idempotency-Key` claims.
    pub records: IntakeRecords,
    limiter: Limiter,
    /// Client addresses refused for failed authentications.
    auth_blocks: AuthFailureBlocks,
    /// Token lookups of blocked addresses that miss the cache wait here, a few at a time,
    /// so a guessing client cannot flood the database (a valid token still gets through,
    /// and one the cache knows never waits).
    blocked_lookups: Semaphore,
    limits: RateLimitSettings,
}

impl Admission {
    pub fn new(redis: RedisClient, tokens: Arc<Authenticator>, settings: &Settings) -> Self {
        Self {
            limiter: Limiter::new(&settings.redis_prefix),
            records: IntakeRecords::new(&settings.redis_prefix, settings.receiver.publish_timeout),
            auth_blocks: AuthFailureBlocks::default(),
            blocked_lookups: Semaphore::new(2),
            limits: settings.rate_limit.clone(),
            redis,
            tokens,
        }
    }

    /// The principal of `token` sent from `ip`, or the refusal: unauthenticated, or rate
    /// limited for an address with too many failed attempts, each carrying the count of
    /// failures from the address where Redis made it (a valid token is not counted, so its
    /// principal comes alone). A valid token is never refused because of failures from its
    /// address (a shared NAT, or a proxy whose `X-Forwarded-For` is not trusted, puts many
    /// clients behind one address): the block only refuses tokens that turn out unknown,
    /// and its clients' lookups that miss the cache go to the database one or two at a time.
    pub async fn authenticate(
        &self,
        token: Option<String>,
        ip: IpAddr,
    ) -> Result<Principal, Refusal> {
        let blocked = self.auth_blocks.blocked(ip);
        let found = match token {
            Some(token) => match self.tokens.cached(&token).await {
                Some(found) => found,
                None => {
                    // Only lookups the database must answer are slowed for a blocked address.
                    let _slow_lane = match blocked {
                        Some(_) => Some(self.blocked_lookups.acquire().await),
                        None => None,
                    };
                    self.tokens.authenticate(&token).await.map_err(|error| {
                        tracing::warn!(%error, "Cannot authenticate: token store unavailable");
                        Refusal::Unavailable("database")
                    })?
                }
            },
            None => None,
        };
        if let Some(principal) = found {
            return Ok(principal);
        }
        if let Some(decision) = blocked {
            metrics::counter!(prometheus::RATE_LIMITED, "limit" => "auth_ip").increment(1);
            return Err(Refusal::RateLimited(decision));
        }
        Err(self.failed_authentication(ip).await)
    }

    /// Counts a failed authentication from `ip` against its limit: unauthenticated (with
    /// the decision), or rate limited once the address has too many, which also blocks it
    /// for a while.
    pub async fn failed_authentication(&self, ip: IpAddr) -> Refusal {
        let limit = self.limits.auth_failures_per_minute;
        let subject = self.limiter.auth_failures_key(ip);
        match self
            .limiter
            .count(&self.redis, "auth_failures", &subject, limit)
            .await
        {
            Ok(decision) if decision.admitted => {
                tracing::info!(client_ip = %ip, "Unauthenticated request");
                Refusal::Unauthenticated(Some(decision))
            }
            Ok(decision) => {
                tracing::warn!(client_ip = %ip, "Too many failed authentications; client blocked");
                metrics::counter!(prometheus::RATE_LIMITED, "limit" => "auth_ip").increment(1);
                self.auth_blocks.block(ip, decision);
                Refusal::RateLimited(decision)
            }
            Err(_) => Refusal::Unauthenticated(None),
        }
    }

    /// The per-token intake limit of `principal`'s requests.
    pub fn intake_limit(&self, principal: &Principal) -> u32 {
        principal
            .rate_limit_per_minute
            .unwrap_or(self.limits.per_minute)
    }

    /// Admits as many of an intake request's leads as the token's limit allows, in order, in
    /// one Redis call: `records` holds one entry per lead (its `queued` record, `None` for
    /// an invalid lead), and `key` the request's `Idempotency-Key`. Refused when no lead
    /// fits.
    pub async fn admit(
        &self,
        principal: &Principal,
        records: &[Option<QueuedIntake>],
        key: Option<KeyUse<'_>>,
    ) -> Result<Admitted, Refusal> {
        let limit = self.intake_limit(principal);
        let subject = self.limiter.intake_key(principal.token_id);
        let written = records
            .iter()
            .map(|record| {
                record
                    .as_ref()
                    .map(|record| {
                        serde_json::to_string(record)
                            .map(|json| (self.records.status_key(record.intake_id), json))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>();
        let counted = match written {
            Ok(records) => {
                let batch = Batch {
                    subject: &subject,
                    limit,
                    records,
                    key,
                };
                self.limiter.run(&self.redis, "admission", batch).await
            }
            Err(_) => Err(RedisUnavailable),
        };
        match counted {
            Ok(Reply::Known(value)) => Ok(Admitted::Known(value)),
            Ok(Reply::Counted {
                decision,
                admitted: 0,
                ..
            }) => {
                metrics::counter!(prometheus::RATE_LIMITED, "limit" => "token").increment(1);
                Err(Refusal::RateLimited(decision))
            }
            Ok(Reply::Counted {
                decision,
                admitted,
                waits,
                ..
            }) => Ok(Admitted::Counted {
                decision,
                admitted,
                waits,
            }),
            Err(_) => self.uncounted().map(|()| Admitted::Uncounted),
        }
    }

    /// Counts a read-API request of `principal` against the token's read limit: its
    /// decision, or the refusal once the limit is used up (no decision while Redis is
    /// unavailable and the limit fails open).
    pub async fn count_read(&self, principal: &Principal) -> Result<Option<Decision>, Refusal> {
        let subject = self.limiter.read_key(principal.token_id);
        let limit = self.limits.read_per_minute;
        match self
            .limiter
            .count(&self.redis, "read_rate_limit", &subject, limit)
            .await
        {
            Ok(decision) if decision.admitted => Ok(Some(decision)),
            Ok(decision) => {
                metrics::counter!(prometheus::RATE_LIMITED, "limit" => "read").increment(1);
                Err(Refusal::RateLimited(decision))
            }
            Err(_) => self.uncounted().map(|()| None),
        }
    }

    /// The fail mode, for a request Redis could not count: open lets it through (and counts
    /// that it did), closed refuses it.
    fn uncounted(&self) -> Result<(), Refusal> {
        match self.limits.fail_mode {
            FailMode::Open => {
                metrics::counter!(prometheus::RATE_LIMIT_FAIL_OPEN).increment(1);
                Ok(())
            }
            FailMode::Closed => Err(Refusal::Unavailable("rate limiter")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A blocked address waits in the slow lane only for lookups the database must answer:
    /// with every permit taken, a token the cache knows is answered at once and an unknown
    /// one waits.
    #[tokio::test]
    async fn a_blocked_address_waits_only_for_tokens_the_cache_does_not_know() {
        let db = testkit::TestDb::new().await;
        let mut settings = testkit::settings(&db);
        settings.rate_limit.auth_failures_per_minute = 1;
        let account = leadctl::admin::create_account(&db.conn, "Acme", "US", None)
            .await
            .expect("account")
            .id;
        let user = leadctl::admin::create_user(&db.conn, account, "Ann", None, true, true)
            .await
            .expect("user")
            .id;
        let token = leadctl::admin::create_token(&db.conn, user, None)
            .await
            .expect("token")
            .token;
        let tokens = Arc::new(Authenticator::new(
            db.conn.clone(),
            Duration::from_secs(30),
            Duration::from_secs(300),
        ));
        let redis = RedisClient::new(&settings.redis_url, Duration::from_secs(1)).expect("redis");
        let admission = Admission::new(redis, tokens, &settings);
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        // The token is looked up once (and cached); then the address guesses until blocked.
        assert!(
            admission
                .authenticate(Some(token.clone()), ip)
                .await
                .is_ok()
        );
        for _ in 0..3 {
            let _ = admission.authenticate(Some("guess".into()), ip).await;
        }
        assert!(
            admission.auth_blocks.blocked(ip).is_some(),
            "the address is blocked"
        );

        let _held = admission
            .blocked_lookups
            .acquire_many(2)
            .await
            .expect("permits");
        let known = tokio::time::timeout(
            Duration::from_secs(2),
            admission.authenticate(Some(token), ip),
        )
        .await;
        assert!(
            matches!(known, Ok(Ok(_))),
            "a cached valid token is answered without the slow lane"
        );
        let unknown = tokio::time::timeout(
            Duration::from_millis(300),
            admission.authenticate(Some("another guess".into()), ip),
        )
        .await;
        assert!(unknown.is_err(), "an unknown token waits for the slow lane");
    }
}
