//! Console sessions (§12): an API token is exchanged once for an opaque session id in an
//! HttpOnly, SameSite=Strict cookie (`Secure` behind TLS), kept in Redis for 12 hours. The
//! session holds the token's account, user and token id and a CSRF token that every change
//! must carry; a revoked token (or a deactivated user) ends its sessions at their next
//! request, and signing out deletes the session.

use crate::web::state::AppState;
use base64::Engine as _;
use hyper::HeaderMap;
use rand::RngCore;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "li_console";
/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A signed-in person: whose token, of which account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account_id: i64,
    pub user_id: i64,
    pub token_id: i64,
    /// The token's label or prefix, to show who is signed in.
    pub token_label: String,
    /// Every form of the session carries it; a change without it is refused.
    pub csrf: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Why a session could not be made or read: Redis is down.
#[derive(Debug, thiserror::Error)]
#[error("the session store is unavailable")]
pub struct StoreUnavailable;

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The Redis key of a session id: its hash, so a key listing reveals no session.
fn key(state: &AppState, id: &str) -> String {
    format!(
        "{}console:session:{}",
        state.settings.redis_prefix,
        hex::encode(Sha256::digest(id.as_bytes()))
    )
}

/// Creates a session for a token's principal; returns its id (the cookie's value).
pub async fn create(
    state: &AppState,
    account_id: i64,
    user_id: i64,
    token_id: i64,
    token_label: String,
) -> Result<String, StoreUnavailable> {
    let id = random_token();
    let session = Session {
        account_id,
        user_id,
        token_id,
        token_label,
        csrf: random_token(),
        expires_at: chrono::Utc::now()
            + chrono::Duration::from_std(LIFETIME).unwrap_or(chrono::Duration::hours(12)),
    };
    let value = serde_json::to_string(&session).map_err(|_| StoreUnavailable)?;
    let redis = &state.admission.redis;
    let mut conn = redis.conn();
    let k = key(state, &id);
    redis
        .run("console_session_set", async move {
            redis::cmd("SET")
                .arg(&k)
                .arg(value)
                .arg("EX")
                .arg(LIFETIME.as_secs())
                .query_async::<()>(&mut conn)
                .await
        })
        .await
        .map_err(|_| StoreUnavailable)?;
    Ok(id)
}

/// The session of the request's cookie, if it is valid and its token still is.
pub async fn load(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, StoreUnavailable> {
    let Some(id) = cookie(headers) else {
        return Ok(None);
    };
    let redis = &state.admission.redis;
    let mut conn = redis.conn();
    let k = key(state, &id);
    let raw: Option<String> = redis
        .run("console_session_get", async move {
            redis::cmd("GET").arg(&k).query_async(&mut conn).await
        })
        .await
        .map_err(|_| StoreUnavailable)?;
    let Some(session) = raw.and_then(|r| serde_json::from_str::<Session>(&r).ok()) else {
        return Ok(None);
    };
    if session.expires_at <= chrono::Utc::now() {
        return Ok(None);
    }
    // Revoked with the token: checked on every request, not from a cache.
    let live = state
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 AS ok FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.account_id = $2 AND t.revoked_at IS NULL AND u.active",
            vec![session.token_id.into(), session.account_id.into()],
        ))
        .await
        .map_err(|_| StoreUnavailable)?;
    if live.is_none() {
        delete(state, headers).await;
        return Ok(None);
    }
    Ok(Some(session))
}

/// Deletes the request's session, if it has one.
pub async fn delete(state: &AppState, headers: &HeaderMap) {
    let Some(id) = cookie(headers) else {
        return;
    };
    let redis = &state.admission.redis;
    let mut conn = redis.conn();
    let k = key(state, &id);
    let _ = redis
        .run("console_session_del", async move {
            redis::cmd("DEL").arg(&k).query_async::<()>(&mut conn).await
        })
        .await;
}

/// The session id of the request's cookie.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// Whether the request arrived over TLS at a proxy that says so.
pub fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value carrying session `id` (or clearing it with `None`).
pub fn set_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub fn csrf_ok(session: &Session, sent: Option<&str>) -> bool {
    let Some(sent) = sent else {
        return false;
    };
    let (a, b) = (session.csrf.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A change must come from a page of this origin: a cross-site `Origin` is refused even
/// before the CSRF token is compared (browsers send it on every POST).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(origin);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        let c = set_cookie(Some("abc"), false);
        assert!(c.starts_with(
            "li_console=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=43200"
        ));
        assert!(!c.contains("Secure"));
        assert!(set_cookie(Some("abc"), true).ends_with("; Secure"));
        assert!(set_cookie(None, false).contains("Max-Age=0"));
        let mut h = HeaderMap::new();
        h.insert(
            hyper::header::COOKIE,
            "a=1; li_console=xyz; b=2".parse().expect("v"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn csrf_and_origin_checks_refuse_what_they_should() {
        let s = Session {
            account_id: 1,
            user_id: 1,
            token_id: 1,
            token_label: "t".into(),
            csrf: "secret-value".into(),
            expires_at: chrono::Utc::now(),
        };
        assert!(csrf_ok(&s, Some("secret-value")));
        assert!(!csrf_ok(&s, Some("secret-valuE")));
        assert!(!csrf_ok(&s, None));
        let mut h = HeaderMap::new();
        h.insert(hyper::header::HOST, "127.0.0.1:8080".parse().expect("v"));
        assert!(same_origin(&h));
        h.insert(
            hyper::header::ORIGIN,
            "http://127.0.0.1:8080".parse().expect("v"),
        );
        assert!(same_origin(&h));
        h.insert(
            hyper::header::ORIGIN,
            "https://evil.example".parse().expect("v"),
        );
        assert!(!same_origin(&h));
    }
}
