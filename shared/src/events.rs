//! Outbound events (§11): what an event is, its body, how deliveries are signed (the
//! Standard Webhooks specification), and the outbox statements that record events in the
//! transaction of the work they report.
//!
//! Work that reports an event or a few writes them with their deliveries at once
//! ([`record`]); a batch of leads writes its events as one outbox row ([`enqueue`]), which
//! the delivery loops turn into events and deliveries after the commit ([`expand`]).
//!
//! An event's body is serialized once, when its transaction writes it, and those exact
//! bytes go out on every attempt and replay; its `webhook-id` is fixed with it. Each
//! attempt signs `{id}.{timestamp}.{body}` at its own time, since receivers refuse
//! timestamps older than a few minutes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, Value};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Events and their deliveries to the enabled endpoints subscribed to each, in one round
/// trip; an event nobody subscribes to is not kept.
pub const RECORD: &str = concat!(
    include_str!("events/record.sql"),
    include_str!("events/fan_out.sql"),
    "SELECT count(*) AS deliveries,
       CASE WHEN count(*) > 0 THEN pg_notify('events_due', '') END AS notified
FROM scheduled"
);

/// The outbox's rows not yet turned into events: `events` (how many they hold) and `oldest`
/// (when the oldest was written), for the delivery loops' gauges and `leadctl status`.
pub const AWAITING: &str = include_str!("events/awaiting.sql");

/// The lead path's outbox: a transaction's events as one row of `event_batches`.
pub const ENQUEUE: &str = include_str!("events/enqueue.sql");

/// The outbox's oldest rows turned into their events and deliveries (as [`RECORD`] writes
/// them), the rows removed, in one statement.
pub const EXPAND: &str = concat!(
    include_str!("events/expand.sql"),
    include_str!("events/fan_out.sql"),
    "SELECT (SELECT count(*) FROM batch) AS batches, (SELECT count(*) FROM scheduled) AS deliveries"
);

/// The PostgreSQL notification channel that wakes the delivery loops; the outbox statement
/// notifies it, so the loops wake when the transaction commits and not before.
pub const CHANNEL: &str = "events_due";

/// The largest body an event has (§11). A larger one carries the object's id and
/// `"truncated": true`, and the receiver reads the rest from the read API.
pub const MAX_BODY_BYTES: usize = 20 * 1024;

/// The room an event's body is serialized into before it grows.
const BODY_CAPACITY: usize = 2048;

/// The types of events, by their wire names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::Display,
)]
pub enum EventType {
    /// A lead was processed: the §5 intake record.
    #[strum(serialize = "lead.processed")]
    LeadProcessed,
    /// A lead was dead-lettered: the §5 intake record with the reason.
    #[strum(serialize = "lead.dead_lettered")]
    LeadDeadLettered,
    /// A lead created a contact: the §5 contact object.
    #[strum(serialize = "contact.created")]
    ContactCreated,
    /// A lead changed a contact: the §5 contact object after the change.
    #[strum(serialize = "contact.updated")]
    ContactUpdated,
    /// The contact policy held back a call or a message (§9).
    #[strum(serialize = "policy.blocked")]
    PolicyBlocked,
    /// The provider accepted a message step (§10).
    #[strum(serialize = "sms.sent")]
    SmsSent,
    /// A message step failed for good (§10).
    #[strum(serialize = "sms.failed")]
    SmsFailed,
    /// An inbound message arrived (§10).
    #[strum(serialize = "sms.received")]
    SmsReceived,
    /// A number joined the do-not-contact list (§9).
    #[strum(serialize = "dnc.added")]
    DncAdded,
}

impl EventType {
    /// Every type's wire name.
    pub fn names() -> Vec<&'static str> {
        use strum::IntoEnumIterator;
        Self::iter().map(Into::into).collect()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An event ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub account_id: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub intake_id: Option<Uuid>,
    pub contact_id: Option<i64>,
    /// `{"type","timestamp","data"}`, the bytes every delivery sends.
    pub body: String,
}

/// The body's envelope.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "crate::rfc3339::utc")]
    timestamp: DateTime<Utc>,
    data: &'a T,
}

impl Event {
    /// An event of `account_id` at `at` carrying `data`; `short` stands in for `data` when
    /// the body would pass [`MAX_BODY_BYTES`].
    pub fn new<T: Serialize>(
        account_id: i64,
        kind: EventType,
        at: DateTime<Utc>,
        data: &T,
        short: impl FnOnce() -> serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        let name = kind.as_str();
        // Written at once into room for a typical body (a contact is about a kilobyte), not
        // grown from serde_json's 128 bytes by copies.
        let mut bytes = Vec::with_capacity(BODY_CAPACITY);
        serde_json::to_writer(
            &mut bytes,
            &Envelope {
                kind: name,
                timestamp: at,
                data,
            },
        )?;
        let mut body = String::from_utf8(bytes).map_err(serde::ser::Error::custom)?;
        if body.len() > MAX_BODY_BYTES {
            let mut short = short();
            if let Some(o) = short.as_object_mut() {
                o.insert("truncated".into(), true.into());
            }
            body = serde_json::to_string(&Envelope {
                kind: name,
                timestamp: at,
                data: &short,
            })?;
        }
        Ok(Self {
            id: Uuid::now_v7(),
            account_id,
            kind: name,
            intake_id: None,
            contact_id: None,
            body,
        })
    }

    pub fn intake(mut self, id: Uuid) -> Self {
        self.intake_id = Some(id);
        self
    }

    pub fn contact(mut self, id: Option<i64>) -> Self {
        self.contact_id = id;
        self
    }
}

/// A `dnc.added` event: `phone_number` of `account` may not be reached on `channel`.
pub fn dnc_added(
    account: i64,
    phone_number: &str,
    channel: &str,
    reason: &str,
    source: &str,
    at: DateTime<Utc>,
) -> Result<Event, DbErr> {
    let data = serde_json::json!({
        "phone_number": phone_number,
        "channel": channel,
        "reason": reason,
        "source": source,
    });
    Event::new(account, EventType::DncAdded, at, &data, || data.clone())
        .map_err(|e| DbErr::Json(e.to_string()))
}

/// The `webhook-id` of an event: the same on every attempt and replay.
pub fn webhook_id(event: Uuid) -> String {
    format!("msg_{}", event.simple())
}

/// The columns of `events` as the arrays the statements take: a missing intake is the nil
/// uuid and a missing contact 0 (the driver cannot bind a null inside an array; no intake or
/// contact has either), which the statements turn back into nulls.
fn columns(events: Vec<Event>) -> Vec<Value> {
    let n = events.len();
    let mut ids = Vec::with_capacity(n);
    let mut accounts = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut intakes = Vec::with_capacity(n);
    let mut contacts = Vec::with_capacity(n);
    let mut bodies = Vec::with_capacity(n);
    for e in events {
        ids.push(Value::Uuid(Some(e.id)));
        accounts.push(Value::BigInt(Some(e.account_id)));
        kinds.push(Value::String(Some(e.kind.to_owned())));
        intakes.push(Value::Uuid(Some(e.intake_id.unwrap_or(Uuid::nil()))));
        contacts.push(Value::BigInt(Some(e.contact_id.unwrap_or(0))));
        // Moved, not copied: the bodies are most of the bytes.
        bodies.push(Value::String(Some(e.body)));
    }
    let array = |kind: ArrayType, values: Vec<Value>| Value::Array(kind, Some(Box::new(values)));
    vec![
        array(ArrayType::Uuid, ids),
        array(ArrayType::BigInt, accounts),
        array(ArrayType::String, kinds),
        array(ArrayType::Uuid, intakes),
        array(ArrayType::BigInt, contacts),
        array(ArrayType::String, bodies),
    ]
}

fn count(row: Option<&sea_orm::QueryResult>, column: &str) -> u64 {
    row.and_then(|r| r.try_get::<i64>("", column).ok())
        .unwrap_or(0)
        .max(0) as u64
}

/// Writes `events` with a delivery for each enabled endpoint subscribed to it, in the
/// caller's transaction; returns how many deliveries it scheduled. For the work that reports
/// an event or a few at a time; the lead path uses [`enqueue`].
pub async fn record(conn: &impl ConnectionTrait, events: Vec<Event>) -> Result<u64, DbErr> {
    if events.is_empty() {
        return Ok(0);
    }
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            RECORD,
            columns(events),
        ))
        .await?;
    Ok(count(row.as_ref(), "deliveries"))
}

/// Writes `events` to the outbox as one row, in the caller's transaction: what a batch of
/// leads does, since a row per event and per delivery would cost the intake a fifth of its
/// speed. The delivery loops [`expand`] it after the commit; until then the events are not
/// in `events`.
pub async fn enqueue(conn: &impl ConnectionTrait, events: Vec<Event>) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    conn.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        ENQUEUE,
        columns(events),
    ))
    .await?;
    Ok(())
}

/// What one [`expand`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expanded {
    /// Outbox rows turned into events.
    pub batches: u64,
    /// Deliveries they scheduled.
    pub deliveries: u64,
}

/// Turns the outbox's oldest rows, at most `batches`, into their events and deliveries to
/// the endpoints subscribed now, and removes them, in one statement.
pub async fn expand(conn: &impl ConnectionTrait, batches: i64) -> Result<Expanded, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            EXPAND,
            vec![batches.into()],
        ))
        .await?;
    Ok(Expanded {
        batches: count(row.as_ref(), "batches"),
        deliveries: count(row.as_ref(), "deliveries"),
    })
}

/// Expands the whole outbox, as much as other loops leave (for tools and tests that read
/// `events` right after the work that enqueued them); returns the deliveries scheduled.
pub async fn expand_all(conn: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let mut deliveries = 0;
    loop {
        let e = expand(conn, 100).await?;
        deliveries += e.deliveries;
        if e.batches == 0 {
            return Ok(deliveries);
        }
    }
}

/// Which event types each account's enabled endpoints want, as the worker's snapshot
/// reads it: a lead's events are built only when someone wants them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscriptions {
    by_account: HashMap<i64, Wanted>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wanted {
    all: bool,
    types: HashSet<String>,
}

impl Subscriptions {
    /// From (account, the event lists of its enabled endpoints; `*` = every type).
    pub fn new(rows: impl IntoIterator<Item = (i64, Vec<String>)>) -> Self {
        let mut by_account: HashMap<i64, Wanted> = HashMap::new();
        for (account, types) in rows {
            if types.is_empty() {
                continue;
            }
            let w = by_account.entry(account).or_default();
            for t in types {
                if t == "*" {
                    w.all = true;
                } else {
                    w.types.insert(t);
                }
            }
        }
        Self { by_account }
    }

    /// Whether any enabled endpoint of `account` wants `kind`.
    pub fn wants(&self, account: i64, kind: EventType) -> bool {
        self.by_account
            .get(&account)
            .is_some_and(|w| w.all || w.types.contains(kind.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.by_account.is_empty()
    }
}

/// An endpoint's signing secret as shown to its owner: `whsec_` and base64 of 24 random
/// bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("whsec_{}", B64.encode(bytes))
}

/// Why a secret cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a signing secret is whsec_ followed by base64")]
pub struct BadSecret;

/// The key of a `whsec_` secret: the base64 after the prefix, decoded.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64).map_err(|_| BadSecret)
}

/// The `webhook-signature` value of one attempt: `v1,<base64 HMAC-SHA256>` for each key,
/// space-separated (several during a rotation).
pub fn signature(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::new();
    for key in keys {
        let Ok(mut mac) = hmac::Hmac::<sha256::Sha256>::new_from_slice(key) else {
            continue;
        };
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("v1,");
        out.push_str(&B64.encode(mac.finalize().into_bytes()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own example: secret, id, timestamp, body and signature.
    #[test]
    fn signs_the_specifications_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let sig = signature(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let keys = [
            secret_key(&new_secret()).expect("new"),
            secret_key(&new_secret()).expect("old"),
        ];
        let sig = signature(&keys, "msg_1", 1, b"{}");
        let parts: Vec<&str> = sig.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn secrets_are_whsec_and_24_bytes() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(secret_key(&s).expect("key").len(), 24);
        assert_eq!(secret_key("whsec_!!"), Err(BadSecret));
    }

    #[test]
    fn a_large_body_carries_the_short_form() {
        let big = serde_json::json!({"id": 7, "notes": "x".repeat(MAX_BODY_BYTES)});
        let e = Event::new(
            1,
            EventType::ContactUpdated,
            Utc::now(),
            &big,
            || serde_json::json!({"id": 7}),
        )
        .expect("event");
        let v: serde_json::Value = serde_json::from_str(&e.body).expect("json");
        assert_eq!(v["type"], "contact.updated");
        assert_eq!(v["data"], serde_json::json!({"id": 7, "truncated": true}));
        assert!(e.body.len() < MAX_BODY_BYTES);
    }

    #[test]
    fn subscriptions_match_types_and_wildcards() {
        let s = Subscriptions::new([
            (1, vec!["lead.processed".to_owned()]),
            (2, vec!["*".to_owned()]),
            (3, vec![]),
        ]);
        assert!(s.wants(1, EventType::LeadProcessed));
        assert!(!s.wants(1, EventType::ContactCreated));
        assert!(s.wants(2, EventType::DncAdded));
        assert!(!s.wants(3, EventType::LeadProcessed));
        assert!(!s.wants(4, EventType::LeadProcessed));
        assert_eq!(
            "sms.received".parse::<EventType>().ok(),
            Some(EventType::SmsReceived)
        );
        assert_eq!(EventType::names().len(), 9);
    }
}
