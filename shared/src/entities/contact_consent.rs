use sea_orm::entity::prelude::*;

/// One channel of the consent a lead brought (§9). Never overwritten: a later lead adds
/// records, a revocation sets `revoked_at`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "contact_consents")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub contact_id: i64,
    /// `call`, `sms` or `email`.
    pub channel: String,
    pub given_at: DateTimeUtc,
    pub text: Option<String>,
    pub source_url: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub seller: Option<String>,
    pub trustedform_cert_url: Option<String>,
    pub leadid_token: Option<String>,
    /// The intake that brought it.
    pub intake_id: Option<Uuid>,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_reason: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
