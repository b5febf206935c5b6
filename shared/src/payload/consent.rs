//! The consent a lead's form captured (§9): `consent`, `trustedform_cert_url` and
//! `leadid_token`, each checked here so that what is stored as evidence is well formed.

use super::{Reader, display, normalize_website};
use crate::lead::{ConsentChannel, LeadConsent};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Longest consent disclosure kept.
pub const MAX_CONSENT_TEXT_CHARS: usize = 10_000;
const MAX_URL_CHARS: usize = 2048;
const MAX_USER_AGENT_CHARS: usize = 1024;
/// How far ahead of the server's clock a `given_at` may be (clients' clocks drift).
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;

/// The keys of the `consent` object. Each may also be given flat, as `consent_<key>`, where
/// a source cannot nest fields (a CSV column, a Google Ads form field, a field mapping).
pub const CONSENT_KEYS: [&str; 7] = [
    "channels",
    "text",
    "given_at",
    "source_url",
    "ip",
    "user_agent",
    "seller",
];

impl<'a> Reader<'a> {
    /// `consent`: an object with at least one channel, or its flat `consent_<key>` fields;
    /// `None` when neither is given.
    pub(super) fn consent(&mut self, name: &'a str, now: DateTime<Utc>) -> Option<LeadConsent> {
        let flat: Map<String, Value> = CONSENT_KEYS
            .iter()
            .filter_map(|k| {
                let v = self.fields.get(&format!("{name}_{k}"))?;
                (!super::is_blank(v)).then(|| ((*k).to_owned(), v.clone()))
            })
            .collect();
        let nested = match self.given([name]) {
            Some(given) => match given.value {
                Value::Object(obj) => Some(obj),
                _ => {
                    self.fail(
                        name,
                        format!(
                            "The {} field must be an object with channels.",
                            display(name)
                        ),
                    );
                    return None;
                }
            },
            None if flat.is_empty() => return None,
            None => None,
        };
        let obj = nested.unwrap_or(&flat);
        let separator = if nested.is_some() { "." } else { "_" };
        let field = |key: &str| format!("{name}{separator}{key}");
        let channels = self.consent_channels(&field("channels"), obj.get("channels"));
        let text = self.consent_text(obj, &field("text"), MAX_CONSENT_TEXT_CHARS);
        let given_at = self.consent_given_at(&field("given_at"), obj.get("given_at"), now);
        let source_url = self.consent_url(&field("source_url"), obj.get("source_url"));
        let ip = self.consent_ip(&field("ip"), obj.get("ip"));
        let user_agent = self.consent_text(obj, &field("user_agent"), MAX_USER_AGENT_CHARS);
        let seller = self.consent_text(obj, &field("seller"), super::MAX_TEXT_CHARS);
        Some(LeadConsent {
            channels: channels?,
            text,
            given_at,
            source_url,
            ip,
            user_agent,
            seller,
        })
    }

    fn consent_channels(
        &mut self,
        field: &str,
        value: Option<&Value>,
    ) -> Option<Vec<ConsentChannel>> {
        let items: Vec<&Value> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().collect(),
            // A form's `consent[channels][0]=sms` reads as an object keyed by index.
            Some(Value::Object(o)) => o.values().collect(),
            Some(v) => vec![v],
        };
        let mut channels = Vec::new();
        for item in items {
            // "sms,call" as one string is accepted too.
            let Some(text) = item.as_str() else {
                self.fail(
                    field,
                    format!("The {} must be call, sms or email.", display(field)),
                );
                return None;
            };
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some(channel) = ConsentChannel::parse(part) else {
                    self.fail(
                        field,
                        format!(
                            "The {} must be call, sms or email; {part:?} is not.",
                            display(field)
                        ),
                    );
                    return None;
                };
                if !channels.contains(&channel) {
                    channels.push(channel);
                }
            }
        }
        if channels.is_empty() {
            self.fail(field, format!("The {} field is required.", display(field)));
            return None;
        }
        Some(channels)
    }

    fn consent_text(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        max: usize,
    ) -> Option<String> {
        let key = CONSENT_KEYS
            .iter()
            .find(|k| field.ends_with(*k))
            .copied()
            .unwrap_or(field);
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => self.text_value(field, v, max),
        }
    }

    fn consent_given_at(
        &mut self,
        field: &str,
        value: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let value = value.filter(|v| !v.is_null())?;
        let text = value.as_str().map(str::trim).unwrap_or("not a string");
        if text.is_empty() {
            return None;
        }
        match DateTime::parse_from_rfc3339(text) {
            Ok(t)
                if t.with_timezone(&Utc)
                    <= now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES) =>
            {
                Some(t.with_timezone(&Utc))
            }
            Ok(_) => {
                self.fail(
                    field,
                    format!("The {} must not be in the future.", display(field)),
                );
                None
            }
            Err(_) => {
                self.fail(
                    field,
                    format!(
                        "The {} must be an RFC 3339 date and time (2026-12-02T15:04:05Z).",
                        display(field)
                    ),
                );
                None
            }
        }
    }

    fn consent_url(&mut self, field: &str, value: Option<&Value>) -> Option<String> {
        let value = value.filter(|v| !v.is_null())?;
        let text = self.text_value(field, value, MAX_URL_CHARS)?;
        let url = normalize_website(&text);
        if url.is_none() {
            self.fail(
                field,
                format!("The {} must be a valid URL.", display(field)),
            );
        }
        url
    }

    fn consent_ip(&mut self, field: &str, value: Option<&Value>) -> Option<String> {
        let value = value.filter(|v| !v.is_null())?;
        let text = self.text_value(field, value, 64)?;
        match text.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(ip.to_string()),
            Err(_) => {
                self.fail(
                    field,
                    format!("The {} must be a valid IP address.", display(field)),
                );
                None
            }
        }
    }

    /// `trustedform_cert_url`: `https://cert.trustedform.com/` and 40 hex digits.
    pub(super) fn trustedform_cert_url(&mut self, name: &'a str) -> Option<String> {
        let text = self.text(name, super::MAX_TEXT_CHARS)?;
        let cert = text
            .strip_prefix("https://cert.trustedform.com/")
            .filter(|id| id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if cert.is_none() {
            self.fail(
                name,
                format!(
                    "The {} must be a TrustedForm certificate URL (https://cert.trustedform.com/ and 40 hex digits).",
                    display(name)
                ),
            );
            return None;
        }
        Some(text.to_ascii_lowercase())
    }

    /// `leadid_token`: a Jornaya LeadiD, a 36-character GUID.
    pub(super) fn leadid_token(&mut self, name: &'a str) -> Option<String> {
        let text = self.text(name, super::MAX_TEXT_CHARS)?;
        let guid = text.len() == 36
            && text.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !guid {
            self.fail(
                name,
                format!(
                    "The {} must be a 36-character GUID (8-4-4-4-12 hex digits).",
                    display(name)
                ),
            );
            return None;
        }
        Some(text.to_ascii_uppercase())
    }
}
