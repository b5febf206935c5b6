//! What a chaos scenario starts, kills and restarts: receiver and worker processes that
//! keep their address and environment across restarts (each run of a process gets its own
//! log) and remember their peak RSS over all runs, and the private PostgreSQL, Redis and
//! RabbitMQ that `scripts/chaos` started, stopped and started again through that script.

use crate::procs::Proc;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A receiver or worker that may be killed and started again.
pub struct Member {
    pub name: String,
    program: &'static str,
    env: Vec<(String, String)>,
    pub addr: SocketAddr,
    /// `/readyz` for the receiver, `/healthz` for a worker.
    ready_path: &'static str,
    log_dir: PathBuf,
    proc: Option<Proc>,
    runs: u32,
    peak_rss_mib: f64,
}

impl Member {
    pub fn new(
        name: &str,
        program: &'static str,
        env: Vec<(String, String)>,
        addr: SocketAddr,
        log_dir: &Path,
    ) -> Self {
        let ready_path = if program == "receiver" {
            "/readyz"
        } else {
            "/healthz"
        };
        Self {
            name: name.to_owned(),
            program,
            env,
            addr,
            ready_path,
            log_dir: log_dir.to_path_buf(),
            proc: None,
            runs: 0,
            peak_rss_mib: 0.0,
        }
    }

    /// Starts it (its log: `<name>.log`, then `<name>.2.log`, …) and waits until it is ready.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        let name = match self.runs {
            1 => self.name.clone(),
            n => format!("{}.{n}", self.name),
        };
        let mut p = Proc::spawn(
            &name,
            self.program,
            &[],
            &self.env,
            self.addr,
            &self.log_dir,
        )?;
        p.wait_ready(self.ready_path).await?;
        self.proc = Some(p);
        Ok(())
    }

    /// Sets one variable of its environment for its next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Records its peak RSS so far.
    pub fn sample(&mut self) -> f64 {
        if let Some(p) = &self.proc
            && let Ok(s) = p.stats()
        {
            self.peak_rss_mib = self.peak_rss_mib.max(s.peak_rss_mib);
        }
        self.peak_rss_mib
    }

    /// Peak RSS of its current run, MiB.
    pub fn current_peak(&self) -> f64 {
        self.proc
            .as_ref()
            .and_then(|p| p.stats().ok())
            .map_or(0.0, |s| s.peak_rss_mib)
    }

    /// Highest peak RSS of all its runs, MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_mib
    }

    /// kill -9.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.sample();
        match self.proc.take() {
            Some(p) => p.kill().await,
            None => bail!("{} is not running", self.name),
        }
    }

    /// SIGTERM, the graceful stop.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.sample();
        match self.proc.take() {
            Some(p) => p.stop().await,
            None => Ok(()),
        }
    }

    /// Fails when it exited on its own.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match &mut self.proc {
            Some(p) => p.check_alive(),
            None => Ok(()),
        }
    }
}

/// A private service of the run.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    Postgres,
    Redis,
    Rabbitmq,
    /// The three-node RabbitMQ cluster, started for its scenario only.
    Cluster,
    /// Node 1, 2 or 3 of the cluster.
    ClusterNode(u8),
}

impl Service {
    fn name(self) -> String {
        match self {
            Service::Postgres => "postgres".into(),
            Service::Redis => "redis".into(),
            Service::Rabbitmq => "rabbitmq".into(),
            Service::Cluster => "cluster".into(),
            Service::ClusterNode(n) => format!("cluster-node-{n}"),
        }
    }
}

/// Starts and stops the private services through `scripts/chaos service NAME start|stop`.
pub struct Services {
    ctl: PathBuf,
    /// The cluster's AMQP URLs, comma-separated.
    cluster_amqp: Option<String>,
}

impl Services {
    pub fn new(ctl: PathBuf, cluster_amqp: Option<String>) -> Self {
        Self { ctl, cluster_amqp }
    }

    /// The cluster's nodes as an `AMQP_URL` list, when the run was given them.
    pub fn cluster_amqp(&self) -> Option<&str> {
        self.cluster_amqp.as_deref()
    }

    /// Prints what `s` reports of itself (the cluster: its queues' leaders and members).
    pub async fn status(&self, s: Service) -> anyhow::Result<()> {
        self.run(s, "status").await
    }

    /// kill -9 of `s` without starting it again.
    pub async fn kill(&self, s: Service) -> anyhow::Result<()> {
        self.run(s, "kill").await
    }

    pub async fn stop(&self, s: Service) -> anyhow::Result<()> {
        self.run(s, "stop").await
    }

    pub async fn start(&self, s: Service) -> anyhow::Result<()> {
        self.run(s, "start").await
    }

    /// Stops `s`, leaves it down for `down`, starts it again. It is started again even when
    /// the stop failed half-way.
    pub async fn restart(&self, s: Service, down: Duration) -> anyhow::Result<()> {
        let stopped = self.stop(s).await;
        tokio::time::sleep(down).await;
        self.start(s).await?;
        stopped
    }

    /// kill -9 of `s` (the PostgreSQL postmaster, the RabbitMQ node's VM, Redis), left down
    /// for `down`, then started again (for PostgreSQL: a crash recovery).
    pub async fn crash(&self, s: Service, down: Duration) -> anyhow::Result<()> {
        let killed = self.run(s, "kill").await;
        tokio::time::sleep(down).await;
        self.start(s).await?;
        killed
    }

    /// Makes every transaction of the private PostgreSQL read-only (`true`) or lifts that.
    pub async fn postgres_read_only(&self, on: bool) -> anyhow::Result<()> {
        let action = if on { "read-only" } else { "read-write" };
        self.run(Service::Postgres, action).await
    }

    async fn run(&self, s: Service, action: &str) -> anyhow::Result<()> {
        eprintln!("chaos: {} {action}", s.name());
        let status = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(&self.ctl)
                .args(["service", s.name().as_str(), action])
                .kill_on_drop(true)
                .status(),
        )
        .await
        .with_context(|| format!("Failed to {action} {}: no answer within 180 s", s.name()))?
        .with_context(|| format!("Failed to run {}", self.ctl.display()))?;
        if !status.success() {
            bail!("Failed to {action} {} ({status})", s.name());
        }
        Ok(())
    }
}
