//! The operations endpoints: `/healthz` (the process is up), `/readyz` (Redis, the broker
//! and the database are reachable) and `/metrics` (Prometheus text exposition).

use crate::web::respond::{self, Body};
use crate::web::state::AppState;
use hyper::{Response, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// What `/readyz` found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(example = "ready")]
    pub status: String,
    /// `ok` or `unreachable` for each of `redis`, `broker` and `database`.
    #[schema(example = json!({"redis": "ok", "broker": "ok", "database": "ok"}))]
    pub checks: std::collections::BTreeMap<String, String>,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "The process is up",
    responses((status = 200, description = "Always, while the process serves.", body = Health, example = json!({"status": "ok"}))),
)]
pub fn healthz() -> Response<Body> {
    respond::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Redis, the broker and the database are all reachable.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Redis, the broker and the database are reachable",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Something is unreachable.", body = Readiness,
            example = json!({"status": "unavailable", "checks": {"redis": "ok", "broker": "unreachable", "database": "ok"}})),
    ),
)]
pub async fn readyz(state: &AppState) -> Response<Body> {
    let (redis, database) =
        tokio::join!(state.admission.redis.ping(), state.admission.tokens.ping());
    let broker = state.publisher.is_connected();
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = redis && database && broker;
    respond::json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &serde_json::json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": {
                "redis": word(redis),
                "broker": word(broker),
                "database": word(database),
            },
        }),
    )
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Text exposition: request counts and latencies by route, publish confirms, rate limiting, synchronous waits, and the depth of `leads.intake` and `leads.dead` (`lead_intake_queue_depth{queue}`).",
    responses((status = 200, description = "Prometheus text format.", body = String, content_type = "text/plain",
        example = json!("lead_intake_queue_depth{queue=\"leads.intake\"} 12"))),
)]
pub fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
