//! The worker's heartbeat: every few seconds each worker process writes what it is doing
//! (consuming or not, leads in flight and finished, the head of the queue as it last saw
//! it) into one Redis hash, for `leadctl status`. A worker that stops cleanly removes its
//! entry; one that dies leaves an entry that ages and is reported as gone. Best effort:
//! Redis being down never holds up a lead.

use crate::ops_server;
use chrono::{TimeZone, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use shared::config::Settings;
use shared::status::{HEARTBEAT_EVERY_SECS, HEARTBEAT_FORGET_SECS, Heartbeat, workers_key};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// This host's name: `HOSTNAME` (the pod name under Kubernetes), else the kernel's.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes this process's heartbeat every few seconds until `stop`, then removes it.
pub async fn run(settings: Settings, stop: CancellationToken) {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(WRITE_TIMEOUT))
        .set_response_timeout(Some(WRITE_TIMEOUT))
        .set_number_of_retries(1);
    let conn = redis::Client::open(settings.redis_url.as_str())
        .and_then(|client| ConnectionManager::new_lazy_with_config(client, config));
    let mut conn = match conn {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(%error, "Redis unusable; no heartbeat will be written");
            return;
        }
    };
    let host = host_name();
    let pid = std::process::id();
    let id = format!(
        "{host}-{pid}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let key = workers_key(&settings.redis_prefix);
    let started_at = Utc::now();
    let mut tick = tokio::time::interval(Duration::from_secs(HEARTBEAT_EVERY_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = ops_server::progress();
        let beat = Heartbeat {
            id: id.clone(),
            host: host.clone(),
            pid,
            started_at,
            at: Utc::now(),
            consuming: s.consuming,
            concurrency: settings.worker.concurrency,
            in_flight: s.in_flight,
            leads: s.leads,
            head_received_at: s
                .head_received
                .and_then(|t| Utc.timestamp_opt(t, 0).single()),
        };
        let Ok(json) = serde_json::to_string(&beat) else {
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.hset(&key, &id, json).ignore();
        // The hash outlives any one worker, but not the last one by long.
        pipe.expire(&key, HEARTBEAT_FORGET_SECS).ignore();
        let written = tokio::time::timeout(WRITE_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!("Failed to write the heartbeat");
        }
    }
    let _ = tokio::time::timeout(
        WRITE_TIMEOUT,
        redis::cmd("HDEL")
            .arg(&key)
            .arg(&id)
            .query_async::<()>(&mut conn),
    )
    .await;
}
