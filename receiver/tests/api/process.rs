//! The `receiver` binary as operators run it: configured by environment, logging JSON,
//! stopped by SIGTERM.

use crate::helpers::{delete_redis_keys, eventually};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use leadctl::admin;
use serde_json::Value;
use shared::config::Settings;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    child: Child,
    addr: SocketAddr,
    /// Every line the process wrote to stdout and stderr.
    output: Arc<Mutex<Vec<String>>>,
    settings: Settings,
}

impl Running {
    async fn start(db: &TestDb) -> Self {
        let settings = testkit::settings(db);
        let delays: Vec<String> = settings
            .retry
            .delays
            .iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_receiver"))
            .env_remove("CONFIG_FILE")
            .env("DATABASE_URL", &settings.database_url)
            .env("REDIS_URL", &settings.redis_url)
            .env("AMQP_URL", &settings.amqp_url)
            .env("AMQP_PREFIX", &settings.amqp_prefix)
            .env("REDIS_PREFIX", &settings.redis_prefix)
            .env("RETRY__DELAYS", delays.join(","))
            .env("RECEIVER_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the receiver binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let addr = eventually(
            "the receiver logs its address",
            Duration::from_secs(30),
            || {
                let output = output.clone();
                async move {
                    output.lock().unwrap().iter().find_map(|line| {
                        let v: Value = serde_json::from_str(line).ok()?;
                        (v["fields"]["message"] == "Receiver listening")
                            .then(|| v["fields"]["addr"].as_str()?.parse().ok())
                            .flatten()
                    })
                }
            },
        )
        .await;
        let running = Self {
            child,
            addr,
            output,
            settings,
        };
        eventually(
            "the receiver becomes ready",
            Duration::from_secs(15),
            || async {
                let reply = running
                    .send(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                reply.starts_with("HTTP/1.1 200").then_some(())
            },
        )
        .await;
        running
    }

    /// Sends a raw request on a new connection and reads the whole answer.
    async fn send(&self, request: &[u8]) -> String {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return String::new();
        };
        if stream.write_all(request).await.is_err() {
            return String::new();
        }
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        eventually("the receiver exits", Duration::from_secs(20), || {
            let status = self.child.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }

    fn logged(&self, text: &str) -> bool {
        self.output.lock().unwrap().iter().any(|l| l.contains(text))
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    async fn queued(&self) -> u32 {
        let topology = shared::amqp::Topology::from_settings(&self.settings);
        let conn = crate::helpers::amqp().await;
        let channel = conn.create_channel().await.unwrap();
        let queue = channel
            .queue_declare(
                topology.intake_queue().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "done".into()).await;
        queue.message_count()
    }

    async fn cleanup(&self) {
        testkit::delete_topology(&self.settings).await;
        delete_redis_keys(&self.settings.redis_url, &self.settings.redis_prefix).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn seed_token(db: &TestDb) -> String {
    let account = admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .unwrap();
    let user = admin::create_user(&db.conn, account.id, "Ada", None, true, true)
        .await
        .unwrap();
    admin::create_token(&db.conn, user.id, None)
        .await
        .unwrap()
        .token
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_0() {
    let db = TestDb::new().await;
    let token = seed_token(&db).await;
    let mut running = Running::start(&db).await;

    // A request whose body is only half sent when SIGTERM arrives.
    let body = r#"{"phone_number":"8181234567","first_name":"Ada"}"#;
    let (first, rest) = body.split_at(20);
    let mut in_flight = TcpStream::connect(running.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/webhook/forms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    // SIGTERM once the receiver is answering it (its head read, its body awaited): a
    // connection the receiver has not taken from the accept queue yet, or whose head it
    // has not read, is not in flight and is closed by the shutdown.
    eventually("the request in flight", Duration::from_secs(10), || async {
        let metrics = running
            .send(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        // The metrics request counts itself.
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("receiver_in_flight_requests "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|n| *n >= 2.0)
            .map(|_| ())
    })
    .await;

    running.terminate();
    eventually("the signal is handled", Duration::from_secs(10), || async {
        running.logged("Shutting down").then_some(())
    })
    .await;
    // No new connections once draining started.
    eventually("the listener is closed", Duration::from_secs(5), || async {
        TcpStream::connect(running.addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;

    in_flight.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), in_flight.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let status = running.wait_exit().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(running.logged("Receiver stopped"));
    assert_eq!(running.queued().await, 1, "the drained lead was queued");
    running.cleanup().await;
}

#[tokio::test]
async fn tokens_never_appear_in_logs() {
    let db = TestDb::new().await;
    let token = seed_token(&db).await;
    let wrong = "lit_feedfacefeedfacefeedfacefeedfacefeedface";
    let mut running = Running::start(&db).await;

    let post = |path: String, headers: String, body: String| {
        let running = &running;
        async move {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            running.send(request.as_bytes()).await
        }
    };
    let json = "Content-Type: application/json\r\n".to_owned();
    let form = "Content-Type: application/x-www-form-urlencoded\r\n".to_owned();
    let answers = [
        post(
            "/api/v1/webhook/forms".into(),
            json.clone(),
            format!(r#"{{"api_token":"{token}","phone_number":"8181234567"}}"#),
        )
        .await,
        post(
            "/api/v1/webhook/forms".into(),
            form.clone(),
            format!("api_token={token}&phone_number=8181234567"),
        )
        .await,
        post(
            format!("/api/v1/webhook/forms?api_token={token}&phone_number=8181234567"),
            String::new(),
            String::new(),
        )
        .await,
        post(
            "/api/v1/webhook/forms".into(),
            format!("Authorization: Bearer {token}\r\nIdempotency-Key: k1\r\n{json}"),
            r#"{"phone_number":"8181234567"}"#.into(),
        )
        .await,
        post(
            "/api/v1/webhook/forms".into(),
            format!("Authorization: Bearer {token}\r\n{json}"),
            r#"{"phone_number":"nope","email":"x"}"#.into(),
        )
        .await,
        post(
            "/api/v1/webhook/forms".into(),
            format!("Authorization: Bearer {token}\r\n{json}"),
            format!(r#"{{"api_token":"{token}","#),
        )
        .await,
        post(
            "/api/v1/webhook/forms".into(),
            format!("Authorization: Bearer {wrong}\r\n{json}"),
            r#"{"phone_number":"8181234567"}"#.into(),
        )
        .await,
        post(
            format!("/api/v1/webhook/forms?api_token={wrong}"),
            form.clone(),
            "phone_number=8181234567".into(),
        )
        .await,
    ];
    let statuses: Vec<&str> = answers.iter().map(|a| a.get(9..12).unwrap_or("")).collect();
    assert_eq!(
        statuses,
        ["202", "202", "202", "202", "400", "400", "401", "401"]
    );

    running.terminate();
    assert!(running.wait_exit().await.success());
    let output = running.output();
    assert!(output.contains("Lead accepted"), "the logs were captured");
    assert!(output.lines().count() > 20, "trace logging was on");
    for secret in [token.as_str(), wrong] {
        let hex = &secret["lit_".len()..];
        assert!(
            !output.contains(hex),
            "a token appears in the logs:\n{}",
            output
                .lines()
                .filter(|l| l.contains(hex))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // Nor do the leads' contents: the number every request above carried.
    assert!(
        !output.contains("8181234567") && !output.contains("+18181234567"),
        "a lead's phone number appears in the logs"
    );
    running.cleanup().await;
}
