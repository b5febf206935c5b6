//! What every long-running process of the pipeline does the same way: stop on SIGTERM or
//! Ctrl-C, and wait growing delays between reconnection attempts.

use std::future::Future;
use std::time::Duration;

/// Completes on SIGTERM or SIGINT (Ctrl-C).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// process calls it first thing, so a signal that arrives while it starts up, or before the
/// task awaiting the future has run, stops it cleanly instead of ending it by the signal's
/// default action (which a client saw as a receiver that vanished mid-request). Must be
/// called within a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let wait = {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                (terminate, interrupt) => {
                    tracing::warn!(
                        sigterm = terminate.is_ok(),
                        sigint = interrupt.is_ok(),
                        "Cannot listen for every stop signal"
                    );
                    let ((Ok(mut one), _) | (_, Ok(mut one))) = (terminate, interrupt) else {
                        return std::future::pending().await;
                    };
                    one.recv().await;
                }
            }
        }
    };
    #[cfg(not(unix))]
    let wait = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    async move {
        wait.await;
        tracing::info!("Shutdown signal received");
    }
}

/// Delays between reconnection attempts: from `min`, doubling up to `max`, back to `min`
/// after a success.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now (the next one is twice as long, up to the maximum).
    pub fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The delay [`Backoff::delay`] would give now, for logs.
    pub fn peek_ms(&self) -> u64 {
        u64::try_from(self.next.as_millis()).unwrap_or(u64::MAX)
    }

    /// Connected again: the next failure waits the minimum.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let ms: Vec<u128> = (0..5).map(|_| b.delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.peek_ms(), 100);
    }
}
