//! A Twilio-compatible SMS provider on loopback for tests and the bench: it takes the
//! Messages API's form posts, checks basic auth, records every request (deduplicated by
//! `Idempotency-Key`, as a provider honouring it delivers once), and answers with what a
//! test scripts (a 201 message resource by default), at once or after a delay of its own per
//! request (a slow provider keeps sends in flight).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request the provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub from: String,
    pub body: String,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub path: String,
    pub at: Instant,
    pub at_utc: chrono::DateTime<chrono::Utc>,
    /// Another request carried the same idempotency key before: not delivered again.
    pub repeat: bool,
}

/// A scripted answer: status, extra headers and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The provider's error resource with `code` and `message`.
    pub fn error(status: u16, code: u32, message: &str) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: serde_json::json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status,
            })
            .to_string(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    keys: HashSet<String>,
    script: VecDeque<Reply>,
    /// Requests not answered at all (the connection is held open) while positive.
    hang: usize,
    sids: u64,
    /// Each answer waits a time in this range (spread evenly over the requests).
    delay: Option<(Duration, Duration)>,
    /// Requests received and not yet answered.
    in_flight: usize,
    /// Requests that delivered a message: first of their idempotency key (or without one).
    delivered: usize,
}

/// Counts a request as in flight until it is answered or its connection is dropped.
struct InFlight(Arc<Mutex<State>>);

impl InFlight {
    fn new(state: &Arc<Mutex<State>>) -> Self {
        state.lock().unwrap_or_else(|e| e.into_inner()).in_flight += 1;
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

/// The running provider; stops when dropped.
pub struct SmsProvider {
    pub addr: SocketAddr,
    pub account_sid: String,
    pub auth_token: String,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl SmsProvider {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let account_sid = format!("AC{}", uuid::Uuid::new_v4().simple());
        let auth_token = uuid::Uuid::new_v4().simple().to_string();
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{account_sid}:{auth_token}")
            )
        );
        let (s, st) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => break,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let (s, expected) = (s.clone(), expected.clone());
                let st2 = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(s.clone(), expected.clone(), req));
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! { _ = st2.cancelled() => {}, _ = conn => {} }
                });
            }
        });
        Self {
            addr,
            account_sid,
            auth_token,
            state,
            stop,
        }
    }

    /// `SMS__BASE_URL` for this provider.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with `replies`, in order, before the default 201s.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Leaves the next `n` requests unanswered (recorded, never answered).
    pub fn hang(&self, n: usize) {
        self.lock().hang = n;
    }

    /// Answers every request after a wait between `min` and `max` (spread over the requests
    /// by their order), as a provider under load does.
    pub fn answer_after(&self, min: Duration, max: Duration) {
        self.lock().delay = Some((min, max.max(min)));
    }

    /// Requests received and not yet answered (a sender that died mid-request ends its own).
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// (requests received, messages delivered), without copying the requests.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.received.len(), s.delivered)
    }

    /// Every request, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The requests that delivered a message (first of each idempotency key, and answered 2xx
    /// unless scripted otherwise).
    pub fn delivered(&self) -> Vec<Received> {
        self.received().into_iter().filter(|r| !r.repeat).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SmsProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    expected: String,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(&bytes).into_owned().collect();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    if authorization.as_deref() != Some(expected.as_str()) {
        return Ok(reply(&Reply::error(401, 20003, "Authenticate")));
    }
    let key = header("idempotency-key");
    let _in_flight = InFlight::new(&state);
    let (scripted, hang, sid, delay, index) = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let index = s.received.len();
        let repeat = key.as_ref().is_some_and(|k| !s.keys.insert(k.clone()));
        if !repeat {
            s.delivered += 1;
        }
        s.received.push(Received {
            to: form.get("To").cloned().unwrap_or_default(),
            from: form.get("From").cloned().unwrap_or_default(),
            body: form.get("Body").cloned().unwrap_or_default(),
            idempotency_key: key,
            authorization,
            path: parts.uri.path().to_owned(),
            at: Instant::now(),
            at_utc: chrono::Utc::now(),
            repeat,
        });
        let hang = s.hang > 0;
        if hang {
            s.hang -= 1;
        }
        s.sids += 1;
        let delay = s.delay.map(|(min, max)| {
            // A fixed spread (Fibonacci hashing of the request's number), not randomness:
            // a run is repeatable.
            let share = (s.sids.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as f64 / 1024.0;
            min + (max - min).mul_f64(share)
        });
        (s.script.pop_front(), hang, s.sids, delay, index)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if let Some(r) = scripted {
        // A refused request delivered nothing: its key may be used again.
        if !(200..300).contains(&r.status) {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            // This request's own record: others may have arrived during a delay.
            if let Some(this) = s.received.get_mut(index) {
                let was_delivered = !this.repeat;
                this.repeat = true;
                let key = this.idempotency_key.clone();
                if let Some(k) = &key {
                    s.keys.remove(k);
                }
                if was_delivered {
                    s.delivered = s.delivered.saturating_sub(1);
                }
            }
        }
        return Ok(reply(&r));
    }
    let to = form.get("To").cloned().unwrap_or_default();
    Ok(reply(&Reply {
        status: 201,
        headers: Vec::new(),
        body: serde_json::json!({
            "sid": format!("SM{sid:032x}"),
            "status": "queued",
            "to": to,
            "from": form.get("From"),
            "body": form.get("Body"),
            "error_code": null,
        })
        .to_string(),
    }))
}

fn reply(r: &Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(r.body.clone())));
    *response.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (n, v) in &r.headers {
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(n.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            headers.insert(n, v);
        }
    }
    response
}
