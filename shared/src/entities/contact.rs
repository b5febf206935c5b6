//! A contact of an account: the `contacts` table. Its text columns are the members of
//! [`ContactText`](crate::contact_fields::ContactText), under the same names.

use crate::contact_fields::TextField;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Default, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    /// Primary number in E.164; also a `contact_phone_numbers` row with `is_primary`.
    pub phone_number: String,
    /// Full name; split into first and last name on the last space when those are
    /// blank, and joined from them when it is.
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    /// A valid address; the domain is lower-cased.
    pub email: Option<String>,
    pub lead_source: Option<String>,
    pub source: Option<String>,
    pub address: Option<String>,
    /// Derived from the number when blank (NANP numbers, where the data knows it).
    pub city: Option<String>,
    /// Derived from the number when blank (two-letter code, NANP numbers).
    pub state: Option<String>,
    pub zipcode: Option<String>,
    /// Derived from the number when blank (ISO 3166-1 alpha-2).
    pub country: Option<String>,
    /// Custom field 1.
    pub csf1: Option<String>,
    /// Custom field 2.
    pub csf2: Option<String>,
    /// An http(s) URL; a bare domain is given `https://`.
    pub website: Option<String>,
    pub date_of_birth: Option<Date>,
    /// IANA zone name.
    pub timezone: Option<String>,
    /// The owning user (same account), if any.
    pub owner_id: Option<i64>,
    pub line_id: Option<i64>,
    pub disposition_status_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl Model {
    /// The value of the text field `field`: its column of the same name.
    pub fn text(&self, field: TextField) -> Option<String> {
        match self.get(field.into()) {
            sea_orm::Value::String(value) => value,
            _ => None,
        }
    }

    /// Sets the text field `field`.
    pub fn set_text(&mut self, field: TextField, value: String) {
        self.set(field.into(), value.into());
    }
}

/// Each text field is the column of its name (every one an `Option<String>`, which
/// [`Model::set_text`] relies on; a test sets each).
impl From<TextField> for Column {
    fn from(field: TextField) -> Column {
        match field {
            TextField::Name => Column::Name,
            TextField::FirstName => Column::FirstName,
            TextField::LastName => Column::LastName,
            TextField::CompanyName => Column::CompanyName,
            TextField::Email => Column::Email,
            TextField::LeadSource => Column::LeadSource,
            TextField::Source => Column::Source,
            TextField::Address => Column::Address,
            TextField::City => Column::City,
            TextField::State => Column::State,
            TextField::Zipcode => Column::Zipcode,
            TextField::Country => Column::Country,
            TextField::Csf1 => Column::Csf1,
            TextField::Csf2 => Column::Csf2,
            TextField::Website => Column::Website,
        }
    }
}

impl Column {
    /// Whether a contact's update may write this column: all but the id, the account, the
    /// primary number (a contact is found by it) and the creation time.
    pub fn is_updatable(&self) -> bool {
        !matches!(
            self,
            Column::Id | Column::AccountId | Column::PhoneNumber | Column::CreatedAt
        )
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
