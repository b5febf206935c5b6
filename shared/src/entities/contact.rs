use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contacts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    /// Primary number in E.164; also a `contact_phone_numbers` row with `is_primary`.
    pub phone_number: String,
    pub name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company_name: Option<String>,
    pub email: Option<String>,
    pub lead_source: Option<String>,
    pub source: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zipcode: Option<String>,
    pub country: Option<String>,
    pub csf1: Option<String>,
    pub csf2: Option<String>,
    pub date_of_birth: Option<Date>,
    /// IANA zone name.
    pub timezone: Option<String>,
    pub website: Option<String>,
    /// The owning user (same account), if any.
    pub owner_id: Option<i64>,
    pub line_id: Option<i64>,
    pub disposition_status_id: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
