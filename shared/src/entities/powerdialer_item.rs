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
    /// Smaller = nearer the top; signed so "top" can always take `min - 1`.
    pub position: i64,
    /// `queued`, `dialed` or `removed`; at most one queued per contact in an account.
    pub status: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
