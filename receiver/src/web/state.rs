//! [`AppState`]: what every request handler is given. The application builds it; handlers
//! receive it with each request and never reach for the application itself.

use crate::admission::Admission;
use crate::infra::publisher::Publisher;
use crate::infra::waiters::OutcomeWaiters;
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use shared::config::Settings;
use std::sync::Arc;

/// What every request handler shares.
pub struct AppState {
    pub settings: Settings,
    /// Token check, rate limits, `Idempotency-Key` claims and intake records.
    pub admission: Admission,
    pub publisher: Arc<Publisher>,
    /// Read-only: the read API and the one final read of a synchronous wait.
    pub db: DatabaseConnection,
    /// Requests waiting for their lead's outcome (synchronous mode).
    pub outcomes: Arc<OutcomeWaiters>,
    pub metrics: PrometheusHandle,
    /// The contact policy's rule table (§9), for the verdicts validate shows.
    pub rules: Arc<shared::policy::table::RuleTable>,
}
