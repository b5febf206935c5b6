//! Announces each intake's outcome on its Redis channel after commit, for clients waiting in
//! synchronous mode. Best effort: Redis being slow or down never holds up or fails a lead.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared::config::Settings;
pub use shared::outcome::Announcement;
use std::time::Duration;
use tracing::warn;

/// How long one batch of announcements may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Announcer {
    prefix: String,
    /// Connects lazily and reconnects by itself; `None` when the URL is unusable.
    conn: Option<ConnectionManager>,
}

impl Announcer {
    pub fn new(settings: &Settings) -> Self {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1);
        let conn = redis::Client::open(settings.redis_url.as_str())
            .and_then(|client| ConnectionManager::new_lazy_with_config(client, config));
        let conn = match conn {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "Redis unusable; outcomes will not be announced");
                None
            }
        };
        Self {
            prefix: settings.redis_prefix.clone(),
            conn,
        }
    }

    /// Publishes every announcement in one pipeline, in the background.
    pub fn announce(&self, outcomes: Vec<Announcement>) {
        if outcomes.is_empty() {
            return;
        }
        let Some(mut conn) = self.conn.clone() else {
            metrics::counter!(crate::ops_server::OUTCOME_PUBLISH_FAILURES)
                .increment(outcomes.len() as u64);
            return;
        };
        let mut pipe = redis::pipe();
        for o in &outcomes {
            let channel = shared::keys::intake_outcome_channel(&self.prefix, o.intake_id);
            match serde_json::to_string(o) {
                Ok(body) => {
                    pipe.publish(channel, body).ignore();
                }
                Err(e) => warn!(error = %e, "Failed to encode an announcement"),
            }
        }
        let count = outcomes.len() as u64;
        tokio::spawn(async move {
            let sent =
                tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
            let failure = match sent {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            metrics::counter!(crate::ops_server::OUTCOME_PUBLISH_FAILURES).increment(count);
            warn!(error = %failure, count, "Failed to announce outcomes on Redis");
        });
    }
}
