//! `POST /api/v1/webhook/forms/validate` (§8): the single endpoint's input and every one of
//! its checks (token, fields, numbers, the token's mapping and defaults, and the ids the
//! lead names, looked up in the token's account), without publishing anything.
//!
//! It answers what the lead would do: create a contact, or match an existing one (by any of
//! its numbers), with the warnings the worker would record. It runs the worker's own rules
//! ([`shared::rules::plan`]) over what the worker's own statements read
//! ([`shared::snapshot`]), without locks and reserving no contact id, so its answer is the
//! worker's as of now. Integrators call it before a campaign goes live, so it counts
//! against the read limit, never the intake limit.

use crate::admission::token::Principal;
use crate::read::api::{ReadError, count_read};
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::authenticate;
use crate::web::request::{LeadRequest, parse_lead, read_lead};
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;
use shared::lead::Lead;
use shared::payload::{BodyError, RawLead};
use shared::rules::{self, Landing, Plan};
use shared::snapshot::{self, ContactView, RowLock, Wanted};
use std::net::SocketAddr;

// The warnings validate answers are the worker's own.
use shared::outcome::Warning;

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
    /// The contact policy's verdicts on what the lead would queue (§9): `reason` is null
    /// when allowed; else why, the rule that decided and `next_allowed_at`.
    #[schema(value_type = Vec<Object>)]
    pub policy: Vec<shared::policy::Verdict>,
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
            example = json!({"valid": true, "would": "match", "contact_id": 42, "warnings": [{"field": "ring_group_id", "message": "Ring group 999 not found in this account; distribution skipped."}]})),
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
    let plan = worker_plan(&state.db, principal.account_id, &lead, &state.rules)
        .await
        .map_err(database_down)?;
    Ok(respond::json(
        StatusCode::OK,
        &Validated {
            valid: true,
            would: if plan.existing { "match" } else { "create" },
            contact_id: plan.existing.then_some(plan.contact_id),
            warnings: plan.warnings,
            policy: plan.verdicts,
        },
    ))
}

/// The plan the worker would make for `lead` now: the same statements and rules, read
/// without locks and reserving no contact id (a new contact's id is 0 in the plan).
async fn worker_plan(
    db: &impl ConnectionTrait,
    account_id: i64,
    lead: &Lead,
    rules: &shared::policy::table::RuleTable,
) -> Result<Plan, DbErr> {
    let mut wanted = Wanted::default();
    wanted.add_lead(account_id, lead);
    let snap = snapshot::read(db, &wanted).await?;
    let stored = match rules::matched(&snap, account_id, lead) {
        Some(id) => snapshot::contacts(db, vec![id], RowLock::None).await?.pop(),
        None => None,
    };
    let existing = stored.is_some();
    let contact = stored.unwrap_or_else(|| {
        let now = chrono::Utc::now();
        ContactView::new(rules::blank_contact(0, account_id, &lead.phone_number, now))
    });
    let landing = Landing {
        contact: &contact,
        existing,
    };
    let now = chrono::Utc::now();
    let judge = rules::Judge {
        rules,
        now,
        received_at: now,
    };
    Ok(rules::plan(
        &snap,
        account_id,
        lead,
        landing,
        judge,
        &mut rand::rng(),
    ))
}

fn database_down(error: DbErr) -> ReadError {
    tracing::warn!(%error, "Validation failed: database unavailable");
    ReadError::Unavailable("database")
}
