//! Queue-depth gauges: how many leads wait in `leads.intake` (what worker autoscaling
//! follows), in each retry delay queue, and in `leads.dead` (what operators alert on), and
//! how many consumers each queue has (workers connected), read from the broker itself
//! every few seconds, so the numbers hold whichever process filled or drained the queues.

use crate::infra::prometheus;
use crate::infra::publisher::Publisher;
use lapin::Channel;
use shared::amqp::Topology;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reads the depths every `every` until `stop`. Uses a channel of its own on the
/// publisher's connection (a passive declare of a missing queue closes its channel, which
/// must never be a publishing one), reopened whenever it closed.
pub async fn run(
    publisher: Arc<Publisher>,
    topology: Topology,
    every: Duration,
    stop: CancellationToken,
) {
    let queues = topology.queues();
    let mut channel: Option<Channel> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if !channel.as_ref().is_some_and(|c| c.status().connected()) {
            channel = publisher.open_channel().await;
        }
        let Some(open) = &channel else {
            continue;
        };
        for queue in &queues {
            match shared::amqp::counts(open, queue).await {
                Ok(q) => {
                    metrics::gauge!(prometheus::QUEUE_DEPTH, "queue" => queue.clone())
                        .set(f64::from(q.depth));
                    metrics::gauge!(prometheus::QUEUE_CONSUMERS, "queue" => queue.clone())
                        .set(f64::from(q.consumers));
                }
                Err(error) => {
                    tracing::debug!(%error, queue, "Failed to read a queue's depth");
                    break;
                }
            }
        }
    }
    if let Some(channel) = channel
        && channel.status().connected()
    {
        let _ = channel.close(200, "receiver stopping".into()).await;
    }
}
