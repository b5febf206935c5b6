//! `bench`: every performance figure of the lead-intake pipeline from one command
//! (`scripts/bench`, which builds the release binaries first). Each figure is printed next to
//! a baseline measured in the same run on the same machine, because only such ratios mean
//! anything on a shared 2-core box.
//!
//! Sections (all by default; `--only worker,e2e,speed,receiver`):
//! - `worker`: backlog drains by real worker processes vs plain SQL ([`worker_bench`]);
//! - `growth`: a drain into an account that starts empty, its last fifth vs its first
//!   ([`growth_bench`]);
//! - `events`: the worker ratio with one subscribed webhook endpoint next to none, and the
//!   delivery throughput and latency ([`events_bench`]);
//! - `e2e`: real POSTs through receiver and workers vs the broker alone ([`e2e`]);
//! - `speed`: speed to lead, a burst of leads at 500/s each texted at once, from the 202 to
//!   the provider receiving the message ([`speed`]);
//! - `console`: the console's pages in an account with the large contact table
//!   ([`console_bench`]);
//! - `receiver`: the intake endpoint vs a hello-world and the publish ceiling
//!   ([`receiver_bench`]).
//!
//! Everything a run creates on PostgreSQL, RabbitMQ and Redis is removed at the end, after
//! a failure and after Ctrl-C too ([`env::Janitor`]).

use anyhow::Context;
use bench::{
    Ctx, Sizes, bulk_bench, console_bench, e2e, env, events_bench, growth_bench, procs,
    receiver_bench, report, speed, target_dir, worker_bench,
};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Worker,
    Growth,
    Events,
    E2e,
    Speed,
    Receiver,
    Bulk,
    Console,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Worker => "worker",
            Section::Growth => "growth",
            Section::Events => "events",
            Section::E2e => "e2e",
            Section::Speed => "speed",
            Section::Receiver => "receiver",
            Section::Bulk => "bulk",
            Section::Console => "console",
        }
    }
}

/// Throughput of the lead-intake worker, the whole pipeline and the receiver, each next to
/// a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Smaller sizes (100,000 contacts, 20,000 leads, 1,000 texted leads, 5 s receiver
    /// runs): under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Run only these sections (repeatable, or a comma-separated list).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Leads of each worker backlog and POSTs of the e2e run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    leads: Option<u64>,
    /// Leads of the growth section's backlog (into an account that starts empty).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    growth_leads: Option<u64>,
    /// Pre-existing contacts of the large table.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=bench::leads::MAX_CONTACTS))]
    contacts: Option<u64>,
    /// Rows of the CSV file the bulk section imports with `leadctl import` (0: none).
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    import_rows: Option<u64>,
    /// Leads of the speed section's burst, each texted at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    speed_leads: Option<u64>,
    /// POSTs per second of the speed section's burst.
    #[arg(long, default_value_t = 500.0, value_parser = positive_rate)]
    speed_rate: f64,
    /// Rounds of the events section (each: a drain with delivery, one written only and one
    /// without events; one more without closes them). At most 3: every backlog draws its
    /// fresh numbers from a namespace of its own.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3))]
    event_rounds: Option<u64>,
}

impl Args {
    fn sizes(&self) -> Sizes {
        let args = self;
        let (contacts, leads, secs, import_rows, growth, texted) = if args.quick {
            (100_000, 20_000, 5, 10_000, 40_000, 1_000)
        } else {
            (1_000_000, 100_000, 10, 100_000, 300_000, 5_000)
        };
        let leads = args.leads.unwrap_or(leads) as usize;
        Sizes {
            large_contacts: args.contacts.unwrap_or(contacts),
            small_contacts: 10_000,
            backlog: leads,
            growth_backlog: args.growth_leads.unwrap_or(growth) as usize,
            e2e_posts: leads,
            burst_secs: if args.quick { 5 } else { 20 },
            receiver_secs: secs,
            import_rows: args.import_rows.unwrap_or(import_rows) as usize,
            speed_leads: args.speed_leads.unwrap_or(texted) as usize,
            speed_rate: args.speed_rate,
            event_rounds: args.event_rounds.unwrap_or(if args.quick { 2 } else { 3 }) as usize,
        }
    }
}

/// A rate of POSTs per second: above 0 and at most 100,000.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 100_000.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a rate between 0 and 100,000 per second"
        )),
    }
}

fn main() -> ExitCode {
    bench::main_with("bench", run(Args::parse()))
}

/// Runs the sections; `Ok(false)` when one of them failed (the others still report).
async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let target = target_dir()?;
    let out_dir = target.join("bench");
    let log_dir = out_dir.join("logs");
    // Only the last run's logs are kept.
    let _ = std::fs::remove_dir_all(&log_dir);
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("Failed to create {}", log_dir.display()))?;
    let ctx = Ctx {
        janitor: env::Janitor::default(),
        log_dir,
        sizes: args.sizes(),
    };
    let mut sections: Vec<Section> = Vec::new();
    let wanted = if args.only.is_empty() {
        vec![
            Section::Worker,
            Section::Growth,
            Section::Events,
            Section::E2e,
            Section::Speed,
            Section::Receiver,
            Section::Bulk,
            Section::Console,
        ]
    } else {
        args.only.clone()
    };
    for s in wanted {
        if !sections.contains(&s) {
            sections.push(s);
        }
    }
    eprintln!(
        "bench: {} run: {} contacts (large table), {} leads per backlog, {} e2e POSTs, {} texted leads at {}/s, {} s receiver runs; logs in {}",
        if args.quick { "quick" } else { "full" },
        ctx.sizes.large_contacts,
        ctx.sizes.backlog,
        ctx.sizes.e2e_posts,
        ctx.sizes.speed_leads,
        ctx.sizes.speed_rate,
        ctx.sizes.receiver_secs,
        ctx.log_dir.display()
    );
    for (name, value) in procs::tuning_overrides() {
        eprintln!("bench: tuning from the environment: {name}={value}");
    }

    let mut report = report::Report::default();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("Failed to listen for SIGTERM")?;
    let interrupted = tokio::select! {
        () = run_sections(&ctx, &sections, &mut report) => false,
        _ = tokio::signal::ctrl_c() => true,
        _ = term.recv() => true,
    };
    // Children of an interrupted section were killed when its future was dropped.
    ctx.janitor.clean().await;
    if interrupted {
        anyhow::bail!("Interrupted; everything the run created is removed");
    }

    let wall = started.elapsed().as_secs_f64();
    report.print();
    let json = report.to_json(&ctx.sizes, args.quick, wall);
    let path = report::write_json(&out_dir, &json)?;
    eprintln!(
        "bench: figures in {} (and latest.json); {wall:.0} s",
        path.display()
    );
    Ok(report.failures.is_empty())
}

async fn run_sections(ctx: &Ctx, sections: &[Section], report: &mut report::Report) {
    for &s in sections {
        eprintln!("bench: == section {} ==", s.name());
        let result = match s {
            Section::Worker => worker_bench::run(ctx)
                .await
                .map(|f| report.worker = Some(f)),
            Section::Growth => growth_bench::run(ctx)
                .await
                .map(|f| report.growth = Some(f)),
            Section::Events => events_bench::run(ctx)
                .await
                .map(|f| report.events = Some(f)),
            Section::E2e => e2e::run(ctx).await.map(|f| report.e2e = Some(f)),
            Section::Speed => speed::run(ctx).await.map(|f| report.speed = Some(f)),
            Section::Receiver => receiver_bench::run(ctx)
                .await
                .map(|f| report.receiver = Some(f)),
            Section::Bulk => bulk_bench::run(ctx).await.map(|f| report.bulk = Some(f)),
            Section::Console => console_bench::run(ctx)
                .await
                .map(|f| report.console = Some(f)),
        };
        if let Err(e) = result {
            eprintln!("bench: section {} failed: {e:#}", s.name());
            report
                .failures
                .push((s.name().to_owned(), format!("{e:#}")));
        }
        // Each section's databases, queues and keys go before the next one starts.
        ctx.janitor.clean().await;
    }
}
