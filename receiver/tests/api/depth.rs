//! Queue-depth gauges read from the broker.

use crate::helpers::{eventually, lead, spawn_app_with};
use hyper::StatusCode;
use std::time::Duration;

#[tokio::test]
async fn queue_depth_gauges_follow_the_broker() {
    let app =
        spawn_app_with(|s| s.receiver.queue_depth_interval = Duration::from_millis(100)).await;
    let topology = app.topology();
    let intake = format!(
        "lead_intake_queue_depth{{queue=\"{}\"}}",
        topology.intake_queue()
    );
    let dead = format!(
        "lead_intake_queue_depth{{queue=\"{}\"}}",
        topology.dead_queue()
    );
    for _ in 0..3 {
        assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    }
    eventually(
        "the intake queue's depth is 3 and the dead-letter queue's is reported",
        Duration::from_secs(10),
        || async {
            let text = app.metrics_text().await;
            (crate::helpers::metric_value(&text, &intake) == 3.0 && text.contains(&dead))
                .then_some(())
        },
    )
    .await;
    assert_eq!(app.metric(&dead).await, 0.0);

    // Taken out of the queue, the gauge follows.
    app.drain_queue().await;
    eventually(
        "the intake queue's depth drops to 0",
        Duration::from_secs(10),
        || async { (app.metric(&intake).await == 0.0).then_some(()) },
    )
    .await;
}
