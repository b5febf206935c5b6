//! `POST /api/v1/webhook/forms/validate` (§8): the single endpoint's input and every one of
//! its checks (token, fields, numbers, the token's mapping and defaults, and the ids the
//! lead names, looked up in the token's account), without publishing anything.
//!
//! It answers what the lead would do: create a contact, or match an existing one (by any of
//! its numbers), with the warnings the worker would record. Integrators call it before a
//! campaign goes live, so it counts against the read limit, never the intake limit.

use crate::admission::token::Principal;
use crate::read::api::{ReadError, count_read};
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::authenticate;
use crate::web::request::{LeadRequest, parse_lead, read_lead};
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use sea_orm::{DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use shared::lead::Lead;
use shared::payload::{BodyError, RawLead};
use std::net::SocketAddr;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/webhook/forms/validate";

/// The answer for a valid lead.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Validated {
    /// Always true: an invalid lead gets the 400 of the single endpoint.
    pub valid: bool,
    /// `create` a new contact, or `match` an existing one of the account.
    #[schema(example = "create")]
    pub would: &'static str,
    /// The contact a `match` would update.
    pub contact_id: Option<i64>,
    /// What the lead asks for that would be ignored or skipped; the lead is still saved.
    pub warnings: Vec<Warning>,
}

/// Something the worker would not honour.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Warning {
    #[schema(example = "ring_group_id")]
    pub field: &'static str,
    #[schema(example = "The ring group id is not one of the account's; it would be ignored.")]
    pub message: String,
}

/// Answers one request to [`PATH`].
#[utoipa::path(
    post,
    path = PATH,
    tag = "intake",
    operation_id = "validate_lead",
    summary = "Check a lead without queueing it",
    description = "Takes exactly what `POST /api/v1/webhook/forms` takes and runs every check: the token, the fields, the numbers, the token's mapping and defaults, and the ids the lead names (looked up in the token's account). Nothing is queued. Counts against the token's read limit, not the intake limit.",
    request_body(
        description = "A lead, as for the single endpoint.",
        content(
            (crate::sources::schema::IntakeRequest = "application/json"),
            (crate::sources::schema::IntakeRequest = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Valid: what the lead would do.", body = Validated,
            example = json!({"valid": true, "would": "match", "contact_id": 42, "warnings": [{"field": "ring_group_id", "message": "The ring group id is not one of the account's; it would be ignored."}]})),
        (status = 400, description = "Invalid: every failing field, as the single endpoint answers.", body = Invalid,
            example = json!({"message": "The given data was invalid.", "errors": {"phone_number": ["The phone number field is required."]}})),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 413, description = "The body is over the limit.", body = Message),
        (status = 415, description = "Neither JSON nor a form.", body = Message),
        (status = 429, description = "The token's read limit.", body = TooMany, headers(("Retry-After" = u64))),
        (status = 503, description = "A dependency is unreachable: retry.", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    check(state, req, peer)
        .await
        .unwrap_or_else(ReadError::into_response)
}

async fn check(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ReadError> {
    let LeadRequest {
        parts,
        raw,
        body_error,
        token,
        ..
    } = read_lead(state, req).await?;
    let principal = authenticate(state, token, &parts.headers, peer).await?;
    let rate = count_read(state, &principal).await?;
    // Every answer from here on carries the read limit's headers.
    let answer = judge(state, &principal, raw, body_error).await;
    Ok(respond::with_rate_limit(
        answer.unwrap_or_else(ReadError::into_response),
        rate.as_ref(),
    ))
}

/// What the lead would do: 200 with the contact it would match and the warnings the
/// worker would record, or the 400 of the single endpoint.
async fn judge(
    state: &AppState,
    principal: &Principal,
    mut raw: RawLead,
    body_error: Option<BodyError>,
) -> Result<Response<Body>, ReadError> {
    let lead = parse_lead(&mut raw, body_error, principal).map_err(ApiError::Invalid)?;

    let missing = shared::sources::missing_links(&state.db, principal.account_id, &lead.links)
        .await
        .map_err(database_down)?;
    let contact_id = matching_contact(state, principal.account_id, &lead).await?;
    let mut warnings: Vec<Warning> = missing
        .into_iter()
        .map(|field| Warning {
            field,
            message: format!(
                "The {} is not one of the account's; it would be ignored.",
                field.replace('_', " ")
            ),
        })
        .collect();
    warnings.extend(action_warnings(&lead));
    Ok(respond::json(
        StatusCode::OK,
        &Validated {
            valid: true,
            would: if contact_id.is_some() {
                "match"
            } else {
                "create"
            },
            contact_id,
            warnings,
        },
    ))
}

/// Actions the lead asks for without what they need.
fn action_warnings(lead: &Lead) -> Vec<Warning> {
    let mut out = Vec::new();
    if lead.flags.distribute_to_ring_group && lead.links.ring_group_id.is_none() {
        out.push(Warning {
            field: "distribute_to_ring_group",
            message: "Distribution needs a ring group id; it would be skipped.".into(),
        });
    }
    if lead.flags.add_to_powerdialer
        && lead.links.user_id.is_none()
        && !lead.flags.distribute_to_ring_group
    {
        out.push(Warning {
            field: "add_to_powerdialer",
            message: "A new contact without an owner is not added to a PowerDialer.".into(),
        });
    }
    out
}

#[derive(Debug, FromQueryResult)]
struct Matched {
    contact_id: i64,
}

/// The contact of the account that has any of the lead's numbers (the worker's dedupe).
async fn matching_contact(
    state: &AppState,
    account_id: i64,
    lead: &Lead,
) -> Result<Option<i64>, ReadError> {
    let numbers: Vec<String> = lead
        .all_numbers()
        .into_iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    let found = Matched::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT contact_id FROM contact_phone_numbers \
         WHERE account_id = $1 AND phone_number = ANY($2::text[]) \
         ORDER BY array_position($2::text[], phone_number::text) LIMIT 1",
        [account_id.into(), numbers.into()],
    ))
    .one(&state.db)
    .await
    .map_err(database_down)?;
    Ok(found.map(|m| m.contact_id))
}

fn database_down(error: sea_orm::DbErr) -> ReadError {
    tracing::warn!(%error, "Validation failed: database unavailable");
    ReadError::Unavailable("database")
}
