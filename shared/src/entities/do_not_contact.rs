use sea_orm::entity::prelude::*;

/// A number of an account that must not be called (`call`), texted (`sms`) or either
/// (`all`), until `expires_at` if set (§9).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "do_not_contact")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    /// E.164.
    pub phone_number: String,
    pub channel: String,
    pub reason: Option<String>,
    /// `operator`, `import`, `stop` or `provider`.
    pub source: String,
    pub expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
