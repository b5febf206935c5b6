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
    // Read requests are not intakes.
    app.request(hyper::Method::GET, "/healthz", &[], "").await;

    let mut redis = app.redis().await;
    let prefix = app.settings.redis_prefix.clone();
    let counted = eventually(
        "four intake answers counted within 10 s",
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
                (total.values().sum::<u64>() == 4).then_some(total)
            }
        },
    )
    .await;
    assert_eq!(
        counted,
        BTreeMap::from([("202".into(), 2), ("400".into(), 1), ("401".into(), 1)])
    );
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
