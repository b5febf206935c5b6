//! The few statements SeaORM's query builder does not express: advisory locks and set
//! lookups keyed by JSON arrays (one round trip for a whole batch).

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde::Deserialize;
use serde_json::json;
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
    pub numbers: Vec<String>,
    pub users: Vec<i64>,
    pub ring_groups: Vec<i64>,
    pub lines: Vec<i64>,
    pub tags: Vec<i64>,
    pub dispositions: Vec<i64>,
    pub sequences: Vec<i64>,
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

/// `= ANY` over a JSON array parameter: an index scan whatever the table's size.
macro_rules! any_of {
    ($n:literal, $ty:literal) => {
        concat!(
            "ANY (ARRAY(SELECT (jsonb_array_elements_text($",
            $n,
            "::jsonb))::",
            $ty,
            "))"
        )
    };
}

/// Pairs `(account_id, id)` of one account-owned table whose id is in parameter `$n`.
macro_rules! owned {
    ($table:literal, $n:literal) => {
        concat!(
            "(SELECT coalesce(json_agg(json_build_array(account_id, id)), '[]'::json) FROM ",
            $table,
            " WHERE id = ",
            any_of!($n, "bigint"),
            ")"
        )
    };
}

pub(crate) async fn snapshot(c: &impl ConnectionTrait, w: &Wanted) -> Result<Snapshot, DbErr> {
    const SQL: &str = concat!(
        "SELECT json_build_object(",
        "'intakes', (SELECT coalesce(json_agg(json_build_object('id', id, 'status', status, ",
        "'contact_id', contact_id, 'actions', actions, 'warnings', warnings)), '[]'::json) ",
        "FROM lead_intakes WHERE id = ",
        any_of!("1", "uuid"),
        "), 'accounts', (SELECT coalesce(json_agg(id), '[]'::json) FROM accounts WHERE id = ",
        any_of!("2", "bigint"),
        "), 'tokens', (SELECT coalesce(json_agg(id), '[]'::json) FROM api_tokens WHERE id = ",
        any_of!("3", "bigint"),
        "), 'numbers', (SELECT coalesce(json_agg(json_build_array(account_id, phone_number, ",
        "contact_id)), '[]'::json) FROM contact_phone_numbers WHERE account_id = ",
        any_of!("2", "bigint"),
        " AND phone_number = ",
        any_of!("4", "text"),
        "), 'users', ",
        owned!("users", "5"),
        ", 'ring_groups', ",
        owned!("ring_groups", "6"),
        ", 'lines', ",
        owned!("lines", "7"),
        ", 'tags', ",
        owned!("tags", "8"),
        ", 'dispositions', ",
        owned!("disposition_statuses", "9"),
        ", 'sequences', ",
        owned!("sequences", "10"),
        ", 'members', (SELECT coalesce(json_agg(json_build_array(m.ring_group_id, u.id, ",
        "u.active, u.available) ORDER BY m.ring_group_id, u.id), '[]'::json) ",
        "FROM ring_group_members m JOIN users u ON u.account_id = m.account_id ",
        "AND u.id = m.user_id WHERE m.ring_group_id = ",
        any_of!("6", "bigint"),
        "), 'ids', (SELECT coalesce(json_agg(nextval(q.seq)), '[]'::json) ",
        "FROM (SELECT pg_get_serial_sequence('contacts', 'id')::regclass AS seq) AS q, ",
        "generate_series(1, $11::int))",
        ") AS snapshot"
    );
    let row = c
        .query_one_raw(stmt(
            SQL,
            vec![
                json!(w.intakes).into(),
                json!(w.accounts).into(),
                json!(w.tokens).into(),
                json!(w.numbers).into(),
                json!(w.users).into(),
                json!(w.ring_groups).into(),
                json!(w.lines).into(),
                json!(w.tags).into(),
                json!(w.dispositions).into(),
                json!(w.sequences).into(),
                i32::try_from(w.new_ids).unwrap_or(i32::MAX).into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("Failed to read the leads' snapshot".into()))?;
    let value: serde_json::Value = row.try_get("", "snapshot")?;
    let j: SnapshotJson = serde_json::from_value(value).map_err(|e| DbErr::Json(e.to_string()))?;
    let wanted: HashSet<&str> = w.numbers.iter().map(String::as_str).collect();
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
        owners: j
            .numbers
            .into_iter()
            .filter(|(_, p, _)| wanted.contains(p.as_str()))
            .map(|(a, p, c)| ((a, p), c))
            .collect(),
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
        .query_all_raw(stmt(
            "SELECT k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) AS locked \
             FROM jsonb_array_elements_text($1::jsonb) AS k",
            vec![json!(keys).into()],
        ))
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

pub(crate) async fn related(c: &impl ConnectionTrait, contacts: &[i64]) -> Result<Related, DbErr> {
    if contacts.is_empty() {
        return Ok(Related::default());
    }
    const SQL: &str = concat!(
        "SELECT json_build_object(",
        "'tags', (SELECT coalesce(json_agg(json_build_array(contact_id, tag_id)), '[]'::json) ",
        "FROM contact_tags WHERE contact_id = ",
        any_of!("1", "bigint"),
        "), 'active', (SELECT coalesce(json_agg(json_build_array(contact_id, sequence_id) ",
        "ORDER BY id), '[]'::json) FROM sequence_enrollments WHERE status = 'active' ",
        "AND contact_id = ",
        any_of!("1", "bigint"),
        "), 'queued', (SELECT coalesce(json_agg(contact_id), '[]'::json) FROM powerdialer_items ",
        "WHERE status = 'queued' AND contact_id = ",
        any_of!("1", "bigint"),
        ")) AS related"
    );
    let row = c
        .query_one_raw(stmt(SQL, vec![json!(contacts).into()]))
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
        .query_all_raw(stmt(
            concat!(
                "SELECT user_id, min(position) AS top, max(position) AS bottom ",
                "FROM powerdialer_items WHERE status = 'queued' AND user_id = ",
                any_of!("1", "bigint"),
                " GROUP BY user_id"
            ),
            vec![json!(users).into()],
        ))
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            row.try_get("", "user_id")?,
            (row.try_get("", "top")?, row.try_get("", "bottom")?),
        );
    }
    Ok(out)
}
