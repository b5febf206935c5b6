//! The typed lead: what the receiver parses a request into and the worker consumes.
//!
//! Past the receiver nothing is re-validated: every field here already obeys the rules of
//! the contract (§3). The wire form in the queue is this struct as JSON.

use crate::contact_fields::ContactText;
use crate::phone::PhoneNumber;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A validated lead. Written with its groups' fields flattened into it; read through
/// [`LeadWire`], which names every field of that flat shape, since serde's `flatten` reads
/// a map by buffering it whole and searching it once per group (most of a worker's time
/// reading a message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LeadWire")]
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

/// [`Lead`] as it is written: every member of its flattened groups is a field here, read
/// in one pass. The conversion below names each member of each group, so a group that
/// gains a field does not compile until this reads it too
/// (`a_lead_with_every_field_set_reads_back_equal` checks the names).
#[derive(Deserialize)]
struct LeadWire {
    phone_number: PhoneNumber,
    #[serde(default)]
    other_phone_numbers: Vec<OtherPhoneNumber>,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    company_name: Option<String>,
    email: Option<String>,
    lead_source: Option<String>,
    source: Option<String>,
    address: Option<String>,
    city: Option<String>,
    state: Option<String>,
    zipcode: Option<String>,
    country: Option<String>,
    csf1: Option<String>,
    csf2: Option<String>,
    website: Option<String>,
    date_of_birth: Option<NaiveDate>,
    timezone: Option<chrono_tz::Tz>,
    notes: Option<String>,
    user_id: Option<i64>,
    ring_group_id: Option<i64>,
    line_id: Option<i64>,
    sequence_id: Option<i64>,
    tag_id: Option<i64>,
    disposition_status_id: Option<i64>,
    #[serde(default)]
    force_update: bool,
    #[serde(default)]
    force_update_sequence: bool,
    #[serde(default)]
    distribute_to_ring_group: bool,
    #[serde(default)]
    check_available_users: bool,
    #[serde(default)]
    check_available_users_with_fallback: bool,
    #[serde(default)]
    add_to_powerdialer: bool,
    #[serde(default)]
    powerdialer_position: PowerdialerPosition,
    #[serde(default)]
    consent: Option<LeadConsent>,
    #[serde(default)]
    trustedform_cert_url: Option<String>,
    #[serde(default)]
    leadid_token: Option<String>,
}

impl From<LeadWire> for Lead {
    fn from(w: LeadWire) -> Self {
        Self {
            phone_number: w.phone_number,
            other_phone_numbers: w.other_phone_numbers,
            fields: ContactText {
                name: w.name,
                first_name: w.first_name,
                last_name: w.last_name,
                company_name: w.company_name,
                email: w.email,
                lead_source: w.lead_source,
                source: w.source,
                address: w.address,
                city: w.city,
                state: w.state,
                zipcode: w.zipcode,
                country: w.country,
                csf1: w.csf1,
                csf2: w.csf2,
                website: w.website,
            },
            date_of_birth: w.date_of_birth,
            timezone: w.timezone,
            notes: w.notes,
            links: LeadLinks {
                user_id: w.user_id,
                ring_group_id: w.ring_group_id,
                line_id: w.line_id,
                sequence_id: w.sequence_id,
                tag_id: w.tag_id,
                disposition_status_id: w.disposition_status_id,
            },
            flags: LeadFlags {
                force_update: w.force_update,
                force_update_sequence: w.force_update_sequence,
                distribute_to_ring_group: w.distribute_to_ring_group,
                check_available_users: w.check_available_users,
                check_available_users_with_fallback: w.check_available_users_with_fallback,
                add_to_powerdialer: w.add_to_powerdialer,
            },
            powerdialer_position: w.powerdialer_position,
            evidence: ConsentEvidence {
                consent: w.consent,
                trustedform_cert_url: w.trustedform_cert_url,
                leadid_token: w.leadid_token,
            },
        }
    }
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

/// Ids the lead names; each is looked up inside the token's account by the worker. Each
/// member is a row of [`LINKS`].
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

impl LeadLinks {
    /// The id the lead gives for `link`.
    pub fn get(&self, link: Link) -> Option<i64> {
        match link {
            Link::User => self.user_id,
            Link::RingGroup => self.ring_group_id,
            Link::Line => self.line_id,
            Link::Sequence => self.sequence_id,
            Link::Tag => self.tag_id,
            Link::DispositionStatus => self.disposition_status_id,
        }
    }

    /// The member of `link`, to write.
    pub fn get_mut(&mut self, link: Link) -> &mut Option<i64> {
        match link {
            Link::User => &mut self.user_id,
            Link::RingGroup => &mut self.ring_group_id,
            Link::Line => &mut self.line_id,
            Link::Sequence => &mut self.sequence_id,
            Link::Tag => &mut self.tag_id,
            Link::DispositionStatus => &mut self.disposition_status_id,
        }
    }
}

/// What a link field points to: a kind of row of the account's catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter)]
pub enum Link {
    User,
    RingGroup,
    Line,
    Sequence,
    Tag,
    DispositionStatus,
}

/// A field of the lead that names a row of the account's catalog by id (§3), and what the
/// worker says when the account has no such row (§4.9).
#[derive(Debug)]
pub struct LinkField {
    pub link: Link,
    /// The field's name in a payload, on [`LeadLinks`] and in a warning.
    pub name: &'static str,
    /// Other names a lead may give it under (the first given counts).
    pub aliases: &'static [&'static str],
    /// The catalog table the id is a row of, looked up by `(account_id, id)`.
    pub table: &'static str,
    /// The warning for an id that is not the account's: "`what` 7 not found in this
    /// account; `consequence`."
    pub what: &'static str,
    pub consequence: &'static str,
}

impl LinkField {
    /// The field's name, then its aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + use<> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// The warning for `id`, which is not the account's.
    pub fn not_found(&self, id: i64) -> String {
        format!(
            "{} {id} not found in this account; {}.",
            self.what, self.consequence
        )
    }
}

/// Every link field, in the order of the contract's field table (§3).
pub const LINKS: &[LinkField] = &[
    LinkField {
        link: Link::User,
        name: "user_id",
        aliases: &[],
        table: "users",
        what: "User",
        consequence: "owner not set from it",
    },
    LinkField {
        link: Link::RingGroup,
        name: "ring_group_id",
        aliases: &[],
        table: "ring_groups",
        what: "Ring group",
        consequence: "distribution skipped",
    },
    LinkField {
        link: Link::Line,
        name: "line_id",
        aliases: &["campaign_id"],
        table: "lines",
        what: "Line",
        consequence: "line not set",
    },
    LinkField {
        link: Link::Sequence,
        name: "sequence_id",
        aliases: &["automation_id"],
        table: "sequences",
        what: "Sequence",
        consequence: "not enrolled",
    },
    LinkField {
        link: Link::Tag,
        name: "tag_id",
        aliases: &[],
        table: "tags",
        what: "Tag",
        consequence: "tag not added",
    },
    LinkField {
        link: Link::DispositionStatus,
        name: "disposition_status_id",
        aliases: &["disposition_id"],
        table: "disposition_statuses",
        what: "Disposition status",
        consequence: "disposition not set",
    },
];

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

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    /// Each link has one row, whose name is the [`LeadLinks`] member its link reads and
    /// writes; no name is given twice.
    #[test]
    fn every_link_has_one_row_named_as_its_member() {
        for link in Link::iter() {
            let rows: Vec<&LinkField> = LINKS.iter().filter(|f| f.link == link).collect();
            let [row] = rows[..] else {
                panic!("{link:?} has {} rows", rows.len());
            };
            let mut links = LeadLinks::default();
            *links.get_mut(link) = Some(7);
            assert_eq!(links.get(link), Some(7));
            let json = serde_json::to_value(links).expect("json");
            let set: Vec<&str> = json
                .as_object()
                .expect("object")
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(set, [row.name], "{link:?}");
        }
        let mut names: Vec<&str> = LINKS.iter().flat_map(LinkField::names).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is given twice");
    }

    /// The queue carries leads as this JSON: one written by an older receiver is read the
    /// same, and written back byte for byte.
    #[test]
    fn a_queued_lead_keeps_its_wire_shape() {
        let wire = r#"{"phone_number":"+18185550100","name":null,"first_name":"Ada","last_name":null,"company_name":null,"email":null,"lead_source":null,"source":null,"address":null,"city":null,"state":null,"zipcode":null,"country":null,"csf1":null,"csf2":null,"website":"https://example.com","date_of_birth":null,"timezone":"America/Los_Angeles","notes":null,"user_id":null,"ring_group_id":null,"line_id":4,"sequence_id":null,"tag_id":null,"disposition_status_id":null,"force_update":true,"force_update_sequence":false,"distribute_to_ring_group":false,"check_available_users":false,"check_available_users_with_fallback":false,"add_to_powerdialer":false,"powerdialer_position":"top"}"#;
        let lead: Lead = serde_json::from_str(wire).expect("a lead");
        assert_eq!(lead.fields.first_name.as_deref(), Some("Ada"));
        assert_eq!(lead.fields.website.as_deref(), Some("https://example.com"));
        assert_eq!(lead.links.line_id, Some(4));
        assert!(lead.flags.force_update);
        assert_eq!(serde_json::to_string(&lead).expect("json"), wire);
    }

    /// Every field of every group set, written and read back: a field the wire struct names
    /// differently from its group is lost, and the lead differs.
    #[test]
    fn a_lead_with_every_field_set_reads_back_equal() {
        use crate::contact_fields::TextField;
        let number = |n: &str| PhoneNumber::from_e164(n.to_owned()).expect("e164");
        let mut lead = Lead::of_number(number("+18185550100"));
        lead.other_phone_numbers = vec![OtherPhoneNumber {
            label: Some("work".into()),
            phone_number: number("+18185550101"),
        }];
        lead.fields = ContactText::read(|f: TextField| Some(format!("{f:?} value")));
        lead.date_of_birth = NaiveDate::from_ymd_opt(1990, 2, 3);
        lead.timezone = Some(chrono_tz::America::Chicago);
        lead.notes = Some("a note".into());
        for (i, link) in Link::iter().enumerate() {
            *lead.links.get_mut(link) = Some(10 + i as i64);
        }
        lead.flags = LeadFlags {
            force_update: true,
            force_update_sequence: true,
            distribute_to_ring_group: true,
            check_available_users: true,
            check_available_users_with_fallback: true,
            add_to_powerdialer: true,
        };
        lead.powerdialer_position = PowerdialerPosition::Bottom;
        lead.evidence = ConsentEvidence {
            consent: Some(LeadConsent {
                channels: vec![ConsentChannel::Call, ConsentChannel::Sms],
                text: Some("I agree".into()),
                given_at: chrono::DateTime::from_timestamp(1_700_000_000, 0),
                source_url: Some("https://example.com/form".into()),
                ip: Some("203.0.113.9".into()),
                user_agent: Some("Mozilla/5.0".into()),
                seller: Some("Acme".into()),
            }),
            trustedform_cert_url: Some("https://cert.trustedform.com/abc".into()),
            leadid_token: Some("LEADID-1".into()),
        };
        let json = serde_json::to_value(&lead).expect("json");
        let object = json.as_object().expect("object");
        assert!(
            object.values().all(|v| !v.is_null()),
            "a field left unset: {json}"
        );
        let back: Lead = serde_json::from_value(json.clone()).expect("a lead");
        assert_eq!(back, lead);
        // Members that are absent take their defaults; unknown members are ignored.
        let back: Lead = serde_json::from_str(
            r#"{"phone_number":"+18185550100","first_name":"Ada","unknown":[1]}"#,
        )
        .expect("a lead");
        let mut expected = Lead::of_number(number("+18185550100"));
        expected.fields.first_name = Some("Ada".into());
        assert_eq!(back, expected);
        let missing = serde_json::from_str::<Lead>(r#"{"first_name":"Ada"}"#);
        assert!(
            missing.is_err_and(|e| e.to_string().contains("phone_number")),
            "a lead without its number"
        );
    }

    #[test]
    fn the_warning_names_the_id_and_what_is_not_done() {
        let tag = LINKS.iter().find(|f| f.link == Link::Tag).expect("tag");
        assert_eq!(
            tag.not_found(77),
            "Tag 77 not found in this account; tag not added."
        );
    }
}
