//! Synchronous mode (`Prefer: wait=N`) with a real worker running in-process against the
//! same database, broker prefix and Redis prefix.

use crate::helpers::{Reply, TestApp, eventually, spawn_app};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A worker consuming the app's queue until dropped.
pub(crate) struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub(crate) async fn start(app: &TestApp) -> Self {
        let worker = worker::app::Worker::build(app.settings.clone())
            .await
            .expect("worker");
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(worker.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            done,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
    }
}

/// Waits until the receiver hears outcome announcements.
async fn subscribed(app: &TestApp) {
    eventually(
        "the receiver subscribes to intake outcomes",
        Duration::from_secs(10),
        || async { (app.metric("receiver_outcome_subscription_up").await == 1.0).then_some(()) },
    )
    .await;
}

async fn post_waiting(app: &TestApp, prefer: &str, lead: &Value) -> Reply {
    post_waiting_with(app, prefer, lead, &[]).await
}

async fn post_waiting_with(
    app: &TestApp,
    prefer: &str,
    lead: &Value,
    extra: &[(&str, &str)],
) -> Reply {
    let auth = format!("Bearer {}", app.token);
    let mut headers = vec![
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("prefer", prefer),
    ];
    headers.extend_from_slice(extra);
    app.request(
        Method::POST,
        "/api/v1/webhook/forms",
        &headers,
        serde_json::to_vec(lead).unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_retry_of_a_synchronous_request_gets_its_final_answer_again() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    subscribed(&app).await;
    let lead = json!({"phone_number": "(818) 123-4599", "first_name": "Ada"});
    let key = [("idempotency-key", "campaign-9-row-1")];
    let first = post_waiting_with(&app, "wait=10", &lead, &key).await;
    assert_finished(&first, StatusCode::CREATED, "Contact created.", "created");
    assert_eq!(first.header("idempotent-replayed"), None);

    // With or without the wait preference, the retry gets the 201 it was answered with.
    for prefer in ["wait=10", "wait=1"] {
        let again = post_waiting_with(&app, prefer, &lead, &key).await;
        assert_finished(&again, StatusCode::CREATED, "Contact created.", "created");
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    let plain = app
        .request(
            Method::POST,
            "/api/v1/webhook/forms",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {}", app.token)),
                key[0],
            ],
            serde_json::to_vec(&lead).unwrap(),
        )
        .await;
    assert_eq!(plain.status, StatusCode::CREATED);
    assert_eq!(plain.body, first.body);
    worker.stop().await;
}

fn assert_finished(reply: &Reply, status: StatusCode, message: &str, outcome: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.body["message"], message);
    assert_eq!(reply.body["status"], outcome);
    let id = reply.body["intake_id"].as_str().expect("intake_id");
    let url = format!("/api/v1/intakes/{id}");
    assert_eq!(reply.body["status_url"], url);
    assert_eq!(reply.header("location"), Some(url.as_str()));
}

#[tokio::test]
async fn waiting_answers_created_updated_and_duplicate_with_the_outcome() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    subscribed(&app).await;

    let lead = json!({"phone_number": "(818) 123-4567", "first_name": "Ada"});
    let created = post_waiting(&app, "wait=10", &lead).await;
    assert_finished(&created, StatusCode::CREATED, "Contact created.", "created");
    assert_eq!(created.header("preference-applied"), Some("wait=10"));
    let contact_id = created.body["contact_id"].as_i64().expect("contact_id");

    let update = json!({"phone_number": "8181234567", "first_name": "Ann", "force_update": true});
    // Larger waits are clamped to 10 s; other preferences alongside are fine.
    let updated = post_waiting(&app, "respond-async, wait=60", &update).await;
    assert_finished(&updated, StatusCode::OK, "Contact updated.", "updated");
    assert_eq!(updated.header("preference-applied"), Some("wait=10"));
    assert_eq!(updated.body["contact_id"], contact_id);

    // The same lead again without force_update changes nothing.
    let same = json!({"phone_number": "818-123-4567", "first_name": "Ann"});
    let duplicate = post_waiting(&app, "wait=5", &same).await;
    assert_finished(
        &duplicate,
        StatusCode::ACCEPTED,
        "Lead accepted.",
        "duplicate",
    );
    assert_eq!(duplicate.header("preference-applied"), Some("wait=5"));
    assert_eq!(duplicate.body["contact_id"], contact_id);

    // The answer is the same the read API gives.
    let id = updated.body["intake_id"].as_str().unwrap();
    let auth = format!("Bearer {}", app.token);
    let status = app
        .request(
            Method::GET,
            &format!("/api/v1/intakes/{id}"),
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(status.body["status"], "updated");

    // Without the header (or with a malformed one) nothing changes: 202 at once.
    for prefer in [None, Some("wait=soon"), Some("wait=0")] {
        let reply = match prefer {
            Some(p) => post_waiting(&app, p, &lead).await,
            None => app.post_lead(&lead).await,
        };
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{prefer:?}");
        assert_eq!(reply.body["message"], "Lead accepted.");
        assert!(reply.body.get("status").is_none(), "{prefer:?}");
        assert!(reply.header("preference-applied").is_none(), "{prefer:?}");
    }
    assert!(
        app.metric("receiver_sync_waits_total{result=\"outcome\"}")
            .await
            >= 3.0
    );
    worker.stop().await;
}

#[tokio::test]
async fn without_an_outcome_in_time_the_answer_is_the_plain_202() {
    let app = spawn_app().await;
    subscribed(&app).await;
    // No worker runs: the lead stays queued.
    let started = Instant::now();
    let reply = post_waiting(&app, "wait=1", &json!({"phone_number": "8181234567"})).await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_eq!(reply.body["message"], "Lead accepted.");
    assert!(reply.body["intake_id"].is_string());
    assert!(reply.header("location").is_some());
    assert_eq!(reply.header("preference-applied"), Some("wait=1"));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "waited the asked second: {took:?}"
    );
    assert_eq!(app.queue_len().await, 1);

    // An Idempotency-Key replay answers the first 202 at once, queueing nothing.
    let auth = format!("Bearer {}", app.token);
    let keyed = |prefer: &'static str| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/api/v1/webhook/forms",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                    ("idempotency-key", "form-1"),
                    ("prefer", prefer),
                ],
                r#"{"phone_number":"2125550100"}"#,
            )
            .await
        }
    };
    let first = keyed("wait=1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let started = Instant::now();
    let again = keyed("wait=1").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a replay does not wait"
    );
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["intake_id"], first.body["intake_id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.queue_len().await, 2);
}
