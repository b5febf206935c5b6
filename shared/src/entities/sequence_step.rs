use sea_orm::entity::prelude::*;

/// One step of a sequence (§10): an SMS sent `delay_seconds` after the previous step, or
/// after enrollment for the first.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sequence_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub sequence_id: i64,
    /// 1, 2, … in sending order; unique in the sequence.
    pub position: i32,
    pub kind: String,
    /// The template, checked when the step is added (see [`crate::template`]).
    pub body: String,
    pub delay_seconds: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
