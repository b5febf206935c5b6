//! `leadctl dlq …` against the real broker and database: list, show, replay (dry run, by id,
//! by filter) and purge.

use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use shared::amqp::Topology;
use shared::config::Settings;
use shared::intake::{IntakeMessage, MESSAGE_VERSION, headers};
use shared::lead::Lead;
use std::process::{Command, Output, Stdio};
use testkit::TestDb;
use uuid::Uuid;

struct Fixture {
    db: TestDb,
    settings: Settings,
    topology: Topology,
    channel: lapin::Channel,
    _conn: Connection,
    account_id: i64,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let settings = testkit::settings(&db);
        let topology = Topology::from_settings(&settings);
        let conn = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
            .await
            .expect("amqp");
        let channel = conn.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        topology.declare(&channel).await.expect("declare");
        let account = leadctl::admin::create_account(&db.conn, "Acme", "US", None)
            .await
            .expect("account");
        Self {
            db,
            settings,
            topology,
            channel,
            _conn: conn,
            account_id: account.id,
        }
    }

    /// Puts a lead in the dead-letter queue as the worker does, with its intake record.
    async fn dead_letter(&self, phone: &str, reason: &str, attempts: i64) -> Uuid {
        let id = Uuid::now_v7();
        let payload = json!({"phone_number": phone, "first_name": "Ann"});
        let lead: Lead = serde_json::from_value(json!({
            "phone_number": shared::phone::PhoneNumber::parse(phone, shared::phone::Region::US)
                .expect("phone"),
        }))
        .expect("lead");
        let msg = IntakeMessage {
            version: MESSAGE_VERSION,
            intake_id: id,
            account_id: self.account_id,
            user_id: 0,
            token_id: 0,
            received_at: chrono::Utc::now(),
            lead,
            payload: payload.clone().into(),
        };
        let mut h = FieldTable::default();
        h.insert(
            headers::DEAD_REASON.into(),
            AMQPValue::LongString(reason.into()),
        );
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(attempts));
        h.insert(
            headers::ACCOUNT_ID.into(),
            AMQPValue::LongLongInt(self.account_id),
        );
        let confirm = self
            .channel
            .basic_publish(
                self.topology.dead_exchange().into(),
                "".into(),
                BasicPublishOptions::default(),
                &serde_json::to_vec(&msg).expect("json"),
                BasicProperties::default()
                    .with_message_id(id.to_string().into())
                    .with_delivery_mode(2)
                    .with_headers(h),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
        self.db
            .conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "INSERT INTO lead_intakes (id, account_id, status, payload, attempts, last_error, received_at) \
                 VALUES ($1, $2, 'dead_lettered', $3, $4, $5, now())",
                [
                    id.into(),
                    self.account_id.into(),
                    payload.into(),
                    i32::try_from(attempts).expect("attempts").into(),
                    reason.into(),
                ],
            ))
            .await
            .expect("intake row");
        id
    }

    fn leadctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_leadctl"))
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("AMQP_URL", &self.settings.amqp_url)
            .env("AMQP_PREFIX", &self.settings.amqp_prefix)
            .env("RETRY__DELAYS", "100ms,200ms,400ms")
            .env("USER", "ops-ann")
            .stdin(Stdio::null())
            .output()
            .expect("run leadctl")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.leadctl(&all);
        assert!(
            out.status.success(),
            "leadctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    }

    async fn intake(&self, id: Uuid) -> (String, i32, Option<String>) {
        let row = self
            .db
            .conn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT status, replay_count, replayed_by FROM lead_intakes WHERE id = $1",
                [id.into()],
            ))
            .await
            .expect("query")
            .expect("row");
        (
            row.try_get("", "status").expect("status"),
            row.try_get("", "replay_count").expect("count"),
            row.try_get("", "replayed_by").expect("by"),
        )
    }

    /// Waits (bounded) until `queue` holds `want` ready messages; returns that count.
    async fn settles_at(&self, queue: String, want: u32) -> u32 {
        let what = format!("{want} ready messages in {queue}");
        testkit::eventually(&what, std::time::Duration::from_secs(5), || async {
            (self.ready(queue.clone()).await == want).then_some(want)
        })
        .await
    }

    async fn ready(&self, queue: String) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare")
            .message_count()
    }

    async fn done(self) {
        testkit::delete_topology(&self.settings).await;
    }
}

#[tokio::test]
async fn list_and_show_report_reason_attempts_age_and_payload() {
    let f = Fixture::new().await;
    let a = f
        .dead_letter("8181234567", "database unavailable after 5 attempts", 5)
        .await;
    let b = f.dead_letter("3105550100", "unknown account", 1).await;

    let list = f.json(&["dlq", "list"]);
    assert_eq!(list["count"], 2);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items[0]["id"], a.to_string());
    assert_eq!(items[0]["reason"], "database unavailable after 5 attempts");
    assert_eq!(items[0]["attempts"], 5);
    assert!(items[0]["age_seconds"].as_i64().is_some_and(|s| s < 60));
    assert_eq!(items[1]["id"], b.to_string());

    // Listing takes nothing away.
    assert_eq!(f.settles_at(f.topology.dead_queue(), 2).await, 2);
    let human = f.leadctl(&["dlq", "list"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("2 dead letter(s)") && text.contains("unknown account"),
        "{text}"
    );

    let shown = f.json(&["dlq", "show", &b.to_string()]);
    assert_eq!(shown["payload"]["phone_number"], "3105550100");
    assert_eq!(shown["account_id"], f.account_id);
    let missing = f.leadctl(&["dlq", "show", &Uuid::new_v4().to_string()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no dead letter"));
    assert_eq!(f.settles_at(f.topology.dead_queue(), 2).await, 2);
    f.done().await;
}

#[tokio::test]
async fn replay_by_id_keeps_the_intake_id_and_records_who() {
    let f = Fixture::new().await;
    let a = f.dead_letter("8181234567", "statement timeout", 3).await;
    let b = f.dead_letter("3105550100", "statement timeout", 3).await;

    let dry = f.json(&["dlq", "replay", &a.to_string(), "--dry-run"]);
    assert_eq!(
        (dry["dry_run"].clone(), dry["replayed"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(
        f.settles_at(f.topology.dead_queue(), 2).await,
        2,
        "dry run changes nothing"
    );
    assert_eq!(f.settles_at(f.topology.intake_queue(), 0).await, 0);
    assert_eq!(f.intake(a).await.0, "dead_lettered");

    let done = f.json(&["dlq", "replay", &a.to_string()]);
    assert_eq!(done["replayed"], 1);
    assert_eq!(done["intake_ids"], json!([a.to_string()]));
    assert_eq!(f.settles_at(f.topology.dead_queue(), 1).await, 1);
    assert_eq!(
        f.intake(a).await,
        ("queued".into(), 1, Some("ops-ann".into()))
    );
    assert_eq!(f.intake(b).await.0, "dead_lettered");

    let msg = f
        .channel
        .basic_get(
            f.topology.intake_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
        .expect("a replayed message");
    let props = &msg.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|m| m.to_string()),
        Some(a.to_string())
    );
    let h = props.headers().clone().expect("headers");
    let get = |k: &str| h.inner().get(k).cloned();
    assert_eq!(get(headers::ATTEMPTS), Some(AMQPValue::LongLongInt(0)));
    assert_eq!(
        get(headers::REPLAYED_BY),
        Some(AMQPValue::LongString("ops-ann".into()))
    );
    assert_eq!(get(headers::DEAD_REASON), None);
    let body: IntakeMessage = serde_json::from_slice(&msg.delivery.data).expect("body");
    assert_eq!(body.intake_id, a);
    f.done().await;
}

/// The console replays with the library: scan, replay one, hand the others back, close.
/// The replayed letter is not handed back too (a nack of a delivery already acknowledged is
/// a channel error, and the broker's close crossing the caller's left it waiting for ever),
/// so the channel stays usable after the release.
#[tokio::test]
async fn a_library_replay_hands_back_only_the_letters_it_did_not_replay() {
    let f = Fixture::new().await;
    let a = f.dead_letter("8181234567", "statement timeout", 3).await;
    let b = f.dead_letter("3105550100", "statement timeout", 3).await;
    let mut dlq = leadctl::dlq::Dlq::open(&f.settings).await.expect("open");
    assert_eq!(dlq.scan(&f.db.conn, 100).await.expect("scan").len(), 2);
    let filter = leadctl::dlq::Filter {
        ids: vec![a],
        account_id: None,
        reason: None,
    };
    let done = dlq
        .replay(&f.db.conn, &filter, "console:ops", || {})
        .await
        .expect("replay");
    assert_eq!(done.len(), 1);
    dlq.release().await.expect("release");
    // One more round trip on the same channel: refused if the release broke it.
    assert_eq!(dlq.purge().await.expect("the channel is still open"), 1);
    dlq.close().await;
    assert_eq!(f.settles_at(f.topology.intake_queue(), 1).await, 1);
    assert_eq!(f.intake(b).await.0, "dead_lettered");
    f.done().await;
}

#[tokio::test]
async fn replay_by_filter_or_all_and_refuse_without_a_selection() {
    let f = Fixture::new().await;
    let a = f.dead_letter("8181234567", "statement timeout", 5).await;
    let _b = f.dead_letter("3105550100", "unknown account", 1).await;
    let c = f.dead_letter("2125550100", "Statement Timeout", 5).await;

    let none = f.leadctl(&["dlq", "replay"]);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("say what to replay"));

    let by_reason = f.json(&["dlq", "replay", "--reason", "statement timeout"]);
    assert_eq!(by_reason["replayed"], 2);
    assert_eq!(
        by_reason["intake_ids"],
        json!([a.to_string(), c.to_string()])
    );
    assert_eq!(f.settles_at(f.topology.dead_queue(), 1).await, 1);

    let all = f.json(&["dlq", "replay", "--all"]);
    assert_eq!(all["replayed"], 1);
    assert_eq!(f.settles_at(f.topology.dead_queue(), 0).await, 0);
    assert_eq!(f.settles_at(f.topology.intake_queue(), 3).await, 3);
    f.done().await;
}

#[tokio::test]
async fn purge_asks_unless_yes() {
    let f = Fixture::new().await;
    f.dead_letter("8181234567", "poison", 1).await;
    f.dead_letter("3105550100", "poison", 1).await;

    let refused = f.leadctl(&["dlq", "purge"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("without --yes"));
    assert_eq!(f.settles_at(f.topology.dead_queue(), 2).await, 2);

    let purged = f.json(&["dlq", "purge", "--yes"]);
    assert_eq!(purged["purged"], 2);
    assert_eq!(f.settles_at(f.topology.dead_queue(), 0).await, 0);
    f.done().await;
}
