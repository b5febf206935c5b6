//! Who sent a request: the API token (from the body, the query string or
//! `Authorization: Bearer`), looked up by its SHA-256 in PostgreSQL and cached in-process.
//!
//! The cache keeps a lookup for at most `token_cache_ttl_ms` (≤ 30 s), which bounds how late
//! a revocation takes effect. Unknown tokens are cached too, so guessing costs no database
//! round trip. When the database cannot be reached, an expired entry is used a little
//! longer rather than refusing every lead of a known token.

use crate::telemetry;
use http::HeaderMap;
use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};
use shared::phone::Region;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The token's identity: the only account its leads may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub user_id: i64,
    pub account_id: i64,
    /// The account's region for numbers without a country code.
    pub region: Region,
    /// The account's own intake limit per window, if it has one.
    pub rate_limit_per_minute: Option<u32>,
}

/// The token lookup failed for a reason other than the token (the database is down).
#[derive(Debug, thiserror::Error)]
#[error("Failed to look up the API token: {0}")]
pub struct LookupError(#[from] sea_orm::DbErr);

/// The bearer token of an `Authorization` header, if it has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The longest a lookup may be cached: a revoked token stops working within this.
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// Entries kept at most; beyond it expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 100_000;
/// How long an expired entry is served again while the database is unreachable, before
/// the next attempt.
const STALE_RETRY: Duration = Duration::from_secs(5);

struct Entry {
    principal: Option<Principal>,
    /// When this entry stops being fresh.
    expires: Instant,
}

pub struct Authenticator {
    db: DatabaseConnection,
    ttl: Duration,
    /// Token hash → lookup result. Never the token itself.
    cache: RwLock<HashMap<String, Entry>>,
}

#[derive(Debug, FromQueryResult)]
struct TokenRow {
    id: i64,
    user_id: i64,
    account_id: i64,
    default_region: String,
    rate_limit_per_minute: Option<i32>,
}

impl Authenticator {
    /// `ttl` is capped at [`MAX_TTL`]: revocation must take effect within 30 s.
    pub fn new(db: DatabaseConnection, ttl: Duration) -> Self {
        if ttl > MAX_TTL {
            tracing::warn!(
                configured_ms = ttl.as_millis() as u64,
                "Token cache TTL capped at 30 s so revocations take effect in time"
            );
        }
        Self {
            db,
            ttl: ttl.min(MAX_TTL),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The principal of `token`, or `None` for a missing, unknown or revoked token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, LookupError> {
        let hash = shared::token::hash(token);
        let now = Instant::now();
        let stale = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            match cache.get(&hash) {
                Some(entry) if entry.expires > now => {
                    metrics::counter!(telemetry::TOKEN_LOOKUPS, "result" => "hit").increment(1);
                    return Ok(entry.principal);
                }
                Some(entry) => entry.principal,
                None => None,
            }
        };
        match self.lookup(&hash).await {
            Ok(principal) => {
                metrics::counter!(telemetry::TOKEN_LOOKUPS, "result" => "miss").increment(1);
                self.store(hash, principal, now + self.ttl);
                Ok(principal)
            }
            Err(error) => match stale {
                Some(principal) => {
                    metrics::counter!(telemetry::TOKEN_LOOKUPS, "result" => "stale").increment(1);
                    tracing::warn!(%error, token_id = principal.token_id, "Token lookup failed; using the cached result");
                    self.store(hash, Some(principal), now + STALE_RETRY);
                    Ok(Some(principal))
                }
                None => Err(error),
            },
        }
    }

    /// Whether the database answers now (within a second).
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.db.ping()).await,
            Ok(Ok(()))
        )
    }

    async fn lookup(&self, hash: &str) -> Result<Option<Principal>, LookupError> {
        let row = TokenRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT t.id, t.user_id, t.account_id, a.default_region, a.rate_limit_per_minute \
             FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
            [hash.into()],
        ))
        .one(&self.db)
        .await?;
        Ok(row.map(|r| Principal {
            token_id: r.id,
            user_id: r.user_id,
            account_id: r.account_id,
            region: Region::parse(&r.default_region).unwrap_or_default(),
            rate_limit_per_minute: r
                .rate_limit_per_minute
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0),
        }))
    }

    fn store(&self, hash: String, principal: Option<Principal>, expires: Instant) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_ENTRIES {
            let now = Instant::now();
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(hash, Entry { principal, expires });
    }
}
