//! Operator operations on accounts, users, tokens and the things leads link to,
//! ([`sources`]) on a token's lead sources and ([`dnc`]) on an account's do-not-contact
//! list. `leadctl` is a thin command-line layer over these; tests and the bench seed data
//! through them too.

pub mod dnc;
pub mod messaging;
pub mod sources;
pub mod webhooks;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr, TransactionSession, TransactionTrait,
};
use serde::Serialize;
use shared::entities::{
    account, api_token, disposition_status, line, powerdialer_item, ring_group, ring_group_member,
    sequence, tag, user,
};
use shared::phone::Region;
use shared::policy::Channel;
use shared::token;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} {1} not found")]
    NotFound(&'static str, i64),
    #[error("{0}")]
    Invalid(String),
    #[error("Failed to access the database: {0}")]
    Db(#[from] DbErr),
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// Creates an account. `region` is the default region for numbers without a country code.
pub async fn create_account(
    db: &impl ConnectionTrait,
    name: &str,
    region: &str,
    rate_limit_per_minute: Option<i32>,
) -> Result<account::Model> {
    let name = non_blank("name", name)?;
    let region = Region::parse(region)
        .ok_or_else(|| AdminError::Invalid(format!("unknown region {region:?}")))?;
    if rate_limit_per_minute.is_some_and(|n| n <= 0) {
        return Err(AdminError::Invalid("rate limit must be positive".into()));
    }
    let now = Utc::now();
    Ok(account::ActiveModel {
        name: Set(name),
        default_region: Set(region.code()),
        rate_limit_per_minute: Set(rate_limit_per_minute),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// Sets the channels for which `account` needs a standing consent record before the
/// product reaches a contact (§9); none: consent is required for nothing.
pub async fn set_require_consent(
    db: &impl ConnectionTrait,
    id: i64,
    channels: &[Channel],
) -> Result<account::Model> {
    let mut account: account::ActiveModel = find_account(db, id).await?.into();
    // One order whatever the operator typed, each channel once.
    account.require_consent = Set(Channel::ALL
        .into_iter()
        .filter(|c| channels.contains(c))
        .map(|c| c.as_str().to_owned())
        .collect());
    account.updated_at = Set(Utc::now());
    Ok(account.update(db).await?)
}

/// `call,sms`, `sms`, `none` or an empty text, as `--require-consent` takes them.
pub fn parse_consent_channels(text: &str) -> Result<Vec<Channel>> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| {
            Channel::parse(part).ok_or_else(|| {
                AdminError::Invalid(format!(
                    "consent can be required for call and sms (or none); {:?} is not a channel",
                    part.trim()
                ))
            })
        })
        .collect()
}

pub(crate) async fn find_account(db: &impl ConnectionTrait, id: i64) -> Result<account::Model> {
    account::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("account", id))
}

async fn find_user(db: &impl ConnectionTrait, id: i64) -> Result<user::Model> {
    user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("user", id))
}

/// Creates a user of `account_id`.
pub async fn create_user(
    db: &impl ConnectionTrait,
    account_id: i64,
    name: &str,
    email: Option<&str>,
    active: bool,
    available: bool,
) -> Result<user::Model> {
    find_account(db, account_id).await?;
    let name = non_blank("name", name)?;
    let now = Utc::now();
    Ok(user::ActiveModel {
        account_id: Set(account_id),
        name: Set(name),
        email: Set(email.map(str::to_owned)),
        active: Set(active),
        available: Set(available),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// Changes a user's active and/or available flags.
pub async fn set_user(
    db: &impl ConnectionTrait,
    id: i64,
    active: Option<bool>,
    available: Option<bool>,
) -> Result<user::Model> {
    if active.is_none() && available.is_none() {
        return Err(AdminError::Invalid(
            "nothing to change: give --active/--inactive and/or --available/--unavailable".into(),
        ));
    }
    let mut user: user::ActiveModel = find_user(db, id).await?.into();
    if let Some(a) = active {
        user.active = Set(a);
    }
    if let Some(a) = available {
        user.available = Set(a);
    }
    user.updated_at = Set(Utc::now());
    Ok(user.update(db).await?)
}

/// A token as created: the stored row and the token itself, which is never shown again.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub row: api_token::Model,
    pub token: String,
}

/// Creates an API token for `user_id`.
pub async fn create_token(
    db: &impl ConnectionTrait,
    user_id: i64,
    label: Option<&str>,
) -> Result<NewToken> {
    let user = find_user(db, user_id).await?;
    let token = token::generate();
    let row = api_token::ActiveModel {
        account_id: Set(user.account_id),
        user_id: Set(user.id),
        token_hash: Set(token::hash(&token)),
        token_prefix: Set(token::display_prefix(&token)),
        label: Set(label.map(str::to_owned)),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(NewToken { row, token })
}

/// Revokes a token; revoking a revoked token keeps its first revocation time.
pub async fn revoke_token(db: &impl ConnectionTrait, id: i64) -> Result<api_token::Model> {
    let row = api_token::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(AdminError::NotFound("token", id))?;
    if row.revoked_at.is_some() {
        return Ok(row);
    }
    let mut active: api_token::ActiveModel = row.into();
    active.revoked_at = Set(Some(Utc::now()));
    Ok(active.update(db).await?)
}

/// A ring group and its members' user ids.
#[derive(Debug, Clone, Serialize)]
pub struct RingGroup {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub members: Vec<i64>,
}

/// Creates a ring group of `account_id` with `members` (users of the same account).
pub async fn create_ring_group<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    account_id: i64,
    name: &str,
    members: &[i64],
) -> Result<RingGroup> {
    find_account(db, account_id).await?;
    let name = non_blank("name", name)?;
    let txn = db.begin().await?;
    let now = Utc::now();
    let group = ring_group::ActiveModel {
        account_id: Set(account_id),
        name: Set(name.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| name_taken(e, "ring group", &name, account_id))?;
    let mut ids: Vec<i64> = Vec::new();
    for &user_id in members {
        if ids.contains(&user_id) {
            continue;
        }
        let user = find_user(&txn, user_id).await?;
        if user.account_id != account_id {
            return Err(AdminError::Invalid(format!(
                "user {user_id} is not a user of account {account_id}"
            )));
        }
        ring_group_member::ActiveModel {
            ring_group_id: Set(group.id),
            user_id: Set(user_id),
            account_id: Set(account_id),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        ids.push(user_id);
    }
    txn.commit().await?;
    Ok(RingGroup {
        id: group.id,
        account_id,
        name: group.name,
        members: ids,
    })
}

/// The account-owned named things a lead can link to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    Line,
    Tag,
    Disposition,
    Sequence,
}

impl Catalog {
    pub fn noun(&self) -> &'static str {
        match self {
            Catalog::Line => "line",
            Catalog::Tag => "tag",
            Catalog::Disposition => "disposition status",
            Catalog::Sequence => "sequence",
        }
    }
}

/// A created line, tag, disposition status or sequence.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
}

macro_rules! insert_named {
    ($module:ident, $db:expr, $account_id:expr, $name:expr) => {{
        let now = Utc::now();
        let row = $module::ActiveModel {
            account_id: Set($account_id),
            name: Set($name),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert($db)
        .await?;
        Named {
            id: row.id,
            account_id: row.account_id,
            name: row.name,
        }
    }};
}

/// Creates a line, tag, disposition status or sequence of `account_id`.
pub async fn create_named(
    db: &impl ConnectionTrait,
    kind: Catalog,
    account_id: i64,
    name: &str,
) -> Result<Named> {
    find_account(db, account_id).await?;
    let name = non_blank("name", name)?;
    let insert = async {
        Ok::<_, DbErr>(match kind {
            Catalog::Line => insert_named!(line, db, account_id, name.clone()),
            Catalog::Tag => insert_named!(tag, db, account_id, name.clone()),
            Catalog::Disposition => insert_named!(disposition_status, db, account_id, name.clone()),
            Catalog::Sequence => insert_named!(sequence, db, account_id, name.clone()),
        })
    };
    insert
        .await
        .map_err(|e| name_taken(e, kind.noun(), &name, account_id))
}

/// A unique-name violation as a clear message; any other error as is.
fn name_taken(e: DbErr, noun: &str, name: &str, account_id: i64) -> AdminError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AdminError::Invalid(format!(
            "a {noun} named {name:?} already exists in account {account_id}"
        )),
        _ => AdminError::Db(e),
    }
}

/// The queued PowerDialer entries of `user_id`, top first.
pub async fn powerdialer_list(
    db: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<powerdialer_item::Model>> {
    find_user(db, user_id).await?;
    Ok(powerdialer_item::Entity::find()
        .filter(powerdialer_item::Column::UserId.eq(user_id))
        .filter(powerdialer_item::Column::Status.eq(powerdialer_item::PowerdialerStatus::Queued))
        .order_by_asc(powerdialer_item::Column::Position)
        .order_by_asc(powerdialer_item::Column::Id)
        .all(db)
        .await?)
}

/// What `demo seed` made: enough to send a lead with every action.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSeed {
    pub account_id: i64,
    pub user_ids: Vec<i64>,
    pub ring_group_id: i64,
    pub sequence_id: i64,
    pub tag_id: i64,
    pub line_id: i64,
    pub disposition_status_id: i64,
    pub token_id: i64,
    /// Shown only this once.
    pub token: String,
}

/// The demo account's name; `demo seed` reuses an account of this name.
pub const DEMO_ACCOUNT: &str = "Demo Account";

/// Creates (or completes) the demo account and issues it a new token.
pub async fn demo_seed<C: ConnectionTrait + TransactionTrait>(db: &C) -> Result<DemoSeed> {
    let txn = db.begin().await?;
    let account = match account::Entity::find()
        .filter(account::Column::Name.eq(DEMO_ACCOUNT))
        .order_by_asc(account::Column::Id)
        .one(&txn)
        .await?
    {
        Some(a) => a,
        None => create_account(&txn, DEMO_ACCOUNT, "US", None).await?,
    };
    let mut users = user::Entity::find()
        .filter(user::Column::AccountId.eq(account.id))
        .order_by_asc(user::Column::Id)
        .all(&txn)
        .await?;
    for (name, email) in [
        ("Ada Agent", "ada@example.com"),
        ("Bo Closer", "bo@example.com"),
        ("Cy Setter", "cy@example.com"),
    ] {
        if !users.iter().any(|u| u.name == name) {
            users.push(create_user(&txn, account.id, name, Some(email), true, true).await?);
        }
    }
    let user_ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let ring_group_id = match ring_group::Entity::find()
        .filter(ring_group::Column::AccountId.eq(account.id))
        .order_by_asc(ring_group::Column::Id)
        .one(&txn)
        .await?
    {
        Some(g) => g.id,
        None => {
            create_ring_group(&txn, account.id, "Sales", &user_ids)
                .await?
                .id
        }
    };
    let mut named = Vec::new();
    for (kind, name) in [
        (Catalog::Sequence, "New lead follow-up"),
        (Catalog::Tag, "webhook"),
        (Catalog::Line, "Main line"),
        (Catalog::Disposition, "New"),
    ] {
        named.push(find_or_create_named(&txn, kind, account.id, name).await?);
    }
    let owner = user_ids
        .first()
        .copied()
        .ok_or_else(|| AdminError::Invalid("demo account has no users".into()))?;
    let token = create_token(&txn, owner, Some("demo")).await?;
    txn.commit().await?;
    Ok(DemoSeed {
        account_id: account.id,
        user_ids,
        ring_group_id,
        sequence_id: named[0],
        tag_id: named[1],
        line_id: named[2],
        disposition_status_id: named[3],
        token_id: token.row.id,
        token: token.token,
    })
}

async fn find_or_create_named(
    db: &impl ConnectionTrait,
    kind: Catalog,
    account_id: i64,
    name: &str,
) -> Result<i64> {
    macro_rules! find {
        ($module:ident) => {
            $module::Entity::find()
                .filter($module::Column::AccountId.eq(account_id))
                .filter($module::Column::Name.eq(name))
                .one(db)
                .await?
                .map(|r| r.id)
        };
    }
    let existing = match kind {
        Catalog::Line => find!(line),
        Catalog::Tag => find!(tag),
        Catalog::Disposition => find!(disposition_status),
        Catalog::Sequence => find!(sequence),
    };
    match existing {
        Some(id) => Ok(id),
        None => Ok(create_named(db, kind, account_id, name).await?.id),
    }
}

fn non_blank(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(AdminError::Invalid(format!("{field} must not be blank")));
    }
    if v.chars().count() > 255 {
        return Err(AdminError::Invalid(format!(
            "{field} must be at most 255 characters"
        )));
    }
    Ok(v.to_owned())
}
