use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "powerdialer_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    /// The user whose list holds the entry.
    pub user_id: i64,
    pub contact_id: i64,
    /// Smaller = nearer the top. Signed: a "bottom" entry takes the next value of the
    /// `powerdialer_positions` sequence, a "top" entry its negation.
    pub position: i64,
    /// At most one queued per contact in an account.
    pub status: PowerdialerStatus,
    /// Outside the contact's calling window (§9): not to be dialed before this instant.
    pub not_before: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where a PowerDialer entry stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum PowerdialerStatus {
    /// In its owner's list, waiting to be dialed.
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "dialed")]
    Dialed,
    #[sea_orm(string_value = "removed")]
    Removed,
}
