//! The contact's own data fields: what a lead provides, what is derived from it (name ↔
//! first/last, place and timezone from the number), and how both apply to a new or an
//! existing contact (§4.2–§4.4). Pure functions: the worker writes what they decide.

use crate::contact_fields::TextField;
use crate::entities::contact;
use crate::geo;
use crate::lead::Lead;
use crate::phone::PhoneNumber;
use chrono::NaiveDate;

/// Longest text a contact column holds.
const MAX_TEXT: usize = 255;

/// A contact column a lead can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Text(TextField),
    DateOfBirth,
    Timezone,
}

impl Field {
    /// The field's name in the payload and on the contact.
    pub fn as_str(&self) -> &'static str {
        match self {
            Field::Text(field) => field.as_str(),
            Field::DateOfBirth => "date_of_birth",
            Field::Timezone => "timezone",
        }
    }
}

impl From<TextField> for Field {
    fn from(field: TextField) -> Field {
        Field::Text(field)
    }
}

/// A field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(String),
    Date(NaiveDate),
}

/// A value the lead brings for one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub field: Field,
    pub value: Value,
    /// Given in the payload (overwrites under force_update), as opposed to derived (fills
    /// blanks only, whatever the flags).
    pub provided: bool,
}

/// Splits a full name on its last space: "Mary Ann Smith" → ("Mary Ann", "Smith").
pub fn split_name(name: &str) -> (Option<String>, Option<String>) {
    let name = name.trim();
    match name.rsplit_once(char::is_whitespace) {
        Some((first, last)) if !first.trim().is_empty() && !last.is_empty() => {
            (Some(first.trim().to_owned()), Some(last.to_owned()))
        }
        _ if name.is_empty() => (None, None),
        _ => (Some(name.to_owned()), None),
    }
}

/// Joins first and last name ("Ada" + "Lovelace" → "Ada Lovelace"), within the column size.
pub fn join_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let joined = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    (!joined.is_empty()).then(|| truncate(joined))
}

fn truncate(s: String) -> String {
    if s.chars().count() <= MAX_TEXT {
        return s;
    }
    s.chars()
        .take(MAX_TEXT)
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// Everything the lead provides, plus the name derived within the lead itself.
pub fn from_lead(lead: &Lead) -> Vec<Candidate> {
    let f = &lead.fields;
    let mut out: Vec<Candidate> = f
        .given()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(field, v)| Candidate {
            field: field.into(),
            value: Value::Text(v.clone()),
            provided: true,
        })
        .collect();
    if let Some(d) = lead.date_of_birth {
        out.push(Candidate {
            field: Field::DateOfBirth,
            value: Value::Date(d),
            provided: true,
        });
    }
    if let Some(tz) = lead.timezone {
        out.push(Candidate {
            field: Field::Timezone,
            value: Value::Text(tz.name().to_owned()),
            provided: true,
        });
    }

    let has = |out: &[Candidate], field: TextField| out.iter().any(|c| c.field == field.into());
    let derived = |field: TextField, value: String| Candidate {
        field: field.into(),
        value: Value::Text(value),
        provided: false,
    };
    if has(&out, TextField::Name)
        && !has(&out, TextField::FirstName)
        && !has(&out, TextField::LastName)
    {
        let (first, last) = f.name.as_deref().map(split_name).unwrap_or((None, None));
        out.extend(first.map(|v| derived(TextField::FirstName, v)));
        out.extend(last.map(|v| derived(TextField::LastName, v)));
    } else if !has(&out, TextField::Name)
        && let Some(name) = join_name(f.first_name.as_deref(), f.last_name.as_deref())
    {
        out.push(derived(TextField::Name, name));
    }
    out
}

/// Country, state, city and timezone that `number` tells, for the fields still blank after
/// `candidates` and `existing` are taken into account. State and city are only derived when
/// they agree with the country (and city with the state) the contact ends up with, so a
/// contact that moved is never given a mixed-up address.
pub fn from_number(
    number: &PhoneNumber,
    existing: Option<&contact::Model>,
    candidates: &[Candidate],
) -> Vec<Candidate> {
    let place = geo::locate(number);
    let effective = |field: TextField| -> Option<String> {
        candidates
            .iter()
            .find(|c| c.field == field.into() && c.provided)
            .and_then(|c| match &c.value {
                Value::Text(t) => Some(t.clone()),
                Value::Date(_) => None,
            })
            .or_else(|| existing.and_then(|m| text(m, field.into())))
    };
    let agrees = |field: TextField, derived: &Option<String>| match (effective(field), derived) {
        (None, _) => true,
        (Some(have), Some(d)) => have.eq_ignore_ascii_case(d),
        (Some(_), None) => false,
    };
    let mut out = Vec::new();
    let mut push = |field: Field, value: Option<String>| {
        if let Some(v) = value {
            out.push(Candidate {
                field,
                value: Value::Text(v),
                provided: false,
            });
        }
    };
    let country_ok = agrees(TextField::Country, &place.country);
    let state_ok = country_ok && agrees(TextField::State, &place.state);
    push(TextField::Country.into(), place.country.clone());
    if country_ok {
        push(TextField::State.into(), place.state.clone());
    }
    if state_ok {
        push(TextField::City.into(), place.city.clone());
    }
    push(
        Field::Timezone,
        place.timezone.map(|tz| tz.name().to_owned()),
    );
    out
}

fn text(m: &contact::Model, field: Field) -> Option<String> {
    let v = match field {
        Field::Text(field) => m.text(field),
        Field::Timezone => m.timezone.clone(),
        Field::DateOfBirth => return m.date_of_birth.map(|d| d.to_string()),
    };
    v.filter(|s| !s.trim().is_empty())
}

fn current(m: &contact::Model, field: Field) -> Option<Value> {
    match field {
        Field::DateOfBirth => m.date_of_birth.map(Value::Date),
        _ => text(m, field).map(Value::Text),
    }
}

/// The changes `candidates` make: everything on a new contact; on an existing one, blanks
/// are filled, and provided values overwrite under `force` (derived values never overwrite).
/// The first candidate of a field wins.
pub fn changes(
    existing: Option<&contact::Model>,
    candidates: &[Candidate],
    force: bool,
) -> Vec<(Field, Value)> {
    let mut out: Vec<(Field, Value)> = Vec::new();
    for c in candidates {
        if out.iter().any(|(f, _)| *f == c.field) {
            continue;
        }
        let wanted = match existing.map(|m| current(m, c.field)) {
            None => true,
            Some(None) => true,
            Some(Some(have)) => force && c.provided && have != c.value,
        };
        if wanted {
            out.push((c.field, c.value.clone()));
        }
    }
    if force && let Some(m) = existing {
        reconcile_name(m, candidates, &mut out);
    }
    out
}

/// Under force_update a contact's name and its parts must agree (§4.4): a forced name alone
/// rewrites the parts it splits into; forced parts alone rewrite the name they join into,
/// with the contact's other part.
fn reconcile_name(m: &contact::Model, candidates: &[Candidate], out: &mut Vec<(Field, Value)>) {
    let provided = |f: TextField| candidates.iter().any(|c| c.field == f.into() && c.provided);
    let after = |out: &[(Field, Value)], f: TextField| -> Option<String> {
        match out.iter().find(|(field, _)| *field == f.into()) {
            Some((_, Value::Text(t))) => Some(t.clone()),
            _ => text(m, f.into()),
        }
    };
    let set = |out: &mut Vec<(Field, Value)>, f: TextField, value: Option<String>| {
        let f = Field::from(f);
        let Some(value) = value else { return };
        if text(m, f).as_deref() == Some(value.as_str()) {
            out.retain(|(field, _)| *field != f);
            return;
        }
        match out.iter_mut().find(|(field, _)| *field == f) {
            Some(slot) => slot.1 = Value::Text(value),
            None => out.push((f, Value::Text(value))),
        }
    };
    let (name, first, last) = (
        provided(TextField::Name),
        provided(TextField::FirstName),
        provided(TextField::LastName),
    );
    if name && !first && !last {
        let (first, last) = after(out, TextField::Name)
            .as_deref()
            .map(split_name)
            .unwrap_or((None, None));
        set(out, TextField::FirstName, first);
        set(out, TextField::LastName, last);
    } else if !name && (first || last) {
        let joined = join_name(
            after(out, TextField::FirstName).as_deref(),
            after(out, TextField::LastName).as_deref(),
        );
        set(out, TextField::Name, joined);
    }
}

/// Writes `changes` into a contact.
pub fn apply(m: &mut contact::Model, changes: &[(Field, Value)]) {
    for (field, value) in changes {
        match (field, value) {
            (Field::DateOfBirth, Value::Date(d)) => m.date_of_birth = Some(*d),
            (Field::Text(field), Value::Text(t)) => m.set_text(*field, t.clone()),
            (Field::Timezone, Value::Text(t)) => m.timezone = Some(t.clone()),
            (Field::DateOfBirth, Value::Text(_)) | (_, Value::Date(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact_fields::ContactText;
    use crate::phone::Region;
    use chrono::Utc;
    use proptest::prelude::*;

    fn lead(fields: ContactText) -> Lead {
        Lead {
            fields,
            ..Lead::of_number(PhoneNumber::parse("818 123 4567", Region::US).expect("phone"))
        }
    }

    fn contact(f: impl FnOnce(&mut contact::Model)) -> contact::Model {
        let phone = PhoneNumber::from_e164("+18181234567".into()).expect("e164");
        let mut m = crate::rules::blank_contact(1, 1, &phone, Utc::now());
        f(&mut m);
        m
    }

    fn text_of(changes: &[(Field, Value)], field: impl Into<Field>) -> Option<String> {
        let field = field.into();
        changes
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| match v {
                Value::Text(t) => t.clone(),
                Value::Date(d) => d.to_string(),
            })
    }

    #[test]
    fn name_splits_on_the_last_space_and_joins_back() {
        assert_eq!(
            split_name("Mary Ann Smith"),
            (Some("Mary Ann".into()), Some("Smith".into()))
        );
        assert_eq!(split_name("Cher"), (Some("Cher".into()), None));
        assert_eq!(
            join_name(Some("Ada"), Some("Lovelace")).as_deref(),
            Some("Ada Lovelace")
        );
        assert_eq!(
            join_name(None, Some("Lovelace")).as_deref(),
            Some("Lovelace")
        );
        assert_eq!(join_name(None, None), None);
        let long = "x".repeat(255);
        assert_eq!(
            join_name(Some(&long), Some(&long)).map(|s| s.len()),
            Some(255)
        );
    }

    #[test]
    fn a_lead_name_is_completed_from_its_other_half() {
        let c = from_lead(&lead(ContactText {
            name: Some("Grace Brewster Hopper".into()),
            ..ContactText::default()
        }));
        let ch = changes(None, &c, false);
        assert_eq!(
            text_of(&ch, TextField::FirstName).as_deref(),
            Some("Grace Brewster")
        );
        assert_eq!(text_of(&ch, TextField::LastName).as_deref(), Some("Hopper"));

        let c = from_lead(&lead(ContactText {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            ..ContactText::default()
        }));
        let ch = changes(None, &c, false);
        assert_eq!(
            text_of(&ch, TextField::Name).as_deref(),
            Some("Ada Lovelace")
        );
    }

    #[test]
    fn merge_fills_blanks_and_keeps_existing_values() {
        let existing = contact(|m| m.email = Some("old@example.com".into()));
        let c = from_lead(&lead(ContactText {
            email: Some("new@example.com".into()),
            company_name: Some("Acme".into()),
            ..ContactText::default()
        }));
        let ch = changes(Some(&existing), &c, false);
        assert_eq!(text_of(&ch, TextField::Email), None);
        assert_eq!(
            text_of(&ch, TextField::CompanyName).as_deref(),
            Some("Acme")
        );
    }

    #[test]
    fn force_overwrites_provided_fields_only() {
        let existing = contact(|m| {
            m.name = Some("John Doe".into());
            m.first_name = Some("John".into());
            m.last_name = Some("Doe".into());
            m.city = Some("Boston".into());
        });
        let c = from_lead(&lead(ContactText {
            name: Some("Jane Roe".into()),
            ..ContactText::default()
        }));
        let ch = changes(Some(&existing), &c, true);
        assert_eq!(text_of(&ch, TextField::Name).as_deref(), Some("Jane Roe"));
        // A forced name rewrites its parts, so the contact never contradicts itself.
        assert_eq!(text_of(&ch, TextField::FirstName).as_deref(), Some("Jane"));
        assert_eq!(text_of(&ch, TextField::LastName).as_deref(), Some("Roe"));
        assert_eq!(text_of(&ch, TextField::City), None);
        // The same value again is no change.
        let again = changes(
            Some(&contact(|m| m.name = Some("Jane Roe".into()))),
            &c,
            true,
        );
        assert_eq!(text_of(&again, TextField::Name), None);
    }

    #[test]
    fn forced_name_parts_rewrite_the_name_with_the_other_part() {
        let existing = contact(|m| {
            m.name = Some("John Doe".into());
            m.first_name = Some("John".into());
            m.last_name = Some("Doe".into());
        });
        let first_only = from_lead(&lead(ContactText {
            first_name: Some("Jane".into()),
            ..ContactText::default()
        }));
        let ch = changes(Some(&existing), &first_only, true);
        assert_eq!(text_of(&ch, TextField::FirstName).as_deref(), Some("Jane"));
        assert_eq!(text_of(&ch, TextField::Name).as_deref(), Some("Jane Doe"));
        assert_eq!(text_of(&ch, TextField::LastName), None);
        // Without force_update nothing of a filled name changes.
        assert!(changes(Some(&existing), &first_only, false).is_empty());
    }

    #[test]
    fn the_number_fills_blank_place_fields_consistently() {
        let number = PhoneNumber::parse("212 555 0100", Region::US).expect("phone");
        let derived = from_number(&number, None, &[]);
        let ch = changes(None, &derived, false);
        assert_eq!(text_of(&ch, TextField::Country).as_deref(), Some("US"));
        assert_eq!(text_of(&ch, TextField::State).as_deref(), Some("NY"));
        assert_eq!(text_of(&ch, TextField::City).as_deref(), Some("New York"));
        assert_eq!(
            text_of(&ch, Field::Timezone).as_deref(),
            Some("America/New_York")
        );

        // A contact in another state keeps its address: no New York city is added.
        let moved = contact(|m| m.state = Some("TX".into()));
        let derived = from_number(&number, Some(&moved), &[]);
        let ch = changes(Some(&moved), &derived, false);
        assert_eq!(text_of(&ch, TextField::City), None);
        assert_eq!(text_of(&ch, TextField::Country).as_deref(), Some("US"));
    }

    proptest! {
        #[test]
        fn split_then_join_gives_the_name_back(words in proptest::collection::vec("[A-Za-z]{1,12}", 1..5)) {
            let name = words.join(" ");
            let (first, last) = split_name(&name);
            prop_assert_eq!(join_name(first.as_deref(), last.as_deref()), Some(name));
        }

        #[test]
        fn existing_values_survive_a_merge(email in "[a-z]{1,8}@example\\.com", other in "[a-z]{1,8}@example\\.org") {
            let existing = contact(|m| m.email = Some(email.clone()));
            let c = from_lead(&lead(ContactText { email: Some(other), ..ContactText::default() }));
            prop_assert!(text_of(&changes(Some(&existing), &c, false), TextField::Email).is_none());
        }
    }
}
