//! From an AMQP delivery to an [`Intake`], or to the reason it is poison: a body that is
//! not JSON, a message version this worker does not know, or a body that does not match
//! the contract. Poison goes to the dead-letter queue at once; retrying cannot fix it.

use crate::process::{Attempt, DeadRecord};
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use shared::intake::{IntakeMessage, MESSAGE_VERSION, headers};
use uuid::Uuid;

/// A message that can never be processed.
#[derive(Debug, Clone)]
pub struct Poison {
    /// Short, for the `x-dead-reason` header and the intake record.
    pub reason: String,
    /// The intake record to write, when the message names an intake and an account.
    pub record: Option<Box<DeadRecord>>,
}

/// Reads a delivery.
pub fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Attempt, Poison> {
    let previous_attempts = attempts(properties);
    // Every well-formed message is read straight into its type; only one that is not is
    // read as a JSON value, to say why and to keep what its record can.
    if let Ok(message) = serde_json::from_slice::<IntakeMessage>(body)
        && message.version == MESSAGE_VERSION
    {
        return Ok(Attempt {
            message,
            previous_attempts,
        });
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Err(Poison {
                reason: format!("unparseable body: {e}"),
                record: None,
            });
        }
    };
    let version = value.get("version").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(MESSAGE_VERSION)) {
        let shown = version.map_or_else(|| "none".to_owned(), |v| v.to_string());
        return Err(poison(
            format!("unknown message version {shown}"),
            &value,
            properties,
            previous_attempts,
        ));
    }
    match serde_json::from_value::<IntakeMessage>(value.clone()) {
        Ok(message) => Ok(Attempt {
            message,
            previous_attempts,
        }),
        Err(e) => Err(poison(
            format!("invalid intake message: {e}"),
            &value,
            properties,
            previous_attempts,
        )),
    }
}

/// What a poison message's record can keep: whatever of the contract's fields it has.
fn poison(
    reason: String,
    value: &serde_json::Value,
    properties: &BasicProperties,
    previous_attempts: u32,
) -> Poison {
    let record = record_of(
        value,
        properties,
        &reason,
        previous_attempts.saturating_add(1),
    );
    Poison {
        reason,
        record: record.map(Box::new),
    }
}

/// The dead-letter record of any message, from whatever of the contract's fields its body
/// (if it is JSON) and headers have; `None` without an intake id and an account.
pub fn dead_record(
    properties: &BasicProperties,
    body: &[u8],
    reason: &str,
    attempts: u32,
) -> Option<DeadRecord> {
    let value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    record_of(&value, properties, reason, attempts)
}

fn record_of(
    value: &serde_json::Value,
    properties: &BasicProperties,
    reason: &str,
    attempts: u32,
) -> Option<DeadRecord> {
    let intake_id = value
        .get("intake_id")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .or_else(|| {
            properties
                .message_id()
                .as_ref()
                .and_then(|m| Uuid::parse_str(m.as_str()).ok())
        });
    let int = |k: &str| value.get(k).and_then(serde_json::Value::as_i64);
    let account_id = int("account_id").or_else(|| {
        properties
            .headers()
            .as_ref()
            .and_then(|h| int_header(h, headers::ACCOUNT_ID))
    });
    intake_id
        .zip(account_id)
        .map(|(intake_id, account_id)| DeadRecord {
            intake_id,
            account_id,
            user_id: int("user_id"),
            token_id: int("token_id"),
            payload: value
                .get("payload")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({})),
            received_at: value
                .get("received_at")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc)),
            attempts,
            reason: reason.to_owned(),
        })
}

/// A header as text, if it is a string.
pub fn text_header(properties: &BasicProperties, key: &str) -> Option<String> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get(&ShortString::from(key))?
    {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header as an integer, if it is one (in any integer type, or digits).
pub fn integer_header(properties: &BasicProperties, key: &str) -> Option<i64> {
    int_header(properties.headers().as_ref()?, key)
}

/// The `x-attempts` header: failed attempts so far.
pub fn attempts(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| int_header(h, headers::ATTEMPTS))
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn int_header(table: &FieldTable, key: &str) -> Option<i64> {
    match table.inner().get(&ShortString::from(key))? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).trim().parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_attempts(n: i64) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(n));
        BasicProperties::default().with_headers(h)
    }

    #[test]
    fn garbage_is_poison_without_a_record() {
        let p = decode(&BasicProperties::default(), b"{not json").expect_err("poison");
        assert!(p.reason.starts_with("unparseable body"), "{}", p.reason);
        assert!(p.record.is_none());
    }

    #[test]
    fn an_unknown_version_keeps_what_it_can_for_the_record() {
        let id = Uuid::new_v4();
        let body = serde_json::json!({
            "version": 99, "intake_id": id, "account_id": 7, "user_id": 3, "token_id": 4,
            "received_at": "2026-11-25T10:00:00Z", "payload": {"phone_number": "x"}
        });
        let p = decode(&with_attempts(2), body.to_string().as_bytes()).expect_err("poison");
        assert_eq!(p.reason, "unknown message version 99");
        let r = p.record.expect("record");
        assert_eq!((r.intake_id, r.account_id, r.attempts), (id, 7, 3));
        assert_eq!(r.payload["phone_number"], "x");
    }

    #[test]
    fn a_message_reads_the_same_straight_or_through_a_json_value_and_only_in_its_version() {
        let id = Uuid::new_v4();
        let body = |version: u32| {
            serde_json::json!({
                "version": version, "intake_id": id, "account_id": 7, "user_id": 3,
                "token_id": 4, "received_at": "2026-11-25T10:00:00Z",
                "lead": {"phone_number": "+12125550100", "first_name": "Ada"},
                "payload": {"phone_number": "(212) 555-0100", "first_name": "Ada"}
            })
        };
        let current = body(MESSAGE_VERSION);
        let a = decode(&with_attempts(1), current.to_string().as_bytes()).expect("decoded");
        let through_value: IntakeMessage = serde_json::from_value(current).expect("valid");
        assert_eq!(a.message, through_value);
        assert_eq!(a.previous_attempts, 1);

        let next = body(MESSAGE_VERSION + 1);
        let p = decode(&BasicProperties::default(), next.to_string().as_bytes())
            .expect_err("a version this worker does not know is poison, whatever its shape");
        assert_eq!(
            p.reason,
            format!("unknown message version {}", MESSAGE_VERSION + 1)
        );
        assert_eq!(p.record.expect("record").intake_id, id);
    }

    #[test]
    fn attempts_come_from_the_header_in_any_integer_type() {
        assert_eq!(attempts(&BasicProperties::default()), 0);
        assert_eq!(attempts(&with_attempts(3)), 3);
        let mut h = FieldTable::default();
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongString("2".into()));
        assert_eq!(attempts(&BasicProperties::default().with_headers(h)), 2);
    }
}
