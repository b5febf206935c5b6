//! Test support shared by every crate's integration tests: each test gets its own
//! PostgreSQL database (randomly named, migrated, dropped afterwards), its own RabbitMQ
//! name prefix and its own Redis key prefix, so tests run in parallel against the real
//! services.
//!
//! Service addresses come from `TEST_DATABASE_URL` (server URL without a database),
//! `TEST_REDIS_URL` and `TEST_AMQP_URL`, with this machine's defaults.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;
pub mod reads;
pub mod sms;
pub mod statuses;
pub mod webhooks;

use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use shared::config::{Settings, defaults};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| defaults::POSTGRES_SERVER.into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| defaults::REDIS_URL.into())
}

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| defaults::AMQP_URL.into())
}

/// A short random id for names (databases, prefixes).
pub fn random_id() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A fresh, migrated database that is dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub conn: DatabaseConnection,
}

impl TestDb {
    /// Creates and migrates a new database named `test_<random>`.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        Migrator::up(&db.conn, None)
            .await
            .expect("Failed to migrate the test database");
        db
    }

    /// Creates a new database without running migrations.
    pub async fn empty() -> Self {
        let name = format!("test_{}", random_id());
        let admin = Database::connect(format!("{}/postgres", server_url()))
            .await
            .expect("Failed to connect to PostgreSQL (is it running? scripts/test starts it)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("Failed to create the test database");
        admin.close().await.ok();
        let url = format!("{}/{name}", server_url());
        let mut opts = ConnectOptions::new(url.clone());
        opts.max_connections(20)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false);
        let conn = Database::connect(opts)
            .await
            .expect("Failed to connect to the test database");
        Self { name, url, conn }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let server = server_url();
        // Drop runs inside the test's runtime; the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(format!("{server}/postgres")).await {
                    let _ = admin
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A fixed-offset time zone where the local time is now `hour` o'clock (`hour`:xx), for
/// tests of calling windows (`Etc/GMT-3` is UTC+3).
pub fn zone_at(hour: u32) -> chrono_tz::Tz {
    use chrono::Timelike;
    let now = i64::from(chrono::Utc::now().hour());
    let mut offset = (i64::from(hour) - now).rem_euclid(24);
    if offset > 14 {
        offset -= 24;
    }
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    name.parse().expect("an Etc/GMT zone")
}

/// Settings pointing at `db` and at a random RabbitMQ and Redis prefix, with retry delays
/// short enough for tests.
pub fn settings(db: &TestDb) -> Settings {
    let id = random_id();
    let mut s = Settings {
        database_url: db.url.clone(),
        redis_url: redis_url(),
        amqp_url: amqp_url(),
        amqp_prefix: format!("test.{id}."),
        redis_prefix: format!("test:{id}:"),
        ..Settings::default()
    };
    s.receiver.addr = "127.0.0.1:0".into();
    s.worker.metrics_addr = "127.0.0.1:0".into();
    s.retry.delays = [100, 200, 400].map(Duration::from_millis).to_vec();
    s
}

/// Deletes every queue and exchange of `settings`' topology (call at the end of a test).
pub async fn delete_topology(settings: &Settings) {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let topo = shared::amqp::Topology::from_settings(settings);
    let Ok(conn) =
        lapin::Connection::connect(&settings.amqp_url, lapin::ConnectionProperties::default())
            .await
    else {
        return;
    };
    if let Ok(ch) = conn.create_channel().await {
        for q in topo.queues() {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for e in topo.exchanges() {
            let _ = ch
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = conn.close(0, "done".into()).await;
}

/// Polls `check` every 20 ms until it returns `Some`, and gives that value; panics naming
/// `what` was awaited if `timeout` passes first. The one way a test waits for a condition.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of exactly `sample` (name and labels) in a Prometheus text exposition, 0 if
/// absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// The sum of every sample whose name and labels start with `prefix` (a counter over all
/// its labels), 0 if none.
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Waits up to 10 s until at least `receivers` receivers of `settings` listen on its
/// token-change channel (an announcement made before would go unheard).
pub async fn wait_for_token_listeners(settings: &Settings, receivers: i64) {
    let channel = shared::keys::token_changes_channel(&settings.redis_prefix);
    let redis = redis::Client::open(settings.redis_url.as_str())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let what = format!("{receivers} receivers listening for token changes");
    eventually(&what, Duration::from_secs(10), || {
        let (channel, mut redis) = (channel.clone(), redis.clone());
        async move {
            let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut redis)
                .await
                .ok()?;
            (listeners >= receivers).then_some(())
        }
    })
    .await
}
