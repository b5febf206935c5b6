//! Dead-letter replay end to end: a lead dead-lettered for a real reason (the worker's
//! database role lost a privilege and every retry failed), the cause fixed, `leadctl dlq
//! replay` run as operators run it, and the lead ends as exactly one contact, however often
//! it is replayed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The worker's test support (a seeded account, a confirmed publisher, a worker role whose
// privileges can be taken away): this test runs the worker too.
#[path = "../../worker/tests/support/mod.rs"]
mod support;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, options::BasicGetOptions};
use serde_json::Value;
use shared::config::Settings;
use shared::intake::IntakeStatus;
use shared::intake::headers;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Ctx, Publisher, WorkerRole, eventually, http_get, lead, metric};
use tokio::sync::oneshot;
use worker::app::Worker;

const WAIT: Duration = Duration::from_secs(30);

/// Runs the `leadctl` binary with `args` and returns its JSON. The process runs on the
/// blocking pool: this test's worker runs on the test's own (single-threaded) runtime, and
/// a `leadctl` waiting for a row lock the worker holds (the second copy of a dead letter
/// being recorded) must not stop the worker from committing it.
async fn leadctl(ctx: &Ctx, args: &[&str]) -> Value {
    let delays: Vec<String> = ctx
        .settings
        .retry
        .delays
        .iter()
        .map(|d| format!("{}ms", d.as_millis()))
        .collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_leadctl"));
    command
        .arg("--json")
        .args(args)
        .env_remove("CONFIG_FILE")
        .env("DATABASE_URL", &ctx.db.url)
        .env("AMQP_URL", &ctx.settings.amqp_url)
        .env("AMQP_PREFIX", &ctx.settings.amqp_prefix)
        .env("RETRY__DELAYS", delays.join(","))
        .env("USER", "ops-ann")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("leadctl's thread")
        .expect("run leadctl");
    assert!(
        out.status.success(),
        "leadctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

async fn start(
    settings: Settings,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    SocketAddr,
) {
    let worker = Worker::build(settings).await.expect("build");
    let addr = worker.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until_stopped(async {
        let _ = rx.await;
    }));
    (tx, task, addr)
}

#[tokio::test]
async fn a_dead_letter_replayed_after_the_fix_ends_as_one_contact_even_when_replayed_twice() {
    let ctx = Ctx::new().await;
    let role = WorkerRole::create(&ctx.db).await;
    role.revoke(&ctx.db, "INSERT ON contacts").await;
    let mut settings = ctx.settings.clone();
    settings.database_url = role.url.clone();
    let publisher = Publisher::new(&settings).await;
    let (stop, task, metrics_addr) = start(settings.clone()).await;

    // Every attempt fails (three short retries), then the lead is dead-lettered.
    let m = ctx.message(lead("818 555 0142"));
    publisher.publish(&m).await;
    let dead_queue = publisher.topology.dead_queue();
    eventually("the dead letter", WAIT, || async {
        let row = ctx.intake_row(m.intake_id).await?;
        (row.status == IntakeStatus::DeadLettered && publisher.depth(&dead_queue).await == 1)
            .then_some(())
    })
    .await;
    assert!(ctx.contacts().await.is_empty());
    let listed = leadctl(&ctx, &["dlq", "list"]).await;
    assert_eq!(listed["items"][0]["id"], m.intake_id.to_string());
    assert!(
        listed["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{listed}"
    );

    // The operator fixes the cause and replays the lead by its id.
    role.grant(&ctx.db, "INSERT ON contacts").await;
    let replayed = leadctl(&ctx, &["dlq", "replay", &m.intake_id.to_string()]).await;
    assert_eq!(replayed["replayed"], 1);
    let row = eventually("the replayed lead", WAIT, || async {
        ctx.intake_row(m.intake_id)
            .await
            .filter(|r| r.status == IntakeStatus::Created)
    })
    .await;
    let contacts = ctx.contacts().await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(row.contact_id, Some(contacts[0].id));
    assert_eq!(contacts[0].phone_number, "+18185550142");
    assert_eq!(publisher.depth(&dead_queue).await, 0);

    // The same intake dead-lettered again (a copy left behind) and replayed once more: it
    // finished already, so nothing happens twice.
    let mut h = FieldTable::default();
    h.insert(
        headers::DEAD_REASON.into(),
        AMQPValue::LongString("a stale copy".into()),
    );
    h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(4));
    publisher
        .channel
        .basic_publish(
            publisher.topology.dead_exchange().into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&m).unwrap(),
            BasicProperties::default()
                .with_message_id(m.intake_id.to_string().into())
                .with_delivery_mode(2)
                .with_headers(h),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let again = leadctl(&ctx, &["dlq", "replay", "--all"]).await;
    assert_eq!(again["replayed"], 1);
    // And republished straight to the intake queue, as a second replay would.
    publisher.publish(&m).await;
    eventually("both copies found already done", WAIT, || async {
        let (_, text) = http_get(metrics_addr, "/metrics").await;
        (metric(&text, "worker_leads_total{outcome=\"already_done\"}") >= 2.0).then_some(())
    })
    .await;
    let row = ctx.intake_row(m.intake_id).await.unwrap();
    assert_eq!(row.status, IntakeStatus::Created);
    assert_eq!(row.contact_id, Some(contacts[0].id));
    assert_eq!(ctx.contacts().await.len(), 1, "still exactly one contact");
    assert_eq!(
        ctx.count("SELECT count(*) FROM contact_phone_numbers")
            .await,
        1
    );
    assert!(
        publisher
            .channel
            .basic_get(dead_queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none(),
        "nothing dead-lettered again"
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    role.drop(&ctx.db).await;
    testkit::delete_topology(&ctx.settings).await;
}
