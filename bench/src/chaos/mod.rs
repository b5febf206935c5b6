//! `scripts/chaos`: the promise of the pipeline checked under faults — every lead answered
//! 202 ends as exactly one contact, or in the dead-letter queue with its reason and an
//! intake record that says so.
//!
//! Each scenario gets a fresh database, broker prefix and Redis prefix on the private
//! services `scripts/chaos` started, a receiver and worker processes, and sends a bounded
//! burst of leads (80% new numbers, 20% repeats in other formats, each with its own
//! `Idempotency-Key` and note) from clients that retry every answer but 202 with the same
//! key, while the fault happens; then every 202 is reconciled ([`reconcile`]).
//!
//! - `worker-kill`: kill -9 of a worker mid-burst, three times (restarted each time);
//! - `receiver-kill`: kill -9 of the receiver mid-burst, restarted on the same address;
//! - `rabbitmq-restart`, `postgres-restart`: the service stopped and started under load
//!   (workers retry; nothing may be dead-lettered for an outage shorter than the retry
//!   schedule);
//! - `redis-fail-open`, `redis-fail-closed`: Redis stopped and started under load; open
//!   keeps accepting and counts it, closed answers 503 and loses nothing;
//! - `postgres-kill-9`, `rabbitmq-kill-9`, `redis-kill-9`: the crash instead of the polite
//!   stop: SIGKILL of the PostgreSQL postmaster (the start after it is a crash recovery), of
//!   the RabbitMQ node's Erlang VM and of Redis mid-burst, each started again 2 s later;
//! - `postgres-partition`: the workers' connections to PostgreSQL go silent for 30 s (a
//!   proxy drops everything both ways without closing anything, new connections included),
//!   then the partition heals;
//! - `postgres-read-only`: every transaction of PostgreSQL read-only for 20 s
//!   (`default_transaction_read_only`, as on a standby or a database an operator froze);
//! - `rabbitmq-cluster`: a three-node RabbitMQ cluster (every quorum queue replicated to the
//!   three), the receiver and workers given all three addresses; the node they connected to
//!   is killed with kill -9 mid-burst and stays down: they move to the other two;
//! - `backlog`: a backlog built with the workers stopped, then drained: peak RSS of every
//!   process printed, early and at the end, and it must stay flat;
//! - `dlq-replay`: a lead refused by the database until an operator fixes it, dead-lettered,
//!   then `leadctl dlq replay`: exactly one contact, and a second replay changes nothing;
//! - `message-kill`: a burst of leads each texted at once (§10) through a provider that
//!   answers after 200–500 ms, every worker killed with kill -9 while sends are in flight,
//!   three times: each lead's first step is `sent` exactly once, and the provider got each
//!   step's idempotency key and no number twice ([`messages`]);
//! - `event-kill`: a burst through an account with a webhook endpoint that answers after
//!   100 ms, every worker killed with kill -9 while deliveries are in flight, three times:
//!   each finished intake has exactly its events, none for work that did not commit, and
//!   every event reached the endpoint with its stored bytes ([`events`]).

pub mod client;
pub mod events;
pub mod fleet;
pub mod messages;
pub mod reconcile;

use crate::Ctx;
use crate::env::{BenchDb, Prefixes};
use crate::leads::Catalogs;
use crate::procs::{self, free_addr};
use crate::{e2e, seed, worker_bench};
use anyhow::{Context, bail};
use client::{Burst, BurstResult, Lead, Pace};
use fleet::{Member, Service, Services};
use reconcile::Tally;
use sea_orm::ConnectionTrait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    WorkerKill,
    ReceiverKill,
    RabbitmqRestart,
    PostgresRestart,
    RedisFailOpen,
    RedisFailClosed,
    #[value(name = "postgres-kill-9")]
    PostgresKill,
    #[value(name = "rabbitmq-kill-9")]
    RabbitmqKill,
    #[value(name = "redis-kill-9")]
    RedisKill,
    PostgresPartition,
    PostgresReadOnly,
    RabbitmqCluster,
    Backlog,
    DlqReplay,
    MessageKill,
    EventKill,
}

impl Scenario {
    pub const ALL: [Scenario; 16] = [
        Scenario::WorkerKill,
        Scenario::ReceiverKill,
        Scenario::RabbitmqRestart,
        Scenario::PostgresRestart,
        Scenario::RedisFailOpen,
        Scenario::RedisFailClosed,
        Scenario::PostgresKill,
        Scenario::RabbitmqKill,
        Scenario::RedisKill,
        Scenario::PostgresPartition,
        Scenario::PostgresReadOnly,
        Scenario::RabbitmqCluster,
        Scenario::Backlog,
        Scenario::DlqReplay,
        Scenario::MessageKill,
        Scenario::EventKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::WorkerKill => "worker-kill ×3",
            Scenario::ReceiverKill => "receiver-kill",
            Scenario::RabbitmqRestart => "rabbitmq-restart",
            Scenario::PostgresRestart => "postgres-restart",
            Scenario::RedisFailOpen => "redis-fail-open",
            Scenario::RedisFailClosed => "redis-fail-closed",
            Scenario::PostgresKill => "postgres-kill-9",
            Scenario::RabbitmqKill => "rabbitmq-kill-9",
            Scenario::RedisKill => "redis-kill-9",
            Scenario::PostgresPartition => "postgres-partition 30 s",
            Scenario::PostgresReadOnly => "postgres-read-only 20 s",
            Scenario::RabbitmqCluster => "rabbitmq-cluster",
            Scenario::Backlog => "backlog",
            Scenario::DlqReplay => "dlq-replay",
            Scenario::MessageKill => "message-kill ×3",
            Scenario::EventKill => "event-kill ×3",
        }
    }
}

/// How much a run does.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Leads of a burst (80% of them distinct numbers).
    pub burst: usize,
    /// First attempts per second of a burst.
    pub per_sec: f64,
    pub connections: usize,
    /// Leads of the backlog scenario.
    pub backlog: usize,
    /// The retry schedule of the receiver and the workers, in ms (`RETRY__DELAYS`); `None`:
    /// the default one.
    pub retry_delays: Option<&'static [u64]>,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                burst: 1_200,
                per_sec: 200.0,
                connections: 16,
                backlog: 20_000,
                // Shorter than the default (total 38 s instead of 12.6 min), still far
                // longer than any outage of the run.
                retry_delays: Some(&[1000, 2000, 5000, 10000, 20000]),
            }
        } else {
            Self {
                burst: 6_250,
                per_sec: 500.0,
                connections: 32,
                backlog: 200_000,
                retry_delays: None,
            }
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub sent: usize,
    pub tally: Tally,
    /// Peak RSS (MiB) of the receiver and of the largest worker, over all their runs.
    pub receiver_rss: f64,
    pub worker_rss: f64,
    pub secs: f64,
    /// What the scenario observed besides the counts (statuses, RSS early and late).
    pub notes: Vec<String>,
    /// Why the scenario failed, besides a loss or duplicate.
    pub failures: Vec<String>,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.tally.clean() && self.failures.is_empty()
    }
}

/// Runs `scenarios`, one row each (a scenario that fails to run gets a row saying why).
pub async fn run(
    ctx: &Ctx,
    sizes: &Sizes,
    services: &Services,
    scenarios: &[Scenario],
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &s in scenarios {
        eprintln!("chaos: == {} ==", s.name());
        let started = Instant::now();
        let mut row = match scenario(ctx, sizes, services, s).await {
            Ok(row) => row,
            Err(e) => Row {
                failures: vec![format!("{e:#}")],
                ..Row::default()
            },
        };
        row.name = s.name().to_owned();
        row.secs = started.elapsed().as_secs_f64();
        eprintln!(
            "chaos: {} {} in {:.0} s",
            row.name,
            if row.ok() { "passed" } else { "FAILED" },
            row.secs
        );
        rows.push(row);
        // The scenario's processes are gone; its database, queues and keys go too.
        ctx.janitor.clean().await;
    }
    rows
}

async fn scenario(
    ctx: &Ctx,
    sizes: &Sizes,
    services: &Services,
    s: Scenario,
) -> anyhow::Result<Row> {
    match s {
        Scenario::Backlog => backlog(ctx, sizes).await,
        Scenario::DlqReplay => dlq_replay(ctx, sizes).await,
        Scenario::MessageKill => messages::kill_while_sending(ctx, sizes).await,
        Scenario::EventKill => events::kill_while_delivering(ctx, sizes).await,
        Scenario::RabbitmqCluster => cluster(ctx, sizes, services).await,
        _ => faulted_burst(ctx, sizes, services, s).await,
    }
}

/// A scenario's database, account, receiver and workers.
struct Stage {
    db: BenchDb,
    c: Catalogs,
    receiver: Member,
    workers: Vec<Member>,
    /// The environment `leadctl` runs with.
    ctl_env: Vec<(String, String)>,
}

impl Stage {
    /// A fresh database and account; the receiver (with `receiver_env` added) started, and
    /// `workers` worker processes with `worker_env` added, started when `start_workers`.
    async fn new(
        ctx: &Ctx,
        sizes: &Sizes,
        label: &str,
        workers: usize,
        receiver_env: &[(&str, &str)],
        worker_env: &[(&str, &str)],
        start_workers: bool,
    ) -> anyhow::Result<Self> {
        let db = ctx.janitor.database().await?;
        let c = seed::account(&db.conn, &format!("Chaos {label}")).await?;
        let delays: Vec<u64> = match sizes.retry_delays {
            Some(list) => list.to_vec(),
            None => crate::env::default_retry_delays(),
        };
        let prefixes: Prefixes = ctx.janitor.prefixes(&delays);
        let extra = |base: Vec<(String, String)>, more: &[(&str, &str)]| {
            let mut env = base;
            env.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            if let Some(list) = sizes.retry_delays {
                let list: Vec<String> = list.iter().map(|ms| format!("{ms}ms")).collect();
                env.push(("RETRY__DELAYS".into(), list.join(",")));
            }
            env
        };
        let addr = free_addr()?;
        let mut receiver = Member::new(
            &format!("receiver-{label}"),
            "receiver",
            extra(
                e2e::receiver_env(ctx, &db.url, &prefixes, addr),
                receiver_env,
            ),
            addr,
            &ctx.log_dir,
        );
        receiver.start().await?;
        let mut members = Vec::with_capacity(workers);
        for i in 0..workers {
            let addr = free_addr()?;
            let mut w = Member::new(
                &format!("worker-{label}-{}", i + 1),
                "worker",
                extra(
                    worker_bench::worker_env(ctx, &db.url, &prefixes, addr),
                    worker_env,
                ),
                addr,
                &ctx.log_dir,
            );
            if start_workers {
                w.start().await?;
            }
            members.push(w);
        }
        let ctl_env = extra(
            procs::service_env(ctx.janitor.services(), &db.url, &prefixes),
            &[("USER", "chaos")],
        );
        Ok(Self {
            db,
            c,
            receiver,
            workers: members,
            ctl_env,
        })
    }

    /// Fails when a process died on its own; records peak RSS.
    fn tick(&mut self) -> anyhow::Result<()> {
        tick(&mut self.receiver, &mut self.workers)
    }

    /// Waits (at most `wait`) until `share` of the burst was accepted, then checks that
    /// every process is still up: the moment a fault is injected.
    async fn reach(&mut self, burst: &Burst, share: f64, wait: Duration) -> anyhow::Result<()> {
        if !burst.reached(share, wait).await {
            bail!("the burst did not reach {:.0}%", share * 100.0);
        }
        self.tick()
    }

    fn burst(&self, leads: &Arc<Vec<Lead>>, pace: Pace) -> Burst {
        Burst::start(self.receiver.addr, &self.c.token, leads.clone(), pace)
    }

    /// Waits for every accepted lead, reads the dead-letter queue, reconciles, stops the
    /// processes and fills in a row.
    async fn settle(
        &mut self,
        ctx: &Ctx,
        leads: &[Lead],
        burst: &BurstResult,
        limit: Duration,
    ) -> anyhow::Result<Row> {
        let ids: Vec<uuid::Uuid> = burst.intake_ids.iter().flatten().copied().collect();
        reconcile::wait_finished(&self.db, &ids, Duration::from_secs(60), limit, || {
            tick(&mut self.receiver, &mut self.workers)
        })
        .await?;
        let dlq = reconcile::dead_letters(&self.ctl_env, &ctx.log_dir).await?;
        let tally = reconcile::reconcile(&self.db, self.c.account, leads, burst, &dlq).await?;
        let mut row = Row {
            sent: leads.len(),
            tally,
            notes: vec![format!("answers: {}", burst.statuses_text())],
            ..Row::default()
        };
        if row.tally.accepted < leads.len() {
            row.failures.push(format!(
                "{} leads never got a 202 within the burst's time",
                leads.len() - row.tally.accepted
            ));
        }
        self.stop(&mut row).await;
        Ok(row)
    }

    /// Stops every process gracefully and puts their peak RSS into `row`.
    async fn stop(&mut self, row: &mut Row) {
        for w in &mut self.workers {
            if let Err(e) = w.stop().await {
                row.failures.push(format!("{e:#}"));
            }
            row.worker_rss = row.worker_rss.max(w.peak_rss_mib());
        }
        if let Err(e) = self.receiver.stop().await {
            row.failures.push(format!("{e:#}"));
        }
        row.receiver_rss = self.receiver.peak_rss_mib();
    }
}

fn tick(receiver: &mut Member, workers: &mut [Member]) -> anyhow::Result<()> {
    for m in std::iter::once(receiver).chain(workers.iter_mut()) {
        m.check_alive()?;
        m.sample();
    }
    Ok(())
}

/// How long a burst's clients keep retrying, and how long its leads may take to finish.
fn limits(sizes: &Sizes, n: usize) -> (Duration, Duration) {
    let send = Duration::from_secs_f64(n as f64 / sizes.per_sec) + Duration::from_secs(120);
    let finish = Duration::from_secs(180) + Duration::from_millis(10 * n as u64);
    (send, finish)
}

/// A receiver counter from its `/metrics`.
async fn receiver_counter(m: &Member, name: &str) -> f64 {
    let Ok((200, text)) = procs::get(m.addr, "/metrics").await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The burst scenarios: the fault happens while clients send.
async fn faulted_burst(
    ctx: &Ctx,
    sizes: &Sizes,
    services: &Services,
    s: Scenario,
) -> anyhow::Result<Row> {
    let label = match s {
        Scenario::WorkerKill => "wkill",
        Scenario::ReceiverKill => "rkill",
        Scenario::RabbitmqRestart => "amqp",
        Scenario::PostgresRestart => "pg",
        Scenario::RedisFailOpen => "redis-open",
        Scenario::RedisFailClosed => "redis-closed",
        Scenario::PostgresKill => "pg-kill",
        Scenario::RabbitmqKill => "amqp-kill",
        Scenario::RedisKill => "redis-kill",
        Scenario::PostgresPartition => "pg-partition",
        Scenario::PostgresReadOnly => "pg-read-only",
        _ => "amqp-cluster",
    };
    let fail_mode = if s == Scenario::RedisFailClosed {
        "closed"
    } else {
        "open"
    };
    let partitioned = s == Scenario::PostgresPartition;
    let mut stage = Stage::new(
        ctx,
        sizes,
        label,
        2,
        &[("RATE_LIMIT_FAIL_MODE", fail_mode)],
        &[],
        !partitioned,
    )
    .await?;
    // The partition is between the workers and PostgreSQL: they reach it through a proxy.
    let mut proxy = None;
    if partitioned {
        let (p, via) = testkit::proxy::proxied(&stage.db.url).await;
        for w in &mut stage.workers {
            w.set_env("DATABASE_URL", &via);
            w.start().await?;
        }
        proxy = Some(p);
    }
    let leads = Arc::new(client::draw(sizes.burst, &stage.c, label, 11)?);
    let (send_limit, finish_limit) = limits(sizes, leads.len());
    let pace = Pace {
        connections: sizes.connections,
        per_sec: sizes.per_sec,
        limit: send_limit,
    };
    let burst = stage.burst(&leads, pace);
    let mut notes = Vec::new();
    let mut failures = Vec::new();
    let wait = send_limit;
    match s {
        Scenario::WorkerKill => kill_workers(&mut stage, &burst, wait).await?,
        Scenario::ReceiverKill => kill_receiver(&mut stage, &burst, wait).await?,
        Scenario::RabbitmqRestart | Scenario::PostgresRestart => {
            notes.push(restart(&mut stage, &burst, wait, services, s).await?);
        }
        Scenario::PostgresKill | Scenario::RabbitmqKill | Scenario::RedisKill => {
            notes.push(crash(&mut stage, &burst, wait, services, s).await?);
        }
        Scenario::PostgresPartition => {
            if let Some(p) = &proxy {
                notes.push(partition(&mut stage, &burst, wait, p).await?);
            }
        }
        Scenario::PostgresReadOnly => {
            notes.push(read_only(&mut stage, &burst, wait, services).await?);
        }
        Scenario::RabbitmqCluster => {
            notes.push(kill_cluster_node(&mut stage, &burst, wait, services).await?);
        }
        _ => {
            let (note, problems) =
                redis_outage(&mut stage, &burst, wait, services, sizes.connections, s).await?;
            notes.push(note);
            failures.extend(problems);
        }
    }
    let result = burst.finish().await?;
    if s == Scenario::RedisFailClosed && result.count(503) == 0 {
        failures.push("fail-closed: no 503 while Redis was down".into());
    }
    let mut row = stage.settle(ctx, &leads, &result, finish_limit).await?;
    if row.tally.dead_lettered > 0 {
        row.failures.push(format!(
            "{} dead-lettered (the outage was shorter than the retry schedule)",
            row.tally.dead_lettered
        ));
    }
    row.notes.extend(notes);
    row.failures.extend(failures);
    Ok(row)
}

/// Waits (at most 10 s) until `in_flight` says requests are under way, then kills every
/// worker with SIGKILL and starts each again; how many requests were in flight.
async fn kill_all_while(
    stage: &mut Stage,
    in_flight: impl Fn() -> usize,
    what: &str,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight() == 0 {
        if Instant::now() > deadline {
            bail!("no {what} in flight within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stage.tick()?;
    let n = in_flight();
    for w in &mut stage.workers {
        eprintln!("chaos: kill -9 {} with {n} {what} in flight", w.name);
        w.kill().await?;
    }
    for w in &mut stage.workers {
        w.start().await?;
    }
    Ok(n)
}

/// Kills a worker with SIGKILL at 25%, the other at 50% and the first again at 75% of the
/// burst, each started again at once.
async fn kill_workers(stage: &mut Stage, burst: &Burst, wait: Duration) -> anyhow::Result<()> {
    for (k, share) in [(0, 0.25), (1, 0.5), (0, 0.75)] {
        stage.reach(burst, share, wait).await?;
        let w = &mut stage.workers[k];
        eprintln!("chaos: kill -9 {} at {} accepted", w.name, burst.accepted());
        w.kill().await?;
        w.start().await?;
    }
    Ok(())
}

/// Kills the receiver with SIGKILL at 40% of the burst and starts it again at once.
async fn kill_receiver(stage: &mut Stage, burst: &Burst, wait: Duration) -> anyhow::Result<()> {
    stage.reach(burst, 0.4, wait).await?;
    eprintln!(
        "chaos: kill -9 the receiver at {} accepted",
        burst.accepted()
    );
    stage.receiver.kill().await?;
    stage.receiver.start().await?;
    Ok(())
}

/// Restarts RabbitMQ or PostgreSQL (as `s` says) at 30% of the burst; a note of how long it
/// was down.
async fn restart(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    services: &Services,
    s: Scenario,
) -> anyhow::Result<String> {
    stage.reach(burst, 0.3, wait).await?;
    let service = if s == Scenario::PostgresRestart {
        Service::Postgres
    } else {
        Service::Rabbitmq
    };
    let t = Instant::now();
    services.restart(service, Duration::from_secs(2)).await?;
    Ok(format!("down {:.1} s", t.elapsed().as_secs_f64()))
}

/// Kills PostgreSQL, RabbitMQ or Redis (as `s` says) with SIGKILL at 30% of the burst and
/// starts it again 2 s later; a note of how long it was down.
async fn crash(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    services: &Services,
    s: Scenario,
) -> anyhow::Result<String> {
    stage.reach(burst, 0.3, wait).await?;
    let service = match s {
        Scenario::PostgresKill => Service::Postgres,
        Scenario::RabbitmqKill => Service::Rabbitmq,
        _ => Service::Redis,
    };
    let at = burst.accepted();
    eprintln!("chaos: kill -9 {service:?} at {at} accepted");
    let t = Instant::now();
    services.crash(service, Duration::from_secs(2)).await?;
    Ok(format!(
        "killed at {at} accepted, back after {:.1} s",
        t.elapsed().as_secs_f64()
    ))
}

/// Starts the three-node cluster, runs the burst against it with the cluster as every
/// process's `AMQP_URL`, and stops it again.
async fn cluster(ctx: &Ctx, sizes: &Sizes, services: &Services) -> anyhow::Result<Row> {
    let Some(urls) = services.cluster_amqp() else {
        bail!("the run was not given the cluster's addresses (--cluster-amqp)");
    };
    let t = Instant::now();
    services.start(Service::Cluster).await?;
    eprintln!(
        "chaos: three RabbitMQ nodes clustered in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let on_cluster = Ctx {
        janitor: crate::env::Janitor::new(crate::env::Services {
            amqp_url: urls.to_owned(),
            ..ctx.janitor.services().clone()
        }),
        log_dir: ctx.log_dir.clone(),
        sizes: ctx.sizes.clone(),
    };
    let row = faulted_burst(&on_cluster, sizes, services, Scenario::RabbitmqCluster).await;
    on_cluster.janitor.clean().await;
    let stopped = services.stop(Service::Cluster).await;
    let row = row?;
    stopped?;
    Ok(row)
}

/// Kills node 1 of the cluster, the one every process connected to first, with SIGKILL
/// at 30% of the burst; it stays down.
async fn kill_cluster_node(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    services: &Services,
) -> anyhow::Result<String> {
    stage.reach(burst, 0.3, wait).await?;
    let at = burst.accepted();
    // What the queues' replicas look like before and after, for the log.
    let _ = services.status(Service::Cluster).await;
    eprintln!("chaos: kill -9 RabbitMQ node 1 of 3 at {at} accepted");
    services.kill(Service::ClusterNode(1)).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = services.status(Service::Cluster).await;
    Ok(format!("node 1 of 3 killed at {at} accepted and left down"))
}

/// Partitions the workers from PostgreSQL for 30 s at 30% of the burst; a note of what the
/// workers finished meanwhile (nothing can commit through the partition).
async fn partition(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    proxy: &testkit::proxy::Proxy,
) -> anyhow::Result<String> {
    stage.reach(burst, 0.3, wait).await?;
    let at = burst.accepted();
    eprintln!("chaos: partition the workers from PostgreSQL at {at} accepted");
    proxy.partition();
    // Transactions already past their last statement may still finish; then nothing can.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, _) = counted(&stage.workers).await;
    tokio::time::sleep(Duration::from_secs(28)).await;
    let during = counted(&stage.workers).await.0 - before;
    stage.tick()?;
    proxy.heal();
    eprintln!("chaos: the partition healed");
    if during > 0.0 {
        bail!("{during} leads finished while the workers could not reach PostgreSQL");
    }
    Ok(format!("30 s partitioned at {at} accepted"))
}

/// Makes PostgreSQL read-only for 20 s at 30% of the burst (lifted again even when the
/// burst fails meanwhile); a note of what the workers retried.
async fn read_only(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    services: &Services,
) -> anyhow::Result<String> {
    stage.reach(burst, 0.3, wait).await?;
    let (_, before) = counted(&stage.workers).await;
    eprintln!(
        "chaos: PostgreSQL read-only at {} accepted",
        burst.accepted()
    );
    services.postgres_read_only(true).await?;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let lifted = services.postgres_read_only(false).await;
    stage.tick()?;
    lifted?;
    let during = counted(&stage.workers).await.1 - before;
    if during < 1.0 {
        bail!("no lead was retried while PostgreSQL was read-only");
    }
    Ok(format!("20 s read-only: {during} attempts retried"))
}

/// The leads the workers finished and the attempts they retried, together, from their
/// `/metrics`.
async fn counted(workers: &[Member]) -> (f64, f64) {
    let (mut finished, mut retried) = (0.0, 0.0);
    for w in workers {
        if let Ok(c) = procs::counters(w.addr).await {
            finished += c.finished;
            retried += c.retried;
        }
    }
    (finished, retried)
}

/// Stops Redis for 3 s at 30% of the burst; a note of what the receiver accepted meanwhile,
/// and the failures of the rate limiter's fail mode (`s` says which was configured). Fail-closed
/// may still accept the requests in flight when Redis stopped: at most `connections`.
async fn redis_outage(
    stage: &mut Stage,
    burst: &Burst,
    wait: Duration,
    services: &Services,
    connections: usize,
    s: Scenario,
) -> anyhow::Result<(String, Vec<String>)> {
    stage.reach(burst, 0.3, wait).await?;
    let before = receiver_counter(&stage.receiver, "receiver_rate_limit_fail_open_total").await;
    let t = Instant::now();
    services.stop(Service::Redis).await?;
    // Requests admitted just before Redis went down may still be published.
    let accepted_before = burst.accepted();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let accepted_down = burst.accepted() - accepted_before;
    let fail_open =
        receiver_counter(&stage.receiver, "receiver_rate_limit_fail_open_total").await - before;
    services.start(Service::Redis).await?;
    let note = format!(
        "down {:.1} s: {accepted_down} accepted meanwhile, {fail_open} counted fail-open",
        t.elapsed().as_secs_f64()
    );
    let mut failures = Vec::new();
    if s == Scenario::RedisFailOpen && (accepted_down == 0 || fail_open < 1.0) {
        failures.push(format!(
            "fail-open: {accepted_down} accepted and {fail_open} counted while Redis was down"
        ));
    }
    if s == Scenario::RedisFailClosed && accepted_down > connections {
        failures.push(format!(
            "fail-closed: {accepted_down} accepted while Redis was down"
        ));
    }
    Ok((note, failures))
}

/// Peak RSS of a process must not grow with the backlog: at the end at most 50% (and
/// 32 MiB) above what it was a tenth of the way in.
fn flat(early: f64, end: f64) -> bool {
    end <= early * 1.5 || end - early <= 32.0
}

/// A backlog sent with the workers stopped, then drained by two workers.
async fn backlog(ctx: &Ctx, sizes: &Sizes) -> anyhow::Result<Row> {
    let n = sizes.backlog;
    let mut stage = Stage::new(ctx, sizes, "backlog", 2, &[], &[], false).await?;
    let leads = Arc::new(client::draw(n, &stage.c, "backlog", 12)?);
    let (send_limit, finish_limit) = limits(sizes, n);
    let pace = Pace {
        connections: sizes.connections,
        per_sec: 1e9,
        limit: send_limit,
    };
    eprintln!("chaos: {n} leads into the queue, no worker running");
    let burst = stage.burst(&leads, pace);
    burst.reached(0.1, send_limit).await;
    let receiver_early = stage.receiver.current_peak();
    let result = burst.finish().await?;
    stage.tick()?;
    let receiver_end = stage.receiver.current_peak();
    eprintln!(
        "chaos: {} accepted in {:.0} s; draining with {} workers",
        result.accepted(),
        result.secs,
        stage.workers.len()
    );
    for w in &mut stage.workers {
        w.start().await?;
    }
    let accepted = result.accepted() as f64;
    let mut early: Option<Vec<f64>> = None;
    let started = Instant::now();
    let mut printed = Instant::now();
    loop {
        stage.tick()?;
        let mut finished = 0.0;
        for w in &stage.workers {
            finished += procs::counters(w.addr).await.map_or(0.0, |c| c.finished);
        }
        if early.is_none() && finished >= accepted / 10.0 {
            early = Some(stage.workers.iter().map(Member::current_peak).collect());
        }
        if finished >= accepted || started.elapsed() > finish_limit {
            break;
        }
        if printed.elapsed() > Duration::from_secs(5) {
            printed = Instant::now();
            eprintln!(
                "chaos: drained {finished}/{accepted} ({:.0} leads/s)",
                finished / started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let end: Vec<f64> = stage.workers.iter().map(Member::current_peak).collect();
    let mut row = stage.settle(ctx, &leads, &result, finish_limit).await?;
    row.notes.push(format!(
        "drained in {drain_secs:.0} s; peak RSS MiB at 10% → end: receiver {receiver_early:.0} → {receiver_end:.0}"
    ));
    if !flat(receiver_early, receiver_end) {
        row.failures.push(format!(
            "receiver peak RSS grew with the backlog: {receiver_early:.0} → {receiver_end:.0} MiB"
        ));
    }
    for (i, (e, l)) in early.unwrap_or_default().iter().zip(&end).enumerate() {
        row.notes.push(format!("worker {} {e:.0} → {l:.0}", i + 1));
        if !flat(*e, *l) {
            row.failures.push(format!(
                "worker {} peak RSS grew with the backlog: {e:.0} → {l:.0} MiB",
                i + 1
            ));
        }
    }
    if row.tally.dead_lettered > 0 {
        row.failures
            .push(format!("{} dead-lettered", row.tally.dead_lettered));
    }
    Ok(row)
}

/// Refuses notes whose text contains "refused" with `insufficient_privilege`, as a revoked
/// INSERT grant would (the lead's contact, written earlier in the same transaction, is
/// rolled back with it).
const REFUSE_NOTE: &str = r"
CREATE FUNCTION chaos_refuse_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.body LIKE '%refused%' THEN
    RAISE EXCEPTION 'permission denied for table contact_notes' USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER chaos_refuse_note BEFORE INSERT ON contact_notes
  FOR EACH ROW EXECUTE FUNCTION chaos_refuse_note();
";

/// What the database holds for one lead: its intake record and the contacts and notes
/// of its number and note.
async fn snapshot(
    db: &BenchDb,
    c: &Catalogs,
    lead: &Lead,
    id: uuid::Uuid,
) -> anyhow::Result<String> {
    let row = db
        .conn
        .query_one_raw(seed::stmt(
            "SELECT i.status, i.contact_id, i.replay_count, i.updated_at::text AS updated, \
             (SELECT count(*) FROM contacts WHERE account_id = $2 AND phone_number = $3) AS contacts, \
             (SELECT count(*) FROM contact_notes WHERE account_id = $2 AND body = $4) AS notes \
             FROM lead_intakes i WHERE i.id = $1",
            vec![id.into(), c.account.into(), lead.e164.clone().into(), lead.note.clone().into()],
        ))
        .await
        .context("Failed to read the replayed lead")?
        .context("The replayed lead has no intake record")?;
    let status: String = row.try_get("", "status").context("status")?;
    let contact: Option<i64> = row.try_get("", "contact_id").context("contact_id")?;
    let replays: i32 = row.try_get("", "replay_count").context("replay_count")?;
    let updated: String = row.try_get("", "updated").context("updated_at")?;
    let contacts: i64 = row.try_get("", "contacts").context("contacts")?;
    let notes: i64 = row.try_get("", "notes").context("notes")?;
    Ok(format!(
        "status {status}, contact {contact:?}, replays {replays}, contacts {contacts}, notes {notes}, updated {updated}"
    ))
}

/// A lead the database refuses until an operator fixes it: dead-lettered after its
/// retries, replayed once fixed, and replayed again.
async fn dlq_replay(ctx: &Ctx, sizes: &Sizes) -> anyhow::Result<Row> {
    let quick = Sizes {
        retry_delays: Some(&[200, 400, 800]),
        ..sizes.clone()
    };
    let mut stage = Stage::new(ctx, &quick, "dlq", 1, &[], &[], true).await?;
    stage
        .db
        .conn
        .execute_unprepared(REFUSE_NOTE)
        .await
        .context("Failed to install the refusing trigger")?;
    let mut leads = client::draw(50, &stage.c, "dlq", 13)?;
    let k = refuse_one(&mut leads)?;
    let leads = Arc::new(leads);
    let pace = Pace {
        connections: 4,
        per_sec: 100.0,
        limit: Duration::from_secs(60),
    };
    let result = stage.burst(&leads, pace).finish().await?;
    let Some(id) = result.intake_ids[k] else {
        bail!("the refused lead was not accepted");
    };
    let ids: Vec<uuid::Uuid> = result.intake_ids.iter().flatten().copied().collect();
    reconcile::wait_finished(
        &stage.db,
        &ids,
        Duration::from_secs(30),
        Duration::from_secs(60),
        || tick(&mut stage.receiver, &mut stage.workers),
    )
    .await?;
    let dlq = reconcile::dead_letters(&stage.ctl_env, &ctx.log_dir).await?;
    let before = reconcile::reconcile(&stage.db, stage.c.account, &leads, &result, &dlq).await?;
    let mut found = dead_lettered(&stage, &dlq, &before, &leads[k], id).await?;

    stage
        .db
        .conn
        .execute_unprepared("DROP TRIGGER chaos_refuse_note ON contact_notes")
        .await
        .context("Failed to drop the refusing trigger")?;
    found.extend(replays(ctx, &mut stage, &leads[k], id).await?);

    let dlq = reconcile::dead_letters(&stage.ctl_env, &ctx.log_dir).await?;
    let mut row = stage
        .settle(ctx, &leads, &result, Duration::from_secs(60))
        .await?;
    row.tally = reconcile::reconcile(&stage.db, stage.c.account, &leads, &result, &dlq).await?;
    row.tally.dead_lettered = before.dead_lettered;
    row.notes.extend(found.notes);
    row.failures.extend(found.failures);
    Ok(row)
}

/// Gives one lead a note the refusing trigger refuses; its index. The lead is one whose
/// number no other lead of the burst repeats, so nothing else makes its contact.
fn refuse_one(leads: &mut [Lead]) -> anyhow::Result<usize> {
    let k = (0..leads.len())
        .find(|&i| leads.iter().filter(|l| l.e164 == leads[i].e164).count() == 1)
        .context("No lead with a number of its own")?;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&leads[k].body).context("Failed to read a lead")?;
    leads[k].note = format!("dlq lead {k}: refused until fixed");
    fields.insert("notes".into(), serde_json::json!(leads[k].note));
    leads[k].body = serde_json::to_vec(&fields)
        .context("Failed to write a lead")?
        .into();
    Ok(k)
}

/// What a scenario's checks found: notes for the report, and failures.
#[derive(Default)]
struct Findings {
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Findings {
    fn extend(&mut self, more: Findings) {
        self.notes.extend(more.notes);
        self.failures.extend(more.failures);
    }
}

/// Checks the refused `lead` (intake `id`) before the fix: in the dead-letter queue, the
/// burst's only dead letter, and nothing of it written.
async fn dead_lettered(
    stage: &Stage,
    dlq: &HashMap<uuid::Uuid, String>,
    before: &Tally,
    lead: &Lead,
    id: uuid::Uuid,
) -> anyhow::Result<Findings> {
    let mut found = Findings::default();
    match dlq.get(&id) {
        Some(reason) => found.notes.push(format!("dead-lettered: {reason}")),
        None => found.failures.push(format!(
            "the refused lead {id} is not in the dead-letter queue"
        )),
    }
    if before.dead_lettered != 1 {
        found.failures.push(format!(
            "{} dead-lettered, expected 1",
            before.dead_lettered
        ));
    }
    let dead = snapshot(&stage.db, &stage.c, lead, id).await?;
    if !dead.contains("contacts 0, notes 0") {
        found
            .failures
            .push(format!("the refused lead left something behind: {dead}"));
    }
    Ok(found)
}

/// After the fix: replays the refused `lead` (intake `id`) and waits for it to be written
/// once; replays it again, then everything, and checks that neither changed anything.
async fn replays(
    ctx: &Ctx,
    stage: &mut Stage,
    lead: &Lead,
    id: uuid::Uuid,
) -> anyhow::Result<Findings> {
    let mut found = Findings::default();
    let id_text = id.to_string();
    match reconcile::leadctl(&stage.ctl_env, &ctx.log_dir, &["dlq", "replay", &id_text]).await? {
        Ok(v) if v["replayed"] == 1 => {}
        other => found.failures.push(format!("first replay: {other:?}")),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = |s: &str| {
        ["status dead_lettered", "status queued", "status processing"]
            .iter()
            .any(|p| s.starts_with(p))
    };
    let mut first = snapshot(&stage.db, &stage.c, lead, id).await?;
    while pending(&first) && Instant::now() < deadline {
        stage.tick()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        first = snapshot(&stage.db, &stage.c, lead, id).await?;
    }
    if !first.contains("contacts 1, notes 1") || pending(&first) {
        found.failures.push(format!("after the replay: {first}"));
    }
    let again =
        reconcile::leadctl(&stage.ctl_env, &ctx.log_dir, &["dlq", "replay", &id_text]).await?;
    found.notes.push(format!(
        "second replay: {}",
        match &again {
            Ok(v) => v.to_string(),
            Err(e) => e.clone(),
        }
    ));
    if let Ok(v) =
        reconcile::leadctl(&stage.ctl_env, &ctx.log_dir, &["dlq", "replay", "--all"]).await?
        && v["replayed"] != 0
    {
        found.failures.push(format!(
            "replay --all after the fix replayed {}",
            v["replayed"]
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = snapshot(&stage.db, &stage.c, lead, id).await?;
    if second != first {
        found
            .failures
            .push(format!("the second replay changed {first} into {second}"));
    }
    found.notes.push(format!("after the replays: {second}"));
    Ok(found)
}

/// The table: one row per scenario.
pub fn print(rows: &[Row]) {
    println!();
    println!(
        "{:<23} {:>7} {:>8} {:>8} {:>5} {:>5} {:>8} {:>5} {:>18} {:>6}  result",
        "scenario",
        "sent",
        "accepted",
        "contacts",
        "lost",
        "dup",
        "dup-act",
        "dead",
        "peak RSS MiB r/w",
        "secs"
    );
    for r in rows {
        println!(
            "{:<23} {:>7} {:>8} {:>8} {:>5} {:>5} {:>8} {:>5} {:>18} {:>6.0}  {}",
            r.name,
            r.sent,
            r.tally.accepted,
            r.tally.contacts,
            r.tally.lost,
            r.tally.duplicated,
            r.tally.duplicated_actions,
            r.tally.dead_lettered,
            format!("{:.0} / {:.0}", r.receiver_rss, r.worker_rss),
            r.secs,
            if r.ok() { "ok" } else { "FAILED" }
        );
    }
    println!();
    for r in rows {
        for n in &r.notes {
            println!("  {}: {n}", r.name);
        }
        for p in &r.tally.problems {
            println!("  {}: PROBLEM {p}", r.name);
        }
        for f in &r.failures {
            println!("  {}: FAILED {f}", r.name);
        }
    }
}
