//! Prometheus metrics of the receiver. The recorder is process-wide (the `metrics` facade
//! has one global recorder), installed once, and rendered by `GET /metrics`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Requests answered, by `route` and `status`.
pub const HTTP_REQUESTS: &str = "receiver_http_requests_total";
/// Time from request head to response, by `route`.
pub const HTTP_DURATION: &str = "receiver_http_request_duration_seconds";
/// Time from publish to the broker's confirm.
pub const PUBLISH_CONFIRM: &str = "receiver_publish_confirm_seconds";
/// Publishes that did not end in an ack, by `reason` (unavailable, nack, returned,
/// timeout, error).
pub const PUBLISH_FAILURES: &str = "receiver_publish_failures_total";
/// Leads confirmed by the broker and answered 202.
pub const LEADS_ACCEPTED: &str = "receiver_leads_accepted_total";
/// Requests refused with 429, by `limit` (token, auth_ip).
pub const RATE_LIMITED: &str = "receiver_rate_limited_total";
/// Requests let through without a rate-limit verdict because Redis could not be reached.
pub const RATE_LIMIT_FAIL_OPEN: &str = "receiver_rate_limit_fail_open_total";
/// Redis calls that failed or timed out, by `op`.
pub const REDIS_ERRORS: &str = "receiver_redis_errors_total";
/// Token lookups, by `result` (hit, miss, stale).
pub const TOKEN_LOOKUPS: &str = "receiver_token_lookups_total";
/// Requests answered with the 202 of an earlier request with the same `Idempotency-Key`.
pub const IDEMPOTENT_REPLAYS: &str = "receiver_idempotent_replays_total";
/// Leads answered by the intake endpoints, by `source` (form, bulk, google_ads) and the
/// `status` each lead got (a bulk request's leads one by one, not its 207).
pub const INTAKE_LEADS: &str = "receiver_intake_leads_total";
/// Open client connections.
pub const OPEN_CONNECTIONS: &str = "receiver_open_connections";
/// Requests being answered: their head was read and their answer is not yet written.
pub const IN_FLIGHT: &str = "receiver_in_flight_requests";
/// Synchronous-mode requests (`Prefer: wait`), by `result`: `outcome` (answered with the
/// worker's outcome) or `timeout` (answered 202).
pub const SYNC_WAITS: &str = "receiver_sync_waits_total";
/// 1 while the subscription to intake outcomes (synchronous mode) is active, else 0.
pub const OUTCOME_SUBSCRIPTION_UP: &str = "receiver_outcome_subscription_up";
/// Messages ready in a queue of the topology, by `queue` (its full name), read from the
/// broker every few seconds: the intake backlog to autoscale workers on, and the
/// dead letters to alert on.
pub const QUEUE_DEPTH: &str = "lead_intake_queue_depth";
/// Consumers of a queue of the topology, by `queue`, read with [`QUEUE_DEPTH`]: on
/// `leads.intake`, the worker processes × connections consuming (0 = nothing drains it).
pub const QUEUE_CONSUMERS: &str = "lead_intake_queue_consumers";

/// Histogram buckets, in seconds: sub-millisecond (cached paths) to the publish timeout.
const BUCKETS: [f64; 14] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            {
                Ok(b) => b,
                Err(error) => {
                    tracing::warn!(%error, "Failed to set histogram buckets; using summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("Another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Drains histogram buckets periodically; without it they grow without bound.
pub async fn run_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HTTP_REQUESTS, "Requests answered, by route and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Request latency, by route.");
    describe_histogram!(
        PUBLISH_CONFIRM,
        Unit::Seconds,
        "Time from publish to the broker's confirm."
    );
    describe_counter!(PUBLISH_FAILURES, "Publishes without an ack, by reason.");
    describe_counter!(
        LEADS_ACCEPTED,
        "Leads confirmed by the broker and answered 202."
    );
    describe_counter!(RATE_LIMITED, "Requests refused with 429, by limit.");
    describe_counter!(
        RATE_LIMIT_FAIL_OPEN,
        "Requests let through unlimited because Redis was unreachable."
    );
    describe_counter!(REDIS_ERRORS, "Redis calls that failed or timed out, by op.");
    describe_counter!(
        TOKEN_LOOKUPS,
        "Token lookups, by result (hit, miss, stale)."
    );
    describe_counter!(IDEMPOTENT_REPLAYS, "Requests answered with an earlier 202.");
    describe_gauge!(OPEN_CONNECTIONS, "Open client connections.");
    describe_counter!(
        INTAKE_LEADS,
        "Leads answered by the intake endpoints, by source and the status each got."
    );
    describe_gauge!(
        IN_FLIGHT,
        "Requests being answered (head read, answer not yet written)."
    );
    describe_counter!(
        SYNC_WAITS,
        "Synchronous-mode requests, by result (outcome, timeout)."
    );
    describe_gauge!(
        OUTCOME_SUBSCRIPTION_UP,
        "1 while synchronous mode hears intake outcomes, else 0."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Messages ready in a queue (leads.intake, leads.delay.*, leads.dead), read from the broker."
    );
    describe_gauge!(
        QUEUE_CONSUMERS,
        "Consumers of a queue (workers consuming leads.intake), read from the broker."
    );
    register_zeros();
}

/// Creates every counter a dashboard or an alert reads at 0, with each of its (bounded)
/// label values, so a series exists before its first event: `rate()` and `increase()` see
/// the first failure instead of a series appearing from nowhere.
fn register_zeros() {
    use metrics::counter;
    for reason in ["unavailable", "nack", "returned", "timeout", "error"] {
        counter!(PUBLISH_FAILURES, "reason" => reason).absolute(0);
    }
    for limit in ["token", "read", "auth_ip"] {
        counter!(RATE_LIMITED, "limit" => limit).absolute(0);
    }
    counter!(RATE_LIMIT_FAIL_OPEN).absolute(0);
    counter!(LEADS_ACCEPTED).absolute(0);
}
