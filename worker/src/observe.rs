//! The worker's own HTTP port: `/healthz` (the process is up) and `/metrics` (Prometheus).
//!
//! Metrics:
//! - `worker_leads_total{outcome}`: leads finished, by outcome (created, updated, merged,
//!   duplicate, already_done, retried, dead_lettered);
//! - `worker_lead_duration_seconds`: from a delivery reaching its consumer to its ack;
//! - `worker_retries_total`, `worker_dead_letters_total{kind}`;
//! - `worker_in_flight_leads`: deliveries received and not yet settled;
//! - `worker_batch_size`, `worker_deferred_leads_total`, `worker_broker_connects_total`,
//!   `worker_outcome_publish_failures_total`.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Seconds; leads take milliseconds, a slow database seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use; several workers in one process share
/// it).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("worker_lead_duration_seconds".into()),
            &DURATION_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("worker_batch_size".into()),
            &BATCH_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    // Only the first installation wins; a racing one is dropped and its handle unused.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle.clone());
        describe();
    }
    match HANDLE.get() {
        Some(h) => Ok(h.clone()),
        None => {
            // Another component of this process (a receiver run in-process) installed its
            // recorder first: the worker still works, only its /metrics stays empty.
            tracing::warn!(
                "Another metrics recorder is installed; the worker's /metrics stays empty"
            );
            Ok(handle)
        }
    }
}

fn describe() {
    metrics::describe_counter!("worker_leads_total", "Leads finished, by outcome.");
    metrics::describe_histogram!(
        "worker_lead_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a delivery reaching its consumer to its acknowledgement."
    );
    metrics::describe_counter!("worker_retries_total", "Leads sent to a retry delay queue.");
    metrics::describe_counter!(
        "worker_dead_letters_total",
        "Leads sent to the dead-letter queue, by kind (poison, permanent, exhausted)."
    );
    metrics::describe_gauge!(
        "worker_in_flight_leads",
        "Deliveries received, not yet settled."
    );
    metrics::describe_histogram!(
        "worker_batch_size",
        "Leads taken from the queue together (one transaction for those whose locks are free)."
    );
    metrics::describe_counter!(
        "worker_deferred_leads_total",
        "Leads of a batch whose locks were busy, processed by a second transaction that waits for them."
    );
    metrics::describe_counter!(
        "worker_broker_connects_total",
        "Connections made to RabbitMQ."
    );
    metrics::describe_counter!(
        "worker_outcome_publish_failures_total",
        "Outcome announcements that could not be published on Redis."
    );
}

/// Serves `/healthz` and `/metrics` until `stop`, and keeps histograms bounded.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, stop: CancellationToken) {
    let upkeep = {
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => handle.run_upkeep(),
                }
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "Failed to accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(route(&req, &handle)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    let _ = upkeep.await;
}

fn route<B>(req: &Request<B>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_owned(),
        ),
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4", handle.render())
        }
        (_, "/healthz" | "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"message":"Method not allowed."}"#.to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"message":"Not found."}"#.to_owned(),
        ),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    res
}
