use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "lead_intakes")]
pub struct Model {
    /// The intake id the client got in the 202; also the AMQP message id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: i64,
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub status: crate::intake::IntakeStatus,
    /// The lead as received, with the API token removed.
    pub payload: Json,
    pub contact_id: Option<i64>,
    pub actions: Json,
    pub warnings: Json,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: DateTimeUtc,
    pub processed_at: Option<DateTimeUtc>,
    pub replay_count: i32,
    pub replayed_at: Option<DateTimeUtc>,
    pub replayed_by: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
