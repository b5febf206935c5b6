//! Operator operations on an account's webhook endpoints (§11): add (the secret is shown
//! once), list, disable and enable, rotate the secret, remove, the attempt log, and replay.

use super::{AdminError, Result, find_account};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};
use serde::Serialize;
use shared::events::{self, EventType};
use uuid::Uuid;

/// How long the previous secret still signs after a rotation.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);

/// An endpoint as operators see it (never with its secret).
#[derive(Debug, Clone, Serialize, FromQueryResult)]
pub struct Endpoint {
    pub id: i64,
    pub account_id: i64,
    pub url: String,
    pub description: Option<String>,
    /// The event types it receives; empty: every type.
    pub events: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// An endpoint just created or rotated, with the secret shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct WithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    pub secret: String,
}

/// One delivery attempt from the log.
#[derive(Debug, Clone, Serialize, FromQueryResult)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub attempted_at: DateTime<Utc>,
    /// `None`: no answer came (see `error`).
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    /// The first 1 KB of the answer.
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// The delivery's state now: pending, delivered or failed.
    pub delivery_status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl AttemptRow {
    /// The `webhook-id` the attempt carried.
    pub fn webhook_id(&self) -> String {
        events::webhook_id(self.event_id)
    }
}

/// Which deliveries of an endpoint a replay sends again.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Events written at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Events written before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Only deliveries that failed for good.
    pub failed_only: bool,
    /// One event (its uuid, or its `webhook-id`).
    pub event: Option<Uuid>,
}

/// An endpoint with its counts: pending deliveries counted (a range of the due index), the
/// finished ones as the delivery loops keep them (`webhook_endpoint_totals`).
const SELECT: &str = "SELECT w.id, w.account_id, w.url, w.description, w.events, w.enabled,
       w.disabled_reason, w.previous_secret_until, w.created_at, w.updated_at,
       (SELECT count(*) FROM event_deliveries d
        WHERE d.endpoint_id = w.id AND d.status = 'pending') AS pending,
       coalesce(t.delivered, 0) AS delivered,
       coalesce(t.failed, 0) AS failed
FROM webhook_endpoints w LEFT JOIN webhook_endpoint_totals t ON t.endpoint_id = w.id";

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Reads an event id given as a uuid or as its `webhook-id` (`msg_…`).
pub fn parse_event_id(s: &str) -> Result<Uuid> {
    let hex = s.trim().strip_prefix("msg_").unwrap_or(s.trim());
    Uuid::parse_str(hex)
        .map_err(|_| AdminError::Invalid(format!("{s:?} is not an event id (msg_… or a uuid)")))
}

/// Checks an endpoint URL: http or https, a host, at most 2,048 characters.
pub fn check_url(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| AdminError::Invalid(format!("url {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AdminError::Invalid(format!(
            "url {url:?}: the scheme must be http or https"
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(AdminError::Invalid(format!("url {url:?} has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(AdminError::Invalid(format!(
            "url {url:?}: credentials in the URL would be sent to every redirect-free request; \
             authenticate with the signature instead"
        )));
    }
    let s = parsed.to_string();
    if s.len() > 2048 {
        return Err(AdminError::Invalid("url: at most 2,048 characters".into()));
    }
    Ok(s)
}

/// Reads an event list: `all`, or comma-separated type names.
pub fn parse_events(list: &str) -> Result<Vec<String>> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(AdminError::Invalid(format!(
            "events: name at least one of {} or all",
            EventType::names().join(", ")
        )));
    }
    if names.contains(&"all") || names.contains(&"*") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for n in names {
        let t: EventType = n.parse().map_err(|_| {
            AdminError::Invalid(format!(
                "events: unknown type {n:?}; the types are {} (or all)",
                EventType::names().join(", ")
            ))
        })?;
        let name = t.as_str().to_owned();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

/// Adds an endpoint to `account_id` receiving `events` (empty: every type).
pub async fn add(
    db: &impl ConnectionTrait,
    account_id: i64,
    url: &str,
    events: Vec<String>,
    description: Option<&str>,
) -> Result<WithSecret> {
    find_account(db, account_id).await?;
    let url = check_url(url)?;
    let secret = events::new_secret();
    let row = db
        .query_one_raw(stmt(
            "INSERT INTO webhook_endpoints (account_id, url, description, events, secret)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            vec![
                account_id.into(),
                url.into(),
                description.map(str::to_owned).into(),
                events.into(),
                secret.clone().into(),
            ],
        ))
        .await?
        .ok_or_else(|| AdminError::Invalid("the endpoint was not created".into()))?;
    let id: i64 = row.try_get("", "id")?;
    Ok(WithSecret {
        endpoint: get(db, id).await?,
        secret,
    })
}

/// One endpoint.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Endpoint> {
    Endpoint::find_by_statement(stmt(&format!("{SELECT} WHERE w.id = $1"), vec![id.into()]))
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("webhook endpoint", id))
}

/// The endpoints of `account_id` (all accounts' with `None`), by id.
pub async fn list(db: &impl ConnectionTrait, account_id: Option<i64>) -> Result<Vec<Endpoint>> {
    Ok(Endpoint::find_by_statement(stmt(
        &format!("{SELECT} WHERE $1::bigint IS NULL OR w.account_id = $1 ORDER BY w.id"),
        vec![account_id.into()],
    ))
    .all(db)
    .await?)
}

/// Disables or enables an endpoint. A disabled one gets no new events and its pending
/// deliveries wait; enabling makes them due at once.
pub async fn set_enabled(db: &impl ConnectionTrait, id: i64, enabled: bool) -> Result<Endpoint> {
    get(db, id).await?;
    let sql = if enabled {
        "WITH w AS (
             UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL, updated_at = now()
             WHERE id = $1 RETURNING id)
         UPDATE event_deliveries SET next_attempt_at = now(), updated_at = now()
         WHERE endpoint_id IN (SELECT id FROM w) AND status = 'pending'
           AND next_attempt_at = 'infinity'"
    } else {
        "WITH w AS (
             UPDATE webhook_endpoints
             SET enabled = false, disabled_reason = 'disabled by an operator', updated_at = now()
             WHERE id = $1 RETURNING id)
         UPDATE event_deliveries SET next_attempt_at = 'infinity', updated_at = now()
         WHERE endpoint_id IN (SELECT id FROM w) AND status = 'pending'"
    };
    db.execute_raw(stmt(sql, vec![id.into()])).await?;
    if enabled {
        notify(db).await?;
    }
    get(db, id).await
}

/// Gives an endpoint a new secret; the old one keeps signing beside it for
/// [`ROTATION_OVERLAP`].
pub async fn rotate_secret(db: &impl ConnectionTrait, id: i64) -> Result<WithSecret> {
    get(db, id).await?;
    let secret = events::new_secret();
    db.execute_raw(stmt(
        "UPDATE webhook_endpoints
         SET previous_secret = secret, previous_secret_until = now() + $2::interval,
             secret = $3, updated_at = now()
         WHERE id = $1",
        vec![
            id.into(),
            format!("{} seconds", ROTATION_OVERLAP.num_seconds()).into(),
            secret.clone().into(),
        ],
    ))
    .await?;
    Ok(WithSecret {
        endpoint: get(db, id).await?,
        secret,
    })
}

/// Removes an endpoint with its deliveries and attempt log (the events stay for the
/// account's other endpoints).
pub async fn remove(db: &impl ConnectionTrait, id: i64) -> Result<Endpoint> {
    let endpoint = get(db, id).await?;
    // One statement, so that it all goes or none of it does (the outbox's tables do not
    // reference the endpoints: migration m20261203_000011).
    db.execute_raw(stmt(
        "WITH endpoint AS (DELETE FROM webhook_endpoints WHERE id = $1),
              totals AS (DELETE FROM webhook_endpoint_totals WHERE endpoint_id = $1),
              attempts AS (DELETE FROM delivery_attempts WHERE endpoint_id = $1)
         DELETE FROM event_deliveries WHERE endpoint_id = $1",
        vec![id.into()],
    ))
    .await?;
    Ok(endpoint)
}

/// The newest `limit` attempts to an endpoint, of one event or all, newest first.
pub async fn attempts(
    db: &impl ConnectionTrait,
    id: i64,
    event: Option<Uuid>,
    limit: u64,
) -> Result<Vec<AttemptRow>> {
    get(db, id).await?;
    Ok(AttemptRow::find_by_statement(stmt(
        "SELECT a.id, a.delivery_id, a.event_id, e.type AS event_type, a.attempted_at,
                a.status_code, a.latency_ms, a.response_body, a.error,
                d.status AS delivery_status, d.next_attempt_at
         FROM delivery_attempts a
         JOIN event_deliveries d ON d.id = a.delivery_id
         JOIN events e ON e.id = a.event_id
         WHERE a.endpoint_id = $1 AND ($2::uuid IS NULL OR a.event_id = $2)
         ORDER BY a.id DESC
         LIMIT $3",
        vec![
            id.into(),
            event.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    ))
    .all(db)
    .await?)
}

/// Sends an endpoint's finished deliveries matching `r` again, each with its event's
/// `webhook-id` and bytes, on a fresh retry schedule; returns how many. Pending deliveries
/// are under way already and are left alone.
pub async fn replay(db: &impl ConnectionTrait, id: i64, r: &Replay) -> Result<u64> {
    replayed(db, id, r, false).await
}

/// How many deliveries [`replay`] would send again, sending none.
pub async fn replay_count(db: &impl ConnectionTrait, id: i64, r: &Replay) -> Result<u64> {
    replayed(db, id, r, true).await
}

async fn replayed(db: &impl ConnectionTrait, id: i64, r: &Replay, dry_run: bool) -> Result<u64> {
    let endpoint = get(db, id).await?;
    let filter = "FROM event_deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.endpoint_id = $1
           AND d.status IN ('delivered', 'failed')
           AND ($2::bool = false OR d.status = 'failed')
           AND ($3::timestamptz IS NULL OR e.created_at >= $3)
           AND ($4::timestamptz IS NULL OR e.created_at < $4)
           AND ($5::uuid IS NULL OR d.event_id = $5)";
    let values: Vec<Value> = vec![
        id.into(),
        r.failed_only.into(),
        r.since.into(),
        r.until.into(),
        r.event.into(),
    ];
    let sql = if dry_run {
        format!("SELECT count(*) AS n {filter}")
    } else {
        // A disabled endpoint's replayed deliveries wait for it like its pending ones.
        format!(
            "WITH chosen AS (SELECT d.id, d.status {filter}), done AS (
                 UPDATE event_deliveries d
                 SET status = 'pending', attempts = 0, delivered_at = NULL,
                     next_attempt_at = CASE WHEN $6 THEN now() ELSE 'infinity'::timestamptz END,
                     updated_at = now()
                 FROM chosen WHERE d.id = chosen.id RETURNING chosen.status AS was),
             totals AS (
                 UPDATE webhook_endpoint_totals
                 SET delivered = delivered - (SELECT count(*) FROM done WHERE was = 'delivered'),
                     failed = failed - (SELECT count(*) FROM done WHERE was = 'failed')
                 WHERE endpoint_id = $1)
             SELECT count(*) AS n FROM done"
        )
    };
    let mut values = values;
    if !dry_run {
        values.push(endpoint.enabled.into());
    }
    let n: i64 = db
        .query_one_raw(stmt(&sql, values))
        .await?
        .map(|row| row.try_get("", "n"))
        .transpose()?
        .unwrap_or(0);
    if !dry_run && n > 0 {
        notify(db).await?;
    }
    Ok(n.max(0).unsigned_abs())
}

/// Wakes the delivery loops.
async fn notify(db: &impl ConnectionTrait) -> Result<()> {
    db.execute_raw(stmt(
        &format!("SELECT pg_notify('{}', '')", events::CHANNEL),
        vec![],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_event_lists_are_checked() {
        assert_eq!(
            check_url("https://crm.example.com/hooks?x=1").expect("ok"),
            "https://crm.example.com/hooks?x=1"
        );
        for bad in [
            "ftp://example.com/",
            "not a url",
            "https://user:pw@example.com/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_events("all").expect("all"), Vec::<String>::new());
        assert_eq!(
            parse_events("lead.processed, contact.created,lead.processed").expect("two"),
            ["lead.processed", "contact.created"]
        );
        let e = parse_events("lead.done").expect_err("unknown");
        assert!(e.to_string().contains("lead.processed"), "{e}");
        assert!(parse_events(" , ").is_err());
    }

    #[test]
    fn event_ids_read_as_uuid_or_webhook_id() {
        let id = Uuid::now_v7();
        assert_eq!(parse_event_id(&id.to_string()).expect("uuid"), id);
        assert_eq!(parse_event_id(&events::webhook_id(id)).expect("msg"), id);
        assert!(parse_event_id("msg_nope").is_err());
    }
}
