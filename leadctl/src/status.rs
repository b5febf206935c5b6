//! `leadctl status`: one screen of the pipeline during a burst. Read-only: the intake rate
//! of the last minute (counts the receivers keep in Redis), each queue's depth and
//! consumers (passive declares: nothing is created or taken), the age of the oldest lead
//! waiting (bounded by the head of the queue the workers last saw), the workers'
//! heartbeats, and dead-lettered intakes by reason (the intake records).

use chrono::{DateTime, Utc};
use lapin::ConnectionProperties;
use redis::AsyncCommands;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use shared::amqp::Topology;
use shared::config::Settings;
use shared::status::{
    HEARTBEAT_FORGET_SECS, Heartbeat, INTAKE_WINDOW_SECS, intake_stats_key, workers_key,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How many reasons the dead-letter breakdown shows.
const TOP_REASONS: i64 = 10;
/// Each source gets this long; a missing one is reported, not waited for.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything the status screen shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub at: DateTime<Utc>,
    pub intake: Option<IntakeRate>,
    /// `None` when the broker could not be reached.
    pub queues: Option<Vec<QueueState>>,
    /// Seconds the oldest lead of `leads.intake` has waited at most: 0 when the queue is
    /// empty, `None` when unknown (no worker has taken a lead yet, or no broker).
    pub oldest_waiting_seconds: Option<i64>,
    /// `None` when Redis could not be reached.
    pub workers: Option<Vec<WorkerState>>,
    pub dead_letters: Option<DeadLetters>,
    /// Message steps waiting to be sent (§10); `None` when the database could not be read.
    pub message_steps: Option<MessageSteps>,
    /// Outbound events not yet delivered (§11); `None` when the database could not be read.
    pub events: Option<EventsWaiting>,
    /// What could not be read, one line each.
    pub errors: Vec<String>,
}

/// Intake answers over the last minute, summed over every receiver.
#[derive(Debug, Clone, Serialize)]
pub struct IntakeRate {
    pub window_seconds: i64,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<String, u64>,
    pub total: u64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueState {
    pub name: String,
    /// Messages ready (not yet delivered to a consumer).
    pub depth: Option<u32>,
    pub consumers: Option<u32>,
    /// Missing on the broker (nothing declared it yet).
    pub missing: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerState {
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
    pub heartbeat_age_seconds: i64,
    pub alive: bool,
}

/// Message steps not yet sent.
#[derive(Debug, Clone, Serialize)]
pub struct MessageSteps {
    /// Scheduled, due now or later.
    pub pending: i64,
    /// Due already and not yet sent: a backlog, a stopped send loop or no provider.
    pub overdue: i64,
    /// How long the most overdue step has been due, in seconds (0 when none is).
    pub oldest_overdue_seconds: i64,
}

/// Outbound events on their way.
#[derive(Debug, Clone, Serialize)]
pub struct EventsWaiting {
    /// Events in the outbox's rows that the delivery loops have not yet turned into
    /// deliveries (they wait there while the workers yield to a backlog of leads).
    pub awaiting_fan_out: i64,
    /// How long the oldest of those rows has waited, in seconds (0 when none has).
    pub oldest_awaiting_seconds: i64,
    /// Deliveries to enabled endpoints waiting for an attempt (first ones and retries).
    pub pending_deliveries: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeadLetters {
    /// Intakes recorded as dead-lettered (a purge removes messages, not their records).
    pub total: i64,
    /// The most frequent reasons, most frequent first.
    pub by_reason: Vec<ReasonCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: i64,
}

/// Reads every source; what fails is named in `errors` and the rest is still shown.
pub async fn collect(db: &DatabaseConnection, settings: &Settings) -> Status {
    let topology = Topology::from_settings(settings);
    let mut errors = Vec::new();
    let (queues, redis, dead, steps, events) = tokio::join!(
        bounded(queues(settings, &topology)),
        bounded(from_redis(settings)),
        bounded(dead_letters(db)),
        bounded(message_steps(db)),
        bounded(events_waiting(db)),
    );
    let queues = queues
        .map_err(|e| errors.push(format!("broker: {e:#}")))
        .ok();
    let (intake, workers) = match redis {
        Ok((i, w)) => (Some(i), Some(w)),
        Err(e) => {
            errors.push(format!("redis: {e:#}"));
            (None, None)
        }
    };
    let dead_letters = dead
        .map_err(|e| errors.push(format!("database: {e:#}")))
        .ok();
    let message_steps = steps
        .map_err(|e| errors.push(format!("database: {e:#}")))
        .ok();
    let events = events
        .map_err(|e| errors.push(format!("database: {e:#}")))
        .ok();
    let intake_depth = queues.as_ref().and_then(|qs| {
        qs.iter()
            .find(|q| q.name == topology.intake_queue())
            .and_then(|q| q.depth)
    });
    let now = Utc::now();
    let head = workers.as_ref().and_then(|ws| {
        ws.iter()
            .filter(|w| w.alive)
            .filter_map(|w| w.heartbeat.head_received_at)
            .max()
    });
    let oldest_waiting_seconds = match (intake_depth, head) {
        (Some(0), _) => Some(0),
        (Some(_), Some(head)) => Some((now - head).num_seconds().max(0)),
        _ => None,
    };
    Status {
        at: now,
        intake,
        queues,
        oldest_waiting_seconds,
        workers,
        dead_letters,
        message_steps,
        events,
        errors,
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(SOURCE_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {} s", SOURCE_TIMEOUT.as_secs()))?
}

async fn queues(settings: &Settings, topology: &Topology) -> anyhow::Result<Vec<QueueState>> {
    let conn = shared::amqp::connect(
        &settings.amqp_url,
        ConnectionProperties::default().with_connection_name("leadctl status".into()),
    )
    .await?;
    let mut channel = conn.create_channel().await?;
    let mut out = Vec::new();
    for name in topology.queues() {
        match shared::amqp::counts(&channel, &name).await {
            Ok(q) => out.push(QueueState {
                name,
                depth: Some(q.depth),
                consumers: Some(q.consumers),
                missing: false,
            }),
            Err(_) => {
                // A failed passive declare closes the channel: the queue does not exist.
                out.push(QueueState {
                    name,
                    depth: None,
                    consumers: None,
                    missing: true,
                });
                channel = conn.create_channel().await?;
            }
        }
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(out)
}

async fn from_redis(settings: &Settings) -> anyhow::Result<(IntakeRate, Vec<WorkerState>)> {
    let client = redis::Client::open(settings.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let prefix = &settings.redis_prefix;
    let now = Utc::now();
    // The current second is still being counted: the window is the 60 seconds before it.
    let last = now.timestamp() - 1;
    let mut pipe = redis::pipe();
    for s in (last - INTAKE_WINDOW_SECS + 1)..=last {
        pipe.hgetall(intake_stats_key(prefix, s));
    }
    let seconds: Vec<BTreeMap<String, u64>> = pipe.query_async(&mut conn).await?;
    let mut by_status = BTreeMap::new();
    for second in seconds {
        for (status, n) in second {
            *by_status.entry(status).or_insert(0) += n;
        }
    }
    let total = by_status.values().sum();
    let intake = IntakeRate {
        window_seconds: INTAKE_WINDOW_SECS,
        by_status,
        total,
        per_second: total as f64 / INTAKE_WINDOW_SECS as f64,
    };

    let key = workers_key(prefix);
    let raw: BTreeMap<String, String> = conn.hgetall(&key).await?;
    let mut workers = Vec::new();
    for (id, json) in raw {
        match serde_json::from_str::<Heartbeat>(&json) {
            Ok(h) if h.age_seconds(now) <= HEARTBEAT_FORGET_SECS => {
                workers.push(WorkerState {
                    heartbeat_age_seconds: h.age_seconds(now),
                    alive: h.is_alive(now),
                    heartbeat: h,
                });
            }
            // Long gone, or unreadable: forget it.
            _ => {
                let _: () = conn.hdel(&key, &id).await?;
            }
        }
    }
    workers.sort_by(|a, b| {
        b.alive
            .cmp(&a.alive)
            .then(a.heartbeat.host.cmp(&b.heartbeat.host))
            .then(a.heartbeat.pid.cmp(&b.heartbeat.pid))
    });
    Ok((intake, workers))
}

async fn dead_letters(db: &DatabaseConnection) -> anyhow::Result<DeadLetters> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT left(coalesce(last_error, 'unknown'), 100) AS reason, count(*) AS n \
                 FROM lead_intakes WHERE status = 'dead_lettered' \
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {TOP_REASONS}"
            ),
        ))
        .await?;
    let mut by_reason = Vec::new();
    for row in rows {
        by_reason.push(ReasonCount {
            reason: row.try_get("", "reason")?,
            count: row.try_get("", "n")?,
        });
    }
    let total = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM lead_intakes WHERE status = 'dead_lettered'",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    Ok(DeadLetters { total, by_reason })
}

/// Pending and overdue message steps, read from the due-step index alone.
async fn message_steps(db: &DatabaseConnection) -> anyhow::Result<MessageSteps> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS pending, count(*) FILTER (WHERE due_at <= now()) AS overdue, \
                    coalesce(extract(epoch FROM now() - min(due_at))::bigint, 0) AS oldest \
             FROM messages WHERE status = 'scheduled'",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer to the message-step count"))?;
    Ok(MessageSteps {
        pending: row.try_get("", "pending")?,
        overdue: row.try_get("", "overdue")?,
        oldest_overdue_seconds: row.try_get::<i64>("", "oldest")?.max(0),
    })
}

/// The outbox's rows (one per batch of leads, there only while the loops are behind) and
/// the pending deliveries of enabled endpoints (each endpoint's range of the due index).
async fn events_waiting(db: &DatabaseConnection) -> anyhow::Result<EventsWaiting> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT o.events AS awaiting, \
                        coalesce(extract(epoch FROM now() - o.oldest)::bigint, 0) AS oldest, \
                        (SELECT count(*) FROM webhook_endpoints w \
                         JOIN event_deliveries d ON d.endpoint_id = w.id AND d.status = 'pending' \
                         WHERE w.enabled) AS pending \
                 FROM ({}) o",
                shared::events::AWAITING
            ),
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no answer to the events count"))?;
    Ok(EventsWaiting {
        awaiting_fan_out: row.try_get("", "awaiting")?,
        oldest_awaiting_seconds: row.try_get::<i64>("", "oldest")?.max(0),
        pending_deliveries: row.try_get("", "pending")?,
    })
}

fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// ` (<label> <age> ago)` when there are `n` of something, else nothing.
fn oldest(n: i64, label: &str, secs: i64) -> String {
    if n > 0 {
        format!(" ({label} {} ago)", age(secs))
    } else {
        String::new()
    }
}

/// The status as a screen of text.
pub fn render(s: &Status) -> String {
    let mut out = format!(
        "lead intake status at {}\n",
        s.at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    out.push_str(&render_intake(s.intake.as_ref()));
    out.push_str(&render_queues(
        s.queues.as_deref(),
        s.oldest_waiting_seconds,
    ));
    out.push_str(&render_workers(s.workers.as_deref()));
    out.push_str(&render_dead_letters(s.dead_letters.as_ref()));
    if let Some(m) = &s.message_steps {
        let since = oldest(m.overdue, "oldest due", m.oldest_overdue_seconds);
        out.push_str(&format!(
            "\nMessage steps\n  {} pending, {} overdue{since}\n",
            m.pending, m.overdue
        ));
    }
    if let Some(ev) = &s.events {
        let since = oldest(ev.awaiting_fan_out, "oldest", ev.oldest_awaiting_seconds);
        out.push_str(&format!(
            "\nOutbound events\n  {} deliveries pending, {} events awaiting fan-out{since}\n",
            ev.pending_deliveries, ev.awaiting_fan_out
        ));
    }
    for e in &s.errors {
        out.push_str(&format!("\nerror: {e}"));
    }
    out.trim_end().to_owned()
}

/// The status screen's intake section.
fn render_intake(intake: Option<&IntakeRate>) -> String {
    let mut out = String::new();
    out.push_str("\nIntake, last minute (all receivers)\n");
    match intake {
        Some(i) => {
            out.push_str(&format!("  {} requests, {:.1}/s", i.total, i.per_second));
            if !i.by_status.is_empty() {
                let parts: Vec<String> = i
                    .by_status
                    .iter()
                    .map(|(status, n)| format!("{status}: {n}"))
                    .collect();
                out.push_str(&format!("  ({})", parts.join(", ")));
            }
            out.push('\n');
        }
        None => out.push_str("  unknown (Redis unreachable)\n"),
    }
    out
}

/// The status screen's queue section, with the oldest lead waiting.
fn render_queues(queues: Option<&[QueueState]>, oldest_waiting_seconds: Option<i64>) -> String {
    let mut out = String::new();
    match queues {
        Some(qs) => {
            let width = qs.iter().map(|q| q.name.len()).max().unwrap_or(0).max(6);
            out.push_str(&format!(
                "\n{:<w$}    ready  consumers\n",
                "Queues",
                w = width + 2
            ));
            for q in qs {
                if q.missing {
                    out.push_str(&format!("  {:<width$}  missing\n", q.name));
                } else {
                    out.push_str(&format!(
                        "  {:<width$}  {:>7}  {:>9}\n",
                        q.name,
                        q.depth.unwrap_or(0),
                        q.consumers.unwrap_or(0)
                    ));
                }
            }
        }
        None => out.push_str("\nQueues\n  unknown (broker unreachable)\n"),
    }
    out.push_str(&format!(
        "  oldest lead waiting: {}\n",
        match oldest_waiting_seconds {
            Some(0) => "none waiting".to_owned(),
            Some(secs) => format!("at most {}", age(secs)),
            None => "unknown (no worker has taken a lead)".to_owned(),
        }
    ));
    out
}

/// The status screen's worker section.
fn render_workers(workers: Option<&[WorkerState]>) -> String {
    let mut out = String::new();
    out.push_str("\nWorkers\n");
    match workers {
        Some([]) => out.push_str("  none has reported\n"),
        Some(ws) => {
            for w in ws {
                let h = &w.heartbeat;
                out.push_str(&format!(
                    "  {:<32} {:<5} heartbeat {:>6} ago  {}  in flight {:>4}  leads {:>8}\n",
                    h.id,
                    if w.alive { "up" } else { "GONE" },
                    age(w.heartbeat_age_seconds),
                    if h.consuming {
                        "consuming"
                    } else {
                        "idle     "
                    },
                    h.in_flight,
                    h.leads
                ));
            }
        }
        None => out.push_str("  unknown (Redis unreachable)\n"),
    }
    out
}

/// The status screen's dead-letter section.
fn render_dead_letters(dead_letters: Option<&DeadLetters>) -> String {
    let mut out = String::new();
    out.push_str("\nDead-lettered intakes by reason\n");
    match dead_letters {
        Some(d) if d.total == 0 => out.push_str("  none\n"),
        Some(d) => {
            out.push_str(&format!("  {} in all\n", d.total));
            for r in &d.by_reason {
                out.push_str(&format!("  {:>8}  {}\n", r.count, r.reason));
            }
        }
        None => out.push_str("  unknown (database unreachable)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(events: Option<EventsWaiting>) -> Status {
        Status {
            at: Utc::now(),
            intake: None,
            queues: None,
            oldest_waiting_seconds: None,
            workers: None,
            dead_letters: None,
            message_steps: None,
            events,
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_screen_shows_events_waiting_and_the_oldest_outbox_row() {
        let waiting = render(&status(Some(EventsWaiting {
            awaiting_fan_out: 220,
            oldest_awaiting_seconds: 150,
            pending_deliveries: 7,
        })));
        assert!(
            waiting.contains(
                "Outbound events\n  7 deliveries pending, 220 events awaiting fan-out (oldest 2m30s ago)"
            ),
            "{waiting}"
        );
        let idle = render(&status(Some(EventsWaiting {
            awaiting_fan_out: 0,
            oldest_awaiting_seconds: 0,
            pending_deliveries: 0,
        })));
        assert!(
            idle.ends_with("0 deliveries pending, 0 events awaiting fan-out"),
            "{idle}"
        );
        assert!(!render(&status(None)).contains("Outbound events"));
    }
}
