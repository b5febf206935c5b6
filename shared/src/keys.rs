//! Redis key and channel names used by more than one binary. Every name starts with the
//! configured `redis_prefix`.

use uuid::Uuid;

/// Intake status written by the receiver when it accepts a lead (`queued`), read by
/// `GET /api/v1/intakes/{id}` until the worker's Postgres record exists.
pub fn intake_status(prefix: &str, intake_id: Uuid) -> String {
    format!("{prefix}intake:{intake_id}")
}

/// Pub/sub channel on which the worker announces an intake's outcome (synchronous mode).
pub fn intake_outcome_channel(prefix: &str, intake_id: Uuid) -> String {
    format!("{prefix}intake-outcome:{intake_id}")
}

/// Pub/sub channel on which `leadctl` announces the SHA-256 of a token it revoked or whose
/// sources (mapping, defaults, Google key) it changed, so every receiver forgets its cached
/// lookup at once instead of when the entry expires.
pub fn token_changes_channel(prefix: &str) -> String {
    format!("{prefix}token-changed")
}
