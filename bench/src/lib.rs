//! The `bench` crate's library: what `scripts/bench` (binary `bench`) and `scripts/chaos`
//! (binary `chaos`) share — the services and everything a run creates on them ([`env`]), the
//! real receiver and worker processes ([`procs`]), the leads they are sent ([`leads`],
//! [`load`], [`publish`], [`seed`]) and the sections of each program.

pub mod baseline;
pub mod bulk_bench;
pub mod chaos;
pub mod console_bench;
pub mod e2e;
pub mod env;
pub mod events_bench;
pub mod growth_bench;
pub mod leads;
pub mod load;
pub mod procs;
pub mod publish;
pub mod receiver_bench;
pub mod report;
pub mod seed;
pub mod speed;
pub mod worker_bench;

use anyhow::Context;
use std::path::PathBuf;

/// How much each section of `bench` does.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub large_contacts: u64,
    pub small_contacts: u64,
    pub backlog: usize,
    /// Leads of the growth section's backlog, into an account that starts empty.
    pub growth_backlog: usize,
    pub e2e_posts: usize,
    /// Seconds of the e2e section's open-loop burst.
    pub burst_secs: u64,
    pub receiver_secs: u64,
    /// Rows of the CSV file the bulk section imports (0: none).
    pub import_rows: usize,
    /// Leads of the speed section's burst, and its POSTs per second.
    pub speed_leads: usize,
    pub speed_rate: f64,
    /// Rounds of the events section.
    pub event_rounds: usize,
}

/// What every section gets.
pub struct Ctx {
    pub janitor: env::Janitor,
    /// The children's logs (kept after the run, for a look at warnings).
    pub log_dir: PathBuf,
    pub sizes: Sizes,
}

/// Runs `run` on a multi-threaded runtime as the whole of a binary named `name`: success
/// when it returns `Ok(true)`; `Ok(false)` or an error (printed) is a failure.
pub fn main_with<F>(name: &str, run: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<bool>>,
{
    use std::process::ExitCode;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: Failed to start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `CARGO_TARGET_DIR` when set, else the `target` directory this binary was built into.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let bin = procs::bin_dir()?;
    bin.parent()
        .map(PathBuf::from)
        .context("Failed to find the target directory above the bench binary")
}
