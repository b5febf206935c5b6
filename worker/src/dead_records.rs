//! Every dead letter leaves a `dead_lettered` intake record, whoever dead-lettered it.
//!
//! The dead-letter exchange copies each message into `leads.dead.records` (see
//! [`shared::amqp::Topology::dead_record_queue`]). The worker's own dead letters already
//! wrote their record when they were sent (this copy then only repeats it, or writes it if
//! that write failed); a message the broker dead-lettered itself, at the delivery limit of
//! a lead that kept crashing its consumer, gets its only record here, with the broker's
//! reason and the deliveries it took. A copy is acknowledged once its record is written;
//! while the database is unreachable it goes back to the queue and is tried again.

use crate::announce::{Announcement, Announcer};
use crate::broker::Session;
use crate::decode;
use crate::process::Processor;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use shared::intake::{IntakeStatus, headers};
use std::time::Duration;
use tracing::{error, info, warn};

/// Headers RabbitMQ sets on a message it dead-letters itself.
const FIRST_DEATH_REASON: &str = "x-first-death-reason";
const DELIVERY_COUNT: &str = "x-delivery-count";

/// Pause before a copy whose record could not be written is handed back.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Consumes the dead-record queue of `session` until its channel closes.
pub async fn run(session: &Session, processor: &Processor, outcomes: &Announcer, tag: &str) {
    let consumer = session
        .records
        .basic_consume(
            session.topology.dead_record_queue().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let mut consumer = match consumer {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "Failed to consume the dead-letter records");
            return;
        }
    };
    while let Some(Ok(delivery)) = consumer.next().await {
        record(&delivery, processor, outcomes).await;
    }
}

/// Why a dead letter was dead-lettered, and after how many attempts.
pub fn reason_and_attempts(properties: &lapin::BasicProperties) -> (String, u32, bool) {
    let attempts = decode::attempts(properties);
    if let Some(reason) = decode::text_header(properties, headers::DEAD_REASON) {
        return (reason, attempts, false);
    }
    let why =
        decode::text_header(properties, FIRST_DEATH_REASON).unwrap_or_else(|| "unknown".to_owned());
    // Quorum queues drop the count when they dead-letter; at the delivery limit it is the
    // limit itself.
    let deliveries = decode::integer_header(properties, DELIVERY_COUNT)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(u32::try_from(shared::amqp::DELIVERY_LIMIT).unwrap_or(u32::MAX));
    let (reason, attempts) = match why.as_str() {
        "delivery_limit" => (
            format!(
                "dead-lettered by the broker: delivered {deliveries} times without being settled \
             (its processing kept failing the worker)"
            ),
            attempts.max(deliveries),
        ),
        other => (format!("dead-lettered by the broker: {other}"), attempts),
    };
    (reason, attempts, true)
}

async fn record(delivery: &Delivery, processor: &Processor, outcomes: &Announcer) {
    let (reason, attempts, by_broker) = reason_and_attempts(&delivery.properties);
    let Some(dead) = decode::dead_record(&delivery.properties, &delivery.data, &reason, attempts)
    else {
        // Nothing names an intake and an account: there is no record to write.
        warn!(reason, "A dead letter without an intake id or account");
        ack(delivery).await;
        return;
    };
    match processor.record_dead_letter(&dead).await {
        Ok(()) => {
            if by_broker {
                metrics::counter!(crate::ops_server::DEAD_LETTERS, "kind" => "broker").increment(1);
                metrics::counter!(crate::ops_server::LEADS, "outcome" => "dead_lettered")
                    .increment(1);
                error!(intake_id = %dead.intake_id, attempts, reason, "Lead dead-lettered by the broker");
                outcomes.announce(vec![Announcement {
                    intake_id: dead.intake_id,
                    status: IntakeStatus::DeadLettered,
                    contact_id: None,
                }]);
            } else {
                info!(intake_id = %dead.intake_id, "Dead-letter record confirmed");
            }
            ack(delivery).await;
        }
        Err(e) => {
            warn!(intake_id = %dead.intake_id, error = %e, "Failed to record a dead letter; trying again");
            tokio::time::sleep(RETRY_PAUSE).await;
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await;
        }
    }
}

async fn ack(d: &Delivery) {
    if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
        warn!(error = %e, "Failed to acknowledge a dead-letter record");
    }
}
