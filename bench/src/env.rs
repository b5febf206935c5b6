//! The services a run talks to (all on 127.0.0.1: the machine's own by default, or the
//! private instances `scripts/chaos` starts) and everything it creates on them: databases
//! named `bench_<random>`, AMQP names under `bench.<random>.` and Redis keys under
//! `bench:<random>:`. Each is registered *before* it is created, so [`Janitor::clean`]
//! removes it even when a section fails half-way.

use anyhow::Context;
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use shared::config::defaults;
use std::sync::Mutex;
use std::time::Duration;

/// Where PostgreSQL, Redis and RabbitMQ are.
#[derive(Debug, Clone)]
pub struct Services {
    /// PostgreSQL server without a database (trust auth for `postgres` on loopback, as the
    /// project's scripts set up).
    pub pg_server: String,
    pub redis_url: String,
    pub amqp_url: String,
}

impl Default for Services {
    /// The machine's own services, where `scripts/run` and `scripts/test` find them.
    fn default() -> Self {
        Self {
            pg_server: defaults::POSTGRES_SERVER.into(),
            redis_url: defaults::REDIS_URL.into(),
            amqp_url: defaults::AMQP_URL.into(),
        }
    }
}

/// The default retry delays (`RetrySettings`), in ms: the delay queues carry them in their
/// names, so the cleanup has to know them to delete those queues.
pub fn default_retry_delays() -> Vec<u64> {
    (shared::config::RetrySettings::default().delays.iter())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .collect()
}

/// One fresh, migrated database.
pub struct BenchDb {
    pub name: String,
    pub url: String,
    /// A small pool for the harness's own queries (seeding, the final counts).
    pub conn: DatabaseConnection,
}

impl BenchDb {
    /// A single-connection pool on the same database (the baseline writes over one
    /// connection, and `SET` options then stick to it).
    pub async fn single_connection(&self) -> anyhow::Result<DatabaseConnection> {
        connect(&self.url, 1).await
    }

    /// A pool of `n` connections of its own.
    pub async fn connections(&self, n: u32) -> anyhow::Result<DatabaseConnection> {
        connect(&self.url, n).await
    }
}

/// AMQP and Redis names of one set of processes.
#[derive(Debug, Clone)]
pub struct Prefixes {
    pub amqp: String,
    pub redis: String,
}

enum Resource {
    Database(String),
    Amqp { prefix: String, delays: Vec<u64> },
    Redis(String),
}

/// Registry of what the run created on its [`Services`], removed by [`Janitor::clean`].
#[derive(Default)]
pub struct Janitor {
    resources: Mutex<Vec<Resource>>,
    services: Services,
}

impl Janitor {
    pub fn new(services: Services) -> Self {
        Self {
            resources: Mutex::default(),
            services,
        }
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    fn register(&self, r: Resource) {
        self.resources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Creates and migrates a database `bench_<random>`.
    pub async fn database(&self) -> anyhow::Result<BenchDb> {
        let name = format!("bench_{}", testkit::random_id());
        self.register(Resource::Database(name.clone()));
        let pg = &self.services.pg_server;
        let admin = connect(&format!("{pg}/postgres"), 1)
            .await
            .with_context(|| format!("Failed to connect to PostgreSQL at {pg}"))?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("Failed to create database {name}"))?;
        let _ = admin.close().await;
        let url = format!("{pg}/{name}");
        let conn = connect(&url, 4).await?;
        Migrator::up(&conn, None)
            .await
            .with_context(|| format!("Failed to migrate database {name}"))?;
        Ok(BenchDb { name, url, conn })
    }

    /// A fresh AMQP and Redis prefix; queues declared under it later (with `delays` as
    /// the retry delays) are deleted by the cleanup.
    pub fn prefixes(&self, delays: &[u64]) -> Prefixes {
        let id = testkit::random_id();
        let p = Prefixes {
            amqp: format!("bench.{id}."),
            redis: format!("bench:{id}:"),
        };
        self.register(Resource::Amqp {
            prefix: p.amqp.clone(),
            delays: delays.to_vec(),
        });
        self.register(Resource::Redis(p.redis.clone()));
        p
    }

    /// Removes everything registered so far; failures are reported, not fatal (the rest
    /// is still removed).
    pub async fn clean(&self) {
        let resources: Vec<Resource> =
            std::mem::take(&mut *self.resources.lock().unwrap_or_else(|e| e.into_inner()));
        if resources.is_empty() {
            return;
        }
        let admin = connect(&format!("{}/postgres", self.services.pg_server), 1)
            .await
            .ok();
        for r in resources {
            let result = match r {
                Resource::Database(name) => match &admin {
                    Some(admin) => admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await
                        .map(|_| ())
                        .with_context(|| format!("Failed to drop database {name}")),
                    None => Err(anyhow::anyhow!(
                        "Failed to drop database {name}: PostgreSQL unreachable"
                    )),
                },
                Resource::Amqp { prefix, delays } => {
                    delete_amqp(&self.services.amqp_url, &prefix, &delays).await
                }
                Resource::Redis(prefix) => delete_redis(&self.services.redis_url, &prefix).await,
            };
            if let Err(e) = result {
                eprintln!("bench: cleanup: {e:#}");
            }
        }
        if let Some(admin) = admin {
            let _ = admin.close().await;
        }
    }
}

pub async fn connect(url: &str, max: u32) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    Database::connect(opts)
        .await
        .with_context(|| format!("Failed to connect to {url}"))
}

/// Deletes every queue and exchange of the topology under `prefix` (a queue that was never
/// declared is fine).
async fn delete_amqp(url: &str, prefix: &str, delays: &[u64]) -> anyhow::Result<()> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let topology = shared::amqp::Topology::new(prefix, delays);
    let conn = shared::amqp::connect(url, lapin::ConnectionProperties::default())
        .await
        .context("Failed to connect to RabbitMQ for cleanup")?;
    // A delete of a missing queue closes the channel in some broker versions: one channel
    // per name keeps every delete independent.
    for q in topology.queues() {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
            let _ = ch.close(0, "done".into()).await;
        }
    }
    for e in topology.exchanges() {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
            let _ = ch.close(0, "done".into()).await;
        }
    }
    let _ = conn.close(0, "done".into()).await;
    Ok(())
}

/// Deletes every Redis key under `prefix`: SCAN, never KEYS (Redis is shared and KEYS
/// blocks it). Bounded: a scan of a huge keyspace stops after 100,000 rounds.
pub async fn delete_redis(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url).context("Failed to open the Redis client")?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("Failed to connect to Redis for cleanup")?;
    let mut cursor: u64 = 0;
    for _ in 0..100_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .context("Failed to scan Redis keys")?;
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .context("Failed to unlink Redis keys")?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(())
}
