//! The few statements SeaORM's query builder does not express: advisory locks and set
//! lookups keyed by JSON arrays (one round trip for a whole batch).

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde_json::json;
use shared::intake::IntakeStatus;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Lock keys. Every writer of a number, contact or PowerDialer list takes the key first, so
/// concurrent leads serialize on exactly what they share, across processes.
pub(crate) mod key {
    use uuid::Uuid;

    pub fn intake(id: Uuid) -> String {
        format!("lead-intake:{id}")
    }
    pub fn number(account_id: i64, e164: &str) -> String {
        format!("lead-number:{account_id}:{e164}")
    }
    pub fn contact(id: i64) -> String {
        format!("lead-contact:{id}")
    }
    pub fn powerdialer(user_id: i64) -> String {
        format!("lead-powerdialer:{user_id}")
    }
}

/// Takes the transaction-scoped advisory locks of `keys`, in the order of their hashes: every
/// transaction takes its up-front locks in that one global order, so they cannot deadlock.
pub(crate) async fn lock_all(c: &impl ConnectionTrait, keys: &[String]) -> Result<(), DbErr> {
    if keys.is_empty() {
        return Ok(());
    }
    // OFFSET 0 keeps the sorted subquery from being flattened, so locks are taken in order.
    c.execute_raw(stmt(
        "SELECT count(pg_advisory_xact_lock(k)) FROM (\
           SELECT DISTINCT hashtextextended(t, 0) AS k \
           FROM jsonb_array_elements_text($1::jsonb) AS t ORDER BY 1 OFFSET 0) AS s",
        vec![json!(keys).into()],
    ))
    .await?;
    Ok(())
}

/// Waits for the advisory lock of `key`.
pub(crate) async fn lock(c: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    c.execute_raw(stmt(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        vec![key.into()],
    ))
    .await?;
    Ok(())
}

/// Takes the advisory lock of `key` if nobody else holds it.
pub(crate) async fn try_lock(c: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    let row = c
        .query_one_raw(stmt(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked",
            vec![key.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("Failed to read an advisory lock result".into()))?;
    row.try_get("", "locked")
}

/// What an intake record already says.
#[derive(Debug, Clone)]
pub(crate) struct IntakeRow {
    pub status: IntakeStatus,
    pub contact_id: Option<i64>,
    pub actions: serde_json::Value,
    pub warnings: serde_json::Value,
}

pub(crate) async fn intake_rows(
    c: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, IntakeRow>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            "SELECT id, status, contact_id, actions, warnings FROM lead_intakes \
             WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::uuid)",
            vec![json!(ids).into()],
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("", "status")?;
        let Some(status) = IntakeStatus::parse(&status) else {
            continue;
        };
        out.insert(
            row.try_get("", "id")?,
            IntakeRow {
                status,
                contact_id: row.try_get("", "contact_id")?,
                actions: row.try_get("", "actions")?,
                warnings: row.try_get("", "warnings")?,
            },
        );
    }
    Ok(out)
}

/// Which of `accounts` and `tokens` exist.
pub(crate) async fn existing_accounts_and_tokens(
    c: &impl ConnectionTrait,
    accounts: &[i64],
    tokens: &[i64],
) -> Result<(HashSet<i64>, HashSet<i64>), DbErr> {
    let rows = c
        .query_all_raw(stmt(
            "SELECT 'a' AS kind, id FROM accounts \
               WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint) \
             UNION ALL \
             SELECT 't', id FROM api_tokens \
               WHERE id IN (SELECT (jsonb_array_elements_text($2::jsonb))::bigint)",
            vec![json!(accounts).into(), json!(tokens).into()],
        ))
        .await?;
    let (mut a, mut t) = (HashSet::new(), HashSet::new());
    for row in rows {
        let kind: String = row.try_get("", "kind")?;
        let id: i64 = row.try_get("", "id")?;
        if kind == "a" {
            a.insert(id);
        } else {
            t.insert(id);
        }
    }
    Ok((a, t))
}

/// The contact owning each of `pairs` (account, E.164), where one does.
pub(crate) async fn number_owners(
    c: &impl ConnectionTrait,
    pairs: &[(i64, String)],
) -> Result<HashMap<(i64, String), i64>, DbErr> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let keys: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(a, p)| json!({ "a": a, "p": p }))
        .collect();
    let rows = c
        .query_all_raw(stmt(
            "SELECT n.account_id, n.phone_number, n.contact_id FROM contact_phone_numbers n \
             JOIN jsonb_to_recordset($1::jsonb) AS k(a bigint, p text) \
               ON n.account_id = k.a AND n.phone_number = k.p",
            vec![serde_json::Value::Array(keys).into()],
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            (
                row.try_get("", "account_id")?,
                row.try_get("", "phone_number")?,
            ),
            row.try_get("", "contact_id")?,
        );
    }
    Ok(out)
}

/// Which of a lead's linked ids belong to the account (one round trip for all of them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LinkCheck {
    pub user: bool,
    pub ring_group: bool,
    pub line: bool,
    pub tag: bool,
    pub disposition_status: bool,
    pub sequence: bool,
}

pub(crate) async fn check_links(
    c: &impl ConnectionTrait,
    account_id: i64,
    links: &shared::lead::LeadLinks,
) -> Result<LinkCheck, DbErr> {
    let row = c
        .query_one_raw(stmt(
            "SELECT \
               EXISTS (SELECT 1 FROM users WHERE account_id = $1 AND id = $2) AS u, \
               EXISTS (SELECT 1 FROM ring_groups WHERE account_id = $1 AND id = $3) AS r, \
               EXISTS (SELECT 1 FROM lines WHERE account_id = $1 AND id = $4) AS l, \
               EXISTS (SELECT 1 FROM tags WHERE account_id = $1 AND id = $5) AS t, \
               EXISTS (SELECT 1 FROM disposition_statuses WHERE account_id = $1 AND id = $6) AS d, \
               EXISTS (SELECT 1 FROM sequences WHERE account_id = $1 AND id = $7) AS s",
            vec![
                account_id.into(),
                links.user_id.into(),
                links.ring_group_id.into(),
                links.line_id.into(),
                links.tag_id.into(),
                links.disposition_status_id.into(),
                links.sequence_id.into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("Failed to check the lead's links".into()))?;
    Ok(LinkCheck {
        user: row.try_get("", "u")?,
        ring_group: row.try_get("", "r")?,
        line: row.try_get("", "l")?,
        tag: row.try_get("", "t")?,
        disposition_status: row.try_get("", "d")?,
        sequence: row.try_get("", "s")?,
    })
}

/// A ring-group member as distribution sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub user_id: i64,
    pub active: bool,
    pub available: bool,
}

pub(crate) async fn ring_group_members(
    c: &impl ConnectionTrait,
    account_id: i64,
    ring_group_id: i64,
) -> Result<Vec<Member>, DbErr> {
    let rows = c
        .query_all_raw(stmt(
            "SELECT u.id, u.active, u.available FROM ring_group_members m \
             JOIN users u ON u.account_id = m.account_id AND u.id = m.user_id \
             WHERE m.account_id = $1 AND m.ring_group_id = $2 ORDER BY u.id",
            vec![account_id.into(), ring_group_id.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Member {
                user_id: row.try_get("", "id")?,
                active: row.try_get("", "active")?,
                available: row.try_get("", "available")?,
            })
        })
        .collect()
}

/// The top and bottom positions of a user's queued PowerDialer entries.
pub(crate) async fn powerdialer_bounds(
    c: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Option<(i64, i64)>, DbErr> {
    let row = c
        .query_one_raw(stmt(
            "SELECT min(position) AS top, max(position) AS bottom FROM powerdialer_items \
             WHERE user_id = $1 AND status = 'queued'",
            vec![user_id.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    let top: Option<i64> = row.try_get("", "top")?;
    let bottom: Option<i64> = row.try_get("", "bottom")?;
    Ok(top.zip(bottom))
}
