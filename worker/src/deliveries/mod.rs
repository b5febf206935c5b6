//! Outbound events (§11): the worker's delivery loop.
//!
//! Events and their deliveries are written by the transactions of the work they report
//! (see [`shared::events`]). This loop claims due deliveries endpoint by endpoint, each
//! endpoint at most `WEBHOOKS__ENDPOINT_CONCURRENCY` at a time, so a slow or failing
//! endpoint holds only its own slots; signs each attempt per the Standard Webhooks
//! specification and sends the event's stored bytes; and records every attempt, in batches.
//!
//! A claim moves the delivery a lease ahead instead of holding a transaction open over the
//! request: a dispatcher that dies mid-request leaves its deliveries due again when the
//! lease ends, so none is lost (a receiver may see one twice, with the same `webhook-id`).
//! The retry schedule is in the table, so it survives restarts.
//!
//! Deliveries yield to the intake: while this worker's consumers leave leads waiting (a
//! campaign's burst), the loop starts nothing for the first `WEBHOOKS__BACKLOG_HOLD` of the
//! backlog and then at most `WEBHOOKS__BACKLOG_RATE` attempts per second, so that the leads
//! get the machine; the events wait (their lag grows) and go out at full speed once the
//! backlog is gone. Retries are scheduled in the table, so nothing is lost while they wait.
//!
//! A batch of leads writes its events as one outbox row (see [`shared::events::enqueue`]);
//! a task beside the loop turns those rows into events and deliveries as they commit; while
//! the intake has a backlog, none during the hold, then one row at a time and no faster
//! than the throttle lets their deliveries start (a tenth of a second to a second apart),
//! so that what the events cost the database waits with them.
//!
//! Once a minute, outside a backlog, the loop removes the events older than
//! `WEBHOOKS__RETENTION` with their deliveries and attempts (event ids are UUIDv7, so the
//! oldest are a range of the primary key).

mod attempt;
pub mod guard;

pub use attempt::{Answer, Next, next};

use chrono::{DateTime, Utc};
use http::{Method, Request, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use shared::config::WebhookSettings;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::backlog::IntakeBacklog;

const CLAIM: &str = include_str!("sql/claim.sql");
const SETTLE: &str = include_str!("sql/settle.sql");
const NEXT_DUE: &str = include_str!("sql/next_due.sql");
const BACKLOG: &str = include_str!("sql/backlog.sql");
const EXPIRE: &str = include_str!("sql/expire.sql");

/// The statements of the delivery loop, by name, for the plan checks of the tests.
pub const STATEMENTS: [(&str, &str); 7] = [
    ("claim", CLAIM),
    ("settle", SETTLE),
    ("next_delivery_due", NEXT_DUE),
    ("backlog", BACKLOG),
    ("expire", EXPIRE),
    ("awaiting", shared::events::AWAITING),
    ("expand", shared::events::EXPAND),
];

pub const DELIVERED: &str = "worker_events_delivered_total";
pub const FAILED: &str = "worker_event_attempts_failed_total";
pub const GAVE_UP: &str = "worker_event_deliveries_failed_total";
pub const PENDING: &str = "worker_event_deliveries_pending";
pub const OLDEST_PENDING: &str = "worker_event_oldest_pending_seconds";
pub const DELIVERY_LAG: &str = "worker_event_delivery_seconds";
pub const ATTEMPT_DURATION: &str = "worker_event_attempt_duration_seconds";
pub const YIELDING: &str = "worker_event_deliveries_yielding";
pub const EXPIRED: &str = "worker_events_expired_total";
pub const AWAITING: &str = "worker_events_awaiting_fan_out";
pub const OLDEST_AWAITING: &str = "worker_events_awaiting_fan_out_oldest_seconds";

/// Most deliveries one claim takes.
const CLAIM_LIMIT: usize = 500;
/// Most attempts one settle statement records.
const SETTLE_BATCH: usize = 500;
/// How often the backlog gauges are refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);
/// Deliveries claimed for one endpoint at most, as a multiple of its concurrency: a fast
/// endpoint's next requests are at hand when one ends, without a claim in between.
const CLAIM_AHEAD: usize = 4;
/// How long a claim holds a delivery: enough for the rounds of requests ahead of it
/// ([`CLAIM_AHEAD`]) and one more, and this margin for its record; after it the delivery is
/// due again.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Describes the delivery loop's metrics.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(DELIVERED, "Event deliveries an endpoint answered with 2xx.");
    describe_counter!(
        FAILED,
        "Delivery attempts that failed, by class: 3xx, 4xx, 5xx, timeout, connect, refused."
    );
    describe_counter!(
        GAVE_UP,
        "Deliveries that failed for good (schedule exhausted, or 410 Gone)."
    );
    describe_gauge!(
        PENDING,
        "Deliveries waiting for an attempt, per enabled endpoint, as the loop last counted."
    );
    describe_gauge!(
        OLDEST_PENDING,
        Unit::Seconds,
        "Age of the oldest pending delivery per enabled endpoint (0: none)."
    );
    describe_histogram!(
        DELIVERY_LAG,
        Unit::Seconds,
        "From the commit that wrote an event to its delivery's 2xx."
    );
    describe_gauge!(
        YIELDING,
        "1 while the delivery loop yields to a backlog of leads (WEBHOOKS__BACKLOG_RATE), else 0."
    );
    describe_histogram!(
        ATTEMPT_DURATION,
        Unit::Seconds,
        "Time of one delivery attempt."
    );
    metrics::counter!(DELIVERED).increment(0);
    metrics::counter!(GAVE_UP).increment(0);
    describe_counter!(
        EXPIRED,
        "Events removed, with their deliveries and attempts, after WEBHOOKS__RETENTION."
    );
    describe_gauge!(
        AWAITING,
        "Events in the outbox's rows, not yet turned into events and deliveries."
    );
    describe_gauge!(
        OLDEST_AWAITING,
        Unit::Seconds,
        "Age of the oldest outbox row not yet turned into events (0: none)."
    );
    metrics::gauge!(YIELDING).set(0.0);
    metrics::gauge!(AWAITING).set(0.0);
    metrics::gauge!(OLDEST_AWAITING).set(0.0);
    metrics::counter!(EXPIRED).increment(0);
}

/// Most outbox rows one expansion statement takes (a row holds a batch of leads' events).
const EXPAND_BATCH: i64 = 10;
/// While the intake has a backlog, the outbox's rows are turned into events one at a time,
/// at least a tick apart ...
const YIELD_TICK: Duration = Duration::from_millis(100);
/// ... and at most this long apart, so that the end of the backlog is seen soon.
const YIELD_PAUSE_MAX: Duration = Duration::from_secs(1);

/// While yielding, the pause after turning a row that scheduled `deliveries`: about as long
/// as the throttle (`rate` attempts a second) takes to start them, within a tick and
/// [`YIELD_PAUSE_MAX`]. Turning rows faster only piles up deliveries that wait for the
/// backlog to end, at the database's cost while the leads need it.
fn yield_pause(deliveries: u64, rate: u32) -> Duration {
    if rate == 0 {
        return YIELD_TICK;
    }
    Duration::from_secs_f64(deliveries as f64 / f64::from(rate)).clamp(YIELD_TICK, YIELD_PAUSE_MAX)
}

/// How often a loop removes events older than the retention.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Most events one removal statement takes.
const EXPIRE_BATCH: i64 = 2_000;
/// Most removal statements one round runs (the rest waits for the next round).
const EXPIRE_ROUNDS: usize = 10;

/// The smallest UUIDv7 of `at`'s millisecond: every event id written before it is less.
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = u128::try_from(at.timestamp_millis().max(0)).unwrap_or(0) & ((1 << 48) - 1);
    Uuid::from_u128((ms << 80) | (0x7 << 76) | (0b10 << 62))
}

/// How long after the last sign of a backlog of leads the loop still yields to it.
const YIELD_WINDOW: Duration = crate::backlog::LAPSE;

/// What the loop does for this worker's intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Yield {
    /// No leads waiting: deliver at full speed.
    No,
    /// A backlog younger than `WEBHOOKS__BACKLOG_HOLD` (or any, with `WEBHOOKS__BACKLOG_RATE`
    /// at 0): no attempt starts and the outbox waits.
    Hold,
    /// A backlog past the hold: `WEBHOOKS__BACKLOG_RATE` attempts a second.
    Trickle,
}

/// The attempts the loop may start while it yields to the intake: a token bucket of
/// `rate` per second holding a tenth of a second's worth (at least one).
#[derive(Debug)]
struct Throttle {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Throttle {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: 0.0,
            at: Instant::now(),
        }
    }

    fn burst(&self) -> f64 {
        (self.rate / 10.0).max(1.0)
    }

    /// Attempts that may start now: unbounded unless `yielding`; then a full bucket at a
    /// time (one claim per tenth of a second, not one per commit that wakes the loop).
    fn allowance(&mut self, yielding: bool, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        if !yielding {
            self.tokens = self.burst();
            return usize::MAX;
        }
        self.tokens = (self.tokens + self.rate * elapsed).min(self.burst());
        if self.rate > 0.0 && self.tokens >= self.burst() {
            self.tokens.floor() as usize
        } else {
            0
        }
    }

    fn spend(&mut self, n: usize) {
        self.tokens = (self.tokens - n as f64).max(0.0);
    }

    /// Until the bucket is full again (at most [`YIELD_WINDOW`]: the backlog may be gone).
    fn refill(&self) -> Duration {
        if self.rate <= 0.0 {
            return YIELD_WINDOW;
        }
        Duration::from_secs_f64(((self.burst() - self.tokens) / self.rate).max(0.005))
            .min(YIELD_WINDOW)
    }
}

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector<guard::GuardedResolver>>;

/// A claimed delivery with what sending it needs.
#[derive(Debug, Clone)]
struct Claimed {
    id: i64,
    event_id: Uuid,
    endpoint_id: i64,
    attempts: i32,
    url: String,
    keys: Vec<Vec<u8>>,
    body: String,
    event_created_at: DateTime<Utc>,
}

impl Claimed {
    fn from_row(row: &sea_orm::QueryResult, now: DateTime<Utc>) -> Result<Self, DbErr> {
        let secret: String = row.try_get("", "secret")?;
        let previous: Option<String> = row.try_get("", "previous_secret")?;
        let until: Option<DateTime<Utc>> = row.try_get("", "previous_secret_until")?;
        let mut keys = Vec::new();
        keys.extend(shared::events::secret_key(&secret).ok());
        if let (Some(p), Some(until)) = (previous, until)
            && until > now
        {
            keys.extend(shared::events::secret_key(&p).ok());
        }
        Ok(Self {
            id: row.try_get("", "id")?,
            event_id: row.try_get("", "event_id")?,
            endpoint_id: row.try_get("", "endpoint_id")?,
            attempts: row.try_get("", "attempts")?,
            url: row.try_get("", "url")?,
            keys,
            body: row.try_get("", "body")?,
            event_created_at: row.try_get("", "event_created_at")?,
        })
    }
}

/// One attempt's record for the settle statement.
#[derive(Debug, Clone, serde::Serialize)]
struct Settled {
    id: i64,
    endpoint_id: i64,
    event_id: Uuid,
    status: &'static str,
    next_attempt_at: Option<DateTime<Utc>>,
    status_code: Option<u16>,
    latency_ms: i64,
    response_body: Option<String>,
    error: Option<String>,
    attempted_at: DateTime<Utc>,
    gone: bool,
}

/// The delivery loop of one worker.
#[derive(Clone)]
pub struct Dispatcher {
    db: DatabaseConnection,
    client: Client<HttpsConnector, Full<bytes::Bytes>>,
    settings: WebhookSettings,
    /// Deliveries claimed and not yet settled, per endpoint.
    in_flight: Arc<Mutex<HashMap<i64, usize>>>,
    /// Per endpoint, the permits of its requests in flight.
    gates: Arc<Mutex<HashMap<i64, Arc<tokio::sync::Semaphore>>>>,
    /// Signalled when an attempt ends, so a loop waiting for free slots looks again.
    freed: Arc<Notify>,
    /// This worker's intake, which the loop yields to while it has leads waiting.
    intake: Option<IntakeBacklog>,
}

impl Dispatcher {
    /// A delivery loop for `settings`, or `None` when it is off.
    pub fn from_settings(db: DatabaseConnection, settings: &WebhookSettings) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        Some(Self::new(db, settings))
    }

    pub fn new(db: DatabaseConnection, settings: &WebhookSettings) -> Self {
        let mut http = HttpConnector::new_with_resolver(guard::GuardedResolver {
            allow_private: settings.allow_private,
        });
        http.set_connect_timeout(Some(settings.request_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            db,
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(settings.endpoint_concurrency)
                .build(tls),
            settings: settings.clone(),
            in_flight: Arc::default(),
            gates: Arc::default(),
            freed: Arc::default(),
            intake: None,
        }
    }

    /// Yields to `intake`'s backlogs (see the module's doc).
    pub fn yielding_to(mut self, intake: IntakeBacklog) -> Self {
        self.intake = Some(intake);
        self
    }

    /// What this worker's intake asks of the loop now.
    fn yield_state(&self) -> Yield {
        match self.intake.as_ref().and_then(IntakeBacklog::lasted) {
            None => Yield::No,
            Some(lasted)
                if lasted < self.settings.backlog_hold || self.settings.backlog_rate == 0 =>
            {
                Yield::Hold
            }
            Some(_) => Yield::Trickle,
        }
    }

    /// Delivers due events until `stop`; attempts under way finish and are recorded first.
    pub async fn run(self, stop: CancellationToken) {
        info!(
            concurrency = self.settings.concurrency,
            endpoint_concurrency = self.settings.endpoint_concurrency,
            backlog_rate = self.settings.backlog_rate,
            backlog_hold = ?self.settings.backlog_hold,
            "Delivering events"
        );
        let mut throttle = Throttle::new(self.settings.backlog_rate);
        let mut yielding = false;
        let (tx, rx) = mpsc::channel::<Settled>(SETTLE_BATCH * 4);
        let recorder = tokio::spawn(record(self.db.clone(), rx));
        // The outbox's rows become deliveries in a task of their own, which wakes this loop
        // after each commit that wrote events (and each expansion), so that neither waits
        // for the other.
        let due = Arc::new(Notify::new());
        let expander = tokio::spawn(self.clone().expand_loop(stop.clone(), due.clone()));
        let mut backlog_at = Instant::now() - BACKLOG_EVERY;
        let mut expired_at = Instant::now() - EXPIRE_EVERY;
        let mut attempts = tokio::task::JoinSet::new();
        while !stop.is_cancelled() {
            while attempts.try_join_next().is_some() {}
            let state = self.yield_state();
            let now_yielding = state != Yield::No;
            if now_yielding != yielding {
                yielding = now_yielding;
                metrics::gauge!(YIELDING).set(if yielding { 1.0 } else { 0.0 });
                debug!(yielding, "Event deliveries and the intake's backlog");
            }
            let allowance = throttle.allowance(yielding, Instant::now());
            // During the hold the bucket fills, but nothing starts.
            let allowance = if state == Yield::Hold { 0 } else { allowance };
            // `None`: no free slot or allowance, so the claim did not look.
            let claimed = match self.claim(Utc::now(), allowance).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "Claiming event deliveries failed; trying again");
                    Some(Vec::new())
                }
            };
            let looked = claimed.is_some();
            let claimed = claimed.unwrap_or_default();
            let n = claimed.len();
            throttle.spend(n);
            for c in claimed {
                let this = self.clone();
                let tx = tx.clone();
                let stop = stop.clone();
                attempts.spawn(async move {
                    let endpoint = c.endpoint_id;
                    match this.attempt(c, &stop).await {
                        Ok(settled) => {
                            let _ = tx.send(settled).await;
                        }
                        Err(unsent) => this.unclaim(unsent).await,
                    }
                    this.release(endpoint);
                });
            }
            if backlog_at.elapsed() >= BACKLOG_EVERY {
                backlog_at = Instant::now();
                self.backlog().await;
            }
            if !yielding && expired_at.elapsed() >= EXPIRE_EVERY {
                expired_at = Instant::now();
                match self.expire(Utc::now()).await {
                    Ok(0) => {}
                    Ok(n) => info!(events = n, "Removed events past their retention"),
                    Err(e) => warn!(error = %e, "Removing old events failed; trying again later"),
                }
            }
            if n >= CLAIM_LIMIT {
                continue;
            }
            let pause = if looked && n == 0 {
                // Nothing is due: look again when something will be, or when new deliveries
                // are scheduled (not every few milliseconds while the intake has a backlog,
                // which cost a claim each time). A delivery due but not claimed is for an
                // endpoint at its bound: a freed slot wakes the loop for it.
                self.pause().await.max(Duration::from_millis(20))
            } else if state == Yield::Hold {
                // Nothing starts until the hold is over or the backlog is gone.
                YIELD_WINDOW
            } else if yielding {
                // More may be due, but the leads come first: look again when the bucket
                // is full (or the backlog may be gone).
                throttle.refill()
            } else if n > 0 {
                // More may be due at once for endpoints that were at their bound.
                Duration::from_millis(20)
            } else {
                self.pause().await
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
                _ = self.freed.notified(), if !yielding => {}
                _ = due.notified() => {}
            }
        }
        let _ = expander.await;
        while attempts.join_next().await.is_some() {}
        drop(tx);
        let _ = recorder.await;
        info!("Event deliveries stopped");
    }

    /// A listener on [`shared::events::CHANNEL`]; without one the loop wakes on its timer.
    async fn listen(&self) -> Option<sea_orm::sqlx::postgres::PgListener> {
        crate::db::listener(&self.db, shared::events::CHANNEL, "new events").await
    }

    /// Turns the outbox's rows into events and deliveries until `stop`, waking `due` (the
    /// claiming loop) after each look that scheduled deliveries. It looks when a commit
    /// wrote events (the outbox statements notify), every poll interval, and again at once
    /// while rows are left; while the intake has a backlog, none during the hold
    /// ([`Yield::Hold`]), then one row at a time paced by [`yield_pause`].
    async fn expand_loop(self, stop: CancellationToken, due: Arc<Notify>) {
        let mut wake = self.listen().await;
        while !stop.is_cancelled() {
            let state = self.yield_state();
            let yielding = state != Yield::No;
            let limit = if yielding { 1 } else { EXPAND_BATCH };
            let (more, scheduled) = if state == Yield::Hold {
                (false, 0)
            } else {
                match shared::events::expand(&self.db, limit).await {
                    Ok(e) => (e.batches >= limit as u64, e.deliveries),
                    Err(e) => {
                        warn!(error = %e, "Turning the outbox into events failed; trying again");
                        (false, 0)
                    }
                }
            };
            // The claiming loop looks at once only when there is something new to claim; it
            // finds retries and other workers' deliveries on its own timer. (Without a
            // subscribed endpoint, every commit would otherwise cost a claim.)
            if scheduled > 0 {
                due.notify_one();
            }
            let pause = match (more, yielding) {
                (true, false) => continue,
                (_, true) => yield_pause(scheduled, self.settings.backlog_rate),
                (false, false) => self.settings.poll_interval,
            };
            let until = tokio::time::Instant::now() + pause;
            loop {
                let notified = async {
                    match wake.as_mut() {
                        Some(l) => l.recv().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    ok = notified => {
                        if !ok {
                            wake = self.listen().await;
                        } else if let Some(l) = wake.as_mut() {
                            // One look serves every commit that notified so far.
                            while l.next_buffered().is_some() {}
                        }
                        // While yielding, the notifications are still read (the server
                        // would otherwise hold them for this session), but the next look
                        // waits for its tick.
                        if !yielding {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Claims what the free slots allow, at most `allowance`; `None` when that is nothing
    /// (no look was made).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        allowance: usize,
    ) -> Result<Option<Vec<Claimed>>, DbErr> {
        let (busy_ids, busy_n, total): (Vec<i64>, Vec<i32>, usize) = {
            let map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let total = map.values().sum();
            let (ids, ns) = map
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(id, n)| (*id, i32::try_from(*n).unwrap_or(i32::MAX)))
                .unzip();
            (ids, ns, total)
        };
        let free = self
            .settings
            .concurrency
            .saturating_sub(total)
            .min(CLAIM_LIMIT)
            .min(allowance);
        if free == 0 {
            return Ok(None);
        }
        let lease = self.settings.request_timeout * (CLAIM_AHEAD as u32 + 1) + LEASE_MARGIN;
        let txn = self.db.begin().await?;
        // One plan per connection, as for the records of attempts: the claim reaches every
        // row by key whatever the statistics (`worker/tests/plans.rs` checks its plan made
        // while the tables were small), and planning it afresh at each call cost about
        // 0.3 ms, a third of its time.
        txn.execute_unprepared(crate::db::GENERIC_PLANS).await?;
        let rows = txn
            .query_all_raw(stmt(
                CLAIM,
                vec![
                    now.into(),
                    i32::try_from(self.settings.endpoint_concurrency * CLAIM_AHEAD)
                        .unwrap_or(i32::MAX)
                        .into(),
                    (free as i64).into(),
                    busy_ids.into(),
                    busy_n.into(),
                    i32::try_from(lease.as_secs()).unwrap_or(i32::MAX).into(),
                ],
            ))
            .await?;
        txn.commit().await?;
        let claimed = rows
            .iter()
            .map(|r| Claimed::from_row(r, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for c in &claimed {
            *map.entry(c.endpoint_id).or_default() += 1;
        }
        Ok(Some(claimed))
    }

    fn release(&self, endpoint: i64) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&endpoint) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&endpoint);
            }
        }
        drop(map);
        self.freed.notify_one();
    }

    /// Until the next delivery is due, at most the poll interval.
    async fn pause(&self) -> Duration {
        let poll = self.settings.poll_interval;
        let next = self.db.query_one_raw(stmt(NEXT_DUE, vec![])).await;
        match next {
            Ok(Some(row)) => match row.try_get::<Option<DateTime<Utc>>>("", "due") {
                Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or_default().min(poll),
                _ => poll,
            },
            _ => poll,
        }
    }

    /// Removes events written more than `WEBHOOKS__RETENTION` before `now`, with their
    /// deliveries and attempts, at most [`EXPIRE_ROUNDS`] × [`EXPIRE_BATCH`] of them;
    /// returns how many went.
    pub async fn expire(&self, now: DateTime<Utc>) -> Result<u64, DbErr> {
        let Ok(retention) = chrono::Duration::from_std(self.settings.retention) else {
            return Ok(0);
        };
        let cutoff = v7_floor(now - retention);
        let mut removed = 0;
        for _ in 0..EXPIRE_ROUNDS {
            let row = self
                .db
                .query_one_raw(stmt(EXPIRE, vec![cutoff.into(), EXPIRE_BATCH.into()]))
                .await?;
            let n = row
                .and_then(|r| r.try_get::<i64>("", "removed").ok())
                .unwrap_or(0)
                .max(0) as u64;
            removed += n;
            metrics::counter!(EXPIRED).increment(n);
            if n < EXPIRE_BATCH as u64 {
                break;
            }
        }
        Ok(removed)
    }

    /// Refreshes the pending and oldest-pending gauges of every enabled endpoint, and those
    /// of the outbox.
    async fn backlog(&self) {
        if let Ok(Some(row)) = self
            .db
            .query_one_raw(stmt(shared::events::AWAITING, vec![]))
            .await
            && let (Ok(events), Ok(oldest)) = (
                row.try_get::<i64>("", "events"),
                row.try_get::<Option<DateTime<Utc>>>("", "oldest"),
            )
        {
            metrics::gauge!(AWAITING).set(events as f64);
            let age = oldest
                .and_then(|o| (Utc::now() - o).to_std().ok())
                .unwrap_or_default();
            metrics::gauge!(OLDEST_AWAITING).set(age.as_secs_f64());
        }
        let Ok(rows) = self.db.query_all_raw(stmt(BACKLOG, vec![])).await else {
            return;
        };
        let now = Utc::now();
        for row in rows {
            let (Ok(id), Ok(pending), Ok(oldest)) = (
                row.try_get::<i64>("", "endpoint_id"),
                row.try_get::<i64>("", "pending"),
                row.try_get::<Option<DateTime<Utc>>>("", "oldest"),
            ) else {
                continue;
            };
            let endpoint = id.to_string();
            metrics::gauge!(PENDING, "endpoint" => endpoint.clone()).set(pending as f64);
            let age = oldest
                .and_then(|o| (now - o).to_std().ok())
                .unwrap_or_default();
            metrics::gauge!(OLDEST_PENDING, "endpoint" => endpoint).set(age.as_secs_f64());
        }
    }

    /// The gate of `endpoint`: at most `WEBHOOKS__ENDPOINT_CONCURRENCY` requests at once.
    fn gate(&self, endpoint: i64) -> Arc<tokio::sync::Semaphore> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(endpoint)
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.settings.endpoint_concurrency,
                ))
            })
            .clone()
    }

    /// Hands a claimed delivery that was never sent back at once (the loop is stopping).
    async fn unclaim(&self, id: i64) {
        let back = self
            .db
            .execute_raw(stmt(
                "UPDATE event_deliveries SET next_attempt_at = now() \
                 WHERE id = $1 AND status = 'pending'",
                vec![id.into()],
            ))
            .await;
        if let Err(e) = back {
            debug!(error = %e, delivery = id, "Unsent delivery left to its lease");
        }
    }

    /// One signed attempt, when its endpoint has a free slot, and what follows from its
    /// answer; `Err(id)` when `stop` came first and nothing was sent.
    async fn attempt(&self, c: Claimed, stop: &CancellationToken) -> Result<Settled, i64> {
        let gate = self.gate(c.endpoint_id);
        let _slot = tokio::select! {
            slot = gate.acquire() => slot,
            _ = stop.cancelled() => return Err(c.id),
        };
        let started = Instant::now();
        let attempted_at = Utc::now();
        let answer = self.send(&c, attempted_at).await;
        let elapsed = started.elapsed();
        metrics::histogram!(ATTEMPT_DURATION).record(elapsed.as_secs_f64());
        let next = next(
            &answer,
            c.attempts,
            &self.settings.retry_schedule,
            Utc::now(),
        );
        match (next, answer.status) {
            (Next::Delivered, _) => {
                metrics::counter!(DELIVERED).increment(1);
                let lag = (Utc::now() - c.event_created_at)
                    .to_std()
                    .unwrap_or_default();
                metrics::histogram!(DELIVERY_LAG).record(lag.as_secs_f64());
            }
            (_, status) => {
                let class = match status {
                    Some(s) => format!("{}xx", s / 100),
                    None if answer.refused => "refused".into(),
                    None if answer
                        .error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("no answer")) =>
                    {
                        "timeout".into()
                    }
                    None => "connect".into(),
                };
                metrics::counter!(FAILED, "class" => class).increment(1);
                if matches!(next, Next::Failed | Next::Gone) {
                    metrics::counter!(GAVE_UP).increment(1);
                }
            }
        }
        debug!(delivery = c.id, endpoint = c.endpoint_id, status = ?answer.status, ?next, "Delivery attempt");
        let (status, next_attempt_at) = match next {
            Next::Delivered => ("delivered", None),
            Next::Retry(at) => ("pending", Some(at)),
            Next::Failed | Next::Gone => ("failed", None),
        };
        Ok(Settled {
            id: c.id,
            endpoint_id: c.endpoint_id,
            event_id: c.event_id,
            status,
            next_attempt_at,
            status_code: answer.status,
            latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            response_body: answer.body,
            error: answer.error,
            attempted_at,
            gone: next == Next::Gone,
        })
    }

    /// Sends the event's stored bytes, signed at `at`, and reads the answer.
    async fn send(&self, c: &Claimed, at: DateTime<Utc>) -> Answer {
        let uri: http::Uri = match c.url.parse() {
            Ok(u) => u,
            Err(e) => return attempt::unanswered(format!("bad endpoint URL: {e}"), true),
        };
        if let Some(why) = guard::refused_literal(&uri, self.settings.allow_private) {
            return attempt::unanswered(why, true);
        }
        let msg_id = shared::events::webhook_id(c.event_id);
        let timestamp = at.timestamp();
        let signature = shared::events::signature(&c.keys, &msg_id, timestamp, c.body.as_bytes());
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("lead-intake-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(attempt::body(&c.body));
        let request = match request {
            Ok(r) => r,
            Err(e) => return attempt::unanswered(format!("bad request: {e}"), true),
        };
        let timeout = self.settings.request_timeout;
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let kept = attempt::read_answer(body).await;
            Ok::<_, hyper_util::client::legacy::Error>(attempt::answered(
                parts.status,
                &parts.headers,
                kept,
            ))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => attempt::unanswered(
                format!("no answer within {}", humantime::format_duration(timeout)),
                false,
            ),
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                let refused = source_is::<guard::Refused>(&e);
                attempt::unanswered(error_chain(&e), refused)
            }
        }
    }
}

/// Whether `T` is somewhere in `e`'s sources.
fn source_is<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error with its sources, `: `-separated.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// Writes attempts as they end, up to [`SETTLE_BATCH`] per statement, until the channel
/// closes. A failed write is tried again; while it fails, the claims' leases keep the
/// deliveries from being lost.
async fn record(db: DatabaseConnection, mut rx: mpsc::Receiver<Settled>) {
    let mut batch: Vec<Settled> = Vec::with_capacity(SETTLE_BATCH);
    while rx.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let mut tries = 0;
        loop {
            match settle(&db, &batch).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    warn!(error = %e, attempts = batch.len(), "Recording delivery attempts failed; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    warn!(error = %e, attempts = batch.len(), "Recording delivery attempts failed; their deliveries are due again when their leases end");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Records `batch` in one transaction.
async fn settle(db: &DatabaseConnection, batch: &[Settled]) -> Result<(), DbErr> {
    let json = serde_json::to_value(batch).map_err(|e| DbErr::Json(e.to_string()))?;
    let txn = db.begin().await?;
    // One plan per connection, as in the lead transactions: every row is reached by key, and
    // planning afresh at every call cost about 0.4 ms, 13 µs per attempt recorded.
    txn.execute_unprepared(crate::db::GENERIC_PLANS).await?;
    txn.execute_raw(stmt(SETTLE, vec![json.into()])).await?;
    txn.commit().await
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_cutoff_is_below_every_later_event_id_and_above_every_earlier_one() {
        let at = Utc::now();
        let cutoff = v7_floor(at);
        assert_eq!(cutoff.get_version_num(), 7);
        for ms in [-1000_i64, -1] {
            let earlier = at + chrono::Duration::milliseconds(ms);
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                earlier.timestamp() as u64,
                earlier.timestamp_subsec_nanos(),
            );
            assert!(Uuid::new_v7(ts) < cutoff, "{ms} ms earlier");
        }
        let same = uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.timestamp() as u64,
            at.timestamp_subsec_millis() * 1_000_000,
        );
        assert!(Uuid::new_v7(same) >= cutoff, "the same millisecond is kept");
        assert!(Uuid::now_v7() >= cutoff);
    }

    #[test]
    fn while_yielding_rows_are_turned_about_as_fast_as_their_deliveries_may_start() {
        // 200 attempts a second: a row of 128 deliveries, then 0.64 s until the next.
        assert_eq!(yield_pause(128, 200), Duration::from_millis(640));
        // Never sooner than a tick (rows of one event, or nothing turned) ...
        assert_eq!(yield_pause(1, 200), YIELD_TICK);
        assert_eq!(yield_pause(0, 200), YIELD_TICK);
        assert_eq!(yield_pause(5, 0), YIELD_TICK);
        // ... nor later than a second, so that the backlog's end is seen.
        assert_eq!(yield_pause(10_000, 200), YIELD_PAUSE_MAX);
    }

    #[test]
    fn the_throttle_holds_back_only_while_yielding_and_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100);
        assert_eq!(t.allowance(false, t0), usize::MAX, "no backlog: no bound");
        assert_eq!(
            t.allowance(true, t0),
            10,
            "a full bucket: a tenth of a second's worth"
        );
        t.spend(10);
        assert_eq!(
            t.allowance(true, t0 + Duration::from_millis(50)),
            0,
            "half full"
        );
        assert_eq!(t.refill(), Duration::from_millis(50));
        assert_eq!(t.allowance(true, t0 + Duration::from_millis(100)), 10);
        t.spend(10);
        // A long wait does not bank more than one bucket.
        assert_eq!(t.allowance(true, t0 + Duration::from_secs(10)), 10);

        let mut held = Throttle::new(0);
        assert_eq!(
            held.allowance(true, t0 + Duration::from_secs(60)),
            0,
            "0 holds them"
        );
        assert_eq!(held.refill(), YIELD_WINDOW);
        assert_eq!(held.allowance(false, t0), usize::MAX);
    }
}
