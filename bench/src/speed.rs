//! Section `speed`: speed to lead (§10). A burst of leads is POSTed at a steady rate through
//! the release receiver into two release workers; every lead has SMS consent, a time zone
//! where it is now about noon and a distinct number, and is enrolled in a sequence whose
//! first step has no delay. A Twilio-compatible provider in this process
//! ([`testkit::sms::SmsProvider`]) records when each message arrives, and the figure is the
//! time from each lead's 202 to that arrival (both read on this process's monotonic clock),
//! with the messages/s from the first arrival to the last.
//!
//! The POSTs are the paced clients of the chaos runs ([`crate::chaos::client`]): each lead
//! leaves at its turn (`i / rate` after the start), whatever the answers before it.

use crate::Ctx;
use crate::chaos::client::{self, Burst, BurstResult, Pace};
use crate::env::default_retry_delays;
use crate::load::nearest_rank;
use crate::procs::{self, LogSummary, Proc, ProcStats, SystemCpu};
use crate::{e2e, seed, worker_bench};
use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::sms::SmsProvider;

/// Worker processes that process the leads and send the messages (as in `e2e`).
const WORKERS: usize = 2;
/// Client connections of the burst: far more than 500 leads/s at a few ms each need.
const CONNECTIONS: usize = 32;
/// Fresh-number namespace of the burst's leads.
const NAMESPACE: u64 = 3;

#[derive(Debug, Clone)]
pub struct SpeedFigures {
    /// Leads of the burst and the rate they were sent at.
    pub leads: usize,
    pub target_rate: f64,
    pub accepted: usize,
    /// Every answer of the burst.
    pub answers: String,
    /// First POST → last answer.
    pub post_secs: f64,
    /// 202 → provider received the message, ms, sorted; one per lead texted.
    pub total_ms: Vec<f64>,
    /// The part of it from the enrollment's commit to the provider, ms, sorted.
    pub send_ms: Vec<f64>,
    /// First → last message received by the provider.
    pub receipt_secs: f64,
    /// Requests the provider received and messages it delivered (first of each key).
    pub requests: usize,
    pub delivered: usize,
    /// Numbers that got more than one message.
    pub texted_twice: usize,
    /// The run's message steps by status.
    pub statuses: BTreeMap<String, i64>,
    /// CPU from the first POST to the last message, and peak RSS.
    pub receiver: ProcStats,
    pub workers: Vec<ProcStats>,
    pub system: SystemCpu,
    pub logs: Vec<(String, LogSummary)>,
}

impl SpeedFigures {
    /// Percentile `p` of 202 → message, ms.
    pub fn p_ms(&self, p: f64) -> f64 {
        nearest_rank(&self.total_ms, p).copied().unwrap_or(0.0)
    }

    /// Percentile `p` of enrolled → message, ms.
    pub fn send_p_ms(&self, p: f64) -> f64 {
        nearest_rank(&self.send_ms, p).copied().unwrap_or(0.0)
    }

    /// Messages per second from the first the provider received to the last.
    pub fn messages_per_sec(&self) -> f64 {
        self.delivered as f64 / self.receipt_secs.max(1e-9)
    }

    /// Leads accepted per second of the burst.
    pub fn post_rate(&self) -> f64 {
        self.accepted as f64 / self.post_secs.max(1e-9)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cpu = |s: &ProcStats| s.cpu_secs * 1e6 / self.delivered.max(1) as f64;
        serde_json::json!({
            "leads": self.leads,
            "target_posts_per_sec": self.target_rate,
            "accepted": self.accepted,
            "posts_per_sec": self.post_rate(),
            "answers": self.answers,
            "speed_to_lead_p50_ms": self.p_ms(50.0),
            "speed_to_lead_p99_ms": self.p_ms(99.0),
            "speed_to_lead_max_ms": self.p_ms(100.0),
            "enrolled_to_provider_p50_ms": self.send_p_ms(50.0),
            "enrolled_to_provider_p99_ms": self.send_p_ms(99.0),
            "messages_per_sec": self.messages_per_sec(),
            "provider_requests": self.requests,
            "provider_delivered": self.delivered,
            "numbers_texted_twice": self.texted_twice,
            "message_statuses": self.statuses,
            "receiver_cpu_us_per_lead": cpu(&self.receiver),
            "workers": self.workers.iter().map(|w| serde_json::json!({
                "cpu_us_per_lead": cpu(w),
                "peak_rss_mib": w.peak_rss_mib,
            })).collect::<Vec<_>>(),
            "system": self.system.to_json(self.delivered as f64),
        })
    }
}

/// A worker's `SMS__` settings for `provider`.
pub fn provider_env(provider: &SmsProvider) -> Vec<(String, String)> {
    vec![
        ("SMS__BASE_URL".into(), provider.base_url()),
        ("SMS__ACCOUNT_SID".into(), provider.account_sid.clone()),
        ("SMS__AUTH_TOKEN".into(), provider.auth_token.clone()),
    ]
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<SpeedFigures> {
    let (n, rate) = (ctx.sizes.speed_leads, ctx.sizes.speed_rate);
    let db = ctx.janitor.database().await?;
    let c = seed::account(&db.conn, "Bench speed").await?;
    seed::texting_sequence(&db.conn, &c).await?;
    let provider = SmsProvider::start().await;
    let prefixes = ctx.janitor.prefixes(&default_retry_delays());
    let mut receiver = e2e::start_receiver(ctx, &db.url, &prefixes, "receiver-speed").await?;
    let mut workers = worker_bench::start_workers_with(
        ctx,
        &db,
        &prefixes,
        WORKERS,
        "speed",
        &provider_env(&provider),
    )
    .await?;
    for w in workers.iter_mut() {
        w.wait_ready("/healthz").await?;
    }
    let leads = Arc::new(client::draw_texted(n, &c, "speed", NAMESPACE)?);

    eprintln!("bench: speed: {n} leads at {rate:.0}/s over {CONNECTIONS} connections");
    let r0 = receiver.stats()?;
    let w0: Vec<ProcStats> = workers
        .iter()
        .map(Proc::stats)
        .collect::<anyhow::Result<_>>()?;
    let sys0 = SystemCpu::sample();
    let send_limit = Duration::from_secs_f64(n as f64 / rate) + Duration::from_secs(60);
    let pace = Pace {
        connections: CONNECTIONS,
        per_sec: rate,
        limit: send_limit,
    };
    let result = Burst::start(receiver.addr, &c.token, leads.clone(), pace)
        .finish()
        .await?;
    let accepted = result.accepted();
    eprintln!(
        "bench: speed: {accepted} accepted in {:.2} s ({:.0} leads/s; {}), waiting for the messages",
        result.secs,
        accepted as f64 / result.secs.max(1e-9),
        result.statuses_text()
    );
    wait_delivered(&provider, &mut receiver, &mut workers, accepted).await?;
    let system = SystemCpu::sample().since(&sys0);
    let receiver_stats = delta(r0, receiver.stats()?);
    let mut worker_stats = Vec::with_capacity(workers.len());
    for (w, before) in workers.iter().zip(w0) {
        worker_stats.push(delta(before, w.stats()?));
    }
    let logs = stop(receiver, workers).await?;
    let created = created_at(&db.conn, c.account).await?;
    let statuses = statuses(&db.conn, c.account).await?;
    let _ = db.conn.close().await;

    let timing = timing(&leads, &result, &provider, &created)?;
    let figures = SpeedFigures {
        leads: n,
        target_rate: rate,
        accepted,
        answers: result.statuses_text(),
        post_secs: result.secs,
        total_ms: timing.total_ms,
        send_ms: timing.send_ms,
        receipt_secs: timing.receipt_secs,
        requests: timing.requests,
        delivered: timing.delivered,
        texted_twice: timing.texted_twice,
        statuses,
        receiver: receiver_stats,
        workers: worker_stats,
        system,
        logs,
    };
    eprintln!(
        "bench: speed: 202 → message p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {:.0} messages/s",
        figures.p_ms(50.0),
        figures.p_ms(99.0),
        figures.p_ms(100.0),
        figures.messages_per_sec()
    );
    Ok(figures)
}

fn delta(before: ProcStats, after: ProcStats) -> ProcStats {
    ProcStats {
        cpu_secs: after.cpu_secs - before.cpu_secs,
        peak_rss_mib: after.peak_rss_mib,
    }
}

/// Waits until the provider has delivered `n` messages; fails when a process exits, when
/// nothing arrives for 30 s, or after a bound that grows with `n`.
async fn wait_delivered(
    provider: &SmsProvider,
    receiver: &mut Proc,
    workers: &mut [Proc],
    n: usize,
) -> anyhow::Result<()> {
    let limit = Duration::from_secs(60) + Duration::from_millis(20 * n as u64);
    let started = Instant::now();
    let (mut best, mut moved, mut printed) = (0, Instant::now(), Instant::now());
    loop {
        receiver.check_alive()?;
        for w in workers.iter_mut() {
            w.check_alive()?;
        }
        let (_, delivered) = provider.counts();
        if delivered >= n {
            return Ok(());
        }
        if delivered > best {
            (best, moved) = (delivered, Instant::now());
        }
        if moved.elapsed() > Duration::from_secs(30) || started.elapsed() > limit {
            bail!(
                "the provider received {delivered} of {n} messages in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        if printed.elapsed() > Duration::from_secs(2) {
            printed = Instant::now();
            eprintln!("bench: speed: {delivered}/{n} messages received");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the receiver and the workers; the summary of each one's log.
async fn stop(receiver: Proc, workers: Vec<Proc>) -> anyhow::Result<Vec<(String, LogSummary)>> {
    let mut logs = Vec::new();
    for p in std::iter::once(receiver).chain(workers) {
        let (name, log) = (p.name.clone(), p.log.clone());
        p.stop().await?;
        logs.push((name, procs::summarize_log(&log)));
    }
    Ok(logs)
}

/// When each message step of the account was scheduled (its enrollment's commit), by the
/// idempotency key its sends carry.
async fn created_at(
    conn: &impl ConnectionTrait,
    account: i64,
) -> anyhow::Result<HashMap<String, chrono::DateTime<chrono::Utc>>> {
    let rows = conn
        .query_all_raw(seed::stmt(
            "SELECT id, created_at FROM messages WHERE account_id = $1",
            vec![account.into()],
        ))
        .await
        .context("Failed to read the message steps")?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.try_get("", "id").context("Failed to read a step id")?;
        let at = r
            .try_get("", "created_at")
            .context("Failed to read a step's created_at")?;
        out.insert(format!("message-{id}"), at);
    }
    Ok(out)
}

/// The account's message steps by status.
async fn statuses(
    conn: &impl ConnectionTrait,
    account: i64,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for r in conn
        .query_all_raw(seed::stmt(
            "SELECT status::text AS status, count(*) AS n FROM messages \
             WHERE account_id = $1 GROUP BY 1",
            vec![account.into()],
        ))
        .await
        .context("Failed to count the message steps")?
    {
        out.insert(
            r.try_get::<String>("", "status")
                .context("Failed to read a status")?,
            r.try_get::<i64>("", "n")
                .context("Failed to read a count")?,
        );
    }
    Ok(out)
}

/// What the provider's record says about the burst.
struct Timing {
    total_ms: Vec<f64>,
    send_ms: Vec<f64>,
    receipt_secs: f64,
    requests: usize,
    delivered: usize,
    texted_twice: usize,
}

/// Each lead's 202 → the first message to its number, and the enrollment → message part.
fn timing(
    leads: &[client::Lead],
    burst: &BurstResult,
    provider: &SmsProvider,
    created: &HashMap<String, chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<Timing> {
    let by_number: HashMap<&str, usize> = leads
        .iter()
        .enumerate()
        .map(|(i, l)| (l.e164.as_str(), i))
        .collect();
    let received = provider.received();
    let delivered: Vec<_> = received.iter().filter(|r| !r.repeat).collect();
    let mut texted = vec![0usize; leads.len()];
    let mut total_ms = Vec::with_capacity(delivered.len());
    let mut send_ms = Vec::with_capacity(delivered.len());
    for r in &delivered {
        let Some(&i) = by_number.get(r.to.as_str()) else {
            bail!("the provider got a message for {}, no lead's number", r.to);
        };
        texted[i] += 1;
        if texted[i] > 1 {
            continue;
        }
        let Some(at) = burst.accepted_at[i] else {
            bail!("{} got a message but its lead was never accepted", r.to);
        };
        total_ms.push(r.at.saturating_duration_since(at).as_secs_f64() * 1e3);
        if let Some(c) = r.idempotency_key.as_ref().and_then(|k| created.get(k)) {
            send_ms.push((r.at_utc - *c).as_seconds_f64().max(0.0) * 1e3);
        }
    }
    total_ms.sort_by(f64::total_cmp);
    send_ms.sort_by(f64::total_cmp);
    let receipt_secs = match (delivered.first(), delivered.last()) {
        (Some(a), Some(b)) => b.at.saturating_duration_since(a.at).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Timing {
        total_ms,
        send_ms,
        receipt_secs,
        requests: received.len(),
        delivered: delivered.len(),
        texted_twice: texted.iter().filter(|&&k| k > 1).count(),
    })
}
