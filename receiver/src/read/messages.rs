//! A contact's messages (§10): `GET /api/v1/contacts/{id}/messages`, inbound and outbound,
//! newest first, a page at a time.

use super::model::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_cursor, encode_cursor};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use shared::entities::message::{self, Direction, MessageStatus};
use shared::entities::{contact, sequence_step};
use shared::payload::FieldErrors;
use std::collections::HashMap;
use utoipa::ToSchema;

/// One message to or from the contact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MessageView {
    pub id: i64,
    pub direction: Direction,
    /// scheduled, sent, failed, blocked, cancelled (outbound), received (inbound).
    pub status: MessageStatus,
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
    /// The provider's message id.
    pub provider_sid: Option<String>,
    /// The provider's error code, or why the product did not send (`no_from`, `template`).
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The contact policy's verdict when it blocked or delayed the step.
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// The sequence step's place in its sequence (outbound steps).
    pub step: Option<i32>,
    /// When a scheduled step is due.
    pub due_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A page of a contact's messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct MessagePage {
    pub data: Vec<MessageView>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `limit` and `cursor` of a messages request.
pub(crate) struct Page {
    limit: u64,
    before: Option<i64>,
}

impl Page {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Self, FieldErrors> {
        let mut page = Page {
            limit: DEFAULT_PAGE_SIZE,
            before: None,
        };
        let mut errors = FieldErrors::default();
        for (key, value) in pairs {
            match key {
                "limit" => match value.parse::<u64>() {
                    Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => page.limit = n,
                    _ => errors.add(
                        key,
                        format!("The limit must be an integer between 1 and {MAX_PAGE_SIZE}."),
                    ),
                },
                "cursor" => match decode_cursor(value) {
                    Some(id) => page.before = Some(id),
                    None => errors.add(key, "The cursor is invalid."),
                },
                _ => {}
            }
        }
        if errors.is_empty() {
            Ok(page)
        } else {
            Err(errors)
        }
    }
}

/// The messages of contact `id` of `account_id`, newest first; `None` when the account has
/// no such contact.
pub(crate) async fn messages(
    db: &impl ConnectionTrait,
    account_id: i64,
    id: i64,
    page: &Page,
) -> Result<Option<MessagePage>, DbErr> {
    let exists = contact::Entity::find_by_id(id)
        .filter(contact::Column::AccountId.eq(account_id))
        .count(db)
        .await?
        > 0;
    if !exists {
        return Ok(None);
    }
    let mut query = message::Entity::find()
        .filter(message::Column::AccountId.eq(account_id))
        .filter(message::Column::ContactId.eq(id));
    if let Some(before) = page.before {
        query = query.filter(message::Column::Id.lt(before));
    }
    let mut rows = query
        .order_by_desc(message::Column::Id)
        .limit(page.limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > page.limit;
    rows.truncate(usize::try_from(page.limit).unwrap_or(usize::MAX));
    let step_ids: Vec<i64> = rows.iter().filter_map(|m| m.step_id).collect();
    let positions: HashMap<i64, i32> = if step_ids.is_empty() {
        HashMap::new()
    } else {
        sequence_step::Entity::find()
            .filter(sequence_step::Column::Id.is_in(step_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|s| (s.id, s.position))
            .collect()
    };
    let next_cursor = if more {
        rows.last().map(|m| encode_cursor(m.id))
    } else {
        None
    };
    let data = rows
        .into_iter()
        .map(|m| MessageView {
            id: m.id,
            direction: m.direction,
            status: m.status,
            from: m.from_number,
            to: m.to_number,
            body: m.body,
            provider_sid: m.provider_sid,
            error_code: m.error_code,
            error_message: m.error_message,
            policy: m.policy,
            step: m.step_id.and_then(|s| positions.get(&s).copied()),
            due_at: m.due_at,
            sent_at: m.sent_at,
            created_at: m.created_at,
        })
        .collect();
    Ok(Some(MessagePage { data, next_cursor }))
}
