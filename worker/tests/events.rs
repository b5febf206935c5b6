//! Outbound events (§11) against a real PostgreSQL database and webhook receivers on
//! loopback: events are written in the lead's transaction, only for subscribed endpoints;
//! the delivery loop signs per the Standard Webhooks specification (checked with the
//! specification authors' own library), retries on its schedule with the same id and bytes,
//! honours Retry-After, disables an endpoint on 410, keeps a slow endpoint from delaying
//! another, refuses internal addresses, and replays.
#![allow(clippy::unwrap_used)]

mod support;

use leadctl::admin::webhooks::{self, Replay};
use sea_orm::ConnectionTrait;
use shared::config::WebhookSettings;
use std::time::Duration;
use support::{Ctx, WorkerRole, lead};
use testkit::webhooks::{Answer, Delivery, WebhookReceiver, verify_with_library};
use tokio_util::sync::CancellationToken;
use worker::backlog::IntakeBacklog;
use worker::deliveries::Dispatcher;
use worker::process::Processor;

fn settings(schedule: &[u64]) -> WebhookSettings {
    WebhookSettings {
        allow_private: true,
        retry_schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
        request_timeout: Duration::from_secs(5),
        poll_interval: Duration::from_millis(100),
        ..WebhookSettings::default()
    }
}

/// A running delivery loop (stopped, it finishes its attempts), or the signs of a backlog.
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(ctx: &Ctx, s: &WebhookSettings) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(Dispatcher::new(ctx.conn().clone(), s).run(stop.clone()));
        Self { stop, task }
    }

    /// A delivery loop (10 deliveries a second while yielding, after `hold`) beside
    /// consumers that keep leaving leads waiting, as in a burst, until the first value is
    /// stopped.
    fn behind_a_backlog(ctx: &Ctx, hold: Duration) -> (Self, Self) {
        let backlog = IntakeBacklog::new();
        let stop = CancellationToken::new();
        let signs = {
            let (backlog, stop) = (backlog.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    backlog.seen();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let s = WebhookSettings {
            backlog_rate: 10,
            backlog_hold: hold,
            ..settings(&[1])
        };
        let loop_stop = CancellationToken::new();
        let task = tokio::spawn(
            Dispatcher::new(ctx.conn().clone(), &s)
                .yielding_to(backlog)
                .run(loop_stop.clone()),
        );
        (
            Self { stop, task: signs },
            Self {
                stop: loop_stop,
                task,
            },
        )
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

async fn endpoint(ctx: &Ctx, url: &str, events: &str) -> webhooks::WithSecret {
    webhooks::add(
        ctx.conn(),
        ctx.account,
        url,
        webhooks::parse_events(events).unwrap(),
        None,
    )
    .await
    .unwrap()
}

async fn received(r: &WebhookReceiver, n: usize) -> Vec<Delivery> {
    testkit::eventually("the deliveries", Duration::from_secs(20), || async {
        let got = r.got();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// `got` holds `n` events, each once (by `webhook-id`).
fn assert_each_once(got: &[Delivery], n: usize) {
    let mut ids: Vec<&str> = got.iter().map(|d| d.webhook_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "each event once");
}

/// Processes a lead for each of the numbers +1212555NNNN, NNNN in `suffixes`.
async fn process_leads(ctx: &Ctx, suffixes: std::ops::Range<u32>) {
    for i in suffixes {
        ctx.processor
            .try_process(&ctx.intake(lead(&format!("+1212555{i:04}"))))
            .await
            .unwrap();
    }
}

async fn scalar(ctx: &Ctx, sql: &str) -> String {
    ctx.conn()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql,
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap()
}

#[tokio::test]
async fn a_leads_events_verify_with_the_standard_webhooks_library_and_carry_the_read_api_objects() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let e = endpoint(&ctx, &r.url("/hooks"), "all").await;
    let o = ctx
        .processor
        .try_process(&ctx.intake(lead("+12125550101")))
        .await
        .unwrap();
    let loop_ = Running::start(&ctx, &settings(&[1]));
    let got = received(&r, 2).await;
    loop_.stop().await;

    let verified = verify_with_library(&e.secret, &got);
    for (d, v) in got.iter().zip(&verified) {
        let payload = v.as_ref().unwrap_or_else(|e| panic!("{e}: {d:?}"));
        assert_eq!(payload, &d.json());
        assert_eq!(d.content_type, "application/json");
        assert!(d.webhook_id.starts_with("msg_"));
        assert_eq!(d.path, "/hooks");
    }
    // Another secret does not verify: the check can fail.
    let wrong = verify_with_library(&shared::events::new_secret(), &got[..1]);
    assert!(wrong[0].is_err(), "{wrong:?}");

    let by_type = |t: &str| {
        got.iter()
            .find(|d| d.json()["type"] == t)
            .unwrap_or_else(|| panic!("no {t}"))
            .json()
    };
    let processed = by_type("lead.processed");
    assert_eq!(processed["data"]["intake_id"], o.intake_id.to_string());
    assert_eq!(processed["data"]["status"], "created");
    assert_eq!(processed["data"]["contact_id"], o.contact_id.unwrap());
    let created = by_type("contact.created");
    // The §5 contact object, as the read API shows it.
    let view = shared::read::contact(ctx.conn(), ctx.account, o.contact_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created["data"], serde_json::to_value(&view).unwrap());

    // The bytes sent are the bytes kept; each delivery is delivered and its attempt logged.
    for d in &got {
        let id = d.webhook_id.trim_start_matches("msg_");
        let body = scalar(&ctx, &format!("SELECT body FROM events WHERE id = '{id}'")).await;
        assert_eq!(body.as_bytes(), &d.body[..]);
    }
    let log = webhooks::attempts(ctx.conn(), e.endpoint.id, None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|a| a.status_code == Some(204) && a.delivery_status == "delivered")
    );
}

#[tokio::test]
async fn events_are_kept_only_for_subscribed_types_and_cost_nothing_without_endpoints() {
    let ctx = Ctx::new().await;
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550102")))
        .await
        .unwrap();
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 0);

    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 0);

    let r = WebhookReceiver::start().await;
    endpoint(&ctx, &r.url("/"), "lead.processed").await;
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550103")))
        .await
        .unwrap();
    // The lead's transaction wrote one outbox row; the delivery loop's first step turns it
    // into the events and deliveries.
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 1);
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(ctx.expand_events().await, 1);
    assert_eq!(
        scalar(&ctx, "SELECT string_agg(type, ',') FROM events").await,
        "lead.processed"
    );
    assert_eq!(ctx.count("SELECT count(*) FROM event_deliveries").await, 1);
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 0);
}

#[tokio::test]
async fn an_event_exists_only_when_the_work_it_reports_committed() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    endpoint(&ctx, &r.url("/"), "all").await;
    let role = WorkerRole::create(&ctx.db).await;
    let db = sea_orm::Database::connect(&role.url).await.unwrap();
    let processor = Processor::new(db);
    // The outbox write fails, so the whole lead does: no contact without its event.
    role.revoke(&ctx.db, "INSERT ON event_batches").await;
    let attempt = ctx.intake(lead("+12125550104"));
    assert!(processor.try_process(&attempt).await.is_err());
    assert_eq!(ctx.count("SELECT count(*) FROM contacts").await, 0);
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 0);
    role.grant(&ctx.db, "INSERT ON event_batches").await;
    processor.try_process(&attempt).await.unwrap();
    assert_eq!(ctx.count("SELECT count(*) FROM contacts").await, 1);
    // Turning the outbox row into events is one statement: when its deliveries cannot be
    // written, no event is either and the row stays for the next try.
    role.revoke(&ctx.db, "INSERT ON event_deliveries").await;
    let db = sea_orm::Database::connect(&role.url).await.unwrap();
    assert!(shared::events::expand(&db, 10).await.is_err());
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 0);
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 1);
    role.grant(&ctx.db, "INSERT ON event_deliveries").await;
    let once = shared::events::expand(&db, 10).await.unwrap();
    assert_eq!((once.batches, once.deliveries), (1, 2));
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 2);
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 0);
    let again = shared::events::expand(&db, 10).await.unwrap();
    assert_eq!((again.batches, again.deliveries), (0, 0), "each event once");
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 2);
    drop(db);
    role.drop(&ctx.db).await;
}

#[tokio::test]
async fn retries_follow_the_schedule_and_retry_after_with_the_same_id_and_bytes() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let e = endpoint(&ctx, &r.url("/"), "lead.processed").await;
    r.script([
        Answer::status(500).with_body("database down"),
        Answer::status(503).with_header("Retry-After", "2"),
    ]);
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550105")))
        .await
        .unwrap();
    let loop_ = Running::start(&ctx, &settings(&[1, 30, 30]));
    let got = received(&r, 3).await;
    loop_.stop().await;
    assert!(got.iter().all(|d| d.webhook_id == got[0].webhook_id));
    assert!(got.iter().all(|d| d.body == got[0].body));
    assert!(
        verify_with_library(&e.secret, &got)
            .iter()
            .all(Result::is_ok)
    );
    let gap = |a: &Delivery, b: &Delivery| b.at.duration_since(a.at);
    assert!(
        gap(&got[0], &got[1]) >= Duration::from_millis(900),
        "the schedule's 1 s"
    );
    assert!(
        gap(&got[1], &got[2]) >= Duration::from_millis(1900)
            && gap(&got[1], &got[2]) < Duration::from_secs(20),
        "Retry-After's 2 s, not the schedule's 30 s: {:?}",
        gap(&got[1], &got[2])
    );
    let log = webhooks::attempts(ctx.conn(), e.endpoint.id, None, 10)
        .await
        .unwrap();
    let statuses: Vec<Option<i32>> = log.iter().rev().map(|a| a.status_code).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(204)]);
    assert_eq!(
        log.last().unwrap().response_body.as_deref(),
        Some("database down")
    );
    assert_eq!(
        ctx.count("SELECT attempts::bigint FROM event_deliveries WHERE status = 'delivered'")
            .await,
        3
    );
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_new_events_skip_it() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let e = endpoint(&ctx, &r.url("/"), "lead.processed").await;
    r.script([Answer::status(410)]);
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550106")))
        .await
        .unwrap();
    let loop_ = Running::start(&ctx, &settings(&[1]));
    received(&r, 1).await;
    let ep = testkit::eventually("the endpoint disabled", Duration::from_secs(10), || async {
        let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
        (!ep.enabled).then_some(ep)
    })
    .await;
    assert_eq!(
        ep.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert_eq!(ep.failed, 1);
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550107")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop_.stop().await;
    assert_eq!(r.count(), 1);
    assert_eq!(ctx.count("SELECT count(*) FROM event_deliveries").await, 1);
}

#[tokio::test]
async fn a_410_parks_the_endpoints_other_pending_deliveries_and_only_those() {
    let ctx = Ctx::new().await;
    let e = endpoint(&ctx, "https://hooks.example.com/a", "lead.processed").await;
    for number in ["+12125550130", "+12125550131"] {
        ctx.processor
            .try_process(&ctx.intake(lead(number)))
            .await
            .unwrap();
    }
    assert_eq!(ctx.expand_events().await, 2);
    let first = scalar(
        &ctx,
        "SELECT json_build_object('id', id, 'endpoint_id', endpoint_id, 'event_id', event_id, \
           'status', 'failed', 'next_attempt_at', null, 'status_code', 410, 'latency_ms', 3, \
           'response_body', '', 'error', null, 'attempted_at', now(), 'gone', true)::text \
         FROM event_deliveries ORDER BY id LIMIT 1",
    )
    .await;
    let settle = worker::deliveries::STATEMENTS
        .iter()
        .find(|(name, _)| *name == "settle")
        .map(|(_, sql)| *sql)
        .unwrap();
    ctx.conn()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            settle,
            [format!("[{first}]").into()],
        ))
        .await
        .unwrap();
    let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
    assert!(!ep.enabled, "the endpoint is disabled");
    // The attempted delivery failed; the other waits, parked, for the endpoint to come back.
    assert_eq!(
        scalar(
            &ctx,
            "SELECT string_agg(status || ' ' || coalesce(next_attempt_at::text, '-'), ', ' ORDER BY id) \
             FROM event_deliveries"
        )
        .await,
        "failed -, pending infinity"
    );
}

#[tokio::test]
async fn an_exhausted_schedule_fails_and_a_replay_sends_the_same_event_again() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let e = endpoint(&ctx, &r.url("/"), "lead.processed").await;
    r.script([Answer::status(500), Answer::status(502)]);
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550108")))
        .await
        .unwrap();
    let loop_ = Running::start(&ctx, &settings(&[1]));
    received(&r, 2).await;
    testkit::eventually("the delivery failed", Duration::from_secs(10), || async {
        let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
        (ep.failed == 1).then_some(())
    })
    .await;
    let failed_only = Replay {
        failed_only: true,
        ..Replay::default()
    };
    assert_eq!(
        webhooks::replay_count(ctx.conn(), e.endpoint.id, &failed_only)
            .await
            .unwrap(),
        1
    );
    assert_eq!(r.count(), 2, "a dry run sends nothing");
    assert_eq!(
        webhooks::replay(ctx.conn(), e.endpoint.id, &failed_only)
            .await
            .unwrap(),
        1
    );
    let got = received(&r, 3).await;
    loop_.stop().await;
    assert_eq!(got[2].webhook_id, got[0].webhook_id);
    assert_eq!(got[2].body, got[0].body);
    assert!(
        verify_with_library(&e.secret, &got[2..])
            .iter()
            .all(Result::is_ok)
    );
    let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
    assert_eq!((ep.pending, ep.delivered, ep.failed), (0, 1, 0));
    // One event by its webhook-id; a window that excludes it matches nothing.
    let one = Replay {
        event: Some(webhooks::parse_event_id(&got[0].webhook_id).unwrap()),
        ..Replay::default()
    };
    assert_eq!(
        webhooks::replay_count(ctx.conn(), e.endpoint.id, &one)
            .await
            .unwrap(),
        1
    );
    // Replaying the delivered one takes it out of the delivered count while it is pending.
    assert_eq!(
        webhooks::replay(ctx.conn(), e.endpoint.id, &one)
            .await
            .unwrap(),
        1
    );
    let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
    assert_eq!((ep.pending, ep.delivered, ep.failed), (1, 0, 0));
    let later = Replay {
        since: Some(chrono::Utc::now() + chrono::Duration::minutes(1)),
        ..Replay::default()
    };
    assert_eq!(
        webhooks::replay_count(ctx.conn(), e.endpoint.id, &later)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_slow_endpoint_holds_only_its_own_slots() {
    let ctx = Ctx::new().await;
    let slow = WebhookReceiver::start().await;
    let fast = WebhookReceiver::start().await;
    slow.answer_all(Some(Answer::status(200).after(Duration::from_secs(3))));
    endpoint(&ctx, &slow.url("/"), "lead.processed").await;
    endpoint(&ctx, &fast.url("/"), "lead.processed").await;
    process_leads(&ctx, 200..220).await;
    let s = WebhookSettings {
        endpoint_concurrency: 2,
        ..settings(&[1])
    };
    let started = std::time::Instant::now();
    let loop_ = Running::start(&ctx, &s);
    received(&fast, 20).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "the fast endpoint got its 20 while the slow one held its 2 slots: {took:?}"
    );
    assert!(slow.count() <= 2, "{}", slow.count());
    assert!(slow.most_in_flight() <= 2);
    loop_.stop().await;
}

/// Sixty `lead.processed` events for a receiver (numbers from `first`), then a delivery loop
/// yielding to a backlog (after `hold`) and the backlog's signs.
async fn sixty_events_behind_a_backlog(
    first: u32,
    hold: Duration,
) -> (Ctx, WebhookReceiver, Running, Running) {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    endpoint(&ctx, &r.url("/"), "lead.processed").await;
    process_leads(&ctx, first..first + 60).await;
    let (burst, loop_) = Running::behind_a_backlog(&ctx, hold);
    (ctx, r, burst, loop_)
}

#[tokio::test]
async fn while_the_intake_has_a_backlog_deliveries_yield_to_it_then_catch_up() {
    let (_ctx, r, burst, loop_) = sixty_events_behind_a_backlog(300, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = r.count();
    assert!(
        (5..=25).contains(&during),
        "10 per second while the intake is behind, not all 60 at once: {during} in 2 s"
    );

    burst.stop().await;
    let caught_up = std::time::Instant::now();
    let got = received(&r, 60).await;
    assert!(
        caught_up.elapsed() < Duration::from_secs(5),
        "at full speed once the backlog is gone: {:?}",
        caught_up.elapsed()
    );
    assert_each_once(&got, 60);
    loop_.stop().await;
}

#[tokio::test]
async fn a_backlog_holds_deliveries_back_entirely_for_its_first_seconds_then_lets_them_trickle() {
    let hold = Duration::from_secs(2);
    let (ctx, r, burst, loop_) = sixty_events_behind_a_backlog(400, hold).await;
    tokio::time::sleep(hold - Duration::from_millis(500)).await;
    assert_eq!(r.count(), 0, "nothing starts during the hold");
    let expanded = scalar(&ctx, "SELECT count(*)::text FROM events").await;
    assert_eq!(expanded, "0", "and the outbox waits with the deliveries");
    // After the hold: 10 a second (a first bucket of one, then one every tenth of a second,
    // the loop looking again at most half a second late).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let trickled = r.count();
    assert!(
        (5..=30).contains(&trickled),
        "10 per second once the hold is over, not all 60 at once: {trickled} in 2.5 s"
    );
    burst.stop().await;
    let got = received(&r, 60).await;
    assert_each_once(&got, 60);
    loop_.stop().await;
}

#[tokio::test]
async fn with_nothing_due_the_delivery_loop_looks_on_its_timer_even_while_the_intake_is_behind() {
    let ctx = Ctx::new().await;
    let (burst, loop_) = Running::behind_a_backlog(&ctx, Duration::ZERO);
    // Transactions of this test's database (each claim is one), as the server has counted
    // them so far (a session reports its counts at most once a second).
    let committed = || async {
        scalar(
            &ctx,
            "SELECT xact_commit::text FROM pg_stat_database WHERE datname = current_database()",
        )
        .await
        .parse::<i64>()
        .unwrap()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = committed().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = committed().await - before;
    // With a 100 ms poll: a claim and a look at the next due time every 100 ms, and the
    // outbox's expansion every 100 ms while yielding, about 90 in 3 s. Claiming whenever
    // the allowance refilled made it a claim every 5 ms, 600 and more.
    assert!(
        during < 250,
        "{during} transactions in 3 s with nothing to deliver"
    );
    burst.stop().await;
    loop_.stop().await;
}

#[tokio::test]
async fn events_past_the_retention_go_with_their_deliveries_and_attempts() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let e = endpoint(&ctx, &r.url("/"), "lead.processed").await;
    // Two events of 40 and 31 days ago, delivered, each with its attempt; one of 29 days.
    let aged = |days: u64| {
        let at = std::time::SystemTime::now() - Duration::from_secs(days * 24 * 3600);
        let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, secs, 0))
    };
    let within = aged(29);
    for (id, days) in [(aged(40), 40), (aged(31), 31), (within, 29)] {
        ctx.conn()
            .execute_unprepared(&format!(
                "WITH e AS (INSERT INTO events (id, account_id, type, body, created_at) \
                   VALUES ('{id}', {a}, 'lead.processed', '{{}}', now() - interval '{days} days') \
                   RETURNING id), \
                 d AS (INSERT INTO event_deliveries (event_id, endpoint_id, status, attempts, \
                                                     delivered_at, created_at) \
                   SELECT id, {w}, 'delivered', 1, now() - interval '{days} days', \
                          now() - interval '{days} days' FROM e RETURNING id, event_id) \
                 , t AS (INSERT INTO webhook_endpoint_totals (endpoint_id, delivered) \
                   SELECT {w}, count(*) FROM d \
                   ON CONFLICT (endpoint_id) DO UPDATE \
                   SET delivered = webhook_endpoint_totals.delivered + excluded.delivered) \
                 INSERT INTO delivery_attempts (delivery_id, endpoint_id, event_id, attempted_at, \
                                                status_code, latency_ms) \
                 SELECT id, {w}, event_id, now() - interval '{days} days', 204, 3 FROM d",
                a = ctx.account,
                w = e.endpoint.id,
            ))
            .await
            .unwrap();
    }
    // And today's: a lead's event, delivered by the loop below.
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550190")))
        .await
        .unwrap();
    let count = |table: &str| {
        let sql = format!("SELECT count(*) FROM {table}");
        let ctx = &ctx;
        async move { ctx.count(&sql).await }
    };
    ctx.expand_events().await;
    assert_eq!(count("events").await, 4);

    // The loop removes what is older than its retention (30 days by default) on its own.
    let loop_ = Running::start(&ctx, &settings(&[1]));
    received(&r, 1).await;
    testkit::eventually(
        "the old events removed",
        Duration::from_secs(20),
        || async { (count("events").await == 2).then_some(()) },
    )
    .await;
    loop_.stop().await;
    for table in ["events", "event_deliveries", "delivery_attempts"] {
        assert_eq!(
            count(table).await,
            2,
            "{table}: the 29-day-old one and today's"
        );
    }
    let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
    assert_eq!(
        ep.delivered, 2,
        "delivered: the 29-day-old one and today's, as the totals keep them"
    );
    let kept = scalar(
        &ctx,
        "SELECT string_agg(id::text, ',' ORDER BY id) FROM events",
    )
    .await;
    assert!(kept.contains(&within.to_string()), "{kept}");

    // A shorter retention removes the rest of the old one at once, and nothing of today.
    let week = WebhookSettings {
        retention: Duration::from_secs(7 * 24 * 3600),
        ..settings(&[1])
    };
    let removed = Dispatcher::new(ctx.conn().clone(), &week)
        .expire(chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(removed, 1);
    for table in ["events", "event_deliveries", "delivery_attempts"] {
        assert_eq!(count(table).await, 1, "{table}: today's");
    }
    // The endpoint's count of deliveries no longer counts those removed.
    let ep = webhooks::get(ctx.conn(), e.endpoint.id).await.unwrap();
    assert_eq!((ep.pending, ep.delivered, ep.failed), (0, 1, 0));
}

#[tokio::test]
async fn internal_addresses_are_refused_at_connect_time_unless_allowed() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let port = r.addr.port();
    let by_ip = endpoint(&ctx, &format!("http://127.0.0.1:{port}/"), "lead.processed").await;
    // A name that resolves to a loopback address is refused like the address.
    let by_name = endpoint(&ctx, &format!("http://localhost:{port}/"), "lead.processed").await;
    ctx.processor
        .try_process(&ctx.intake(lead("+12125550109")))
        .await
        .unwrap();
    let guarded = WebhookSettings {
        allow_private: false,
        ..settings(&[60])
    };
    let loop_ = Running::start(&ctx, &guarded);
    for e in [&by_ip, &by_name] {
        let log = testkit::eventually("the refused attempt", Duration::from_secs(10), || async {
            let log = webhooks::attempts(ctx.conn(), e.endpoint.id, None, 5)
                .await
                .unwrap();
            (!log.is_empty()).then_some(log)
        })
        .await;
        assert_eq!(log[0].status_code, None);
        let error = log[0].error.as_deref().unwrap();
        assert!(error.contains("loopback"), "{error}");
        assert_eq!(log[0].delivery_status, "pending", "retried on the schedule");
    }
    loop_.stop().await;
    assert_eq!(r.count(), 0, "no connection was made");

    // Allowed for local setups: the same deliveries go out on their replay.
    for e in [&by_ip, &by_name] {
        ctx.conn()
            .execute_unprepared(&format!(
                "UPDATE event_deliveries SET next_attempt_at = now() WHERE endpoint_id = {}",
                e.endpoint.id
            ))
            .await
            .unwrap();
    }
    let loop_ = Running::start(&ctx, &settings(&[60]));
    received(&r, 2).await;
    loop_.stop().await;
}

#[tokio::test]
async fn after_a_rotation_both_secrets_verify_and_a_dead_letter_is_announced() {
    let ctx = Ctx::new().await;
    let r = WebhookReceiver::start().await;
    let old = endpoint(&ctx, &r.url("/"), "lead.dead_lettered").await;
    let new = webhooks::rotate_secret(ctx.conn(), old.endpoint.id)
        .await
        .unwrap();
    assert_ne!(old.secret, new.secret);
    let intake = ctx.intake(lead("+12125550110"));
    let dead = worker::process::DeadRecord {
        intake_id: intake.message.intake_id,
        account_id: ctx.account,
        user_id: Some(ctx.user),
        token_id: Some(ctx.token),
        payload: serde_json::json!({"phone_number": "+12125550110"}),
        received_at: None,
        attempts: 6,
        reason: "retries exhausted".into(),
    };
    // Both copies of a dead letter are recorded; one event announces it.
    for _ in 0..2 {
        ctx.processor.record_dead_letter(&dead).await.unwrap();
    }
    assert_eq!(ctx.count("SELECT count(*) FROM events").await, 1);
    let loop_ = Running::start(&ctx, &settings(&[1]));
    let got = received(&r, 1).await;
    loop_.stop().await;
    assert_eq!(
        got[0].signature.split(' ').count(),
        2,
        "{}",
        got[0].signature
    );
    for secret in [&old.secret, &new.secret] {
        assert!(verify_with_library(secret, &got)[0].is_ok());
    }
    let body = got[0].json();
    assert_eq!(body["type"], "lead.dead_lettered");
    assert_eq!(body["data"]["status"], "dead_lettered");
    assert_eq!(body["data"]["last_error"], "retries exhausted");
}

#[tokio::test]
async fn contact_events_of_a_batch_carry_its_contacts_exactly_as_the_read_api_shows_them() {
    use shared::lead::{ConsentChannel, LeadConsent, OtherPhoneNumber};
    let ctx = Ctx::new().await;
    endpoint(&ctx, "http://127.0.0.1:9/", "all").await;
    let tag = ctx.named(leadctl::admin::Catalog::Tag, "web").await;
    let first = ctx.named(leadctl::admin::Catalog::Sequence, "First").await;
    let second = ctx.named(leadctl::admin::Catalog::Sequence, "Second").await;
    // The new contact's number is on the do-not-contact list for texts (and was, expired,
    // for everything).
    ctx.conn()
        .execute_unprepared(&format!(
            "INSERT INTO do_not_contact (account_id, phone_number, channel, reason, expires_at) \
             VALUES ({a}, '+12125550120', 'sms', 'asked', NULL), \
                    ({a}, '+12125550120', 'all', 'asked', now() - interval '1 day')",
            a = ctx.account
        ))
        .await
        .unwrap();
    // A contact stored before the batch, which the batch updates.
    let stored = ctx
        .processor
        .try_process(&ctx.intake(lead("+12125550121")))
        .await
        .unwrap()
        .contact_id
        .unwrap();
    ctx.expand_events().await;

    // A new contact with everything a lead can bring: other numbers with and without a
    // label, a note, consent with its evidence (given at nanoseconds), a tag, a sequence,
    // a PowerDialer entry.
    let mut a = lead("+12125550120");
    a.other_phone_numbers = vec![
        OtherPhoneNumber {
            label: Some("work".into()),
            phone_number: support::phone("+12125550122"),
        },
        OtherPhoneNumber {
            label: None,
            phone_number: support::phone("+12125550123"),
        },
    ];
    a.notes = Some("Asked for a quote.".into());
    a.evidence.consent = Some(LeadConsent {
        channels: vec![ConsentChannel::Sms, ConsentChannel::Call],
        text: Some("You may call and text me.".into()),
        given_at: Some("2026-11-30T10:00:00.123456789Z".parse().unwrap()),
        source_url: Some("https://acme.example/form".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: None,
        seller: Some("Acme".into()),
    });
    a.evidence.trustedform_cert_url =
        Some("https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567".into());
    a.evidence.leadid_token = Some("LEADID-1".into());
    a.links.tag_id = Some(tag);
    a.links.sequence_id = Some(first);
    a.links.user_id = Some(ctx.user);
    a.flags.add_to_powerdialer = true;
    // The same contact again in the same batch: another note, the tag again, and a move to
    // another sequence (the first enrollment ends before it was ever stored).
    let mut again = lead("+12125550120");
    again.notes = Some("Prefers mornings.".into());
    again.links.tag_id = Some(tag);
    again.links.sequence_id = Some(second);
    again.flags.force_update_sequence = true;
    let mut update = lead("+12125550121");
    update.notes = Some("Called back.".into());
    let batch = [ctx.intake(a), ctx.intake(again), ctx.intake(update)];
    let outcomes: Vec<_> = ctx
        .processor
        .try_process_batch(&batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = outcomes[0].contact_id.unwrap();
    assert_eq!(outcomes[1].contact_id, Some(created));
    assert_eq!(outcomes[2].contact_id, Some(stored));

    // The batch's events, those built after its PowerDialer placement included, are one
    // outbox row.
    assert_eq!(ctx.count("SELECT count(*) FROM event_batches").await, 1);
    ctx.expand_events().await;
    let rows = ctx
        .conn()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT type, body FROM events WHERE type LIKE 'contact.%' ORDER BY type",
        ))
        .await
        .unwrap();
    let events: Vec<(String, serde_json::Value)> = rows
        .iter()
        .map(|r| {
            let body: String = r.try_get("", "body").unwrap();
            (
                r.try_get("", "type").unwrap(),
                serde_json::from_str(&body).unwrap(),
            )
        })
        .collect();
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    // The stored contact's after the first lead's own batch, then this batch's three.
    assert_eq!(
        kinds,
        [
            "contact.created",
            "contact.created",
            "contact.updated",
            "contact.updated"
        ]
    );
    for id in [created, stored] {
        let view = shared::read::contact(ctx.conn(), ctx.account, id)
            .await
            .unwrap()
            .unwrap();
        let expected = serde_json::to_value(&view).unwrap();
        let carried: Vec<&serde_json::Value> = events
            .iter()
            .map(|(_, e)| &e["data"])
            .filter(|d| d["id"] == id && d["updated_at"] == expected["updated_at"])
            .collect();
        assert!(!carried.is_empty(), "no event carries contact {id}");
        for data in carried {
            assert_eq!(data, &expected, "contact {id}");
        }
    }
    // What the new contact's view holds, so that the comparison covers every list.
    let view = shared::read::contact(ctx.conn(), ctx.account, created)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.other_phone_numbers.len(), 2);
    assert_eq!((view.notes.len(), view.consent.len()), (2, 2));
    assert_eq!(view.tag_ids, [tag]);
    assert_eq!(view.sequence_enrollments.len(), 2);
    assert!(view.powerdialer.is_some());
    assert_eq!(view.do_not_contact, ["sms"]);
    assert_eq!(
        view.consent[0].given_at.to_rfc3339(),
        "2026-11-30T10:00:00.123456+00:00"
    );
}
