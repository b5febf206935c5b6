//! The worker's RabbitMQ session: one channel to consume intakes, one for the dead-letter
//! records, one in confirm mode to move messages to a retry delay queue or to the
//! dead-letter exchange. A message is acknowledged only after the broker has confirmed its
//! copy, so a lead is never in neither place; the intakes' acknowledgements go together
//! ([`crate::acks`]).

use crate::acks::{AckWindow, Frame};
use anyhow::{Context, bail};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use shared::amqp::Topology;
use shared::config::Settings;
use shared::intake::headers;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::warn;

/// Most dead-letter records a worker holds unacknowledged.
const RECORDS_PREFETCH: u16 = 32;

/// A live connection and its channels.
pub struct Session {
    pub connection: Connection,
    /// Deliveries of `leads.intake` arrive here, at most `prefetch` unacknowledged. Nothing
    /// else is consumed on it: its acknowledgements cover runs of its delivery tags.
    pub consume: Channel,
    /// The dead-letter records' queue.
    pub records: Channel,
    /// Retries and dead letters, each awaited for its publisher confirm.
    pub publish: Channel,
    pub topology: Topology,
    /// The intakes received on `consume` and not yet acknowledged; held while a frame it
    /// made is sent, so frames go out in the order they were made.
    acks: Mutex<AckWindow>,
}

impl Session {
    /// Connects, declares the topology (every worker does, so a fresh broker works) and
    /// sets the prefetch.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let connection = shared::amqp::connect(&settings.amqp_url, ConnectionProperties::default())
            .await
            .context("Failed to connect to RabbitMQ")?;
        let topology = Topology::from_settings(settings);
        let consume = connection
            .create_channel()
            .await
            .context("Failed to open a channel")?;
        topology
            .declare(&consume)
            .await
            .context("Failed to declare the queues")?;
        consume
            .basic_qos(settings.worker.prefetch, BasicQosOptions::default())
            .await
            .context("Failed to set the prefetch")?;
        let records = connection
            .create_channel()
            .await
            .context("Failed to open a channel")?;
        records
            .basic_qos(RECORDS_PREFETCH, BasicQosOptions::default())
            .await
            .context("Failed to set the prefetch")?;
        let publish = connection
            .create_channel()
            .await
            .context("Failed to open a channel")?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("Failed to enable publisher confirms")?;
        // Settled intakes wait behind an earlier one still in its transaction, up to half
        // the prefetch (four batches of 64 by default): past that, the window would run
        // out before the earlier one ends, and they are acknowledged one by one.
        let acks = Mutex::new(AckWindow::new(usize::from(settings.worker.prefetch / 2)));
        Ok(Self {
            connection,
            consume,
            records,
            publish,
            topology,
            acks,
        })
    }

    /// Starts consuming the intake queue.
    pub async fn consume(&self, tag: &str) -> anyhow::Result<Consumer> {
        self.consume
            .basic_consume(
                self.topology.intake_queue().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("Failed to start consuming")
    }

    /// Sends `delivery` to the delay queue of retry step `step`, from which it comes back
    /// to the intake queue; `attempts` is the number of attempts made so far.
    pub async fn publish_retry(
        &self,
        delivery: &Delivery,
        step: usize,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let Some(queue) = self.topology.retry_queue(step) else {
            bail!("no retry step {step}");
        };
        let props = with_headers(&delivery.properties, attempts, None);
        self.confirmed_publish("", &queue, &delivery.data, props)
            .await
    }

    /// Sends `delivery` to the dead-letter exchange with why and after how many attempts.
    pub async fn publish_dead(
        &self,
        delivery: &Delivery,
        reason: &str,
        attempts: u32,
    ) -> anyhow::Result<()> {
        let props = with_headers(&delivery.properties, attempts, Some(reason));
        self.confirmed_publish(&self.topology.dead_exchange(), "", &delivery.data, props)
            .await
    }

    async fn confirmed_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> anyhow::Result<()> {
        let confirm = self
            .publish
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                // Mandatory: a missing queue comes back as a return instead of vanishing.
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await
            .context("Failed to publish")?
            .await
            .context("Failed to get the publisher confirm")?;
        if confirm.is_nack() {
            bail!("the broker refused the message (nack)");
        }
        if confirm.take_message().is_some() {
            bail!("the message was unroutable ({exchange:?} → {routing_key:?})");
        }
        Ok(())
    }

    /// `delivery` arrived on the intake consumer (call in the order they arrive, before it
    /// can be settled).
    pub async fn received(&self, delivery: &Delivery) {
        self.acks.lock().await.received(delivery.delivery_tag);
    }

    /// Acknowledges `deliveries` of the intake consumer: at once where every earlier one is
    /// settled too, else when the earlier ones are (see [`crate::acks`]).
    pub async fn ack(&self, deliveries: &[&Delivery]) {
        let mut window = self.acks.lock().await;
        let frames = window.ack(deliveries.iter().map(|d| d.delivery_tag));
        self.send(&frames).await;
    }

    /// Hands `delivery` back to the queue, after a pause that keeps a persistent broker
    /// problem from turning into a hot loop.
    pub async fn requeue(&self, delivery: &Delivery) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let nack = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        if let Err(e) = delivery.acker.nack(nack).await {
            warn!(error = %e, "Failed to return a message to the queue");
        }
        let mut window = self.acks.lock().await;
        let frames = window.gone(delivery.delivery_tag);
        self.send(&frames).await;
    }

    /// Acknowledges every settled intake still waiting behind an unsettled one (the
    /// session is ending; the unsettled ones go back to the queue with the channel).
    pub async fn flush_acks(&self) {
        let mut window = self.acks.lock().await;
        let frames = window.drain();
        self.send(&frames).await;
    }

    /// Sends `frames` in order (the caller holds the window).
    async fn send(&self, frames: &[Frame]) {
        for frame in frames {
            let (tag, multiple, kind) = match *frame {
                Frame::UpTo(tag) => (tag, true, "run"),
                Frame::One(tag) => (tag, false, "single"),
            };
            metrics::counter!(crate::ops_server::ACK_FRAMES, "kind" => kind).increment(1);
            if let Err(e) = self
                .consume
                .basic_ack(tag, BasicAckOptions { multiple })
                .await
            {
                // The channel is gone: the broker delivers them again, and the intake id
                // makes that a no-op.
                warn!(error = %e, "Failed to acknowledge");
                return;
            }
        }
    }

    /// Closes channels and connection; unacknowledged deliveries go back to the queue.
    pub async fn close(&self) {
        let _ = self.consume.close(200, "worker stopping".into()).await;
        let _ = self.records.close(200, "worker stopping".into()).await;
        let _ = self.publish.close(200, "worker stopping".into()).await;
        let _ = self.connection.close(200, "worker stopping".into()).await;
    }
}

/// The original properties (message id, content type, trace context, …) with the attempt
/// count and, for a dead letter, the reason; persistent, like the original.
fn with_headers(props: &BasicProperties, attempts: u32, reason: Option<&str>) -> BasicProperties {
    let mut table = props.headers().clone().unwrap_or_default();
    table.insert(
        ShortString::from(headers::ATTEMPTS),
        AMQPValue::LongLongInt(i64::from(attempts)),
    );
    if let Some(reason) = reason {
        // Header values are bounded; a reason is a short text, cut at a char boundary.
        let short: String = reason.chars().take(500).collect();
        table.insert(
            ShortString::from(headers::DEAD_REASON),
            AMQPValue::LongString(short.into()),
        );
    }
    props.clone().with_headers(table).with_delivery_mode(2)
}
