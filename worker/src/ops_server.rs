//! The worker's own HTTP port: `/healthz` (the process is up) and `/metrics` (Prometheus).
//!
//! Metrics:
//! - `worker_leads_total{outcome}`: leads finished, by outcome (created, updated, merged,
//!   duplicate, already_done, retried, dead_lettered);
//! - `worker_lead_duration_seconds`: from a delivery reaching its consumer to its ack;
//! - `worker_retries_total`, `worker_dead_letters_total{kind}`;
//! - `worker_in_flight_leads`: deliveries received and not yet settled;
//! - `worker_batch_size`, `worker_deferred_leads_total`, `worker_broker_connects_total`,
//!   `worker_outcome_publish_failures_total`;
//! - `worker_lead_lag_seconds`: from the receiver's `received_at` to the commit;
//! - `worker_queue_head_received_timestamp_seconds`: when the newest lead this process
//!   took was received (the queue's head as it sees it; `time() -` it bounds the age of
//!   the oldest lead still waiting);
//! - `worker_consuming`: 1 while connected to the broker and consuming.
//!
//! Names are the constants below; every label has a fixed, small set of values.

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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Leads finished, by `outcome` ([`OUTCOMES`]).
pub const LEADS: &str = "worker_leads_total";
/// Time from a delivery reaching its consumer to its acknowledgement.
pub const LEAD_DURATION: &str = "worker_lead_duration_seconds";
/// Time from the receiver's `received_at` to the commit of the lead.
pub const LEAD_LAG: &str = "worker_lead_lag_seconds";
/// Leads sent to a retry delay queue.
pub const RETRIES: &str = "worker_retries_total";
/// Leads sent to the dead-letter queue, by `kind` ([`DEAD_LETTER_KINDS`]).
pub const DEAD_LETTERS: &str = "worker_dead_letters_total";
/// Deliveries received and not yet settled.
pub const IN_FLIGHT: &str = "worker_in_flight_leads";
/// Leads taken from the queue together.
pub const BATCH_SIZE: &str = "worker_batch_size";
/// Leads of a batch processed by a second transaction because their locks were busy.
pub const DEFERRED: &str = "worker_deferred_leads_total";
/// Connections made to RabbitMQ.
pub const BROKER_CONNECTS: &str = "worker_broker_connects_total";
/// Acknowledgement frames sent for intakes, by kind: `run` (every settled lead up to its
/// tag) or `single` (one lead settled while an earlier one was still running).
pub const ACK_FRAMES: &str = "worker_ack_frames_total";
/// Outcome announcements that could not be published on Redis.
pub const OUTCOME_PUBLISH_FAILURES: &str = "worker_outcome_publish_failures_total";
/// Unix time at which the newest lead this process took was received.
pub const QUEUE_HEAD_RECEIVED: &str = "worker_queue_head_received_timestamp_seconds";
/// 1 while connected to the broker and consuming, else 0.
pub const CONSUMING: &str = "worker_consuming";

/// Every value of the `outcome` label of [`LEADS`].
pub const OUTCOMES: [&str; 7] = [
    "created",
    "updated",
    "merged",
    "duplicate",
    "already_done",
    "retried",
    "dead_lettered",
];
/// Every value of the `kind` label of [`DEAD_LETTERS`].
pub const DEAD_LETTER_KINDS: [&str; 4] = ["poison", "permanent", "exhausted", "broker"];

/// Seconds; leads take milliseconds, a slow database seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// Seconds; from a fraction of a second (idle pipeline) through retries (minutes) to a
/// backlog an hour deep.
const LAG_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// What the heartbeat reports of this process (the metrics facade cannot be read back).
static IN_FLIGHT_NOW: AtomicU64 = AtomicU64::new(0);
static LEADS_DONE: AtomicU64 = AtomicU64::new(0);
/// Unix seconds; 0 = no lead taken yet.
static HEAD_RECEIVED: AtomicI64 = AtomicI64::new(0);
static CONSUMING_NOW: AtomicBool = AtomicBool::new(false);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use; several workers in one process share
/// it).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(LEAD_DURATION.into()),
            &DURATION_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(BATCH_SIZE.into()),
            &BATCH_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(LEAD_LAG.into()),
            &LAG_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(crate::messages::DUE_LAG.into()),
            &LAG_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(crate::messages::PROVIDER_DURATION.into()),
            &DURATION_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(crate::deliveries::DELIVERY_LAG.into()),
            &LAG_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(crate::deliveries::ATTEMPT_DURATION.into()),
            &DURATION_BUCKETS,
        )
        .context("Failed to configure histogram buckets")?
        .build_recorder();
    let handle = recorder.handle();
    // Only the first installation wins; a racing one is dropped and its handle unused.
    if metrics::set_global_recorder(recorder).is_ok() {
        let _ = HANDLE.set(handle.clone());
        describe();
        crate::messages::describe();
        crate::deliveries::describe();
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
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(LEADS, "Leads finished, by outcome.");
    describe_histogram!(
        LEAD_DURATION,
        Unit::Seconds,
        "Time from a delivery reaching its consumer to its acknowledgement."
    );
    describe_histogram!(
        LEAD_LAG,
        Unit::Seconds,
        "Time from the receiver's received_at to the commit of the lead."
    );
    describe_counter!(RETRIES, "Leads sent to a retry delay queue.");
    describe_counter!(
        DEAD_LETTERS,
        "Leads sent to the dead-letter queue, by kind (poison, permanent, exhausted, broker)."
    );
    describe_gauge!(IN_FLIGHT, "Deliveries received, not yet settled.");
    describe_histogram!(
        BATCH_SIZE,
        "Leads taken from the queue together (one transaction for those whose locks are free)."
    );
    describe_counter!(
        DEFERRED,
        "Leads of a batch whose locks were busy, processed by a second transaction that waits for them."
    );
    describe_counter!(BROKER_CONNECTS, "Connections made to RabbitMQ.");
    describe_counter!(
        ACK_FRAMES,
        "Acknowledgement frames sent for intakes, by kind: run (every settled lead up to its tag) or single."
    );
    describe_counter!(
        OUTCOME_PUBLISH_FAILURES,
        "Outcome announcements that could not be published on Redis."
    );
    describe_gauge!(
        QUEUE_HEAD_RECEIVED,
        Unit::Seconds,
        "Unix time at which the newest lead this process took was received."
    );
    describe_gauge!(
        CONSUMING,
        "1 while connected to the broker and consuming, else 0."
    );
    // Every series a dashboard or an alert reads exists from the start, at 0.
    for outcome in OUTCOMES {
        metrics::counter!(LEADS, "outcome" => outcome).absolute(0);
    }
    for kind in DEAD_LETTER_KINDS {
        metrics::counter!(DEAD_LETTERS, "kind" => kind).absolute(0);
    }
    metrics::counter!(RETRIES).absolute(0);
    metrics::counter!(BROKER_CONNECTS).absolute(0);
    for kind in ["run", "single"] {
        metrics::counter!(ACK_FRAMES, "kind" => kind).absolute(0);
    }
    metrics::counter!(DEFERRED).absolute(0);
    metrics::counter!(OUTCOME_PUBLISH_FAILURES).absolute(0);
    metrics::gauge!(IN_FLIGHT).set(0.0);
    metrics::gauge!(CONSUMING).set(0.0);
    // No lead taken yet: nothing older than the start has been seen waiting.
    metrics::gauge!(QUEUE_HEAD_RECEIVED).set(chrono::Utc::now().timestamp() as f64);
}

/// A delivery reached this process; `received_unix` is its AMQP timestamp (when the
/// receiver received the lead), if it has one.
pub fn taken(received_unix: Option<u64>) {
    metrics::gauge!(IN_FLIGHT).increment(1.0);
    IN_FLIGHT_NOW.fetch_add(1, Ordering::Relaxed);
    if let Some(t) = received_unix.and_then(|t| i64::try_from(t).ok()) {
        // The newest seen: a retried lead coming back with its old timestamp does not
        // move the head backwards.
        let before = HEAD_RECEIVED.fetch_max(t, Ordering::Relaxed);
        if t > before {
            metrics::gauge!(QUEUE_HEAD_RECEIVED).set(t as f64);
        }
    }
}

/// A delivery taken at `at` is settled (acknowledged, retried or dead-lettered).
pub fn settled(at: Instant) {
    metrics::gauge!(IN_FLIGHT).decrement(1.0);
    metrics::histogram!(LEAD_DURATION).record(at.elapsed().as_secs_f64());
    let _ = IN_FLIGHT_NOW.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some(n.saturating_sub(1))
    });
    LEADS_DONE.fetch_add(1, Ordering::Relaxed);
}

/// A lead received at `received_at` is committed.
pub fn committed(received_at: chrono::DateTime<chrono::Utc>) {
    let lag = (chrono::Utc::now() - received_at).num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!(LEAD_LAG).record(lag);
}

/// The worker is (or stopped being) connected and consuming.
pub fn set_consuming(on: bool) {
    CONSUMING_NOW.store(on, Ordering::Relaxed);
    metrics::gauge!(CONSUMING).set(if on { 1.0 } else { 0.0 });
}

/// This process as the heartbeat reports it.
pub struct Progress {
    pub consuming: bool,
    pub in_flight: u64,
    pub leads: u64,
    /// Unix seconds.
    pub head_received: Option<i64>,
}

/// What this process has done so far.
pub fn progress() -> Progress {
    let head = HEAD_RECEIVED.load(Ordering::Relaxed);
    Progress {
        consuming: CONSUMING_NOW.load(Ordering::Relaxed),
        in_flight: IN_FLIGHT_NOW.load(Ordering::Relaxed),
        leads: LEADS_DONE.load(Ordering::Relaxed),
        head_received: (head > 0).then_some(head),
    }
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
