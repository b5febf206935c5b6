//! Which handler answers which path, with per-route metrics. Paths are matched exactly (a
//! trailing slash is ignored); metrics label unknown paths `unmatched` so a scanner cannot
//! blow up their cardinality.

use crate::app::AppState;
use crate::http::{self, Body};
use crate::{intake, telemetry};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use std::net::SocketAddr;
use std::time::Instant;

/// Answers `req` from `peer`.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let (route, response) = match path {
        intake::PATH => (intake::PATH, intake::handle(state, req, peer).await),
        "/healthz" => ("/healthz", get_only(&method, || async { healthz() }).await),
        "/readyz" => ("/readyz", get_only(&method, || readyz(state)).await),
        "/metrics" => (
            "/metrics",
            get_only(&method, || async { metrics(state) }).await,
        ),
        _ => ("unmatched", http::not_found()),
    };
    let status = response.status();
    metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(telemetry::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(%method, route, status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "Request answered");
    response
}

async fn get_only<F, Fut>(method: &Method, handler: F) -> Response<Body>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    if method == Method::GET {
        handler().await
    } else {
        http::method_not_allowed(method, "GET")
    }
}

/// The process is up.
fn healthz() -> Response<Body> {
    http::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Redis, the broker and the database are all reachable.
async fn readyz(state: &AppState) -> Response<Body> {
    let (redis, database) = tokio::join!(state.redis.ping(), state.auth.ping());
    let broker = state.publisher.is_connected();
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = redis && database && broker;
    http::json(
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
fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
