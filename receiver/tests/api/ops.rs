//! What operators read besides `/metrics`: the per-second intake answer counts in Redis
//! (`leadctl status`), and the consumer and retry-queue gauges.

use crate::helpers::{eventually, lead, spawn_app_with};
use hyper::StatusCode;
use redis::AsyncCommands;
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn intake_answers_are_counted_per_second_in_redis() {
    let app = spawn_app_with(|_| {}).await;
    // Set before the token's first use, which caches it.
    leadctl::admin::sources::set_google_key(&app.db.conn, app.token_id, Some("k"))
        .await
        .unwrap();
    let since = chrono::Utc::now().timestamp();
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    let invalid = serde_json::json!({"first_name": "no phone"});
    assert_eq!(
        app.post_lead(&invalid).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.post_lead_as("not-a-token", &lead()).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A bulk request counts each of its leads (202, 202, 400), not its 207.
    let bulk = serde_json::json!([{"phone_number": "(818) 555-0101"}, {"phone_number": "(818) 555-0102"},
                                  {"first_name": "no phone"}]);
    let auth = format!("Bearer {}", app.token);
    let answered = app
        .request(
            hyper::Method::POST,
            "/api/v1/webhook/forms/bulk",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            bulk.to_string(),
        )
        .await;
    assert_eq!(answered.status, StatusCode::MULTI_STATUS);
    // A Google Ads lead counts with its answer (200).
    let ads = serde_json::json!({"lead_id": "ops-1", "google_key": "k", "is_test": false,
        "user_column_data": [{"column_id": "PHONE_NUMBER", "string_value": "+16505550123"}]});
    let ads_path = format!("/api/v1/webhook/google-ads?api_token={}", app.token);
    let answered = app
        .post_raw(&ads_path, Some("application/json"), &ads.to_string())
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    // Read requests are not intakes.
    app.request(hyper::Method::GET, "/healthz", &[], "").await;

    let mut redis = app.redis().await;
    let prefix = app.settings.redis_prefix.clone();
    let counted = eventually(
        "eight intake answers counted within 10 s",
        Duration::from_secs(10),
        || {
            let mut redis = redis.clone();
            let prefix = prefix.clone();
            async move {
                let mut total: BTreeMap<String, u64> = BTreeMap::new();
                for s in since..=chrono::Utc::now().timestamp() {
                    let key = shared::status::intake_stats_key(&prefix, s);
                    let second: BTreeMap<String, u64> = redis.hgetall(&key).await.ok()?;
                    for (status, n) in second {
                        *total.entry(status).or_default() += n;
                    }
                }
                (total.values().sum::<u64>() == 8).then_some(total)
            }
        },
    )
    .await;
    assert_eq!(
        counted,
        BTreeMap::from([
            ("200".into(), 1),
            ("202".into(), 4),
            ("400".into(), 2),
            ("401".into(), 1)
        ])
    );
    // The same counts by source in the metrics, for the dashboard.
    let metrics = app.metrics_text().await;
    for line in [
        r#"receiver_intake_leads_total{source="bulk",status="202"} 2"#,
        r#"receiver_intake_leads_total{source="bulk",status="400"} 1"#,
        r#"receiver_intake_leads_total{source="form",status="202"} 2"#,
        r#"receiver_intake_leads_total{source="google_ads",status="200"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    // Each second's hash expires by itself.
    let mut ttls = Vec::new();
    for second in since..=chrono::Utc::now().timestamp() {
        let ttl: i64 = redis
            .ttl(shared::status::intake_stats_key(&prefix, second))
            .await
            .expect("ttl");
        if ttl != -2 {
            ttls.push(ttl);
        }
    }
    assert!(
        !ttls.is_empty() && ttls.iter().all(|t| (1..=120).contains(t)),
        "every count expires within 120 s: {ttls:?}"
    );
}

#[tokio::test]
async fn every_queue_reports_its_depth_and_consumers() {
    let app =
        spawn_app_with(|s| s.receiver.queue_depth_interval = Duration::from_millis(100)).await;
    let topology = app.topology();
    let queues = topology.queues();
    assert!(queues.len() > 2, "intake, dead and the retry queues");
    let text = eventually(
        "a depth and a consumer count for every queue",
        Duration::from_secs(10),
        || async {
            let text = app.metrics_text().await;
            queues
                .iter()
                .all(|q| {
                    text.contains(&format!("lead_intake_queue_depth{{queue=\"{q}\"}}"))
                        && text.contains(&format!("lead_intake_queue_consumers{{queue=\"{q}\"}}"))
                })
                .then_some(text)
        },
    )
    .await;
    let consumers = format!(
        "lead_intake_queue_consumers{{queue=\"{}\"}}",
        topology.intake_queue()
    );
    assert_eq!(
        crate::helpers::metric_value(&text, &consumers),
        0.0,
        "no worker runs here"
    );
}
