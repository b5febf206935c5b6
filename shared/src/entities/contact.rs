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
    /// The value of the text field `field`.
    pub fn text(&self, field: TextField) -> Option<&String> {
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

    /// The text field `field`, to write.
    pub fn text_mut(&mut self, field: TextField) -> &mut Option<String> {
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
