//! Section `worker`: how fast worker processes drain a backlog of mixed leads already in
//! `leads.intake`, with a small (10,000) and a large pre-existing contact table, with one and
//! two processes, next to the plain-SQL baseline writing the same rows in the same large
//! database.
//!
//! Databases: a fresh one per table size. The small one is dropped after its drain; in the
//! large one the 1-process drain, the baseline (into a second account) and the 2-process
//! drain (a second backlog of new numbers) run one after the other.

use crate::Ctx;
use crate::env::{BenchDb, default_retry_delays};
use crate::leads::{self, Catalogs, Mix};
use crate::procs::{self, LogSummary, Proc, ProcStats, SystemCpu, WorkerCounters};
use crate::seed;
use crate::{baseline, publish};
use anyhow::{Context, bail};
use chrono::Utc;
use sea_orm::ConnectionTrait;
use shared::amqp::Topology;
use shared::intake::IntakeMessage;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One drain: the backlog, the processes, what they did.
#[derive(Debug, Clone)]
pub struct Drain {
    pub label: String,
    pub contacts: u64,
    pub processes: usize,
    pub leads: usize,
    /// From starting the processes to the last lead's commit.
    pub secs: f64,
    /// Final intake statuses of the backlog's leads (one exact count at the end).
    pub statuses: BTreeMap<String, i64>,
    pub per_process: Vec<(ProcStats, WorkerCounters)>,
    /// The machine, PostgreSQL and RabbitMQ during the drain.
    pub system: SystemCpu,
    pub logs: Vec<LogSummary>,
}

impl Drain {
    pub fn rate(&self) -> f64 {
        self.leads as f64 / self.secs.max(1e-9)
    }

    pub fn cpu_us_per_lead(&self) -> f64 {
        let cpu: f64 = self.per_process.iter().map(|(s, _)| s.cpu_secs).sum();
        cpu * 1e6 / self.leads.max(1) as f64
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.per_process
            .iter()
            .map(|(s, _)| s.peak_rss_mib)
            .fold(0.0, f64::max)
    }

    pub fn counters(&self) -> WorkerCounters {
        let mut t = WorkerCounters::default();
        for (_, c) in &self.per_process {
            t.finished += c.finished;
            t.retried += c.retried;
            t.dead_lettered += c.dead_lettered;
            t.deferred += c.deferred;
            t.batches += c.batches;
            t.batched_leads += c.batched_leads;
        }
        t
    }

    /// Leads that ended in a final status (everything but queued/processing).
    pub fn completed(&self) -> i64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !matches!(s.as_str(), "queued" | "processing"))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let c = self.counters();
        serde_json::json!({
            "contacts": self.contacts,
            "processes": self.processes,
            "leads": self.leads,
            "secs": self.secs,
            "leads_per_sec": self.rate(),
            "cpu_us_per_lead": self.cpu_us_per_lead(),
            "peak_rss_mib": self.peak_rss_mib(),
            "statuses": self.statuses,
            "retried": c.retried,
            "dead_lettered": c.dead_lettered,
            "deferred": c.deferred,
            "mean_batch": c.batched_leads / c.batches.max(1.0),
            "system": self.system.to_json(self.leads as f64),
            "log_warnings": self.logs.iter().map(|l| l.warn).sum::<usize>(),
            "log_errors": self.logs.iter().map(|l| l.error).sum::<usize>(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct WorkerFigures {
    pub small: Drain,
    pub large: Drain,
    pub two: Drain,
    /// Baseline leads per second (plain SQL, one connection, large database).
    pub baseline: f64,
    /// The machine and PostgreSQL during the baseline.
    pub baseline_system: SystemCpu,
    /// Baseline leads per second with as many transactions at once as one worker runs.
    pub baseline_concurrent: f64,
    /// Transactions at once of the concurrent baseline (the worker's default concurrency).
    pub baseline_streams: usize,
    /// The machine and PostgreSQL during the concurrent baseline.
    pub baseline_concurrent_system: SystemCpu,
    /// Rows written for the large backlog per table: (table, by the worker, by the baseline).
    pub written: Vec<(String, i64, i64)>,
}

impl WorkerFigures {
    /// The worker against the baseline at the worker's own concurrency.
    pub fn ratio(&self) -> f64 {
        self.large.rate() / self.baseline_concurrent.max(1e-9)
    }
    /// The worker against the baseline on one connection.
    pub fn ratio_one_connection(&self) -> f64 {
        self.large.rate() / self.baseline.max(1e-9)
    }
    pub fn scale_ratio(&self) -> f64 {
        self.large.rate() / self.small.rate().max(1e-9)
    }
    pub fn speedup(&self) -> f64 {
        self.two.rate() / self.large.rate().max(1e-9)
    }
}

/// A fresh database with `contacts` pre-seeded contacts of the first account; the second
/// account is the baseline's.
pub(crate) async fn database(
    ctx: &Ctx,
    contacts: u64,
) -> anyhow::Result<(BenchDb, Catalogs, Catalogs)> {
    let db = ctx.janitor.database().await?;
    eprintln!("bench: database {} with {contacts} contacts", db.name);
    let first = seed::account(&db.conn, "Bench").await?;
    let second = seed::account(&db.conn, "Bench baseline").await?;
    seed::contacts(&db.conn, &first, contacts).await?;
    Ok((db, first, second))
}

pub(crate) fn backlog(n: usize, mix: Mix, c: &Catalogs) -> anyhow::Result<Vec<IntakeMessage>> {
    leads::draw(n, mix, c)?
        .iter()
        .map(|b| leads::to_message(&b.fields, c))
        .collect()
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<WorkerFigures> {
    let n = ctx.sizes.backlog;
    let small_contacts = ctx.sizes.small_contacts;
    let large_contacts = ctx.sizes.large_contacts;

    let small = {
        let (db, c, _) = database(ctx, small_contacts).await?;
        seed::analyze(&db.conn).await?;
        let mix = Mix {
            namespace: 0,
            seeded: small_contacts,
            actions: true,
            rng_seed: 1,
        };
        let messages = backlog(n, mix, &c)?;
        let d = drain(ctx, &db, &messages, 1, "small-1p", small_contacts).await?;
        let _ = db.conn.close().await;
        // Frees the small database before the large one is written.
        ctx.janitor.clean().await;
        d
    };

    let (db, c, second) = database(ctx, large_contacts).await?;
    let mix = Mix {
        namespace: 0,
        seeded: large_contacts,
        actions: true,
        rng_seed: 2,
    };
    let messages = backlog(n, mix, &c)?;
    // Each baseline account gets its own copies of the pre-seeded contacts the backlog
    // repeats, so its repeats update a contact as the worker's do.
    let third = seed::account(&db.conn, "Bench baseline, concurrent").await?;
    for account in [&second, &third] {
        seed::copies(&db.conn, account, &leads::seeded_hits(&messages)).await?;
    }
    seed::analyze(&db.conn).await?;
    let large = drain(ctx, &db, &messages, 1, "large-1p", large_contacts).await?;

    eprintln!("bench: baseline: the same rows by plain SQL over one connection");
    let (baseline, baseline_system) = run_baseline(&db, 1, &messages, &c, &second).await?;
    let streams = shared::config::WorkerSettings::default().concurrency;
    eprintln!("bench: baseline: the same rows by plain SQL, {streams} transactions at once");
    let (baseline_concurrent, baseline_concurrent_system) =
        run_baseline(&db, streams, &messages, &c, &third).await?;
    let written = written(&db, &c, &second).await?;

    let mix = Mix {
        namespace: 1,
        rng_seed: 3,
        ..mix
    };
    let messages = backlog(n, mix, &c)?;
    let two = drain(ctx, &db, &messages, 2, "large-2p", large_contacts).await?;
    let _ = db.conn.close().await;
    Ok(WorkerFigures {
        small,
        large,
        two,
        baseline,
        baseline_system,
        baseline_concurrent,
        baseline_streams: streams,
        baseline_concurrent_system,
        written,
    })
}

/// The baseline into account `to` with `streams` transactions at once: leads per second and
/// what the machine did meanwhile. Fails unless it wrote one intake per lead.
async fn run_baseline(
    db: &BenchDb,
    streams: usize,
    messages: &[IntakeMessage],
    from: &Catalogs,
    to: &Catalogs,
) -> anyhow::Result<(f64, SystemCpu)> {
    let pool = db.connections(streams as u32).await?;
    // Every connection open before the first sample (a backend's CPU counts only while it
    // lives), and the backends of earlier runs gone.
    let opened = (0..streams).map(|_| pool.execute_unprepared("SELECT pg_sleep(0.2)"));
    for opened in futures_util::future::join_all(opened).await {
        opened.context("Failed to open the baseline's connections")?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sys0 = SystemCpu::sample();
    let rate = baseline::run(&pool, streams, messages, from, to).await?;
    let system = SystemCpu::sample().since(&sys0);
    let _ = pool.close().await;
    check_baseline(db, to, messages.len()).await?;
    eprintln!("bench: baseline, {streams} at once: {rate:.0} leads/s");
    Ok((rate, system))
}

/// Rows the worker (account `a`) and the baseline (account `b`) wrote for the same backlog,
/// per table, in one query: shows the baseline does comparable work. Pre-seeded rows are 30
/// days old and not counted.
async fn written(
    db: &BenchDb,
    a: &Catalogs,
    b: &Catalogs,
) -> anyhow::Result<Vec<(String, i64, i64)>> {
    let rows = db
        .conn
        .query_all_raw(seed::stmt(
            "WITH recent AS (SELECT now() - interval '1 day' AS t) \
             SELECT name, count(*) FILTER (WHERE account_id = $1) AS a, \
                    count(*) FILTER (WHERE account_id = $2) AS b FROM ( \
               SELECT 'contacts created' AS name, account_id FROM contacts, recent \
                 WHERE account_id IN ($1, $2) AND created_at > recent.t \
               UNION ALL SELECT 'contacts updated', account_id FROM contacts, recent \
                 WHERE account_id IN ($1, $2) AND created_at <= recent.t AND updated_at > recent.t \
               UNION ALL SELECT 'phone numbers', account_id FROM contact_phone_numbers, recent \
                 WHERE account_id IN ($1, $2) AND created_at > recent.t \
               UNION ALL SELECT 'intakes', account_id FROM lead_intakes, recent \
                 WHERE account_id IN ($1, $2) AND received_at > recent.t \
               UNION ALL SELECT 'notes', account_id FROM contact_notes WHERE account_id IN ($1, $2) \
               UNION ALL SELECT 'tags', account_id FROM contact_tags WHERE account_id IN ($1, $2) \
               UNION ALL SELECT 'enrollments', account_id FROM sequence_enrollments WHERE account_id IN ($1, $2) \
               UNION ALL SELECT 'powerdialer', account_id FROM powerdialer_items WHERE account_id IN ($1, $2) \
             ) AS x GROUP BY name ORDER BY name",
            vec![a.account.into(), b.account.into()],
        ))
        .await
        .context("Failed to count the rows written")?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "name")
                    .context("Failed to read a name")?,
                r.try_get::<i64>("", "a")
                    .context("Failed to read a count")?,
                r.try_get::<i64>("", "b")
                    .context("Failed to read a count")?,
            ))
        })
        .collect()
}

/// The baseline must have written one intake per lead, or its rate means nothing.
pub(crate) async fn check_baseline(db: &BenchDb, c: &Catalogs, n: usize) -> anyhow::Result<()> {
    let written = seed::scalar_i64(
        &db.conn,
        "SELECT count(*) FROM lead_intakes WHERE account_id = $1 AND received_at > now() - interval '1 day'",
        vec![c.account.into()],
    )
    .await?;
    if written != n as i64 {
        bail!("The baseline wrote {written} intake records for {n} leads");
    }
    Ok(())
}

/// Starts `count` worker processes (default settings: only URLs, prefixes and the metrics
/// address are set).
pub async fn start_workers(
    ctx: &Ctx,
    db: &BenchDb,
    prefixes: &crate::env::Prefixes,
    count: usize,
    label: &str,
) -> anyhow::Result<Vec<Proc>> {
    start_workers_with(ctx, db, prefixes, count, label, &[]).await
}

/// [`start_workers`] with `extra` added to each worker's environment.
pub async fn start_workers_with(
    ctx: &Ctx,
    db: &BenchDb,
    prefixes: &crate::env::Prefixes,
    count: usize,
    label: &str,
    extra: &[(String, String)],
) -> anyhow::Result<Vec<Proc>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let addr = procs::free_addr()?;
        let mut env = worker_env(ctx, &db.url, prefixes, addr);
        env.extend_from_slice(extra);
        out.push(Proc::spawn(
            &format!("worker-{label}-{}", i + 1),
            "worker",
            &[],
            &env,
            addr,
            &ctx.log_dir,
        )?);
    }
    Ok(out)
}

/// Environment of a worker whose `/metrics` is on `addr`.
pub fn worker_env(
    ctx: &Ctx,
    db_url: &str,
    prefixes: &crate::env::Prefixes,
    addr: std::net::SocketAddr,
) -> Vec<(String, String)> {
    let mut env = procs::service_env(ctx.janitor.services(), db_url, prefixes);
    env.push(("WORKER_METRICS_ADDR".into(), addr.to_string()));
    env
}

/// Scrapes the workers' `/metrics` every 150 ms until they have finished `n` leads
/// together (never a `count(*)` in a loop: that would take the database CPU being
/// measured), and every 10 ms once the rate so far says the rest takes less than 300 ms,
/// so that a drain's end is known to about 10 ms and not to a scrape interval (which is
/// 8% of a 2-second drain). Fails when a worker exits, when nothing moves for 60 s, or
/// after `limit`.
pub async fn wait_finished(
    workers: &mut [Proc],
    n: f64,
    label: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut best = 0.0;
    let mut first: Option<f64> = None;
    let mut moved = Instant::now();
    let mut printed = Instant::now();
    loop {
        for w in workers.iter_mut() {
            w.check_alive()?;
        }
        let mut finished = 0.0;
        for w in workers.iter() {
            if let Ok(c) = procs::counters(w.addr).await {
                finished += c.finished;
            }
        }
        if finished >= n {
            return Ok(started.elapsed());
        }
        // The rate counts only what finished while waiting (the e2e workers start early).
        let base = *first.get_or_insert(finished);
        if finished > best {
            best = finished;
            moved = Instant::now();
        } else if moved.elapsed() > Duration::from_secs(60) {
            bail!("{label}: stalled at {finished} of {n} leads for 60 s");
        }
        if started.elapsed() > limit {
            bail!(
                "{label}: {finished} of {n} leads after {} s, giving up",
                limit.as_secs()
            );
        }
        if printed.elapsed() >= Duration::from_secs(2) {
            printed = Instant::now();
            eprintln!(
                "bench: draining {label}: {finished}/{n} ({:.0} leads/s)",
                (finished - base) / started.elapsed().as_secs_f64()
            );
        }
        let rate = (finished - base) / started.elapsed().as_secs_f64().max(1e-9);
        tokio::time::sleep(scrape_pause(n - finished, rate)).await;
    }
}

/// The pause before the next scrape: 150 ms, or 10 ms when `left` leads at `rate` per
/// second take less than 300 ms.
fn scrape_pause(left: f64, rate: f64) -> Duration {
    if rate > 0.0 && left / rate < 0.3 {
        Duration::from_millis(10)
    } else {
        Duration::from_millis(150)
    }
}

/// Time limit of a drain of `n` leads: generous (a worker at 200 leads/s passes), bounded.
pub fn drain_limit(n: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(5 * n as u64)
}

/// Publishes `messages`, starts `processes` workers and times them until every lead is
/// finished.
pub(crate) async fn drain(
    ctx: &Ctx,
    db: &BenchDb,
    messages: &[IntakeMessage],
    processes: usize,
    label: &str,
    contacts: u64,
) -> anyhow::Result<Drain> {
    let none: Option<std::future::Ready<anyhow::Result<()>>> = None;
    drain_with(ctx, db, messages, processes, label, contacts, &[], none).await
}

/// [`drain`] with `extra` in each worker's environment; `linger`, when given, runs after
/// the last lead's commit (and after the drain's CPU figures are taken) while the workers
/// still run, e.g. until their delivery loops are done.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drain_with<F>(
    ctx: &Ctx,
    db: &BenchDb,
    messages: &[IntakeMessage],
    processes: usize,
    label: &str,
    contacts: u64,
    extra: &[(String, String)],
    linger: Option<F>,
) -> anyhow::Result<Drain>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let delays = default_retry_delays();
    let prefixes = ctx.janitor.prefixes(&delays);
    let topology = Topology::new(&prefixes.amqp, &delays);
    publish::backlog(&ctx.janitor.services().amqp_url, &topology, messages).await?;

    eprintln!(
        "bench: drain {label}: {} leads, {processes} worker process(es), {contacts} contacts",
        messages.len()
    );
    let sys0 = SystemCpu::sample();
    let started_at = Utc::now();
    let mut workers = start_workers_with(ctx, db, &prefixes, processes, label, extra).await?;
    wait_finished(
        &mut workers,
        messages.len() as f64,
        label,
        drain_limit(messages.len()),
    )
    .await?;
    // The end: when the workers' counters showed the last lead finished, which is after its
    // commit (at most one 150 ms scrape after). `processed_at` is stamped inside the
    // transaction, before its last statements, so it would end the drain early.
    let secs = (Utc::now() - started_at).as_seconds_f64();
    // Before the workers stop: their database backends exit with them.
    let system = SystemCpu::sample().since(&sys0);
    let mut per_process = Vec::with_capacity(workers.len());
    for w in &workers {
        per_process.push((w.stats()?, procs::counters(w.addr).await?));
    }
    if let Some(linger) = linger {
        linger.await?;
    }
    let mut logs = Vec::new();
    for w in workers {
        let log = w.log.clone();
        w.stop().await?;
        logs.push(procs::summarize_log(&log));
    }

    let statuses = final_statuses(db, messages).await?;
    let d = Drain {
        label: label.to_owned(),
        contacts,
        processes,
        leads: messages.len(),
        secs,
        statuses,
        per_process,
        system,
        logs,
    };
    eprintln!(
        "bench: drain {label}: {:.0} leads/s ({:.2} s; {})",
        d.rate(),
        d.secs,
        statuses_text(&d.statuses)
    );
    Ok(d)
}

pub fn statuses_text(s: &BTreeMap<String, i64>) -> String {
    s.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One exact count of the backlog's intakes by status.
async fn final_statuses(
    db: &BenchDb,
    messages: &[IntakeMessage],
) -> anyhow::Result<BTreeMap<String, i64>> {
    let ids = messages
        .iter()
        .map(|m| m.intake_id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let rows = db
        .conn
        .query_all_raw(seed::stmt(
            "SELECT status, count(*) AS n FROM lead_intakes \
             WHERE id = ANY(string_to_array($1, ',')::uuid[]) GROUP BY status",
            vec![ids.into()],
        ))
        .await
        .context("Failed to count the backlog's intakes")?;
    let mut statuses = BTreeMap::new();
    for r in rows {
        let status: String = r.try_get("", "status").context("Failed to read a status")?;
        let n: i64 = r.try_get("", "n").context("Failed to read a count")?;
        statuses.insert(status, n);
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_come_often_only_near_the_end_of_a_drain() {
        // 10,000 leads/s: 5,000 left is half a second, 2,000 a fifth.
        assert_eq!(scrape_pause(5_000.0, 10_000.0), Duration::from_millis(150));
        assert_eq!(scrape_pause(2_000.0, 10_000.0), Duration::from_millis(10));
        // Nothing finished yet: no rate to judge by.
        assert_eq!(scrape_pause(100.0, 0.0), Duration::from_millis(150));
    }
}
