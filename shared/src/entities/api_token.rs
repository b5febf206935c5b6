use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub user_id: i64,
    /// Hex SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    /// First characters of the token, so operators can tell tokens apart.
    pub token_prefix: String,
    pub label: Option<String>,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    /// Incoming field name → contract field name (see [`crate::mapping::FieldMap`]).
    pub field_map: Json,
    /// Contract fields applied to every lead that lacks them (see
    /// [`crate::mapping::DefaultActions`]).
    pub default_actions: Json,
    /// What the Google Ads lead form webhook must send as `google_key`.
    pub google_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
