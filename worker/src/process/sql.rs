//! The statements of the hot path written by hand: advisory locks, PowerDialer positions,
//! and a whole batch's contacts, numbers, notes, tags and intake records in one round trip
//! each (what the rules read is [`shared::snapshot`], shared with the validate endpoint).
//! The SQL lives in `sql/*.sql` beside this file. Every statement takes its rows and keys as
//! typed array parameters (`$1::bigint[]`), so its text, and its plan on a connection, is the
//! same for every batch size (a SeaORM `insert_many` has a text per number of rows), and it
//! descends an index once per key, so its cost follows the batch, never the table.
//! PostgreSQL may keep a generic plan after five executions; one made while a table was
//! small still reaches it by index as it grows (see [`crate::db`]: sequential scans, hash
//! and merge joins are off, and connections are replaced after a bounded life).

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use shared::snapshot::{RELATED, SNAPSHOT};
use std::collections::HashSet;

pub(crate) const LOCK_ALL: &str = include_str!("sql/lock_all.sql");
pub(crate) const TRY_LOCK_ALL: &str = include_str!("sql/try_lock_all.sql");
pub(crate) const POWERDIALER_POSITIONS: &str = include_str!("sql/powerdialer_positions.sql");
pub(crate) const DEAD_LETTER: &str = include_str!("sql/dead_letter.sql");
pub(crate) const PROCESSING: &str = include_str!("sql/processing.sql");
pub(crate) const RECORDS: &str = include_str!("sql/records.sql");
pub(crate) const CONTACTS: &str = include_str!("sql/contacts.sql");
pub(crate) const CONTACT_UPDATES: &str = include_str!("sql/contact_updates.sql");
pub(crate) const NOTES: &str = include_str!("sql/notes.sql");
pub(crate) const TAGS: &str = include_str!("sql/tags.sql");
pub(crate) const NUMBERS: &str = include_str!("sql/numbers.sql");
pub(crate) const ENROLL: &str = include_str!("sql/enroll.sql");
pub(crate) const DISENROLL: &str = include_str!("sql/disenroll.sql");

/// The hand-written statements of the hot path, by name, for the plan checks of the tests.
pub const HOT_PATH: [(&str, &str); 14] = [
    ("snapshot", SNAPSHOT),
    ("related", RELATED),
    ("lock_all", LOCK_ALL),
    ("try_lock_all", TRY_LOCK_ALL),
    ("powerdialer_positions", POWERDIALER_POSITIONS),
    ("dead_letter", DEAD_LETTER),
    ("records", RECORDS),
    ("contacts", CONTACTS),
    ("contact_updates", CONTACT_UPDATES),
    ("notes", NOTES),
    ("tags", TAGS),
    ("numbers", NUMBERS),
    ("enroll", ENROLL),
    ("disenroll", DISENROLL),
];

pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Lock keys. Every writer of a number or contact takes the key first, so concurrent leads
/// serialize on exactly what they share, across processes. (A PowerDialer list needs none:
/// see [`powerdialer_positions`].)
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

/// `n` new PowerDialer positions, ascending, each larger than every position drawn before
/// (by any transaction): a bottom entry takes one as it is, a top entry its negation.
pub(crate) async fn powerdialer_positions(
    c: &impl ConnectionTrait,
    n: usize,
) -> Result<Vec<i64>, DbErr> {
    let n = i32::try_from(n).map_err(|_| DbErr::Custom("too many PowerDialer entries".into()))?;
    let rows = c
        .query_all_raw(stmt(POWERDIALER_POSITIONS, vec![n.into()]))
        .await?;
    let mut positions = rows
        .iter()
        .map(|row| row.try_get::<i64>("", "position"))
        .collect::<Result<Vec<i64>, DbErr>>()?;
    positions.sort_unstable();
    Ok(positions)
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
        .chain(HOT_PATH)
        .chain(crate::messages::STATEMENTS);
        let named = testkit::statuses::assert_known(sources);
        assert!(named >= 10, "only {named} status literals found");
    }

    /// The contacts' insert writes every column of the entity and is a plain insert (its
    /// ids are new), and their update sets every updatable column and nothing else: a
    /// column added to the table must be added to both.
    #[test]
    fn the_contacts_statements_write_every_column_and_update_the_updatable_ones() {
        use sea_orm::{IdenStatic, Iterable};
        use shared::entities::contact::Column;
        let body = |sql: &str| -> String {
            sql.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let insert = body(CONTACTS);
        assert!(!insert.contains("ON CONFLICT"), "a plain insert");
        let (insert, _) = insert.split_once(") SELECT").expect("an INSERT .. SELECT");
        let inserted = words(insert.split_once('(').expect("a column list").1);
        let columns: Vec<String> = Column::iter().map(|c| c.as_str().to_owned()).collect();
        assert_eq!(
            sorted(inserted),
            sorted(columns),
            "the inserted columns are the entity's"
        );
        let update = body(CONTACT_UPDATES);
        let (_, set) = update.split_once(" SET ").expect("an UPDATE .. SET");
        let (set, _) = set.split_once(" FROM unnest").expect("an UPDATE .. FROM");
        // An assignment is `column = …`; a comma inside `nullif(…, 0)` starts no other.
        let assigned: Vec<String> = set
            .split(',')
            .filter(|a| a.contains('='))
            .map(|a| words(a).first().cloned().unwrap_or_default())
            .collect();
        let updatable: Vec<String> = Column::iter()
            .filter(Column::is_updatable)
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(
            sorted(assigned),
            sorted(updatable),
            "the updated columns are the updatable ones"
        );
        let (_, unnest) = update.split_once("FROM unnest").expect("an UPDATE .. FROM");
        let (_, insert_unnest) = body(CONTACTS)
            .split_once("FROM unnest")
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .expect("an INSERT .. FROM");
        assert_eq!(
            words(unnest.split_once("WHERE").expect("a WHERE").0),
            words(&insert_unnest),
            "the update takes the insert's parameters"
        );
    }
}
