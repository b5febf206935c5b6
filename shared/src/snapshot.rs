//! What the §4 rules read about leads, in a round trip or two: the [`Snapshot`] of a set of
//! leads (their intake records, numbers' contacts, linked ids and ring-group members) and
//! the [`ContactView`]s of the contacts they match. The worker reads them inside its
//! transaction, under its locks; the validate endpoint reads them with the same
//! statements, without locks and reserving no contact id.
//!
//! The SQL lives in `snapshot/*.sql` beside this file. Every statement takes its keys as
//! typed array parameters (`$1::bigint[]`) and descends an index once per key, so its cost
//! follows the batch, never the table.

use crate::entities::contact;
use crate::lead::{Lead, Link};
use crate::policy::{AccountPolicy, Channel, Consent, DncChannel, DncEntry};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockType, PgFunc};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, Statement, Value,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

pub const SNAPSHOT: &str = include_str!("snapshot/snapshot.sql");
pub const RELATED: &str = include_str!("snapshot/related.sql");

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// What an intake record already says.
#[derive(Debug, Clone, Deserialize)]
pub struct IntakeRow {
    pub id: Uuid,
    pub status: String,
    pub contact_id: Option<i64>,
    pub actions: serde_json::Value,
    pub warnings: serde_json::Value,
}

/// What is read about a set of leads, in one round trip.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub records: HashMap<Uuid, IntakeRow>,
    pub accounts: HashSet<i64>,
    /// Each account's contact-policy settings (§9).
    pub policies: HashMap<i64, AccountPolicy>,
    /// The event types each account's enabled endpoints want (§11).
    pub subscriptions: crate::events::Subscriptions,
    /// (account, E.164) → the number's do-not-contact entries.
    pub dnc: HashMap<(i64, String), Vec<DncEntry>>,
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
    /// Contact ids reserved for the contacts a transaction may create.
    pub new_ids: Vec<i64>,
}

impl Snapshot {
    /// The (account, id) pairs of `link` that exist.
    pub fn ids(&self, link: Link) -> &HashSet<(i64, i64)> {
        match link {
            Link::User => &self.users,
            Link::RingGroup => &self.ring_groups,
            Link::Line => &self.lines,
            Link::Sequence => &self.sequences,
            Link::Tag => &self.tags,
            Link::DispositionStatus => &self.dispositions,
        }
    }
}

/// A ring-group member as distribution sees it.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub user_id: i64,
    pub active: bool,
    pub available: bool,
}

/// The ids a set of leads names, to read in one [`read`].
#[derive(Debug, Default)]
pub struct Wanted {
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
    /// Contact ids to reserve (with nextval); 0 for a read that creates nothing.
    pub new_ids: usize,
}

impl Wanted {
    /// Adds what the rules read about `lead` of `account_id`: its numbers and linked ids.
    pub fn add_lead(&mut self, account_id: i64, lead: &Lead) {
        for n in lead.all_numbers() {
            self.numbers.push((account_id, n.as_str().to_owned()));
        }
        let l = &lead.links;
        let account = |id: Option<i64>| id.map(|id| (account_id, id));
        self.users.extend(account(l.user_id));
        self.ring_groups.extend(account(l.ring_group_id));
        self.lines.extend(account(l.line_id));
        self.tags.extend(account(l.tag_id));
        self.dispositions.extend(account(l.disposition_status_id));
        self.sequences.extend(account(l.sequence_id));
    }
}

/// (account, E.164, channel, expires at)
type DncRow = (i64, String, String, Option<DateTime<Utc>>);

#[derive(Deserialize)]
struct SnapshotJson {
    intakes: Vec<IntakeRow>,
    accounts: Vec<(i64, Vec<String>, Vec<String>)>,
    dnc: Vec<DncRow>,
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

/// Reads the [`Snapshot`] of `w` in one statement ([`SNAPSHOT`]).
pub async fn read(c: &impl ConnectionTrait, w: &Wanted) -> Result<Snapshot, DbErr> {
    let row = c
        .query_one_raw(stmt(SNAPSHOT, snapshot_values(w)))
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
    let mut dnc: HashMap<(i64, String), Vec<DncEntry>> = HashMap::new();
    for (account, number, channel, expires_at) in j.dnc {
        // A CHECK constraint keeps the column to the three names; anything else would
        // block every channel rather than none.
        let channel = DncChannel::parse(&channel).unwrap_or(DncChannel::All);
        dnc.entry((account, number)).or_default().push(DncEntry {
            channel,
            expires_at,
        });
    }
    Ok(Snapshot {
        records: j.intakes.into_iter().map(|r| (r.id, r)).collect(),
        policies: j
            .accounts
            .iter()
            .map(|(id, required, _)| (*id, account_policy(required)))
            .collect(),
        subscriptions: crate::events::Subscriptions::new(
            j.accounts.iter().map(|(id, _, types)| (*id, types.clone())),
        ),
        accounts: j.accounts.into_iter().map(|(id, _, _)| id).collect(),
        dnc,
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

/// An account's policy settings from its `require_consent` column.
pub fn account_policy(required: &[String]) -> AccountPolicy {
    AccountPolicy {
        require_consent_call: required.iter().any(|c| c == Channel::Call.as_str()),
        require_consent_sms: required.iter().any(|c| c == Channel::Sms.as_str()),
    }
}

/// The parameters of [`SNAPSHOT`], in its order.
fn snapshot_values(w: &Wanted) -> Vec<Value> {
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
    values
}

/// A contact as the rules see it: its row and what hangs off it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactView {
    pub model: contact::Model,
    /// Tags the contact has.
    pub tags: HashSet<i64>,
    /// Sequences the contact is actively enrolled in (at most one).
    pub active: Vec<i64>,
    /// Queued in some PowerDialer list of the account.
    pub queued: bool,
    /// Consent records for calls and messages, given and revoked (§9).
    pub consents: Vec<Consent>,
}

impl ContactView {
    /// A contact with nothing hanging off it yet.
    pub fn new(model: contact::Model) -> Self {
        Self {
            model,
            tags: HashSet::new(),
            active: Vec::new(),
            queued: false,
            consents: Vec::new(),
        }
    }
}

/// How [`contacts`] reads the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLock {
    /// Locked against other writers (`FOR NO KEY UPDATE`): the worker writes a changed
    /// contact back whole, so no writer that does not know its advisory locks may slip in.
    ForWrite,
    /// A plain read (the validate endpoint changes nothing).
    None,
}

/// The contacts of `ids` with what hangs off them, in two statements.
pub async fn contacts(
    c: &impl ConnectionTrait,
    ids: Vec<i64>,
    lock: RowLock,
) -> Result<Vec<ContactView>, DbErr> {
    // `= ANY($1)`, not `IN ($1, ..)`: one statement text whatever the number of ids, so
    // it is planned once per connection.
    let mut query = contact::Entity::find()
        .filter(Expr::col(contact::Column::Id).eq(PgFunc::any(Expr::val(ids))));
    if lock == RowLock::ForWrite {
        query = query.lock(LockType::NoKeyUpdate);
    }
    let models = query.all(c).await?;
    let keys: Vec<(i64, i64)> = models.iter().map(|c| (c.account_id, c.id)).collect();
    let mut related = related(c, &keys).await?;
    Ok(models
        .into_iter()
        .map(|model| {
            let id = model.id;
            ContactView {
                model,
                tags: related.tags.remove(&id).unwrap_or_default(),
                active: related.active.remove(&id).unwrap_or_default(),
                queued: related.queued.contains(&id),
                consents: related.consents.remove(&id).unwrap_or_default(),
            }
        })
        .collect())
}

/// What the rules must know of a contact beyond its row.
#[derive(Debug, Default)]
struct Related {
    tags: HashMap<i64, HashSet<i64>>,
    /// Active sequence enrollments.
    active: HashMap<i64, Vec<i64>>,
    /// Contacts with a queued PowerDialer entry.
    queued: HashSet<i64>,
    consents: HashMap<i64, Vec<Consent>>,
}

/// (contact, channel, given at, revoked at)
type ConsentRow = (i64, String, DateTime<Utc>, Option<DateTime<Utc>>);

#[derive(Deserialize)]
struct RelatedJson {
    tags: Vec<(i64, i64)>,
    active: Vec<(i64, i64)>,
    consents: Vec<ConsentRow>,
    queued: Vec<i64>,
}

/// The links of the contacts, given as (account, contact) pairs ([`RELATED`]).
async fn related(c: &impl ConnectionTrait, contacts: &[(i64, i64)]) -> Result<Related, DbErr> {
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
    for (contact, channel, given_at, revoked_at) in j.consents {
        let channel = if channel == "call" {
            Channel::Call
        } else {
            Channel::Sms
        };
        out.consents.entry(contact).or_default().push(Consent {
            channel,
            given_at,
            revoked_at,
        });
    }
    out.queued = j.queued.into_iter().collect();
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
