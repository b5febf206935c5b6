//! Operator operations on a token's lead sources (`leadctl token map|defaults|google-key|
//! show`): its field mapping, its default actions and its Google Ads key.

use super::{AdminError, Catalog, Result};
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use serde::Serialize;
use serde_json::Value;
use shared::entities::api_token;
use shared::lead::{LINKS, LeadLinks};
use shared::mapping::{DefaultActions, FieldMap};
use shared::sources::{TEST_TAG, missing_links, test_tag};

/// Longest Google Ads key.
pub const MAX_GOOGLE_KEY_LEN: usize = 255;

/// A token as `leadctl token show` prints it (never the token or its hash).
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: i64,
    pub account_id: i64,
    pub user_id: i64,
    pub label: Option<String>,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// `[[incoming name, field], …]`.
    pub field_map: FieldMap,
    pub default_actions: DefaultActions,
    /// Whether a Google Ads key is set (the key itself is a shared secret).
    pub google_key_set: bool,
}

impl From<api_token::Model> for TokenView {
    fn from(t: api_token::Model) -> Self {
        Self {
            id: t.id,
            account_id: t.account_id,
            user_id: t.user_id,
            label: t.label,
            prefix: t.token_prefix,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            field_map: FieldMap::from_json(&t.field_map),
            default_actions: DefaultActions::from_json(&t.default_actions),
            google_key_set: t.google_key.is_some(),
        }
    }
}

async fn find_token(db: &impl ConnectionTrait, id: i64) -> Result<api_token::Model> {
    api_token::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("token", id))
}

/// The token `id` with its sources.
pub async fn show_token(db: &impl ConnectionTrait, id: i64) -> Result<TokenView> {
    Ok(find_token(db, id).await?.into())
}

/// Replaces the token's field mapping (an empty one maps nothing).
pub async fn set_field_map(
    db: &impl ConnectionTrait,
    id: i64,
    map: &FieldMap,
) -> Result<TokenView> {
    let mut token: api_token::ActiveModel = find_token(db, id).await?.into();
    token.field_map =
        Set(serde_json::to_value(map).map_err(|e| AdminError::Invalid(e.to_string()))?);
    Ok(token.update(db).await?.into())
}

/// Replaces the token's default actions, after checking every id they name is of the
/// token's account.
pub async fn set_default_actions(
    db: &impl ConnectionTrait,
    id: i64,
    defaults: &DefaultActions,
) -> Result<TokenView> {
    let row = find_token(db, id).await?;
    let links = links_of(defaults);
    let missing = missing_links(db, row.account_id, &links).await?;
    if let Some(field) = missing.first() {
        return Err(AdminError::Invalid(format!(
            "{field} {} is not of account {}",
            defaults
                .fields()
                .get(*field)
                .cloned()
                .unwrap_or(Value::Null),
            row.account_id
        )));
    }
    let mut token: api_token::ActiveModel = row.into();
    token.default_actions =
        Set(serde_json::to_value(defaults).map_err(|e| AdminError::Invalid(e.to_string()))?);
    Ok(token.update(db).await?.into())
}

/// Sets (or with `None` clears) the key the token's Google Ads lead form sends, and makes
/// sure the account has the tag its test leads get.
pub async fn set_google_key(
    db: &impl ConnectionTrait,
    id: i64,
    key: Option<&str>,
) -> Result<TokenView> {
    let row = find_token(db, id).await?;
    let key = key.map(str::trim);
    if let Some(k) = key
        && (k.is_empty() || k.len() > MAX_GOOGLE_KEY_LEN)
    {
        return Err(AdminError::Invalid(format!(
            "the Google Ads key must be 1 to {MAX_GOOGLE_KEY_LEN} characters"
        )));
    }
    if key.is_some() && test_tag(db, row.account_id).await?.is_none() {
        super::create_named(db, Catalog::Tag, row.account_id, TEST_TAG).await?;
    }
    let mut token: api_token::ActiveModel = row.into();
    token.google_key = Set(key.map(str::to_owned));
    Ok(token.update(db).await?.into())
}

/// The ids that default actions name.
fn links_of(defaults: &DefaultActions) -> LeadLinks {
    let mut links = LeadLinks::default();
    for field in LINKS {
        *links.get_mut(field.link) = defaults.fields().get(field.name).and_then(Value::as_i64);
    }
    links
}
