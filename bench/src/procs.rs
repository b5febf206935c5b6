//! The measured programs as real child processes: the `worker`, `receiver`, `leadctl` and
//! `examples/hello` next to the running binary (release ones for `bench`, the test build's
//! for `chaos`), configured only through environment variables
//! (the environment is cleared first, so a developer's `WORKER__…` or a config file cannot
//! change what is measured). Also their CPU time and peak RSS from `/proc`, and the worker's
//! Prometheus counters.

use crate::env::{Prefixes, Services};
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Clock ticks per second of `/proc/PID/stat` times: USER_HZ, 100 on every Linux
/// architecture this runs on (it is part of the kernel ABI, unlike the kernel's HZ).
const TICKS_PER_SEC: f64 = 100.0;

/// Where the binaries are: the directory of this very binary (`target/release` for `bench`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("Failed to find the bench binary's path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("Failed to find the bench binary's directory")
}

/// A free loopback port (bound and released; the child binds it right after).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("Failed to find a free port")?;
    l.local_addr().context("Failed to read a free port")
}

/// CPU time and memory of a process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// User + system CPU seconds of all its threads.
    pub cpu_secs: f64,
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// User + system CPU seconds of all the threads of process `pid` (a number, or `self`).
fn cpu_secs(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("Failed to read /proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("Failed to parse /proc/PID/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12th and 13th after the name.
    let tick = |i: usize| -> anyhow::Result<f64> {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .context("Failed to parse CPU ticks")
    };
    Ok((tick(11)? + tick(12)?) / TICKS_PER_SEC)
}

/// This process's CPU seconds so far (for work the bench does itself, such as the publish
/// ceiling's publisher).
pub fn own_cpu_secs() -> anyhow::Result<f64> {
    cpu_secs("self")
}

pub struct Proc {
    pub name: String,
    pub addr: SocketAddr,
    pid: u32,
    child: Child,
    pub log: PathBuf,
}

/// Environment of a worker, receiver or `leadctl` on `services`, `database_url` and
/// `prefixes`.
pub fn service_env(
    services: &Services,
    database_url: &str,
    prefixes: &Prefixes,
) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", services.redis_url.as_str()),
        ("AMQP_URL", services.amqp_url.as_str()),
        ("AMQP_PREFIX", &prefixes.amqp),
        ("REDIS_PREFIX", &prefixes.redis),
        ("LOG_FORMAT", "json"),
        // The product's default: its figures include the lines it logs per lead.
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Proc {
    /// Starts `program` (a file name in [`bin_dir`]) with exactly `env`; its output goes to
    /// `<log_dir>/<name>.log`, and it runs in `log_dir` so no `config/lead-intake.toml` of
    /// the source tree is read.
    pub fn spawn(
        name: &str,
        program: &str,
        args: &[String],
        env: &[(String, String)],
        addr: SocketAddr,
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let path = bin_dir()?.join(program);
        if !path.exists() {
            bail!(
                "Failed to find {} (scripts/bench builds it)",
                path.display()
            );
        }
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .with_context(|| format!("Failed to create {}", log.display()))?;
        let err = out.try_clone().context("Failed to share the log file")?;
        let child = Command::new(&path)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(tuning_overrides())
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("Failed to start {}", path.display()))?;
        let pid = child.id().context("Failed to read a child's pid")?;
        Ok(Self {
            name: name.to_owned(),
            addr,
            pid,
            child,
            log,
        })
    }

    /// Fails when the process has exited (with the end of its log).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("Failed to poll a child")? {
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        let cpu_secs = cpu_secs(&self.pid.to_string())?;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("Failed to read /proc/{}/status", self.pid))?;
        let hwm_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .context("Failed to read VmHWM")?;
        Ok(ProcStats {
            cpu_secs,
            peak_rss_mib: hwm_kb / 1024.0,
        })
    }

    /// SIGKILL, as a crash would end it: nothing is finished or acknowledged.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child
            .kill()
            .await
            .with_context(|| format!("Failed to kill {}", self.name))
    }

    /// SIGTERM (the graceful path), SIGKILL after 15 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = self.child.kill().await;
                Err(anyhow!("{} did not stop within 15 s of SIGTERM", self.name))
            }
        }
    }

    /// Polls `path` on the process's address until it answers 200 (bounded: 30 s).
    pub async fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.check_alive()?;
            if let Ok((200, _)) = get(self.addr, path).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not answer {path} within 30 s; its log ends with:\n{}",
            self.name,
            tail(&self.log, 20)
        )
    }

    /// Polls until the port accepts connections (for the hello-world, which has no health
    /// route), bounded: 30 s.
    pub async fn wait_listening(&mut self) -> anyhow::Result<()> {
        for _ in 0..300 {
            self.check_alive()?;
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} did not listen within 30 s", self.name)
    }
}

/// One GET on a fresh connection, with a 2 s limit: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .context("Failed to connect")?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("Failed to start HTTP")?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .context("Failed to build a request")?;
        let res = sender
            .send_request(req)
            .await
            .context("Failed to send a request")?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect()
            .await
            .context("Failed to read a response")?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
    .await
    .map_err(|_| anyhow!("Failed to GET {path} from {addr}: timed out"))?
}

/// CPU of the whole machine and of the services the pipeline leans on, for attributing a
/// run's cost: who burned the CPU while the figure was measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemCpu {
    /// Every core's time, busy or not (so busy / total is the machine's load).
    pub total_secs: f64,
    /// Not idle and not waiting for I/O.
    pub busy_secs: f64,
    /// All `postgres` processes alive at both samples.
    pub postgres_secs: f64,
    /// RabbitMQ (`beam.smp`).
    pub broker_secs: f64,
    /// Redis (`redis-server`).
    pub redis_secs: f64,
}

impl SystemCpu {
    /// Now, from `/proc/stat` and every `/proc/PID/stat` (a process that exits between two
    /// samples takes its CPU time with it; the measured services' backends live through a
    /// run).
    pub fn sample() -> Self {
        let mut s = Self::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().find(|l| l.starts_with("cpu "))
        {
            let v: Vec<f64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let total: f64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
            s.total_secs = total / TICKS_PER_SEC;
            s.busy_secs = (total - idle) / TICKS_PER_SEC;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return s;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let secs = (ticks(11) + ticks(12)) / TICKS_PER_SEC;
            match comm {
                "postgres" => s.postgres_secs += secs,
                "beam.smp" => s.broker_secs += secs,
                "redis-server" => s.redis_secs += secs,
                _ => {}
            }
        }
        s
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            total_secs: self.total_secs - earlier.total_secs,
            busy_secs: self.busy_secs - earlier.busy_secs,
            postgres_secs: (self.postgres_secs - earlier.postgres_secs).max(0.0),
            broker_secs: (self.broker_secs - earlier.broker_secs).max(0.0),
            redis_secs: (self.redis_secs - earlier.redis_secs).max(0.0),
        }
    }

    /// Share of the machine that was busy, 0–1.
    pub fn busy(&self) -> f64 {
        self.busy_secs / self.total_secs.max(1e-9)
    }

    pub fn to_json(self, per: f64) -> serde_json::Value {
        serde_json::json!({
            "machine_busy": self.busy(),
            "postgres_cpu_us_per_lead": self.postgres_secs * 1e6 / per.max(1.0),
            "broker_cpu_us_per_lead": self.broker_secs * 1e6 / per.max(1.0),
            "redis_cpu_us_per_lead": self.redis_secs * 1e6 / per.max(1.0),
        })
    }
}

/// A worker's `worker_leads_total` by outcome.
#[derive(Debug, Clone, Default)]
pub struct WorkerCounters {
    /// Finished leads: every outcome except `retried` (a retried lead comes back).
    pub finished: f64,
    pub retried: f64,
    pub dead_lettered: f64,
    pub deferred: f64,
    pub batches: f64,
    pub batched_leads: f64,
}

pub fn parse_counters(text: &str) -> WorkerCounters {
    let mut c = WorkerCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if let Some(labels) = name.strip_prefix("worker_leads_total{") {
            if labels.contains("outcome=\"retried\"") {
                c.retried += v;
            } else {
                c.finished += v;
                if labels.contains("outcome=\"dead_lettered\"") {
                    c.dead_lettered += v;
                }
            }
        } else if name.starts_with("worker_deferred_leads_total") {
            c.deferred += v;
        } else if name.starts_with("worker_batch_size_count") {
            c.batches += v;
        } else if name.starts_with("worker_batch_size_sum") {
            c.batched_leads += v;
        }
    }
    c
}

/// Scrapes a worker's `/metrics`.
pub async fn counters(addr: SocketAddr) -> anyhow::Result<WorkerCounters> {
    let (status, body) = get(addr, "/metrics").await?;
    if status != 200 {
        bail!("Failed to scrape {addr}/metrics: status {status}");
    }
    Ok(parse_counters(&body))
}

/// What a JSON log says: lines at WARN and ERROR, and the most frequent messages.
#[derive(Debug, Clone, Default)]
pub struct LogSummary {
    pub warn: usize,
    pub error: usize,
    /// (count, level, message), most frequent first, at most 5.
    pub top: Vec<(usize, String, String)>,
}

pub fn summarize_log(path: &Path) -> LogSummary {
    let Ok(text) = std::fs::read_to_string(path) else {
        return LogSummary::default();
    };
    let mut s = LogSummary::default();
    let mut counts: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for line in text.lines() {
        let (level, message) = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => (
                v["level"].as_str().unwrap_or("?").to_owned(),
                v["fields"]["message"].as_str().unwrap_or("?").to_owned(),
            ),
            // Not JSON: a panic or a message printed before logging started.
            Err(_) => ("RAW".to_owned(), line.chars().take(160).collect()),
        };
        match level.as_str() {
            "WARN" => s.warn += 1,
            "ERROR" | "RAW" => s.error += 1,
            _ => continue,
        }
        *counts.entry((level, message)).or_default() += 1;
    }
    let mut top: Vec<(usize, String, String)> =
        counts.into_iter().map(|((l, m), n)| (n, l, m)).collect();
    top.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    top.truncate(5);
    s.top = top;
    s
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Worker and receiver tuning variables passed on to the children when set, so a tuning
/// can be measured without a rebuild (`WORKER_CONCURRENCY=4 scripts/bench --only worker`;
/// `RUST_LOG=warn` measures without the per-lead lines of the default `info`).
const TUNING: [&str; 13] = [
    "RUST_LOG",
    "WORKER_CONCURRENCY",
    "WORKER_PREFETCH",
    "WORKER__BATCH_SIZE",
    "WORKER__BATCH_LINGER",
    "WORKER__DB_POOL_SIZE",
    "WORKER__RUNTIME_THREADS",
    "RECEIVER__PUBLISH_CHANNELS",
    "SMS__BATCH_SIZE",
    "SMS__CONCURRENCY",
    "SMS__POLL_INTERVAL",
    "WEBHOOKS__BACKLOG_RATE",
    "WEBHOOKS__BACKLOG_HOLD",
];

/// The [`TUNING`] variables set in the bench's own environment.
pub fn tuning_overrides() -> Vec<(&'static str, String)> {
    TUNING
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (*name, v)))
        .collect()
}
