//! The OpenAPI operations of the lead sources (§8): bulk intake, validation and the Google
//! Ads lead form webhook. Anchors for the document only; the handlers live in
//! [`crate::bulk`], [`crate::validate`] and [`crate::google_ads`].

use crate::bulk::{BulkAnswer, BulkResult};
use crate::error::{Invalid, TooMany};
use crate::http::Message;
use crate::intake::Accepted;
use crate::validate::{Validated, Warning};
use serde::Serialize;
use utoipa::ToSchema;

/// The Google Ads lead form webhook's body, as Google documents and sends it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
    "api_version": "1.0",
    "form_id": 40000000000_i64,
    "campaign_id": 20000000000_i64,
    "google_key": "your-key",
    "is_test": true,
    "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
    "adgroup_id": 20000000000_i64,
    "creative_id": 30000000000_i64,
    "user_column_data": [
        {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
        {"column_name": "What is your budget?", "string_value": "$5,000", "column_id": "budget"}
    ]
}))]
pub struct GoogleAdsLead {
    /// Google's id of the lead: the idempotency key (a retried delivery is queued once).
    pub lead_id: String,
    /// The form's answers.
    pub user_column_data: Vec<GoogleAdsColumn>,
    /// Must equal the key set for the token (`leadctl token google-key ID KEY`), else 401.
    pub google_key: String,
    /// A test lead (the form editor's "Send test data"): tagged `test`, never distributed,
    /// added to a PowerDialer or enrolled in a sequence.
    pub is_test: Option<bool>,
    pub api_version: Option<String>,
    /// Kept in the intake's payload; not our `campaign_id` (a line).
    pub form_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub adgroup_id: Option<i64>,
    pub creative_id: Option<i64>,
    pub gcl_id: Option<String>,
}

/// One answer of a Google Ads lead form. Standard column ids fill lead fields:
/// `FULL_NAME` name, `FIRST_NAME`, `LAST_NAME`, `PHONE_NUMBER`, `WORK_PHONE` (another
/// number), `EMAIL`, `WORK_EMAIL` (email when there is no `EMAIL`), `COMPANY_NAME`,
/// `STREET_ADDRESS` address, `CITY`, `REGION` state, `POSTAL_CODE` zipcode, `COUNTRY`.
/// Other questions go through the token's field mapping (by question text, then column
/// id), else into the note as `question: answer` lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct GoogleAdsColumn {
    #[schema(example = "PHONE_NUMBER")]
    pub column_id: Option<String>,
    /// The question as the user saw it.
    #[schema(example = "User Phone")]
    pub column_name: Option<String>,
    #[schema(example = "+16505550123")]
    pub string_value: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/webhook/forms/bulk",
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
            (Vec<crate::openapi::IntakeRequest> = "application/json", example = json!([{"phone_number": "(818) 123-4567", "first_name": "Ada"}, {"first_name": "No Phone"}])),
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
#[allow(dead_code)]
pub(super) fn intake_bulk() {}

#[utoipa::path(
    post,
    path = "/api/v1/webhook/forms/validate",
    tag = "intake",
    operation_id = "validate_lead",
    summary = "Check a lead without queueing it",
    description = "Takes exactly what `POST /api/v1/webhook/forms` takes and runs every check: the token, the fields, the numbers, the token's mapping and defaults, and the ids the lead names (looked up in the token's account). Nothing is queued. Counts against the token's read limit, not the intake limit.",
    request_body(
        description = "A lead, as for the single endpoint.",
        content(
            (crate::openapi::IntakeRequest = "application/json"),
            (crate::openapi::IntakeRequest = "application/x-www-form-urlencoded"),
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
#[allow(dead_code)]
pub(super) fn validate_lead() {}

#[utoipa::path(
    post,
    path = "/api/v1/webhook/google-ads",
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
#[allow(dead_code)]
pub(super) fn intake_google_ads() {}

/// The schemas these operations name.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(intake_bulk, validate_lead, intake_google_ads),
    components(schemas(
        BulkAnswer,
        BulkResult,
        Validated,
        Warning,
        GoogleAdsLead,
        GoogleAdsColumn
    ))
)]
pub(super) struct SourcesDoc;
