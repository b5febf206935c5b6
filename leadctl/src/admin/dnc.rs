//! Operator operations on an account's do-not-contact list (§9, `leadctl dnc …`): add,
//! remove, list and check a number, and ([`import`]) a file of numbers.
//!
//! Numbers are read with the product's phone parser in the account's default region, so
//! `(818) 555-0100` and `+1 818 555 0100` are the same entry. Putting a number on the list
//! also revokes the standing consent its contact gave on the channels the entry covers
//! (`revoked_at`, `revoked_reason`); the consent records themselves are kept as evidence,
//! and taking the number off the list again does not restore them.

pub mod import;

use super::{AdminError, Result, find_account};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use serde::Serialize;
use shared::entities::do_not_contact;
use shared::phone::{PhoneNumber, Region};
use shared::policy::{Channel, DncChannel};

/// Longest reason kept with an entry.
pub const MAX_REASON_CHARS: usize = 255;

/// The statement that writes entries and revokes the consent they cover.
const WRITE: &str = include_str!("dnc/write.sql");

/// Who put an entry on the list (`do_not_contact.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Operator,
    Import,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Operator => "operator",
            Source::Import => "import",
        }
    }
}

/// A do-not-contact entry as `leadctl` shows it: the row, and whether it applies now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    #[serde(flatten)]
    pub row: do_not_contact::Model,
    /// It has not expired.
    pub in_force: bool,
}

impl Entry {
    fn new(row: do_not_contact::Model, now: DateTime<Utc>) -> Self {
        Self {
            in_force: row.expires_at.is_none_or(|x| x > now),
            row,
        }
    }
}

/// What an entry says besides its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub channel: DncChannel,
    /// Trimmed, not blank, at most [`MAX_REASON_CHARS`].
    pub reason: Option<String>,
    /// In the future; `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Terms {
    /// Terms with `reason` and `expires` as an operator typed them (see [`reason`] and
    /// [`expires_at`]).
    pub fn parse(
        channel: DncChannel,
        reason: Option<&str>,
        expires: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        Ok(Self {
            channel,
            reason: reason.map(self::reason).transpose()?.flatten(),
            expires_at: expires.map(|e| expires_at(e, now)).transpose()?,
        })
    }
}

/// A reason as kept: trimmed; blank is none.
pub fn reason(text: &str) -> Result<Option<String>> {
    let text = text.trim();
    if text.chars().count() > MAX_REASON_CHARS {
        return Err(AdminError::Invalid(format!(
            "a reason must be at most {MAX_REASON_CHARS} characters"
        )));
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// An expiry given as an RFC 3339 instant (`2027-01-31T00:00:00Z`) or as a duration from
/// `now` (`30d`, `12h`, `1h 30m`); it must be in the future.
pub fn expires_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let text = text.trim();
    let at = match DateTime::parse_from_rfc3339(text) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => humantime::parse_duration(text)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| {
                AdminError::Invalid(format!(
                    "{text:?} is neither an RFC 3339 instant (2027-01-31T00:00:00Z) nor a \
                     duration (30d, 12h)"
                ))
            })?,
    };
    if at <= now {
        return Err(AdminError::Invalid(format!(
            "the expiry {} is not in the future",
            at.to_rfc3339()
        )));
    }
    Ok(at)
}

/// `text` in E.164, read as the product reads a lead's number in `region`.
pub fn number(text: &str, region: Region) -> Result<PhoneNumber> {
    PhoneNumber::parse(text, region)
        .map_err(|e| AdminError::Invalid(format!("{:?} {e}", text.trim())))
}

/// The account's region for numbers written without a country code.
async fn region_of(db: &impl ConnectionTrait, account_id: i64) -> Result<Region> {
    let account = find_account(db, account_id).await?;
    // Accounts are created with a checked region; an unknown one reads as the default.
    Ok(Region::parse(&account.default_region).unwrap_or_default())
}

/// One entry to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewEntry {
    pub number: PhoneNumber,
    pub terms: Terms,
}

/// What [`write`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Written {
    pub added: u64,
    pub updated: u64,
    pub consents_revoked: u64,
    /// The entries added: (number, channel, reason or "").
    pub added_entries: Vec<(String, String, String)>,
}

impl Written {
    /// The `dnc.added` events (§11) of the entries added, put there by `source`.
    pub(crate) fn events(
        &self,
        account_id: i64,
        source: Source,
        at: DateTime<Utc>,
    ) -> Result<Vec<shared::events::Event>> {
        Ok(self
            .added_entries
            .iter()
            .map(|(number, channel, reason)| {
                shared::events::dnc_added(account_id, number, channel, reason, source.as_str(), at)
            })
            .collect::<std::result::Result<_, _>>()?)
    }
}

/// Writes `entries` (no (number, channel) twice) in one statement: new ones are added;
/// those already there are updated only when `replace`. The consent of the numbers'
/// contacts on the channels of the entries written is revoked.
pub(crate) async fn write(
    db: &impl ConnectionTrait,
    account_id: i64,
    entries: &[NewEntry],
    source: Source,
    replace: bool,
) -> Result<Written> {
    if entries.is_empty() {
        return Ok(Written::default());
    }
    let column =
        |f: &dyn Fn(&NewEntry) -> String| -> Vec<String> { entries.iter().map(f).collect() };
    let values: Vec<sea_orm::Value> = vec![
        account_id.into(),
        column(&|e| e.number.as_str().to_owned()).into(),
        column(&|e| e.terms.channel.as_str().to_owned()).into(),
        column(&|e| e.terms.reason.clone().unwrap_or_default()).into(),
        column(&|e| {
            e.terms
                .expires_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
        })
        .into(),
        source.as_str().into(),
        replace.into(),
    ];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            WRITE,
            values,
        ))
        .await?
        .ok_or_else(|| AdminError::Invalid("writing the entries returned nothing".into()))?;
    let count = |name: &str| -> Result<u64> {
        let n: i64 = row.try_get("", name)?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    let added_entries: serde_json::Value = row.try_get("", "added_entries")?;
    Ok(Written {
        added: count("added")?,
        updated: count("updated")?,
        consents_revoked: count("revoked")?,
        added_entries: serde_json::from_value(added_entries)
            .map_err(|e| AdminError::Invalid(format!("the entries written: {e}")))?,
    })
}

/// The entries of `number` in `account_id`, by channel.
async fn entries_of(
    db: &impl ConnectionTrait,
    account_id: i64,
    number: &PhoneNumber,
) -> Result<Vec<do_not_contact::Model>> {
    Ok(do_not_contact::Entity::find()
        .filter(do_not_contact::Column::AccountId.eq(account_id))
        .filter(do_not_contact::Column::PhoneNumber.eq(number.as_str()))
        .order_by_asc(do_not_contact::Column::Channel)
        .all(db)
        .await?)
}

/// What `dnc add` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    #[serde(flatten)]
    pub entry: Entry,
    /// False when the entry was there already (its reason and expiry were replaced).
    pub created: bool,
    /// Consent records of the number's contact revoked now.
    pub consents_revoked: u64,
}

/// Puts `number` on the list of `account_id` on the terms' channel, or, if it is there on
/// that channel, replaces the entry's reason and expiry. Either way the number's contact's
/// standing consent on the channel is revoked. A new entry is announced (`dnc.added`, §11)
/// in the caller's transaction.
pub async fn add(
    db: &impl ConnectionTrait,
    account_id: i64,
    number: &str,
    terms: Terms,
) -> Result<Added> {
    let number = self::number(number, region_of(db, account_id).await?)?;
    let channel = terms.channel;
    let written = write(
        db,
        account_id,
        &[NewEntry {
            number: number.clone(),
            terms,
        }],
        Source::Operator,
        true,
    )
    .await?;
    let row = entries_of(db, account_id, &number)
        .await?
        .into_iter()
        .find(|e| e.channel == channel.as_str())
        .ok_or_else(|| AdminError::Invalid(format!("{number} was not written")))?;
    shared::events::record(
        db,
        written.events(account_id, Source::Operator, Utc::now())?,
    )
    .await?;
    Ok(Added {
        entry: Entry::new(row, Utc::now()),
        created: written.added == 1,
        consents_revoked: written.consents_revoked,
    })
}

/// What `dnc remove` took off the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub account_id: i64,
    pub number: String,
    pub entries: Vec<Entry>,
}

/// Takes `number` off the list of `account_id`: the entry of `channel`, or every entry of
/// the number. Removing what is not there removes nothing and is not an error. Revoked
/// consent stays revoked.
pub async fn remove(
    db: &impl ConnectionTrait,
    account_id: i64,
    number: &str,
    channel: Option<DncChannel>,
) -> Result<Removed> {
    let number = self::number(number, region_of(db, account_id).await?)?;
    let mut delete = do_not_contact::Entity::delete_many()
        .filter(do_not_contact::Column::AccountId.eq(account_id))
        .filter(do_not_contact::Column::PhoneNumber.eq(number.as_str()));
    if let Some(c) = channel {
        delete = delete.filter(do_not_contact::Column::Channel.eq(c.as_str()));
    }
    let now = Utc::now();
    let mut entries: Vec<Entry> = delete
        .exec_with_returning(db)
        .await?
        .into_iter()
        .map(|row| Entry::new(row, now))
        .collect();
    entries.sort_by(|a, b| a.row.channel.cmp(&b.row.channel));
    Ok(Removed {
        account_id,
        number: number.as_str().to_owned(),
        entries,
    })
}

/// An account's list, or its first part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    pub account_id: i64,
    /// Entries on the list, expired ones included.
    pub total: u64,
    /// Oldest first, at most the limit asked for.
    pub entries: Vec<Entry>,
}

/// The first `limit` entries of `account_id`'s list, oldest first, and how many it has.
pub async fn list(db: &impl ConnectionTrait, account_id: i64, limit: u64) -> Result<Listing> {
    find_account(db, account_id).await?;
    let of_account =
        || do_not_contact::Entity::find().filter(do_not_contact::Column::AccountId.eq(account_id));
    let total = of_account().count(db).await?;
    let now = Utc::now();
    let entries = of_account()
        .order_by_asc(do_not_contact::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| Entry::new(row, now))
        .collect();
    Ok(Listing {
        account_id,
        total,
        entries,
    })
}

/// Whether the list stops the product from reaching a number now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub account_id: i64,
    /// E.164.
    pub number: String,
    /// The channels entries in force cover (`all` covers both).
    pub blocked: Vec<Channel>,
    /// Every entry of the number, expired ones included.
    pub entries: Vec<Entry>,
}

/// The entries of `number` in `account_id` and the channels they block now, as the
/// contact policy reads them.
pub async fn check(db: &impl ConnectionTrait, account_id: i64, number: &str) -> Result<Check> {
    let number = self::number(number, region_of(db, account_id).await?)?;
    let now = Utc::now();
    let entries: Vec<Entry> = entries_of(db, account_id, &number)
        .await?
        .into_iter()
        .map(|row| Entry::new(row, now))
        .collect();
    let in_force: Vec<DncChannel> = entries
        .iter()
        .filter(|e| e.in_force)
        .filter_map(|e| DncChannel::parse(&e.row.channel))
        .collect();
    let blocked = Channel::ALL
        .into_iter()
        .filter(|c| in_force.iter().any(|e| e.covers(*c)))
        .collect();
    Ok(Check {
        account_id,
        number: number.as_str().to_owned(),
        blocked,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-02T12:00:00Z".parse().expect("instant")
    }

    #[test]
    fn an_expiry_is_an_instant_or_a_duration_from_now_and_in_the_future() {
        let at = |t: &str| expires_at(t, now()).map_err(|e| e.to_string());
        assert_eq!(at("30d"), Ok("2027-01-01T12:00:00Z".parse().expect("t")));
        assert_eq!(at(" 12h "), Ok("2026-12-03T00:00:00Z".parse().expect("t")));
        assert_eq!(
            at("2027-01-31T09:00:00+01:00"),
            Ok("2027-01-31T08:00:00Z".parse().expect("t"))
        );
        assert!(at("2020-01-01T00:00:00Z").is_err_and(|e| e.contains("not in the future")));
        assert!(at("0s").is_err_and(|e| e.contains("not in the future")));
        assert!(at("next week").is_err_and(|e| e.contains("neither an RFC 3339")));
    }

    #[test]
    fn numbers_are_read_as_leads_are_and_bad_ones_say_why() {
        for text in [
            "(818) 555-0100",
            "+1 818-555-0100",
            "1.818.555.0100",
            "8185550100",
        ] {
            assert_eq!(
                number(text, Region::US).map(|n| n.as_str().to_owned()).ok(),
                Some("+18185550100".to_owned()),
                "{text}"
            );
        }
        assert_eq!(
            number("020 7946 0958", Region::parse("GB").expect("GB"))
                .map(|n| n.as_str().to_owned())
                .ok(),
            Some("+442079460958".to_owned())
        );
        let e = number("555-01", Region::US)
            .expect_err("too short")
            .to_string();
        assert!(e.contains("\"555-01\""), "{e}");
        assert!(number("call me", Region::US).is_err());
    }

    #[test]
    fn a_reason_is_trimmed_blank_is_none_and_long_is_refused() {
        assert_eq!(reason("  asked  ").ok(), Some(Some("asked".to_owned())));
        assert_eq!(reason("   ").ok(), Some(None));
        assert!(reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
    }
}
