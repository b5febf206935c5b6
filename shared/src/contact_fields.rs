//! The contact's text fields: [`ContactText`] holds them (flattened into the lead, the
//! receiver's read view and its OpenAPI request schema), [`TextField`] names them (a plain
//! enum: the compiler checks every match on it). The parser reads each field by its
//! [`TextKind`], and the worker writes each through [`TextField`]. Adding a text field is
//! a [`ContactText`] member, a [`TextField`] variant with the arms the compiler then asks
//! for, a member of the `contacts` entity and a migration adding its column.

use serde::{Deserialize, Serialize};
use strum::IntoEnumIterator;
use utoipa::ToSchema;

/// The plain text fields of a contact (each ≤ 255 characters, trimmed, never empty; an
/// e-mail address has a lower-cased domain, a website is an absolute http(s) URL), in the
/// order of the contract's field table (§3). Flattened into the lead, the read view and the
/// OpenAPI request schema; each member is named by a [`TextField`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ContactText {
    /// Full name; split into first and last name on the last space when those are
    /// blank, and joined from them when it is.
    #[schema(max_length = 255, example = "Ada Lovelace")]
    pub name: Option<String>,
    #[schema(max_length = 255)]
    pub first_name: Option<String>,
    #[schema(max_length = 255)]
    pub last_name: Option<String>,
    #[schema(max_length = 255)]
    pub company_name: Option<String>,
    /// A valid address; the domain is lower-cased.
    #[schema(max_length = 255, format = Email)]
    pub email: Option<String>,
    #[schema(max_length = 255)]
    pub lead_source: Option<String>,
    #[schema(max_length = 255)]
    pub source: Option<String>,
    #[schema(max_length = 255)]
    pub address: Option<String>,
    /// Derived from the number when blank (NANP numbers, where the data knows it).
    #[schema(max_length = 255)]
    pub city: Option<String>,
    /// Derived from the number when blank (two-letter code, NANP numbers).
    #[schema(max_length = 255)]
    pub state: Option<String>,
    #[schema(max_length = 255)]
    pub zipcode: Option<String>,
    /// Derived from the number when blank (ISO 3166-1 alpha-2).
    #[schema(max_length = 255)]
    pub country: Option<String>,
    /// Custom field 1.
    #[schema(max_length = 255)]
    pub csf1: Option<String>,
    /// Custom field 2.
    #[schema(max_length = 255)]
    pub csf2: Option<String>,
    /// An http(s) URL; a bare domain is given `https://`.
    #[schema(max_length = 255, example = "https://example.com")]
    pub website: Option<String>,
}

impl ContactText {
    /// The fields, each read by `read`, in the order of [`TextField`].
    pub fn read(mut read: impl FnMut(TextField) -> Option<String>) -> Self {
        let mut text = Self::default();
        for field in TextField::iter() {
            *text.get_mut(field) = read(field);
        }
        text
    }

    /// The value of `field`.
    pub fn get(&self, field: TextField) -> Option<&String> {
        match field {
            TextField::Name => self.name.as_ref(),
            TextField::FirstName => self.first_name.as_ref(),
            TextField::LastName => self.last_name.as_ref(),
            TextField::CompanyName => self.company_name.as_ref(),
            TextField::Email => self.email.as_ref(),
            TextField::LeadSource => self.lead_source.as_ref(),
            TextField::Source => self.source.as_ref(),
            TextField::Address => self.address.as_ref(),
            TextField::City => self.city.as_ref(),
            TextField::State => self.state.as_ref(),
            TextField::Zipcode => self.zipcode.as_ref(),
            TextField::Country => self.country.as_ref(),
            TextField::Csf1 => self.csf1.as_ref(),
            TextField::Csf2 => self.csf2.as_ref(),
            TextField::Website => self.website.as_ref(),
        }
    }

    /// The member of `field`, to write.
    pub fn get_mut(&mut self, field: TextField) -> &mut Option<String> {
        match field {
            TextField::Name => &mut self.name,
            TextField::FirstName => &mut self.first_name,
            TextField::LastName => &mut self.last_name,
            TextField::CompanyName => &mut self.company_name,
            TextField::Email => &mut self.email,
            TextField::LeadSource => &mut self.lead_source,
            TextField::Source => &mut self.source,
            TextField::Address => &mut self.address,
            TextField::City => &mut self.city,
            TextField::State => &mut self.state,
            TextField::Zipcode => &mut self.zipcode,
            TextField::Country => &mut self.country,
            TextField::Csf1 => &mut self.csf1,
            TextField::Csf2 => &mut self.csf2,
            TextField::Website => &mut self.website,
        }
    }

    /// Every field given, in the order of [`TextField`].
    pub fn given(&self) -> impl Iterator<Item = (TextField, &String)> {
        TextField::iter().filter_map(|f| self.get(f).map(|v| (f, v)))
    }
}

/// How a lead's value of a text field is checked (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Trimmed text of at most 255 characters.
    Text,
    /// A syntactically valid e-mail address.
    Email,
    /// An absolute http(s) URL, or a bare domain.
    Website,
}

/// A text field of a contact: its name in a payload and its column on the contact
/// (`first_name`), in the order of the contract's field table.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum TextField {
    Name,
    FirstName,
    LastName,
    CompanyName,
    Email,
    LeadSource,
    Source,
    Address,
    City,
    State,
    Zipcode,
    Country,
    Csf1,
    Csf2,
    Website,
}

impl TextField {
    /// The field's name in a payload and its column on the contact.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// How a lead's value is checked.
    pub fn kind(self) -> TextKind {
        match self {
            TextField::Email => TextKind::Email,
            TextField::Website => TextKind::Website,
            TextField::Name
            | TextField::FirstName
            | TextField::LastName
            | TextField::CompanyName
            | TextField::LeadSource
            | TextField::Source
            | TextField::Address
            | TextField::City
            | TextField::State
            | TextField::Zipcode
            | TextField::Country
            | TextField::Csf1
            | TextField::Csf2 => TextKind::Text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_found_by_its_name_and_names_are_unique() {
        for field in TextField::iter() {
            assert_eq!(field.as_str().parse(), Ok(field));
            assert_eq!(field.to_string(), field.as_str());
        }
        assert_eq!(TextField::Csf1.as_str(), "csf1");
        assert_eq!(TextField::LeadSource.as_str(), "lead_source");
        let mut names: Vec<_> = TextField::iter().map(TextField::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TextField::iter().count());
        assert!("phone_number".parse::<TextField>().is_err());
    }

    #[test]
    fn every_field_is_a_column_of_the_same_name() {
        use crate::entities::contact::{Column, Model};
        use sea_orm::IdenStatic;
        for field in TextField::iter() {
            let column = Column::from(field);
            assert_eq!(column.as_str(), field.as_str());
            assert!(column.is_updatable(), "{field} is written on update");
            let mut model = Model::default();
            model.set_text(field, "value".to_owned());
            assert_eq!(model.text(field).as_deref(), Some("value"), "{field}");
        }
    }

    /// Each field reads and writes its own member, under its own name: set alone, it is the
    /// only value the text serializes, and it reads back.
    #[test]
    fn every_field_is_a_member_of_the_same_name() {
        let members = serde_json::to_value(ContactText::default()).expect("json");
        assert_eq!(
            members.as_object().map(|m| m.len()),
            Some(TextField::iter().count()),
            "one member per field"
        );
        for field in TextField::iter() {
            let mut text = ContactText::default();
            *text.get_mut(field) = Some("value".to_owned());
            assert_eq!(text.get(field).map(String::as_str), Some("value"));
            let mut expected = members.clone();
            expected[field.as_str()] = "value".into();
            assert_eq!(
                serde_json::to_value(&text).expect("json"),
                expected,
                "{field}"
            );
        }
    }

    #[test]
    fn email_and_website_have_their_own_checks() {
        assert_eq!(TextField::Email.kind(), TextKind::Email);
        assert_eq!(TextField::Website.kind(), TextKind::Website);
        assert_eq!(TextField::Csf2.kind(), TextKind::Text);
    }
}
