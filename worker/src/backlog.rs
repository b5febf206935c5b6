//! Whether this worker's intake has leads waiting: a consumer task that takes a batch and
//! leaves received leads behind says so. Work that can wait for a while without harm (the
//! delivery of outbound events) yields to a backlog, so that a campaign's burst of leads
//! reaches the database, the dialer and the sequences as fast as the machine allows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Signs further apart than this end one backlog; the next sign starts another.
pub const LAPSE: Duration = Duration::from_millis(500);

/// The last time a consumer left leads waiting, and since when it has without a pause
/// longer than [`LAPSE`]; cheap to share and to update per batch.
#[derive(Debug, Clone)]
pub struct IntakeBacklog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    /// Microseconds after `epoch` of the last sign, plus one; 0: never.
    last: AtomicU64,
    /// Microseconds after `epoch` of the first sign of the current backlog.
    started: AtomicU64,
}

impl Default for IntakeBacklog {
    fn default() -> Self {
        Self::new()
    }
}

impl IntakeBacklog {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                last: AtomicU64::new(0),
                started: AtomicU64::new(0),
            }),
        }
    }

    /// Leads were left waiting just now.
    pub fn seen(&self) {
        let at = u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        let before = self.inner.last.fetch_max(at + 1, Ordering::Relaxed);
        let lapse = u64::try_from(LAPSE.as_micros()).unwrap_or(u64::MAX);
        if before == 0 || at.saturating_sub(before - 1) > lapse {
            // The first sign, or the first after a pause: a new backlog starts.
            self.inner.started.store(at, Ordering::Relaxed);
        }
    }

    /// How long the current backlog has lasted: `None` when no lead was left waiting within
    /// the last [`LAPSE`].
    pub fn lasted(&self) -> Option<Duration> {
        if !self.within(LAPSE) {
            return None;
        }
        let started =
            self.inner.epoch + Duration::from_micros(self.inner.started.load(Ordering::Relaxed));
        Some(started.elapsed())
    }

    /// Whether leads were left waiting within the last `window`.
    pub fn within(&self, window: Duration) -> bool {
        match self.inner.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let at = self.inner.epoch + Duration::from_micros(last - 1);
                at.elapsed() <= window
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_holds_for_the_window_then_lapses() {
        let b = IntakeBacklog::new();
        assert!(!b.within(Duration::from_secs(3600)), "never seen");
        b.seen();
        assert!(b.within(Duration::from_millis(200)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!b.within(Duration::from_millis(10)), "the sign lapsed");
        let copy = b.clone();
        copy.seen();
        assert!(b.within(Duration::from_millis(10)), "clones share the sign");
    }

    #[test]
    fn a_backlog_lasts_from_its_first_sign_until_a_pause_longer_than_the_lapse() {
        let b = IntakeBacklog::new();
        assert_eq!(b.lasted(), None, "never seen");
        b.seen();
        std::thread::sleep(Duration::from_millis(120));
        b.seen();
        let lasted = b.lasted().expect("under way");
        assert!(lasted >= Duration::from_millis(120), "{lasted:?}");
        std::thread::sleep(LAPSE + Duration::from_millis(50));
        assert_eq!(b.lasted(), None, "the backlog ended");
        b.seen();
        let lasted = b.lasted().expect("a new backlog");
        assert!(
            lasted < Duration::from_millis(100),
            "counted from its own start: {lasted:?}"
        );
    }
}
