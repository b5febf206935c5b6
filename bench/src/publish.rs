//! RabbitMQ without the product in between: the confirmed backlog publish that fills
//! `leads.intake` before a worker drain, and the ceilings the pipeline is measured against —
//! a plain lapin publisher (publisher confirms, many in flight) and consumer (manual acks)
//! moving the same message bytes through a quorum queue declared by the same
//! `shared::amqp::Topology` code, so with exactly the arguments of `leads.intake`.

use crate::load::{LoadResult, Tally};
use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use shared::amqp::{INTAKE_ROUTING_KEY, Topology};
use shared::intake::{IntakeMessage, headers};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One message as bytes and properties, published over and over by the ceilings.
#[derive(Clone)]
pub struct Payload {
    pub body: Arc<Vec<u8>>,
    pub props: BasicProperties,
}

impl Payload {
    /// `m` serialized as the receiver serializes it.
    pub fn of(m: &IntakeMessage) -> anyhow::Result<Self> {
        Ok(Self {
            body: Arc::new(serde_json::to_vec(m).context("Failed to serialize a message")?),
            props: properties(m),
        })
    }
}

/// The properties the receiver publishes a lead with (persistent, JSON, message id = intake
/// id, the account and user headers), so queued messages are the same size.
pub fn properties(m: &IntakeMessage) -> BasicProperties {
    let mut table = FieldTable::default();
    table.insert(
        headers::ACCOUNT_ID.into(),
        AMQPValue::LongLongInt(m.account_id),
    );
    table.insert(headers::USER_ID.into(), AMQPValue::LongLongInt(m.user_id));
    table.insert(
        headers::TRACEPARENT.into(),
        AMQPValue::LongString("00-00000000000000000000000000000000-0000000000000000-00".into()),
    );
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(m.intake_id.to_string().into())
        .with_timestamp(u64::try_from(m.received_at.timestamp()).unwrap_or(0))
        .with_app_id("receiver".into())
        .with_headers(table)
}

pub async fn connect(url: &str) -> anyhow::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .context("Failed to connect to RabbitMQ")
}

async fn confirm_channel(conn: &Connection) -> anyhow::Result<Channel> {
    let ch = conn
        .create_channel()
        .await
        .context("Failed to open a channel")?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .context("Failed to enable publisher confirms")?;
    Ok(ch)
}

fn mandatory() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    }
}

fn check(confirmation: Confirmation) -> anyhow::Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(r)) => bail!("Failed to route a message: {}", r.reply_text),
        Confirmation::Nack(_) => bail!("The broker refused (nacked) a message"),
        Confirmation::NotRequested => bail!("Publisher confirms were not enabled"),
    }
}

/// Declares `topology` and publishes every message to its intake queue, each confirmed
/// before this returns (1,000 in flight at most).
pub async fn backlog(
    url: &str,
    topology: &Topology,
    messages: &[IntakeMessage],
) -> anyhow::Result<()> {
    let conn = connect(url).await?;
    let ch = confirm_channel(&conn).await?;
    topology
        .declare(&ch)
        .await
        .context("Failed to declare the queues")?;
    let started = Instant::now();
    for (i, chunk) in messages.chunks(1_000).enumerate() {
        let mut confirms = Vec::with_capacity(chunk.len());
        for m in chunk {
            let body = serde_json::to_vec(m).context("Failed to serialize a message")?;
            confirms.push(
                ch.basic_publish(
                    topology.exchange().into(),
                    INTAKE_ROUTING_KEY.into(),
                    mandatory(),
                    &body,
                    properties(m),
                )
                .await
                .context("Failed to publish the backlog")?,
            );
        }
        let confirmed = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(confirms),
        )
        .await
        .map_err(|_| anyhow!("Failed to get publisher confirms within 60 s"))?;
        for c in confirmed {
            check(c.context("Failed to get a publisher confirm")?)?;
        }
        if (i + 1) % 20 == 0 {
            let done = (i + 1) * 1_000;
            eprintln!(
                "bench: published {done}/{} ({:.0} msg/s)",
                messages.len(),
                done as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    eprintln!(
        "bench: backlog of {} leads confirmed in {:.1} s",
        messages.len(),
        started.elapsed().as_secs_f64()
    );
    let _ = conn.close(0, "done".into()).await;
    Ok(())
}

/// Empties the intake queue of `topology` (what a receiver run left behind).
pub async fn purge(url: &str, topology: &Topology) -> anyhow::Result<()> {
    let conn = connect(url).await?;
    let ch = conn
        .create_channel()
        .await
        .context("Failed to open a channel")?;
    ch.queue_purge(topology.intake_queue().into(), QueuePurgeOptions::default())
        .await
        .context("Failed to purge the intake queue")?;
    let _ = conn.close(0, "done".into()).await;
    Ok(())
}

/// Result of the publish-and-consume ceiling.
#[derive(Debug, Clone, Copy)]
pub struct RoundTrip {
    pub messages: u64,
    pub secs: f64,
}

impl RoundTrip {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.secs.max(1e-9)
    }
}

/// `n` copies of `body` published with confirms (`in_flight` at once) and consumed with
/// manual acks (prefetch `prefetch`) at the same time, one `multiple` ack per `ack_run`
/// deliveries (as a worker acknowledges a batch); time from the first publish to the last
/// ack. Bounded by `limit`.
#[allow(clippy::too_many_arguments)]
pub async fn round_trip(
    url: &str,
    topology: &Topology,
    payload: Payload,
    n: u64,
    in_flight: usize,
    prefetch: u16,
    ack_run: u64,
    limit: Duration,
) -> anyhow::Result<RoundTrip> {
    // Separate connections, as receiver and worker have.
    let consumer_conn = connect(url).await?;
    let publisher_conn = connect(url).await?;
    let cch = consumer_conn
        .create_channel()
        .await
        .context("Failed to open a channel")?;
    topology
        .declare(&cch)
        .await
        .context("Failed to declare the ceiling's queues")?;
    cch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("Failed to set the prefetch")?;
    let mut consumer = cch
        .basic_consume(
            topology.intake_queue().into(),
            "bench-ceiling".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("Failed to consume the ceiling queue")?;
    let pch = confirm_channel(&publisher_conn).await?;
    let started = Instant::now();
    let deadline = started + limit;
    let ack_run = ack_run.max(1);
    let consume = tokio::spawn(async move {
        let mut got = 0u64;
        while got < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let delivery = match tokio::time::timeout(left, consumer.next()).await {
                Ok(Some(Ok(d))) => d,
                Ok(Some(Err(e))) => return Err(anyhow!("Failed to consume: {e}")),
                Ok(None) => return Err(anyhow!("Failed to consume: the consumer ended")),
                Err(_) => return Err(anyhow!("Consumed {got} of {n} before the time limit")),
            };
            got += 1;
            if got.is_multiple_of(ack_run) || got == n {
                cch.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                    .await
                    .context("Failed to ack")?;
            }
        }
        Ok(Instant::now())
    });
    let published = publish_loop(
        pch,
        topology.exchange(),
        payload,
        in_flight,
        Stop::Count(n),
        deadline,
    )
    .await;
    let last = consume.await.context("Failed to join the consumer")??;
    if published.errors() > 0 {
        bail!(
            "The ceiling publisher saw {} failed publishes",
            published.errors()
        );
    }
    let _ = publisher_conn.close(0, "done".into()).await;
    let _ = consumer_conn.close(0, "done".into()).await;
    Ok(RoundTrip {
        messages: n,
        secs: last.duration_since(started).as_secs_f64(),
    })
}

/// Publishes `body` with confirms from `in_flight` concurrent publishers for `duration`
/// (nothing consumes; purge afterwards): the receiver's ceiling at that many connections.
pub async fn publish_for(
    url: &str,
    topology: &Topology,
    payload: Payload,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let conn = connect(url).await?;
    let ch = confirm_channel(&conn).await?;
    topology
        .declare(&ch)
        .await
        .context("Failed to declare the ceiling's queues")?;
    let deadline = Instant::now() + duration;
    let result = publish_loop(
        ch,
        topology.exchange(),
        payload,
        in_flight,
        Stop::At(deadline),
        deadline + Duration::from_secs(10),
    )
    .await;
    let _ = conn.close(0, "done".into()).await;
    purge(url, topology).await?;
    Ok(result)
}

enum Stop {
    Count(u64),
    At(Instant),
}

/// `in_flight` tasks on one channel, each publishing and awaiting its confirm in turn (as
/// the receiver's requests do), until `stop`; never past `hard_deadline`.
async fn publish_loop(
    ch: Channel,
    exchange: String,
    payload: Payload,
    in_flight: usize,
    stop: Stop,
    hard_deadline: Instant,
) -> LoadResult {
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let (count, until) = match stop {
        Stop::Count(n) => (Some(n), hard_deadline),
        Stop::At(t) => (None, t.min(hard_deadline)),
    };
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (ch, exchange, payload, issued) = (
            ch.clone(),
            exchange.clone(),
            payload.clone(),
            issued.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                if Instant::now() >= until {
                    break;
                }
                if let Some(n) = count
                    && issued.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                let t = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(10), async {
                    ch.basic_publish(
                        exchange.as_str().into(),
                        INTAKE_ROUTING_KEY.into(),
                        mandatory(),
                        &payload.body,
                        payload.props.clone(),
                    )
                    .await?
                    .await
                })
                .await;
                // A confirmed publish counts as the 202 it stands for; a nack or a return
                // as a 500.
                match r {
                    Ok(Ok(c)) => {
                        let status = if check(c).is_ok() { 202 } else { 500 };
                        tally.record(status, 202, t.elapsed());
                    }
                    Ok(Err(_)) => tally.record(500, 202, t.elapsed()),
                    Err(_) => tally.transport_error(),
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        match t.await {
            Ok(t) => total.merge(t),
            Err(_) => total.transport_error(),
        }
    }
    total.finish(started.elapsed().as_secs_f64(), started_at)
}
