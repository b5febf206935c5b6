//! The read API (§5): `GET /api/v1/intakes/{id}`, `GET /api/v1/contacts` and
//! `GET /api/v1/contacts/{id}`, token-authenticated and scoped to the token's account.
//!
//! The token comes as `Authorization: Bearer` or `?api_token=`; failed authentications count
//! against the client address like the intake's. Reads have their own per-token limit
//! (`rate_limit.read_per_minute`), so a client polling statuses never uses up its intake
//! budget. Another account's id answers exactly like a missing one: 404.

use super::model::{self, ContactPage, ContactQuery, ContactView, IntakeView};
use crate::admission::limits::Decision;
use crate::admission::token::{Principal, bearer_token};
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::authenticate;
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use shared::intake::QueuedIntake;
use shared::payload::{FieldErrors, TOKEN_FIELD};
use std::net::SocketAddr;
use utoipa::IntoParams;
use uuid::Uuid;

/// Seconds a client should wait before retrying a read that found a dependency down.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// What a read request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read<'a> {
    Intake(&'a str),
    Contacts,
    Contact(&'a str),
    Messages(&'a str),
}

/// Every way a read is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// 401 or 429: answered exactly as the intake endpoint answers them.
    #[error(transparent)]
    Refused(ApiError),
    #[error("invalid filters")]
    Invalid(FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
}

impl From<ApiError> for ReadError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unavailable(what) => Self::Unavailable(what),
            other => Self::Refused(other),
        }
    }
}

impl ReadError {
    pub fn into_response(self) -> Response<Body> {
        match self {
            Self::Refused(error) => error.into_response(),
            Self::Invalid(errors) => ApiError::Invalid(errors).into_response(),
            Self::NotFound => respond::not_found(),
            Self::Unavailable(_) => {
                let mut response = respond::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is unavailable right now. Retry later.",
                );
                respond::set_number(
                    response.headers_mut(),
                    "retry-after",
                    UNAVAILABLE_RETRY_AFTER_SECS,
                );
                response
            }
        }
    }
}

/// Filters of `GET /api/v1/contacts`. Filters combine with AND.
#[expect(
    dead_code,
    reason = "described in the OpenAPI document only: the query parser reads ContactQuery"
)]
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactFilters {
    /// Any format; matches the primary and the other numbers.
    #[param(example = "(818) 123-4567")]
    pub phone_number: Option<String>,
    /// Case-insensitive.
    pub email: Option<String>,
    #[param(minimum = 1)]
    pub tag_id: Option<i64>,
    pub lead_source: Option<String>,
    pub source: Option<String>,
    #[param(minimum = 1)]
    pub line_id: Option<i64>,
    /// The owner.
    #[param(minimum = 1)]
    pub user_id: Option<i64>,
    /// Created at or after: RFC 3339 date-time or `YYYY-MM-DD`.
    #[param(example = "2026-01-01")]
    pub created_after: Option<String>,
    /// Created before: RFC 3339 date-time or `YYYY-MM-DD`.
    #[param(example = "2026-02-01T00:00:00Z")]
    pub created_before: Option<String>,
    /// Page size, 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/v1/intakes/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/intakes/{id}",
    tag = "read",
    operation_id = "get_intake",
    summary = "Where an intake stands",
    description = "The worker's record of the intake, or `queued` until the worker has seen it: an accepted intake is never a 404.",
    params(("id" = uuid::Uuid, Path, description = "The `intake_id` of the 202.")),
    responses(
        (status = 200, description = "The intake.", body = IntakeView,
            example = json!({"intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status": "created", "contact_id": 42, "actions": [{"type": "contact_created", "contact_id": 42}, {"type": "ring_group_distributed", "ring_group_id": 3, "user_id": 9}, {"type": "note_added"}], "warnings": [{"field": "tag_id", "message": "Tag 77 not found in this account; tag not added."}], "attempts": 1, "last_error": null, "received_at": "2026-11-02T10:15:00Z", "processed_at": "2026-11-02T10:15:00.120Z"})),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 404, description = "No such intake in the token's account.", body = Message, example = json!({"message": "Not found."})),
        (status = 405, description = "Any method but GET.", body = Message, headers(("Allow" = String))),
        (status = 429, description = "The token's read limit (default 6000 per rolling 60 s).", body = TooMany, headers(("Retry-After" = u64)), example = json!({"message": "Too Many Attempts.", "retry_after_ms": 997})),
        (status = 503, description = "A dependency is unreachable: retry.", body = Message, headers(("Retry-After" = u64)), example = json!({"message": "The service is unavailable right now. Retry later."})),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn get_intake(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    id: &str,
) -> Response<Body> {
    answer(state, &req, peer, Read::Intake(id)).await
}

/// `GET /api/v1/contacts`.
#[utoipa::path(
    get,
    path = "/api/v1/contacts",
    tag = "read",
    operation_id = "list_contacts",
    summary = "Search the account's contacts",
    description = "Contacts in id order, a page at a time. Pages are stable under inserts: follow `next_cursor` until it is null and every contact that existed is seen exactly once.",
    params(ContactFilters),
    responses(
        (status = 200, description = "One page.", body = ContactPage),
        (status = 400, description = "Bad filters, every one reported.", body = Invalid,
            example = json!({"message": "The given data was invalid.", "errors": {"limit": ["The limit must be an integer between 1 and 100."]}})),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 405, description = "Any method but GET.", body = Message, headers(("Allow" = String))),
        (status = 429, description = "The token's read limit.", body = TooMany, headers(("Retry-After" = u64))),
        (status = 503, description = "The database is unreachable: retry.", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn list_contacts(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    answer(state, &req, peer, Read::Contacts).await
}

/// `GET /api/v1/contacts/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}",
    tag = "read",
    operation_id = "get_contact",
    summary = "One contact",
    params(("id" = i64, Path, description = "The contact id.")),
    responses(
        (status = 200, description = "The contact.", body = ContactView),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 404, description = "No such contact in the token's account.", body = Message, example = json!({"message": "Not found."})),
        (status = 405, description = "Any method but GET.", body = Message, headers(("Allow" = String))),
        (status = 429, description = "The token's read limit.", body = TooMany, headers(("Retry-After" = u64))),
        (status = 503, description = "The database is unreachable: retry.", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn get_contact(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    id: &str,
) -> Response<Body> {
    answer(state, &req, peer, Read::Contact(id)).await
}

/// `GET /api/v1/contacts/{id}/messages`.
#[utoipa::path(
    get,
    path = "/api/v1/contacts/{id}/messages",
    tag = "read",
    operation_id = "list_contact_messages",
    summary = "A contact's messages",
    description = "Inbound and outbound messages of the contact, newest first: sequence steps (scheduled, sent, failed, blocked by the contact policy, cancelled) and what the contact sent. Follow `next_cursor` for older ones.",
    params(
        ("id" = i64, Path, description = "The contact id."),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 100 (default 25).", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of messages.", body = crate::read::messages::MessagePage),
        (status = 400, description = "A bad `limit` or `cursor`.", body = Invalid),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 404, description = "No such contact in the token's account.", body = Message, example = json!({"message": "Not found."})),
        (status = 405, description = "Any method but GET.", body = Message, headers(("Allow" = String))),
        (status = 429, description = "The token's read limit.", body = TooMany, headers(("Retry-After" = u64))),
        (status = 503, description = "The database is unreachable: retry.", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn list_messages(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    id: &str,
) -> Response<Body> {
    answer(state, &req, peer, Read::Messages(id)).await
}

/// Answers one read request (its method already checked by the router).
async fn answer(
    state: &AppState,
    req: &Request<Incoming>,
    peer: SocketAddr,
    read: Read<'_>,
) -> Response<Body> {
    serve(state, req, peer, read)
        .await
        .unwrap_or_else(ReadError::into_response)
}

async fn serve(
    state: &AppState,
    req: &Request<Incoming>,
    peer: SocketAddr,
    read: Read<'_>,
) -> Result<Response<Body>, ReadError> {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let token = pairs
        .iter()
        .rev()
        .find(|(key, value)| key == TOKEN_FIELD && !value.trim().is_empty())
        .map(|(_, value)| value.trim().to_owned())
        .or_else(|| bearer_token(req.headers()));
    let principal = authenticate(state, token, req.headers(), peer).await?;
    let rate = count_read(state, &principal).await?;
    // Every answer from here on carries the read limit's headers.
    let found = find(state, &principal, read, &pairs).await;
    Ok(respond::with_rate_limit(
        found.unwrap_or_else(ReadError::into_response),
        rate.as_ref(),
    ))
}

/// What `read` asks for in the principal's account.
async fn find(
    state: &AppState,
    principal: &Principal,
    read: Read<'_>,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ReadError> {
    let account_id = principal.account_id;
    match read {
        Read::Intake(id) => {
            let id = Uuid::parse_str(id).map_err(|_| ReadError::NotFound)?;
            intake(state, account_id, id).await.map(|view| ok(&view))
        }
        Read::Contacts => {
            let query = ContactQuery::parse(
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                principal.region,
            )
            .map_err(ReadError::Invalid)?;
            let page: ContactPage = model::contacts(&state.db, account_id, &query)
                .await
                .map_err(database_down)?;
            Ok(ok(&page))
        }
        Read::Contact(id) => {
            let id = id
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or(ReadError::NotFound)?;
            let contact: ContactView = model::contact(&state.db, account_id, id)
                .await
                .map_err(database_down)?
                .ok_or(ReadError::NotFound)?;
            Ok(ok(&contact))
        }
        Read::Messages(id) => {
            let page = crate::read::messages::Page::parse(
                pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(ReadError::Invalid)?;
            let id = id
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or(ReadError::NotFound)?;
            let found = crate::read::messages::messages(&state.db, account_id, id, &page)
                .await
                .map_err(database_down)?
                .ok_or(ReadError::NotFound)?;
            Ok(ok(&found))
        }
    }
}

/// Counts a request against the token's read limit: its decision, or the refusal once the
/// limit is used up (no decision while Redis is unavailable and the limit fails open).
pub(crate) async fn count_read(
    state: &AppState,
    principal: &Principal,
) -> Result<Option<Decision>, ReadError> {
    state
        .admission
        .count_read(principal)
        .await
        .map_err(|refusal| ApiError::from(refusal).into())
}

/// The worker's record of an intake, else the receiver's `queued` record: an accepted
/// intake is never a 404, even before the worker has seen it.
async fn intake(state: &AppState, account_id: i64, id: Uuid) -> Result<IntakeView, ReadError> {
    let stored = model::intake(&state.db, account_id, id).await;
    if let Ok(Some(view)) = stored {
        return Ok(view);
    }
    let admission = &state.admission;
    match admission.records.queued(&admission.redis, id).await {
        Ok(Some(record)) if record.account_id == account_id => Ok(queued_view(record)),
        Ok(_) => match stored {
            Ok(_) => Err(ReadError::NotFound),
            Err(error) => Err(database_down(error)),
        },
        Err(_) => Err(ReadError::Unavailable("redis")),
    }
}

fn queued_view(record: QueuedIntake) -> IntakeView {
    IntakeView {
        intake_id: record.intake_id,
        status: record.status,
        contact_id: None,
        actions: Vec::new(),
        warnings: Vec::new(),
        attempts: 0,
        last_error: None,
        received_at: record.received_at,
        processed_at: None,
    }
}

fn database_down(error: sea_orm::DbErr) -> ReadError {
    tracing::warn!(%error, "Read failed: database unavailable");
    ReadError::Unavailable("database")
}

fn ok(body: &impl serde::Serialize) -> Response<Body> {
    respond::json(StatusCode::OK, body)
}
