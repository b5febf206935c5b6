//! The worker's RabbitMQ session: one channel to consume intakes, one in confirm mode to move
//! messages to a retry delay queue or to the dead-letter exchange. A message is acknowledged
//! only after the broker has confirmed its copy, so a lead is never in neither place.

use anyhow::{Context, bail};
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use shared::amqp::Topology;
use shared::config::Settings;
use shared::intake::headers;

/// A live connection and its channels.
pub struct Session {
    pub connection: Connection,
    /// Deliveries of `leads.intake` arrive here, at most `prefetch` unacknowledged.
    pub consume: Channel,
    /// Retries and dead letters, each awaited for its publisher confirm.
    pub publish: Channel,
    pub topology: Topology,
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
        let publish = connection
            .create_channel()
            .await
            .context("Failed to open a channel")?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("Failed to enable publisher confirms")?;
        Ok(Self {
            connection,
            consume,
            publish,
            topology,
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

    /// Closes channels and connection; unacknowledged deliveries go back to the queue.
    pub async fn close(&self) {
        let _ = self.consume.close(200, "worker stopping".into()).await;
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
