//! [`Application`]: every dependency of the receiver, built from [`Settings`], and the
//! server loop. Nothing is required to be reachable at start: the database pool and Redis
//! connect lazily and the broker connection is kept by a background task, so the receiver
//! comes up (and `/readyz` tells what is missing) while a dependency is still starting.
//! What it serves, and which handler answers what, is in [`endpoints`].

use crate::admission::Admission;
use crate::admission::token::{self, Authenticator};
use crate::infra::publisher::Publisher;
use crate::infra::redis_client::RedisClient;
use crate::infra::waiters::OutcomeWaiters;
use crate::infra::{prometheus, queue_depth};
use crate::web::server;
use crate::web::state::AppState;
use anyhow::Context;

mod endpoints;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use shared::amqp::Topology;
use shared::config::Settings;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    /// The broker connection keeper; closes the connection when `stop` fires.
    publisher_task: JoinHandle<()>,
    /// Stops the background tasks, also when the application is dropped without running.
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Application {
    /// Binds the listen address and sets up every dependency.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let receiver = &settings.receiver;
        let listener = TcpListener::bind(&receiver.addr)
            .await
            .with_context(|| format!("Failed to bind {}", receiver.addr))?;

        let db = database(&settings).await?;
        let redis = RedisClient::new(&settings.redis_url, receiver.redis_timeout)
            .context("Failed to set up the Redis client")?;

        let topology = topology_of(&settings);
        let publisher = Arc::new(Publisher::new(
            &settings.amqp_url,
            topology,
            receiver.publish_channels,
            receiver.publish_timeout,
        ));
        let stop = CancellationToken::new();
        let publisher_task = tokio::spawn(publisher.clone().run(stop.clone()));
        tokio::spawn(queue_depth::run(
            publisher.clone(),
            topology_of(&settings),
            receiver.queue_depth_interval,
            stop.clone(),
        ));
        tokio::spawn(crate::infra::intake_stats::run(
            redis.conn(),
            settings.redis_prefix.clone(),
            stop.clone(),
        ));
        let outcomes = Arc::new(OutcomeWaiters::default());
        tokio::spawn(outcomes.clone().run(
            settings.redis_url.clone(),
            settings.redis_prefix.clone(),
            stop.clone(),
        ));

        let auth = Arc::new(Authenticator::new(
            db.clone(),
            receiver.token_cache_ttl,
            receiver.token_stale,
        ));
        tokio::spawn(token::follow_token_changes(
            auth.clone(),
            settings.redis_url.clone(),
            settings.redis_prefix.clone(),
            stop.clone(),
        ));

        let rules = settings
            .policy
            .rules()
            .context("Failed to load the contact policy's rule table")?;
        let state = AppState {
            rules: Arc::new(rules),
            admission: Admission::new(redis, auth, &settings),
            db,
            outcomes,
            publisher,
            metrics: prometheus::handle(),
            settings,
        };
        Ok(Self {
            listener,
            state: Arc::new(state),
            publisher_task,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        })
    }

    /// The bound address (the port is the OS's choice when configured as 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Waits up to `timeout` for the broker connection; whether it is up.
    pub async fn wait_for_broker(&self, timeout: Duration) -> bool {
        self.state.publisher.wait_connected(timeout).await
    }

    /// Serves until `shutdown` completes, drains in-flight requests, then closes the broker
    /// connection.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let server_stop = CancellationToken::new();
        let trigger = server_stop.clone();
        let watcher = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("Shutting down: draining in-flight requests");
            trigger.cancel();
        });
        let upkeep = tokio::spawn(prometheus::run_upkeep(self.state.metrics.clone()));
        let state = self.state.clone();
        server::serve(
            self.listener,
            &self.state.settings.receiver,
            server_stop,
            move |req, peer| {
                let state = state.clone();
                async move { endpoints::handle(&state, req, peer).await }
            },
        )
        .await;
        upkeep.abort();
        watcher.abort();
        self.stop.cancel();
        if tokio::time::timeout(Duration::from_secs(5), self.publisher_task)
            .await
            .is_err()
        {
            tracing::warn!("The broker connection did not close in time");
        }
        tracing::info!("Receiver stopped");
        Ok(())
    }
}

/// The database pool: lazy, so the receiver starts while the database is still starting.
async fn database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(settings.database_url.clone());
    options
        .max_connections(settings.receiver.db_pool_size)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(true)
        // Statements carry token hashes; they stay out of the logs.
        .sqlx_logging(false)
        // Read-API searches stay index scans as the account's tables grow.
        .map_sqlx_postgres_opts(|o| o.options([shared::db::CUSTOM_PLANS]));
    Database::connect(options)
        .await
        .context("Failed to set up the database pool")
}

fn topology_of(settings: &Settings) -> Topology {
    Topology::from_settings(settings)
}
