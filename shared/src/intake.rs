//! The queue message contract between receiver and worker, and intake statuses.

use crate::lead::Lead;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::{DeriveActiveEnum, EnumIter, StringLen};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of [`IntakeMessage`]'s JSON shape; a worker dead-letters versions it does not know.
pub const MESSAGE_VERSION: u32 = 1;

/// The body of a message on `leads.intake` (JSON). The AMQP `message_id` is `intake_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntakeMessage {
    pub version: u32,
    pub intake_id: Uuid,
    /// The token's account: the only account this lead may touch.
    pub account_id: i64,
    /// The token's user.
    pub user_id: i64,
    /// The token that sent the lead.
    pub token_id: i64,
    pub received_at: DateTime<Utc>,
    pub lead: Lead,
    /// The request's fields as received, with the API token removed, for the intake record.
    pub payload: Payload,
}

/// A lead's request fields as JSON text: written into the message once and stored by the
/// worker as it is, never read into values on the way (building the values of a payload
/// only to write them back as text was a fifth of the instructions of reading a message).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<serde_json::value::RawValue>);

impl Payload {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The fields as JSON values (`null` for text that is not JSON, which a payload read
    /// from a message never is).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(value: &serde_json::Value) -> Self {
        // A value always serializes; the fallback is `null`.
        Self(
            serde_json::value::to_raw_value(value)
                .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned()),
        )
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        Self::from(&value)
    }
}

/// Payloads are equal when their fields are, whatever the text's spacing and order.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

/// AMQP header names carried by intake messages.
pub mod headers {
    /// The account id (also in the body), for routing and tracing without parsing.
    pub const ACCOUNT_ID: &str = "x-account-id";
    /// The token's user id.
    pub const USER_ID: &str = "x-user-id";
    /// W3C trace context of the request that accepted the lead.
    pub const TRACEPARENT: &str = "traceparent";
    /// Processing attempts so far (absent = 0).
    pub const ATTEMPTS: &str = "x-attempts";
    /// Why a message was dead-lettered.
    pub const DEAD_REASON: &str = "x-dead-reason";
    /// When a dead-lettered message was replayed, and by whom.
    pub const REPLAYED_BY: &str = "x-replayed-by";
}

/// What the receiver records in Redis (key [`crate::keys::intake_status`]) when it accepts a
/// lead, so `GET /api/v1/intakes/{id}` shows `queued` before the worker has written the
/// intake row, without a database write on the intake path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedIntake {
    pub intake_id: Uuid,
    /// Only this account may read the record.
    pub account_id: i64,
    pub status: IntakeStatus,
    pub received_at: DateTime<Utc>,
}

/// How long a [`QueuedIntake`] record lives: far longer than a lead waits in the queue, even
/// through its whole retry schedule or a worker outage of hours (the worker's own record
/// takes over once it has processed the lead), yet short enough that one record per lead
/// does not pile up in Redis.
pub const QUEUED_RECORD_TTL_SECS: u64 = 24 * 60 * 60;

/// Where an intake stands. `queued` and `processing` are transient; the rest are final
/// (a dead-lettered intake can be replayed, which moves it back to `queued`). Also the
/// type of `lead_intakes.status`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    EnumIter,
    DeriveActiveEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum IntakeStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "processing")]
    Processing,
    #[sea_orm(string_value = "created")]
    Created,
    #[sea_orm(string_value = "updated")]
    Updated,
    #[sea_orm(string_value = "merged")]
    Merged,
    #[sea_orm(string_value = "duplicate")]
    Duplicate,
    #[sea_orm(string_value = "dead_lettered")]
    DeadLettered,
}

impl IntakeStatus {
    pub const ALL: [IntakeStatus; 7] = [
        Self::Queued,
        Self::Processing,
        Self::Created,
        Self::Updated,
        Self::Merged,
        Self::Duplicate,
        Self::DeadLettered,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Merged => "merged",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A contact outcome: the worker finished the lead.
    pub fn is_outcome(&self) -> bool {
        matches!(
            self,
            Self::Created | Self::Updated | Self::Merged | Self::Duplicate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload is written as the value it was made from would be, and read back as the
    /// same text, which the worker stores as it is.
    #[test]
    fn a_payload_keeps_its_text_through_the_queue() {
        let fields = serde_json::json!({"phone_number": "(818) 555-0100", "tags": ["a", "é\"q"],
            "nested": {"n": 1.5, "none": null}});
        let payload = Payload::from(&fields);
        let text = serde_json::to_string(&fields).expect("json");
        assert_eq!(serde_json::to_string(&payload).expect("json"), text);
        // Inside a record turned into a JSON value (the retry records), it is the fields.
        assert_eq!(serde_json::to_value(&payload).expect("json"), fields);
        let message = IntakeMessage {
            version: MESSAGE_VERSION,
            intake_id: Uuid::now_v7(),
            account_id: 1,
            user_id: 2,
            token_id: 3,
            received_at: Utc::now(),
            lead: crate::lead::Lead::of_number(
                crate::phone::PhoneNumber::from_e164("+18185550100".into()).expect("e164"),
            ),
            payload,
        };
        let body = serde_json::to_vec(&message).expect("json");
        let read: IntakeMessage = serde_json::from_slice(&body).expect("a message");
        assert_eq!(read.payload.get(), text);
        assert_eq!(read.payload.to_value(), fields);
        assert_eq!(read, message);
        // Equal fields in another order or spacing are the same payload; others are not.
        let spaced: Payload = serde_json::from_str(r#"{ "b": 2, "a": 1 }"#).expect("a payload");
        assert_eq!(spaced, Payload::from(serde_json::json!({"a": 1, "b": 2})));
        assert_ne!(spaced, Payload::from(serde_json::json!({"a": 1})));
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in IntakeStatus::ALL {
            assert_eq!(IntakeStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("ser");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(IntakeStatus::parse("done"), None);
        assert!(IntakeStatus::Created.is_outcome());
        assert!(!IntakeStatus::DeadLettered.is_outcome());
    }
}
