//! The worker process: consume `leads.intake`, process leads `concurrency` transactions at a
//! time, settle every delivery (ack after commit, or a confirmed copy in a retry or the
//! dead-letter queue first), reconnect to the broker when it drops, and stop cleanly.

use crate::announce::{Announcement, Announcer};
use crate::backlog::IntakeBacklog;
use crate::broker::Session;
use crate::decode;
use crate::messages::Sender;
use crate::ops_server;
use crate::process::{Attempt, Outcome, ProcessError, Processor, RetryRecord};
use crate::settle::{self, Carried, Fate, Settlement, Subject};
use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicCancelOptions;
use metrics_exporter_prometheus::PrometheusHandle;
use shared::config::Settings;
use shared::intake::headers;
use shared::runtime::Backoff;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use uuid::Uuid;

/// A worker, built and ready to run.
pub struct Worker {
    /// Everything configurable; the consumer tasks share it.
    settings: Settings,
    /// Leads → database.
    processor: Processor,
    /// Outcomes → Redis, for synchronous-mode clients.
    outcomes: Announcer,
    /// Whether the consumers leave leads waiting (the delivery loop yields to them).
    backlog: IntakeBacklog,
    /// Due message steps → the SMS provider (§10); `None` when off or without a provider.
    sender: Option<Sender>,
    /// Due event deliveries → the endpoints (§11); `None` when off.
    dispatcher: Option<crate::deliveries::Dispatcher>,
    /// The metrics registry `/metrics` renders.
    metrics: PrometheusHandle,
    /// Bound at build time, so callers know the port before the worker runs.
    listener: TcpListener,
    /// The listener's address (port 0 resolved), for tests and logs.
    metrics_addr: SocketAddr,
}

/// What every consumer task of a session shares.
struct ConsumerContext {
    /// Concurrency, batch size, retry delays, prefixes.
    settings: Settings,
    /// Leads → database.
    processor: Processor,
    /// Outcomes → Redis.
    outcomes: Announcer,
    /// Signed when a consumer leaves leads waiting.
    backlog: IntakeBacklog,
    /// Batches being processed now, by all consumers.
    running: AtomicUsize,
}

/// Why a broker session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// Shutdown: consumption cancelled and received leads finished.
    Stopped,
    /// The connection or channel failed: reconnect.
    Lost,
}

impl Worker {
    /// Sets up the database pool (connecting lazily, so a worker starts while the database
    /// is still coming up), the metrics recorder and the metrics listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let metrics = ops_server::recorder()?;
        let db = crate::db::connect(&settings)
            .await
            .context("Failed to set up the database pool")?;
        let listener = TcpListener::bind(&settings.worker.metrics_addr)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.worker.metrics_addr))?;
        let metrics_addr = listener.local_addr()?;
        let rules = std::sync::Arc::new(
            settings
                .policy
                .rules()
                .context("Failed to load the contact policy's rule table")?,
        );
        let sender = Sender::from_settings(db.clone(), rules.clone(), &settings.sms)
            .context("Failed to set up the SMS provider")?;
        if sender.is_none() && settings.sms.enabled {
            warn!("SMS__BASE_URL is not set: message steps wait until a worker has a provider");
        }
        let backlog = IntakeBacklog::new();
        let dispatcher =
            crate::deliveries::Dispatcher::from_settings(db.clone(), &settings.webhooks)
                .map(|d| d.yielding_to(backlog.clone()));
        Ok(Self {
            processor: Processor::with_rules(db, rules),
            sender,
            dispatcher,
            backlog,
            outcomes: Announcer::new(&settings),
            settings,
            metrics,
            listener,
            metrics_addr,
        })
    }

    /// Where `/healthz` and `/metrics` answer.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Consumes until `shutdown` completes, then stops consuming, finishes and settles the
    /// leads already received, and closes the connection.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                stop.cancel();
            });
        }
        let http_stop = CancellationToken::new();
        let http = tokio::spawn(ops_server::serve(
            self.listener,
            self.metrics,
            http_stop.clone(),
        ));
        let heartbeat = tokio::spawn(crate::heartbeat::run(
            self.settings.clone(),
            http_stop.clone(),
        ));
        let sender = self.sender.map(|s| tokio::spawn(s.run(stop.clone())));
        let dispatcher = self.dispatcher.map(|d| tokio::spawn(d.run(stop.clone())));
        let ctx = Arc::new(ConsumerContext {
            settings: self.settings,
            processor: self.processor,
            outcomes: self.outcomes,
            backlog: self.backlog,
            running: AtomicUsize::new(0),
        });

        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        while !stop.is_cancelled() {
            let opened = tokio::select! {
                _ = stop.cancelled() => break,
                s = Session::open(&ctx.settings) => s,
            };
            let session = match opened {
                Ok(s) => s,
                Err(e) => {
                    warn!(
                        error = format!("{e:#}"),
                        retry_in_ms = backoff.peek_ms(),
                        "Broker unavailable"
                    );
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff.delay()) => {}
                    }
                    continue;
                }
            };
            backoff.reset();
            metrics::counter!(ops_server::BROKER_CONNECTS).increment(1);
            info!(
                queue = %session.topology.intake_queue(),
                concurrency = ctx.settings.worker.concurrency,
                prefetch = ctx.settings.worker.prefetch,
                batch_size = ctx.settings.worker.batch_size,
                "Consuming"
            );
            ops_server::set_consuming(true);
            let end = run_session(&ctx, session, &stop).await;
            ops_server::set_consuming(false);
            match end {
                SessionEnd::Stopped => break,
                SessionEnd::Lost => warn!("Broker connection lost; reconnecting"),
            }
        }
        if let Some(sender) = sender {
            let _ = sender.await;
        }
        if let Some(dispatcher) = dispatcher {
            let _ = dispatcher.await;
        }
        http_stop.cancel();
        let _ = http.await;
        let _ = heartbeat.await;
        info!("Worker stopped");
        Ok(())
    }
}

pub use shared::runtime::shutdown_signal;

async fn run_session(
    ctx: &Arc<ConsumerContext>,
    session: Session,
    stop: &CancellationToken,
) -> SessionEnd {
    let session = Arc::new(session);
    let tag = format!("worker-{}", Uuid::new_v4().simple());
    let mut consumer = match session.consume(&tag).await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = format!("{e:#}"), "Failed to consume");
            session.close().await;
            return SessionEnd::Lost;
        }
    };
    let records = {
        let (ctx, session) = (ctx.clone(), session.clone());
        let tag = format!("dead-records-{}", Uuid::new_v4().simple());
        tokio::spawn(async move {
            crate::dead_records::run(&session, &ctx.processor, &ctx.outcomes, &tag).await;
        })
    };
    let concurrency = ctx.settings.worker.concurrency;
    let (tx, rx) = mpsc::channel::<Received>(usize::from(ctx.settings.worker.prefetch));
    let rx = Arc::new(Mutex::new(rx));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        tasks.spawn(consume_batches(ctx.clone(), session.clone(), rx.clone()));
    }

    let end = forward(&session, &mut consumer, &tag, &tx, stop).await;
    drop(tx);
    drop(consumer);

    // A lost connection can leave a lead's last step (its ack, a retry's publish) waiting on
    // the dead channel. Its message is unacknowledged, so the broker delivers it again, and
    // the intake id makes that repeat change nothing: a short wait is enough.
    let grace = match end {
        SessionEnd::Stopped => ctx.settings.worker.shutdown_grace,
        SessionEnd::Lost => ctx.settings.worker.shutdown_grace.min(LOST_SESSION_GRACE),
    };
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        warn!(
            grace_ms = grace.as_millis() as u64,
            "Leads still running after the grace period; their messages return to the queue"
        );
        tasks.abort_all();
    }
    // Settled leads still waiting behind one that did not finish are acknowledged now.
    session.flush_acks().await;
    // A copy being recorded now is simply delivered again to the next session.
    records.abort();
    // Closing waits for the broker's answer, which a reset connection never sends.
    let _ = tokio::time::timeout(LOST_SESSION_GRACE, session.close()).await;
    end
}

/// How long a session whose connection was lost waits for its leads and its close.
const LOST_SESSION_GRACE: Duration = Duration::from_secs(2);

/// Hands the session's deliveries to the consumer tasks until the consumer ends; on
/// `stop`, cancels consumption and waits (briefly) for the broker to end the stream.
async fn forward(
    session: &Session,
    consumer: &mut lapin::Consumer,
    tag: &str,
    tx: &mpsc::Sender<Received>,
    stop: &CancellationToken,
) -> SessionEnd {
    let mut cancelled = false;
    loop {
        tokio::select! {
            _ = stop.cancelled(), if !cancelled => {
                cancelled = true;
                // No new deliveries; those already received are finished by the consumer tasks.
                if let Err(e) = session
                    .consume
                    .basic_cancel(tag.into(), BasicCancelOptions::default())
                    .await
                {
                    warn!(error = %e, "Failed to cancel the consumer");
                    break SessionEnd::Stopped;
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(5)), if cancelled => {
                // The broker confirmed the cancel long ago; stop waiting for the stream.
                break SessionEnd::Stopped;
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    ops_server::taken(*delivery.properties.timestamp());
                    session.received(&delivery).await;
                    let received = Received { delivery, at: Instant::now() };
                    if tx.send(received).await.is_err() {
                        break SessionEnd::Lost;
                    }
                }
                Some(Err(e)) => {
                    if !cancelled {
                        warn!(error = %e, "Consumer failed");
                    }
                    break if cancelled { SessionEnd::Stopped } else { SessionEnd::Lost };
                }
                None => break if cancelled { SessionEnd::Stopped } else { SessionEnd::Lost },
            }
        }
    }
}

/// A delivery and when it reached this process.
struct Received {
    delivery: Delivery,
    at: Instant,
}

/// One consumer task: takes what has arrived (up to a batch), processes it as one batch,
/// settles each delivery; until the session's deliveries end.
async fn consume_batches(
    ctx: Arc<ConsumerContext>,
    session: Arc<Session>,
    rx: Arc<Mutex<mpsc::Receiver<Received>>>,
) {
    let max = ctx.settings.worker.batch_size;
    let linger = ctx.settings.worker.batch_linger;
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            // Everything waiting, up to a batch: a lead that arrives alone is processed at
            // once on its own, and a steady stream forms fewer, larger transactions instead
            // of being spread over the idle consumers (each transaction costs the database
            // the same statements whatever its size; figures in docs/performance.md).
            let mut batch = Vec::with_capacity(max);
            batch.push(first);
            take_waiting(&mut rx, &mut batch, max);
            // While other transactions of this process run, the stream is steady: wait a
            // little for more leads to join rather than start a transaction for a few.
            if batch.len() < max && !linger.is_zero() && ctx.running.load(Ordering::Relaxed) > 0 {
                let until = tokio::time::Instant::now() + linger;
                while batch.len() < max {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(r)) => {
                            batch.push(r);
                            take_waiting(&mut rx, &mut batch, max);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            if !rx.is_empty() {
                // Leads wait for a free consumer: the intake is behind.
                ctx.backlog.seen();
            }
            batch
        };
        let _running = Running::count(&ctx.running);
        handle_batch(&ctx, &session, batch).await;
    }
}

/// One batch in [`ConsumerContext::running`] until dropped (also when its task is aborted).
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn count(running: &'a AtomicUsize) -> Self {
        running.fetch_add(1, Ordering::Relaxed);
        Self(running)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Moves what is waiting in `rx` into `batch`, up to `max` leads.
fn take_waiting(rx: &mut mpsc::Receiver<Received>, batch: &mut Vec<Received>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

async fn handle_batch(ctx: &ConsumerContext, session: &Session, batch: Vec<Received>) {
    let mut intakes: Vec<Attempt> = Vec::with_capacity(batch.len());
    let mut received: Vec<Received> = Vec::with_capacity(batch.len());
    let mut announcements = Vec::new();
    for r in batch {
        match decode::decode(&r.delivery.properties, &r.delivery.data) {
            Ok(intake) => {
                intakes.push(intake);
                received.push(r);
            }
            Err(poison) => {
                let previous = decode::attempts(&r.delivery.properties);
                let settlement = settle::settle(Fate::Poison(&poison.reason), previous, 0);
                let subject = Subject::Poison(poison.record.map(|b| *b));
                let carried =
                    settle::carry_out(&ctx.processor, session, &r.delivery, subject, settlement)
                        .await;
                if let Carried::DeadLettered(a) = carried {
                    announcements.extend(a);
                }
                settled(&r);
            }
        }
    }
    if !intakes.is_empty() {
        metrics::histogram!(ops_server::BATCH_SIZE).record(intakes.len() as f64);
        let results = ctx
            .processor
            .try_process_batch(&intakes)
            .instrument(info_span!("batch", leads = intakes.len()))
            .await;
        settle_processed(
            ctx,
            session,
            &received,
            &intakes,
            results,
            &mut announcements,
        )
        .await;
    }
    ctx.outcomes.announce(announcements);
}

/// Settles each processed delivery as [`settle::settle`] decides; the committed ones are
/// acknowledged all at once, and the intakes waiting for a retry recorded in one statement.
async fn settle_processed(
    ctx: &ConsumerContext,
    session: &Session,
    received: &[Received],
    intakes: &[Attempt],
    results: Vec<Result<Outcome, ProcessError>>,
    announcements: &mut Vec<Announcement>,
) {
    let retry_steps = session.topology.retry_delays_ms().len();
    let mut committed = Vec::with_capacity(received.len());
    let mut retrying = Vec::new();
    for ((r, intake), result) in received.iter().zip(intakes).zip(results) {
        let fate = match &result {
            Ok(_) => Fate::Done,
            Err(ProcessError::Transient(e)) => Fate::Transient(e),
            Err(ProcessError::Permanent(e)) => Fate::Permanent(e),
        };
        let settlement = settle::settle(fate, intake.previous_attempts, retry_steps);
        let span = lead_span(r, intake);
        if let (Settlement::Ack, Ok(outcome)) = (&settlement, result) {
            span.in_scope(|| {
                ops_server::committed(intake.message.received_at);
                announcements.push(finished(outcome));
            });
            committed.push(r);
            continue;
        }
        let subject = Subject::Intake(intake);
        let carried = settle::carry_out(&ctx.processor, session, &r.delivery, subject, settlement)
            .instrument(span)
            .await;
        match carried {
            Carried::Retrying(record) => retrying.push(record),
            Carried::DeadLettered(a) => announcements.extend(a),
            Carried::Acked | Carried::Returned => {}
        }
        settled(r);
    }
    // Committed: acknowledge them all at once (one frame when no earlier delivery is still
    // in its transaction).
    let deliveries: Vec<&Delivery> = committed.iter().map(|r| &r.delivery).collect();
    session.ack(&deliveries).await;
    for r in committed {
        settled(r);
    }
    record_retries(ctx, &retrying).await;
}

/// The span of one lead's settlement: its intake, account and attempt, and the trace the
/// receiver started for it (the `traceparent` it published with the message), so a lead's
/// log lines on both sides share a trace id.
fn lead_span(r: &Received, intake: &Attempt) -> tracing::Span {
    let trace_id = decode::text_header(&r.delivery.properties, headers::TRACEPARENT)
        .and_then(|t| t.split('-').nth(1).map(str::to_owned))
        .unwrap_or_default();
    info_span!(
        "lead",
        intake_id = %intake.message.intake_id,
        account_id = intake.message.account_id,
        attempt = intake.number(),
        trace_id = %trace_id,
    )
}

fn settled(r: &Received) {
    ops_server::settled(r.at);
}

fn finished(o: Outcome) -> Announcement {
    let label = if o.already_done {
        "already_done"
    } else {
        o.status.as_str()
    };
    metrics::counter!(ops_server::LEADS, "outcome" => label).increment(1);
    info!(
        intake_id = %o.intake_id,
        status = o.status.as_str(),
        contact_id = o.contact_id,
        already_done = o.already_done,
        warnings = o.warnings.len(),
        "Lead processed"
    );
    Announcement {
        intake_id: o.intake_id,
        status: o.status,
        contact_id: o.contact_id,
    }
}

/// How long recording retries may take: during a database outage it fails, and the batch
/// must not wait for the pool's timeout.
const RECORD_RETRIES_TIMEOUT: Duration = Duration::from_secs(2);

/// Marks the intakes waiting for a retry as `processing` with their attempts and last error
/// (best effort: the retry itself is already safe in its delay queue).
async fn record_retries(ctx: &ConsumerContext, records: &[RetryRecord]) {
    if records.is_empty() {
        return;
    }
    match tokio::time::timeout(
        RECORD_RETRIES_TIMEOUT,
        ctx.processor.record_retries(records),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, leads = records.len(), "Failed to record retries"),
        Err(_) => warn!(leads = records.len(), "Timed out recording retries"),
    }
}
