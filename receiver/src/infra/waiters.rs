//! Synchronous mode (`Prefer: wait=N`): requests waiting for their lead's outcome.
//!
//! The worker announces every finished intake on its own Redis channel
//! ([`shared::keys::intake_outcome_channel`]). One background task per receiver holds a
//! single pub/sub connection subscribed to the pattern of all those channels and hands each
//! announcement to the request waiting for that intake, if any. So a waiting request costs
//! a map entry and a oneshot, never a database poll, however many requests wait at once.
//!
//! A request registers before its lead is published, so an outcome cannot arrive before
//! anyone listens. Announcements are best effort (Redis may be down, the subscription may
//! be reconnecting): a request that hears nothing reads the intake record once when its
//! wait ends.

use crate::infra::prometheus;
use shared::intake::IntakeStatus;
use shared::outcome::Announcement;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the worker announced about one intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: IntakeStatus,
    pub contact_id: Option<i64>,
}

/// Requests waiting for outcomes, and the subscription that feeds them.
#[derive(Default)]
pub struct OutcomeWaiters {
    /// Intake id → the waiting request's end of a oneshot.
    waiting: Mutex<HashMap<Uuid, oneshot::Sender<Answer>>>,
}

/// One request's claim on an intake's outcome; unregisters itself when dropped.
pub struct Waiter {
    intake_id: Uuid,
    waiters: Arc<OutcomeWaiters>,
    outcome: oneshot::Receiver<Answer>,
}

impl Waiter {
    /// The outcome, if it is announced within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Option<Answer> {
        tokio::time::timeout(timeout, &mut self.outcome)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.intake_id);
    }
}

impl OutcomeWaiters {
    /// Starts listening for `intake_id`'s outcome (before its lead is published).
    pub fn register(self: &Arc<Self>, intake_id: Uuid) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(intake_id, tx);
        Waiter {
            intake_id,
            waiters: self.clone(),
            outcome: rx,
        }
    }

    /// Keeps the subscription to every outcome channel under `redis_prefix` until `stop`,
    /// reconnecting with growing delays.
    pub async fn run(
        self: Arc<Self>,
        redis_url: String,
        redis_prefix: String,
        stop: CancellationToken,
    ) {
        let pattern = shared::keys::intake_outcome_channel(&redis_prefix, Uuid::nil())
            .replace(&Uuid::nil().to_string(), "*");
        crate::infra::pubsub::follow(
            &redis_url,
            crate::infra::pubsub::Topic::Pattern(pattern),
            "intake outcomes",
            stop,
            |up| {
                metrics::gauge!(prometheus::OUTCOME_SUBSCRIPTION_UP).set(if up {
                    1.0
                } else {
                    0.0
                });
            },
            |payload| {
                self.deliver(&payload);
                std::future::ready(())
            },
        )
        .await;
    }

    /// Hands one announcement to its waiter, if a request of this receiver waits for it.
    fn deliver(&self, payload: &[u8]) {
        let Ok(announcement) = serde_json::from_slice::<Announcement>(payload) else {
            tracing::debug!("Ignored an unreadable intake-outcome announcement");
            return;
        };
        let outcome = Answer {
            status: announcement.status,
            contact_id: announcement.contact_id,
        };
        if !(outcome.status.is_outcome() || outcome.status == IntakeStatus::DeadLettered) {
            return;
        }
        if let Some(tx) = self.lock().remove(&announcement.intake_id) {
            let _ = tx.send(outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Answer>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_announcement_reaches_only_its_waiter_and_dropping_unregisters() {
        let waiters = Arc::new(OutcomeWaiters::default());
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let wait_a = waiters.register(a);
        let wait_b = waiters.register(b);
        assert_eq!(waiters.lock().len(), 2);

        waiters.deliver(
            format!(r#"{{"intake_id":"{a}","status":"created","contact_id":7}}"#).as_bytes(),
        );
        // Transient statuses and garbage are not outcomes.
        waiters.deliver(
            format!(r#"{{"intake_id":"{b}","status":"processing","contact_id":null}}"#).as_bytes(),
        );
        waiters.deliver(b"not json");
        assert_eq!(
            wait_a.wait(Duration::from_millis(50)).await,
            Some(Answer {
                status: IntakeStatus::Created,
                contact_id: Some(7)
            })
        );
        assert_eq!(wait_b.wait(Duration::from_millis(20)).await, None);
        assert_eq!(
            waiters.lock().len(),
            0,
            "finished waits leave nothing behind"
        );
    }
}
