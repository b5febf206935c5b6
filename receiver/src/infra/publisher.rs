//! The RabbitMQ side of the receiver: one connection, a few channels in confirm mode, and a
//! keeper task that (re)connects, declares the topology and notices breakage by itself.
//!
//! A lead is published persistent and `mandatory` on one of the channels, and counts as
//! queued only when the broker acks it without returning it: an ack means a quorum of the
//! queue's replicas stored it, a return means no queue was bound to take it. Many publishes
//! are in flight on each channel at once; each request awaits only its own confirm.

use crate::infra::prometheus;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use shared::amqp::{INTAKE_ROUTING_KEY, Topology};
use shared::intake::{IntakeMessage, headers};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the keeper checks that the connection and every channel are still open.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Reconnection delays grow from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection attempt that takes longer has failed (a black-holed address).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Persistent delivery: the message is written to disk by every replica.
const PERSISTENT: u8 = 2;

/// Why a lead was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("not connected to the broker")]
    Unavailable,
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue took the message (returned: {0})")]
    Returned(String),
    #[error("no confirm within the publish timeout")]
    Timeout,
    #[error("Failed to publish: {0}")]
    Failed(#[from] lapin::Error),
    #[error("Failed to encode the message: {0}")]
    Encode(#[from] serde_json::Error),
}

impl PublishError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Nacked => "nack",
            Self::Returned(_) => "returned",
            Self::Timeout => "timeout",
            Self::Failed(_) | Self::Encode(_) => "error",
        }
    }
}

/// An open connection and its publishing channels.
struct Link {
    connection: Connection,
    channels: Vec<Channel>,
    /// Set when the broker refused a publish on this link. Nothing here asks for a refusal
    /// (no length limit on the intake queue), so it means the channels' view of the queue
    /// is stale: a quorum queue whose leader's node died while the channel was being
    /// opened keeps refusing that channel's publishes after a new leader is elected.
    /// The link is replaced; fresh channels find the new leader.
    refused: AtomicBool,
}

impl Link {
    fn healthy(&self) -> bool {
        !self.refused.load(Ordering::Relaxed)
            && self.connection.status().connected()
            && self.channels.iter().all(|c| c.status().connected())
    }
}

pub struct Publisher {
    url: String,
    topology: Topology,
    channels: usize,
    timeout: Duration,
    exchange: ShortString,
    routing_key: ShortString,
    /// The current link; `None` while disconnected.
    link: RwLock<Option<Arc<Link>>>,
    /// Round-robin over the channels.
    next: AtomicUsize,
    /// Wakes the keeper early when a publish hit a broken link.
    trouble: Notify,
    /// Wakes the publishes waiting for a link when one is set.
    connected: Notify,
}

impl Publisher {
    /// A publisher that is not connected yet; [`Self::run`] connects it.
    /// `channels`: at least 1 (`receiver.publish_channels`, checked when settings load).
    pub fn new(url: &str, topology: Topology, channels: usize, timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            exchange: topology.exchange().into(),
            routing_key: INTAKE_ROUTING_KEY.into(),
            topology,
            channels,
            timeout,
            link: RwLock::new(None),
            next: AtomicUsize::new(0),
            trouble: Notify::new(),
            connected: Notify::new(),
        }
    }

    /// Whether a healthy connection is open now.
    pub fn is_connected(&self) -> bool {
        self.current().is_some_and(|l| l.healthy())
    }

    /// Keeps a link open until `stop`, reconnecting with growing delays; closes it at the end.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        while !stop.is_cancelled() {
            match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
                Ok(Ok(link)) => {
                    tracing::info!(channels = link.channels.len(), "Connected to the broker");
                    backoff = BACKOFF_MIN;
                    let link = Arc::new(link);
                    self.set(Some(link.clone()));
                    self.watch(&link, &stop).await;
                    self.set(None);
                    if stop.is_cancelled() {
                        let _ = link.connection.close(200, "receiver stopping".into()).await;
                        break;
                    }
                    tracing::warn!("Lost the broker connection; reconnecting");
                    let _ = link.connection.close(320, "reconnecting".into()).await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Failed to connect to the broker");
                }
                Err(_) => {
                    tracing::warn!(
                        retry_in_ms = backoff.as_millis() as u64,
                        "Timed out connecting to the broker"
                    );
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Waits up to `timeout` for a connection; whether there is one.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.link_within(timeout).await.is_some() && self.is_connected()
    }

    /// The current link, or the first one set within `timeout`: a lead that arrives while
    /// the receiver is (re)connecting waits for the connection instead of being refused.
    async fn link_within(&self, timeout: Duration) -> Option<Arc<Link>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let connected = self.connected.notified();
            tokio::pin!(connected);
            // Registered before the look, so a link set in between is not missed.
            connected.as_mut().enable();
            if let Some(link) = self.current() {
                return Some(link);
            }
            if tokio::time::timeout_at(deadline, connected).await.is_err() {
                return self.current();
            }
        }
    }

    /// Publishes `message` and waits for the broker's confirm.
    pub async fn publish(
        &self,
        message: &IntakeMessage,
        traceparent: &str,
    ) -> Result<(), PublishError> {
        let result = self.try_publish(message, traceparent).await;
        if let Err(error) = &result {
            metrics::counter!(prometheus::PUBLISH_FAILURES, "reason" => error.reason())
                .increment(1);
            if matches!(error, PublishError::Failed(_) | PublishError::Unavailable) {
                self.trouble.notify_one();
            }
        }
        result
    }

    async fn try_publish(
        &self,
        message: &IntakeMessage,
        traceparent: &str,
    ) -> Result<(), PublishError> {
        // One bound for the whole publish: the wait for a connection, then the confirm.
        let started = Instant::now();
        let link = self
            .link_within(self.timeout)
            .await
            .ok_or(PublishError::Unavailable)?;
        let channel = link
            .channels
            .get(self.next.fetch_add(1, Ordering::Relaxed) % link.channels.len())
            .ok_or(PublishError::Unavailable)?;
        let body = serde_json::to_vec(message)?;
        let mut table = FieldTable::default();
        table.insert(
            headers::ACCOUNT_ID.into(),
            AMQPValue::LongLongInt(message.account_id),
        );
        table.insert(
            headers::USER_ID.into(),
            AMQPValue::LongLongInt(message.user_id),
        );
        table.insert(
            headers::TRACEPARENT.into(),
            AMQPValue::LongString(traceparent.into()),
        );
        let properties = BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type("application/json".into())
            .with_message_id(message.intake_id.to_string().into())
            .with_timestamp(u64::try_from(message.received_at.timestamp()).unwrap_or(0))
            .with_app_id("receiver".into())
            .with_headers(table);
        let options = BasicPublishOptions {
            // Unroutable (no bound queue) comes back as a return instead of vanishing.
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let sent = Instant::now();
        let confirmed =
            tokio::time::timeout(self.timeout.saturating_sub(started.elapsed()), async {
                channel
                    .basic_publish(
                        self.exchange.clone(),
                        self.routing_key.clone(),
                        options,
                        &body,
                        properties,
                    )
                    .await?
                    .await
            })
            .await;
        metrics::histogram!(prometheus::PUBLISH_CONFIRM).record(sent.elapsed().as_secs_f64());
        match confirmed {
            Err(_) => Err(PublishError::Timeout),
            Ok(Err(error)) => Err(PublishError::Failed(error)),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                Err(PublishError::Returned(returned.reply_text.to_string()))
            }
            Ok(Ok(Confirmation::Nack(_))) | Ok(Ok(Confirmation::NotRequested)) => {
                // (NotRequested cannot happen: confirm mode is selected on every channel
                // before it is used.)
                if !link.refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!("The broker refused a publish; replacing the connection");
                }
                self.trouble.notify_one();
                Err(PublishError::Nacked)
            }
        }
    }

    /// A new channel on the current connection, for work that must not disturb the
    /// publishing channels (a failed passive declare closes its channel).
    pub async fn open_channel(&self) -> Option<Channel> {
        let link = self.current()?;
        link.connection.create_channel().await.ok()
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.link.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, link: Option<Arc<Link>>) {
        let up = link.is_some();
        *self.link.write().unwrap_or_else(|e| e.into_inner()) = link;
        if up {
            self.connected.notify_waiters();
        }
    }

    async fn connect(&self) -> lapin::Result<Link> {
        let properties = ConnectionProperties::default().with_connection_name("receiver".into());
        let connection = shared::amqp::connect(&self.url, properties).await?;
        let mut channels = Vec::with_capacity(self.channels);
        for _ in 0..self.channels {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channels.push(channel);
        }
        if let Some(first) = channels.first() {
            self.topology.declare(first).await?;
        }
        Ok(Link {
            connection,
            channels,
            refused: AtomicBool::new(false),
        })
    }

    /// Returns when the link breaks or `stop` fires.
    async fn watch(&self, link: &Link, stop: &CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.trouble.notified() => {}
                _ = tokio::time::sleep(CHECK_EVERY) => {}
            }
            if !link.healthy() {
                return;
            }
        }
    }
}
