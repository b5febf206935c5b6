//! Sequences that send (§10): the worker's send loop.
//!
//! Steps are due rows of `messages`. A loop claims a batch of due steps with
//! `FOR UPDATE SKIP LOCKED` in a transaction, judges each by the contact policy (§9), sends
//! the allowed ones to the provider, and records every result and schedules each sent
//! step's successor before the commit. A worker that dies mid-batch leaves its steps
//! scheduled (its locks go with its connection): another worker sends them again with the
//! same idempotency key, so nothing is lost and the provider delivers each once.
//!
//! The loop wakes on the `messages_due` notification that an enrollment's commit sends when
//! a step is due at once, on the next due time, or after `SMS__POLL_INTERVAL` at the latest.

pub mod provider;
mod step;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use shared::config::SmsSettings;
use shared::policy::table::RuleTable;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use step::{Claimed, Decision, Record, decide, resolve};

const DUE: &str = include_str!("sql/due.sql");
const RECORD: &str = include_str!("sql/record.sql");
const NEXT: &str = include_str!("sql/next.sql");
const INTAKE_VERDICTS: &str = include_str!("sql/intake_verdicts.sql");
const UNSUBSCRIBED: &str = include_str!("sql/unsubscribed.sql");
/// The earliest due time of any scheduled step: the first entry of the due-step index.
/// The first entry of the scheduled steps' index, however the statistics stand (`min()`
/// planned while the table was small reads the whole index).
const NEXT_DUE: &str =
    "SELECT due_at AS due FROM messages WHERE status = 'scheduled' ORDER BY due_at LIMIT 1";

/// The statements of the send loop, by name, for the plan checks of the tests.
pub const STATEMENTS: [(&str, &str); 6] = [
    ("due", DUE),
    ("record", RECORD),
    ("next", NEXT),
    ("intake_verdicts", INTAKE_VERDICTS),
    ("unsubscribed", UNSUBSCRIBED),
    ("next_due", NEXT_DUE),
];

/// Why a number the provider reports unsubscribed joins the do-not-contact list.
const UNSUBSCRIBED_REASON: &str = "the provider reports the recipient unsubscribed";

/// The PostgreSQL notification channel that wakes the send loops.
pub const CHANNEL: &str = "messages_due";

pub const SENT: &str = "worker_messages_sent_total";
pub const FAILED: &str = "worker_messages_failed_total";
pub const BLOCKED: &str = "worker_messages_blocked_total";
pub const RETRIED: &str = "worker_messages_retried_total";
pub const DUE_LAG: &str = "worker_message_due_lag_seconds";
pub const OLDEST_DUE: &str = "worker_message_oldest_due_seconds";
pub const PROVIDER_DURATION: &str = "worker_message_provider_duration_seconds";

/// Describes the send loop's metrics.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(SENT, "Message steps the provider accepted.");
    describe_counter!(FAILED, "Message steps that failed, by the provider's code.");
    describe_counter!(
        BLOCKED,
        "Message steps the contact policy blocked or delayed, by reason."
    );
    describe_counter!(
        RETRIED,
        "Provider attempts to be retried (429, 5xx, no answer), by code."
    );
    describe_histogram!(
        DUE_LAG,
        Unit::Seconds,
        "How late a step was claimed after its due time."
    );
    describe_gauge!(
        OLDEST_DUE,
        Unit::Seconds,
        "How long the most overdue message step has been due (0: none is), as the send loop last saw."
    );
    metrics::gauge!(OLDEST_DUE).set(0.0);
    metrics::counter!(SENT).increment(0);
    describe_histogram!(
        PROVIDER_DURATION,
        Unit::Seconds,
        "Time of one request to the SMS provider."
    );
}

/// The send loop of one worker.
#[derive(Clone)]
pub struct Sender {
    db: DatabaseConnection,
    rules: Arc<RuleTable>,
    provider: provider::Provider,
    settings: SmsSettings,
}

impl Sender {
    /// A send loop for `settings`, or `None` when it is off or has no provider.
    pub fn from_settings(
        db: DatabaseConnection,
        rules: Arc<RuleTable>,
        settings: &SmsSettings,
    ) -> Result<Option<Self>, provider::ProviderError> {
        let Some(base) = settings.base_url.as_deref().filter(|_| settings.enabled) else {
            return Ok(None);
        };
        let provider = provider::Provider::new(
            base,
            &settings.account_sid,
            &settings.auth_token,
            settings.request_timeout,
        )?;
        Ok(Some(Self {
            db,
            rules,
            provider,
            settings: settings.clone(),
        }))
    }

    /// Sends due steps until `stop`; a batch under way finishes first.
    pub async fn run(self, stop: CancellationToken) {
        info!(
            batch_size = self.settings.batch_size,
            concurrency = self.settings.concurrency,
            "Sending message steps"
        );
        let mut wake = self.listen().await;
        while !stop.is_cancelled() {
            let full = match self.send_due(Utc::now()).await {
                Ok(n) => n >= self.settings.batch_size,
                Err(e) => {
                    warn!(error = %e, "Sending message steps failed; trying again");
                    false
                }
            };
            if full {
                continue;
            }
            let pause = self.pause().await;
            let notified = async {
                match wake.as_mut() {
                    Some(l) => l.recv().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
                ok = notified => if !ok {
                    wake = self.listen().await;
                },
            }
        }
        info!("Message steps stopped");
    }

    /// A listener on [`CHANNEL`]; without one the loop wakes on its timer only.
    async fn listen(&self) -> Option<sea_orm::sqlx::postgres::PgListener> {
        crate::db::listener(&self.db, CHANNEL, "due message steps").await
    }

    /// Until the next step is due, at most the poll interval; records how overdue the
    /// most overdue step is.
    async fn pause(&self) -> Duration {
        let poll = self.settings.poll_interval;
        let next = self
            .db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, NEXT_DUE))
            .await;
        match next {
            Ok(Some(row)) => match row.try_get::<Option<DateTime<Utc>>>("", "due") {
                Ok(Some(due)) => {
                    let now = Utc::now();
                    let overdue = (now - due).to_std().unwrap_or_default();
                    metrics::gauge!(OLDEST_DUE).set(overdue.as_secs_f64());
                    (due - now).to_std().unwrap_or_default().min(poll)
                }
                Ok(None) => {
                    metrics::gauge!(OLDEST_DUE).set(0.0);
                    poll
                }
                Err(_) => poll,
            },
            _ => poll,
        }
    }

    /// Claims, judges, sends and records one batch of steps due by `now`; returns how many
    /// were claimed.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<usize, DbErr> {
        let txn = self.db.begin().await?;
        let rows = txn
            .query_all_raw(stmt(
                DUE,
                vec![now.into(), (self.settings.batch_size as i64).into()],
            ))
            .await?;
        if rows.is_empty() {
            txn.commit().await?;
            return Ok(0);
        }
        let claimed = rows
            .iter()
            .map(Claimed::from_row)
            .collect::<Result<Vec<_>, _>>()?;
        for c in &claimed {
            let lag = (now - c.due_at).to_std().unwrap_or_default();
            metrics::histogram!(DUE_LAG).record(lag.as_secs_f64());
        }
        let decisions: Vec<Decision> = claimed
            .iter()
            .map(|c| decide(c, &self.rules, self.settings.from.as_deref(), now))
            .collect();
        let sends: Vec<_> = (claimed.iter().zip(decisions))
            .map(|(c, d)| self.carry_out(c, d))
            .collect();
        let records: Vec<Record> = futures_util::stream::iter(sends)
            .buffered(self.settings.concurrency)
            .collect()
            .await;
        let n = claimed.len();
        self.write(&txn, &claimed, records).await?;
        txn.commit().await?;
        debug!(steps = n, "Message steps settled");
        Ok(n)
    }

    /// Sends an allowed step and settles its result; other decisions settle as they are.
    async fn carry_out(&self, c: &Claimed, decision: Decision) -> Record {
        let answer = match &decision {
            Decision::Send(out) => {
                let key = format!("message-{}", c.id);
                let started = std::time::Instant::now();
                let answer = self
                    .provider
                    .send(&provider::Outgoing {
                        to: &out.to,
                        from: &out.from,
                        body: &out.body,
                        idempotency_key: &key,
                    })
                    .await;
                metrics::histogram!(PROVIDER_DURATION).record(started.elapsed().as_secs_f64());
                Some(answer)
            }
            _ => None,
        };
        let jitter = rand::random::<f64>();
        resolve(
            c,
            decision,
            answer,
            &self.settings.retry_delays,
            jitter,
            Utc::now(),
        )
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        claimed: &[Claimed],
        records: Vec<Record>,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let mut next = Vec::new();
        let mut verdicts = Vec::new();
        let mut unsubscribed = Vec::new();
        for (c, r) in claimed.iter().zip(&records) {
            r.count();
            if r.row.status == "sent" {
                next.push(serde_json::json!({
                    "enrollment_id": c.enrollment_id,
                    "account_id": c.account_id,
                    "contact_id": c.contact_id,
                    "sequence_id": c.sequence_id,
                    "position": c.position,
                    "intake_id": c.intake_id,
                }));
            }
            if let (Some(action), Some(intake)) = (&r.intake_action, c.intake_id) {
                verdicts.push(serde_json::json!({"intake_id": intake, "action": action}));
            }
            if r.unsubscribed
                && let Some(to) = &r.row.to_number
            {
                unsubscribed
                    .push(serde_json::json!({"account_id": c.account_id, "phone_number": to}));
            }
        }
        let rows: Vec<&step::Row> = records.iter().map(|r| &r.row).collect();
        txn.execute_raw(stmt(RECORD, vec![json(&rows)?, now.into()]))
            .await?;
        shared::events::record(txn, events(claimed, &records, now)?).await?;
        for (sql, items) in [
            (NEXT, next),
            (INTAKE_VERDICTS, verdicts),
            (UNSUBSCRIBED, unsubscribed),
        ] {
            if !items.is_empty() {
                let mut values = vec![serde_json::Value::Array(items).into()];
                if sql == NEXT {
                    values.push(now.into());
                }
                txn.execute_raw(stmt(sql, values)).await?;
            }
        }
        Ok(())
    }
}

/// The events of a settled batch (§11): `sms.sent`, `sms.failed`, and `policy.blocked` for
/// a step blocked, or delayed for the first time.
fn events(
    claimed: &[Claimed],
    records: &[Record],
    now: DateTime<Utc>,
) -> Result<Vec<shared::events::Event>, DbErr> {
    use shared::events::{Event, EventType};
    let mut out = Vec::new();
    for (c, r) in claimed.iter().zip(records) {
        let row = &r.row;
        if r.unsubscribed
            && let Some(to) = &row.to_number
        {
            out.push(shared::events::dnc_added(
                c.account_id,
                to,
                "sms",
                UNSUBSCRIBED_REASON,
                "provider",
                now,
            )?);
        }
        let kind = match row.status {
            "sent" => EventType::SmsSent,
            "failed" => EventType::SmsFailed,
            "blocked" => EventType::PolicyBlocked,
            "scheduled" if row.policy.is_some() && !c.judged_before => EventType::PolicyBlocked,
            _ => continue,
        };
        let data = if kind == EventType::PolicyBlocked {
            let mut data = row.policy.clone().unwrap_or_default();
            if let Some(o) = data.as_object_mut() {
                o.insert("intake_id".into(), serde_json::json!(c.intake_id));
                o.insert("contact_id".into(), serde_json::json!(c.contact_id));
                o.insert("message_id".into(), row.id.into());
            }
            data
        } else {
            serde_json::json!({
                "id": row.id,
                "contact_id": c.contact_id,
                "intake_id": c.intake_id,
                "direction": "outbound",
                "status": row.status,
                "from": row.from_number,
                "to": row.to_number,
                "body": row.body,
                "provider_sid": row.provider_sid,
                "error_code": row.error_code,
                "error_message": row.error_message,
                "step": c.position,
                "sent_at": row.sent_at,
            })
        };
        let id = row.id;
        let event = Event::new(
            c.account_id,
            kind,
            now,
            &data,
            || serde_json::json!({"id": id}),
        )
        .map_err(|e| DbErr::Json(e.to_string()))?
        .contact(c.contact_id);
        out.push(match c.intake_id {
            Some(i) => event.intake(i),
            None => event,
        });
    }
    Ok(out)
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn json(value: &impl serde::Serialize) -> Result<sea_orm::Value, DbErr> {
    serde_json::to_value(value)
        .map(Into::into)
        .map_err(|e| DbErr::Custom(e.to_string()))
}
