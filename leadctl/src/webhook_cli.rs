//! `leadctl webhook …`: an account's endpoints for outbound events (§11).

use crate::admin::webhooks::{self, AttemptRow, Endpoint, Replay, WithSecret};
use crate::cli::Output;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use sea_orm::DatabaseConnection;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum WebhookCmd {
    /// Add an endpoint; prints its id and signing secret (shown this once).
    Add {
        #[arg(long)]
        account: i64,
        /// Where events are POSTed (http or https).
        #[arg(long)]
        url: String,
        /// Comma-separated event types, or all.
        #[arg(long, default_value = "all")]
        events: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// The endpoints of an account (of every account without --account).
    List {
        #[arg(long)]
        account: Option<i64>,
    },
    /// Stop delivering to an endpoint; its pending deliveries wait.
    Disable { id: i64 },
    /// Deliver to an endpoint again, its waiting deliveries first.
    Enable { id: i64 },
    /// A new signing secret; the old one keeps signing beside it for 24 hours.
    #[command(name = "rotate-secret")]
    RotateSecret { id: i64 },
    /// Remove an endpoint with its deliveries and attempt log.
    Remove { id: i64 },
    /// The attempt log of an endpoint, newest first.
    Attempts {
        id: i64,
        /// One event (msg_… or its uuid).
        #[arg(long)]
        event: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Send an endpoint's delivered or failed events again, each with its webhook-id.
    Replay {
        id: i64,
        /// Events since: an RFC 3339 time or an age such as 2h.
        #[arg(long)]
        since: Option<String>,
        /// Events before: an RFC 3339 time or an age such as 30m.
        #[arg(long)]
        until: Option<String>,
        /// Only deliveries that failed for good.
        #[arg(long)]
        failed_only: bool,
        /// One event (msg_… or its uuid).
        #[arg(long)]
        event: Option<String>,
        /// Count what would be sent, sending nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// An instant given as RFC 3339 or as an age before now (`90m`, `2h`, `1d`).
fn instant(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("{s:?} is neither an RFC 3339 time nor an age such as 2h"))?;
    Ok(Utc::now() - chrono::Duration::from_std(age)?)
}

/// `leadctl webhook …`.
pub async fn execute(db: &DatabaseConnection, cmd: WebhookCmd) -> anyhow::Result<Output> {
    match cmd {
        WebhookCmd::Add {
            account,
            url,
            events,
            description,
        } => {
            let events = webhooks::parse_events(&events)?;
            let e = webhooks::add(db, account, &url, events, description.as_deref()).await?;
            secret_shown(&e, "Added webhook endpoint")
        }
        WebhookCmd::List { account } => {
            let list = webhooks::list(db, account).await?;
            let mut human = format!("{} endpoint(s)", list.len());
            for e in &list {
                human.push('\n');
                human.push_str(&line(e));
            }
            Ok(Output {
                human,
                json: json!({"id": null, "endpoints": list}),
            })
        }
        WebhookCmd::Disable { id } => shown(&webhooks::set_enabled(db, id, false).await?),
        WebhookCmd::Enable { id } => shown(&webhooks::set_enabled(db, id, true).await?),
        WebhookCmd::RotateSecret { id } => secret_shown(
            &webhooks::rotate_secret(db, id).await?,
            "Rotated the secret of webhook endpoint",
        ),
        WebhookCmd::Remove { id } => {
            let e = webhooks::remove(db, id).await?;
            Ok(Output {
                human: format!("Removed webhook endpoint {} ({})", e.id, e.url),
                json: serde_json::to_value(&e)?,
            })
        }
        WebhookCmd::Attempts { id, event, limit } => {
            let event = event.as_deref().map(webhooks::parse_event_id).transpose()?;
            let rows = webhooks::attempts(db, id, event, limit).await?;
            let mut human = format!("{} attempt(s) to endpoint {id}, newest first", rows.len());
            for a in &rows {
                human.push('\n');
                human.push_str(&attempt_line(a));
            }
            let attempts: Vec<serde_json::Value> = rows
                .iter()
                .map(|a| {
                    let mut v = serde_json::to_value(a).unwrap_or_default();
                    v["webhook_id"] = a.webhook_id().into();
                    v
                })
                .collect();
            Ok(Output {
                human,
                json: json!({"id": id, "attempts": attempts}),
            })
        }
        WebhookCmd::Replay {
            id,
            since,
            until,
            failed_only,
            event,
            dry_run,
        } => {
            let r = Replay {
                since: since.as_deref().map(instant).transpose()?,
                until: until.as_deref().map(instant).transpose()?,
                failed_only,
                event: event.as_deref().map(webhooks::parse_event_id).transpose()?,
            };
            let n = if dry_run {
                webhooks::replay_count(db, id, &r).await?
            } else {
                webhooks::replay(db, id, &r).await?
            };
            let verb = if dry_run { "Would replay" } else { "Replaying" };
            Ok(Output {
                human: format!(
                    "{verb} {n} deliver{} to endpoint {id}",
                    if n == 1 { "y" } else { "ies" }
                ),
                json: json!({"id": id, "replayed": if dry_run { 0 } else { n }, "matched": n, "dry_run": dry_run}),
            })
        }
    }
}

fn line(e: &Endpoint) -> String {
    let events = if e.events.is_empty() {
        "all events".to_owned()
    } else {
        e.events.join(",")
    };
    let state = match (&e.enabled, &e.disabled_reason) {
        (true, _) => "enabled".to_owned(),
        (false, Some(why)) => format!("disabled: {why}"),
        (false, None) => "disabled".to_owned(),
    };
    format!(
        "  {} account {} {} [{events}] {state}; {} pending, {} delivered, {} failed",
        e.id, e.account_id, e.url, e.pending, e.delivered, e.failed
    )
}

fn shown(e: &Endpoint) -> anyhow::Result<Output> {
    Ok(Output {
        human: format!("Webhook endpoint\n{}", line(e)),
        json: serde_json::to_value(e)?,
    })
}

fn secret_shown(e: &WithSecret, verb: &str) -> anyhow::Result<Output> {
    let rotation = e
        .endpoint
        .previous_secret_until
        .map(|t| format!("\nThe previous secret also signs until {t}."))
        .unwrap_or_default();
    Ok(Output {
        human: format!(
            "{verb} {} ({})\nSigning secret (shown once): {}{rotation}",
            e.endpoint.id, e.endpoint.url, e.secret
        ),
        json: serde_json::to_value(e)?,
    })
}

fn attempt_line(a: &AttemptRow) -> String {
    let answer = match (a.status_code, &a.error) {
        (Some(s), _) => s.to_string(),
        (None, Some(e)) => format!("no answer ({e})"),
        (None, None) => "no answer".into(),
    };
    format!(
        "  {} {} {} {answer} in {} ms; delivery {}",
        a.attempted_at.format("%Y-%m-%dT%H:%M:%SZ"),
        a.webhook_id(),
        a.event_type,
        a.latency_ms,
        a.delivery_status
    )
}
