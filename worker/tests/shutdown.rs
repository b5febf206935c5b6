//! The `worker` binary as operators run it. SIGTERM in the middle of a burst: it stops
//! consuming, finishes and acknowledges what it received, exits 0; a worker started
//! afterwards finishes the rest. Nothing is lost and nothing happens twice. And its JSON
//! logs of a lead continue the trace the receiver published the lead with.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Ctx, Publisher, eventually, finished_intakes, http_get, lead, metric};
use tokio::sync::oneshot;
use worker::app::Worker;

const BURST: u64 = 1500;
/// Distinct numbers in the burst: the rest are duplicates of them.
const NUMBERS: u64 = 1200;

/// The worker binary on the test's database, broker and Redis prefixes, logging JSON.
fn worker_command(ctx: &Ctx) -> Command {
    let s = &ctx.settings;
    let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &s.database_url)
        .env("AMQP_URL", &s.amqp_url)
        .env("REDIS_URL", &s.redis_url)
        .env("AMQP_PREFIX", &s.amqp_prefix)
        .env("REDIS_PREFIX", &s.redis_prefix)
        .env("RETRY__DELAYS", "100ms,200ms,400ms")
        .env("WORKER_METRICS_ADDR", "127.0.0.1:0")
        .env("LOG_FORMAT", "json");
    command
}

#[tokio::test]
async fn sigterm_mid_burst_loses_nothing_and_repeats_nothing() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let messages: Vec<_> = (0..BURST)
        .map(|i| {
            let mut l = lead(&format!("818 200 {:04}", i % NUMBERS));
            l.notes = Some(format!("note {i}"));
            ctx.message(l)
        })
        .collect();
    publisher.publish_many(&messages).await;

    let mut child = worker_command(&ctx)
        .env("WORKER_CONCURRENCY", "4")
        .env("WORKER_PREFETCH", "64")
        .env("WORKER__BATCH_SIZE", "8")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the worker binary");

    eventually("the worker under way", Duration::from_secs(60), || async {
        (finished_intakes(ctx.conn()).await >= 100).then_some(())
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = eventually("the worker to stop", Duration::from_secs(30), || {
        let status = child.try_wait().expect("wait");
        async move { status }
    })
    .await;
    assert_eq!(status.code(), Some(0), "clean exit");

    // Everything it finished was acknowledged: finished + still queued = the burst.
    let finished = finished_intakes(ctx.conn()).await;
    assert!(
        finished < BURST,
        "stopped mid-burst ({finished} of {BURST} done)"
    );
    let queued = eventually(
        "unacked messages back in the queue",
        Duration::from_secs(10),
        || async {
            let q = u64::from(publisher.depth(&publisher.topology.intake_queue()).await);
            (q + finished >= BURST).then_some(q)
        },
    )
    .await;
    assert_eq!(
        finished + queued,
        BURST,
        "no finished lead left unacknowledged"
    );

    // A new worker takes the rest; none of it had been done before.
    let worker = Worker::build(ctx.settings.clone()).await.expect("build");
    let addr = worker.metrics_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until_stopped(async {
        let _ = rx.await;
    }));
    eventually(
        "every intake terminal",
        Duration::from_secs(120),
        || async { (finished_intakes(ctx.conn()).await == BURST).then_some(()) },
    )
    .await;
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(
        metric(&text, "worker_leads_total{outcome=\"already_done\"}"),
        0.0,
        "{text}"
    );
    let _ = tx.send(());
    task.await.expect("join").expect("clean stop");

    assert_eq!(
        ctx.contacts().await.len() as u64,
        NUMBERS,
        "one contact per number"
    );
    assert_eq!(
        ctx.count("SELECT count(*) FROM contact_notes").await as u64,
        BURST,
        "each note once"
    );
    assert_eq!(
        ctx.count("SELECT count(*) FROM contact_phone_numbers")
            .await as u64,
        NUMBERS
    );
    testkit::delete_topology(&ctx.settings).await;
}

/// The receiver publishes each lead with the client's (or a new) W3C `traceparent`; the
/// worker's log lines of that lead carry its trace id, so one search finds both sides.
#[tokio::test]
async fn a_leads_log_lines_carry_the_trace_id_it_was_published_with() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let message = ctx.message(lead("818 200 7777"));
    publisher
        .publish_traced(&message, &format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .await;

    let mut child = worker_command(&ctx)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the worker binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = oneshot::channel();
    let intake_id = message.intake_id.to_string();
    std::thread::spawn(move || {
        let found = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .find(|v| {
                v["fields"]["message"] == "Lead processed"
                    && v["fields"]["intake_id"] == intake_id.as_str()
            });
        let _ = tx.send(found);
    });
    let line = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("the lead is processed within 60 s")
        .expect("the reader answers")
        .expect("a \"Lead processed\" line for the lead");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line["span"]["name"], "lead", "{line}");
    assert_eq!(line["span"]["trace_id"], trace_id, "{line}");
    assert_eq!(line["span"]["intake_id"], message.intake_id.to_string());
    assert_eq!(line["span"]["account_id"], message.account_id);
}

/// SECURITY.md: the contents of leads are never logged, at any level. The binary logs at
/// `trace` while it processes a lead, dead-letters one of an unknown account and one whose
/// body is not JSON; none of their names, emails, notes or numbers is in its output.
#[tokio::test]
async fn a_leads_contents_never_appear_in_the_worker_logs() {
    let ctx = Ctx::new().await;
    let publisher = Publisher::new(&ctx.settings).await;
    let mut kept = lead("818 200 5151");
    kept.fields.first_name = Some("Zebulonsecret".into());
    kept.fields.email = Some("zeb.secretmail@example.com".into());
    kept.notes = Some("notesecret-7731".into());
    let kept = ctx.message(kept);
    let mut stray = lead("818 200 6262");
    stray.fields.first_name = Some("Quillonsecret".into());
    let stray = support::message_for(ctx.account + 1000, ctx.user, ctx.token, stray);
    publisher.publish_many(&[kept.clone(), stray]).await;
    publisher
        .publish_raw(
            "poison-1",
            br#"{"first_name":"Poisonsecret","phone_number":"+18182007373""#,
        )
        .await;

    let log = std::env::temp_dir().join(format!("worker-log-{}.json", kept.intake_id));
    let mut child = worker_command(&ctx)
        .env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&log).expect("log file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the worker binary");
    let dead = publisher.topology.dead_queue();
    eventually(
        "the lead done and two dead letters",
        Duration::from_secs(60),
        || async {
            (finished_intakes(ctx.conn()).await >= 1 && publisher.depth(&dead).await >= 2)
                .then_some(())
        },
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("the log");
    let _ = std::fs::remove_file(&log);
    // Captured at trace level: the lead's own lines are there.
    assert!(
        text.contains(&kept.intake_id.to_string()),
        "no line of the lead"
    );
    assert!(text.lines().count() > 20, "{text}");
    for secret in [
        "Zebulonsecret",
        "secretmail",
        "notesecret",
        "Quillonsecret",
        "Poisonsecret",
        "2005151",
        "2006262",
        "2007373",
    ] {
        let found: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret))
            .take(3)
            .collect();
        assert!(found.is_empty(), "{secret} logged: {found:?}");
    }
    testkit::delete_topology(&ctx.settings).await;
}
