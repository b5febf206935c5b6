//! Section `bulk`: leads/s through `POST /api/v1/webhook/forms/bulk` (1,000 leads a
//! request) next to the single endpoint's leads/s, both measured in the same run on the
//! same receiver; then the rate of `leadctl import` of a CSV file (100,000 rows; 10,000
//! with `--quick`; `--import-rows N`), next to the bulk endpoint's rate, with the CLI's peak
//! RSS (its memory must not grow with the file). No worker runs: the queue and the Redis
//! keys are purged after each run.

use crate::Ctx;
use crate::env::{self, default_retry_delays};
use crate::load::{self, LoadResult, Req, Until};
use crate::procs;
use crate::publish;
use crate::seed;
use anyhow::Context;
use bytes::Bytes;
use shared::amqp::Topology;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections of the single endpoint's run (the receiver section's first level).
pub const SINGLE_CONNECTIONS: usize = 64;
/// Connections of the bulk run: each carries 1,000 leads a request, so a few keep the
/// broker as busy as 64 single-lead connections.
pub const BULK_CONNECTIONS: usize = 4;
/// Leads per bulk request.
pub const LEADS_PER_REQUEST: usize = 1_000;

#[derive(Debug, Clone)]
pub struct ImportRun {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub secs: f64,
    /// Peak resident memory of the `leadctl import` process.
    pub peak_rss_mib: f64,
}

impl ImportRun {
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.secs.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct BulkFigures {
    pub secs: u64,
    pub single: LoadResult,
    pub bulk: LoadResult,
    pub import: Option<ImportRun>,
}

impl BulkFigures {
    pub fn single_leads_per_sec(&self) -> f64 {
        self.single.rate()
    }

    pub fn bulk_leads_per_sec(&self) -> f64 {
        self.bulk.rate() * LEADS_PER_REQUEST as f64
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "secs_per_run": self.secs,
            "single": self.single.to_json(),
            "single_connections": SINGLE_CONNECTIONS,
            "single_leads_per_sec": self.single_leads_per_sec(),
            "bulk": self.bulk.to_json(),
            "bulk_connections": BULK_CONNECTIONS,
            "bulk_leads_per_request": LEADS_PER_REQUEST,
            "bulk_leads_per_sec": self.bulk_leads_per_sec(),
            "import": self.import.as_ref().map(|i| serde_json::json!({
                "rows": i.rows,
                "accepted": i.accepted,
                "rejected": i.rejected,
                "secs": i.secs,
                "rows_per_sec": i.rate(),
                "peak_rss_mib": i.peak_rss_mib,
            })),
        })
    }
}

/// A number per lead, distinct within a run.
fn number(i: usize) -> String {
    format!("818{:07}", i % 10_000_000)
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<BulkFigures> {
    let secs = ctx.sizes.receiver_secs;
    let duration = Duration::from_secs(secs);
    let db = ctx.janitor.database().await?;
    let c = seed::account(&db.conn, "Bench bulk").await?;
    let delays = default_retry_delays();
    let prefixes = ctx.janitor.prefixes(&delays);
    let topology = Topology::new(&prefixes.amqp, &delays);
    let mut receiver = crate::e2e::start_receiver(ctx, &db.url, &prefixes, "receiver-bulk").await?;

    let (single, bulk) = requests(&c.token);

    // Warm the token cache.
    let _ = load::run(
        receiver.addr,
        1,
        Arc::new(single[..1].to_vec()),
        Until::AllSent,
        Duration::from_secs(10),
        None,
    )
    .await?;
    let target = Target {
        ctx,
        addr: receiver.addr,
        topology: &topology,
        redis_prefix: &prefixes.redis,
    };
    eprintln!("bench: bulk: single endpoint, {SINGLE_CONNECTIONS} connections, {secs} s");
    let single_run = target.measure(SINGLE_CONNECTIONS, single, duration).await?;
    receiver.check_alive()?;
    eprintln!(
        "bench: bulk: bulk endpoint, {BULK_CONNECTIONS} connections × {LEADS_PER_REQUEST} leads, {secs} s"
    );
    let bulk_run = target.measure(BULK_CONNECTIONS, bulk, duration).await?;
    eprintln!(
        "bench: bulk: {:.0} leads/s single ({}), {:.0} leads/s bulk ({})",
        single_run.rate(),
        single_run.statuses_text(),
        bulk_run.rate() * LEADS_PER_REQUEST as f64,
        bulk_run.statuses_text()
    );

    let import = if ctx.sizes.import_rows > 0 {
        let run = import_file(ctx, receiver.addr, &c.token, ctx.sizes.import_rows).await;
        target.clean().await?;
        Some(run?)
    } else {
        None
    };
    receiver.stop().await?;
    let _ = db.conn.close().await;
    Ok(BulkFigures {
        secs,
        single: single_run,
        bulk: bulk_run,
        import,
    })
}

/// The single endpoint's requests (5,000 leads) and the bulk endpoint's (20 of
/// [`LEADS_PER_REQUEST`] leads), with `token`.
fn requests(token: &str) -> (Vec<Req>, Vec<Req>) {
    let lead = |i: usize| {
        serde_json::json!({"phone_number": number(i), "first_name": format!("Lead {i}"),
                           "lead_source": "bench"})
    };
    let single: Vec<Req> = (0..5_000)
        .map(|i| Req {
            path: "/api/v1/webhook/forms".into(),
            content_type: "application/json",
            body: Bytes::from(lead(i).to_string()),
            bearer: Some(token.to_owned()),
            expect: 202,
        })
        .collect();
    let bulk: Vec<Req> = (0..20)
        .map(|r| {
            let body: String = (0..LEADS_PER_REQUEST)
                .map(|i| format!("{}\n", lead(r * LEADS_PER_REQUEST + i)))
                .collect();
            Req {
                path: "/api/v1/webhook/forms/bulk".into(),
                content_type: "application/x-ndjson",
                body: Bytes::from(body),
                bearer: Some(token.to_owned()),
                expect: 207,
            }
        })
        .collect();
    (single, bulk)
}

/// The receiver under measurement, and where its runs leave leads and keys.
struct Target<'a> {
    ctx: &'a Ctx,
    addr: std::net::SocketAddr,
    topology: &'a Topology,
    redis_prefix: &'a str,
}

impl Target<'_> {
    /// Cycles through `requests` on `connections` for `duration`, then cleans up after it.
    async fn measure(
        &self,
        connections: usize,
        requests: Vec<Req>,
        duration: Duration,
    ) -> anyhow::Result<LoadResult> {
        let cap = duration + Duration::from_secs(60);
        let run = load::run(
            self.addr,
            connections,
            Arc::new(requests),
            Until::Elapsed(duration),
            cap,
            None,
        )
        .await?;
        self.clean().await?;
        Ok(run)
    }

    /// Empties the queue and deletes the Redis keys a run filled (no worker drains them),
    /// so the next run starts as the first did.
    async fn clean(&self) -> anyhow::Result<()> {
        let services = self.ctx.janitor.services();
        publish::purge(&services.amqp_url, self.topology).await?;
        env::delete_redis(&services.redis_url, self.redis_prefix).await
    }
}

/// Writes a CSV of `rows` leads and imports it with the release `leadctl`, watching its
/// memory.
async fn import_file(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    token: &str,
    rows: usize,
) -> anyhow::Result<ImportRun> {
    let path = ctx.log_dir.join("import.csv");
    write_csv(&path, rows)?;
    let leadctl = procs::bin_dir()?.join("leadctl");
    eprintln!("bench: bulk: leadctl import of {rows} rows");
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&leadctl)
        .args(["--json", "import"])
        .arg(&path)
        .args([
            "--token",
            token,
            "--url",
            &format!("http://{addr}"),
            "--map",
            "Phone=phone_number",
            "--map",
            "Full Name=name",
            "--map",
            "Email=email",
            "--map",
            "Company=company_name",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("Failed to start {}", leadctl.display()))?;
    let pid = child.id().context("Failed to read leadctl's pid")?;
    let mut peak_kb = 0.0f64;
    let deadline = started + Duration::from_secs(1800);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "leadctl import took over 30 minutes"
        );
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let secs = started.elapsed().as_secs_f64();
    let output = child.wait_with_output().await?;
    anyhow::ensure!(
        status.success(),
        "leadctl import failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("Failed to read leadctl's JSON summary")?;
    let _ = std::fs::remove_file(&path);
    let count = |k: &str| summary[k].as_u64().unwrap_or(0);
    Ok(ImportRun {
        rows: count("rows"),
        accepted: count("accepted"),
        rejected: count("rejected"),
        secs,
        peak_rss_mib: peak_kb / 1024.0,
    })
}

/// Writes to `path` a CSV of `rows` leads as a spreadsheet exports them: formatted numbers,
/// quoted commas.
fn write_csv(path: &std::path::Path, rows: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(path)
        .with_context(|| format!("Failed to create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "Phone,Full Name,Email,Company")?;
    for i in 0..rows {
        writeln!(
            out,
            "\"({}) {}-{}\",\"Lead {i}\",lead{i}@example.com,\"Acme, Inc\"",
            &number(i + 5_000_000)[..3],
            &number(i + 5_000_000)[3..6],
            &number(i + 5_000_000)[6..]
        )?;
    }
    out.flush()?;
    Ok(())
}
