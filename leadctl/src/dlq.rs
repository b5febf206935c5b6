//! The dead-letter queue as operators see it (`leadctl dlq …`): list, show, replay, purge.
//!
//! Reading the queue takes every message with `basic.get` on one channel without
//! acknowledging; messages not acted on return to the queue, in order, when the channel
//! closes. A replay republishes the original message (same intake id, attempts reset) to the
//! intake exchange with a publisher confirm and only then acknowledges the dead copy, so a
//! failed replay loses nothing. The worker's per-intake idempotency makes a double replay
//! harmless.

use chrono::{DateTime, Utc};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
        ConfirmSelectOptions, QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use shared::amqp::{INTAKE_ROUTING_KEY, Topology};
use shared::config::Settings;
use shared::intake::{IntakeMessage, headers};
use uuid::Uuid;

/// One message of the dead-letter queue, with what the intake record adds.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The intake id (AMQP message id); `None` for a message that carried none.
    pub intake_id: Option<Uuid>,
    pub account_id: Option<i64>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Processing attempts before it was dead-lettered.
    pub attempts: i64,
    /// When it was dead-lettered, as far as the record tells.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// When the lead was received.
    pub received_at: Option<DateTime<Utc>>,
    /// Times it was replayed before.
    pub replay_count: i64,
    /// The lead as received (API token removed); the raw body when it is not an intake
    /// message.
    pub payload: serde_json::Value,
    #[serde(skip)]
    delivery_tag: u64,
    #[serde(skip)]
    properties: BasicProperties,
    #[serde(skip)]
    body: Vec<u8>,
}

impl DeadLetter {
    /// Seconds since it was dead-lettered (or received), if known.
    pub fn age_seconds(&self) -> Option<i64> {
        self.dead_lettered_at
            .or(self.received_at)
            .map(|t| (Utc::now() - t).num_seconds().max(0))
    }
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these intake ids (empty = no id filter).
    pub ids: Vec<Uuid>,
    /// Only this account's.
    pub account_id: Option<i64>,
    /// Only those whose reason contains this text (case-insensitive).
    pub reason: Option<String>,
}

impl Filter {
    pub fn matches(&self, d: &DeadLetter) -> bool {
        (self.ids.is_empty() || d.intake_id.is_some_and(|id| self.ids.contains(&id)))
            && self.account_id.is_none_or(|a| d.account_id == Some(a))
            && self
                .reason
                .as_ref()
                .is_none_or(|r| d.reason.to_lowercase().contains(&r.to_lowercase()))
    }
}

/// How long [`Dlq::close`] waits for the broker's answers.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An open view of the dead-letter queue.
pub struct Dlq {
    connection: Connection,
    channel: Channel,
    topology: Topology,
    /// The messages taken (unacknowledged) by [`Dlq::scan`].
    letters: Vec<DeadLetter>,
}

impl Dlq {
    /// Connects and declares the topology (so a fresh broker has the queues to read).
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let connection = shared::amqp::connect(&settings.amqp_url, ConnectionProperties::default())
            .await
            .map_err(|e| anyhow::anyhow!("Failed to connect to RabbitMQ: {e}"))?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let topology = Topology::from_settings(settings);
        topology.declare(&channel).await?;
        Ok(Self {
            connection,
            channel,
            topology,
            letters: Vec::new(),
        })
    }

    /// Takes up to `limit` dead letters (oldest first) and enriches them from the intake
    /// records. They stay in the queue unless replayed.
    pub async fn scan(
        &mut self,
        db: &DatabaseConnection,
        limit: usize,
    ) -> anyhow::Result<&[DeadLetter]> {
        let queue = ShortString::from(self.topology.dead_queue());
        while self.letters.len() < limit {
            let Some(msg) = self
                .channel
                .basic_get(queue.clone(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let d = msg.delivery;
            self.letters
                .push(from_delivery(d.delivery_tag, d.properties, d.data));
        }
        enrich(db, &mut self.letters).await?;
        Ok(&self.letters)
    }

    /// Replays the scanned letters that `filter` selects; returns them. `who` is recorded;
    /// `replayed` is called after each letter (a progress bar).
    pub async fn replay(
        &mut self,
        db: &DatabaseConnection,
        filter: &Filter,
        who: &str,
        mut replayed: impl FnMut(),
    ) -> anyhow::Result<Vec<DeadLetter>> {
        let mut done = Vec::new();
        let result = self
            .replay_into(db, filter, who, &mut replayed, &mut done)
            .await;
        // The acknowledged letters leave the scan, so `release` never hands back a delivery
        // the broker already forgot: that is a channel error (unknown delivery tag), and the
        // broker's close crossing ours left the close waiting for an answer that never came.
        self.letters
            .retain(|d| !done.iter().any(|r| r.delivery_tag == d.delivery_tag));
        result.map(|()| done)
    }

    async fn replay_into(
        &self,
        db: &DatabaseConnection,
        filter: &Filter,
        who: &str,
        replayed: &mut impl FnMut(),
        done: &mut Vec<DeadLetter>,
    ) -> anyhow::Result<()> {
        for d in self.letters.iter().filter(|d| filter.matches(d)) {
            // The record moves back to queued before the message can reach a worker, so a
            // fast worker's outcome is never overwritten.
            if let Some(id) = d.intake_id {
                mark_replayed(db, id, who).await?;
            }
            let published = self.republish(d, who).await;
            if let Err(e) = published {
                if let Some(id) = d.intake_id {
                    unmark_replayed(db, id).await.ok();
                }
                return Err(e.context(format!(
                    "Failed to replay {}",
                    d.intake_id
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "a message".into())
                )));
            }
            self.channel
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await?;
            done.push(d.clone());
            replayed();
        }
        Ok(())
    }

    async fn republish(&self, d: &DeadLetter, who: &str) -> anyhow::Result<()> {
        let mut table = FieldTable::default();
        if let Some(old) = d.properties.headers() {
            for (k, v) in old.inner() {
                let key = k.as_str();
                if key == headers::DEAD_REASON
                    || key == headers::ATTEMPTS
                    || key.starts_with("x-death")
                    || key.starts_with("x-first-death")
                    || key.starts_with("x-last-death")
                {
                    continue;
                }
                table.insert(k.clone(), v.clone());
            }
        }
        table.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(0));
        table.insert(
            headers::REPLAYED_BY.into(),
            AMQPValue::LongString(who.into()),
        );
        let props = d
            .properties
            .clone()
            .with_headers(table)
            .with_delivery_mode(2);
        let confirm = self
            .channel
            .basic_publish(
                self.topology.exchange().into(),
                INTAKE_ROUTING_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &d.body,
                props,
            )
            .await?
            .await?;
        if confirm.is_nack() {
            anyhow::bail!("the broker refused the message (nack)");
        }
        if confirm.take_message().is_some() {
            anyhow::bail!("the intake queue is missing (message returned unroutable)");
        }
        Ok(())
    }

    /// Hands every scanned, unreplayed letter back to the queue.
    pub async fn release(&mut self) -> anyhow::Result<()> {
        for d in self.letters.drain(..) {
            self.channel
                .basic_nack(
                    d.delivery_tag,
                    BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every dead letter; returns how many there were.
    pub async fn purge(&self) -> anyhow::Result<u32> {
        Ok(self
            .channel
            .queue_purge(
                self.topology.dead_queue().into(),
                QueuePurgeOptions::default(),
            )
            .await?)
    }

    /// Returns unreplayed letters to the queue and disconnects.
    pub async fn close(self) {
        // Best effort, and bounded: a broker that does not answer the close must not hold
        // the caller (a console page, an operator's terminal).
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.channel.close(200, "done".into()).await;
            let _ = self.connection.close(200, "done".into()).await;
        })
        .await;
    }
}

fn from_delivery(delivery_tag: u64, properties: BasicProperties, body: Vec<u8>) -> DeadLetter {
    let hdr = properties.headers().clone().unwrap_or_default();
    let intake_id = properties
        .message_id()
        .as_ref()
        .and_then(|m| Uuid::parse_str(m.as_str()).ok());
    let message: Option<IntakeMessage> = serde_json::from_slice(&body).ok();
    let account_id =
        int_header(&hdr, headers::ACCOUNT_ID).or(message.as_ref().map(|m| m.account_id));
    let reason = string_header(&hdr, headers::DEAD_REASON)
        .or_else(|| broker_death_reason(&hdr).map(|r| format!("broker: {r}")))
        .unwrap_or_else(|| "unknown".into());
    let attempts = int_header(&hdr, headers::ATTEMPTS)
        .or_else(|| int_header(&hdr, "x-delivery-count"))
        .unwrap_or(0);
    let payload = match &message {
        Some(m) => m.payload.to_value(),
        None => serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    DeadLetter {
        intake_id: intake_id.or(message.as_ref().map(|m| m.intake_id)),
        account_id,
        reason,
        attempts,
        dead_lettered_at: None,
        received_at: message.as_ref().map(|m| m.received_at),
        replay_count: 0,
        payload,
        delivery_tag,
        properties,
        body,
    }
}

fn header<'a>(t: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    t.inner().get(&ShortString::from(key))
}

fn string_header(t: &FieldTable, key: &str) -> Option<String> {
    match header(t, key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn int_header(t: &FieldTable, key: &str) -> Option<i64> {
    match header(t, key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).parse().ok(),
        _ => None,
    }
}

/// The reason RabbitMQ itself dead-lettered a message (`delivery_limit`, `rejected`, …).
fn broker_death_reason(t: &FieldTable) -> Option<String> {
    if let Some(r) = string_header(t, "x-first-death-reason") {
        return Some(r);
    }
    match header(t, "x-death")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().find_map(|v| match v {
            AMQPValue::FieldTable(t) => string_header(t, "reason"),
            _ => None,
        }),
        _ => None,
    }
}

/// Adds what the intake records know: when it was dead-lettered, attempts, replays.
async fn enrich(db: &DatabaseConnection, letters: &mut [DeadLetter]) -> anyhow::Result<()> {
    let ids: Vec<String> = letters
        .iter()
        .filter_map(|d| d.intake_id)
        .map(|id| format!("'{id}'"))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    // Typed UUIDs, formatted by us: nothing user-controlled reaches the SQL text.
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT id, attempts, last_error, updated_at, received_at, replay_count, account_id \
                 FROM lead_intakes WHERE id IN ({})",
                ids.join(",")
            ),
        ))
        .await?;
    for row in rows {
        let id: Uuid = row.try_get("", "id")?;
        for d in letters.iter_mut().filter(|d| d.intake_id == Some(id)) {
            let attempts: i32 = row.try_get("", "attempts")?;
            d.attempts = d.attempts.max(i64::from(attempts));
            if d.reason == "unknown"
                && let Some(e) = row.try_get::<Option<String>>("", "last_error")?
            {
                d.reason = e;
            }
            d.dead_lettered_at = Some(row.try_get("", "updated_at")?);
            d.received_at = d.received_at.or(Some(row.try_get("", "received_at")?));
            d.replay_count = i64::from(row.try_get::<i32>("", "replay_count")?);
            d.account_id = d.account_id.or(Some(row.try_get("", "account_id")?));
        }
    }
    Ok(())
}

async fn mark_replayed(db: &DatabaseConnection, id: Uuid, who: &str) -> anyhow::Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE lead_intakes SET status = 'queued', replay_count = replay_count + 1, \
         replayed_at = now(), replayed_by = $2, updated_at = now() \
         WHERE id = $1 AND status IN ('dead_lettered', 'queued', 'processing')",
        [id.into(), who.into()],
    ))
    .await?;
    Ok(())
}

async fn unmark_replayed(db: &DatabaseConnection, id: Uuid) -> anyhow::Result<()> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE lead_intakes SET status = 'dead_lettered', replay_count = replay_count - 1, \
         updated_at = now() WHERE id = $1 AND status = 'queued'",
        [id.into()],
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The statements above name statuses as literals: each must be a value of its enum.
    #[test]
    fn every_status_the_sql_names_is_a_value_of_its_enum() {
        let named = testkit::statuses::assert_known([("dlq.rs", include_str!("dlq.rs"))]);
        assert!(named >= 6, "only {named} status literals found");
    }
}
