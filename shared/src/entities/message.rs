use sea_orm::entity::prelude::*;

/// A message to or from a contact (§10). An outbound step is a row `scheduled` at its due
/// time until a worker sends it, blocks it or it is cancelled.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub account_id: i64,
    pub contact_id: Option<i64>,
    pub direction: Direction,
    pub status: MessageStatus,
    pub enrollment_id: Option<i64>,
    pub step_id: Option<i64>,
    pub intake_id: Option<Uuid>,
    /// Set exactly while `scheduled`.
    pub due_at: Option<DateTimeUtc>,
    pub attempts: i32,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub body: Option<String>,
    pub provider_sid: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The contact policy's verdict when it blocked or delayed the step.
    pub policy: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum Direction {
    #[sea_orm(string_value = "outbound")]
    Outbound,
    #[sea_orm(string_value = "inbound")]
    Inbound,
}

/// Where a message stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(12))")]
pub enum MessageStatus {
    /// Waiting for its due time.
    #[sea_orm(string_value = "scheduled")]
    Scheduled,
    /// Accepted by the provider.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Refused by the provider, or out of retries.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stopped by the contact policy (do-not-contact, no consent, a cap).
    #[sea_orm(string_value = "blocked")]
    Blocked,
    /// Disenrolled or stopped before it was due.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// An inbound message.
    #[sea_orm(string_value = "received")]
    Received,
}
