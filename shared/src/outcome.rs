//! What the worker did with a lead, as the intake record keeps it and the read API shows it
//! ([`Action`], [`Warning`]), and the outcome it announces on Redis for requests waiting in
//! synchronous mode ([`Announcement`]): the contracts between the worker and the receiver.

use crate::intake::IntakeStatus;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Something the worker did for a lead, as recorded on the intake (`actions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    ContactCreated {
        contact_id: i64,
    },
    /// force_update overwrote these fields.
    ContactUpdated {
        contact_id: i64,
        fields: Vec<String>,
    },
    /// Blank fields filled without force_update.
    ContactMerged {
        contact_id: i64,
        fields: Vec<String>,
    },
    OwnerAssigned {
        user_id: i64,
    },
    RingGroupDistributed {
        ring_group_id: i64,
        user_id: i64,
    },
    PowerdialerAdded {
        user_id: i64,
        position: crate::lead::PowerdialerPosition,
        /// Outside the contact's calling window: the entry is dialed from this instant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The contact policy (§9) held back an attempt: nothing was queued or sent
    /// (`dnc`, `no_consent`, `unknown_local_time`), or it waits for `next_allowed_at`
    /// (`outside_hours`, `frequency_cap`).
    PolicyBlocked {
        #[schema(value_type = String, example = "call")]
        channel: crate::policy::Channel,
        #[schema(value_type = String, example = "outside_hours")]
        reason: crate::policy::Reason,
        /// The rule that decided (`US-FL`, `US-federal`, `do-not-contact`, `account-consent`).
        rule: String,
        next_allowed_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Consent records the lead brought (one per channel).
    ConsentRecorded {
        #[schema(value_type = Vec<String>)]
        channels: Vec<crate::lead::ConsentChannel>,
    },
    SequenceEnrolled {
        sequence_id: i64,
    },
    SequenceDisenrolled {
        sequence_id: i64,
    },
    TagAdded {
        tag_id: i64,
    },
    LineSet {
        line_id: i64,
    },
    DispositionSet {
        disposition_status_id: i64,
    },
    NoteAdded,
    PhoneNumberAdded {
        phone_number: String,
    },
}

/// Something of the lead the worker could not honour; the lead is still saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Warning {
    /// The payload field concerned.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Warning {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// An intake's outcome as announced on its channel
/// ([`crate::keys::intake_outcome_channel`]), as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub intake_id: Uuid,
    pub status: IntakeStatus,
    pub contact_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_announcements_keep_their_wire_shape() {
        let action = Action::RingGroupDistributed {
            ring_group_id: 3,
            user_id: 9,
        };
        assert_eq!(
            serde_json::to_value(&action).expect("json"),
            serde_json::json!({"type": "ring_group_distributed", "ring_group_id": 3, "user_id": 9})
        );
        assert_eq!(
            serde_json::to_value(Action::NoteAdded).expect("json"),
            serde_json::json!({"type": "note_added"})
        );
        let id = Uuid::nil();
        let a = Announcement {
            intake_id: id,
            status: IntakeStatus::Created,
            contact_id: Some(7),
        };
        let json = serde_json::to_string(&a).expect("json");
        assert_eq!(
            json,
            format!(r#"{{"intake_id":"{id}","status":"created","contact_id":7}}"#)
        );
        assert_eq!(
            serde_json::from_str::<Announcement>(&json).expect("back"),
            a
        );
    }
}
