//! Who sent a request: the API token (from the body, the query string or
//! `Authorization: Bearer`), looked up by its SHA-256 in PostgreSQL and cached in-process.
//!
//! Two bounded caches keep lookups for at most `token_cache_ttl` (≤ 30 s): one of known
//! tokens and one of unknown ones, so a flood of random tokens evicts only other unknown
//! tokens, never a customer's. Each entry carries the instant it stops being good, read
//! from a [`Clock`] (the system's, or a test's), and is dropped when read past it; the
//! caches' own expiry only frees the memory. Concurrent lookups of one token share a single
//! database query. A revocation takes effect at once: `leadctl token revoke` announces the token's
//! hash on Redis ([`shared::keys::token_changes_channel`]) and [`Authenticator::forget`]
//! drops it; the TTL bounds a revocation whose announcement was lost.
//!
//! While the database cannot be reached, a token's last good lookup is used for at most
//! `token_stale` past its TTL (re-checked every few seconds); after that, and for
//! tokens never seen, requests get 503.

use crate::infra::prometheus;
use http::HeaderMap;
use moka::Expiry;
use moka::future::Cache;
use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};
use shared::mapping::TokenSources;
use shared::phone::Region;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the token caches read the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The token's identity: the only account its leads may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub user_id: i64,
    pub account_id: i64,
    /// The account's region for numbers without a country code.
    pub region: Region,
    /// The account's own intake limit per window, if it has one.
    pub rate_limit_per_minute: Option<u32>,
    /// The token's field mapping, default actions and Google Ads key.
    pub sources: Arc<TokenSources>,
}

/// The token lookup failed for a reason other than the token (the database is down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("Failed to look up the API token: {0}")]
pub struct LookupError(String);

/// The bearer token of an `Authorization` header, if it has one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The longest a lookup may be cached: a revoked token whose announcement was lost stops
/// working within this.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most in each cache (known tokens, unknown tokens, last good lookups).
const MAX_ENTRIES: u64 = 100_000;
/// While the database is unreachable, how long a stale entry is served before the database
/// is tried again for that token.
const STALE_RETRY: Duration = Duration::from_secs(5);

/// A known token's cached lookup, fresh for `fresh_for` from when it was stored, that is
/// until `fresh_until` on the authenticator's clock.
#[derive(Debug, Clone)]
struct KnownToken {
    principal: Principal,
    fresh_for: Duration,
    fresh_until: Instant,
}

/// Each known entry expires after its own `fresh_for`.
struct FreshFor;

impl Expiry<String, KnownToken> for FreshFor {
    fn expire_after_create(&self, _: &String, value: &KnownToken, _: Instant) -> Option<Duration> {
        Some(value.fresh_for)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &KnownToken,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.fresh_for)
    }
}

/// Why a shared lookup produced no known entry.
#[derive(Debug)]
enum Miss {
    Unknown,
    Unreachable(LookupError),
}

pub struct Authenticator {
    db: DatabaseConnection,
    ttl: Duration,
    stale: Duration,
    clock: Arc<dyn Clock>,
    /// Token hash → principal, for tokens the database knows. Never the token itself.
    known: Cache<String, KnownToken>,
    /// Hashes of tokens the database does not know (or no longer knows), each with the
    /// instant that answer expires.
    unknown: Cache<String, Instant>,
    /// Each known token's last good lookup, usable until `ttl + stale` after it, for outages.
    last_good: Cache<String, (Principal, Instant)>,
    /// Token queries sent to the database so far.
    queries: AtomicU64,
}

#[derive(Debug, FromQueryResult)]
struct TokenRow {
    id: i64,
    user_id: i64,
    account_id: i64,
    default_region: String,
    rate_limit_per_minute: Option<i32>,
    field_map: serde_json::Value,
    default_actions: serde_json::Value,
    google_key: Option<String>,
}

impl Authenticator {
    /// `ttl` is capped at [`MAX_TTL`]: revocation must take effect within 30 s even when its
    /// announcement is lost. `stale` bounds how long past its TTL a last good lookup is used
    /// while the database is unreachable.
    pub fn new(db: DatabaseConnection, ttl: Duration, stale: Duration) -> Self {
        Self::with_capacity(db, ttl, stale, MAX_ENTRIES)
    }

    /// Like [`Authenticator::new`], keeping at most `capacity` entries in each cache.
    pub fn with_capacity(
        db: DatabaseConnection,
        ttl: Duration,
        stale: Duration,
        capacity: u64,
    ) -> Self {
        Self::build(db, ttl, stale, capacity, Arc::new(SystemClock))
    }

    /// Like [`Authenticator::new`], reading the time from `clock`.
    pub fn with_clock(
        db: DatabaseConnection,
        ttl: Duration,
        stale: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::build(db, ttl, stale, MAX_ENTRIES, clock)
    }

    fn build(
        db: DatabaseConnection,
        ttl: Duration,
        stale: Duration,
        capacity: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        if ttl > MAX_TTL {
            tracing::warn!(
                configured_ms = ttl.as_millis() as u64,
                "Token cache TTL capped at 30 s so revocations take effect in time"
            );
        }
        let ttl = ttl.min(MAX_TTL);
        Self {
            db,
            ttl,
            stale,
            clock,
            queries: AtomicU64::new(0),
            known: Cache::builder()
                .max_capacity(capacity)
                .expire_after(FreshFor)
                .build(),
            unknown: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            last_good: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl + stale)
                .build(),
        }
    }

    /// What the caches know of `token` without asking the database: `Some(Some(_))` a
    /// known token, `Some(None)` an unknown one, `None` nothing yet.
    pub async fn cached(&self, token: &str) -> Option<Option<Principal>> {
        let hash = shared::token::hash(token);
        let now = self.clock.now();
        if let Some(known) = self.known.get(&hash).await {
            if now < known.fresh_until {
                metrics::counter!(prometheus::TOKEN_LOOKUPS, "result" => "hit").increment(1);
                return Some(Some(known.principal));
            }
            self.known.invalidate(&hash).await;
        }
        if let Some(until) = self.unknown.get(&hash).await {
            if now < until {
                metrics::counter!(prometheus::TOKEN_LOOKUPS, "result" => "hit").increment(1);
                return Some(None);
            }
            self.unknown.invalidate(&hash).await;
        }
        None
    }

    /// How many token queries this authenticator has sent to the database.
    pub fn database_queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// The principal of `token`, or `None` for a missing, unknown or revoked token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, LookupError> {
        if let Some(found) = self.cached(token).await {
            return Ok(found);
        }
        let hash = shared::token::hash(token);
        // One query per token however many requests ask at once; they all get its answer.
        let loaded = self
            .known
            .try_get_with_by_ref(&hash, self.load(&hash))
            .await;
        match loaded {
            Ok(known) => Ok(Some(known.principal)),
            Err(miss) => match miss.as_ref() {
                Miss::Unknown => Ok(None),
                Miss::Unreachable(error) => Err(error.clone()),
            },
        }
    }

    /// Forgets everything cached about the token with this hash (it was revoked or
    /// changed): a valid lookup, the last good one, and an answer that it was unknown.
    pub(crate) async fn forget(&self, token_hash: &str) {
        self.known.invalidate(token_hash).await;
        self.last_good.invalidate(token_hash).await;
        self.unknown.invalidate(token_hash).await;
    }

    /// Forgets every fresh lookup, so each token is checked again on its next request
    /// (after revocations may have been missed). Last good lookups stay for outages.
    pub(crate) fn forget_fresh(&self) {
        self.known.invalidate_all();
    }

    /// Whether the database answers now (within a second).
    pub(crate) async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.db.ping()).await,
            Ok(Ok(()))
        )
    }

    /// The entry to cache for `hash`: from the database, or while it is unreachable the
    /// token's last good lookup for a few seconds.
    async fn load(&self, hash: &str) -> Result<KnownToken, Miss> {
        // The answer is as old as the question: its time starts before the query.
        let now = self.clock.now();
        // A lookup that just found the token unknown was not kept in `known`: a request that
        // missed the caches just before it finished gets its answer here, not a second query.
        if let Some(until) = self.unknown.get(hash).await
            && now < until
        {
            return Err(Miss::Unknown);
        }
        match self.lookup(hash).await {
            Ok(Some(principal)) => {
                metrics::counter!(prometheus::TOKEN_LOOKUPS, "result" => "miss").increment(1);
                self.last_good
                    .insert(
                        hash.to_owned(),
                        (principal.clone(), now + self.ttl + self.stale),
                    )
                    .await;
                Ok(KnownToken {
                    principal,
                    fresh_for: self.ttl,
                    fresh_until: now + self.ttl,
                })
            }
            Ok(None) => {
                metrics::counter!(prometheus::TOKEN_LOOKUPS, "result" => "miss").increment(1);
                self.unknown.insert(hash.to_owned(), now + self.ttl).await;
                Err(Miss::Unknown)
            }
            Err(error) => match self.last_good.get(hash).await {
                Some((principal, usable_until)) if now < usable_until => {
                    metrics::counter!(prometheus::TOKEN_LOOKUPS, "result" => "stale").increment(1);
                    tracing::warn!(%error, token_id = principal.token_id, "Token lookup failed; using the last good lookup");
                    let fresh_for = STALE_RETRY.min(self.ttl);
                    Ok(KnownToken {
                        principal,
                        fresh_for,
                        fresh_until: now + fresh_for,
                    })
                }
                _ => Err(Miss::Unreachable(error)),
            },
        }
    }

    async fn lookup(&self, hash: &str) -> Result<Option<Principal>, LookupError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let row = TokenRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT t.id, t.user_id, t.account_id, a.default_region, a.rate_limit_per_minute, \
             t.field_map, t.default_actions, t.google_key \
             FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            [hash.into()],
        ))
        .one(&self.db)
        .await
        .map_err(|e| LookupError(e.to_string()))?;
        Ok(row.map(|r| Principal {
            token_id: r.id,
            user_id: r.user_id,
            account_id: r.account_id,
            region: Region::parse(&r.default_region).unwrap_or_default(),
            rate_limit_per_minute: r
                .rate_limit_per_minute
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
            sources: Arc::new(shared::sources::token_sources(
                &r.field_map,
                &r.default_actions,
                r.google_key,
            )),
        }))
    }
}

/// Keeps `auth` told of revoked and changed tokens: subscribes to the token-change channel
/// of `redis_prefix` until `stop`, reconnecting with growing delays. After every (re)connect
/// the fresh lookups are dropped, since announcements made meanwhile were missed.
pub(crate) async fn follow_token_changes(
    auth: Arc<Authenticator>,
    redis_url: String,
    redis_prefix: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let channel = shared::keys::token_changes_channel(&redis_prefix);
    crate::infra::pubsub::follow(
        &redis_url,
        crate::infra::pubsub::Topic::Channel(channel),
        "token changes",
        stop,
        |up| {
            if up {
                auth.forget_fresh();
            }
        },
        |payload| {
            let auth = auth.clone();
            async move {
                if let Ok(hash) = std::str::from_utf8(&payload) {
                    auth.forget(hash.trim()).await;
                    tracing::info!("Forgot a token's cached lookup (revoked or changed)");
                }
            }
        },
    )
    .await;
}
