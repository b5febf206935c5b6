use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    /// ISO 3166-1 alpha-2 region for numbers written without a country code.
    pub default_region: String,
    /// Intake requests per rolling minute per token; `None` = the configured default.
    pub rate_limit_per_minute: Option<i32>,
    /// Channels (`call`, `sms`) that need a standing consent record (§9); default `sms`.
    pub require_consent: Vec<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
