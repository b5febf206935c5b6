//! The worker end to end through the real broker: consume, process, acknowledge; outcome on
//! Redis; duplicates; concurrency across two workers; transient failures retried through the
//! delay queues; persistent failures and poison dead-lettered; broker reconnection; the
//! metrics port.
#![allow(clippy::unwrap_used)]

mod support;

use futures_util::StreamExt;
use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, ShortString};
use leadctl::admin::Catalog;
use rand::Rng;
use rand::seq::IndexedRandom;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::json;
use shared::config::Settings;
use shared::entities::{contact_phone_number, lead_intake, powerdialer_item};
use shared::intake::IntakeStatus;
use shared::intake::{IntakeMessage, headers};
use std::net::SocketAddr;
use std::time::Duration;
use support::{Ctx, Publisher, WorkerRole, eventually, http_get, lead, metric, phone};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use worker::app::Worker;

/// A worker running in this process until `stop`.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(settings: Settings) -> Self {
        let worker = Worker::build(settings).await.expect("build");
        let addr = worker.metrics_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run_until_stopped(async {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn metrics(&self) -> String {
        let (status, body) = http_get(self.addr, "/metrics").await;
        assert_eq!(status, 200);
        body
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("stops in time")
            .expect("joins")
            .expect("runs cleanly");
    }
}

const WAIT: Duration = Duration::from_secs(30);

async fn intake_status(ctx: &Ctx, m: &IntakeMessage) -> Option<lead_intake::Model> {
    ctx.intake_row(m.intake_id).await
}

/// Waits until `m`'s intake record says created.
async fn created(ctx: &Ctx, m: &IntakeMessage, what: &str) -> lead_intake::Model {
    eventually(what, WAIT, || async {
        intake_status(ctx, m)
            .await
            .filter(|r| r.status == IntakeStatus::Created)
    })
    .await
}

fn header_str(props: &lapin::BasicProperties, key: &str) -> Option<String> {
    match props
        .headers()
        .as_ref()?
        .inner()
        .get(&ShortString::from(key))?
    {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::LongLongInt(n) => Some(n.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn a_lead_goes_from_the_queue_to_a_contact_and_its_outcome_is_announced() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let running = Running::start(ctx.settings.clone()).await;

    let (status, body) = http_get(running.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    assert_eq!(http_get(running.addr, "/nope").await.0, 404);

    let mut l = lead("(818) 123-4567");
    l.fields.first_name = Some("Ada".into());
    let m = ctx.message(l);
    let client = redis::Client::open(testkit::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(shared::keys::intake_outcome_channel(
            &ctx.settings.redis_prefix,
            m.intake_id,
        ))
        .await
        .unwrap();
    publisher.publish(&m).await;

    let msg = tokio::time::timeout(WAIT, pubsub.on_message().next())
        .await
        .expect("announced in time")
        .expect("a message");
    let announced: serde_json::Value =
        serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
    let row = intake_status(&ctx, &m).await.expect("recorded");
    assert_eq!(row.status, IntakeStatus::Created);
    assert_eq!(
        announced,
        json!({"intake_id": m.intake_id, "status": "created", "contact_id": row.contact_id})
    );
    let c = ctx.contact(row.contact_id.unwrap()).await;
    assert_eq!(c.first_name.as_deref(), Some("Ada"));

    let text = running.metrics().await;
    assert_eq!(
        metric(&text, "worker_leads_total{outcome=\"created\"}"),
        1.0,
        "{text}"
    );
    assert!(
        text.contains("worker_lead_duration_seconds_bucket"),
        "{text}"
    );
    assert_eq!(metric(&text, "worker_in_flight_leads"), 0.0);
    assert_eq!(
        publisher.depth(&publisher.topology.intake_queue()).await,
        0,
        "acknowledged"
    );
    running.stop().await;
    testkit::delete_topology(&ctx.settings).await;
}

#[tokio::test]
async fn the_same_message_delivered_twice_has_one_set_of_effects() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let tag = ctx.named(Catalog::Tag, "web").await;
    let mut l = lead("818 555 0101");
    l.notes = Some("consent".into());
    l.links.tag_id = Some(tag);
    l.links.user_id = Some(ctx.user);
    l.flags.add_to_powerdialer = true;
    let m = ctx.message(l);
    let running = Running::start(ctx.settings.clone()).await;
    publisher.publish_many(&[m.clone(), m.clone()]).await;

    let text = eventually("both deliveries settled", WAIT, || async {
        let t = running.metrics().await;
        (metric(&t, "worker_leads_total{outcome=\"created\"}")
            + metric(&t, "worker_leads_total{outcome=\"already_done\"}")
            == 2.0)
            .then_some(t)
    })
    .await;
    assert_eq!(
        metric(&text, "worker_leads_total{outcome=\"already_done\"}"),
        1.0
    );
    for table in [
        "contacts",
        "contact_notes",
        "contact_tags",
        "powerdialer_items",
        "lead_intakes",
    ] {
        assert_eq!(
            ctx.count(&format!("SELECT count(*) FROM {table}")).await,
            1,
            "{table}"
        );
    }
    assert_eq!(
        intake_status(&ctx, &m).await.unwrap().status,
        IntakeStatus::Created
    );
    running.stop().await;
    testkit::delete_topology(&ctx.settings).await;
}

/// While a batch of the process is running, leads that arrive within the linger join one
/// batch; a lead that finds the process idle does not wait for company.
#[tokio::test]
async fn while_a_batch_runs_arriving_leads_wait_to_form_one_batch_and_an_idle_worker_waits_for_none()
 {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let mut settings = ctx.settings.clone();
    let linger = Duration::from_secs(2);
    settings.worker.batch_linger = linger;
    let running = Running::start(settings).await;
    let batches = |t: &str| {
        (
            metric(t, "worker_batch_size_count"),
            metric(t, "worker_batch_size_sum"),
        )
    };

    // Idle: processed without waiting out the linger.
    let alone = ctx.message(lead("818 555 0300"));
    let sent = std::time::Instant::now();
    publisher.publish(&alone).await;
    created(&ctx, &alone, "the lone lead").await;
    assert!(sent.elapsed() < linger / 2, "took {:?}", sent.elapsed());

    // A batch that cannot finish: its number's lock is held by this test.
    let blocked = ctx.message(lead("818 555 0301"));
    let holder = ctx.conn().begin().await.unwrap();
    let key = format!(
        "lead-number:{}:{}",
        blocked.account_id,
        blocked.lead.phone_number.as_str()
    );
    holder
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [key.into()],
        ))
        .await
        .unwrap();
    publisher.publish(&blocked).await;
    eventually("the batch waiting on the lock", WAIT, || async {
        let waiting = ctx
            .count(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await;
        (waiting == 1).then_some(())
    })
    .await;

    // Five leads 50 ms apart: idle consumers are free, yet they form one batch.
    let joined: Vec<IntakeMessage> = (0..5)
        .map(|i| ctx.message(lead(&format!("818 555 031{i}"))))
        .collect();
    for m in &joined {
        publisher.publish(m).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &joined {
        created(&ctx, m, "a joined lead").await;
    }
    // The lone lead, the blocked one (counted when it started), the five together.
    assert_eq!(batches(&running.metrics().await), (3.0, 7.0));

    holder.rollback().await.unwrap();
    created(&ctx, &blocked, "the blocked lead").await;
    assert_eq!(batches(&running.metrics().await), (3.0, 7.0));
    running.stop().await;
    testkit::delete_topology(&ctx.settings).await;
}

/// Numbers written the many ways people type them.
fn random_format(rng: &mut impl Rng, digits: &str) -> String {
    let (a, b, c) = (&digits[0..3], &digits[3..6], &digits[6..10]);
    let formats = [
        format!("{a}{b}{c}"),
        format!("({a}) {b}-{c}"),
        format!("+1 {a}-{b}-{c}"),
        format!("1.{a}.{b}.{c}"),
        format!("{a}.{b}.{c}"),
        format!(" +1 ({a}) {b} {c} "),
        format!("1-{a}-{b}-{c}"),
    ];
    formats.choose(rng).unwrap().clone()
}

#[tokio::test]
async fn a_workers_event_deliveries_wait_for_its_backlog_of_leads_then_all_go_out() {
    let ctx = Ctx::new().await;
    let receiver = testkit::webhooks::WebhookReceiver::start().await;
    leadctl::admin::webhooks::add(
        ctx.conn(),
        ctx.account,
        &receiver.url("/"),
        leadctl::admin::webhooks::parse_events("lead.processed").unwrap(),
        None,
    )
    .await
    .unwrap();
    let mut settings = ctx.settings.clone();
    settings.worker.concurrency = 1;
    settings.worker.batch_size = 10;
    settings.worker.prefetch = 100;
    settings.webhooks.allow_private = true;
    settings.webhooks.poll_interval = Duration::from_millis(100);
    // Held entirely while leads wait, so that the test sees the order exactly.
    settings.webhooks.backlog_rate = 0;
    let publisher = Publisher::new(&settings).await;
    let messages: Vec<IntakeMessage> = (0..300)
        .map(|i| ctx.message(lead(&format!("+1212556{i:04}"))))
        .collect();
    publisher.publish_many(&messages).await;
    let running = Running::start(settings).await;

    // Until the consumer finds leads waiting behind its first batch, nothing says the
    // intake is behind: the first batches' events may go out at once. After that none
    // until the backlog is gone.
    let mut yielded = false;
    let mut samples = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let delivered = receiver.count();
        let finished = support::finished_intakes(ctx.conn()).await;
        samples.push((finished, delivered));
        if finished >= 300 {
            break;
        }
        let text = running.metrics().await;
        yielded |= metric(&text, "worker_event_deliveries_yielding") == 1.0;
        assert!(
            started.elapsed() < WAIT,
            "not drained in {WAIT:?}: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = samples
        .iter()
        .filter(|(finished, _)| *finished >= 100 && *finished < 290)
        .map(|(_, delivered)| *delivered);
    let (least, most) = (late.clone().min(), late.max());
    assert!(
        least.is_some() && least == most && most <= Some(50),
        "no delivery while leads waited (finished, delivered): {samples:?}"
    );
    assert!(yielded, "the yielding gauge showed it");
    eventually("every event", WAIT, || async {
        (receiver.count() >= 300).then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn four_hundred_intakes_of_25_numbers_over_two_workers_make_exactly_25_contacts() {
    let ctx = Ctx::new().await;
    let mut settings = ctx.settings.clone();
    settings.worker.concurrency = 8;
    settings.worker.prefetch = 64;
    let publisher = Publisher::new(&settings).await;
    let tag = ctx.named(Catalog::Tag, "web").await;
    let numbers: Vec<String> = (0..25).map(|i| format!("81855501{i:02}")).collect();
    let mut rng = rand::rng();
    let mut messages = Vec::new();
    for i in 0..400 {
        let digits = numbers.choose(&mut rng).unwrap();
        let raw = random_format(&mut rng, digits);
        let mut l = lead(&raw);
        l.notes = Some(format!("note {i}"));
        l.links.tag_id = Some(tag);
        l.links.user_id = Some(ctx.user);
        l.flags.add_to_powerdialer = rng.random_bool(0.5);
        if rng.random_bool(0.3) {
            l.fields.email = Some(format!("lead{i}@example.com"));
        }
        let mut m = ctx.message(l);
        m.payload = json!({ "phone_number": raw }).into();
        messages.push(m);
    }
    let w1 = Running::start(settings.clone()).await;
    let w2 = Running::start(settings.clone()).await;
    publisher.publish_many(&messages).await;

    eventually("every intake terminal", Duration::from_secs(90), || async {
        (support::finished_intakes(ctx.conn()).await == 400).then_some(())
    })
    .await;
    let contacts = ctx.contacts().await;
    assert_eq!(contacts.len(), 25);
    let mut primaries: Vec<String> = contacts.iter().map(|c| c.phone_number.clone()).collect();
    primaries.sort();
    let mut want: Vec<String> = numbers
        .iter()
        .map(|n| phone(n).as_str().to_owned())
        .collect();
    want.sort();
    assert_eq!(primaries, want);
    let rows = contact_phone_number::Entity::find()
        .all(ctx.conn())
        .await
        .unwrap();
    assert_eq!(rows.len(), 25, "each number on exactly one contact");
    assert_eq!(
        ctx.count("SELECT count(*) FROM lead_intakes WHERE status = 'created'")
            .await,
        25
    );
    assert_eq!(
        ctx.count("SELECT count(*) FROM contact_notes").await,
        400,
        "no lost update"
    );
    assert_eq!(ctx.count("SELECT count(*) FROM contact_tags").await, 25);
    let queued = powerdialer_item::Entity::find()
        .filter(powerdialer_item::Column::Status.eq("queued"))
        .all(ctx.conn())
        .await
        .unwrap();
    let mut contacts_queued: Vec<i64> = queued.iter().map(|q| q.contact_id).collect();
    contacts_queued.sort();
    contacts_queued.dedup();
    assert_eq!(
        contacts_queued.len(),
        queued.len(),
        "one queued entry per contact"
    );
    let t1 = w1.metrics().await;
    assert_eq!(
        metric(&t1, "worker_leads_total{outcome=\"dead_lettered\"}"),
        0.0
    );
    assert_eq!(metric(&t1, "worker_leads_total{outcome=\"retried\"}"), 0.0);
    w1.stop().await;
    w2.stop().await;
    assert_eq!(publisher.depth(&publisher.topology.intake_queue()).await, 0);
    testkit::delete_topology(&settings).await;
}

/// A backlog's committed leads are acknowledged with one `multiple` frame per run of
/// settled deliveries, not one per lead (in a burst whose batches all keep up), and none
/// is left unacknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_acknowledged_about_a_frame_per_batch_and_nothing_stays_unacknowledged() {
    const WARM: u64 = 512;
    const LEADS: u64 = 2048;
    // The worker's warnings (a failed acknowledgement, a lost channel) in the test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
    let ctx = Ctx::new().await;
    let settings = ctx.settings.clone();
    let publisher = Publisher::new(&settings).await;
    let w = Running::start(settings.clone()).await;
    // A first burst opens the worker's database connections: the first transaction on a
    // new connection prepares its statements, and the batches behind it may pass the
    // bound and go one by one (as when a connection is replaced).
    let burst = |from: u64, n: u64| -> Vec<_> {
        (from..from + n)
            .map(|i| ctx.message(lead(&format!("818 30{} {:04}", 1 + i / 1000, i % 1000))))
            .collect()
    };
    publisher.publish_many(&burst(0, WARM)).await;
    eventually("the first burst", WAIT, || async {
        (support::finished_intakes(ctx.conn()).await == WARM).then_some(())
    })
    .await;
    // A batch whose transaction runs long (the first on a connection the pool has just
    // opened, which prepares and plans its statements) holds back the deliveries settled
    // after it, and past the window's bound those go one by one, as designed. A burst shows
    // the frames of batches that keep up only when none ran long: up to three bursts, and
    // one of them must be acknowledged in about a frame per batch.
    let mut published = WARM;
    let mut bursts: Vec<(f64, f64)> = Vec::new();
    let count = |text: &str, kind: &str| {
        metric(text, &format!("worker_ack_frames_total{{kind=\"{kind}\"}}"))
    };
    let kept_up = |(runs, singles): (f64, f64)| runs >= 1.0 && runs + singles <= (LEADS / 2) as f64;
    for _ in 0..3 {
        // The frames of the burst before are sent after its leads are counted: start from
        // counters that have stopped moving.
        let before = eventually("the acknowledgement frames settled", WAIT, || async {
            let first = w.metrics().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let then = w.metrics().await;
            ["run", "single"]
                .iter()
                .all(|kind| count(&first, kind) == count(&then, kind))
                .then_some(then)
        })
        .await;
        publisher.publish_many(&burst(published, LEADS)).await;
        published += LEADS;
        eventually("every intake terminal", Duration::from_secs(90), || async {
            (support::finished_intakes(ctx.conn()).await == published).then_some(())
        })
        .await;
        let text = eventually("the leads counted", WAIT, || async {
            let text = w.metrics().await;
            (metric(&text, "worker_leads_total{outcome=\"created\"}") as u64 == published)
                .then_some(text)
        })
        .await;
        let runs = count(&text, "run") - count(&before, "run");
        let singles = count(&text, "single") - count(&before, "single");
        eprintln!("acknowledgement frames: {runs} runs, {singles} single");
        bursts.push((runs, singles));
        if kept_up((runs, singles)) {
            break;
        }
    }
    assert!(
        bursts.iter().copied().any(kept_up),
        "(runs, single) acknowledgement frames of each burst of {LEADS} leads in batches of {}: {bursts:?}",
        settings.worker.batch_size
    );
    // Stopping returns any unacknowledged delivery to the queue.
    let last = w.metrics().await;
    w.stop().await;
    let left = publisher.depth(&publisher.topology.intake_queue()).await;
    let counters: Vec<&str> = last
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            [
                "worker_leads_total",
                "worker_ack_frames_total",
                "worker_broker_connects_total",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .collect();
    assert_eq!(
        left, 0,
        "deliveries back in the queue after the stop; {counters:?}"
    );
    testkit::delete_topology(&settings).await;
}

#[tokio::test]
async fn a_transient_database_failure_is_retried_through_the_delay_queue_then_succeeds() {
    let ctx = Ctx::new().await;
    let role = WorkerRole::create(&ctx.db).await;
    role.revoke(&ctx.db, "INSERT ON contacts").await;
    let mut settings = ctx.settings.clone();
    settings.database_url = role.url.clone();
    // Long enough later steps that the test restores the grant before they run out.
    settings.retry.delays = [200, 2_000, 2_000, 2_000]
        .map(Duration::from_millis)
        .to_vec();
    let publisher = Publisher::new(&settings).await;
    let running = Running::start(settings.clone()).await;
    let m = ctx.message(lead("818 555 0199"));
    publisher.publish(&m).await;

    eventually("a retry", WAIT, || async {
        (metric(&running.metrics().await, "worker_retries_total") >= 1.0).then_some(())
    })
    .await;
    // While it is retried, its record says so: processing, attempts, the last error.
    let during = eventually("a processing record", WAIT, || async {
        intake_status(&ctx, &m)
            .await
            .filter(|r| r.status == IntakeStatus::Processing)
    })
    .await;
    assert!(during.attempts >= 1, "attempts {}", during.attempts);
    let error = during.last_error.clone().unwrap_or_default();
    assert!(error.contains("permission denied"), "last_error {error:?}");
    assert_eq!(during.contact_id, None);
    assert!(ctx.contacts().await.is_empty(), "no contact while failing");
    role.grant(&ctx.db, "INSERT ON contacts").await;

    let row = created(&ctx, &m, "the retried lead").await;
    assert!(row.attempts >= 2, "attempts {}", row.attempts);
    assert_eq!(row.last_error, None);
    assert_eq!(ctx.contacts().await.len(), 1);
    let text = running.metrics().await;
    assert_eq!(metric(&text, "worker_dead_letters_total"), 0.0);
    running.stop().await;
    role.drop(&ctx.db).await;
    testkit::delete_topology(&settings).await;
}

#[tokio::test]
async fn a_lead_failing_after_its_contact_was_written_leaves_nothing_then_succeeds_once() {
    // The contact and its numbers are written before the note and the PowerDialer entry:
    // a failure there must roll all of it back, and the retry must do everything once.
    for table in ["contact_notes", "powerdialer_items"] {
        let ctx = Ctx::new().await;
        let role = WorkerRole::create(&ctx.db).await;
        role.revoke(&ctx.db, &format!("INSERT ON {table}")).await;
        let mut settings = ctx.settings.clone();
        settings.database_url = role.url.clone();
        settings.retry.delays = [200, 2_000, 2_000, 2_000]
            .map(Duration::from_millis)
            .to_vec();
        let publisher = Publisher::new(&settings).await;
        let running = Running::start(settings.clone()).await;
        let mut l = lead("818 555 0177");
        l.notes = Some("Called about the spring offer".into());
        l.links.user_id = Some(ctx.user);
        l.flags.add_to_powerdialer = true;
        let m = ctx.message(l);
        publisher.publish(&m).await;

        eventually("a retry", WAIT, || async {
            (metric(&running.metrics().await, "worker_retries_total") >= 1.0).then_some(())
        })
        .await;
        for (what, sql) in [
            ("contacts", "SELECT count(*) FROM contacts"),
            ("numbers", "SELECT count(*) FROM contact_phone_numbers"),
            ("notes", "SELECT count(*) FROM contact_notes"),
            ("entries", "SELECT count(*) FROM powerdialer_items"),
        ] {
            assert_eq!(ctx.count(sql).await, 0, "{table}: no {what} left behind");
        }
        role.grant(&ctx.db, &format!("INSERT ON {table}")).await;

        created(&ctx, &m, "the retried lead").await;
        for (what, sql) in [
            ("contact", "SELECT count(*) FROM contacts"),
            ("number", "SELECT count(*) FROM contact_phone_numbers"),
            ("note", "SELECT count(*) FROM contact_notes"),
            ("entry", "SELECT count(*) FROM powerdialer_items"),
        ] {
            assert_eq!(ctx.count(sql).await, 1, "{table}: exactly one {what}");
        }
        running.stop().await;
        role.drop(&ctx.db).await;
        testkit::delete_topology(&settings).await;
    }
}

#[tokio::test]
async fn a_persistent_failure_is_dead_lettered_with_its_reason_and_attempts() {
    let ctx = Ctx::new().await;
    let role = WorkerRole::create(&ctx.db).await;
    role.revoke(&ctx.db, "INSERT ON contacts").await;
    let mut settings = ctx.settings.clone();
    settings.database_url = role.url.clone();
    let publisher = Publisher::new(&settings).await;
    let running = Running::start(settings.clone()).await;
    let m = ctx.message(lead("818 555 0199"));
    publisher.publish(&m).await;

    let row = eventually("the dead letter", WAIT, || async {
        intake_status(&ctx, &m)
            .await
            .filter(|r| r.status == IntakeStatus::DeadLettered)
    })
    .await;
    // Three delays configured: the first try and three retries.
    assert_eq!(row.attempts, 4);
    let error = row.last_error.expect("last_error");
    assert!(
        error.contains("permission denied for table contacts"),
        "{error}"
    );
    assert_eq!(row.payload, m.payload.to_value());

    let dead = publisher
        .channel
        .basic_get(
            publisher.topology.dead_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a dead letter");
    let props = &dead.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|s| s.to_string()),
        Some(m.intake_id.to_string())
    );
    assert!(
        header_str(props, headers::DEAD_REASON)
            .unwrap()
            .contains("permission denied")
    );
    assert_eq!(header_str(props, headers::ATTEMPTS).as_deref(), Some("4"));
    let body: IntakeMessage = serde_json::from_slice(&dead.delivery.data).unwrap();
    assert_eq!(body, m, "the original message");
    // The record can be written (from the dead letter's copy) just before the worker
    // counts it.
    let text = eventually("the dead letter counted", WAIT, || async {
        let text = running.metrics().await;
        (metric(&text, "worker_dead_letters_total{kind=\"exhausted\"}") == 1.0).then_some(text)
    })
    .await;
    assert_eq!(metric(&text, "worker_retries_total"), 3.0);
    running.stop().await;
    role.drop(&ctx.db).await;
    testkit::delete_topology(&settings).await;
}

#[tokio::test]
async fn poison_is_dead_lettered_at_once() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let running = Running::start(ctx.settings.clone()).await;

    let garbage_id = uuid::Uuid::now_v7();
    publisher
        .publish_raw(&garbage_id.to_string(), b"{\"version\": 1, oops")
        .await;
    let mut future = serde_json::to_value(ctx.message(lead("818 555 0001"))).unwrap();
    future["version"] = json!(2);
    let future_id: uuid::Uuid = serde_json::from_value(future["intake_id"].clone()).unwrap();
    publisher
        .publish_raw(&future_id.to_string(), future.to_string().as_bytes())
        .await;
    let stranger = support::message_for(987_654, 1, 1, lead("818 555 0002"));
    let good = ctx.message(lead("818 555 0003"));
    publisher
        .publish_many(&[stranger.clone(), good.clone()])
        .await;

    eventually("three dead letters and one contact", WAIT, || async {
        let t = running.metrics().await;
        (metric(&t, "worker_dead_letters_total") == 3.0
            && metric(&t, "worker_leads_total{outcome=\"created\"}") == 1.0)
            .then_some(())
    })
    .await;
    let text = running.metrics().await;
    assert_eq!(metric(&text, "worker_retries_total"), 0.0, "never retried");
    assert_eq!(
        metric(&text, "worker_dead_letters_total{kind=\"poison\"}"),
        2.0
    );
    assert_eq!(
        metric(&text, "worker_dead_letters_total{kind=\"permanent\"}"),
        1.0
    );

    let row = ctx.intake_row(future_id).await.expect("recorded");
    assert_eq!(row.status, IntakeStatus::DeadLettered);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("unknown message version 2"));
    assert!(
        ctx.intake_row(garbage_id).await.is_none(),
        "no account to record it under"
    );

    let mut reasons = Vec::new();
    while let Some(d) = publisher
        .channel
        .basic_get(
            publisher.topology.dead_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        reasons.push(header_str(&d.delivery.properties, headers::DEAD_REASON).unwrap());
        assert_eq!(
            header_str(&d.delivery.properties, headers::ATTEMPTS).as_deref(),
            Some("1")
        );
    }
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons[0].starts_with("unknown account 987654"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("unknown message version 2"),
        "{reasons:?}"
    );
    assert!(reasons[2].starts_with("unparseable body"), "{reasons:?}");
    assert_eq!(
        intake_status(&ctx, &good).await.unwrap().status,
        IntakeStatus::Created
    );
    running.stop().await;
    testkit::delete_topology(&ctx.settings).await;
}

#[tokio::test]
async fn the_worker_reconnects_when_the_broker_connection_drops() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    // The broker's address, from the URL the tests use (`amqp://user:pass@host:port/vhost`).
    let broker = (ctx.settings.amqp_url.split_once('@'))
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the broker's address");
    let proxy = support::Proxy::start(broker.parse().unwrap()).await;
    let mut settings = ctx.settings.clone();
    settings.amqp_url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let running = Running::start(settings).await;

    let first = ctx.message(lead("818 555 0001"));
    publisher.publish(&first).await;
    created(&ctx, &first, "the first lead").await;

    proxy.cut();
    let second = ctx.message(lead("818 555 0002"));
    publisher.publish(&second).await;
    created(&ctx, &second, "the second lead, after reconnecting").await;
    let text = running.metrics().await;
    assert!(
        metric(&text, "worker_broker_connects_total") >= 2.0,
        "{text}"
    );
    running.stop().await;
    testkit::delete_topology(&ctx.settings).await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_its_consumer_is_dead_lettered_by_the_broker() {
    // A lead that crashes every worker it reaches is returned to the queue each time; the
    // quorum queue's delivery limit ends the loop by moving it to leads.dead.
    use lapin::options::BasicNackOptions;
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let m = ctx.message(lead("818 555 0001"));
    publisher.publish(&m).await;
    let queue = publisher.topology.intake_queue();
    let mut deliveries = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < WAIT {
        let got = publisher
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap();
        let Some(got) = got else {
            if publisher.depth(&publisher.topology.dead_queue()).await == 1 {
                break;
            }
            // Not a plain wait: this loop also counts and requeues every delivery.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        deliveries += 1;
        got.delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
    }
    let limit = shared::amqp::DELIVERY_LIMIT;
    assert!(
        (limit..=limit + 1).contains(&deliveries),
        "{deliveries} deliveries for a limit of {limit}"
    );
    // The broker dead-lettered it, not a worker: a worker still writes its record.
    let running = Running::start(ctx.settings.clone()).await;
    let row = eventually("the dead-letter record", WAIT, || async {
        intake_status(&ctx, &m)
            .await
            .filter(|r| r.status == IntakeStatus::DeadLettered)
    })
    .await;
    let reason = row.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("dead-lettered by the broker") && reason.contains("times"),
        "{reason}"
    );
    assert!(
        i64::from(row.attempts) >= limit,
        "attempts {}",
        row.attempts
    );
    assert_eq!(
        metric(
            &running.metrics().await,
            "worker_dead_letters_total{kind=\"broker\"}"
        ),
        1.0
    );
    running.stop().await;
    let dead = publisher
        .channel
        .basic_get(
            publisher.topology.dead_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("dead-lettered by the broker");
    assert_eq!(
        dead.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
        Some(m.intake_id.to_string())
    );
    testkit::delete_topology(&ctx.settings).await;
}
