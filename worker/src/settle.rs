//! Settling a delivery once its lead was tried: [`settle`] decides what becomes of it
//! (acknowledged, retried at step n, or dead-lettered with a kind and a reason), and
//! [`carry_out`] does that against the broker and the intake record. Nothing is
//! acknowledged before its copy in a retry or the dead-letter queue is confirmed.

use crate::announce::Announcement;
use crate::broker::Session;
use crate::ops_server;
use crate::process::{Attempt, DeadRecord, Processor, RetryRecord};
use lapin::message::Delivery;
use shared::intake::IntakeStatus;
use tracing::{error, warn};

/// How a delivery's lead fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate<'a> {
    /// Processed and committed, now or by an earlier delivery.
    Done,
    /// Failed for a reason a later attempt may get past.
    Transient(&'a str),
    /// Failed for a reason no retry can help.
    Permanent(&'a str),
    /// The message cannot be read as an intake.
    Poison(&'a str),
}

/// Why a delivery is dead-lettered (the `kind` label of the dead-letter counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadKind {
    Poison,
    Permanent,
    /// A transient failure after the last retry step.
    Exhausted,
}

impl DeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadKind::Poison => "poison",
            DeadKind::Permanent => "permanent",
            DeadKind::Exhausted => "exhausted",
        }
    }
}

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Ack,
    /// To the delay queue of retry step `step` (0-based), as attempt `attempts` failed.
    Retry {
        step: usize,
        attempts: u32,
        error: String,
    },
    /// To the dead-letter queue after `attempts` attempts.
    DeadLetter {
        kind: DeadKind,
        reason: String,
        attempts: u32,
    },
}

/// Decides a delivery's settlement from its lead's fate, the failed attempts before this
/// one (the `x-attempts` header) and how many retry steps the topology has.
pub fn settle(fate: Fate<'_>, previous_attempts: u32, retry_steps: usize) -> Settlement {
    let attempts = previous_attempts.saturating_add(1);
    let dead = |kind, reason: String| Settlement::DeadLetter {
        kind,
        reason,
        attempts,
    };
    match fate {
        Fate::Done => Settlement::Ack,
        Fate::Poison(reason) => dead(DeadKind::Poison, reason.to_owned()),
        Fate::Permanent(error) => dead(DeadKind::Permanent, error.to_owned()),
        Fate::Transient(error) => {
            let step = previous_attempts as usize;
            if step < retry_steps {
                Settlement::Retry {
                    step,
                    attempts,
                    error: error.to_owned(),
                }
            } else {
                let reason = format!("gave up after {attempts} attempts: {error}");
                dead(DeadKind::Exhausted, reason)
            }
        }
    }
}

/// Whose delivery is settled.
pub(crate) enum Subject<'a> {
    /// A decoded intake.
    Intake(&'a Attempt),
    /// A poison message, with the intake record it names, if any.
    Poison(Option<DeadRecord>),
}

/// What carrying out a settlement came to.
pub(crate) enum Carried {
    Acked,
    /// In a delay queue; its intake record is to say so.
    Retrying(RetryRecord),
    /// In the dead-letter queue, its record written; the outcome to announce.
    DeadLettered(Option<Announcement>),
    /// The broker refused the copy; the message went back to the queue.
    Returned,
}

/// Carries out `settlement` for `delivery`.
pub(crate) async fn carry_out(
    processor: &Processor,
    session: &Session,
    delivery: &Delivery,
    subject: Subject<'_>,
    settlement: Settlement,
) -> Carried {
    match settlement {
        Settlement::Ack => {
            session.ack(&[delivery]).await;
            Carried::Acked
        }
        Settlement::Retry {
            step,
            attempts,
            error,
        } => match subject {
            Subject::Intake(intake) => {
                retry(session, delivery, intake, (step, attempts), &error).await
            }
            // A poison message is never retried; should it come to that, the broker
            // delivers it again.
            Subject::Poison(_) => {
                session.requeue(delivery).await;
                Carried::Returned
            }
        },
        Settlement::DeadLetter {
            kind,
            reason,
            attempts,
        } => {
            let record = match subject {
                Subject::Intake(intake) => Some(dead_record(intake, &reason)),
                Subject::Poison(record) => record,
            };
            let dead = Dead {
                record,
                kind,
                reason: &reason,
                attempts,
            };
            dead_letter(processor, session, delivery, dead).await
        }
    }
}

/// A transient failure with a retry step left: a confirmed copy in the step's delay queue,
/// then the ack.
async fn retry(
    session: &Session,
    delivery: &Delivery,
    intake: &Attempt,
    (step, attempts): (usize, u32),
    error: &str,
) -> Carried {
    if let Err(e) = session.publish_retry(delivery, step, attempts).await {
        error!(intake_id = %intake.message.intake_id, error = format!("{e:#}"), "Failed to schedule a retry; returning the message to the queue");
        session.requeue(delivery).await;
        return Carried::Returned;
    }
    session.ack(&[delivery]).await;
    metrics::counter!(ops_server::RETRIES).increment(1);
    metrics::counter!(ops_server::LEADS, "outcome" => "retried").increment(1);
    warn!(
        intake_id = %intake.message.intake_id,
        attempt = attempts,
        delay_ms = session.topology.retry_delays_ms().get(step).copied(),
        error,
        "Lead failed; retrying later"
    );
    let m = &intake.message;
    Carried::Retrying(RetryRecord {
        id: m.intake_id,
        account_id: m.account_id,
        user_id: m.user_id,
        token_id: m.token_id,
        payload: m.payload.clone(),
        attempts,
        last_error: error.to_owned(),
        received_at: m.received_at,
    })
}

fn dead_record(intake: &Attempt, reason: &str) -> DeadRecord {
    let m = &intake.message;
    DeadRecord {
        intake_id: m.intake_id,
        account_id: m.account_id,
        user_id: Some(m.user_id),
        token_id: Some(m.token_id),
        payload: m.payload.to_value(),
        received_at: Some(m.received_at),
        attempts: intake.number(),
        reason: reason.to_owned(),
    }
}

/// A dead letter to send.
struct Dead<'a> {
    /// The intake record to write, when the message names an intake and an account.
    record: Option<DeadRecord>,
    kind: DeadKind,
    reason: &'a str,
    attempts: u32,
}

/// Publishes to the dead-letter exchange, and once confirmed records the intake and acks.
async fn dead_letter(
    processor: &Processor,
    session: &Session,
    delivery: &Delivery,
    dead: Dead<'_>,
) -> Carried {
    let Dead {
        record,
        kind,
        reason,
        attempts,
    } = dead;
    let intake_id = record.as_ref().map(|d| d.intake_id);
    if let Err(e) = session.publish_dead(delivery, reason, attempts).await {
        error!(intake_id = ?intake_id, error = format!("{e:#}"), "Failed to dead-letter; returning the message to the queue");
        session.requeue(delivery).await;
        return Carried::Returned;
    }
    if let Some(rec) = &record
        && let Err(e) = processor.record_dead_letter(rec).await
    {
        // The message is safe in the dead-letter queue with its reason; only the record lags.
        error!(intake_id = %rec.intake_id, error = %e, "Failed to record the dead letter");
    }
    session.ack(&[delivery]).await;
    let kind = kind.as_str();
    metrics::counter!(ops_server::DEAD_LETTERS, "kind" => kind).increment(1);
    metrics::counter!(ops_server::LEADS, "outcome" => "dead_lettered").increment(1);
    error!(intake_id = ?intake_id, attempts, reason, kind, "Lead dead-lettered");
    Carried::DeadLettered(intake_id.map(|intake_id| Announcement {
        intake_id,
        status: IntakeStatus::DeadLettered,
        contact_id: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(kind: DeadKind, reason: &str, attempts: u32) -> Settlement {
        Settlement::DeadLetter {
            kind,
            reason: reason.to_owned(),
            attempts,
        }
    }

    fn retry(step: usize, attempts: u32) -> Settlement {
        Settlement::Retry {
            step,
            attempts,
            error: "timeout".to_owned(),
        }
    }

    #[test]
    fn every_fate_settles_as_the_table_says() {
        // (fate, failed attempts before this one, retry steps) → settlement
        let table = [
            (Fate::Done, 0, 5, Settlement::Ack),
            (Fate::Done, 7, 0, Settlement::Ack),
            (Fate::Transient("timeout"), 0, 5, retry(0, 1)),
            (Fate::Transient("timeout"), 4, 5, retry(4, 5)),
            (
                Fate::Transient("timeout"),
                5,
                5,
                dead(DeadKind::Exhausted, "gave up after 6 attempts: timeout", 6),
            ),
            (
                Fate::Transient("timeout"),
                0,
                0,
                dead(DeadKind::Exhausted, "gave up after 1 attempts: timeout", 1),
            ),
            (
                Fate::Permanent("unknown account 9"),
                0,
                5,
                dead(DeadKind::Permanent, "unknown account 9", 1),
            ),
            (
                Fate::Permanent("unknown account 9"),
                2,
                5,
                dead(DeadKind::Permanent, "unknown account 9", 3),
            ),
            (
                Fate::Poison("unparseable body"),
                0,
                5,
                dead(DeadKind::Poison, "unparseable body", 1),
            ),
            (
                Fate::Transient("timeout"),
                u32::MAX,
                5,
                dead(
                    DeadKind::Exhausted,
                    &format!("gave up after {} attempts: timeout", u32::MAX),
                    u32::MAX,
                ),
            ),
        ];
        for (fate, previous, steps, expected) in table {
            assert_eq!(
                settle(fate, previous, steps),
                expected,
                "{fate:?} after {previous} attempts, {steps} steps"
            );
        }
    }

    #[test]
    fn dead_letter_kinds_keep_their_metric_labels() {
        let labels: Vec<&str> = [DeadKind::Poison, DeadKind::Permanent, DeadKind::Exhausted]
            .into_iter()
            .map(DeadKind::as_str)
            .collect();
        assert_eq!(labels, ["poison", "permanent", "exhausted"]);
    }
}
