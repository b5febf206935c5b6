//! `POST /api/v1/webhook/forms/bulk` (§8): up to [`MAX_LEADS`] leads in one request, as a
//! JSON array or NDJSON, each validated and published on its own.
//!
//! The answer is 207 with one result per lead in input order: 202 with its intake id, 400
//! with its errors, or 429 with the wait after which it would fit. Each lead costs one unit
//! of the token's intake limit (valid or not, as on the single endpoint), in input order;
//! the request as a whole gets 429 only when no lead fits. One Redis call admits the whole
//! request (key lookup, limit, the `queued` records, the key's claim, see [`crate::admission`]);
//! the admitted valid leads are then published with many confirms in flight at once, and
//! an `Idempotency-Key` stores the whole 207, so a retry gets it again without a second
//! message for any lead.

use crate::admission::Admitted;
use crate::admission::intake_records::ClaimedKey;
use crate::admission::limits::{Decision, KeyUse, WINDOW};
use crate::admission::token::Principal;
use crate::infra::prometheus;
use crate::sources::single;
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::{self, Received, authenticate};
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response, StatusCode, header};
use serde_json::Value;
use shared::answer::{BulkAnswer, BulkResult};
use shared::intake::{IntakeStatus, QueuedIntake};
use shared::lead::Lead;
use shared::payload::{BodyError, FieldErrors, ParseContext, RawLead, TOKEN_FIELD};
use std::net::SocketAddr;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/webhook/forms/bulk";
/// Most leads one request may carry.
pub const MAX_LEADS: usize = 1_000;
/// Largest body, in bytes (5 MiB).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;
/// Publishes awaiting their confirm at once: enough to keep the broker busy (confirmed
/// publishing levels off between 64 and 256 in flight), few enough to bound memory.
const IN_FLIGHT: usize = 256;

/// A result of `status` for the lead at `index`.
fn result(index: usize, status: StatusCode) -> BulkResult {
    BulkResult::new(index, status.as_u16())
}

fn accepted(index: usize, intake_id: Uuid) -> BulkResult {
    BulkResult {
        intake_id: Some(intake_id),
        status_url: Some(format!("/api/v1/intakes/{intake_id}")),
        ..result(index, StatusCode::ACCEPTED)
    }
}

fn invalid(index: usize, errors: FieldErrors) -> BulkResult {
    BulkResult {
        errors: Some(errors),
        ..result(index, StatusCode::BAD_REQUEST)
    }
}

/// Answers one request to [`PATH`].
#[utoipa::path(
    post,
    path = PATH,
    tag = "intake",
    operation_id = "intake_bulk",
    summary = "Submit up to 1,000 leads",
    description = "Each lead has the fields of `POST /api/v1/webhook/forms` (the token's field mapping and default actions apply to each) and is validated and queued on its own: one bad lead never fails the others. Fields in the query string apply to every lead that lacks them.\n\nEach lead costs one unit of the token's intake limit, in input order, valid or not; leads beyond the remaining quota get a 429 result with the wait after which they would fit, and the request as a whole gets 429 only when no lead fits.\n\nAn `Idempotency-Key` covers the whole request: the same key with the same token within 24 h answers the first 207 again (`Idempotent-Replayed: true`) and queues nothing.",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable ASCII characters; a retry with the same key queues nothing twice.", example = "import-2026-11-28-part-3"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context, continued in the worker's logs."),
    ),
    request_body(
        description = "A JSON array of leads (`application/json`), or the same leads as NDJSON (`Content-Type: application/x-ndjson`, also `application/jsonl`: one lead object per line, blank lines skipped). At most 1,000 leads and 5 MiB.",
        content(
            (Vec<crate::sources::schema::IntakeRequest> = "application/json", example = json!([{"phone_number": "(818) 123-4567", "first_name": "Ada"}, {"first_name": "No Phone"}])),
        ),
    ),
    responses(
        (status = 207, description = "One result per lead, in input order.", body = BulkAnswer,
            example = json!({"accepted": 1, "rejected": 2, "results": [
                {"index": 0, "status": 202, "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"},
                {"index": 1, "status": 400, "errors": {"phone_number": ["The phone number field is required."]}},
                {"index": 2, "status": 429, "retry_after_ms": 41234}
            ]})),
        (status = 400, description = "The body is not a JSON array (or NDJSON) of at least one lead.", body = Invalid,
            example = json!({"message": "The given data was invalid.", "errors": {"body": ["The body must be a JSON array of leads."]}})),
        (status = 401, description = "Missing, unknown or revoked token.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 409, description = "A request with this Idempotency-Key is still being queued.", body = Message, headers(("Retry-After" = u64))),
        (status = 413, description = "More than 1,000 leads, or a body over 5 MiB.", body = Message,
            example = json!({"message": "A bulk request must not carry more than 1000 leads."})),
        (status = 415, description = "Neither JSON nor NDJSON.", body = Message),
        (status = 429, description = "No lead fits in the token's intake limit now.", body = TooMany,
            headers(("Retry-After" = u64), ("X-RateLimit-Limit" = u64), ("X-RateLimit-Remaining" = u64), ("X-RateLimit-Reset" = u64)),
            example = json!({"message": "Too Many Attempts.", "retry_after_ms": 997})),
        (status = 503, description = "The broker confirmed none of the leads: retry the request (its key is free again).", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = []), ("api_token" = [])),
)]
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let span = tracing::info_span!("bulk_intake", account_id = tracing::field::Empty);
    accept(state, req, peer)
        .instrument(span)
        .await
        .unwrap_or_else(ApiError::into_response)
}

/// Whether the body is NDJSON (one lead per line) rather than a JSON array.
fn is_ndjson(media_type: Option<&str>) -> Result<bool, ApiError> {
    match media_type {
        Some("application/json") => Ok(false),
        Some("application/x-ndjson" | "application/jsonl" | "application/x-jsonlines") => Ok(true),
        Some(other) if request::is_json(other) => Ok(false),
        _ => Err(ApiError::UnsupportedBulkMediaType),
    }
}

/// The leads of a body: each a JSON object's fields, or why it is not one.
fn leads_of(bytes: &[u8], ndjson: bool) -> Result<Vec<Result<RawLead, BodyError>>, ApiError> {
    let one = |value: Value| match value {
        Value::Object(fields) => Ok(RawLead::from_fields(fields)),
        _ => Err(BodyError::NotAnObject),
    };
    let leads: Vec<Result<RawLead, BodyError>> = if ndjson {
        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace));
        let mut leads = Vec::new();
        for line in lines {
            if leads.len() == MAX_LEADS {
                return Err(too_many());
            }
            leads.push(
                serde_json::from_slice::<Value>(line)
                    .map_err(|_| BodyError::MalformedJson)
                    .and_then(one),
            );
        }
        leads
    } else {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Array(items)) if items.len() > MAX_LEADS => return Err(too_many()),
            Ok(Value::Array(items)) => items.into_iter().map(one).collect(),
            Ok(_) => return Err(body_invalid("The body must be a JSON array of leads.")),
            Err(_) => return Err(body_invalid("The body must be valid JSON.")),
        }
    };
    if leads.is_empty() {
        return Err(body_invalid("The body must contain at least one lead."));
    }
    Ok(leads)
}

fn too_many() -> ApiError {
    ApiError::TooManyLeads { max: MAX_LEADS }
}

fn body_invalid(message: &str) -> ApiError {
    let mut errors = FieldErrors::default();
    errors.add("body", message);
    ApiError::Invalid(errors)
}

/// Read, admit, publish, answer.
async fn accept(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ApiError> {
    let BulkRequest {
        headers,
        received_at,
        principal,
        idempotency_key,
        leads,
    } = read(state, req, peer).await?;
    let entry = admit(
        state,
        &principal,
        &leads,
        idempotency_key.as_deref(),
        received_at,
    )
    .await?;
    let (quota, claimed, rate) = match entry {
        BulkEntry::Replayed(response) => return Ok(response),
        BulkEntry::Admitted {
            quota,
            claimed,
            rate,
        } => (quota, claimed, rate),
    };
    // Every answer from here on, the 503 too, carries the decision's rate-limit headers.
    let results = publish(state, &principal, leads, quota, &headers, received_at).await;
    let answer = answer(state, results, claimed.as_ref()).await;
    Ok(respond::with_rate_limit(
        answer.unwrap_or_else(ApiError::into_response),
        rate.as_ref(),
    ))
}

/// One lead of a bulk request, parsed: its intake id, the lead and its payload, or its
/// errors.
type Parsed = Result<(Uuid, Lead, Value), FieldErrors>;

/// A bulk request as read, authenticated and parsed.
struct BulkRequest {
    headers: HeaderMap,
    received_at: DateTime<Utc>,
    principal: Principal,
    idempotency_key: Option<String>,
    leads: Vec<Parsed>,
}

/// Reads the request, authenticates its token and parses its leads.
async fn read(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<BulkRequest, ApiError> {
    let Received {
        parts,
        format: ndjson,
        body,
        query,
        token,
        received_at,
    } = request::receive(state, req, MAX_BODY_BYTES, is_ndjson).await?;
    let principal = authenticate(state, token, &parts.headers, peer).await?;
    let idempotency_key = request::idempotency_key(&parts.headers)?;
    let leads = leads_of(&body, ndjson)?;
    drop(body);
    let leads = parse(leads, &query, &principal);
    Ok(BulkRequest {
        headers: parts.headers,
        received_at,
        principal,
        idempotency_key,
        leads,
    })
}

/// Each lead as the single endpoint parses it (the token's mapping and defaults applied),
/// its own token ignored and the query string's fields filling what it lacks.
fn parse(
    leads: Vec<Result<RawLead, BodyError>>,
    query: &RawLead,
    principal: &Principal,
) -> Vec<Parsed> {
    let ctx = ParseContext::now(principal.region);
    leads
        .into_iter()
        .map(|lead| {
            let mut raw = lead.map_err(BodyError::into_field_errors)?;
            raw.fields_mut().remove(TOKEN_FIELD);
            let mut raw = raw.with_query(query.clone());
            principal.sources.prepare(&mut raw);
            let lead = raw.parse(&ctx)?;
            Ok((Uuid::now_v7(), lead, raw.into_payload()))
        })
        .collect()
}

/// What admission decided for a bulk request.
enum BulkEntry {
    /// An earlier request with the same `Idempotency-Key` was answered: its 207 again.
    Replayed(Response<Body>),
    /// At least one lead fits in the token's limit (or Redis is unavailable and the limit
    /// fails open: all of them, no decision).
    Admitted {
        quota: Quota,
        claimed: Option<ClaimedKey>,
        rate: Option<Decision>,
    },
}

/// How many leads of a request fit in the token's limit (the first `admit`), and how long
/// each of the others would wait.
struct Quota {
    admit: usize,
    waits: Vec<Duration>,
}

/// Looks up the request's `Idempotency-Key`, counts its leads against the token's limit in
/// input order and writes the `queued` records of the admitted valid ones, in one Redis
/// call (see [`crate::admission`]).
async fn admit(
    state: &AppState,
    principal: &Principal,
    leads: &[Parsed],
    idempotency_key: Option<&str>,
    received_at: DateTime<Utc>,
) -> Result<BulkEntry, ApiError> {
    let records: Vec<Option<QueuedIntake>> = leads
        .iter()
        .map(|p| {
            p.as_ref().ok().map(|(intake_id, _, _)| QueuedIntake {
                intake_id: *intake_id,
                account_id: principal.account_id,
                status: IntakeStatus::Queued,
                received_at,
            })
        })
        .collect();
    let admission = &state.admission;
    let claim =
        idempotency_key.map(|key| admission.records.claim_for_bulk(principal.token_id, key));
    let key = claim.as_ref().map(|key| KeyUse { key, claim: true });
    match admission.admit(principal, &records, key).await? {
        Admitted::Known(value) => replay(&value).map(BulkEntry::Replayed),
        Admitted::Counted {
            decision,
            admitted,
            waits,
        } => Ok(BulkEntry::Admitted {
            quota: Quota {
                admit: admitted,
                waits,
            },
            claimed: claim,
            rate: Some(decision),
        }),
        Admitted::Uncounted => {
            tracing::warn!(
                "Redis unavailable: accepting the leads without rate limit, Idempotency-Key check or queued records"
            );
            Ok(BulkEntry::Admitted {
                quota: Quota {
                    admit: leads.len(),
                    waits: Vec::new(),
                },
                claimed: None,
                rate: None,
            })
        }
    }
}

/// Publishes the admitted valid leads with many confirms in flight at once: one result per
/// lead, in input order (429 beyond the quota, 400 invalid, 202 queued, 503 unconfirmed).
async fn publish(
    state: &AppState,
    principal: &Principal,
    leads: Vec<Parsed>,
    quota: Quota,
    headers: &HeaderMap,
    received_at: DateTime<Utc>,
) -> Vec<BulkResult> {
    let Quota { admit, waits } = quota;
    let mut results: Vec<Option<BulkResult>> = vec![None; leads.len()];
    let mut jobs = Vec::new();
    for (index, lead) in leads.into_iter().enumerate() {
        if index >= admit {
            let nth = index - admit;
            let wait = waits.get(nth).or(waits.last()).copied().unwrap_or(WINDOW);
            results[index] = Some(BulkResult {
                retry_after_ms: Some(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)),
                ..result(index, StatusCode::TOO_MANY_REQUESTS)
            });
            continue;
        }
        match lead {
            Err(errors) => results[index] = Some(invalid(index, errors)),
            Ok((intake_id, lead, payload)) => jobs.push((
                index,
                single::queue_message(principal, intake_id, received_at, lead, payload),
            )),
        }
    }

    let published: Vec<(usize, Uuid, bool)> = futures_util::stream::iter(jobs)
        .map(|(index, message)| async move {
            let traceparent = single::traceparent(headers);
            let result = state.publisher.publish(&message, &traceparent).await;
            if let Err(error) = &result {
                tracing::warn!(%error, intake_id = %message.intake_id, "Failed to queue a lead of a bulk request");
            }
            (index, message.intake_id, result.is_ok())
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    for (index, intake_id, ok) in published {
        if ok {
            results[index] = Some(accepted(index, intake_id));
        } else {
            let admission = &state.admission;
            admission
                .records
                .abandon(&admission.redis, intake_id, None)
                .await;
            results[index] = Some(BulkResult {
                message: Some("The lead could not be queued right now. Retry it later.".into()),
                ..result(index, StatusCode::SERVICE_UNAVAILABLE)
            });
        }
    }
    results.into_iter().flatten().collect()
}

/// The 207 of `results`, stored on the claimed key for a retry; 503 when the broker
/// confirmed none of the leads it was given (the key is then given back).
async fn answer(
    state: &AppState,
    results: Vec<BulkResult>,
    claimed: Option<&ClaimedKey>,
) -> Result<Response<Body>, ApiError> {
    let accepted = results.iter().filter(|r| r.status == 202).count();
    let failed = results.iter().filter(|r| r.status == 503).count();
    if accepted == 0 && failed > 0 {
        // Nothing was queued because the broker is away: the whole request is retryable,
        // and its key is given back for the retry.
        if let Some(claimed) = claimed {
            let admission = &state.admission;
            admission.records.release(&admission.redis, claimed).await;
        }
        return Err(ApiError::Unavailable("broker"));
    }
    let answer = BulkAnswer {
        accepted,
        rejected: results.len() - accepted,
        results,
    };
    metrics::counter!(prometheus::LEADS_ACCEPTED).increment(accepted as u64);
    for r in &answer.results {
        crate::infra::intake_stats::record("bulk", r.status);
    }
    tracing::info!(
        accepted,
        rejected = answer.rejected,
        "Bulk request answered"
    );
    // The leads are queued whatever happens here; plain numbers and strings always encode.
    let body = serde_json::to_string(&answer).unwrap_or_else(|error| {
        tracing::error!(%error, "Failed to encode the bulk answer");
        format!(
            r#"{{"accepted":{},"rejected":{},"results":[]}}"#,
            answer.accepted, answer.rejected
        )
    });
    if let Some(claimed) = claimed
        && state
            .admission
            .records
            .complete(&state.admission.redis, claimed, &body)
            .await
            .is_err()
    {
        tracing::warn!("Leads queued, but the Idempotency-Key could not be completed in Redis");
    }
    Ok(multi_status(body, false))
}

fn multi_status(body: String, replayed: bool) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::MULTI_STATUS;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    response
}

/// The answer to a request whose key an earlier request holds: its 207, or 409 while it
/// is still being published.
fn replay(value: &str) -> Result<Response<Body>, ApiError> {
    if value.starts_with('{') {
        metrics::counter!(prometheus::IDEMPOTENT_REPLAYS).increment(1);
        tracing::info!("Replayed the 207 of an earlier bulk request with the same Idempotency-Key");
        return Ok(multi_status(value.to_owned(), true));
    }
    Err(ApiError::IdempotencyConflict)
}
