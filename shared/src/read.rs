//! The read model behind the read API (§5): contacts and intakes as clients see them,
//! always scoped to one account. Another account's row is indistinguishable from a
//! missing one.

use crate::contact_fields::ContactText;
use crate::entities::sequence_enrollment::EnrollmentStatus;
use crate::entities::{contact, contact_phone_number, contact_tag, lead_intake};
use crate::intake::IntakeStatus;
use crate::outcome::{Action, Warning};
use crate::payload::FieldErrors;
use crate::phone::{PhoneNumber, Region};
use crate::rfc3339;
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement,
    sea_query::{Expr, ExprTrait, Func},
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// A contact as the read API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContactView {
    pub id: i64,
    /// Primary number, E.164.
    #[schema(example = "+18181234567")]
    pub phone_number: String,
    pub other_phone_numbers: Vec<PhoneView>,
    #[serde(flatten)]
    #[schema(inline)]
    pub text: ContactText,
    /// `YYYY-MM-DD`.
    #[schema(value_type = Option<String>, format = Date, example = "1990-04-21")]
    pub date_of_birth: Option<NaiveDate>,
    /// IANA zone name.
    #[schema(example = "America/Los_Angeles")]
    pub timezone: Option<String>,
    /// The owner, or null.
    pub user_id: Option<i64>,
    pub tag_ids: Vec<i64>,
    pub line_id: Option<i64>,
    pub disposition_status_id: Option<i64>,
    /// Oldest first.
    pub notes: Vec<NoteView>,
    pub sequence_enrollments: Vec<EnrollmentView>,
    /// The contact's queued PowerDialer entry, if any.
    pub powerdialer: Option<PowerdialerView>,
    /// The contact's consent records (§9), oldest first; a revoked one keeps its
    /// `revoked_at`.
    pub consent: Vec<ConsentView>,
    /// Channels its primary number may not be reached on now (`call`, `sms`, `all`).
    pub do_not_contact: Vec<String>,
    #[serde(serialize_with = "rfc3339::utc")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::utc")]
    pub updated_at: DateTime<Utc>,
}

impl ContactView {
    /// The view of `c`, with what other tables hold of it.
    pub fn new(c: contact::Model, related: Related) -> ContactView {
        ContactView {
            other_phone_numbers: related.other_phone_numbers,
            tag_ids: related.tag_ids,
            notes: related.notes,
            sequence_enrollments: related.sequence_enrollments,
            powerdialer: related.powerdialer,
            consent: related.consent,
            do_not_contact: related.do_not_contact,
            text: ContactText::read(|field| c.text(field)),
            id: c.id,
            phone_number: c.phone_number,
            date_of_birth: c.date_of_birth,
            timezone: c.timezone,
            user_id: c.owner_id,
            line_id: c.line_id,
            disposition_status_id: c.disposition_status_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// `t` as PostgreSQL gives it back: microseconds, the driver cutting the rest toward its
/// epoch (2000-01-01), so that a view built from what was written equals the one read back.
pub fn as_stored(t: DateTime<Utc>) -> DateTime<Utc> {
    // 2000-01-01T00:00:00Z.
    let Some(epoch) = DateTime::from_timestamp(946_684_800, 0) else {
        return t;
    };
    (t - epoch)
        .num_microseconds()
        .map_or(t, |us| epoch + chrono::Duration::microseconds(us))
}

/// What tables other than `contacts` hold of a contact, each list in the order the read
/// API shows it.
#[derive(Debug, Default)]
pub struct Related {
    pub other_phone_numbers: Vec<PhoneView>,
    pub tag_ids: Vec<i64>,
    pub notes: Vec<NoteView>,
    pub sequence_enrollments: Vec<EnrollmentView>,
    pub powerdialer: Option<PowerdialerView>,
    pub consent: Vec<ConsentView>,
    pub do_not_contact: Vec<String>,
}

/// One consent record of a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConsentView {
    /// `call`, `sms` or `email`.
    pub channel: String,
    #[serde(serialize_with = "rfc3339::utc")]
    pub given_at: DateTime<Utc>,
    pub text: Option<String>,
    pub source_url: Option<String>,
    pub trustedform_cert_url: Option<String>,
    pub leadid_token: Option<String>,
    #[serde(serialize_with = "rfc3339::opt_utc")]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhoneView {
    pub label: Option<String>,
    #[schema(example = "+18187405020")]
    pub phone_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NoteView {
    pub body: String,
    #[serde(serialize_with = "rfc3339::utc")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentView {
    pub sequence_id: i64,
    pub status: EnrollmentStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PowerdialerView {
    /// Whose list holds the entry.
    pub user_id: i64,
    /// Smaller = nearer the top. Positions order a list; they are not consecutive.
    pub position: i64,
    /// Outside the contact's calling window (§9): not dialed before this instant.
    #[serde(serialize_with = "rfc3339::opt_utc")]
    pub not_before: Option<DateTime<Utc>>,
}

/// One page of contacts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ContactPage {
    pub data: Vec<ContactView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// An intake as the read API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct IntakeView {
    pub intake_id: Uuid,
    pub status: IntakeStatus,
    pub contact_id: Option<i64>,
    /// What the worker did, in order.
    pub actions: Vec<Action>,
    /// What of the lead it could not honour (the lead was still saved).
    pub warnings: Vec<Warning>,
    /// Processing attempts made so far (failed ones included).
    #[schema(example = 1)]
    pub attempts: i32,
    /// While `processing`, why the last attempt failed (it is retried); when
    /// `dead_lettered`, why the lead was dead-lettered.
    #[schema(example = json!(null))]
    pub last_error: Option<String>,
    #[serde(serialize_with = "rfc3339::utc")]
    pub received_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::opt_utc")]
    pub processed_at: Option<DateTime<Utc>>,
}

/// Filters of `GET /api/v1/contacts`, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactQuery {
    pub phone_number: Option<PhoneNumber>,
    pub email: Option<String>,
    pub tag_id: Option<i64>,
    pub lead_source: Option<String>,
    pub source: Option<String>,
    pub line_id: Option<i64>,
    pub user_id: Option<i64>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub limit: u64,
    /// The last contact id of the previous page.
    pub after_id: Option<i64>,
}

pub const DEFAULT_PAGE_SIZE: u64 = 25;
pub const MAX_PAGE_SIZE: u64 = 100;

impl ContactQuery {
    /// Parses query-string pairs; every bad filter is reported at once.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        region: Region,
    ) -> Result<Self, FieldErrors> {
        let mut q = ContactQuery {
            limit: DEFAULT_PAGE_SIZE,
            ..Default::default()
        };
        let mut errors = FieldErrors::default();
        for (key, raw) in pairs {
            let value = raw.trim();
            if value.is_empty() {
                continue;
            }
            if value.contains('\0') {
                // No stored text holds one (PostgreSQL refuses it), so it is a client error.
                errors.add(key, "The filter must not contain a NUL character.");
                continue;
            }
            match key {
                "phone_number" => match PhoneNumber::parse(value, region) {
                    Ok(p) => q.phone_number = Some(p),
                    Err(_) => errors.add(key, "The phone number must be a valid phone number."),
                },
                "email" => q.email = Some(value.to_lowercase()),
                "lead_source" => q.lead_source = Some(value.to_owned()),
                "source" => q.source = Some(value.to_owned()),
                "tag_id" | "line_id" | "user_id" => match value.parse::<i64>() {
                    Ok(n) if n > 0 => match key {
                        "tag_id" => q.tag_id = Some(n),
                        "line_id" => q.line_id = Some(n),
                        _ => q.user_id = Some(n),
                    },
                    _ => errors.add(
                        key,
                        format!("The {} must be a positive integer.", words(key)),
                    ),
                },
                "created_after" | "created_before" => match parse_instant(value) {
                    Some(t) if key == "created_after" => q.created_after = Some(t),
                    Some(t) => q.created_before = Some(t),
                    None => errors.add(
                        key,
                        format!(
                            "The {} must be an RFC 3339 date-time or a YYYY-MM-DD date.",
                            words(key)
                        ),
                    ),
                },
                "limit" => match value.parse::<u64>() {
                    Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => q.limit = n,
                    _ => errors.add(
                        key,
                        format!("The limit must be an integer between 1 and {MAX_PAGE_SIZE}."),
                    ),
                },
                "cursor" => match decode_cursor(value) {
                    Some(id) => q.after_id = Some(id),
                    None => errors.add(key, "The cursor is invalid."),
                },
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (q.created_after, q.created_before)
            && a > b
        {
            errors.add(
                "created_before",
                "The created before must be a date after created after.",
            );
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(errors)
        }
    }
}

fn words(key: &str) -> String {
    key.replace('_', " ")
}

fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Cursors are opaque to clients: a versioned, hex-encoded position.
pub fn encode_cursor(last_id: i64) -> String {
    hex::encode(format!("c1:{last_id}"))
}

pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = hex::decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("c1:")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

/// One contact of `account_id`, or `None` (missing or another account's).
pub async fn contact(
    db: &impl ConnectionTrait,
    account_id: i64,
    id: i64,
) -> Result<Option<ContactView>, DbErr> {
    let Some(row) = contact::Entity::find_by_id(id)
        .filter(contact::Column::AccountId.eq(account_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    Ok(views(db, vec![row]).await?.pop())
}

/// The contacts of `ids` (any accounts: the caller's own writes), as views, in id order.
pub async fn contacts_by_id(
    db: &impl ConnectionTrait,
    ids: Vec<i64>,
) -> Result<Vec<ContactView>, DbErr> {
    let rows = contact_rows(db, ids).await?;
    views(db, rows).await
}

/// The rows of the contacts `ids`, in id order.
pub async fn contact_rows(
    db: &impl ConnectionTrait,
    ids: Vec<i64>,
) -> Result<Vec<contact::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    contact::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM contacts WHERE id = ANY ($1::bigint[]) ORDER BY id",
            [ids.into()],
        ))
        .all(db)
        .await
}

/// A page of `account_id`'s contacts matching `q`, in id order (stable under inserts:
/// new contacts get larger ids and land on later pages).
pub async fn contacts(
    db: &impl ConnectionTrait,
    account_id: i64,
    q: &ContactQuery,
) -> Result<ContactPage, DbErr> {
    let mut cond = Condition::all().add(contact::Column::AccountId.eq(account_id));
    if let Some(p) = &q.phone_number {
        let owners = contact_phone_number::Entity::find()
            .select_only()
            .column(contact_phone_number::Column::ContactId)
            .filter(contact_phone_number::Column::AccountId.eq(account_id))
            .filter(contact_phone_number::Column::PhoneNumber.eq(p.as_str()))
            .into_query();
        cond = cond.add(contact::Column::Id.in_subquery(owners));
    }
    if let Some(e) = &q.email {
        let lower_email = Expr::expr(Func::lower(Expr::col(contact::Column::Email)));
        cond = cond.add(ExprTrait::eq(lower_email, e.as_str()));
    }
    if let Some(t) = q.tag_id {
        let tagged = contact_tag::Entity::find()
            .select_only()
            .column(contact_tag::Column::ContactId)
            .filter(contact_tag::Column::AccountId.eq(account_id))
            .filter(contact_tag::Column::TagId.eq(t))
            .into_query();
        cond = cond.add(contact::Column::Id.in_subquery(tagged));
    }
    if let Some(v) = &q.lead_source {
        cond = cond.add(contact::Column::LeadSource.eq(v.as_str()));
    }
    if let Some(v) = &q.source {
        cond = cond.add(contact::Column::Source.eq(v.as_str()));
    }
    if let Some(v) = q.line_id {
        cond = cond.add(contact::Column::LineId.eq(v));
    }
    if let Some(v) = q.user_id {
        cond = cond.add(contact::Column::OwnerId.eq(v));
    }
    if let Some(t) = q.created_after {
        cond = cond.add(contact::Column::CreatedAt.gte(t));
    }
    if let Some(t) = q.created_before {
        cond = cond.add(contact::Column::CreatedAt.lt(t));
    }
    if let Some(after) = q.after_id {
        cond = cond.add(contact::Column::Id.gt(after));
    }
    // One more than asked tells whether a next page exists.
    let mut rows = contact::Entity::find()
        .filter(cond)
        .order_by_asc(contact::Column::Id)
        .limit(q.limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > q.limit;
    rows.truncate(usize::try_from(q.limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        rows.last().map(|c| encode_cursor(c.id))
    } else {
        None
    };
    Ok(ContactPage {
        data: views(db, rows).await?,
        next_cursor,
    })
}

/// [`views`]' statement: every related list of the contacts in one round trip.
const LINKS: &str = include_str!("read/links.sql");

/// Column `name` of `row`, JSON text in the shape of `T` (SQL null reads as JSON null).
fn json_column<T: serde::de::DeserializeOwned>(
    row: &sea_orm::QueryResult,
    name: &str,
) -> Result<T, DbErr> {
    let text: Option<String> = row.try_get("", name)?;
    serde_json::from_str(text.as_deref().unwrap_or("null"))
        .map_err(|e| DbErr::Json(format!("{name}: {e}")))
}

/// The views of `rows`, with what other tables hold of them ([`LINKS`]).
pub async fn views(
    db: &impl ConnectionTrait,
    rows: Vec<contact::Model>,
) -> Result<Vec<ContactView>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
    let accounts: Vec<i64> = rows.iter().map(|c| c.account_id).collect();
    let numbers: Vec<String> = rows.iter().map(|c| c.phone_number.clone()).collect();
    let mut related: HashMap<i64, Related> = HashMap::with_capacity(rows.len());
    for row in db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            LINKS,
            [ids.into(), accounts.into(), numbers.into()],
        ))
        .await?
    {
        related.insert(
            row.try_get("", "id")?,
            Related {
                other_phone_numbers: json_column(&row, "other_phone_numbers")?,
                tag_ids: json_column(&row, "tag_ids")?,
                notes: json_column(&row, "notes")?,
                sequence_enrollments: json_column(&row, "sequence_enrollments")?,
                powerdialer: json_column(&row, "powerdialer")?,
                consent: json_column(&row, "consent")?,
                do_not_contact: json_column(&row, "do_not_contact")?,
            },
        );
    }
    Ok(rows
        .into_iter()
        .map(|c| {
            let of_contact = related.remove(&c.id).unwrap_or_default();
            ContactView::new(c, of_contact)
        })
        .collect())
}

/// The worker's record of an intake of `account_id`, if it has one yet.
pub async fn intake(
    db: &impl ConnectionTrait,
    account_id: i64,
    id: Uuid,
) -> Result<Option<IntakeView>, DbErr> {
    Ok(lead_intake::Entity::find_by_id(id)
        .filter(lead_intake::Column::AccountId.eq(account_id))
        .one(db)
        .await?
        .map(|r| IntakeView {
            intake_id: r.id,
            status: r.status,
            contact_id: r.contact_id,
            // Written by the worker from these very types; anything else reads as none.
            actions: serde_json::from_value(r.actions).unwrap_or_default(),
            warnings: serde_json::from_value(r.warnings).unwrap_or_default(),
            attempts: r.attempts,
            last_error: r.last_error,
            received_at: r.received_at,
            processed_at: r.processed_at,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_as_stored_keep_microseconds_cut_toward_2000() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").to_utc();
        for (given, stored) in [
            (
                "2026-12-05T13:45:55.123456789Z",
                "2026-12-05T13:45:55.123456Z",
            ),
            ("2026-12-05T13:45:55Z", "2026-12-05T13:45:55Z"),
            ("1999-12-31T23:59:59.999999999Z", "2000-01-01T00:00:00Z"),
            (
                "1999-12-31T23:59:58.5000009Z",
                "1999-12-31T23:59:58.500001Z",
            ),
            (
                "1970-01-01T00:00:00.0000015Z",
                "1970-01-01T00:00:00.000002Z",
            ),
        ] {
            assert_eq!(as_stored(t(given)), t(stored), "{given}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        for bad in [
            "",
            "zz",
            "42",
            &hex::encode("c2:1"),
            &hex::encode("c1:-3"),
            &hex::encode("c1:x"),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_nul_character_in_a_filter_is_a_client_error() {
        let errors = ContactQuery::parse(
            [
                ("lead_source", "web\0"),
                ("email", "a\0@b.co"),
                ("source", "ok"),
            ],
            Region::US,
        )
        .expect_err("refused");
        assert_eq!(
            errors.fields().collect::<Vec<_>>(),
            ["lead_source", "email"]
        );
    }

    #[test]
    fn filters_parse_and_bad_ones_are_all_reported() {
        let q = ContactQuery::parse(
            [
                ("phone_number", "(818) 123-4567"),
                ("email", "Ann@Example.com"),
                ("tag_id", "3"),
                ("created_after", "2026-01-01"),
                ("created_before", "2026-02-01T00:00:00Z"),
                ("limit", "10"),
                ("unknown", "x"),
            ],
            Region::US,
        )
        .expect("valid");
        assert_eq!(
            q.phone_number.map(|p| p.to_string()).as_deref(),
            Some("+18181234567")
        );
        assert_eq!(q.email.as_deref(), Some("ann@example.com"));
        assert_eq!((q.tag_id, q.limit), (Some(3), 10));

        let errs = ContactQuery::parse(
            [
                ("phone_number", "12"),
                ("tag_id", "x"),
                ("user_id", "-1"),
                ("created_after", "yesterday"),
                ("limit", "1000"),
                ("cursor", "nope"),
            ],
            Region::US,
        )
        .expect_err("invalid");
        let fields: Vec<&str> = errs.fields().collect();
        for f in [
            "phone_number",
            "tag_id",
            "user_id",
            "created_after",
            "limit",
            "cursor",
        ] {
            assert!(fields.contains(&f), "{f} reported in {fields:?}");
        }
    }
}
