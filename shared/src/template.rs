//! Message templates (§10): text with `{{field}}` placeholders over the contact's §3 fields.
//!
//! A placeholder may give a fallback for a contact without the field: `{{first_name|there}}`.
//! A template is checked when a step is added, so an unknown field or an unclosed
//! placeholder is refused then, never discovered at send time.

use crate::contact_fields::TextField;
use strum::IntoEnumIterator;

/// A placeholder's field: a contact text field or the contact's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Text(TextField),
    PhoneNumber,
}

impl Field {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "phone_number" => Some(Field::PhoneNumber),
            _ => name.parse().ok().map(Field::Text),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Placeholder { field: Field, fallback: &'a str },
}

/// Why a template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "unknown placeholder {{{{{0}}}}}: a template may use phone_number and the contact's text fields ({1})"
    )]
    UnknownField(String, String),
    #[error("a placeholder opened at character {0} is not closed with }}}}")]
    Unclosed(usize),
    #[error("a template must not be blank")]
    Blank,
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Template<'a> {
    /// Checks `source`: every placeholder is closed and names a known field.
    pub fn parse(source: &'a str) -> Result<Self, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Blank);
        }
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(&rest[..open]));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                let at = source.len() - rest.len() + open;
                return Err(TemplateError::Unclosed(source[..at].chars().count()));
            };
            let inner = &after[..close];
            let (name, fallback) = inner.split_once('|').unwrap_or((inner, ""));
            let name = name.trim();
            let field = Field::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = TextField::iter().map(TextField::as_str).collect();
                TemplateError::UnknownField(name.to_owned(), known.join(", "))
            })?;
            parts.push(Part::Placeholder {
                field,
                fallback: fallback.trim(),
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        Ok(Self { parts })
    }

    /// The text for a contact whose field values `value` gives (`None` or blank: the
    /// placeholder's fallback).
    pub fn render(&self, mut value: impl FnMut(Field) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder { field, fallback } => match value(*field) {
                    Some(v) if !v.trim().is_empty() => out.push_str(v.trim()),
                    _ => out.push_str(fallback),
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(field: Field) -> Option<String> {
        match field {
            Field::Text(TextField::FirstName) => Some("Ada".into()),
            Field::Text(TextField::City) => Some("  ".into()),
            Field::PhoneNumber => Some("+14155550123".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders_are_replaced_by_the_contacts_values_or_their_fallbacks() {
        let t = Template::parse(
            "Hi {{ first_name }}, from {{city|your town}}{{last_name}}! {{phone_number}}",
        )
        .expect("valid");
        assert_eq!(t.render(values), "Hi Ada, from your town! +14155550123");
    }

    #[test]
    fn text_without_placeholders_is_kept_as_it_is() {
        let t = Template::parse("Thanks — we'll call you { soon }.").expect("valid");
        assert_eq!(t.render(values), "Thanks — we'll call you { soon }.");
    }

    #[test]
    fn an_unknown_placeholder_is_refused_naming_it() {
        let err = Template::parse("Hi {{firstname}}").expect_err("unknown");
        assert!(matches!(&err, TemplateError::UnknownField(n, _) if n == "firstname"));
        assert!(err.to_string().contains("{{firstname}}"), "{err}");
        assert!(err.to_string().contains("first_name"), "{err}");
    }

    #[test]
    fn an_unclosed_placeholder_and_a_blank_template_are_refused() {
        assert_eq!(
            Template::parse("Hé {{first_name"),
            Err(TemplateError::Unclosed(3))
        );
        assert_eq!(Template::parse("  "), Err(TemplateError::Blank));
    }
}
