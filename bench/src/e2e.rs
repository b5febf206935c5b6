//! Section `e2e`: real POSTs through the release receiver into two worker processes, from the
//! first request to the last commit, next to the broker's own ceiling in the same run — a
//! plain lapin publisher and consumer moving the same message bytes through the run's own
//! intake queue (same name, same arguments), no database.
//!
//! The run ends when the workers' counters show the last lead finished (scraped every
//! 150 ms, after its commit): never before the last commit, at most one scrape after it.
//! The intake records' `processed_at` is stamped inside the transaction, before its last
//! statements, so it is used only for each lead's lag, not for the end.
//!
//! The run starts from a settled server, as each drain of the events section does
//! ([`seed::settle`]): a checkpoint behind it and the broker's log rolled over, so that what
//! the sections before it wrote is not flushed, or read back, during it.

use crate::Ctx;
use crate::env::default_retry_delays;
use crate::leads::{self, Mix};
use crate::load::{self, LoadResult, Req, Until};
use crate::procs::{self, LogSummary, Proc, ProcStats, SystemCpu};
use crate::publish::{self, Payload, RoundTrip};
use crate::seed;
use crate::worker_bench::{self, statuses_text};
use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use shared::amqp::Topology;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Concurrent client connections of the e2e load.
const CONNECTIONS: usize = 64;
/// Client connections of the open-loop burst: more than the receiver needs to be busy.
const BURST_CONNECTIONS: usize = 256;

/// The open-loop burst: as many POSTs as the receiver takes for a while, as a campaign
/// sends them, with the workers draining meanwhile; how fast it was taken, how fast it was
/// drained, and the lag it built.
#[derive(Debug, Clone)]
pub struct Burst {
    pub posts: LoadResult,
    pub accepted: u64,
    /// First POST of the burst → its last lead finished.
    pub secs: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
}

impl Burst {
    /// Leads drained per second, first POST → last lead finished.
    pub fn drain_rate(&self) -> f64 {
        self.accepted as f64 / self.secs.max(1e-9)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "posts": self.posts.to_json(),
            "accepted": self.accepted,
            "accepted_per_sec": self.accepted as f64 / self.posts.secs.max(1e-9),
            "secs_first_post_to_last_finished": self.secs,
            "drained_leads_per_sec": self.drain_rate(),
            "lag_p50_ms": self.lag_p50_ms,
            "lag_p99_ms": self.lag_p99_ms,
        })
    }
}

#[derive(Debug, Clone)]
pub struct E2eFigures {
    pub load: LoadResult,
    pub accepted: u64,
    /// First POST → last commit.
    pub secs: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub statuses: BTreeMap<String, i64>,
    /// CPU used during the run (not at start-up) and peak RSS.
    pub receiver: ProcStats,
    /// Per worker: CPU during the run, peak RSS, leads it finished.
    pub workers: Vec<(ProcStats, f64)>,
    /// Leads per transaction over the closed-loop run and the warm-up before it.
    pub mean_batch: f64,
    pub logs: Vec<(String, LogSummary)>,
    /// The machine, PostgreSQL and RabbitMQ from the first POST to the last lead finished.
    pub system: SystemCpu,
    pub ceiling: RoundTrip,
    pub ceiling_system: SystemCpu,
    pub burst: Burst,
}

impl E2eFigures {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.secs.max(1e-9)
    }
    pub fn ratio(&self) -> f64 {
        self.rate() / self.ceiling.rate().max(1e-9)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "posts": self.load.to_json(),
            "accepted": self.accepted,
            "secs_first_post_to_last_commit": self.secs,
            "leads_per_sec": self.rate(),
            "lag_p50_ms": self.lag_p50_ms,
            "lag_p99_ms": self.lag_p99_ms,
            "statuses": self.statuses,
            "mean_batch": self.mean_batch,
            "receiver": {
                "cpu_us_per_lead": self.receiver.cpu_secs * 1e6 / self.accepted.max(1) as f64,
                "peak_rss_mib": self.receiver.peak_rss_mib,
            },
            "workers": self.workers.iter().map(|(s, n)| serde_json::json!({
                "leads": n,
                "cpu_us_per_lead": s.cpu_secs * 1e6 / n.max(1.0),
                "peak_rss_mib": s.peak_rss_mib,
            })).collect::<Vec<_>>(),
            "system": self.system.to_json(self.accepted as f64),
            "ceiling_system": self.ceiling_system.to_json(self.ceiling.messages as f64),
            "ceiling_msgs": self.ceiling.messages,
            "ceiling_secs": self.ceiling.secs,
            "ceiling_msg_per_sec": self.ceiling.rate(),
            "ratio": self.ratio(),
            "burst": self.burst.to_json(),
        })
    }
}

fn delta(before: ProcStats, after: ProcStats) -> ProcStats {
    ProcStats {
        cpu_secs: after.cpu_secs - before.cpu_secs,
        peak_rss_mib: after.peak_rss_mib,
    }
}

/// Starts a receiver whose per-token limit never bites.
pub async fn start_receiver(
    ctx: &Ctx,
    db_url: &str,
    prefixes: &crate::env::Prefixes,
    name: &str,
) -> anyhow::Result<Proc> {
    let addr = procs::free_addr()?;
    let mut p = Proc::spawn(
        name,
        "receiver",
        &[],
        &receiver_env(ctx, db_url, prefixes, addr),
        addr,
        &ctx.log_dir,
    )?;
    p.wait_ready("/readyz").await?;
    Ok(p)
}

/// Environment of a receiver on `addr` whose per-token limit never bites.
pub fn receiver_env(
    ctx: &Ctx,
    db_url: &str,
    prefixes: &crate::env::Prefixes,
    addr: std::net::SocketAddr,
) -> Vec<(String, String)> {
    let mut env = procs::service_env(ctx.janitor.services(), db_url, prefixes);
    env.push(("RECEIVER_ADDR".into(), addr.to_string()));
    env.push(("RATE_LIMIT_PER_MINUTE".into(), "1000000000".into()));
    env
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<E2eFigures> {
    let n = ctx.sizes.e2e_posts;
    let db = ctx.janitor.database().await?;
    let c = seed::account(&db.conn, "Bench e2e").await?;
    seed::contacts(&db.conn, &c, ctx.sizes.small_contacts).await?;
    // What the sections before wrote (in PostgreSQL and in the broker's log) is not left to
    // fall on this run.
    seed::settle(&db.conn).await?;
    let delays = default_retry_delays();
    let prefixes = ctx.janitor.prefixes(&delays);

    let mut receiver = start_receiver(ctx, &db.url, &prefixes, "receiver-e2e").await?;
    let mut workers = worker_bench::start_workers(ctx, &db, &prefixes, 2, "e2e").await?;
    for w in workers.iter_mut() {
        w.wait_ready("/healthz").await?;
    }

    let requests = requests(n, ctx.sizes.small_contacts, &c)?;
    let ceiling_payload = Payload::of(&leads::to_message(
        &serde_json::from_slice(&requests[0].body).context("Failed to re-read a body")?,
        &c,
    )?)?;

    let limit = worker_bench::drain_limit(n);
    let measured = posts_to_commits(&mut receiver, &mut workers, requests, limit).await?;

    // The lag and the statuses, read once every lead is done (before the burst's arrive).
    let since = measured.posts.started_at - chrono::Duration::seconds(1);
    let lag = lag(&db.conn, c.account, since).await?;
    let statuses = statuses(&db.conn, c.account, since).await?;

    let burst_secs = ctx.sizes.burst_secs;
    // More bodies than the receiver can take in the burst's time; new numbers.
    let burst_requests = requests_of(
        burst_secs as usize * 10_000,
        Mix {
            namespace: 1,
            seeded: 0,
            actions: false,
            rng_seed: 5,
        },
        &c,
    )?;
    let burst = open_burst(
        &mut receiver,
        &mut workers,
        burst_requests,
        burst_secs,
        measured.accepted,
        &db.conn,
        c.account,
    )
    .await?;
    let logs = stop(receiver, workers).await?;
    let secs = (measured.finished_at - measured.posts.started_at).as_seconds_f64();
    eprintln!(
        "bench: e2e: {:.0} leads/s first POST → last commit ({})",
        measured.accepted as f64 / secs,
        statuses_text(&statuses)
    );
    let _ = db.conn.close().await;

    let topology = Topology::new(&prefixes.amqp, &delays);
    let (ceiling, ceiling_system) = ceiling(ctx, &topology, ceiling_payload, n, limit).await?;

    Ok(E2eFigures {
        load: measured.posts,
        accepted: measured.accepted,
        secs,
        lag_p50_ms: lag.p50.unwrap_or(0.0) * 1000.0,
        lag_p99_ms: lag.p99.unwrap_or(0.0) * 1000.0,
        statuses,
        receiver: measured.receiver,
        workers: measured.workers,
        mean_batch: measured.mean_batch,
        logs,
        system: measured.system,
        ceiling,
        ceiling_system,
        burst,
    })
}

/// The `n` POSTs of the run: drawn leads with only the contract's basic fields.
fn requests(n: usize, seeded: u64, c: &leads::Catalogs) -> anyhow::Result<Vec<Req>> {
    let mix = Mix {
        namespace: 0,
        seeded,
        actions: false,
        rng_seed: 4,
    };
    requests_of(n, mix, c)
}

/// `n` POSTs of leads drawn from `mix`, with only the contract's basic fields.
fn requests_of(n: usize, mix: Mix, c: &leads::Catalogs) -> anyhow::Result<Vec<Req>> {
    let bodies = leads::draw(n, mix, c)?;
    let mut requests = Vec::with_capacity(n);
    for b in &bodies {
        let mut fields = b.fields.clone();
        fields.insert("api_token".into(), serde_json::json!(c.token));
        // The e2e body carries only the contract's basic fields.
        fields.retain(|k, _| {
            matches!(
                k.as_str(),
                "api_token" | "phone_number" | "first_name" | "email" | "lead_source"
            )
        });
        requests.push(Req {
            path: "/api/v1/webhook/forms".into(),
            content_type: "application/json",
            body: Bytes::from(serde_json::to_vec(&fields).context("Failed to serialize a body")?),
            bearer: None,
            expect: 202,
        });
    }
    Ok(requests)
}

/// What the measured phase gives: the POSTs' answers and what each process used meanwhile.
struct PipelineRun {
    posts: LoadResult,
    accepted: u64,
    /// When the workers' counters showed the last lead finished.
    finished_at: DateTime<Utc>,
    system: SystemCpu,
    receiver: ProcStats,
    workers: Vec<(ProcStats, f64)>,
    mean_batch: f64,
}

/// The measured phase: every request POSTed, then every accepted lead finished by the
/// workers; CPU counted from the first POST to the last lead finished.
async fn posts_to_commits(
    receiver: &mut Proc,
    workers: &mut [Proc],
    requests: Vec<Req>,
    limit: std::time::Duration,
) -> anyhow::Result<PipelineRun> {
    let n = requests.len();
    let r0 = receiver.stats()?;
    let w0: Vec<ProcStats> = workers
        .iter()
        .map(Proc::stats)
        .collect::<anyhow::Result<_>>()?;
    eprintln!("bench: e2e: {n} POSTs over {CONNECTIONS} connections");
    let sys0 = SystemCpu::sample();
    let posts = load::run(
        receiver.addr,
        CONNECTIONS,
        Arc::new(requests),
        Until::AllSent,
        limit,
        Some("e2e POSTs"),
    )
    .await?;
    let accepted = posts.count(202);
    eprintln!(
        "bench: e2e: {} answered in {:.2} s ({:.0} req/s; {}), waiting for the workers",
        posts.answered(),
        posts.secs,
        posts.rate(),
        posts.statuses_text()
    );
    receiver.check_alive()?;
    worker_bench::wait_finished(workers, accepted as f64, "e2e", limit).await?;
    let finished_at = Utc::now();
    let system = SystemCpu::sample().since(&sys0);
    let r1 = receiver.stats()?;
    let mut per_worker = Vec::with_capacity(workers.len());
    let (mut batches, mut batched) = (0.0, 0.0);
    for (w, before) in workers.iter().zip(w0) {
        let c = procs::counters(w.addr).await?;
        batches += c.batches;
        batched += c.batched_leads;
        per_worker.push((delta(before, w.stats()?), c.finished));
    }
    Ok(PipelineRun {
        posts,
        accepted,
        finished_at,
        system,
        receiver: delta(r0, r1),
        workers: per_worker,
        mean_batch: batched / f64::max(batches, 1.0),
    })
}

/// The open-loop burst: `requests` POSTed over [`BURST_CONNECTIONS`] for `secs` (each
/// connection sends its next POST as soon as it is answered, so the receiver sets the pace,
/// not the workers), then every accepted lead finished; `before` leads were finished by the
/// workers already.
async fn open_burst(
    receiver: &mut Proc,
    workers: &mut [Proc],
    requests: Vec<Req>,
    secs: u64,
    before: u64,
    conn: &impl ConnectionTrait,
    account: i64,
) -> anyhow::Result<Burst> {
    eprintln!("bench: e2e burst: as many POSTs as the receiver takes for {secs} s");
    let posts = load::run(
        receiver.addr,
        BURST_CONNECTIONS,
        Arc::new(requests),
        Until::Elapsed(std::time::Duration::from_secs(secs)),
        std::time::Duration::from_secs(secs + 30),
        Some("e2e burst"),
    )
    .await?;
    let accepted = posts.count(202);
    eprintln!(
        "bench: e2e burst: {accepted} accepted in {:.2} s ({:.0} req/s; {}), waiting for the workers",
        posts.secs,
        posts.rate(),
        posts.statuses_text()
    );
    receiver.check_alive()?;
    worker_bench::wait_finished(
        workers,
        (before + accepted) as f64,
        "e2e burst",
        worker_bench::drain_limit(accepted as usize),
    )
    .await?;
    let secs = (Utc::now() - posts.started_at).as_seconds_f64();
    let lag = lag(conn, account, posts.started_at).await?;
    eprintln!(
        "bench: e2e burst: drained at {:.0} leads/s, lag p50 {:.1} s, p99 {:.1} s",
        accepted as f64 / secs,
        lag.p50.unwrap_or(0.0),
        lag.p99.unwrap_or(0.0)
    );
    Ok(Burst {
        posts,
        accepted,
        secs,
        lag_p50_ms: lag.p50.unwrap_or(0.0) * 1000.0,
        lag_p99_ms: lag.p99.unwrap_or(0.0) * 1000.0,
    })
}

/// Stops the receiver and the workers; the summary of each one's log.
async fn stop(receiver: Proc, workers: Vec<Proc>) -> anyhow::Result<Vec<(String, LogSummary)>> {
    let mut logs = Vec::new();
    let log = receiver.log.clone();
    receiver.stop().await?;
    logs.push(("receiver".to_owned(), procs::summarize_log(&log)));
    for w in workers {
        let (name, log) = (w.name.clone(), w.log.clone());
        w.stop().await?;
        logs.push((name, procs::summarize_log(&log)));
    }
    Ok(logs)
}

/// The median and 99th percentile of receipt → processing, in seconds.
struct Lag {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// The end and the lag of the run, in one query.
async fn lag(
    conn: &impl ConnectionTrait,
    account: i64,
    since: DateTime<Utc>,
) -> anyhow::Result<Lag> {
    let row = conn
        .query_one_raw(seed::stmt(
            "SELECT count(*) AS n, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)::float8) AS p50, \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)::float8) AS p99 \
             FROM lead_intakes WHERE account_id = $1 AND received_at >= $2 AND processed_at IS NOT NULL",
            vec![account.into(), since.into()],
        ))
        .await
        .context("Failed to read the e2e lag")?
        .context("Failed to read the e2e lag: no row")?;
    let n: i64 = row.try_get("", "n").context("Failed to read the count")?;
    let p50: Option<f64> = row.try_get("", "p50").context("Failed to read p50")?;
    let p99: Option<f64> = row.try_get("", "p99").context("Failed to read p99")?;
    if n == 0 {
        bail!("No e2e lead reached the database");
    }
    Ok(Lag { p50, p99 })
}

/// The run's intakes by status.
async fn statuses(
    conn: &impl ConnectionTrait,
    account: i64,
    since: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut statuses = BTreeMap::new();
    for r in conn
        .query_all_raw(seed::stmt(
            "SELECT status, count(*) AS n FROM lead_intakes WHERE account_id = $1 AND received_at >= $2 GROUP BY status",
            vec![account.into(), since.into()],
        ))
        .await
        .context("Failed to count the e2e intakes")?
    {
        statuses.insert(
            r.try_get::<String>("", "status").context("Failed to read a status")?,
            r.try_get::<i64>("", "n").context("Failed to read a count")?,
        );
    }
    Ok(statuses)
}

/// Deliveries the ceiling's consumer acknowledges with one frame: a worker's default batch,
/// which it acknowledges together.
const ACK_RUN: u64 = 64;

/// The broker's ceiling: `n` copies of `payload` published and consumed through
/// `topology`'s intake queue (the run's own, empty again), no database.
async fn ceiling(
    ctx: &Ctx,
    topology: &Topology,
    payload: Payload,
    n: usize,
    limit: std::time::Duration,
) -> anyhow::Result<(RoundTrip, SystemCpu)> {
    eprintln!(
        "bench: e2e ceiling: {n} messages published (confirms, {CONNECTIONS} in flight) and consumed (prefetch 256, one ack per {ACK_RUN}, as a worker's batch)"
    );
    let sys0 = SystemCpu::sample();
    let ceiling = publish::round_trip(
        &ctx.janitor.services().amqp_url,
        topology,
        payload,
        n as u64,
        CONNECTIONS,
        256,
        ACK_RUN,
        limit,
    )
    .await?;
    let ceiling_system = SystemCpu::sample().since(&sys0);
    eprintln!("bench: e2e ceiling: {:.0} msg/s", ceiling.rate());
    Ok((ceiling, ceiling_system))
}
