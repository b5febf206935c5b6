//! Operator operations on what sequences send with (§10): a line's sending number, a
//! sequence's line and its ordered message steps.

use super::{AdminError, Result, find_account};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};
use serde::Serialize;
use shared::entities::message::{self, MessageStatus};
use shared::entities::sequence_enrollment::{self, EnrollmentStatus};
use shared::entities::{line, sequence, sequence_step};
use shared::phone::{PhoneNumber, Region};
use shared::template::Template;
use std::time::Duration;

/// A line with its sending number.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub number: Option<String>,
}

impl From<line::Model> for Line {
    fn from(m: line::Model) -> Self {
        Self {
            id: m.id,
            account_id: m.account_id,
            name: m.name,
            number: m.number,
        }
    }
}

async fn find_line(db: &impl ConnectionTrait, id: i64) -> Result<line::Model> {
    line::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("line", id))
}

async fn find_sequence(db: &impl ConnectionTrait, id: i64) -> Result<sequence::Model> {
    sequence::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("sequence", id))
}

/// Sets (or with `None` clears) the number line `id` sends from; the number is read in the
/// account's region and must not belong to another line.
pub async fn set_line_number(
    db: &impl ConnectionTrait,
    id: i64,
    number: Option<&str>,
) -> Result<Line> {
    let row = find_line(db, id).await?;
    let account = find_account(db, row.account_id).await?;
    let number = match number {
        Some(n) => {
            let region = Region::parse(&account.default_region).unwrap_or_default();
            let parsed = PhoneNumber::parse(n, region)
                .map_err(|e| AdminError::Invalid(format!("number {n:?}: {e}")))?;
            Some(parsed.as_str().to_owned())
        }
        None => None,
    };
    let mut active: line::ActiveModel = row.into();
    active.number = Set(number.clone());
    active.updated_at = Set(Utc::now());
    let updated = active.update(db).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AdminError::Invalid(format!(
            "number {} already belongs to another line",
            number.as_deref().unwrap_or_default()
        )),
        _ => AdminError::Db(e),
    })?;
    Ok(updated.into())
}

/// A sequence with its line and steps.
#[derive(Debug, Clone, Serialize)]
pub struct Sequence {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub line_id: Option<i64>,
    pub steps: Vec<Step>,
    /// Contacts enrolled now.
    pub active_enrollments: u64,
    /// Steps waiting to be sent.
    pub scheduled_messages: u64,
}

/// One message step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: i64,
    pub sequence_id: i64,
    pub position: i32,
    pub kind: String,
    pub body: String,
    pub delay_seconds: i64,
}

impl From<sequence_step::Model> for Step {
    fn from(m: sequence_step::Model) -> Self {
        Self {
            id: m.id,
            sequence_id: m.sequence_id,
            position: m.position,
            kind: m.kind,
            body: m.body,
            delay_seconds: m.delay_seconds,
        }
    }
}

/// Sets (or with `None` clears) the line sequence `id` sends from when a contact has none.
pub async fn set_sequence_line(
    db: &impl ConnectionTrait,
    id: i64,
    line_id: Option<i64>,
) -> Result<Sequence> {
    let row = find_sequence(db, id).await?;
    if let Some(l) = line_id {
        let line = find_line(db, l).await?;
        if line.account_id != row.account_id {
            return Err(AdminError::NotFound("line", l));
        }
    }
    let mut active: sequence::ActiveModel = row.into();
    active.line_id = Set(line_id);
    active.updated_at = Set(Utc::now());
    active.update(db).await?;
    show_sequence(db, id).await
}

/// The steps of sequence `id`, in order.
pub async fn steps(db: &impl ConnectionTrait, id: i64) -> Result<Vec<Step>> {
    find_sequence(db, id).await?;
    Ok(sequence_step::Entity::find()
        .filter(sequence_step::Column::SequenceId.eq(id))
        .order_by_asc(sequence_step::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(Step::from)
        .collect())
}

/// Sequence `id` with its steps and how many contacts and messages are under way.
pub async fn show_sequence(db: &impl ConnectionTrait, id: i64) -> Result<Sequence> {
    let row = find_sequence(db, id).await?;
    let steps = steps(db, id).await?;
    let active_enrollments = sequence_enrollment::Entity::find()
        .filter(sequence_enrollment::Column::SequenceId.eq(id))
        .filter(sequence_enrollment::Column::Status.eq(EnrollmentStatus::Active))
        .count(db)
        .await?;
    let step_ids: Vec<i64> = steps.iter().map(|s| s.id).collect();
    let scheduled_messages = message::Entity::find()
        .filter(message::Column::StepId.is_in(step_ids))
        .filter(message::Column::Status.eq(MessageStatus::Scheduled))
        .count(db)
        .await?;
    Ok(Sequence {
        id: row.id,
        account_id: row.account_id,
        name: row.name,
        line_id: row.line_id,
        steps,
        active_enrollments,
        scheduled_messages,
    })
}

/// Appends an SMS step to sequence `id`, sent `delay` after the previous step (the first:
/// after enrollment). The template is checked now: an unknown placeholder is refused.
pub async fn add_step(
    db: &impl ConnectionTrait,
    id: i64,
    body: &str,
    delay: Duration,
) -> Result<Step> {
    let row = find_sequence(db, id).await?;
    Template::parse(body).map_err(|e| AdminError::Invalid(format!("--sms: {e}")))?;
    if body.chars().count() > 1600 {
        return Err(AdminError::Invalid(
            "--sms: a message is at most 1,600 characters".into(),
        ));
    }
    let delay_seconds = i64::try_from(delay.as_secs())
        .map_err(|_| AdminError::Invalid("--delay is too long".into()))?;
    let last: Option<i32> = sequence_step::Entity::find()
        .select_only()
        .column_as(sequence_step::Column::Position.max(), "max")
        .filter(sequence_step::Column::SequenceId.eq(id))
        .into_tuple::<Option<i32>>()
        .one(db)
        .await?
        .flatten();
    let step = sequence_step::ActiveModel {
        account_id: Set(row.account_id),
        sequence_id: Set(id),
        position: Set(last.unwrap_or(0) + 1),
        kind: Set("sms".into()),
        body: Set(body.to_owned()),
        delay_seconds: Set(delay_seconds),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(step.into())
}

/// Removes step `id`; its messages not yet sent are cancelled when they come due.
pub async fn remove_step(db: &impl ConnectionTrait, id: i64) -> Result<Step> {
    let row = sequence_step::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("step", id))?;
    sequence_step::Entity::delete_by_id(id).exec(db).await?;
    Ok(row.into())
}
