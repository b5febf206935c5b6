//! `POST /api/v1/webhook/forms` (§3): authenticate, rate limit, parse, publish, answer.
//!
//! The order is what a client can rely on: method and media type are checked first, then
//! the body is read (size and time bounded); the token decides 401 before anything about
//! the lead is revealed; an authenticated request counts against its token's limit whether
//! or not the lead is valid; only then is the lead parsed, and a 202 is sent only after
//! the broker confirmed the message.

use crate::admission::Admitted;
use crate::admission::intake_records::{Claim, ClaimedKey, IntakeRecords};
use crate::admission::limits::Decision;
use crate::admission::limits::KeyUse;
use crate::admission::token::Principal;
use crate::infra::prometheus;
use crate::infra::waiters::{Answer, Waiter};
use crate::sources::schema::IntakeRequest;
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::{LeadRequest, authenticate, idempotency_key, parse_lead, read_lead};
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode, header};
use shared::intake::{IntakeMessage, IntakeStatus, MESSAGE_VERSION, QueuedIntake};
use shared::lead::Lead;
use shared::payload::FieldErrors;
use std::net::SocketAddr;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/webhook/forms";

/// Answers one request to [`PATH`].
#[utoipa::path(
    post,
    path = PATH,
    tag = "intake",
    operation_id = "intake_lead",
    summary = "Submit a lead",
    description = "Queues a lead for the worker, which creates or updates a contact of the token's account. Fields may also come in the query string; the body wins where both have a field. A 202 is sent only after the broker confirmed the message.\n\nWith `Prefer: wait=N` (1 to 10 seconds; larger values are clamped to 10, malformed ones ignored) the answer waits for the worker's outcome: 201 for a new contact, 200 for an updated one, 202 with the status for a merge, a duplicate or a dead letter, and the plain 202 when N elapses. Such answers carry `Preference-Applied: wait=N`.\n\nThe same `Idempotency-Key` with the same token within 24 h answers the first request's 202 again (`Idempotent-Replayed: true`) without queueing a second message.",
    params(
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N seconds (at most 10) for the outcome.", example = "wait=5"),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; retries with the same key are not queued twice.", example = "form-4711"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, continued in the worker's logs."),
    ),
    request_body(
        description = "The lead. Other content types get 415; bodies over the limit (default 64 KiB) get 413.",
        content(
            (IntakeRequest = "application/json"),
            (IntakeRequest = "application/x-www-form-urlencoded", example = json!("api_token=…&phone_number=8181234567&first_name=Ada&other_phone_numbers[0][label]=work&other_phone_numbers[0][phone_number]=8187405020")),
        ),
    ),
    responses(
        (status = 202, description = "Queued (safely in the broker). In synchronous mode also: merged, duplicate, dead-lettered, or no outcome within the wait.", body = Accepted,
            headers(("Location" = String, description = "The intake's status URL."), ("Preference-Applied" = String, description = "`wait=N` when synchronous mode was used.")),
            examples(
                ("Queued" = (summary = "Queued", value = json!({"message": "Lead accepted.", "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"}))),
                ("Duplicate" = (summary = "Synchronous mode: nothing new", value = json!({"message": "Lead accepted.", "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status": "duplicate", "contact_id": 42, "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"}))),
            )),
        (status = 201, description = "Synchronous mode: a new contact was created.", body = Finished,
            headers(("Location" = String), ("Preference-Applied" = String)),
            example = json!({"message": "Contact created.", "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status": "created", "contact_id": 42, "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"})),
        (status = 200, description = "Synchronous mode: an existing contact was updated (`force_update`).", body = Finished,
            headers(("Location" = String), ("Preference-Applied" = String)),
            example = json!({"message": "Contact updated.", "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status": "updated", "contact_id": 42, "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"})),
        (status = 400, description = "Every failing field at once (malformed JSON under `body`).", body = Invalid,
            example = json!({"message": "The given data was invalid.", "errors": {"phone_number": ["The phone number field is required."], "email": ["The email must be a valid email address."]}})),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message,
            example = json!({"message": "Unauthenticated."})),
        (status = 405, description = "Any method but POST.", body = Message,
            headers(("Allow" = String, description = "`POST`")),
            example = json!({"message": "The GET method is not supported for this route. Supported methods: POST."})),
        (status = 408, description = "The body took too long to arrive.", body = Message,
            example = json!({"message": "The request body took too long to arrive."})),
        (status = 409, description = "A request with this Idempotency-Key is still being queued.", body = Message,
            headers(("Retry-After" = u64)),
            example = json!({"message": "A request with this Idempotency-Key is still being processed."})),
        (status = 413, description = "The body is over the limit.", body = Message,
            example = json!({"message": "The request body must not be larger than 65536 bytes."})),
        (status = 415, description = "Neither JSON nor a form.", body = Message,
            example = json!({"message": "Unsupported media type: send application/json or application/x-www-form-urlencoded."})),
        (status = 429, description = "The token's intake limit (default 1000 per rolling 60 s), or too many failed authentications from this address.", body = TooMany,
            headers(("Retry-After" = u64, description = "Whole seconds, rounded up."), ("X-RateLimit-Limit" = u64), ("X-RateLimit-Remaining" = u64), ("X-RateLimit-Reset" = u64)),
            example = json!({"message": "Too Many Attempts.", "retry_after_ms": 997})),
        (status = 503, description = "The broker did not confirm in time (or Redis is down in fail-closed mode): retry.", body = Message,
            headers(("Retry-After" = u64)),
            example = json!({"message": "The lead could not be queued right now. Retry later."})),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let span = tracing::info_span!(
        "intake",
        intake_id = tracing::field::Empty,
        account_id = tracing::field::Empty
    );
    accept(state, req, peer)
        .instrument(span)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn accept(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let LeadRequest {
        parts,
        mut raw,
        body_error,
        token,
        received_at,
    } = read_lead(state, req).await?;
    let principal = authenticate(state, token, &parts.headers, peer).await?;

    let idempotency_key = idempotency_key(&parts.headers)?;
    let wait = prefer_wait(&parts.headers);
    let lead = parse_lead(&mut raw, body_error, &principal);
    enqueue(
        state,
        &principal,
        Enqueue {
            lead,
            payload: raw.into_payload(),
            idempotency_key: idempotency_key.as_deref(),
            wait,
            headers: &parts.headers,
            received_at,
        },
    )
    .await
}

/// One authenticated lead on its way to the queue.
pub(crate) struct Enqueue<'a> {
    /// The parsed lead, or why it is not one (still counted against the limit).
    pub lead: Result<Lead, FieldErrors>,
    /// The fields as received, token removed, for the intake record.
    pub payload: serde_json::Value,
    pub idempotency_key: Option<&'a str>,
    /// `Prefer: wait=N`.
    pub wait: Option<u64>,
    pub headers: &'a HeaderMap,
    pub received_at: DateTime<Utc>,
}

/// Admits (rate limit, `Idempotency-Key`, queued record), then publishes one lead and
/// answers with its 202 (or the synchronous outcome): the steps every single-lead source
/// shares. A refusal before the request is counted is an error; once it is counted, every
/// answer (the lead's 400 and a 503 too) carries the decision's rate-limit headers.
pub(crate) async fn enqueue(
    state: &AppState,
    principal: &Principal,
    req: Enqueue<'_>,
) -> Result<Response<Body>, ApiError> {
    let (intake_id, claimed, rate) = match admit(state, principal, &req).await? {
        Entry::Replayed(response) => return Ok(response),
        Entry::Admitted {
            intake_id,
            claimed,
            rate,
        } => (intake_id, claimed, rate),
    };
    let answer = publish(state, principal, intake_id, claimed, req).await;
    Ok(respond::with_rate_limit(
        answer.unwrap_or_else(ApiError::into_response),
        rate.as_ref(),
    ))
}

/// What admission decided for one lead.
enum Entry {
    /// An earlier request with the same `Idempotency-Key` was answered: its answer again.
    Replayed(Response<Body>),
    /// Counted against the token's limit and admitted, or let through uncounted while Redis
    /// is unavailable (fail-open: no decision). The lead is published as `intake_id`.
    Admitted {
        intake_id: Uuid,
        claimed: Option<ClaimedKey>,
        rate: Option<Decision>,
    },
}

/// Counts the request against the token's limit, looks up its `Idempotency-Key` and, for a
/// valid lead, writes its `queued` record and claims the key, in one Redis call.
async fn admit(
    state: &AppState,
    principal: &Principal,
    req: &Enqueue<'_>,
) -> Result<Entry, ApiError> {
    let mut intake_id = Uuid::now_v7();
    // At most twice: a retry of a request whose publish got no confirm takes its intake id.
    let mut inherited = false;
    loop {
        tracing::Span::current().record("intake_id", tracing::field::display(intake_id));
        let record = req.lead.is_ok().then_some(QueuedIntake {
            intake_id,
            account_id: principal.account_id,
            status: IntakeStatus::Queued,
            received_at: req.received_at,
        });
        let admission = &state.admission;
        let claim = req.idempotency_key.map(|key| {
            admission
                .records
                .claim_for(principal.token_id, key, intake_id)
        });
        let key = claim.as_ref().map(|key| KeyUse {
            key,
            // Only an admitted valid lead claims its key.
            claim: record.is_some(),
        });
        match admission
            .admit(principal, std::slice::from_ref(&record), key)
            .await?
        {
            Admitted::Known(value) => match IntakeRecords::interpret(&value) {
                Claim::Accepted {
                    intake_id: first,
                    answered,
                } => return Ok(Entry::Replayed(replayed(first, answered))),
                Claim::Unconfirmed(earlier) if !inherited => {
                    tracing::info!(earlier_intake_id = %earlier, "Publishing again the intake of an earlier request with the same Idempotency-Key that got no confirm");
                    intake_id = earlier;
                    inherited = true;
                }
                Claim::Unconfirmed(_) | Claim::InProgress => {
                    return Err(ApiError::IdempotencyConflict);
                }
            },
            Admitted::Counted { decision, .. } => {
                return Ok(Entry::Admitted {
                    intake_id,
                    claimed: claim.filter(|_| record.is_some()),
                    rate: Some(decision),
                });
            }
            Admitted::Uncounted => {
                tracing::warn!(
                    "Redis unavailable: accepting the lead without rate limit, Idempotency-Key check or queued record"
                );
                return Ok(Entry::Admitted {
                    intake_id,
                    claimed: None,
                    rate: None,
                });
            }
        }
    }
}

/// The answer of an earlier request with the same `Idempotency-Key`, given again.
fn replayed(intake_id: Uuid, answered: Option<Answer>) -> Response<Body> {
    metrics::counter!(prometheus::IDEMPOTENT_REPLAYS).increment(1);
    tracing::info!(first_intake_id = %intake_id, "Replayed the answer of an earlier request with the same Idempotency-Key");
    let mut response = match answered {
        Some(outcome) => finished(intake_id, outcome),
        None => accepted(intake_id),
    };
    response.headers_mut().insert(
        "idempotent-replayed",
        header::HeaderValue::from_static("true"),
    );
    response
}

/// Publishes an admitted lead and answers: 400 when it is not a lead, 503 without the
/// broker's confirm, else its 202 (or, with `Prefer: wait`, the worker's outcome).
async fn publish(
    state: &AppState,
    principal: &Principal,
    intake_id: Uuid,
    claimed: Option<ClaimedKey>,
    req: Enqueue<'_>,
) -> Result<Response<Body>, ApiError> {
    let Enqueue {
        lead,
        payload,
        wait,
        headers,
        received_at,
        ..
    } = req;
    let lead = lead.map_err(ApiError::Invalid)?;

    let message = queue_message(principal, intake_id, received_at, lead, payload);
    // Listening starts before the lead can reach a worker, so no outcome goes unheard.
    let waiter = wait.map(|_| state.outcomes.register(intake_id));
    let traceparent = traceparent(headers);
    if let Err(error) = state.publisher.publish(&message, &traceparent).await {
        tracing::warn!(%error, "Failed to queue a lead");
        state
            .admission
            .records
            .abandon(&state.admission.redis, intake_id, claimed.as_ref())
            .await;
        return Err(ApiError::Unavailable("broker"));
    }
    if let Some(claimed) = &claimed
        && state
            .admission
            .records
            .complete(
                &state.admission.redis,
                claimed,
                &IntakeRecords::key_value(intake_id, None),
            )
            .await
            .is_err()
    {
        tracing::warn!("Lead queued, but its Idempotency-Key could not be completed in Redis");
    }
    metrics::counter!(prometheus::LEADS_ACCEPTED).increment(1);
    tracing::info!(%traceparent, "Lead accepted");
    let (Some(wait), Some(waiter)) = (wait, waiter) else {
        return Ok(accepted(intake_id));
    };
    let (response, outcome) =
        synchronous(state, principal.account_id, intake_id, wait, waiter).await;
    // A retry with the same key gets this answer, not the 202 that preceded it.
    if let (Some(claimed), Some(outcome)) = (&claimed, outcome)
        && state
            .admission
            .records
            .complete(
                &state.admission.redis,
                claimed,
                &IntakeRecords::key_value(intake_id, Some(outcome)),
            )
            .await
            .is_err()
    {
        tracing::warn!("Could not store the synchronous answer for its Idempotency-Key");
    }
    Ok(response)
}

/// The queue message of an accepted lead.
pub(crate) fn queue_message(
    principal: &Principal,
    intake_id: Uuid,
    received_at: DateTime<Utc>,
    lead: Lead,
    payload: serde_json::Value,
) -> IntakeMessage {
    IntakeMessage {
        version: MESSAGE_VERSION,
        intake_id,
        account_id: principal.account_id,
        user_id: principal.user_id,
        token_id: principal.token_id,
        received_at,
        lead,
        payload: payload.into(),
    }
}

/// Longest synchronous wait a client may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 10;

/// The wait a `Prefer: wait=N` header asks for (RFC 7240), clamped to [`MAX_WAIT_SECS`];
/// `None` without one, or when it is malformed or zero (the preference is then ignored,
/// as preferences may be).
pub fn prefer_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .find_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let value = value.trim().trim_matches('"');
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Digits only: anything too large for u64 is "more than the maximum".
            let secs = value.parse::<u64>().unwrap_or(u64::MAX);
            (secs > 0).then(|| secs.min(MAX_WAIT_SECS))
        })
}

/// Waits up to `wait` seconds for the worker's outcome of a confirmed lead and answers with
/// it; without one in time, reads the intake record once, then falls back to the 202.
async fn synchronous(
    state: &AppState,
    account_id: i64,
    intake_id: Uuid,
    wait: u64,
    waiter: Waiter,
) -> (Response<Body>, Option<Answer>) {
    let outcome = match waiter.wait(Duration::from_secs(wait)).await {
        Some(outcome) => Some(outcome),
        None => match crate::read::model::intake(&state.db, account_id, intake_id).await {
            Ok(Some(view)) => Some(view.status)
                .filter(|s| s.is_outcome() || *s == IntakeStatus::DeadLettered)
                .map(|status| Answer {
                    status,
                    contact_id: view.contact_id,
                }),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "Failed to read the intake after the synchronous wait");
                None
            }
        },
    };
    let result = if outcome.is_some() {
        "outcome"
    } else {
        "timeout"
    };
    metrics::counter!(prometheus::SYNC_WAITS, "result" => result).increment(1);
    let mut response = match outcome {
        Some(outcome) => finished(intake_id, outcome),
        None => accepted(intake_id),
    };
    if let Ok(applied) = header::HeaderValue::from_str(&format!("wait={wait}")) {
        response.headers_mut().insert("preference-applied", applied);
    }
    (response, outcome)
}

/// The answer of synchronous mode once the worker has finished the lead: 201 for a new
/// contact, 200 for an updated one, 202 (with the status) for anything else.
fn finished(intake_id: Uuid, outcome: Answer) -> Response<Body> {
    let (status, message) = match outcome.status {
        IntakeStatus::Created => (StatusCode::CREATED, "Contact created."),
        IntakeStatus::Updated => (StatusCode::OK, "Contact updated."),
        _ => (StatusCode::ACCEPTED, "Lead accepted."),
    };
    let status_url = format!("/api/v1/intakes/{intake_id}");
    let mut response = respond::json(
        status,
        &Finished {
            message,
            intake_id,
            status: outcome.status.as_str(),
            contact_id: outcome.contact_id,
            status_url: status_url.clone(),
        },
    );
    if let Ok(location) = header::HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The body of a 202: the lead is safely in the queue.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(example = "Lead accepted.")]
    pub message: &'static str,
    pub intake_id: Uuid,
    /// Where the intake's status can be read (also the `Location` header).
    #[schema(example = "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e")]
    pub status_url: String,
}

/// The body of a synchronous-mode answer once the worker has finished the lead.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Finished {
    /// `Contact created.` (201), `Contact updated.` (200) or `Lead accepted.` (202).
    #[schema(example = "Contact created.")]
    pub message: &'static str,
    pub intake_id: Uuid,
    /// `created`, `updated`, `merged`, `duplicate` or `dead_lettered`.
    #[schema(example = "created")]
    pub status: &'static str,
    /// The contact the lead created or updated (null when dead-lettered).
    pub contact_id: Option<i64>,
    #[schema(example = "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e")]
    pub status_url: String,
}

/// The 202 of an intake.
fn accepted(intake_id: Uuid) -> Response<Body> {
    let status_url = format!("/api/v1/intakes/{intake_id}");
    let mut response = respond::json(
        StatusCode::ACCEPTED,
        &Accepted {
            message: "Lead accepted.",
            intake_id,
            status_url: status_url.clone(),
        },
    );
    if let Ok(location) = header::HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// W3C trace context for the message: the caller's trace continued when it sent a valid
/// `traceparent`, a new trace otherwise.
pub(crate) fn traceparent(headers: &HeaderMap) -> String {
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    let incoming = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| {
            let parts: Vec<&str> = v.split('-').collect();
            let hex =
                |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
            match parts.as_slice() {
                [version, trace_id, parent, flags]
                    if hex(version, 2)
                        && *version != "ff"
                        && hex(trace_id, 32)
                        && trace_id.bytes().any(|b| b != b'0')
                        && hex(parent, 16)
                        && hex(flags, 2) =>
                {
                    Some((trace_id.to_ascii_lowercase(), flags.to_ascii_lowercase()))
                }
                _ => None,
            }
        });
    match incoming {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span_id}-{flags}"),
        None => format!("00-{}-{span_id}-01", Uuid::new_v4().simple()),
    }
}
