//! Response helpers shared by the handlers. Every body is JSON.

use crate::admission::limits::Decision;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// A JSON response (fields in the order `body` serializes them).
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Every answer that only says what happened: `{"message": …}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Message<'a> {
    #[schema(example = "Unauthenticated.")]
    pub message: &'a str,
}

/// `{"message": …}`.
pub fn message(status: StatusCode, text: &str) -> Response<Body> {
    json(status, &Message { message: text })
}

pub fn not_found() -> Response<Body> {
    message(StatusCode::NOT_FOUND, "Not found.")
}

/// 405 naming the methods the route supports.
pub fn method_not_allowed(method: &http::Method, allowed: &str) -> Response<Body> {
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "The {method} method is not supported for this route. Supported methods: {allowed}."
        ),
    );
    if let Ok(allow) = HeaderValue::from_str(allowed) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// Sets `name` to a number.
pub fn set_number(headers: &mut HeaderMap, name: &'static str, value: u64) {
    headers.insert(name, HeaderValue::from(value));
}

/// `response` with the rate-limit decision its request got, when it got one:
/// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (Unix seconds at which `remaining` next
/// grows), and `Retry-After` when the request was refused.
pub fn with_rate_limit(
    mut response: Response<Body>,
    decision: Option<&Decision>,
) -> Response<Body> {
    if let Some(decision) = decision {
        set_rate_limit_headers(response.headers_mut(), decision);
    }
    response
}

fn set_rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    set_number(headers, "x-ratelimit-limit", u64::from(decision.limit));
    set_number(
        headers,
        "x-ratelimit-remaining",
        u64::from(decision.remaining),
    );
    set_number(headers, "x-ratelimit-reset", decision.reset_at);
    if !decision.admitted {
        set_number(headers, "retry-after", decision.retry_after_secs());
    }
}
