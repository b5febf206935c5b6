//! The few statements SeaORM's query builder does not express: advisory locks and set
//! lookups for a whole batch in one round trip. The SQL lives in `sql/*.sql` beside this
//! file. Every statement takes its keys as typed array parameters (`$1::bigint[]`) and
//! descends an index once per key, so its cost follows the batch, never the table; the
//! worker's sessions plan each execution afresh (see [`crate::db`]), so a plan made while a
//! table was small is never kept as it grows.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub(crate) const SNAPSHOT: &str = include_str!("sql/snapshot.sql");
pub(crate) const RELATED: &str = include_str!("sql/related.sql");
pub(crate) const LOCK_ALL: &str = include_str!("sql/lock_all.sql");
pub(crate) const TRY_LOCK_ALL: &str = include_str!("sql/try_lock_all.sql");
pub(crate) const POWERDIALER_BOUNDS: &str = include_str!("sql/powerdialer_bounds.sql");
pub(crate) const DEAD_LETTER: &str = include_str!("sql/dead_letter.sql");
pub(crate) const PROCESSING: &str = include_str!("sql/processing.sql");

/// The hand-written statements of the hot path, by name, for the plan checks of the tests.
pub const HOT_PATH: [(&str, &str); 6] = [
    ("snapshot", SNAPSHOT),
    ("related", RELATED),
    ("lock_all", LOCK_ALL),
    ("try_lock_all", TRY_LOCK_ALL),
    ("powerdialer_bounds", POWERDIALER_BOUNDS),
    ("dead_letter", DEAD_LETTER),
];

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
    c.execute_raw(stmt(LOCK_ALL, vec![keys.to_vec().into()]))
        .await?;
    Ok(())
}

/// What an intake record already says.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IntakeRow {
    pub id: Uuid,
    pub status: String,
    pub contact_id: Option<i64>,
    pub actions: serde_json::Value,
    pub warnings: serde_json::Value,
}

/// What a transaction reads about its leads, in one round trip, once their locks are held.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub records: HashMap<Uuid, IntakeRow>,
    pub accounts: HashSet<i64>,
    pub tokens: HashSet<i64>,
    /// (account, E.164) → contact.
    pub owners: HashMap<(i64, String), i64>,
    /// (account, id) pairs that exist, per kind of link.
    pub users: HashSet<(i64, i64)>,
    pub ring_groups: HashSet<(i64, i64)>,
    pub lines: HashSet<(i64, i64)>,
    pub tags: HashSet<(i64, i64)>,
    pub dispositions: HashSet<(i64, i64)>,
    pub sequences: HashSet<(i64, i64)>,
    /// Ring group → its members, by user id.
    pub members: HashMap<i64, Vec<Member>>,
    /// Contact ids reserved for the contacts this transaction may create.
    pub new_ids: Vec<i64>,
}

/// The ids a transaction's leads name, to read in one [`snapshot`].
#[derive(Debug, Default)]
pub(crate) struct Wanted {
    pub intakes: Vec<Uuid>,
    pub accounts: Vec<i64>,
    pub tokens: Vec<i64>,
    /// (account, E.164) of every number of every lead.
    pub numbers: Vec<(i64, String)>,
    /// (account, id) of every linked id, per kind.
    pub users: Vec<(i64, i64)>,
    pub ring_groups: Vec<(i64, i64)>,
    pub lines: Vec<(i64, i64)>,
    pub tags: Vec<(i64, i64)>,
    pub dispositions: Vec<(i64, i64)>,
    pub sequences: Vec<(i64, i64)>,
    pub new_ids: usize,
}

#[derive(Deserialize)]
struct SnapshotJson {
    intakes: Vec<IntakeRow>,
    accounts: Vec<i64>,
    tokens: Vec<i64>,
    numbers: Vec<(i64, String, i64)>,
    users: Vec<(i64, i64)>,
    ring_groups: Vec<(i64, i64)>,
    lines: Vec<(i64, i64)>,
    tags: Vec<(i64, i64)>,
    dispositions: Vec<(i64, i64)>,
    sequences: Vec<(i64, i64)>,
    members: Vec<(i64, i64, bool, bool)>,
    ids: Vec<i64>,
}

pub(crate) async fn snapshot(c: &impl ConnectionTrait, w: &Wanted) -> Result<Snapshot, DbErr> {
    let mut numbers = w.numbers.clone();
    numbers.sort_unstable();
    numbers.dedup();
    let (number_accounts, numbers): (Vec<i64>, Vec<String>) = numbers.into_iter().unzip();
    let mut values: Vec<Value> = vec![
        w.intakes.clone().into(),
        ids(&w.accounts),
        ids(&w.tokens),
        number_accounts.into(),
        numbers.into(),
    ];
    for kind in [
        &w.users,
        &w.ring_groups,
        &w.lines,
        &w.tags,
        &w.dispositions,
        &w.sequences,
    ] {
        let (accounts, ids) = pairs(kind);
        values.push(accounts.into());
        values.push(ids.into());
    }
    values.push(i32::try_from(w.new_ids).unwrap_or(i32::MAX).into());
    let row = c
        .query_one_raw(stmt(SNAPSHOT, values))
        .await?
        .ok_or_else(|| DbErr::Custom("Failed to read the leads' snapshot".into()))?;
    let value: serde_json::Value = row.try_get("", "snapshot")?;
    let j: SnapshotJson = serde_json::from_value(value).map_err(|e| DbErr::Json(e.to_string()))?;
    let mut members: HashMap<i64, Vec<Member>> = HashMap::new();
    for (group, user_id, active, available) in j.members {
        members.entry(group).or_default().push(Member {
            user_id,
            active,
            available,
        });
    }
    Ok(Snapshot {
        records: j.intakes.into_iter().map(|r| (r.id, r)).collect(),
        accounts: j.accounts.into_iter().collect(),
        tokens: j.tokens.into_iter().collect(),
        owners: j.numbers.into_iter().map(|(a, p, c)| ((a, p), c)).collect(),
        users: j.users.into_iter().collect(),
        ring_groups: j.ring_groups.into_iter().collect(),
        lines: j.lines.into_iter().collect(),
        tags: j.tags.into_iter().collect(),
        dispositions: j.dispositions.into_iter().collect(),
        sequences: j.sequences.into_iter().collect(),
        members,
        new_ids: j.ids,
    })
}

/// Tries the advisory lock of every key; returns the keys taken.
pub(crate) async fn try_lock_all(
    c: &impl ConnectionTrait,
    keys: &[String],
) -> Result<HashSet<String>, DbErr> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let rows = c
        .query_all_raw(stmt(TRY_LOCK_ALL, vec![keys.to_vec().into()]))
        .await?;
    let mut taken = HashSet::with_capacity(rows.len());
    for row in rows {
        if row.try_get::<bool>("", "locked")? {
            taken.insert(row.try_get::<String>("", "k")?);
        }
    }
    Ok(taken)
}

/// What the transaction must know of a locked contact beyond its row.
#[derive(Debug, Default)]
pub(crate) struct Related {
    pub tags: HashMap<i64, HashSet<i64>>,
    /// Active sequence enrollments.
    pub active: HashMap<i64, Vec<i64>>,
    /// Contacts with a queued PowerDialer entry.
    pub queued: HashSet<i64>,
}

#[derive(Deserialize)]
struct RelatedJson {
    tags: Vec<(i64, i64)>,
    active: Vec<(i64, i64)>,
    queued: Vec<i64>,
}

/// The links of the locked contacts, given as (account, contact) pairs.
pub(crate) async fn related(
    c: &impl ConnectionTrait,
    contacts: &[(i64, i64)],
) -> Result<Related, DbErr> {
    if contacts.is_empty() {
        return Ok(Related::default());
    }
    let (accounts, ids) = pairs(contacts);
    let row = c
        .query_one_raw(stmt(RELATED, vec![accounts.into(), ids.into()]))
        .await?
        .ok_or_else(|| DbErr::Custom("Failed to read the contacts' links".into()))?;
    let value: serde_json::Value = row.try_get("", "related")?;
    let j: RelatedJson = serde_json::from_value(value).map_err(|e| DbErr::Json(e.to_string()))?;
    let mut out = Related::default();
    for (contact, tag) in j.tags {
        out.tags.entry(contact).or_default().insert(tag);
    }
    for (contact, sequence) in j.active {
        out.active.entry(contact).or_default().push(sequence);
    }
    out.queued = j.queued.into_iter().collect();
    Ok(out)
}

/// A ring-group member as distribution sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub user_id: i64,
    pub active: bool,
    pub available: bool,
}

/// The top and bottom positions of each user's queued PowerDialer entries (users with an
/// empty list are absent).
pub(crate) async fn powerdialer_bounds(
    c: &impl ConnectionTrait,
    users: &[i64],
) -> Result<HashMap<i64, (i64, i64)>, DbErr> {
    let rows = c
        .query_all_raw(stmt(POWERDIALER_BOUNDS, vec![users.to_vec().into()]))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let top: Option<i64> = row.try_get("", "top")?;
        let bottom: Option<i64> = row.try_get("", "bottom")?;
        if let (Some(top), Some(bottom)) = (top, bottom) {
            out.insert(row.try_get("", "user_id")?, (top, bottom));
        }
    }
    Ok(out)
}

/// (account, id) pairs as two parallel arrays, each pair once.
fn pairs(v: &[(i64, i64)]) -> (Vec<i64>, Vec<i64>) {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v.into_iter().unzip()
}

/// A set of ids as a `bigint[]` parameter, each id once.
fn ids(v: &[i64]) -> Value {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_the_sql_names_is_a_value_of_its_enum() {
        let sources = [
            ("processing.sql", PROCESSING),
            ("dead_letter.sql", DEAD_LETTER),
        ]
        .into_iter()
        .chain(HOT_PATH);
        let named = testkit::statuses::assert_known(sources);
        assert!(named >= 10, "only {named} status literals found");
    }
}
