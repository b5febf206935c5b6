//! `spawn_app()`: a receiver on port 0 with its own database, AMQP prefix and Redis prefix,
//! an account, a user and a token; plus an HTTP client and queue helpers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use leadctl::admin;
use receiver::Application;
use serde_json::Value;
use shared::amqp::Topology;
use shared::config::Settings;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testkit::TestDb;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub settings: Settings,
    pub db: TestDb,
    pub account_id: i64,
    pub user_id: i64,
    pub token: String,
    pub token_id: i64,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Stops the receiver (as SIGTERM would) when the test ends.
    shutdown: Option<oneshot::Sender<()>>,
}

/// An HTTP answer with its body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    /// The body as text (HTML pages).
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name).and_then(|v| v.parse().ok())
    }
}

/// A receiver whose broker is reachable (waits for its connection).
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed by `tweak` first.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(tweak, None).await
}

/// A receiver whose account has its own intake limit.
pub async fn spawn_app_with_limit(limit: i32, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(tweak, Some(limit)).await
}

/// A receiver serving at once, its broker connection still being opened.
pub async fn spawn_app_connecting_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_as(tweak, None, false).await
}

async fn spawn(tweak: impl FnOnce(&mut Settings), account_limit: Option<i32>) -> TestApp {
    spawn_as(tweak, account_limit, true).await
}

async fn spawn_as(
    tweak: impl FnOnce(&mut Settings),
    account_limit: Option<i32>,
    wait_for_broker: bool,
) -> TestApp {
    let db = TestDb::new().await;
    let mut settings = testkit::settings(&db);
    // A loaded test machine can stall a healthy Redis call past the production bound; the
    // tests that want Redis gone make it refuse connections instead.
    settings.receiver.redis_timeout = Duration::from_secs(2);
    tweak(&mut settings);
    let account = admin::create_account(&db.conn, "Acme", "US", account_limit)
        .await
        .expect("account");
    let user = admin::create_user(&db.conn, account.id, "Ada Agent", None, true, true)
        .await
        .expect("user");
    let token = admin::create_token(&db.conn, user.id, Some("test"))
        .await
        .expect("token");
    let app = Application::build(settings.clone()).await.expect("build");
    let addr = app.local_addr().expect("addr");
    if wait_for_broker && settings.amqp_url == testkit::amqp_url() {
        assert!(
            app.wait_for_broker(Duration::from_secs(15)).await,
            "the receiver did not connect to the broker"
        );
    }
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        settings,
        db,
        account_id: account.id,
        user_id: user.id,
        token: token.token,
        token_id: token.row.id,
        client: Client::builder(TokioExecutor::new()).build_http(),
        shutdown: Some(tx),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Any request.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.request_at(self.addr, method, path, headers, body)
            .await
    }

    /// Any request, to the receiver at `addr` (another receiver of the same settings).
    pub async fn request_at(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let url = format!("http://{addr}{path}");
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        let response = tokio::time::timeout(Duration::from_secs(20), self.client.request(request))
            .await
            .expect("the receiver answers in time")
            .expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// POSTs a JSON lead with the app's token as a bearer token.
    pub async fn post_lead(&self, lead: &Value) -> Reply {
        self.post_lead_as(&self.token, lead).await
    }

    pub async fn post_lead_as(&self, token: &str, lead: &Value) -> Reply {
        self.post_lead_at(self.addr, token, lead).await
    }

    /// POSTs a JSON lead to the receiver at `addr`.
    pub async fn post_lead_at(&self, addr: SocketAddr, token: &str, lead: &Value) -> Reply {
        let auth = format!("Bearer {token}");
        self.request_at(
            addr,
            Method::POST,
            "/api/v1/webhook/forms",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            serde_json::to_vec(lead).expect("json"),
        )
        .await
    }

    /// POSTs raw bytes with a content type (no token unless the body or path has one).
    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("content-type", c)])
            .unwrap_or_default();
        self.request(Method::POST, path, &headers, body.to_owned())
            .await
    }

    /// A second receiver with the same settings (database, broker, Redis prefix), as in a
    /// deployment of several; it stops when the returned sender is dropped.
    pub async fn spawn_peer(&self) -> (SocketAddr, oneshot::Sender<()>) {
        let mut settings = self.settings.clone();
        settings.receiver.addr = "127.0.0.1:0".into();
        let app = Application::build(settings).await.expect("build");
        let addr = app.local_addr().expect("addr");
        assert!(
            app.wait_for_broker(Duration::from_secs(15)).await,
            "the receiver did not connect to the broker"
        );
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// A second token of the app's user.
    pub async fn another_token(&self) -> admin::NewToken {
        admin::create_token(&self.db.conn, self.user_id, Some("second"))
            .await
            .expect("token")
    }

    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    /// Takes every message now in the intake queue.
    pub async fn drain_queue(&self) -> Vec<lapin::message::BasicGetMessage> {
        let conn = amqp().await;
        let channel = conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(message) = channel
            .basic_get(
                self.topology().intake_queue().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get")
        {
            out.push(message);
        }
        let _ = conn.close(200, "done".into()).await;
        out
    }

    /// Messages now in the intake queue (the queue must exist).
    pub async fn queue_len(&self) -> u32 {
        let conn = amqp().await;
        let channel = conn.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                self.topology().intake_queue().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("the intake queue exists");
        let _ = conn.close(200, "done".into()).await;
        queue.message_count()
    }

    /// The value of a metric sample (`name` or `name{labels}` as rendered), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics_text().await, sample)
    }

    pub async fn metrics_text(&self) -> String {
        let request = Request::get(self.url("/metrics"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = self.client.request(request).await.expect("metrics");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.settings.redis_url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }

    /// Waits up to 10 s until at least `receivers` receivers listen on the token-change
    /// channel (an announcement made before would go unheard).
    pub async fn wait_for_token_listeners(&self, receivers: i64) {
        testkit::wait_for_token_listeners(&self.settings, receivers).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Clean up through the real services: a test's proxy lives on the runtime this
        // drop blocks.
        let mut settings = self.settings.clone();
        settings.amqp_url = testkit::amqp_url();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                testkit::delete_topology(&settings).await;
                delete_redis_keys(&testkit::redis_url(), &settings.redis_prefix).await;
            });
        })
        .join();
    }
}

/// Deletes every Redis key under `prefix` (SCAN, not KEYS: Redis is shared with other
/// tests and KEYS blocks it).
pub async fn delete_redis_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

pub async fn amqp() -> lapin::Connection {
    lapin::Connection::connect(&testkit::amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("broker")
}

pub use testkit::{eventually, metric_value};

/// An address nothing listens on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// A minimal valid lead.
pub fn lead() -> Value {
    serde_json::json!({ "phone_number": "(818) 123-4567", "first_name": "Ada" })
}

/// An answer read off a raw connection: the status, the head as text, the body as JSON
/// (`Null` when it is not JSON).
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Value,
}

/// Sends `request` byte for byte on a new connection while reading the answer, until the
/// server closes it or 10 s pass. The server may answer (and close) before the request is
/// all written: the rest is then dropped, as a client's would be.
pub async fn raw_request(addr: SocketAddr, request: Vec<u8>) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for chunk in request.chunks(16 * 1024) {
            if write.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = write.flush().await;
        // Kept open (no FIN) until the answer is read, as a client awaiting it would.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
        if answer_complete(&buf) {
            break;
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawReply {
        status,
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// A whole answer with a `content-length` has arrived.
fn answer_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .is_some_and(|len| body.len() >= len)
}

impl TestApp {
    /// The receiver still answers: `GET /healthz` is 200.
    pub async fn assert_up(&self, after: &str) {
        let reply = self.request(Method::GET, "/healthz", &[], "").await;
        assert_eq!(reply.status, StatusCode::OK, "not healthy after {after}");
    }
}
