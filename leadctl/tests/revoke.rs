//! `leadctl token revoke`, run as the operator runs it (the built binary), reaches a
//! running receiver at once: the receiver had the token cached as valid for its 30 s TTL,
//! and refuses it within a second of the command's exit.

use std::process::Command;
use std::time::{Duration, Instant};
use testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status code of one JSON lead POSTed with `token` (a plain HTTP/1.1 exchange).
async fn post_lead(addr: std::net::SocketAddr, token: &str) -> u16 {
    let body = r#"{"phone_number":"(818) 123-4567","first_name":"Ada"}"#;
    let request = format!(
        "POST /api/v1/webhook/forms HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line")
}

#[tokio::test]
async fn token_revoke_through_the_binary_is_refused_by_a_running_receiver_at_once() {
    let db = TestDb::new().await;
    let mut settings = testkit::settings(&db);
    assert_eq!(settings.receiver.token_cache_ttl, Duration::from_secs(30));
    let account = leadctl::admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .expect("account")
        .id;
    let user = leadctl::admin::create_user(&db.conn, account, "Ann", None, true, true)
        .await
        .expect("user")
        .id;
    let token = leadctl::admin::create_token(&db.conn, user, None)
        .await
        .expect("token");
    settings.receiver.addr = "127.0.0.1:0".into();
    let app = receiver::Application::build(settings.clone())
        .await
        .expect("receiver");
    let addr = app.local_addr().expect("addr");
    assert!(app.wait_for_broker(Duration::from_secs(10)).await, "broker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    assert_eq!(post_lead(addr, &token.token).await, 202, "cached as valid");
    // The receiver hears of token changes once it has subscribed.
    testkit::wait_for_token_listeners(&settings, 1).await;

    let out = Command::new(env!("CARGO_BIN_EXE_leadctl"))
        .args(["token", "revoke", &token.row.id.to_string()])
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", &settings.redis_url)
        .env("REDIS_PREFIX", &settings.redis_prefix)
        .env_remove("CONFIG_FILE")
        .output()
        .expect("run leadctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked_at = Instant::now();
    let mut status = post_lead(addr, &token.token).await;
    while status != 401 && revoked_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = post_lead(addr, &token.token).await;
    }
    assert_eq!(status, 401, "refused after the revocation");
    assert!(
        revoked_at.elapsed() < Duration::from_secs(2),
        "refused within {:?}, long before the 30 s TTL",
        revoked_at.elapsed()
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), running).await;
}
