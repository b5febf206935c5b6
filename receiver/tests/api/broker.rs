use crate::helpers::{
    TestApp, amqp, closed_port, eventually, lead, spawn_app, spawn_app_connecting_with,
    spawn_app_with,
};
use hyper::{Method, StatusCode};
use lapin::options::QueueDeleteOptions;
use std::time::{Duration, Instant};
use testkit::proxy::proxied;

async fn broker_ready(app: &TestApp) -> bool {
    let reply = app.request(Method::GET, "/readyz", &[], "").await;
    reply.body["checks"]["broker"] == "ok"
}

fn assert_unavailable(reply: &crate::helpers::Reply) {
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        reply.body
    );
    assert!(reply.header_u64("retry-after").is_some_and(|s| s >= 1));
    assert!(reply.body["message"].is_string());
    assert!(reply.body.get("intake_id").is_none());
}

#[tokio::test]
async fn broker_unreachable_answers_503_and_never_202() {
    let dead = closed_port();
    let app = spawn_app_with(|s| {
        s.amqp_url = format!("amqp://guest:guest@{dead}/%2f");
        // Each lead waits this long for a connection before its 503.
        s.receiver.publish_timeout = Duration::from_millis(500);
    })
    .await;
    for _ in 0..3 {
        assert_unavailable(&app.post_lead(&lead()).await);
    }
    let ready = app.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["broker"], "unreachable");
    assert_eq!(ready.body["checks"]["redis"], "ok");
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert!(
        app.metric("receiver_publish_failures_total{reason=\"unavailable\"}")
            .await
            >= 3.0
    );
    assert_eq!(app.metric("receiver_leads_accepted_total").await, 0.0);
}

#[tokio::test]
async fn a_lead_that_arrives_while_the_broker_connection_opens_waits_for_it() {
    // The broker's side of the handshake held back: the receiver serves, still connecting.
    let (proxy, via) = proxied(&testkit::amqp_url()).await;
    proxy.stall();
    let app = std::sync::Arc::new(spawn_app_connecting_with(|s| s.amqp_url = via).await);
    let posted = tokio::spawn({
        let app = app.clone();
        async move { app.post_lead(&lead()).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!broker_ready(&app).await, "still connecting");
    assert!(!posted.is_finished(), "the lead waits for the connection");
    proxy.unstall();
    let reply = posted.await.expect("the post");
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert!(broker_ready(&app).await);
    assert_eq!(app.queue_len().await, 1);
}

#[tokio::test]
async fn the_receiver_reconnects_by_itself_when_the_broker_comes_back() {
    let (proxy, via) = proxied(&testkit::amqp_url()).await;
    let app = spawn_app_with(|s| {
        s.amqp_url = via;
        s.receiver.publish_timeout = Duration::from_millis(1_000);
    })
    .await;
    eventually("the broker ready", Duration::from_secs(15), || async {
        broker_ready(&app).await.then_some(())
    })
    .await;
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);

    proxy.down();
    let first = eventually("the outage is noticed", Duration::from_secs(5), || async {
        let reply = app.post_lead(&lead()).await;
        (reply.status != StatusCode::ACCEPTED).then_some(reply)
    })
    .await;
    assert_unavailable(&first);
    for _ in 0..3 {
        assert_unavailable(&app.post_lead(&lead()).await);
    }

    proxy.up();
    eventually(
        "leads are accepted again once the broker is back",
        Duration::from_secs(20),
        || async {
            let reply = app.post_lead(&lead()).await;
            (reply.status == StatusCode::ACCEPTED).then_some(reply)
        },
    )
    .await;
    assert!(broker_ready(&app).await);
    assert_eq!(
        app.queue_len().await,
        2,
        "only confirmed leads are in the queue"
    );
}

#[tokio::test]
async fn a_lead_no_queue_takes_is_refused_not_lost() {
    let app = spawn_app().await;
    let conn = amqp().await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_delete(
            app.topology().intake_queue().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "done".into()).await;

    assert_unavailable(&app.post_lead(&lead()).await);
    assert!(
        app.metric("receiver_publish_failures_total{reason=\"returned\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_broker_that_never_confirms_gets_503_within_the_publish_timeout_and_frees_the_key() {
    let (proxy, via) = proxied(&testkit::amqp_url()).await;
    let app = spawn_app_with(|s| {
        s.amqp_url = via;
        s.receiver.publish_timeout = Duration::from_millis(1_000);
    })
    .await;
    eventually(
        "connected through the proxy",
        Duration::from_secs(15),
        || async { broker_ready(&app).await.then_some(()) },
    )
    .await;
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);

    // Connected, publishing, but no confirm ever comes back.
    proxy.stall();
    let keyed = |key: &'static str| {
        let auth = format!("Bearer {}", app.token);
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/api/v1/webhook/forms",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                    ("idempotency-key", key),
                ],
                lead().to_string(),
            )
            .await
        }
    };
    let at = Instant::now();
    assert_unavailable(&app.post_lead(&lead()).await);
    assert_unavailable(&keyed("stalled-1").await);
    assert!(
        at.elapsed() < Duration::from_millis(2 * (1_000 + 1_000)),
        "each answered within the publish timeout ({:?} for two)",
        at.elapsed()
    );
    assert!(
        app.metric("receiver_publish_failures_total{reason=\"timeout\"}")
            .await
            >= 2.0,
        "{}",
        app.metrics_text().await
    );

    // The 503 gave the key back: once the broker answers again, the retry is a new intake,
    // not a 409 and not a replay.
    proxy.unstall();
    proxy.down();
    proxy.up();
    let retried = eventually(
        "the retry is accepted once the broker confirms again",
        Duration::from_secs(20),
        || async {
            let reply = keyed("stalled-1").await;
            (reply.status == StatusCode::ACCEPTED).then_some(reply)
        },
    )
    .await;
    assert_eq!(retried.header("idempotent-replayed"), None);
}
