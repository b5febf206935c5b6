//! Reading a lead source's request before anything in it is judged: the media type, the
//! body (size and time bounded), the query string's fields, the token and the
//! `Idempotency-Key` header. The intake, bulk, validate and Google Ads endpoints all read
//! their requests here, so each refuses a body the same way; every endpoint (the read API
//! too) authenticates its token here, by the client's address.

use crate::admission::intake_records;
use crate::admission::token::{Principal, bearer_token};
use crate::web::error::ApiError;
use crate::web::state::AppState;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Request, header};
use shared::lead::Lead;
use shared::payload::{BodyError, FieldErrors, ParseContext, RawLead};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A request as read, before its token is checked.
pub(crate) struct Received<F> {
    pub parts: Parts,
    /// The body's format, as the endpoint judged its `Content-Type`.
    pub format: F,
    pub body: Bytes,
    /// The query string's fields, token removed: they fill what a lead lacks.
    pub query: RawLead,
    /// The token of the query string, else of `Authorization: Bearer`.
    pub token: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Reads `req`: `format` judges the media type first (and refuses what the endpoint does
/// not take, before the body is read), then the whole body, at most `limit` bytes arriving
/// within the configured timeout.
pub(crate) async fn receive<F>(
    state: &AppState,
    req: Request<Incoming>,
    limit: usize,
    format: impl FnOnce(Option<&str>) -> Result<F, ApiError>,
) -> Result<Received<F>, ApiError> {
    let received_at = Utc::now();
    let (parts, body) = req.into_parts();
    let format = format(media_type(&parts.headers)?.as_deref())?;
    let timeout = state.settings.receiver.body_timeout;
    let body = read_body(body, limit, timeout).await?;
    let mut query = RawLead::from_form(parts.uri.query().unwrap_or_default().as_bytes());
    let token = query.take_token().or_else(|| bearer_token(&parts.headers));
    Ok(Received {
        parts,
        format,
        body,
        query,
        token,
        received_at,
    })
}

/// A single-lead request as read: its fields (the body's over the query string's), why
/// the body is not a lead if it is not, and the token it carries.
pub(crate) struct LeadRequest {
    pub parts: Parts,
    pub raw: RawLead,
    pub body_error: Option<BodyError>,
    pub token: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Reads a single-lead request: media type, the body (size and time bounded), the query
/// string and the token (the body's over the query string's and the header's).
pub(crate) async fn read_lead(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<LeadRequest, ApiError> {
    let limit = state.settings.receiver.body_limit_bytes;
    let Received {
        parts,
        format,
        body,
        query,
        token,
        received_at,
    } = receive(state, req, limit, body_kind).await?;
    let parsed = match format {
        Some(BodyKind::Json) => RawLead::from_json(&body),
        Some(BodyKind::Form) => Ok(RawLead::from_form(&body)),
        None if body.iter().all(u8::is_ascii_whitespace) => Ok(RawLead::default()),
        None => return Err(ApiError::UnsupportedMediaType),
    };
    // A body that is not a lead at all still lets the token in the query or header count.
    let (mut raw, body_error) = match parsed {
        Ok(raw) => (raw, None),
        Err(error) => (RawLead::default(), Some(error)),
    };
    let token = raw.take_token().or(token);
    Ok(LeadRequest {
        parts,
        raw: raw.with_query(query),
        body_error,
        token,
        received_at,
    })
}

/// The lead of a single-lead request, its fields first prepared by the principal's token
/// (field mapping and default actions), or every reason it is not one.
pub(crate) fn parse_lead(
    raw: &mut RawLead,
    body_error: Option<BodyError>,
    principal: &Principal,
) -> Result<Lead, FieldErrors> {
    principal.sources.prepare(raw);
    match body_error {
        Some(error) => Err(error.into_field_errors()),
        None => raw.parse(&ParseContext::now(principal.region)),
    }
}

/// The format of a single lead's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    Json,
    Form,
}

/// The format of a single lead's body by its media type; `None` without a `Content-Type`.
pub(crate) fn body_kind(media_type: Option<&str>) -> Result<Option<BodyKind>, ApiError> {
    match media_type {
        None => Ok(None),
        Some("application/json") => Ok(Some(BodyKind::Json)),
        Some("application/x-www-form-urlencoded") => Ok(Some(BodyKind::Form)),
        Some(other) if is_json(other) => Ok(Some(BodyKind::Json)),
        Some(_) => Err(ApiError::UnsupportedMediaType),
    }
}

/// A structured-syntax JSON media type (`application/…+json`).
pub(crate) fn is_json(media_type: &str) -> bool {
    media_type.starts_with("application/") && media_type.ends_with("+json")
}

/// The lower-cased essence of `Content-Type` (`application/json`), `None` without one.
fn media_type(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::UnsupportedMediaType)?;
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Ok((!essence.is_empty()).then_some(essence))
}

/// The whole body, at most `limit` bytes, arriving within `timeout`.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
    let declared = body.size_hint().lower();
    if usize::try_from(declared).map_or(true, |n| n > limit) {
        return Err(ApiError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::TooLarge { limit })
        }
        Ok(Err(_)) => Err(ApiError::BodyUnreadable),
    }
}

/// The principal of `token`, or the refusal (see [`crate::admission::Admission::authenticate`]): 401, or 429
/// for a client address with too many failed attempts. The read API authenticates the
/// same way.
pub(crate) async fn authenticate(
    state: &AppState,
    token: Option<String>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Principal, ApiError> {
    let ip = client_ip(headers, peer, state.settings.receiver.trust_forwarded_for);
    let principal = state.admission.authenticate(token, ip).await?;
    tracing::Span::current().record("account_id", principal.account_id);
    Ok(principal)
}

/// The `Idempotency-Key` header, if the request has a valid one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if intake_records::valid_key(key) => Ok(Some(key.to_owned())),
        _ => {
            let mut errors = FieldErrors::default();
            errors.add(
                "idempotency_key",
                format!(
                    "The Idempotency-Key header must be 1 to {} printable ASCII characters.",
                    intake_records::MAX_KEY_LEN
                ),
            );
            Err(ApiError::Invalid(errors))
        }
    }
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when the receiver
/// runs behind a proxy that appends it.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        // Only the last hop was written by our proxy; earlier ones are the client's word.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}
