//! `POST /api/v1/webhook/google-ads?api_token=…` (§8): the Google Ads lead form webhook.
//!
//! Google posts its own JSON (`lead_id`, `user_column_data: [{column_id, column_name,
//! string_value}]`, `google_key`, `is_test`, campaign and click ids). Standard column ids
//! map onto the contract's fields ([`COLUMNS`]); any other question goes through the
//! token's field mapping, else into the note as a `question: answer` line. `google_key`
//! must equal the key set for the token (`leadctl token google-key`), else 401. `lead_id`
//! is the idempotency key, since Google retries a delivery it did not see answered. A test
//! lead (`is_test`, what the form editor's "Send test data" sends) gets the account's
//! `test` tag and none of the actions that reach people: no distribution, PowerDialer or
//! sequence. Success answers 200 (the platform wants a 200) with the usual 202 body.

use crate::sources::schema::GoogleAdsLead;
use crate::sources::single::{self, Accepted, Enqueue};
use crate::web::error::{ApiError, Invalid, TooMany};
use crate::web::request::{self, BodyKind, Received, authenticate};
use crate::web::respond::{Body, Message};
use crate::web::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value};
use shared::mapping;
use shared::payload::{FieldErrors, ParseContext, RawLead, TOKEN_FIELD};
use std::net::SocketAddr;
use tracing::Instrument;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/webhook/google-ads";
/// `lead_source` of a lead that does not set one (through the token's defaults).
pub const LEAD_SOURCE: &str = "Google Ads";

/// Google's standard column ids and the contract field each fills. `WORK_PHONE` is an
/// additional number; `WORK_EMAIL` fills `email` when `EMAIL` does not.
pub const COLUMNS: &[(&str, &str)] = &[
    ("FULL_NAME", "name"),
    ("FIRST_NAME", "first_name"),
    ("LAST_NAME", "last_name"),
    ("PHONE_NUMBER", "phone_number"),
    ("WORK_PHONE", "other_phone_numbers"),
    ("EMAIL", "email"),
    ("WORK_EMAIL", "email"),
    ("COMPANY_NAME", "company_name"),
    ("STREET_ADDRESS", "address"),
    ("CITY", "city"),
    ("REGION", "state"),
    ("POSTAL_CODE", "zipcode"),
    ("COUNTRY", "country"),
];

/// Action fields a test lead never carries: nobody is called, dialed or messaged for it.
const REACHING_FIELDS: &[&str] = &[
    "distribute_to_ring_group",
    "distribute_to_right_group",
    "check_available_users",
    "check_available_users_with_fallback",
    "add_to_powerdialer",
    "powerdialer_position",
    "sequence_id",
    "automation_id",
    "force_update_sequence",
];

/// Answers one request to [`PATH`].
#[utoipa::path(
    post,
    path = PATH,
    tag = "intake",
    operation_id = "intake_google_ads",
    summary = "Google Ads lead form webhook",
    description = "Set the webhook URL of a Google Ads lead form to `https://…/api/v1/webhook/google-ads?api_token=TOKEN` and its key to the one set with `leadctl token google-key ID KEY`. `lead_source` defaults to `Google Ads`; the token's default actions apply, except on test leads. The intake's payload keeps Google's ids (`form_id`, `campaign_id`, `gcl_id`, …) without the key.",
    params(("api_token" = String, Query, description = "The token (Google cannot send headers).")),
    request_body(content((GoogleAdsLead = "application/json"))),
    responses(
        (status = 200, description = "Queued (the platform wants a 200); a retried `lead_id` answers its first intake again.", body = Accepted,
            example = json!({"message": "Lead accepted.", "intake_id": "01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e", "status_url": "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e"})),
        (status = 400, description = "No `lead_id`, not JSON, or an invalid lead (e.g. no phone number).", body = Invalid,
            example = json!({"message": "The given data was invalid.", "errors": {"phone_number": ["The phone number field is required."]}})),
        (status = 401, description = "Missing, unknown or revoked token, or a `google_key` that is not the token's.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 409, description = "The same `lead_id` is still being queued.", body = Message, headers(("Retry-After" = u64))),
        (status = 413, description = "The body is over the limit.", body = Message),
        (status = 415, description = "Not JSON.", body = Message),
        (status = 429, description = "The token's intake limit.", body = TooMany, headers(("Retry-After" = u64))),
        (status = 503, description = "The broker did not confirm in time: the platform retries.", body = Message, headers(("Retry-After" = u64))),
    ),
    security(("api_token" = [])),
)]
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let span = tracing::info_span!(
        "google_ads_intake",
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
    let limit = state.settings.receiver.body_limit_bytes;
    let Received {
        parts,
        body: bytes,
        token,
        received_at,
        ..
    } = request::receive(state, req, limit, json_only).await?;
    let principal = authenticate(state, token, &parts.headers, peer).await?;

    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&bytes) else {
        let mut errors = FieldErrors::default();
        errors.add("body", "The body must be a JSON object.");
        return Err(ApiError::Invalid(errors));
    };
    let key = body.remove("google_key");
    let key = key.as_ref().and_then(Value::as_str).unwrap_or_default();
    if !principal.sources.google_key_matches(key) {
        tracing::info!("Google Ads lead with a wrong google_key");
        let ip = request::client_ip(
            &parts.headers,
            peer,
            state.settings.receiver.trust_forwarded_for,
        );
        return Err(state.admission.failed_authentication(ip).await.into());
    }
    body.remove(TOKEN_FIELD);
    let lead_id = match body.get("lead_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            let mut errors = FieldErrors::default();
            errors.add("lead_id", "The lead id field is required.");
            return Err(ApiError::Invalid(errors));
        }
    };
    let is_test = body
        .get("is_test")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let mut raw = RawLead::from_fields(fields_of(&body, &principal.sources.field_map));
    principal.sources.defaults.apply(&mut raw);
    let fields = raw.fields_mut();
    if fields.get("lead_source").is_none_or(Value::is_null) {
        fields.insert("lead_source".into(), LEAD_SOURCE.into());
    }
    if is_test {
        mark_test(state, principal.account_id, fields).await?;
    }
    let lead = raw.parse(&ParseContext::now(principal.region));
    let idempotency_key = format!("google-ads:{lead_id}");
    let mut response = single::enqueue(
        state,
        &principal,
        Enqueue {
            lead,
            payload: Value::Object(body),
            idempotency_key: Some(&idempotency_key),
            wait: None,
            headers: &parts.headers,
            received_at,
        },
    )
    .await?;
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    Ok(response)
}

/// Google posts JSON; a body without a `Content-Type` is read as JSON too.
fn json_only(media_type: Option<&str>) -> Result<(), ApiError> {
    match request::body_kind(media_type)? {
        Some(BodyKind::Json) | None => Ok(()),
        Some(BodyKind::Form) => Err(ApiError::UnsupportedMediaType),
    }
}

/// The contract fields of a Google lead: standard columns by id, other questions through
/// the token's mapping (by question text, then column id), else as note lines.
fn fields_of(body: &Map<String, Value>, map: &mapping::FieldMap) -> Map<String, Value> {
    let mut fields = Map::new();
    let columns = body
        .get("user_column_data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for column in columns {
        let text = |name: &str| {
            column
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let Some(value) = text("string_value") else {
            continue;
        };
        let id = text("column_id").unwrap_or_default();
        let label = text("column_name").unwrap_or(id);
        let target = COLUMNS
            .iter()
            .find(|(column_id, _)| column_id.eq_ignore_ascii_case(id))
            .map(|(_, field)| *field)
            .or_else(|| map.target(label))
            .or_else(|| map.target(id));
        let value = Value::String(value.to_owned());
        let stored = match target {
            Some(field) => mapping::put(&mut fields, label, field, value.clone()),
            None => false,
        };
        if !stored {
            mapping::add_note_line(&mut fields, label, &value);
        }
    }
    fields
}

/// Takes every action that reaches people off a test lead and tags it `test`.
async fn mark_test(
    state: &AppState,
    account_id: i64,
    fields: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    for name in REACHING_FIELDS {
        fields.remove(*name);
    }
    match shared::sources::test_tag(&state.db, account_id).await {
        Ok(Some(tag_id)) => {
            fields.insert("tag_id".into(), tag_id.into());
            Ok(())
        }
        Ok(None) => {
            // Setting a Google key creates the tag; someone deleted it since.
            tracing::warn!("The account has no `test` tag; the test lead is saved untagged");
            fields.remove("tag_id");
            Ok(())
        }
        Err(error) => {
            tracing::warn!(%error, "Failed to look up the `test` tag");
            Err(ApiError::Unavailable("database"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_map_onto_fields_and_other_questions_become_note_lines() {
        let body = json!({
            "user_column_data": [
                {"column_name": "Full Name", "string_value": "Jane Doe", "column_id": "FULL_NAME"},
                {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
                {"column_name": "Work Phone", "string_value": "+16505550199", "column_id": "WORK_PHONE"},
                {"column_name": "User Email", "string_value": "jane@example.com", "column_id": "EMAIL"},
                {"column_name": "Work Email", "string_value": "jane@work.example", "column_id": "WORK_EMAIL"},
                {"column_name": "What is your budget?", "string_value": "$5k", "column_id": "budget"},
                {"column_name": "Best time to call?", "string_value": "Mornings", "column_id": "time"}
            ]
        });
        let fields = fields_of(
            body.as_object().expect("object"),
            &mapping::FieldMap::default(),
        );
        assert_eq!(fields["name"], "Jane Doe");
        assert_eq!(fields["phone_number"], "+16505550123");
        assert_eq!(fields["email"], "jane@example.com");
        assert_eq!(
            fields["other_phone_numbers"],
            json!([{"label": "Work Phone", "phone_number": "+16505550199"}])
        );
        assert_eq!(
            fields["notes"],
            "Work Email: jane@work.example\nWhat is your budget?: $5k\nBest time to call?: Mornings"
        );
    }

    #[test]
    fn a_phone_asked_in_a_custom_question_is_mapped_by_the_token() {
        let body = json!({"user_column_data": [
            {"column_name": "Your mobile number", "string_value": "(818) 555-0142", "column_id": "mobile"}
        ]});
        let map = mapping::FieldMap::parse(&["Your mobile number=phone_number"]).expect("map");
        let fields = fields_of(body.as_object().expect("object"), &map);
        assert_eq!(fields["phone_number"], "(818) 555-0142");
        assert!(fields.get("notes").is_none());
    }
}
