//! One Redis pub/sub subscription kept alive in the background: connects, subscribes,
//! hands every message to a callback, and reconnects with growing delays when the
//! connection is lost, until told to stop. Intake outcomes (synchronous mode) and token
//! revocations both arrive this way.

use shared::runtime::Backoff;
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Reconnection delays grow from the first to the last.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// A connection or subscription attempt that takes longer has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What to subscribe to.
#[derive(Debug, Clone)]
pub enum Topic {
    Channel(String),
    Pattern(String),
}

/// Follows `topic` until `stop`: `on_state(true)` once subscribed, `on_state(false)` when the
/// subscription is lost, `on_message` with each message's payload in order. `what` names the
/// subscription in logs.
pub async fn follow<M, Fut>(
    redis_url: &str,
    topic: Topic,
    what: &'static str,
    stop: CancellationToken,
    mut on_state: impl FnMut(bool),
    mut on_message: M,
) where
    M: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = match redis::Client::open(redis_url) {
        Ok(client) => client,
        Err(error) => {
            tracing::warn!(%error, what, "Redis URL unusable; no subscription");
            return;
        }
    };
    let mut backoff = BACKOFF;
    while !stop.is_cancelled() {
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            match &topic {
                Topic::Channel(name) => pubsub.subscribe(name).await?,
                Topic::Pattern(pattern) => pubsub.psubscribe(pattern).await?,
            }
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                backoff.reset();
                on_state(true);
                tracing::debug!(what, "Subscribed");
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => break,
                        message = futures_util::StreamExt::next(&mut messages) => message,
                    };
                    match message {
                        Some(message) => on_message(message.get_payload_bytes().to_vec()).await,
                        None => {
                            tracing::warn!(what, "Lost a Redis subscription; reconnecting");
                            break;
                        }
                    }
                }
                on_state(false);
                if stop.is_cancelled() {
                    break;
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, what, retry_in_ms = backoff.peek_ms(), "Failed to subscribe");
            }
            Err(_) => {
                tracing::warn!(
                    what,
                    retry_in_ms = backoff.peek_ms(),
                    "Timed out subscribing"
                );
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff.delay()) => {}
        }
    }
}
