//! `POST /api/v1/webhook/sms/inbound` (§10): the SMS provider's form post of a message a
//! contact sent to one of the accounts' line numbers.
//!
//! The request is the provider's: its `X-Twilio-Signature` (base64 of HMAC-SHA1, keyed with
//! `SMS__AUTH_TOKEN`, over the URL the provider called followed by every form parameter's
//! name and value in name order) is its only credential; a wrong or missing one is 401. The
//! URL is `SMS__WEBHOOK_BASE_URL` + the path when set (behind a proxy), else `http://` + the
//! `Host` header + the path. The account is the one whose line has the `To` number; an
//! unknown `To` is 404, so a misconfigured number shows in the provider's log instead of
//! messages vanishing.
//!
//! Every message is kept (once per `MessageSid`: the provider retries). A STOP word puts the
//! sender on the account's do-not-contact list for `sms`, revokes its standing `sms`
//! consent and cancels its pending steps; START words take the entry a STOP made off the
//! list again (an operator's entry stays). Both in one transaction with the message.

use crate::web::error::{ApiError, Invalid};
use crate::web::request::{self, Received};
use crate::web::respond::{self, Body, Message};
use crate::web::state::AppState;
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait};
use shared::events::{Event, EventType};
use shared::payload::FieldErrors;
use shared::phone::{PhoneNumber, Region};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The endpoint's path.
pub const PATH: &str = "/api/v1/webhook/sms/inbound";

/// Words that opt a number out of messages (the whole body, any case).
pub const STOP_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
/// Words that opt it back in.
pub const START_WORDS: &[&str] = &["START", "UNSTOP", "YES"];

/// The provider's form post, for the OpenAPI document (other parameters are accepted and
/// signed over too).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "PascalCase")]
pub struct InboundSms {
    /// The sender's number.
    #[schema(example = "+14155550123")]
    from: String,
    /// The line's number the message was sent to.
    #[schema(example = "+14155550100")]
    to: String,
    #[schema(example = "STOP")]
    body: String,
    #[schema(example = "SM1f0e8ae6ade43cb3c0ce4525424e404f")]
    message_sid: String,
}

/// What an inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
    None,
}

/// The keyword of a message body: a STOP or START word alone, any case and surrounding
/// spaces.
pub fn keyword(body: &str) -> Keyword {
    let word = body.trim().to_ascii_uppercase();
    if STOP_WORDS.contains(&word.as_str()) {
        Keyword::Stop
    } else if START_WORDS.contains(&word.as_str()) {
        Keyword::Start
    } else {
        Keyword::None
    }
}

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The provider's MAC of a request to `url` with form `params`: HMAC-SHA1 keyed with the
/// auth token over the URL followed by each parameter's name and value, in name order.
fn mac(auth_token: &str, url: &str, params: &BTreeMap<String, Vec<String>>) -> Option<HmacSha1> {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(url.as_bytes());
    for (name, values) in params {
        let mut values = values.clone();
        values.sort();
        for value in values {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
    }
    Some(mac)
}

/// The provider's signature (before base64) of a request to `url` with form `params`.
#[cfg(test)]
fn signature(auth_token: &str, url: &str, params: &BTreeMap<String, Vec<String>>) -> Vec<u8> {
    mac(auth_token, url, params)
        .map(|m| m.finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

/// Whether `given` (base64) is the provider's signature, compared in constant time.
fn verify(
    auth_token: &str,
    url: &str,
    params: &BTreeMap<String, Vec<String>>,
    given: &str,
) -> bool {
    let Ok(given) =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, given.trim())
    else {
        return false;
    };
    mac(auth_token, url, params).is_some_and(|m| m.verify_slice(&given).is_ok())
}

/// Answers one request to [`PATH`].
#[utoipa::path(
    post,
    path = PATH,
    tag = "intake",
    operation_id = "sms_inbound",
    summary = "Inbound SMS (the provider's webhook)",
    description = "Point the messaging webhook of the provider's numbers here. Signed with `X-Twilio-Signature` (HMAC-SHA1 with `SMS__AUTH_TOKEN` over the called URL and the sorted form parameters); the account is the one whose line has the `To` number. Every message is kept once per `MessageSid`. STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE or OPTOUT puts the sender on the account's do-not-contact list for `sms`, revokes its SMS consent and cancels its pending steps; START, UNSTOP or YES takes a STOP's entry off again.",
    params(("X-Twilio-Signature" = String, Header, description = "The provider's signature of the request.")),
    request_body(content((InboundSms = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Kept (an empty TwiML answer: nothing is sent back).", content_type = "text/xml", body = String, example = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"),
        (status = 400, description = "`From`, `To` or `MessageSid` missing, or not a phone number.", body = Invalid),
        (status = 401, description = "No signature, or not the provider's.", body = Message, example = json!({"message": "Unauthenticated."})),
        (status = 404, description = "No line has the `To` number.", body = Message),
        (status = 413, description = "The body is over the limit.", body = Message),
        (status = 415, description = "Not a form post.", body = Message),
        (status = 503, description = "The database is unavailable: the provider retries.", body = Message),
    ),
)]
pub async fn handle(state: &AppState, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    accept(state, req).await.unwrap_or_else(|refusal| refusal)
}

async fn accept(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<Response<Body>, Response<Body>> {
    let limit = state.settings.receiver.body_limit_bytes;
    let Received { parts, body, .. } = request::receive(state, req, limit, |media| match media {
        Some("application/x-www-form-urlencoded") => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    })
    .await
    .map_err(ApiError::into_response)?;
    let params = form(&body);
    let sms = &state.settings.sms;
    if sms.auth_token.is_empty() {
        tracing::warn!("An inbound SMS arrived but SMS__AUTH_TOKEN is not set: refused");
        return Err(unauthenticated());
    }
    let url = called_url(sms.webhook_base_url.as_deref(), &parts);
    let signed = parts
        .headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| verify(&sms.auth_token, &url, &params, given));
    if !signed {
        tracing::info!("Inbound SMS with a wrong or missing signature refused");
        return Err(unauthenticated());
    }
    let inbound = Inbound::of(&params).map_err(|e| ApiError::Invalid(e).into_response())?;
    match record(state, &inbound).await {
        Ok(Recorded::Unknown) => Err(respond::message(
            StatusCode::NOT_FOUND,
            "No line has the To number.",
        )),
        Ok(Recorded::Kept { account_id }) => {
            tracing::info!(account_id, keyword = ?inbound.keyword, "Inbound SMS kept");
            Ok(twiml())
        }
        Ok(Recorded::Repeat) => Ok(twiml()),
        Err(error) => {
            tracing::warn!(%error, "Cannot keep an inbound SMS");
            Err(ApiError::Unavailable("database").into_response())
        }
    }
}

fn unauthenticated() -> Response<Body> {
    respond::message(StatusCode::UNAUTHORIZED, "Unauthenticated.")
}

/// An empty TwiML answer: nothing is sent back.
fn twiml() -> Response<Body> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::from_static(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>",
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml"),
    );
    response
}

/// The form's parameters, each with its values in order.
fn form(body: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        params
            .entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    params
}

/// The URL the provider called, as it signed it.
fn called_url(base: Option<&str>, parts: &http::request::Parts) -> String {
    let path = parts
        .uri
        .path_and_query()
        .map_or(PATH, |p| p.as_str())
        .to_owned();
    match base {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            format!("http://{host}{path}")
        }
    }
}

/// A checked inbound message.
struct Inbound {
    from: PhoneNumber,
    to: PhoneNumber,
    body: String,
    sid: String,
    keyword: Keyword,
}

impl Inbound {
    fn of(params: &BTreeMap<String, Vec<String>>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let one = |name: &str| {
            params
                .get(name)
                .and_then(|v| v.first())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str, errors: &mut FieldErrors| match one(name) {
            None => {
                errors.add(name, format!("The {name} field is required."));
                None
            }
            Some(n) => PhoneNumber::parse(&n, Region::US)
                .map_err(|_| errors.add(name, format!("The {name} field must be a phone number.")))
                .ok(),
        };
        let from = number("From", &mut errors);
        let to = number("To", &mut errors);
        let sid = one("MessageSid");
        if sid.is_none() {
            errors.add("MessageSid", "The MessageSid field is required.");
        }
        let body = params
            .get("Body")
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_default();
        match (from, to, sid) {
            (Some(from), Some(to), Some(sid)) if errors.is_empty() => Ok(Self {
                from,
                to,
                keyword: keyword(&body),
                body,
                sid,
            }),
            _ => Err(errors),
        }
    }
}

enum Recorded {
    /// No line has the `To` number.
    Unknown,
    /// Kept (and its keyword acted on).
    Kept { account_id: i64 },
    /// The provider sent this `MessageSid` before.
    Repeat,
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Keeps the message and acts on its keyword, in one transaction.
async fn record(state: &AppState, m: &Inbound) -> Result<Recorded, DbErr> {
    let txn = state.db.begin().await?;
    let Some(line) = txn
        .query_one_raw(stmt(
            "SELECT account_id FROM lines WHERE number = $1",
            vec![m.to.as_str().into()],
        ))
        .await?
    else {
        return Ok(Recorded::Unknown);
    };
    let account_id: i64 = line.try_get("", "account_id")?;
    let from = m.from.as_str();
    let kept = txn
        .query_one_raw(stmt(
            "INSERT INTO messages (account_id, contact_id, direction, status, from_number, \
                                   to_number, body, provider_sid) \
             SELECT $1, (SELECT contact_id FROM contact_phone_numbers \
                         WHERE account_id = $1 AND phone_number = $2 ORDER BY contact_id LIMIT 1), \
                    'inbound', 'received', $2, $3, $4, $5 \
             ON CONFLICT (provider_sid) WHERE direction = 'inbound' DO NOTHING \
             RETURNING id, contact_id, created_at",
            vec![
                account_id.into(),
                from.into(),
                m.to.as_str().into(),
                m.body.clone().into(),
                m.sid.clone().into(),
            ],
        ))
        .await?;
    let Some(kept) = kept else {
        txn.commit().await?;
        return Ok(Recorded::Repeat);
    };
    let now = chrono::Utc::now();
    let contact_id: Option<i64> = kept.try_get("", "contact_id")?;
    let message = serde_json::json!({
        "id": kept.try_get::<i64>("", "id")?,
        "contact_id": contact_id,
        "direction": "inbound",
        "status": "received",
        "from": from,
        "to": m.to.as_str(),
        "body": m.body,
        "provider_sid": m.sid,
        "created_at": kept.try_get::<chrono::DateTime<chrono::Utc>>("", "created_at")?,
    });
    let mut events = vec![
        Event::new(
            account_id,
            EventType::SmsReceived,
            now,
            &message,
            || serde_json::json!({"id": message["id"].clone()}),
        )
        .map_err(|e| DbErr::Json(e.to_string()))?
        .contact(contact_id),
    ];
    match m.keyword {
        Keyword::Stop => {
            for sql in [
                "INSERT INTO do_not_contact (account_id, phone_number, channel, reason, source) \
                 VALUES ($1, $2, 'sms', 'inbound STOP', 'stop') \
                 ON CONFLICT (account_id, phone_number, channel) DO NOTHING",
                "UPDATE contact_consents SET revoked_at = greatest(now(), given_at), \
                        revoked_reason = 'inbound STOP' \
                 WHERE channel = 'sms' AND revoked_at IS NULL AND contact_id IN \
                   (SELECT contact_id FROM contact_phone_numbers \
                    WHERE account_id = $1 AND phone_number = $2)",
                "UPDATE messages SET status = 'cancelled', due_at = NULL, updated_at = now(), \
                        error_message = 'inbound STOP' \
                 WHERE status = 'scheduled' AND direction = 'outbound' AND account_id = $1 \
                   AND contact_id IN (SELECT contact_id FROM contact_phone_numbers \
                                      WHERE account_id = $1 AND phone_number = $2)",
            ] {
                txn.execute_raw(stmt(sql, vec![account_id.into(), from.into()]))
                    .await?;
            }
            events.push(shared::events::dnc_added(
                account_id,
                from,
                "sms",
                "inbound STOP",
                "stop",
                now,
            )?);
        }
        Keyword::Start => {
            txn.execute_raw(stmt(
                "DELETE FROM do_not_contact WHERE account_id = $1 AND phone_number = $2 \
                 AND channel = 'sms' AND source = 'stop'",
                vec![account_id.into(), from.into()],
            ))
            .await?;
        }
        Keyword::None => {}
    }
    shared::events::record(&txn, events).await?;
    txn.commit().await?;
    Ok(Recorded::Kept { account_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_and_start_words_are_whole_bodies_in_any_case() {
        assert_eq!(keyword(" stop "), Keyword::Stop);
        assert_eq!(keyword("OptOut"), Keyword::Stop);
        assert_eq!(keyword("Unstop"), Keyword::Start);
        assert_eq!(keyword("please stop"), Keyword::None);
        assert_eq!(keyword("yes please"), Keyword::None);
    }

    /// The provider's documented example: its auth token, URL and parameters give the
    /// signature it shows.
    #[test]
    fn the_signature_matches_the_providers_documented_example() {
        let params: BTreeMap<String, Vec<String>> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), vec![v.to_owned()]))
        .collect();
        let sig = signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
        );
        assert_eq!(
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }
}
