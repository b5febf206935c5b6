//! Per-token lead sources: a [`FieldMap`] that renames a form builder's keys (`Your phone`)
//! to the contract's fields (`phone_number`) before validation, and [`DefaultActions`],
//! action fields every lead of the token gets unless it gives them itself.
//!
//! Both act on a [`RawLead`] before [`RawLead::parse`], so a mapped or defaulted field goes
//! through exactly the checks a field sent under its own name does.

use crate::contact_fields::TextField;
use crate::lead::{LINKS, LinkField};
use crate::payload::RawLead;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use strum::IntoEnumIterator;

/// Every field name of the contract (§3) but the contact's text fields ([`TextField`]) and
/// link fields ([`LINKS`]), aliases included.
const OTHER_FIELDS: &[&str] = &[
    "phone_number",
    "other_phone_numbers",
    "date_of_birth",
    "timezone",
    "notes",
    "force_update",
    "force_update_sequence",
    "distribute_to_ring_group",
    "distribute_to_right_group",
    "check_available_users",
    "check_available_users_with_fallback",
    "add_to_powerdialer",
    "powerdialer_position",
    "consent",
    "consent_channels",
    "consent_text",
    "consent_given_at",
    "consent_source_url",
    "consent_ip",
    "consent_user_agent",
    "consent_seller",
    "trustedform_cert_url",
    "leadid_token",
];

/// The action fields a token may default besides the link fields ([`LINKS`]), each with the
/// aliases a lead may give it under (a lead that gives any of them "says otherwise").
const ACTION_FLAGS: &[(&str, &[&str])] = &[
    ("distribute_to_ring_group", &["distribute_to_right_group"]),
    ("check_available_users", &[]),
    ("check_available_users_with_fallback", &[]),
    ("add_to_powerdialer", &[]),
    ("powerdialer_position", &[]),
];

/// The aliases of `name` if it is an action field a token may default: a link field or one
/// of [`ACTION_FLAGS`].
pub fn action_aliases(name: &str) -> Option<&'static [&'static str]> {
    LINKS
        .iter()
        .map(|f| (f.name, f.aliases))
        .chain(ACTION_FLAGS.iter().copied())
        .find(|(n, _)| *n == name)
        .map(|(_, aliases)| aliases)
}

/// Every field name of the contract, aliases included: what a mapping may target.
pub fn field_names() -> impl Iterator<Item = &'static str> {
    TextField::iter()
        .map(TextField::as_str)
        .chain(LINKS.iter().flat_map(LinkField::names))
        .chain(OTHER_FIELDS.iter().copied())
}

/// Whether `name` is a field of the contract.
pub fn is_field(name: &str) -> bool {
    field_names().any(|n| n == name)
}

/// A mapping that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("{0:?} is not a mapping: write 'Incoming name=field'")]
    Syntax(String),
    #[error("{0:?} is not a lead field (see the intake API's field table)")]
    UnknownField(String),
    #[error("{0:?} is mapped twice")]
    Repeated(String),
}

/// Incoming key → contract field, tried in order. Keys match exactly, else ignoring case
/// and surrounding whitespace (form builders send their questions' labels).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldMap(Vec<(String, String)>);

impl FieldMap {
    /// Parses `Incoming name=field` pairs (the incoming name may itself contain `=`: the
    /// last one separates).
    pub fn parse<S: AsRef<str>>(pairs: &[S]) -> Result<Self, MappingError> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let pair = pair.as_ref();
            let (from, to) = pair
                .rsplit_once('=')
                .map(|(f, t)| (f.trim(), t.trim()))
                .filter(|(f, t)| !f.is_empty() && !t.is_empty())
                .ok_or_else(|| MappingError::Syntax(pair.to_owned()))?;
            if !is_field(to) {
                return Err(MappingError::UnknownField(to.to_owned()));
            }
            if out.iter().any(|(f, _)| f.eq_ignore_ascii_case(from)) {
                return Err(MappingError::Repeated(from.to_owned()));
            }
            out.push((from.to_owned(), to.to_owned()));
        }
        Ok(Self(out))
    }

    /// A stored mapping (`[[from, to], …]`); anything unreadable maps nothing.
    pub fn from_json(value: &Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// Renames the mapped keys of `raw`. A field the lead already gives under its own name
    /// wins over a mapped one, except that a second number mapped to `phone_number` becomes
    /// an additional number; keys mapped to `other_phone_numbers` add a number labelled with
    /// the incoming name, and keys mapped to `notes` add a `name: value` line.
    pub fn apply(&self, raw: &mut RawLead) {
        for (from, to) in &self.0 {
            let fields = raw.fields_mut();
            let Some(key) = matching_key(fields, from) else {
                continue;
            };
            if key == *to {
                continue;
            }
            let Some(value) = fields.remove(&key) else {
                continue;
            };
            put(fields, &key, to, value);
        }
    }

    /// The field `key` is mapped to, if any (matched as [`Self::apply`] matches).
    pub fn target(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(from, _)| from == key)
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(from, _)| from.trim().eq_ignore_ascii_case(key.trim()))
            })
            .map(|(_, to)| to.as_str())
    }
}

/// The key of `fields` that `from` names, if any.
fn matching_key(fields: &Map<String, Value>, from: &str) -> Option<String> {
    if fields.contains_key(from) {
        return Some(from.to_owned());
    }
    fields
        .keys()
        .find(|k| k.trim().eq_ignore_ascii_case(from.trim()))
        .cloned()
}

/// Puts `value` (which arrived as `label`) into the field `to` of `fields`; false when
/// the field already has a value of its own (which wins).
pub fn put(fields: &mut Map<String, Value>, label: &str, to: &str, value: Value) -> bool {
    if blank(&value) {
        return true;
    }
    match to {
        "other_phone_numbers" => add_other_number(fields, label, value),
        "notes" => add_note_line(fields, label, &value),
        "phone_number" if fields.get(to).is_some_and(|v| !blank(v)) => {
            add_other_number(fields, label, value);
        }
        _ if fields.get(to).is_none_or(blank) => {
            fields.insert(to.to_owned(), value);
        }
        _ => return false,
    }
    true
}

/// Appends `{label, phone_number}` to `other_phone_numbers` (an array, or a form's
/// index-keyed object).
fn add_other_number(fields: &mut Map<String, Value>, label: &str, value: Value) {
    let item = serde_json::json!({ "label": label, "phone_number": value });
    match fields.get_mut("other_phone_numbers") {
        Some(Value::Array(items)) => items.push(item),
        Some(Value::Object(items)) => {
            let index = items.len().to_string();
            items.insert(index, item);
        }
        _ => {
            fields.insert("other_phone_numbers".into(), Value::Array(vec![item]));
        }
    }
}

/// Appends a `label: value` line to `notes`.
pub fn add_note_line(fields: &mut Map<String, Value>, label: &str, value: &Value) {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let line = format!("{}: {text}", label.trim());
    match fields.get_mut("notes") {
        Some(Value::String(notes)) if !notes.trim().is_empty() => {
            notes.push('\n');
            notes.push_str(&line);
        }
        _ => {
            fields.insert("notes".into(), Value::String(line));
        }
    }
}

fn blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Action fields applied to every lead of a token that does not give them itself, stored
/// as the contract's own field names and values (`{"ring_group_id": 3, …}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DefaultActions(Map<String, Value>);

impl DefaultActions {
    /// Defaults from `fields`; each must be an action field ([`action_aliases`]).
    pub fn new(fields: Map<String, Value>) -> Result<Self, MappingError> {
        if let Some(unknown) = fields.keys().find(|k| action_aliases(k).is_none()) {
            return Err(MappingError::UnknownField(unknown.clone()));
        }
        Ok(Self(fields))
    }

    /// Stored defaults; anything unreadable defaults nothing.
    pub fn from_json(value: &Value) -> Self {
        match value {
            Value::Object(fields) => Self::new(fields.clone()).unwrap_or_default(),
            _ => Self::default(),
        }
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds each default the lead does not give under any of its names.
    pub fn apply(&self, raw: &mut RawLead) {
        let fields = raw.fields_mut();
        for (name, value) in &self.0 {
            let aliases = action_aliases(name).unwrap_or_default();
            let given = std::iter::once(name.as_str())
                .chain(aliases.iter().copied())
                .any(|n| fields.get(n).is_some_and(|v| !blank(v)));
            if !given {
                fields.insert(name.clone(), value.clone());
            }
        }
    }
}

/// What a token's lead sources are configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSources {
    pub field_map: FieldMap,
    pub defaults: DefaultActions,
    /// The key the Google Ads lead form must send; `None` refuses its leads.
    pub google_key: Option<String>,
}

impl TokenSources {
    /// Maps, then defaults: a mapped field counts as given by the lead.
    pub fn prepare(&self, raw: &mut RawLead) {
        self.field_map.apply(raw);
        self.defaults.apply(raw);
    }

    /// Whether `key` is this token's Google Ads key (compared in constant time).
    pub fn google_key_matches(&self, key: &str) -> bool {
        let Some(expected) = &self.google_key else {
            return false;
        };
        let (a, b) = (expected.as_bytes(), key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::ParseContext;
    use crate::phone::Region;
    use serde_json::json;

    fn raw(v: Value) -> RawLead {
        RawLead::from_json(v.to_string().as_bytes()).expect("object")
    }

    #[test]
    fn a_typeform_style_flat_post_maps_onto_the_contract() {
        // Flat fields as a form builder posts them: question labels as keys.
        let map = FieldMap::parse(&[
            "Your phone=phone_number",
            "Full name=name",
            "What's your email?=email",
            "Mobile=other_phone_numbers",
            "How did you hear about us?=notes",
        ])
        .expect("mapping");
        let mut lead = raw(json!({
            "your phone": "(818) 555-0142",
            "Full name": "Grace Hopper",
            "What's your email?": "GRACE@Example.COM",
            "Mobile": "+1 212 555 0100",
            "How did you hear about us?": "A podcast",
            "form_id": "abc123"
        }));
        map.apply(&mut lead);
        let parsed = lead
            .parse(&ParseContext::now(Region::US))
            .expect("a valid lead");
        assert_eq!(parsed.phone_number.as_str(), "+18185550142");
        assert_eq!(parsed.fields.name.as_deref(), Some("Grace Hopper"));
        assert_eq!(parsed.fields.email.as_deref(), Some("GRACE@example.com"));
        assert_eq!(parsed.other_phone_numbers.len(), 1);
        assert_eq!(
            parsed.other_phone_numbers[0].label.as_deref(),
            Some("Mobile")
        );
        assert_eq!(
            parsed.notes.as_deref(),
            Some("How did you hear about us?: A podcast")
        );
    }

    #[test]
    fn a_second_phone_mapped_to_phone_number_becomes_another_number() {
        let map =
            FieldMap::parse(&["Phone=phone_number", "Work phone=phone_number"]).expect("mapping");
        let mut lead = raw(json!({"Phone": "8181234567", "Work phone": "2125550100"}));
        map.apply(&mut lead);
        let parsed = lead.parse(&ParseContext::now(Region::US)).expect("lead");
        assert_eq!(parsed.phone_number.as_str(), "+18181234567");
        assert_eq!(
            parsed.other_phone_numbers[0].phone_number.as_str(),
            "+12125550100"
        );
    }

    #[test]
    fn the_lead_own_field_wins_over_a_mapped_one() {
        let map = FieldMap::parse(&["Phone=phone_number"]).expect("mapping");
        let mut lead = raw(json!({"phone_number": "8181234567", "Phone": "2125550100"}));
        map.apply(&mut lead);
        let parsed = lead.parse(&ParseContext::now(Region::US)).expect("lead");
        assert_eq!(parsed.phone_number.as_str(), "+18181234567");
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        assert!(matches!(
            FieldMap::parse(&["no equals sign"]),
            Err(MappingError::Syntax(_))
        ));
        assert!(matches!(
            FieldMap::parse(&["Phone=telephone"]),
            Err(MappingError::UnknownField(f)) if f == "telephone"
        ));
        assert!(matches!(
            FieldMap::parse(&["Phone=phone_number", "PHONE=email"]),
            Err(MappingError::Repeated(_))
        ));
        // The last `=` separates: a label may contain one.
        let map = FieldMap::parse(&["a=b=name"]).expect("mapping");
        assert_eq!(map.pairs()[0], ("a=b".to_owned(), "name".to_owned()));
    }

    #[test]
    fn defaults_apply_unless_the_lead_says_otherwise() {
        let defaults = DefaultActions::new(
            json!({"ring_group_id": 3, "distribute_to_ring_group": true, "sequence_id": 7,
                   "add_to_powerdialer": true, "powerdialer_position": "bottom"})
            .as_object()
            .cloned()
            .expect("object"),
        )
        .expect("defaults");
        let mut lead = raw(json!({"phone_number": "8181234567", "automation_id": 9,
                                  "distribute_to_ring_group": false}));
        defaults.apply(&mut lead);
        let parsed = lead.parse(&ParseContext::now(Region::US)).expect("lead");
        assert_eq!(parsed.links.ring_group_id, Some(3));
        assert_eq!(
            parsed.links.sequence_id,
            Some(9),
            "the alias says otherwise"
        );
        assert!(
            !parsed.flags.distribute_to_ring_group,
            "an explicit false wins"
        );
        assert!(parsed.flags.add_to_powerdialer);
        assert_eq!(
            parsed.powerdialer_position,
            crate::lead::PowerdialerPosition::Bottom
        );
        assert!(
            DefaultActions::new(json!({"email": "x@y.z"}).as_object().cloned().expect("o"))
                .is_err()
        );
    }

    #[test]
    fn the_google_key_must_match_exactly() {
        let sources = TokenSources {
            google_key: Some("s3cret".into()),
            ..TokenSources::default()
        };
        assert!(sources.google_key_matches("s3cret"));
        assert!(!sources.google_key_matches("s3cre"));
        assert!(!sources.google_key_matches("S3CRET"));
        assert!(!TokenSources::default().google_key_matches(""));
    }
}
