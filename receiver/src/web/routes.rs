//! Which handler answers which request, with per-route metrics.
//!
//! [`ROUTES`] is the one list of what the receiver serves: dispatch reads it, and a test
//! holds the OpenAPI document to it in both directions. Paths are matched segment by
//! segment, `{id}` matching any one segment (a trailing slash is ignored); a known path
//! with another method gets 405 naming the methods it has. Metrics label requests with the
//! route's pattern, and unknown paths `unmatched`, so neither ids nor a scanner can blow up
//! their cardinality.

use crate::infra::{intake_stats, prometheus};
use crate::openapi;
use crate::read;
use crate::sources::{bulk, google_ads, single, validate};
use crate::web::respond::{self, Body};
use crate::web::state::AppState;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Instant;
use utoipa::ToSchema;

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Intake,
    Bulk,
    Validate,
    GoogleAds,
    IntakeStatus,
    Contacts,
    Contact,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

/// One method on one path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    /// As written in the OpenAPI document: `{name}` stands for one path segment.
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Everything the receiver serves.
pub static ROUTES: &[Route] = &[
    route("POST", single::PATH, Endpoint::Intake),
    route("POST", bulk::PATH, Endpoint::Bulk),
    route("POST", validate::PATH, Endpoint::Validate),
    route("POST", google_ads::PATH, Endpoint::GoogleAds),
    route("GET", "/api/v1/intakes/{id}", Endpoint::IntakeStatus),
    route("GET", "/api/v1/contacts", Endpoint::Contacts),
    route("GET", "/api/v1/contacts/{id}", Endpoint::Contact),
    route("GET", "/healthz", Endpoint::Healthz),
    route("GET", "/readyz", Endpoint::Readyz),
    route("GET", "/metrics", Endpoint::Metrics),
    route("GET", "/openapi.json", Endpoint::OpenApi),
];

/// The routes whose pattern matches `path`, each with the segment its `{…}` matched.
fn matching(path: &str) -> impl Iterator<Item = (&'static Route, Option<&str>)> {
    ROUTES.iter().filter_map(move |route| {
        let mut param = None;
        let mut pattern = route.path.split('/');
        let mut segments = path.split('/');
        loop {
            match (pattern.next(), segments.next()) {
                (None, None) => return Some((route, param)),
                (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                    param = Some(s);
                }
                (Some(p), Some(s)) if p == s => {}
                _ => return None,
            }
        }
    })
}

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
    let path = path.to_owned();
    let found: Vec<_> = matching(&path).collect();
    let (route, response) = match found.first().map(|(route, _)| route.path) {
        None => ("unmatched", respond::not_found()),
        Some(pattern) => match found.iter().find(|(r, _)| r.method == method.as_str()) {
            Some((route, param)) => (
                route.path,
                dispatch(state, req, peer, route.endpoint, param.unwrap_or_default()).await,
            ),
            None => {
                let allowed: Vec<&str> = found.iter().map(|(route, _)| route.method).collect();
                (
                    pattern,
                    respond::method_not_allowed(&method, &allowed.join(", ")),
                )
            }
        },
    };
    let status = response.status();
    if route == single::PATH {
        intake_stats::record(status.as_u16());
    }
    metrics::counter!(prometheus::HTTP_REQUESTS, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(prometheus::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(%method, route, status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "Request answered");
    response
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    endpoint: Endpoint,
    param: &str,
) -> Response<Body> {
    match endpoint {
        Endpoint::Intake => single::handle(state, req, peer).await,
        Endpoint::Bulk => bulk::handle(state, req, peer).await,
        Endpoint::Validate => validate::handle(state, req, peer).await,
        Endpoint::GoogleAds => google_ads::handle(state, req, peer).await,
        Endpoint::IntakeStatus => read::api::get_intake(state, req, peer, param).await,
        Endpoint::Contacts => read::api::list_contacts(state, req, peer).await,
        Endpoint::Contact => read::api::get_contact(state, req, peer, param).await,
        Endpoint::Healthz => healthz(),
        Endpoint::Readyz => readyz(state).await,
        Endpoint::Metrics => metrics(state),
        Endpoint::OpenApi => openapi::response(),
    }
}

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
fn healthz() -> Response<Body> {
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
async fn readyz(state: &AppState) -> Response<Body> {
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
fn metrics(state: &AppState) -> Response<Body> {
    let mut response = Response::new(Body::from(state.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
