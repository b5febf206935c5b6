//! The worker's database pool and the session settings every one of its connections gets.

use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use shared::config::Settings;
use std::time::Duration;

/// Session settings of every worker connection, and why each is there.
pub const SESSION_OPTIONS: [(&str, &str); 6] = [
    // A statement or lock wait that hangs (a stuck lock holder, a sick disk) fails the lead
    // transiently instead of holding a consumer for ever.
    ("statement_timeout", "30s"),
    ("lock_timeout", "30s"),
    // Every statement of the worker finds its rows by key. Each pooled connection prepares
    // a statement once, and after five executions PostgreSQL may keep a generic plan; made
    // while a table was nearly empty, that plan would be a sequential scan kept as the
    // table grows to millions of rows. With sequential scans off, every plan, generic or
    // not, reaches a table through its index whatever its size at planning time. (Planning
    // every execution instead, `plan_cache_mode = force_custom_plan`, also re-plans each
    // foreign-key check of every inserted row, at a price docs/performance.md gives.)
    ("enable_seqscan", "off"),
    // For the same reason, joins are nested loops that descend an index per outer row: a
    // hash or merge join kept from a small table would read the other side whole.
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    // A node turned off above still costs its plan 10^10, far past `jit_above_cost`: every
    // execution of such a plan (a small catalog table read whole) would compile itself first,
    // 100 ms and more each time. Nothing the worker runs gains from JIT.
    ("jit", "off"),
];

/// Set first in each lead transaction (`process`). With the session settings above, a
/// generic plan of its statements reaches their rows by index for any arguments, so each
/// is planned once per connection and kept: by default PostgreSQL plans the first five
/// executions of every prepared statement afresh (every SeaORM insert text, one per batch
/// size) and keeps planning those whose custom plans it costs below the generic one (array
/// keys). The delivery loop's claims and records of attempts set it too. Not the whole
/// session: the outbox's expansion and the message loops run as PostgreSQL chooses, on
/// tables that swing from empty to hundreds of thousands of rows. `worker/tests/plans.rs`
/// checks both; docs/performance.md has the figures.
pub const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// The pool options of a worker process with `pool_size` connections. Connections are made
/// lazily, so a worker starts while the database is still coming up, and each is replaced
/// after `worker.db_max_lifetime`, so no plan it cached outlives that.
pub fn options(settings: &Settings, pool_size: u32) -> ConnectOptions {
    let mut opts = ConnectOptions::new(settings.database_url.clone());
    opts.max_connections(pool_size)
        .min_connections(0)
        .max_lifetime(settings.worker.db_max_lifetime)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy(true)
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(|o| o.options(SESSION_OPTIONS));
    opts
}

/// The worker's pool, sized by `settings.worker.db_pool_size`.
pub async fn connect(settings: &Settings) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(settings, settings.worker.db_pool_size)).await
}

/// A listener on the PostgreSQL notification `channel`, on a connection of its own from
/// `db`'s pool settings; `None` (logged, naming `what` it waits for) when it cannot be made,
/// and the caller then wakes on its timer only.
pub async fn listener(
    db: &DatabaseConnection,
    channel: &str,
    what: &str,
) -> Option<sea_orm::sqlx::postgres::PgListener> {
    let pool = db.get_postgres_connection_pool();
    let listener = async {
        let mut l = sea_orm::sqlx::postgres::PgListener::connect_with(pool).await?;
        l.listen(channel).await?;
        Ok::<_, sea_orm::sqlx::Error>(l)
    };
    match listener.await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for {what}");
            None
        }
    }
}
