//! Lead payloads as they arrive (JSON or form bodies, query strings) and their parsing into
//! the typed [`Lead`].
//!
//! [`RawLead`] is lenient: any JSON object or form body becomes a tree of fields, unknown
//! fields included. [`RawLead::parse`] applies every rule of the contract (§3) at once and
//! either yields a [`Lead`] or every failing field with Laravel-style messages, so a client
//! fixes all of its mistakes in one round trip.
//!
//! Conventions shared by every field, as web forms send them: surrounding whitespace is
//! trimmed; an empty string or `null` counts as absent; numbers are accepted where text is
//! expected.

use crate::contact_fields::{ContactText, TextKind};
use crate::lead::{
    ConsentEvidence, LINKS, Lead, LeadFlags, LeadLinks, OtherPhoneNumber, PowerdialerPosition,
};
use crate::phone::{PhoneNumber, Region};
use chrono::NaiveDate;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// Longest plain text field, in characters.
pub const MAX_TEXT_CHARS: usize = 255;
/// Longest note, in characters.
pub const MAX_NOTES_CHARS: usize = 10_000;
/// Most additional numbers one lead may carry.
pub const MAX_OTHER_PHONE_NUMBERS: usize = 20;
/// The field that may carry the API token; never part of a stored payload.
pub const TOKEN_FIELD: &str = "api_token";
/// Deepest `a[b][c]…` nesting read from a form key; deeper keys are ignored (no field of
/// the contract nests deeper than three levels).
const MAX_FORM_DEPTH: usize = 8;

/// A request's fields before validation: a JSON object, or the tree a form body or query
/// string describes (`other_phone_numbers[0][phone_number]=…`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawLead {
    fields: Map<String, Value>,
}

/// A body that is not a lead at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("The body must be valid JSON.")]
    MalformedJson,
    #[error("The body must be a JSON object.")]
    NotAnObject,
}

impl BodyError {
    /// The error as a validation failure of the pseudo-field `body`.
    pub fn into_field_errors(self) -> FieldErrors {
        let mut errors = FieldErrors::default();
        errors.add("body", self.to_string());
        errors
    }
}

/// What parsing needs besides the fields.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// The account's region for numbers written without a country code.
    pub region: Region,
    /// The latest date a date of birth may be.
    pub today: NaiveDate,
    /// The time of receipt: a consent may not have been given after it.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl ParseContext {
    /// A context whose "today" is the current date anywhere on Earth (UTC+14), so a lead
    /// born today in the earliest time zone is not "in the future".
    pub fn now(region: Region) -> Self {
        let now = chrono::Utc::now();
        let today = (now + chrono::Duration::hours(14)).date_naive();
        Self { region, today, now }
    }
}

impl RawLead {
    /// Reads a JSON body. An empty body is a lead without fields (they may all be in the
    /// query string).
    pub fn from_json(body: &[u8]) -> Result<Self, BodyError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => Ok(Self { fields }),
            Ok(_) => Err(BodyError::NotAnObject),
            Err(_) => Err(BodyError::MalformedJson),
        }
    }

    /// Reads an `application/x-www-form-urlencoded` body or a query string. Keys nest the
    /// way PHP reads them: `a[b]=1` is `{"a":{"b":"1"}}`, `a[]=1&a[]=2` is `{"a":["1","2"]}`;
    /// of a repeated key the last value counts.
    pub fn from_form(body: &[u8]) -> Self {
        let mut root = Value::Object(Map::new());
        for (key, value) in form_urlencoded::parse(body) {
            let path = form_key_path(&key);
            if path.is_empty() || path.len() > MAX_FORM_DEPTH {
                continue;
            }
            insert_form_value(&mut root, &path, Value::String(value.into_owned()));
        }
        match root {
            Value::Object(fields) => Self { fields },
            _ => Self::default(),
        }
    }

    /// Adds the fields of `query` that the body does not have (or has blank): the body wins.
    pub fn with_query(mut self, query: RawLead) -> Self {
        for (key, value) in query.fields {
            match self.fields.get_mut(&key) {
                Some(existing) if !is_blank(existing) => {}
                Some(existing) => *existing = value,
                None => {
                    self.fields.insert(key, value);
                }
            }
        }
        self
    }

    /// Removes the API token from the fields and returns it when one was given (a
    /// non-empty string, or any other non-null value, which then fails authentication).
    pub fn take_token(&mut self) -> Option<String> {
        match self.fields.remove(TOKEN_FIELD)? {
            Value::Null => None,
            Value::String(s) => {
                let s = s.trim();
                (!s.is_empty()).then(|| s.to_owned())
            }
            other => Some(other.to_string()),
        }
    }

    /// The fields as given, for the intake record. Call [`Self::take_token`] first.
    pub fn into_payload(self) -> Value {
        Value::Object(self.fields)
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// The fields, to rename or add to before parsing (see [`crate::mapping`]).
    pub fn fields_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.fields
    }

    /// A lead of these fields.
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        Self { fields }
    }

    /// Applies the rules of §3: a lead, or every failing field.
    pub fn parse(&self, ctx: &ParseContext) -> Result<Lead, FieldErrors> {
        let mut r = Reader {
            fields: &self.fields,
            errors: FieldErrors::default(),
        };
        let phone_number = r.primary_phone(ctx.region);
        let other_phone_numbers = r.other_phone_numbers(ctx.region);
        let fields = ContactText::read(|field| match field.kind() {
            TextKind::Text => r.text(field.as_str(), MAX_TEXT_CHARS),
            TextKind::Email => r.email(field.as_str()),
            TextKind::Website => r.website(field.as_str()),
        });
        let date_of_birth = r.date_of_birth("date_of_birth", ctx.today);
        let timezone = r.timezone("timezone");
        let notes = r.text("notes", MAX_NOTES_CHARS);
        let mut links = LeadLinks::default();
        for field in LINKS {
            *links.get_mut(field.link) = r.id(field.names());
        }
        let flags = LeadFlags {
            force_update: r.flag(&["force_update"]),
            force_update_sequence: r.flag(&["force_update_sequence"]),
            distribute_to_ring_group: r
                .flag(&["distribute_to_ring_group", "distribute_to_right_group"]),
            check_available_users: r.flag(&["check_available_users"]),
            check_available_users_with_fallback: r.flag(&["check_available_users_with_fallback"]),
            add_to_powerdialer: r.flag(&["add_to_powerdialer"]),
        };
        let powerdialer_position = r.powerdialer_position("powerdialer_position");
        let evidence = ConsentEvidence {
            consent: r.consent("consent", ctx.now),
            trustedform_cert_url: r.trustedform_cert_url("trustedform_cert_url"),
            leadid_token: r.leadid_token("leadid_token"),
        };

        match phone_number {
            Some(phone_number) if r.errors.is_empty() => Ok(Lead {
                phone_number,
                other_phone_numbers,
                fields,
                date_of_birth,
                timezone,
                notes,
                links,
                flags,
                powerdialer_position,
                evidence,
            }),
            _ => Err(r.errors),
        }
    }
}

/// Every failing field with its messages, in the order of the contract's table; serializes
/// as the `errors` object of a Laravel validation response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, Vec<String>)>);

impl FieldErrors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let message = message.into();
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some((_, messages)) => messages.push(message),
            None => self.0.push((field, vec![message])),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages of `field`, if it failed.
    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_slice())
    }

    /// The failing fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(f, _)| f.as_str())
    }

    /// Each failing field with its messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(f, m)| (f.as_str(), m.as_slice()))
    }
}

impl Serialize for FieldErrors {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (field, messages) in &self.0 {
            map.serialize_entry(field, messages)?;
        }
        map.end()
    }
}

/// Reads the `errors` object back in the order it was written (a client of the API).
impl<'de> Deserialize<'de> for FieldErrors {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FieldErrors;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of field names and their messages")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldErrors, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry::<String, Vec<String>>()? {
                    fields.push(entry);
                }
                Ok(FieldErrors(fields))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// How a field is named in messages: `other_phone_numbers.0.phone_number` →
/// `other phone numbers.0.phone number`, as Laravel does.
fn display(field: &str) -> String {
    field.replace('_', " ")
}

/// Reads fields and collects every failure.
struct Reader<'a> {
    fields: &'a Map<String, Value>,
    errors: FieldErrors,
}

/// A field's value as given, with the name the client used (which may be an alias).
struct Given<'a> {
    name: &'a str,
    value: &'a Value,
}

impl<'a> Reader<'a> {
    /// The first of `names` (canonical name first, then aliases) that is present.
    fn given<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Option<Given<'a>> {
        names.into_iter().find_map(|name| {
            let (name, value) = self.fields.get_key_value(name)?;
            (!is_blank(value)).then_some(Given { name, value })
        })
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.add(field, message);
    }

    fn text(&mut self, name: &'a str, max: usize) -> Option<String> {
        let given = self.given([name])?;
        self.text_value(given.name, given.value, max)
    }

    fn text_value(&mut self, field: &str, value: &Value, max: usize) -> Option<String> {
        let Some(text) = as_text(value) else {
            self.fail(
                field,
                format!("The {} field must be a string.", display(field)),
            );
            return None;
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.contains('\0') {
            // PostgreSQL cannot store it: refused here, not dead-lettered later.
            self.fail(
                field,
                format!(
                    "The {} field must not contain a NUL character.",
                    display(field)
                ),
            );
            return None;
        }
        if text.chars().count() > max {
            self.fail(
                field,
                format!(
                    "The {} field must not be greater than {max} characters.",
                    display(field)
                ),
            );
            return None;
        }
        Some(text.to_owned())
    }

    fn primary_phone(&mut self, region: Region) -> Option<PhoneNumber> {
        let Some(given) = self.given(["phone_number"]) else {
            self.fail("phone_number", "The phone number field is required.");
            return None;
        };
        self.phone_value(given.name, given.value, region)
    }

    fn phone_value(&mut self, field: &str, value: &Value, region: Region) -> Option<PhoneNumber> {
        let parsed = as_text(value).and_then(|t| PhoneNumber::parse(&t, region).ok());
        if parsed.is_none() {
            self.fail(
                field,
                format!("The {} field must be a valid phone number.", display(field)),
            );
        }
        parsed
    }

    fn other_phone_numbers(&mut self, region: Region) -> Vec<OtherPhoneNumber> {
        let field = "other_phone_numbers";
        let Some(given) = self.given([field]) else {
            return Vec::new();
        };
        // A form posts `other_phone_numbers[3][…]`, which reads as an object keyed by index.
        let items: Vec<(String, &Value)> = match given.value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v))
                .collect(),
            Value::Object(items) => items.iter().map(|(k, v)| (k.clone(), v)).collect(),
            _ => {
                self.fail(field, "The other phone numbers field must be an array.");
                return Vec::new();
            }
        };
        if items.len() > MAX_OTHER_PHONE_NUMBERS {
            self.fail(
                field,
                format!(
                    "The other phone numbers field must not have more than \
                     {MAX_OTHER_PHONE_NUMBERS} items."
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items {
            let at = format!("{field}.{index}");
            if let Some(other) = self.other_phone_number(&at, item, region) {
                out.push(other);
            }
        }
        out
    }

    fn other_phone_number(
        &mut self,
        at: &str,
        item: &Value,
        region: Region,
    ) -> Option<OtherPhoneNumber> {
        let (label, label_field, number, number_field) = match item {
            // A pair posted by a form with indexes: `other_phone_numbers[0][0]=Mobile&…[0][1]=…`.
            Value::Object(o) if o.len() == 2 && o.contains_key("0") && o.contains_key("1") => {
                (o.get("0"), format!("{at}.0"), o.get("1"), format!("{at}.1"))
            }
            Value::Object(o) => (
                o.get("label"),
                format!("{at}.label"),
                o.get("phone_number"),
                format!("{at}.phone_number"),
            ),
            // `["Mobile", "818 123 4567"]`, or a form's `other_phone_numbers[0][]=…` pair.
            Value::Array(pair) if pair.len() == 2 => (
                pair.first(),
                format!("{at}.0"),
                pair.get(1),
                format!("{at}.1"),
            ),
            // A bare number, without a label.
            Value::String(_) | Value::Number(_) => (None, String::new(), Some(item), at.to_owned()),
            _ => {
                self.fail(
                    at,
                    format!(
                        "The {} field must be a label and phone number pair.",
                        display(at)
                    ),
                );
                return None;
            }
        };
        let label = label
            .filter(|v| !is_blank(v))
            .and_then(|v| self.text_value(&label_field, v, MAX_TEXT_CHARS));
        let Some(number) = number.filter(|v| !is_blank(v)) else {
            self.fail(
                &number_field,
                format!("The {} field is required.", display(&number_field)),
            );
            return None;
        };
        let phone_number = self.phone_value(&number_field, number, region)?;
        Some(OtherPhoneNumber {
            label,
            phone_number,
        })
    }

    fn email(&mut self, name: &'a str) -> Option<String> {
        let text = self.text(name, MAX_TEXT_CHARS)?;
        let email = normalize_email(&text);
        if email.is_none() {
            self.fail(
                name,
                format!("The {} field must be a valid email address.", display(name)),
            );
        }
        email
    }

    fn website(&mut self, name: &'a str) -> Option<String> {
        let text = self.text(name, MAX_TEXT_CHARS)?;
        let url = normalize_website(&text);
        if url.is_none() {
            self.fail(
                name,
                format!("The {} field must be a valid URL.", display(name)),
            );
        }
        url
    }

    fn date_of_birth(&mut self, name: &'a str, today: NaiveDate) -> Option<NaiveDate> {
        let text = self.text(name, MAX_TEXT_CHARS)?;
        match parse_date(&text) {
            None => {
                self.fail(
                    name,
                    format!(
                        "The {} field must be a valid date (MM/DD/YYYY, MM-DD-YYYY or YYYY-MM-DD).",
                        display(name)
                    ),
                );
                None
            }
            Some(date) if date > today => {
                self.fail(
                    name,
                    format!(
                        "The {} field must be a date before or equal to today.",
                        display(name)
                    ),
                );
                None
            }
            Some(date) => Some(date),
        }
    }

    fn timezone(&mut self, name: &'a str) -> Option<chrono_tz::Tz> {
        let text = self.text(name, MAX_TEXT_CHARS)?;
        let tz = parse_timezone(&text);
        if tz.is_none() {
            self.fail(
                name,
                format!("The {} field must be a valid timezone.", display(name)),
            );
        }
        tz
    }

    fn id<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> Option<i64> {
        let given = self.given(names)?;
        let parsed = match given.value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => {
                let s = s.trim();
                // Digits only: no sign, no exponent, no fraction.
                if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse::<i64>().ok()
                } else {
                    None
                }
            }
            _ => None,
        };
        match parsed {
            Some(id) if id >= 1 => Some(id),
            Some(_) => {
                self.fail(
                    given.name,
                    format!("The {} field must be at least 1.", display(given.name)),
                );
                None
            }
            None => {
                self.fail(
                    given.name,
                    format!("The {} field must be an integer.", display(given.name)),
                );
                None
            }
        }
    }

    fn flag(&mut self, names: &[&'a str]) -> bool {
        let Some(given) = self.given(names.iter().copied()) else {
            return false;
        };
        match parse_bool(given.value) {
            Some(b) => b,
            None => {
                self.fail(
                    given.name,
                    format!("The {} field must be true or false.", display(given.name)),
                );
                false
            }
        }
    }

    fn powerdialer_position(&mut self, name: &'a str) -> PowerdialerPosition {
        let Some(given) = self.given([name]) else {
            return PowerdialerPosition::default();
        };
        let position =
            as_text(given.value).and_then(|t| match t.trim().to_ascii_lowercase().as_str() {
                "top" => Some(PowerdialerPosition::Top),
                "bottom" => Some(PowerdialerPosition::Bottom),
                _ => None,
            });
        position.unwrap_or_else(|| {
            self.fail(name, format!("The selected {} is invalid.", display(name)));
            PowerdialerPosition::default()
        })
    }
}

/// `null`, `""` and whitespace count as absent.
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// Text, or a number written as text.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// `MM/DD/YYYY`, `MM-DD-YYYY` or `YYYY-MM-DD` (one-digit months and days allowed), a real
/// calendar date.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    let parts: Vec<&str> = if text.contains('/') {
        text.split('/').collect()
    } else {
        text.split('-').collect()
    };
    let [a, b, c] = parts.as_slice() else {
        return None;
    };
    let number = |s: &str, digits: std::ops::RangeInclusive<usize>| -> Option<u32> {
        (digits.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (year, month, day) = if a.len() == 4 && !text.contains('/') {
        (number(a, 4..=4)?, number(b, 1..=2)?, number(c, 1..=2)?)
    } else {
        (number(c, 4..=4)?, number(a, 1..=2)?, number(b, 1..=2)?)
    };
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

/// An IANA zone name, in any letter case.
fn parse_timezone(text: &str) -> Option<chrono_tz::Tz> {
    text.parse::<chrono_tz::Tz>().ok().or_else(|| {
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(text))
            .copied()
    })
}

/// A practical address check: `local@domain.tld`, dot-atom local part, a domain of at least
/// two labels. The domain is lower-cased.
fn normalize_email(text: &str) -> Option<String> {
    let (local, domain) = text.rsplit_once('@')?;
    let local_ok = (1..=64).contains(&local.len())
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let domain = domain.to_lowercase();
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.chars().count())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| {
            tld.chars().count() >= 2 && !tld.chars().all(|c| c.is_ascii_digit())
        });
    (local_ok && domain_ok).then(|| format!("{local}@{domain}"))
}

/// An absolute http(s) URL with a host name of at least two labels (or an IP address);
/// `example.com/x` becomes `https://example.com/x`.
fn normalize_website(text: &str) -> Option<String> {
    if text.chars().any(char::is_whitespace) {
        return None;
    }
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("https://{text}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let host_ok = match url.host()? {
        url::Host::Domain(d) => {
            let labels: Vec<&str> = d.split('.').collect();
            labels.len() >= 2 && labels.iter().all(|l| !l.is_empty())
        }
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => true,
    };
    if !host_ok {
        return None;
    }
    let mut out = url.to_string();
    // `https://example.com/` reads better as the domain the client typed.
    if url.path() == "/" && url.query().is_none() && url.fragment().is_none() && out.ends_with('/')
    {
        out.pop();
    }
    Some(out)
}

/// `a[b][]` → `["a", "b", ""]`; an empty segment means "append". A key whose brackets do
/// not close is taken literally.
fn form_key_path(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    let (name, mut rest) = key.split_at(open);
    if name.is_empty() {
        return vec![key.to_owned()];
    }
    let mut path = vec![name.to_owned()];
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return vec![key.to_owned()];
        };
        path.push(inner[..close].to_owned());
        rest = &inner[close + 1..];
    }
    if !rest.is_empty() {
        return vec![key.to_owned()];
    }
    path
}

fn insert_form_value(node: &mut Value, path: &[String], value: Value) {
    let Some((segment, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    if segment.is_empty() {
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        if let Value::Array(items) = node {
            items.push(Value::Null);
            if let Some(last) = items.last_mut() {
                insert_form_value(last, rest, value);
            }
        }
        return;
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        let child = map.entry(segment.clone()).or_insert(Value::Null);
        insert_form_value(child, rest, value);
    }
}

mod consent;
pub use consent::MAX_CONSENT_TEXT_CHARS;

#[cfg(test)]
mod tests;
