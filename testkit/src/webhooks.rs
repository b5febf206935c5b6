//! A webhook receiver on loopback for tests and the bench: it records every request
//! (headers, exact body bytes, time) and answers with what a test scripts (204 by default),
//! at once or after a delay; and a check of deliveries with the Standard Webhooks
//! specification's own Python library, independent of the product's signer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub content_type: String,
    /// The body exactly as sent.
    pub body: Bytes,
    pub at: Instant,
    pub at_utc: chrono::DateTime<chrono::Utc>,
    /// The event's own `timestamp` (when its transaction wrote it).
    pub event_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The status it was answered with (0: not answered).
    pub answered: u16,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct State {
    got: Vec<Delivery>,
    script: VecDeque<Answer>,
    /// Answer for every request once the script is spent; `None`: 204.
    default: Option<Answer>,
    in_flight: usize,
    most_in_flight: usize,
    /// Bodies are dropped after their timestamp is read (long runs of the bench).
    light: bool,
}

/// The running receiver; stops when dropped.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl WebhookReceiver {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A receiver that keeps each delivery's headers and times but not its body, for runs
    /// of hundreds of thousands of events.
    pub async fn start_light() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(light: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            light,
            ..State::default()
        }));
        let stop = CancellationToken::new();
        let (s, st) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => break,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                let s = s.clone();
                let st2 = st.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| answer(s.clone(), req));
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! { _ = st2.cancelled() => {}, _ = conn => {} }
                });
            }
        });
        Self { addr, state, stop }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `answers`, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.lock().script.extend(answers);
    }

    /// Answers every request after the script with `answer` (e.g. 503 while "down").
    pub fn answer_all(&self, answer: Option<Answer>) {
        self.lock().default = answer;
    }

    pub fn got(&self) -> Vec<Delivery> {
        self.lock().got.clone()
    }

    pub fn count(&self) -> usize {
        self.lock().got.len()
    }

    /// Requests received and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// The most requests it was answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.lock().most_in_flight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn answer(
    state: Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut d = Delivery {
        path: req.uri().path().to_owned(),
        webhook_id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body: Bytes::new(),
        at: Instant::now(),
        at_utc: chrono::Utc::now(),
        event_at: None,
        answered: 0,
    };
    d.body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Stamp {
        timestamp: chrono::DateTime<chrono::Utc>,
    }
    d.event_at = serde_json::from_slice::<Stamp>(&d.body)
        .ok()
        .map(|s| s.timestamp);
    let reply = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        let reply = s
            .script
            .pop_front()
            .or_else(|| s.default.clone())
            .unwrap_or_else(|| Answer::status(204));
        d.answered = reply.status;
        if s.light {
            d.body = Bytes::new();
        }
        s.got.push(d);
        s.in_flight += 1;
        s.most_in_flight = s.most_in_flight.max(s.in_flight);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.lock().unwrap_or_else(|e| e.into_inner()).in_flight -= 1;
    let mut resp =
        Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK));
    for (k, v) in &reply.headers {
        resp = resp.header(k, v);
    }
    Ok(resp
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_default())
}

/// The version of the specification authors' Python library the checks use.
pub const STANDARDWEBHOOKS_VERSION: &str = "1.1.0";

/// The Python with the `standardwebhooks` package: `STANDARDWEBHOOKS_PYTHON`, else a
/// virtual environment under the target directory, created (once, under a lock) when
/// missing.
pub fn verifier_python() -> PathBuf {
    if let Ok(p) = std::env::var("STANDARDWEBHOOKS_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/standardwebhooks");
    let python = root.join("bin/python");
    let ready = root.join(format!("ready-{STANDARDWEBHOOKS_VERSION}"));
    if ready.exists() {
        return python;
    }
    let lock = root.with_extension("lock");
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::fs::create_dir(&lock).is_err() {
        assert!(Instant::now() < deadline, "waiting for {}", lock.display());
        if ready.exists() {
            return python;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().expect("run python");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !python.exists() {
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&root));
    }
    run(std::process::Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("standardwebhooks=={STANDARDWEBHOOKS_VERSION}"),
    ]));
    std::fs::write(&ready, b"").expect("mark ready");
    let _ = std::fs::remove_dir(&lock);
    python
}

/// Verifies each delivery with the `standardwebhooks` Python library and `secret`; returns
/// for each `Ok(payload as the library parsed it)` or `Err(the library's error)`.
pub fn verify_with_library(
    secret: &str,
    deliveries: &[Delivery],
) -> Vec<Result<serde_json::Value, String>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("verify_webhooks.py");
    let input = serde_json::json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|d| serde_json::json!({
            "headers": {
                "webhook-id": d.webhook_id,
                "webhook-timestamp": d.timestamp,
                "webhook-signature": d.signature,
            },
            "body": String::from_utf8_lossy(&d.body),
        })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new(verifier_python())
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the verifier");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("verifier");
    assert!(
        out.status.success(),
        "verifier: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("results");
    results
        .into_iter()
        .map(|r| match r.get("error").and_then(|e| e.as_str()) {
            Some(e) => Err(e.to_owned()),
            None => Ok(r["payload"].clone()),
        })
        .collect()
}
