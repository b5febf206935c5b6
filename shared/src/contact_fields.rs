//! The contact's text fields, declared once.
//!
//! [`with_contact_text_fields!`](crate::with_contact_text_fields) holds the list; every
//! type that has one member per text field is written by a macro that the list is handed
//! to: the `contacts` entity, the lead's [`LeadFields`](crate::lead::LeadFields), the
//! receiver's read view and its OpenAPI request schema. [`TextField`] names the fields (a
//! plain enum: the compiler checks every match on it). The parser reads each field by its
//! [`TextKind`], and the worker writes each through [`TextField`]. Adding a text field is
//! one entry in the list, a [`TextField`] variant and a migration adding its column.

/// Calls the macro `$then` with every text field of a contact, in the order of the
/// contract's field table (§3): its description, its OpenAPI schema attribute, its name
/// (payload key and column), its [`TextField`] variant (also the entity's column variant)
/// and its [`TextKind`].
#[macro_export]
macro_rules! with_contact_text_fields {
    ($then:ident) => {
        $then! {
            /// Full name; split into first and last name on the last space when those are
            /// blank, and joined from them when it is.
            #[schema(max_length = 255, example = "Ada Lovelace")]
            name: Name = Text,
            #[schema(max_length = 255)]
            first_name: FirstName = Text,
            #[schema(max_length = 255)]
            last_name: LastName = Text,
            #[schema(max_length = 255)]
            company_name: CompanyName = Text,
            /// A valid address; the domain is lower-cased.
            #[schema(max_length = 255, format = Email)]
            email: Email = Email,
            #[schema(max_length = 255)]
            lead_source: LeadSource = Text,
            #[schema(max_length = 255)]
            source: Source = Text,
            #[schema(max_length = 255)]
            address: Address = Text,
            /// Derived from the number when blank (NANP numbers, where the data knows it).
            #[schema(max_length = 255)]
            city: City = Text,
            /// Derived from the number when blank (two-letter code, NANP numbers).
            #[schema(max_length = 255)]
            state: State = Text,
            #[schema(max_length = 255)]
            zipcode: Zipcode = Text,
            /// Derived from the number when blank (ISO 3166-1 alpha-2).
            #[schema(max_length = 255)]
            country: Country = Text,
            /// Custom field 1.
            #[schema(max_length = 255)]
            csf1: Csf1 = Text,
            /// Custom field 2.
            #[schema(max_length = 255)]
            csf2: Csf2 = Text,
            /// An http(s) URL; a bare domain is given `https://`.
            #[schema(max_length = 255, example = "https://example.com")]
            website: Website = Website,
        }
    };
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
    use strum::IntoEnumIterator;

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
        use crate::entities::contact::Column;
        use sea_orm::IdenStatic;
        for field in TextField::iter() {
            let column = Column::from(field);
            assert_eq!(column.as_str(), field.as_str());
            assert!(column.is_updatable(), "{field} is written on update");
        }
    }

    #[test]
    fn email_and_website_have_their_own_checks() {
        assert_eq!(TextField::Email.kind(), TextKind::Email);
        assert_eq!(TextField::Website.kind(), TextKind::Website);
        assert_eq!(TextField::Csf2.kind(), TextKind::Text);
    }
}
