//! `chaos`: the fault scenarios of `scripts/chaos` (see `bench::chaos`), against the private
//! PostgreSQL, Redis and RabbitMQ that script starts. Prints one row per scenario and exits
//! non-zero on any loss, duplicate or failed check.

use anyhow::Context;
use bench::chaos::{self, Scenario, Sizes, fleet::Services};
use bench::{Ctx, env, target_dir};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Faults under load, then every 202 reconciled against the database and the dead-letter
/// queue.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Smaller bursts and backlog: under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Run only these scenarios (repeatable, or a comma-separated list).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// PostgreSQL server URL without a database.
    #[arg(long)]
    pg: String,
    #[arg(long)]
    redis: String,
    #[arg(long)]
    amqp: String,
    /// The AMQP URLs of the three-node cluster `scripts/chaos service cluster start` starts,
    /// comma-separated (the `rabbitmq-cluster` scenario).
    #[arg(long)]
    cluster_amqp: Option<String>,
    /// The script that stops and starts the services (`scripts/chaos`).
    #[arg(long)]
    service_ctl: PathBuf,
}

fn main() -> ExitCode {
    bench::main_with("chaos", run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let log_dir = target_dir()?.join("chaos").join("logs");
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("Failed to create {}", log_dir.display()))?;
    let ctx = Ctx {
        janitor: env::Janitor::new(env::Services {
            pg_server: args.pg.clone(),
            redis_url: args.redis.clone(),
            amqp_url: args.amqp.clone(),
        }),
        log_dir,
        sizes: bench::Sizes::default(),
    };
    let sizes = Sizes::new(args.quick);
    let services = Services::new(args.service_ctl.clone(), args.cluster_amqp.clone());
    let scenarios = if args.only.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.only.clone()
    };
    eprintln!(
        "chaos: {} run: bursts of {} leads at {:.0}/s, a backlog of {}; logs in {}",
        if args.quick { "quick" } else { "full" },
        sizes.burst,
        sizes.per_sec,
        sizes.backlog,
        ctx.log_dir.display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("Failed to listen for SIGTERM")?;
    let rows = tokio::select! {
        rows = chaos::run(&ctx, &sizes, &services, &scenarios) => rows,
        _ = tokio::signal::ctrl_c() => { ctx.janitor.clean().await; anyhow::bail!("Interrupted") }
        _ = term.recv() => { ctx.janitor.clean().await; anyhow::bail!("Interrupted") }
    };
    chaos::print(&rows);
    let ok = rows.iter().all(chaos::Row::ok);
    println!(
        "chaos: {} in {:.0} s",
        if ok {
            "every scenario passed"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ok)
}
