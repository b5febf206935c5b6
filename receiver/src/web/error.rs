//! Every way the intake endpoints (single, bulk, Google Ads, validate) refuse a request, and
//! the status and body each gets; the read API has its own `ReadError`.
//! Bodies never echo a token or any other request value besides field names.

use crate::admission::Refusal;
use crate::admission::limits::Decision;
use crate::web::respond::{self, Body};
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use shared::payload::FieldErrors;

/// Seconds a client should wait before retrying a lead the broker did not confirm.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The body of a 400: every failing field with its messages, Laravel-style.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invalid {
    #[schema(example = "The given data was invalid.")]
    pub message: &'static str,
    /// Field name → messages.
    #[schema(value_type = std::collections::HashMap<String, Vec<String>>,
        example = json!({"phone_number": ["The phone number field is required."]}))]
    pub errors: FieldErrors,
}

/// The body of a 429, with the exact wait.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TooMany {
    #[schema(example = "Too Many Attempts.")]
    pub message: &'static str,
    /// Milliseconds until a request would be admitted.
    #[schema(example = 997)]
    pub retry_after_ms: u64,
}

/// A refusal of an intake endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    TooLarge { limit: usize },
    #[error("too many leads in one request")]
    TooManyLeads { max: usize },
    #[error("unsupported media type for a bulk request")]
    UnsupportedBulkMediaType,
    #[error("request body too slow")]
    BodyTimeout,
    #[error("request body unreadable")]
    BodyUnreadable,
    /// No known token; with the count of failed authentications from the client's address
    /// when Redis made it (its `X-RateLimit-*` headers go on the 401).
    #[error("unauthenticated")]
    Unauthenticated(Option<Decision>),
    #[error("invalid lead")]
    Invalid(FieldErrors),
    /// Over the token's limit, or too many failed authentications from the client's
    /// address: the decision's headers go on the 429.
    #[error("rate limited")]
    RateLimited(Decision),
    #[error("idempotency key in use")]
    IdempotencyConflict,
    #[error("unavailable: {0}")]
    Unavailable(&'static str),
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated(decision) => Self::Unauthenticated(decision),
            Refusal::RateLimited(decision) => Self::RateLimited(decision),
            Refusal::Unavailable(what) => Self::Unavailable(what),
        }
    }
}

impl ApiError {
    pub fn into_response(self) -> Response<Body> {
        match self {
            Self::UnsupportedMediaType => respond::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type: send application/json or application/x-www-form-urlencoded.",
            ),
            Self::TooLarge { limit } => closing(respond::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("The request body must not be larger than {limit} bytes."),
            )),
            Self::TooManyLeads { max } => respond::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("A bulk request must not carry more than {max} leads."),
            ),
            Self::UnsupportedBulkMediaType => respond::message(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type: send a JSON array as application/json, or one lead per line as application/x-ndjson.",
            ),
            Self::BodyTimeout => closing(respond::message(
                StatusCode::REQUEST_TIMEOUT,
                "The request body took too long to arrive.",
            )),
            Self::BodyUnreadable => closing(respond::message(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
            )),
            Self::Unauthenticated(rate) => respond::with_rate_limit(
                respond::message(StatusCode::UNAUTHORIZED, "Unauthenticated."),
                rate.as_ref(),
            ),
            Self::Invalid(errors) => respond::json(
                StatusCode::BAD_REQUEST,
                &Invalid {
                    message: "The given data was invalid.",
                    errors,
                },
            ),
            Self::RateLimited(decision) => respond::with_rate_limit(
                respond::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    &TooMany {
                        message: "Too Many Attempts.",
                        retry_after_ms: decision.retry_after_ms(),
                    },
                ),
                Some(&decision),
            ),
            Self::IdempotencyConflict => {
                let mut response = respond::message(
                    StatusCode::CONFLICT,
                    "A request with this Idempotency-Key is still being processed.",
                );
                respond::set_number(response.headers_mut(), "retry-after", 1);
                response
            }
            Self::Unavailable(_) => {
                let mut response = respond::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The lead could not be queued right now. Retry later.",
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

/// The connection cannot be reused (the rest of the request body was never read).
fn closing(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
