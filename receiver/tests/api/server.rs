use crate::helpers::{lead, spawn_app, spawn_app_with};
use hyper::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (or `limit` passes); what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let health = app.request(Method::GET, "/healthz", &[], "").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));

    let ready = app.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body,
        json!({"status": "ready", "checks": {"redis": "ok", "broker": "ok", "database": "ok"}})
    );
    assert_eq!(
        app.request(Method::POST, "/healthz", &[], "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );

    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.post_lead(&json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    let text = app.metrics_text().await;
    for sample in [
        "receiver_http_requests_total{route=\"/api/v1/webhook/forms\",status=\"202\"} 1",
        "receiver_http_requests_total{route=\"/api/v1/webhook/forms\",status=\"400\"} 1",
        "receiver_http_requests_total{route=\"/readyz\",status=\"200\"} 1",
        "receiver_leads_accepted_total 1",
        "receiver_publish_confirm_seconds_count 1",
        "receiver_http_request_duration_seconds_count{route=\"/api/v1/webhook/forms\"} 2",
    ] {
        assert!(text.contains(sample), "missing {sample:?} in\n{text}");
    }
    assert!(text.contains(
        "receiver_http_request_duration_seconds_bucket{route=\"/api/v1/webhook/forms\",le=\"0.005\"}"
    ));
}

#[tokio::test]
async fn slow_clients_cannot_hold_connections() {
    let app = spawn_app_with(|s| {
        s.receiver.header_timeout = Duration::from_millis(300);
        s.receiver.body_timeout = Duration::from_millis(300);
    })
    .await;

    // A client that never finishes its request head is disconnected.
    let started = Instant::now();
    let mut slow_head = TcpStream::connect(app.addr).await.unwrap();
    slow_head
        .write_all(b"POST /api/v1/webhook/forms HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_head, Duration::from_secs(5)).await;
    assert!(answer.is_some(), "closed by the server");
    assert!(started.elapsed() < Duration::from_secs(3));

    // A connection that sends nothing at all, too.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );

    // A body that does not arrive in time gets 408 and the connection is closed.
    let mut slow_body = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/webhook/forms?api_token={} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"phone_",
        app.token
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow_body, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // An idle keep-alive connection is closed after the same bound.
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .expect("closed after going idle");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let app = spawn_app_with(|s| {
        s.receiver.max_connections = 1;
        s.receiver.header_timeout = Duration::from_millis(1_000);
    })
    .await;
    // The only slot is taken by a client that sends nothing: connected first, it is first
    // in the listener's queue, so the server accepts it before the one below.
    let _holder = TcpStream::connect(app.addr).await.unwrap();

    let started = Instant::now();
    let mut waiting = TcpStream::connect(app.addr).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut waiting, Duration::from_secs(5))
        .await
        .expect("served once the slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "served only after the holder timed out ({:?})",
        started.elapsed()
    );
}
