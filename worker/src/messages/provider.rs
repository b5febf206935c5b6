//! A Twilio-compatible Messages API client (§10): `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded `To`, `From`, `Body`, basic auth with the account SID and auth token.
//!
//! Every request carries an `Idempotency-Key` that is the same on every attempt of a step, so
//! a provider that honours it delivers a step once even when a worker dies between the send
//! and its record.

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::time::Duration;

/// What the provider did with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted: the provider's message SID.
    Sent { sid: String },
    /// Worth another attempt later (429, 5xx, no answer): `after` is the provider's
    /// `Retry-After` when it gave one.
    Retry {
        after: Option<Duration>,
        code: String,
        message: String,
    },
    /// Refused for good (another 4xx): the provider's error code and message.
    Refused { code: String, message: String },
}

/// The provider's error code for a recipient who replied STOP to the sending number.
pub const UNSUBSCRIBED: &str = "21610";

/// One outbound message.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub body: &'a str,
    /// The same on every attempt of one step.
    pub idempotency_key: &'a str,
}

#[derive(Clone)]
pub struct Provider {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: http::Uri,
    authorization: String,
    timeout: Duration,
}

/// Why a provider cannot be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "SMS__BASE_URL {0:?} is not an http:// URL (https needs a TLS-terminating egress proxy)"
    )]
    Scheme(String),
    #[error("SMS__BASE_URL {0:?} does not make a valid URL: {1}")]
    Url(String, String),
    #[error("SMS__ACCOUNT_SID must be set when SMS__BASE_URL is")]
    NoAccount,
}

impl Provider {
    pub fn new(
        base_url: &str,
        account_sid: &str,
        auth_token: &str,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let base = base_url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(ProviderError::Scheme(base_url.to_owned()));
        }
        if account_sid.is_empty() {
            return Err(ProviderError::NoAccount);
        }
        let sid: String = form_urlencoded::byte_serialize(account_sid.as_bytes()).collect();
        let endpoint = format!("{base}/2010-04-01/Accounts/{sid}/Messages.json")
            .parse()
            .map_err(|e: http::uri::InvalidUri| {
                ProviderError::Url(base_url.into(), e.to_string())
            })?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{account_sid}:{auth_token}"));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
            endpoint,
            authorization: format!("Basic {credentials}"),
            timeout,
        })
    }

    /// Sends one message and sorts the answer.
    pub async fn send(&self, m: &Outgoing<'_>) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("To", m.to)
            .append_pair("From", m.from)
            .append_pair("Body", m.body)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(header::AUTHORIZATION, &self.authorization)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header("Idempotency-Key", m.idempotency_key)
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return Answer::Refused {
                    code: "request".into(),
                    message: e.to_string(),
                };
            }
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((parts, bytes))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Retry {
                after: None,
                code: "timeout".into(),
                message: format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
            },
            Ok(Err(e)) => Answer::Retry {
                after: None,
                code: "connection".into(),
                message: e,
            },
            Ok(Ok((parts, bytes))) => sort(parts.status, &parts.headers, &bytes),
        }
    }
}

/// The provider's JSON: a message resource on success, an error resource otherwise.
#[derive(Debug, Default, Deserialize)]
struct Resource {
    sid: Option<String>,
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// Sorts a provider's answer into sent, retry later and refused.
pub fn sort(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Answer {
    let resource: Resource = serde_json::from_slice(body).unwrap_or_default();
    let code = match &resource.code {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => status.as_u16().to_string(),
    };
    let message = resource.message.clone().unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
        if text.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_owned()
        } else {
            text
        }
    });
    if status.is_success() {
        return match resource.sid {
            Some(sid) if !sid.is_empty() => Answer::Sent { sid },
            _ => Answer::Refused {
                code: "no_sid".into(),
                message: "the provider accepted the message without a sid".into(),
            },
        };
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let after = headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Answer::Retry {
            after,
            code,
            message,
        };
    }
    Answer::Refused { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(header::RETRY_AFTER, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn the_providers_documented_answers_are_sorted() {
        // A created message resource (abridged from the provider's documentation).
        let created = br#"{"account_sid":"ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX","api_version":"2010-04-01","body":"Hi","status":"queued","sid":"SM1f0e8ae6ade43cb3c0ce4525424e404f","to":"+14155550123","from":"+14155550100","error_code":null}"#;
        assert_eq!(
            sort(StatusCode::CREATED, &headers(None), created),
            Answer::Sent {
                sid: "SM1f0e8ae6ade43cb3c0ce4525424e404f".into()
            }
        );
        let unsubscribed = br#"{"code":21610,"message":"Attempt to send to unsubscribed recipient","more_info":"https://www.twilio.com/docs/errors/21610","status":400}"#;
        assert_eq!(
            sort(StatusCode::BAD_REQUEST, &headers(None), unsubscribed),
            Answer::Refused {
                code: UNSUBSCRIBED.into(),
                message: "Attempt to send to unsubscribed recipient".into()
            }
        );
        let throttled = br#"{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}"#;
        assert_eq!(
            sort(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("7")),
                throttled
            ),
            Answer::Retry {
                after: Some(Duration::from_secs(7)),
                code: "20429".into(),
                message: "Too Many Requests".into()
            }
        );
    }

    #[test]
    fn answers_without_a_json_body_keep_the_status_as_their_code() {
        assert_eq!(
            sort(StatusCode::BAD_GATEWAY, &headers(None), b""),
            Answer::Retry {
                after: None,
                code: "502".into(),
                message: "Bad Gateway".into()
            }
        );
        assert!(matches!(
            sort(StatusCode::UNAUTHORIZED, &headers(None), b"nope"),
            Answer::Refused { code, message } if code == "401" && message == "nope"
        ));
        assert!(matches!(
            sort(StatusCode::OK, &headers(None), b"{}"),
            Answer::Refused { code, .. } if code == "no_sid"
        ));
    }
}
