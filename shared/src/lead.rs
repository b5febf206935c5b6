//! The typed lead: what the receiver parses a request into and the worker consumes.
//!
//! Past the receiver nothing is re-validated: every field here already obeys the rules of
//! the contract (§3). The wire form in the queue is this struct as JSON.

use crate::contact_fields::ContactText;
use crate::phone::PhoneNumber;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A validated lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    /// The primary number; required.
    pub phone_number: PhoneNumber,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_phone_numbers: Vec<OtherPhoneNumber>,
    #[serde(flatten)]
    pub fields: ContactText,
    pub date_of_birth: Option<NaiveDate>,
    /// IANA zone name, checked against the zone database.
    pub timezone: Option<chrono_tz::Tz>,
    /// Consent text or any other note; stored as a note on the contact.
    pub notes: Option<String>,
    #[serde(flatten)]
    pub links: LeadLinks,
    #[serde(flatten)]
    pub flags: LeadFlags,
    #[serde(default)]
    pub powerdialer_position: PowerdialerPosition,
    /// What the form recorded of the person's consent (§9).
    #[serde(flatten)]
    pub evidence: ConsentEvidence,
}

/// The consent a lead's form captured, with the certificates of third-party recorders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConsentEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<LeadConsent>,
    /// A TrustedForm certificate of the form session (`https://cert.trustedform.com/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustedform_cert_url: Option<String>,
    /// A Jornaya LeadiD of the form session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leadid_token: Option<String>,
}

/// A channel a person agreed to be reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsentChannel {
    Call,
    Sms,
    Email,
}

impl ConsentChannel {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "call" | "calls" | "phone" | "voice" => Some(Self::Call),
            "sms" | "text" | "texts" => Some(Self::Sms),
            "email" => Some(Self::Email),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Sms => "sms",
            Self::Email => "email",
        }
    }
}

/// The `consent` object of a lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadConsent {
    /// At least one, without repeats.
    pub channels: Vec<ConsentChannel>,
    /// The disclosure the person agreed to.
    pub text: Option<String>,
    /// When the person agreed; the lead's received time when not given.
    pub given_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The page of the form.
    pub source_url: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The business the person agreed to hear from.
    pub seller: Option<String>,
}

/// Ids the lead names; each is looked up inside the token's account by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeadLinks {
    pub user_id: Option<i64>,
    pub ring_group_id: Option<i64>,
    /// Also given as `campaign_id`.
    pub line_id: Option<i64>,
    /// Also given as `automation_id`.
    pub sequence_id: Option<i64>,
    pub tag_id: Option<i64>,
    /// Also given as `disposition_id`.
    pub disposition_status_id: Option<i64>,
}

/// Switches of the lead's actions (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct LeadFlags {
    pub force_update: bool,
    pub force_update_sequence: bool,
    /// Also given as `distribute_to_right_group`.
    pub distribute_to_ring_group: bool,
    pub check_available_users: bool,
    pub check_available_users_with_fallback: bool,
    pub add_to_powerdialer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerdialerPosition {
    #[default]
    Top,
    Bottom,
}

/// One additional number of the contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherPhoneNumber {
    pub label: Option<String>,
    pub phone_number: PhoneNumber,
}

impl Lead {
    /// A lead that gives only its number.
    pub fn of_number(phone_number: PhoneNumber) -> Self {
        Self {
            phone_number,
            other_phone_numbers: Vec::new(),
            fields: ContactText::default(),
            date_of_birth: None,
            timezone: None,
            notes: None,
            links: LeadLinks::default(),
            flags: LeadFlags::default(),
            powerdialer_position: PowerdialerPosition::Top,
            evidence: ConsentEvidence::default(),
        }
    }

    /// Every number of the lead, primary first, without repeats.
    pub fn all_numbers(&self) -> Vec<&PhoneNumber> {
        let mut out: Vec<&PhoneNumber> = Vec::with_capacity(1 + self.other_phone_numbers.len());
        for p in std::iter::once(&self.phone_number)
            .chain(self.other_phone_numbers.iter().map(|o| &o.phone_number))
        {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}
