//! `leadctl` as an operator runs it: the real binary against a real, fresh database.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::Value;
use std::process::{Command, Output};
use testkit::TestDb;

fn leadctl(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leadctl"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("CONFIG_FILE")
        .output()
        .expect("run leadctl")
}

/// Runs a command that must succeed with `--json` and returns its one JSON object, which
/// has the `id` of what was created or changed.
fn json(db: &TestDb, args: &[&str]) -> Value {
    let v = json_object(db, args);
    assert!(v["id"].is_i64(), "object with id: {v}");
    v
}

/// Runs a command that must succeed with `--json`, print exactly one JSON object and
/// nothing on stderr; returns the object.
fn json_object(db: &TestDb, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = leadctl(db, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "leadctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert!(
        v.is_object() && v.get("id").is_some(),
        "object with id: {v}"
    );
    v
}

fn fails(db: &TestDb, args: &[&str], stderr_has: &str) {
    let out = leadctl(db, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "leadctl {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    assert!(
        stderr.contains(stderr_has),
        "leadctl {args:?}: stderr {stderr:?} should mention {stderr_has:?}"
    );
}

fn id(v: &Value) -> String {
    v["id"].to_string()
}

#[tokio::test]
async fn every_create_command_prints_the_new_id() {
    let db = TestDb::new().await;
    let account = json(
        &db,
        &["account", "create", "--name", "Acme", "--rate-limit", "50"],
    );
    assert_eq!(account["default_region"], "US");
    assert_eq!(account["rate_limit_per_minute"], 50);
    let acc = id(&account);

    let ann = json(&db, &["user", "create", "--account", &acc, "--name", "Ann"]);
    assert_eq!(
        (ann["active"].clone(), ann["available"].clone()),
        (true.into(), true.into())
    );
    let bob = json(
        &db,
        &[
            "user",
            "create",
            "--account",
            &acc,
            "--name",
            "Bob",
            "--inactive",
            "--unavailable",
        ],
    );
    assert_eq!(
        (bob["active"].clone(), bob["available"].clone()),
        (false.into(), false.into())
    );

    let group = json(
        &db,
        &[
            "ring-group",
            "create",
            "--account",
            &acc,
            "--name",
            "Sales",
            "--members",
            &format!("{},{}", id(&ann), id(&bob)),
        ],
    );
    assert_eq!(group["members"], serde_json::json!([ann["id"], bob["id"]]));

    for kind in ["line", "tag", "disposition", "sequence"] {
        let v = json(&db, &[kind, "create", "--account", &acc, "--name", "First"]);
        assert_eq!(v["name"], "First");
        assert_eq!(v["account_id"], account["id"]);
    }

    // --json is global: accepted after the subcommand too.
    let out = leadctl(
        &db,
        &[
            "tag",
            "create",
            "--account",
            &acc,
            "--name",
            "Second",
            "--json",
        ],
    );
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["name"], "Second");
}

#[tokio::test]
async fn user_set_changes_flags() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let u = id(&json(
        &db,
        &["user", "create", "--account", &acc, "--name", "Ann"],
    ));
    let v = json(&db, &["user", "set", &u, "--unavailable"]);
    assert_eq!(
        (v["active"].clone(), v["available"].clone()),
        (true.into(), false.into())
    );
    let v = json(&db, &["user", "set", &u, "--inactive", "--available"]);
    assert_eq!(
        (v["active"].clone(), v["available"].clone()),
        (false.into(), true.into())
    );
    fails(&db, &["user", "set", &u], "nothing to change");
    fails(
        &db,
        &["user", "set", &u, "--active", "--inactive"],
        "cannot be used with",
    );
    fails(
        &db,
        &["user", "set", "999999", "--active"],
        "user 999999 not found",
    );
}

#[tokio::test]
async fn tokens_are_shown_once_and_revocable() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let u = id(&json(
        &db,
        &["user", "create", "--account", &acc, "--name", "Ann"],
    ));
    let t = json(&db, &["token", "create", "--user", &u, "--label", "zapier"]);
    let token = t["token"].as_str().expect("token").to_owned();
    assert!(token.starts_with("lit_"));
    assert_eq!(t["label"], "zapier");

    let revoked = json(&db, &["token", "revoke", &id(&t)]);
    assert!(revoked["revoked_at"].is_string());
    assert!(
        !revoked.to_string().contains(&token),
        "revoke never shows the token"
    );

    // Human output names the token once, at creation only.
    let out = leadctl(&db, &["token", "create", "--user", &u]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("shown only this once"));
    fails(
        &db,
        &["token", "revoke", "424242"],
        "token 424242 not found",
    );
    fails(
        &db,
        &["token", "create", "--user", "424242"],
        "user 424242 not found",
    );
}

#[tokio::test]
async fn powerdialer_list_shows_queued_entries_top_first() {
    let db = TestDb::new().await;
    let acc = json(&db, &["account", "create", "--name", "Acme"]);
    let u = json(
        &db,
        &["user", "create", "--account", &id(&acc), "--name", "Ann"],
    );
    let (a, uid) = (
        acc["id"].as_i64().expect("id"),
        u["id"].as_i64().expect("id"),
    );
    // The second waits for its contact's calling window (§9).
    for (phone, position, not_before) in [
        ("+18181234567", 5, "NULL"),
        ("+13105550100", -2, "'2030-01-02T16:00:00Z'"),
    ] {
        use sea_orm::ConnectionTrait;
        db.conn
            .execute_unprepared(&format!(
                "WITH c AS (INSERT INTO contacts (account_id, phone_number) VALUES ({a}, '{phone}') RETURNING id) \
                 INSERT INTO powerdialer_items (account_id, user_id, contact_id, position, not_before) \
                 SELECT {a}, {uid}, id, {position}, {not_before} FROM c"
            ))
            .await
            .expect("seed");
    }
    let list = json(&db, &["powerdialer", "list", "--user", &uid.to_string()]);
    let items = list["items"].as_array().expect("items");
    let positions: Vec<i64> = items
        .iter()
        .map(|i| i["position"].as_i64().expect("position"))
        .collect();
    assert_eq!(positions, vec![-2, 5]);
    let not_before: Vec<Option<chrono::DateTime<chrono::Utc>>> = items
        .iter()
        .map(|i| serde_json::from_value(i["not_before"].clone()).expect("not_before"))
        .collect();
    assert_eq!(
        not_before,
        vec![Some("2030-01-02T16:00:00Z".parse().expect("time")), None]
    );
    let out = leadctl(&db, &["powerdialer", "list", "--user", &uid.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 queued"), "{text}");
    assert!(
        text.contains("not before 2030-01-02T16:00:00+00:00"),
        "{text}"
    );
}

#[tokio::test]
async fn account_set_changes_the_channels_that_need_consent() {
    let db = TestDb::new().await;
    let created = json(&db, &["account", "create", "--name", "Acme"]);
    assert_eq!(created["require_consent"], serde_json::json!(["sms"]));
    let acc = id(&created);
    let v = json(
        &db,
        &[
            "account",
            "set",
            &acc,
            "--require-consent",
            " SMS,call,sms ",
        ],
    );
    assert_eq!(v["require_consent"], serde_json::json!(["call", "sms"]));
    for nothing in ["none", ""] {
        let v = json(&db, &["account", "set", &acc, "--require-consent", nothing]);
        assert_eq!(v["require_consent"], serde_json::json!([]));
    }
    let out = leadctl(&db, &["account", "set", &acc, "--require-consent", "call"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("consent required for call"),
        "{text}"
    );
    // What the worker reads.
    let stored = shared::entities::account::Entity::find_by_id(acc.parse::<i64>().expect("id"))
        .one(&db.conn)
        .await
        .expect("read")
        .expect("account");
    assert_eq!(stored.require_consent, ["call"]);
    fails(
        &db,
        &["account", "set", &acc, "--require-consent", "call,email"],
        "\"email\" is not a channel",
    );
    fails(&db, &["account", "set", &acc], "--require-consent");
    fails(
        &db,
        &["account", "set", "424242", "--require-consent", "sms"],
        "account 424242 not found",
    );
}

#[tokio::test]
async fn demo_seed_is_repeatable_and_issues_a_fresh_token() {
    let db = TestDb::new().await;
    let first = json(&db, &["demo", "seed"]);
    let second = json(&db, &["demo", "seed"]);
    for key in [
        "account_id",
        "ring_group_id",
        "sequence_id",
        "tag_id",
        "line_id",
        "disposition_status_id",
        "user_ids",
    ] {
        assert_eq!(first[key], second[key], "{key} reused");
    }
    assert_eq!(first["user_ids"].as_array().map(Vec::len), Some(3));
    assert_ne!(first["token"], second["token"], "a new token each run");
    assert_eq!(
        shared::token::hash(first["token"].as_str().expect("token")).len(),
        64
    );
}

#[tokio::test]
async fn bad_arguments_get_a_clear_message_and_non_zero_exit() {
    let db = TestDb::new().await;
    fails(&db, &["account", "create"], "--name");
    fails(
        &db,
        &["account", "create", "--name", "  "],
        "name must not be blank",
    );
    fails(
        &db,
        &["account", "create", "--name", "X", "--region", "ZZ"],
        "unknown region",
    );
    fails(
        &db,
        &["user", "create", "--account", "abc", "--name", "A"],
        "invalid value 'abc'",
    );
    fails(
        &db,
        &["user", "create", "--account", "777", "--name", "A"],
        "account 777 not found",
    );
    fails(
        &db,
        &["tag", "create", "--account", "777", "--name", "A"],
        "account 777 not found",
    );
    fails(&db, &["frobnicate"], "unrecognized subcommand");
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let other = id(&json(&db, &["account", "create", "--name", "Other"]));
    let stranger = id(&json(
        &db,
        &["user", "create", "--account", &other, "--name", "S"],
    ));
    fails(
        &db,
        &[
            "ring-group",
            "create",
            "--account",
            &acc,
            "--name",
            "G",
            "--members",
            &stranger,
        ],
        "is not a user of account",
    );
    json(&db, &["tag", "create", "--account", &acc, "--name", "dup"]);
    fails(
        &db,
        &["tag", "create", "--account", &acc, "--name", "dup"],
        "already exists",
    );
}

#[test]
fn an_unreachable_database_is_reported_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_leadctl"))
        .args(["account", "create", "--name", "X"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Failed to connect to the database"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

/// `leadctl` pointed at `settings`' database, broker prefix and Redis prefix.
fn leadctl_on(settings: &shared::config::Settings, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadctl"));
    cmd.args(args)
        .env("DATABASE_URL", &settings.database_url)
        .env("AMQP_URL", &settings.amqp_url)
        .env("AMQP_PREFIX", &settings.amqp_prefix)
        .env("REDIS_URL", &settings.redis_url)
        .env("REDIS_PREFIX", &settings.redis_prefix)
        .env("RETRY__DELAYS", "100ms,200ms,400ms")
        .env_remove("CONFIG_FILE");
    cmd
}

fn status_json(settings: &shared::config::Settings) -> Value {
    let out = leadctl_on(settings, &["status", "--json"])
        .output()
        .expect("run leadctl status");
    assert!(
        out.status.success(),
        "leadctl status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one JSON object: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("JSON")
}

/// Polls `status --json` until `ready` holds (bounded).
async fn status_when(
    settings: &shared::config::Settings,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    testkit::eventually(
        &format!("status showing {what}"),
        std::time::Duration::from_secs(30),
        || {
            let s = status_json(settings);
            let shown = ready(&s).then_some(s);
            async move { shown }
        },
    )
    .await
}

#[tokio::test]
async fn status_reports_intake_queues_workers_and_dead_letters() {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use redis::AsyncCommands;
    use sea_orm::ConnectionTrait;
    use shared::intake::{IntakeMessage, MESSAGE_VERSION};

    let db = TestDb::new().await;
    let settings = testkit::settings(&db);
    let account = leadctl::admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .expect("account")
        .id;
    let user = leadctl::admin::create_user(&db.conn, account, "Ann", None, true, true)
        .await
        .expect("user")
        .id;
    let token = leadctl::admin::create_token(&db.conn, user, None)
        .await
        .expect("token")
        .row
        .id;

    // Nothing runs yet: no worker has reported, nothing was received.
    let idle = status_json(&settings);
    assert!(idle["id"].is_null(), "{idle}");
    assert_eq!(idle["workers"], serde_json::json!([]), "{idle}");
    assert_eq!(idle["intake"]["total"], 0, "{idle}");
    assert_eq!(idle["dead_letters"]["total"], 0, "{idle}");
    assert_eq!(idle["message_steps"]["pending"], 0, "{idle}");
    assert_eq!(idle["events"]["awaiting_fan_out"], 0, "{idle}");
    assert_eq!(idle["events"]["pending_deliveries"], 0, "{idle}");

    // A message step due 90 s ago that no send loop took (no provider is configured).
    db.conn
        .execute_unprepared(&format!(
            "WITH c AS (INSERT INTO contacts (account_id, phone_number) \
                        VALUES ({account}, '+12125550199') RETURNING id), \
                  s AS (INSERT INTO sequences (account_id, name) VALUES ({account}, 'S') RETURNING id), \
                  e AS (INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id) \
                        SELECT {account}, c.id, s.id FROM c, s RETURNING id, contact_id) \
             INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, due_at) \
             SELECT {account}, contact_id, 'outbound', 'scheduled', id, now() - interval '90 seconds' FROM e"
        ))
        .await
        .expect("seed a due step");
    let due = status_json(&settings);
    assert_eq!(due["message_steps"]["pending"], 1, "{due}");
    assert_eq!(due["message_steps"]["overdue"], 1, "{due}");
    assert!(
        due["message_steps"]["oldest_overdue_seconds"]
            .as_i64()
            .unwrap_or(0)
            >= 90,
        "{due}"
    );

    // A batch of leads' two events, written to the outbox 60 s ago and not yet turned into
    // deliveries (no delivery loop runs yet).
    db.conn
        .execute_unprepared(&format!(
            "INSERT INTO event_batches (created_at, ids, account_ids, types, intake_ids,                                         contact_ids, bodies)              VALUES (now() - interval '60 seconds',                      ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY[{account}, {account}]::bigint[],                      ARRAY['lead.processed', 'contact.created'],                      ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY[0, 0]::bigint[],                      ARRAY['{{}}', '{{}}'])"
        ))
        .await
        .expect("seed an outbox row");
    let waiting = status_json(&settings);
    assert_eq!(waiting["events"]["awaiting_fan_out"], 2, "{waiting}");
    assert!(
        waiting["events"]["oldest_awaiting_seconds"]
            .as_i64()
            .unwrap_or(0)
            >= 60,
        "{waiting}"
    );

    // A worker: its heartbeat appears, consuming, and the intake queue has a consumer.
    let worker = worker::app::Worker::build(settings.clone())
        .await
        .expect("build");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let intake_queue = format!("{}leads.intake", settings.amqp_prefix);
    status_when(&settings, "a consuming worker", |s| {
        s["workers"][0]["alive"] == true
            && s["workers"][0]["consuming"] == true
            && s["queues"].as_array().is_some_and(|qs| {
                qs.iter()
                    .any(|q| q["name"] == intake_queue.as_str() && q["consumers"] == 1)
            })
    })
    .await;

    // One lead through the queue, published as the receiver does (with its timestamp).
    let received_at = chrono::Utc::now() - chrono::Duration::seconds(3);
    let message = IntakeMessage {
        version: MESSAGE_VERSION,
        intake_id: uuid::Uuid::now_v7(),
        account_id: account,
        user_id: user,
        token_id: token,
        received_at,
        lead: serde_json::from_value(serde_json::json!({
            "phone_number": shared::phone::PhoneNumber::parse("8181234567", shared::phone::Region::US)
                .expect("phone"),
        }))
        .expect("lead"),
        payload: serde_json::json!({"phone_number": "8181234567"}).into(),
    };
    let conn =
        lapin::Connection::connect(&settings.amqp_url, lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    let confirm = channel
        .basic_publish(
            format!("{}leads", settings.amqp_prefix).as_str().into(),
            shared::amqp::INTAKE_ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&message).expect("json"),
            lapin::BasicProperties::default()
                .with_message_id(message.intake_id.to_string().into())
                .with_delivery_mode(2)
                .with_timestamp(u64::try_from(received_at.timestamp()).expect("time")),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    let _ = conn.close(0, "done".into()).await;

    // What the receivers count (202 ×4, 429 ×1 two seconds ago), and two reasons of dead
    // letters in the records.
    let mut redis = redis::Client::open(settings.redis_url.as_str())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = shared::status::intake_stats_key(
        &settings.redis_prefix,
        chrono::Utc::now().timestamp() - 2,
    );
    let _: () = redis.hincr(&key, "202", 4).await.expect("hincr");
    let _: () = redis.hincr(&key, "429", 1).await.expect("hincr");
    let _: () = redis.expire(&key, 120).await.expect("expire");
    for (reason, n) in [("database timeout", 2), ("unknown account", 1)] {
        for _ in 0..n {
            db.conn
                .execute_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    "INSERT INTO lead_intakes (id, account_id, status, payload, attempts, last_error, received_at) \
                     VALUES ($1, $2, 'dead_lettered', '{}', 6, $3, now())",
                    [uuid::Uuid::now_v7().into(), account.into(), reason.into()],
                ))
                .await
                .expect("intake row");
        }
    }

    let s = status_when(&settings, "the lead processed", |s| {
        s["workers"][0]["leads"] == 1 && !s["workers"][0]["head_received_at"].is_null()
    })
    .await;
    assert_eq!(s["intake"]["total"], 5, "{s:#}");
    assert_eq!(s["intake"]["by_status"]["202"], 4, "{s:#}");
    assert_eq!(s["intake"]["by_status"]["429"], 1, "{s:#}");
    let queues = s["queues"].as_array().expect("queues");
    assert_eq!(
        queues.len(),
        6,
        "intake, dead, dead records and three retry queues: {s:#}"
    );
    assert!(
        queues
            .iter()
            .all(|q| q["depth"] == 0 && q["missing"] == false),
        "{s:#}"
    );
    assert_eq!(
        s["oldest_waiting_seconds"], 0,
        "an empty queue has nothing waiting"
    );
    assert_eq!(
        s["workers"][0]["head_received_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp()),
        Some(received_at.timestamp()),
        "the head is the lead's received time: {s:#}"
    );
    assert_eq!(s["dead_letters"]["total"], 3, "{s:#}");
    assert_eq!(
        s["dead_letters"]["by_reason"],
        serde_json::json!([{"reason": "database timeout", "count": 2},
                           {"reason": "unknown account", "count": 1}])
    );
    assert_eq!(s["errors"], serde_json::json!([]));

    // The human screen says the same.
    let out = leadctl_on(&settings, &["status"]).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for expected in ["5 requests", &intake_queue, "consuming", "database timeout"] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }

    // A worker that stops cleanly takes its heartbeat with it.
    let _ = stop.send(());
    task.await.expect("join").expect("worker");
    let s = status_json(&settings);
    assert_eq!(s["workers"], serde_json::json!([]), "{s:#}");
    testkit::delete_topology(&settings).await;
}

#[tokio::test]
async fn status_watch_prints_one_json_object_per_refresh() {
    let db = TestDb::new().await;
    let settings = testkit::settings(&db);
    let mut child = leadctl_on(&settings, &["status", "--watch", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(|l| l.expect("line"))
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(std::time::Duration::from_secs(20), lines)
        .await
        .expect("two refreshes within 20 s")
        .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    let at: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON object per line");
            v["at"].as_str().expect("at").to_owned()
        })
        .collect();
    assert_ne!(at[0], at[1], "each line is a new reading");
}

#[test]
fn topology_definitions_follow_the_configured_prefix() {
    let out = Command::new(env!("CARGO_BIN_EXE_leadctl"))
        .args(["--json", "topology", "definitions", "--vhost", "staging"])
        .env("AMQP_PREFIX", "staging.")
        .env("RETRY__DELAYS", "1s,5s")
        .env_remove("CONFIG_FILE")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let queues: Vec<&str> = v["definitions"]["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        queues,
        [
            "staging.leads.intake",
            "staging.leads.dead",
            "staging.leads.dead.records",
            "staging.leads.delay.1000ms",
            "staging.leads.delay.5000ms"
        ]
    );
    assert!(
        v["definitions"]["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .all(|q| q["vhost"] == "staging")
    );
}

#[tokio::test]
async fn token_mappings_defaults_and_google_key_show_on_the_token() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let user = id(&json(
        &db,
        &["user", "create", "--account", &acc, "--name", "Ann"],
    ));
    let token = id(&json(&db, &["token", "create", "--user", &user]));
    let group = id(&json(
        &db,
        &[
            "ring-group",
            "create",
            "--account",
            &acc,
            "--name",
            "Sales",
            "--members",
            &user,
        ],
    ));
    let sequence = id(&json(
        &db,
        &["sequence", "create", "--account", &acc, "--name", "S"],
    ));
    let tag = id(&json(
        &db,
        &["tag", "create", "--account", &acc, "--name", "T"],
    ));

    let mapped = json(
        &db,
        &[
            "token",
            "map",
            &token,
            "Your phone=phone_number",
            "Full name=name",
        ],
    );
    assert_eq!(
        mapped["field_map"],
        serde_json::json!([["Your phone", "phone_number"], ["Full name", "name"]])
    );
    let defaults = json(
        &db,
        &[
            "token",
            "defaults",
            &token,
            "--ring-group",
            &group,
            "--distribute",
            "--powerdialer",
            "bottom",
            "--sequence",
            &sequence,
            "--tag",
            &tag,
        ],
    );
    let want = serde_json::json!({
        "ring_group_id": group.parse::<i64>().expect("id"),
        "distribute_to_ring_group": true,
        "add_to_powerdialer": true,
        "powerdialer_position": "bottom",
        "sequence_id": sequence.parse::<i64>().expect("id"),
        "tag_id": tag.parse::<i64>().expect("id"),
    });
    assert_eq!(defaults["default_actions"], want);
    let keyed = json(&db, &["token", "google-key", &token, "k-123"]);
    assert_eq!(keyed["google_key_set"], true);

    let shown = json(&db, &["token", "show", &token]);
    assert_eq!(shown["id"].to_string(), token);
    assert_eq!(shown["field_map"], mapped["field_map"]);
    assert_eq!(shown["default_actions"], want);
    assert_eq!(shown["google_key_set"], true);
    assert!(
        !shown.to_string().contains("k-123"),
        "the key is a secret: {shown}"
    );
    // Setting a key gave the account the tag its test leads get.
    fails(
        &db,
        &["tag", "create", "--account", &acc, "--name", "test"],
        "already exists",
    );

    // Clearing.
    let cleared = json(&db, &["token", "map", &token, "--clear"]);
    assert_eq!(cleared["field_map"], serde_json::json!([]));
    let cleared = json(&db, &["token", "defaults", &token, "--clear"]);
    assert_eq!(cleared["default_actions"], serde_json::json!({}));

    // Refusals name the problem.
    fails(
        &db,
        &["token", "map", &token, "Phone=telephone"],
        "telephone",
    );
    fails(&db, &["token", "map", &token, "no-equals"], "not a mapping");
    fails(
        &db,
        &["token", "defaults", &token, "--ring-group", "999999"],
        "ring_group_id",
    );
    fails(&db, &["token", "defaults", &token], "at least one default");
    fails(&db, &["token", "show", "999999"], "not found");
}

/// The channels `dnc check` says a number is blocked for.
fn blocked(db: &TestDb, account: &str, number: &str) -> Value {
    let v = json_object(db, &["dnc", "check", "--account", account, number]);
    assert_eq!(v["number"], "+18185550100", "{v}");
    v["blocked"].clone()
}

#[tokio::test]
async fn dnc_add_check_list_and_remove_read_numbers_in_any_format() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let none: Value = serde_json::json!([]);
    assert_eq!(blocked(&db, &acc, "(818) 555-0100"), none);

    let added = json(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "(818) 555-0100",
            "--channel",
            "sms",
            "--reason",
            " texted STOP ",
            "--expires",
            "30d",
        ],
    );
    assert_eq!(
        (
            &added["phone_number"],
            &added["channel"],
            &added["reason"],
            &added["source"],
            &added["created"],
            &added["in_force"],
        ),
        (
            &"+18185550100".into(),
            &"sms".into(),
            &"texted STOP".into(),
            &"operator".into(),
            &true.into(),
            &true.into()
        )
    );
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(added["expires_at"].clone()).expect("expires_at");
    let in_30_days = chrono::Utc::now() + chrono::Duration::days(30);
    assert!((expires - in_30_days).num_seconds().abs() < 60, "{expires}");
    assert_eq!(
        blocked(&db, &acc, "+1 818-555-0100"),
        serde_json::json!(["sms"])
    );

    // Adding again (another format) replaces the reason and the expiry of the same entry.
    let again = json(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "1.818.555.0100",
            "--channel",
            "sms",
        ],
    );
    assert_eq!(again["id"], added["id"]);
    assert_eq!(again["created"], false);
    assert_eq!(
        (&again["reason"], &again["expires_at"]),
        (&Value::Null, &Value::Null)
    );

    // The default channel is all.
    let all = json(&db, &["dnc", "add", "--account", &acc, "8185550100"]);
    assert_eq!(all["channel"], "all");
    assert_eq!(
        blocked(&db, &acc, "818 555 0100"),
        serde_json::json!(["call", "sms"])
    );
    let check = json_object(&db, &["dnc", "check", "--account", &acc, "8185550100"]);
    assert_eq!(
        check["entries"].as_array().map(Vec::len),
        Some(2),
        "{check}"
    );
    let out = leadctl(&db, &["dnc", "check", "--account", &acc, "8185550100"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("+18185550100 is blocked for call and sms"),
        "{text}"
    );

    let list = json(&db, &["dnc", "list", "--account", &acc]);
    assert_eq!(
        (&list["id"], &list["account_id"]),
        (
            &acc.parse::<i64>().expect("id").into(),
            &acc.parse::<i64>().expect("id").into()
        )
    );
    assert_eq!(list["total"], 2);
    let channels: Vec<&str> = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["channel"].as_str().expect("channel"))
        .collect();
    assert_eq!(channels, ["sms", "all"], "oldest first");
    for key in ["phone_number", "reason", "expires_at", "created_at"] {
        assert!(list["entries"][0].get(key).is_some(), "{key}: {list}");
    }
    let out = leadctl(&db, &["dnc", "list", "--account", &acc, "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 entries (the first 1 shown")
            && text.contains("+18185550100 (messages), no reason given, never expires"),
        "{text}"
    );

    // Remove one channel, then every entry of the number; removing nothing is no error.
    let removed = json_object(
        &db,
        &[
            "dnc",
            "remove",
            "--account",
            &acc,
            "(818) 555-0100",
            "--channel",
            "sms",
        ],
    );
    assert_eq!(removed["removed"], 1);
    assert_eq!(
        blocked(&db, &acc, "8185550100"),
        serde_json::json!(["call", "sms"])
    );
    let removed = json_object(&db, &["dnc", "remove", "--account", &acc, "8185550100"]);
    assert_eq!(removed["removed"], 1);
    assert_eq!(removed["entries"][0]["channel"], "all");
    assert_eq!(blocked(&db, &acc, "8185550100"), none);
    let removed = json_object(&db, &["dnc", "remove", "--account", &acc, "8185550100"]);
    assert_eq!(removed["removed"], 0);
}

#[tokio::test]
async fn dnc_add_revokes_the_numbers_consent_on_its_channels_and_keeps_the_records() {
    use sea_orm::ConnectionTrait;
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    // A contact whose second number is the one put on the list, with consent on three
    // channels; and another account's contact of the same number.
    let other = id(&json(&db, &["account", "create", "--name", "Other"]));
    for (account, numbers) in [
        (&acc, "'+12125550100', '+18185550100'"),
        (&other, "'+18185550100'"),
    ] {
        db.conn
            .execute_unprepared(&format!(
                "WITH n AS (SELECT ARRAY[{numbers}] AS all_numbers), \
                 c AS (INSERT INTO contacts (account_id, phone_number) SELECT {account}, all_numbers[1] FROM n RETURNING id), \
                 p AS (INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
                       SELECT {account}, c.id, x.number, x.i = 1 FROM c, n, unnest(n.all_numbers) WITH ORDINALITY AS x(number, i)) \
                 INSERT INTO contact_consents (account_id, contact_id, channel, given_at) \
                 SELECT {account}, id, ch, now() - interval '1 day' FROM c, unnest(ARRAY['call', 'sms', 'email']) ch"
            ))
            .await
            .expect("seed");
    }
    let consents = |account: String| {
        let conn = db.conn.clone();
        async move {
            shared::entities::contact_consent::Entity::find()
                .filter(
                    shared::entities::contact_consent::Column::AccountId
                        .eq(account.parse::<i64>().expect("id")),
                )
                .order_by_asc(shared::entities::contact_consent::Column::Channel)
                .all(&conn)
                .await
                .expect("consents")
                .into_iter()
                .map(|c| (c.channel, c.revoked_at, c.revoked_reason))
                .collect::<Vec<_>>()
        }
    };

    let added = json(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "(818) 555-0100",
            "--channel",
            "sms",
            "--reason",
            "asked",
        ],
    );
    assert_eq!(added["consents_revoked"], 1);
    let after_sms = consents(acc.clone()).await;
    let revoked: Vec<(&str, Option<&str>)> = after_sms
        .iter()
        .map(|(ch, at, why)| (ch.as_str(), at.and(why.as_deref())))
        .collect();
    assert_eq!(
        revoked,
        [
            ("call", None),
            ("email", None),
            ("sms", Some("do-not-contact: asked"))
        ]
    );

    let added = json(&db, &["dnc", "add", "--account", &acc, "818-555-0100"]);
    assert_eq!(added["consents_revoked"], 1, "call; sms is revoked already");
    let after_all = consents(acc.clone()).await;
    assert_eq!(after_all.len(), 3, "every record is kept");
    assert_eq!(after_all[0].2.as_deref(), Some("do-not-contact: operator"));
    assert!(
        after_all[1].1.is_none(),
        "email is not a channel of the list"
    );
    assert_eq!(after_all[2], after_sms[2], "the first revocation stands");

    // Taking the number off the list does not give the consent back.
    json_object(&db, &["dnc", "remove", "--account", &acc, "8185550100"]);
    assert_eq!(consents(acc.clone()).await, after_all);
    // Nothing happened in the other account.
    assert!(consents(other).await.iter().all(|(_, at, _)| at.is_none()));
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{}-{name}", testkit::random_id()));
        std::fs::write(&path, content).expect("write");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn dnc_import_adds_what_is_new_once_and_names_the_bad_lines() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    // A CSV export: a header in another order, numbers in several formats, a repeat in
    // another format, blank lines and cells, and three bad lines.
    let csv = TempFile::new(
        "dnc.csv",
        "\u{feff}Reason,Phone,Channel,Expires\r\n\
         complained,(818) 555-0100,sms,\r\n\
         ,+1 212 555 0101,,2099-01-01T00:00:00Z\r\n\
         \r\n\
         ,818.555.0100,SMS,\r\n\
         ,12,,\r\n\
         ,2125550102,fax,\r\n\
         ,2125550103,call,2001-01-01T00:00:00Z\r\n\
         ,(415) 555-0104,call,\r\n",
    );
    let args = [
        "dnc",
        "import",
        "--account",
        &acc,
        csv.path(),
        "--reason",
        "list 7",
    ];
    let first = json_object(&db, &args);
    assert_eq!(
        (
            &first["format"],
            &first["lines"],
            &first["added"],
            &first["already_present"],
            &first["invalid"]
        ),
        (&"csv".into(), &7.into(), &3.into(), &1.into(), &3.into()),
        "{first}"
    );
    let lines: Vec<(i64, &str)> = first["invalid_lines"]
        .as_array()
        .expect("invalid_lines")
        .iter()
        .map(|l| {
            (
                l["line"].as_i64().expect("line"),
                l["error"].as_str().expect("error"),
            )
        })
        .collect();
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [6, 7, 8]);
    assert!(lines[0].1.contains("\"12\""), "{lines:?}");
    assert!(lines[1].1.contains("\"fax\""), "{lines:?}");
    assert!(lines[2].1.contains("not in the future"), "{lines:?}");

    let check = json_object(&db, &["dnc", "check", "--account", &acc, "2125550101"]);
    assert_eq!(check["blocked"], serde_json::json!(["call", "sms"]));
    assert_eq!(
        check["entries"][0]["reason"], "list 7",
        "the default reason"
    );
    assert_eq!(check["entries"][0]["source"], "import");
    assert_eq!(check["entries"][0]["expires_at"], "2099-01-01T00:00:00Z");
    let check = json_object(&db, &["dnc", "check", "--account", &acc, "8185550100"]);
    assert_eq!(check["entries"][0]["reason"], "complained");

    // Again: nothing new, nothing changed.
    let before = json(&db, &["dnc", "list", "--account", &acc]);
    let second = json_object(&db, &args);
    assert_eq!(
        (
            &second["added"],
            &second["already_present"],
            &second["invalid"]
        ),
        (&0.into(), &4.into(), &3.into()),
        "{second}"
    );
    assert_eq!(json(&db, &["dnc", "list", "--account", &acc]), before);

    // The human summary names the bad lines; no progress bar off a terminal.
    let out = leadctl(&db, &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success() && stderr.is_empty(), "{stderr}");
    assert!(
        stdout.contains("0 added, 4 already present, 3 invalid") && stdout.contains("line 7: "),
        "{stdout}"
    );
}

/// `leadctl webhook add` of an endpoint of account `acc` for `events`; its JSON.
fn add_webhook(db: &TestDb, acc: &str, events: &str) -> Value {
    json(
        db,
        &[
            "webhook",
            "add",
            "--account",
            acc,
            "--url",
            "https://crm.example.com/hooks",
            "--events",
            events,
        ],
    )
}

/// The `dnc.added` events of account `acc` (§11), oldest first: (number, channel, source).
async fn dnc_events(db: &TestDb, acc: &str) -> Vec<(String, String, String)> {
    use sea_orm::ConnectionTrait;
    let rows = db
        .conn
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT body FROM events WHERE account_id = {acc} AND type = 'dnc.added' \
                 ORDER BY id"
            ),
        ))
        .await
        .expect("events");
    rows.iter()
        .map(|r| {
            let body: String = r.try_get("", "body").expect("body");
            let v: Value = serde_json::from_str(&body).expect("JSON body");
            assert_eq!(v["type"], "dnc.added", "{v}");
            let d = &v["data"];
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
            (text("phone_number"), text("channel"), text("source"))
        })
        .collect()
}

#[tokio::test]
async fn dnc_add_and_import_announce_each_new_entry_once_in_its_transaction() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    add_webhook(&db, &acc, "dnc.added");
    json(&db, &["dnc", "add", "--account", &acc, "(818) 555-0100"]);
    // The same entry again changes its terms, and adds nothing to announce.
    json(&db, &["dnc", "add", "--account", &acc, "818.555.0100"]);
    let list = TempFile::new(
        "announce.txt",
        "+18185550100\n(212) 555-0101\n212-555-0101\n(415) 555-0104\nnot a number\n",
    );
    let args = ["dnc", "import", "--account", &acc, list.path()];
    assert_eq!(json_object(&db, &args)["added"], 2);
    assert_eq!(
        json_object(&db, &args)["added"],
        0,
        "run again: nothing new"
    );
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        dnc_events(&db, &acc).await,
        [
            s("+18185550100", "all", "operator"),
            s("+12125550101", "all", "import"),
            s("+14155550104", "all", "import"),
        ]
    );
}

#[tokio::test]
async fn dnc_import_of_a_plain_list_writes_in_batches_and_is_idempotent() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    // 2,500 numbers, one a line, each in two formats: more than two batches.
    let mut text = String::new();
    for n in 0..2_500 {
        text.push_str(&format!("(818) 555-{n:04}\n+1818555{n:04}\n"));
    }
    text.push_str("not a number\n");
    let list = TempFile::new("dnc.txt", &text);
    let args = [
        "dnc",
        "import",
        "--account",
        &acc,
        list.path(),
        "--channel",
        "sms",
        "--expires",
        "90d",
    ];
    let first = json_object(&db, &args);
    assert_eq!(
        (
            &first["format"],
            &first["lines"],
            &first["added"],
            &first["already_present"],
            &first["invalid"]
        ),
        (
            &"list".into(),
            &5_001.into(),
            &2_500.into(),
            &2_500.into(),
            &1.into()
        ),
        "{first}"
    );
    assert_eq!(first["invalid_lines"][0]["line"], 5_001);
    let second = json_object(&db, &args);
    assert_eq!(
        (&second["added"], &second["already_present"]),
        (&0.into(), &5_000.into())
    );
    let listing = json(&db, &["dnc", "list", "--account", &acc, "--limit", "1"]);
    assert_eq!(listing["total"], 2_500);
    assert_eq!(listing["entries"][0]["channel"], "sms");
    assert!(listing["entries"][0]["expires_at"].is_string());
}

#[tokio::test]
async fn dnc_refuses_what_it_cannot_read_with_a_clear_message() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    fails(
        &db,
        &["dnc", "add", "--account", &acc, "12"],
        "\"12\" is not a phone number",
    );
    fails(
        &db,
        &["dnc", "check", "--account", &acc, "call me"],
        "\"call me\" is not a phone number",
    );
    fails(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "8185550100",
            "--channel",
            "fax",
        ],
        "must be call, sms or all",
    );
    fails(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "8185550100",
            "--expires",
            "2001-01-01T00:00:00Z",
        ],
        "not in the future",
    );
    fails(
        &db,
        &[
            "dnc",
            "add",
            "--account",
            &acc,
            "8185550100",
            "--expires",
            "soon",
        ],
        "neither an RFC 3339 instant",
    );
    fails(
        &db,
        &["dnc", "add", "--account", "424242", "8185550100"],
        "account 424242 not found",
    );
    fails(
        &db,
        &["dnc", "list", "--account", "424242"],
        "account 424242 not found",
    );
    fails(
        &db,
        &["dnc", "import", "--account", &acc, "/nonexistent/dnc.csv"],
        "Failed to open /nonexistent/dnc.csv",
    );
    assert_eq!(json(&db, &["dnc", "list", "--account", &acc])["total"], 0);
}

#[tokio::test]
async fn sequences_get_steps_and_lines_get_sending_numbers() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let line = json(
        &db,
        &[
            "line",
            "create",
            "--account",
            &acc,
            "--name",
            "Main",
            "--number",
            "(415) 555-0100",
        ],
    );
    assert_eq!(
        line["number"], "+14155550100",
        "read in the account's region"
    );
    let other = json(
        &db,
        &["line", "create", "--account", &acc, "--name", "Spare"],
    );
    assert_eq!(other["number"], Value::Null);
    fails(
        &db,
        &["line", "set", &id(&other), "--number", "+14155550100"],
        "already belongs to another line",
    );
    let cleared = json(&db, &["line", "set", &id(&line), "--no-number"]);
    assert_eq!(cleared["number"], Value::Null);
    json(
        &db,
        &["line", "set", &id(&line), "--number", "+14155550100"],
    );

    let seq = json(
        &db,
        &[
            "sequence",
            "create",
            "--account",
            &acc,
            "--name",
            "Welcome",
            "--line",
            &id(&line),
        ],
    );
    let s = id(&seq);
    assert_eq!(seq["line_id"], line["id"]);
    let first = json(
        &db,
        &[
            "sequence",
            "step",
            "add",
            &s,
            "--sms",
            "Hi {{first_name|there}}!",
        ],
    );
    assert_eq!(
        (first["position"].clone(), first["delay_seconds"].clone()),
        (1.into(), 0.into())
    );
    let second = json(
        &db,
        &[
            "sequence",
            "step",
            "add",
            &s,
            "--sms",
            "Still there?",
            "--delay",
            "1d",
        ],
    );
    assert_eq!(
        (second["position"].clone(), second["delay_seconds"].clone()),
        (2.into(), 86_400.into())
    );
    fails(
        &db,
        &["sequence", "step", "add", &s, "--sms", "Hi {{firstname}}"],
        "unknown placeholder {{firstname}}",
    );
    fails(
        &db,
        &[
            "sequence", "step", "add", &s, "--sms", "Hi", "--delay", "soon",
        ],
        "--delay",
    );
    let listed = json(&db, &["sequence", "step", "list", &s]);
    assert_eq!(listed["steps"].as_array().expect("steps").len(), 2);
    json(&db, &["sequence", "step", "remove", &id(&first)]);
    let shown = json(&db, &["sequence", "show", &s]);
    let steps = shown["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["body"], "Still there?");
    assert_eq!(shown["active_enrollments"], 0);
    let human = leadctl(&db, &["sequence", "show", &s]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("after 1day: Still there?"), "{text}");
    fails(
        &db,
        &["sequence", "show", "999999"],
        "sequence 999999 not found",
    );
}

#[tokio::test]
async fn webhook_endpoints_show_their_secret_once_and_are_managed_by_id() {
    let db = TestDb::new().await;
    let acc = id(&json(&db, &["account", "create", "--name", "Acme"]));
    let added = add_webhook(&db, &acc, "lead.processed,contact.created");
    let secret = added["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(
        added["events"],
        serde_json::json!(["lead.processed", "contact.created"])
    );
    assert_eq!(added["enabled"], true);
    let w = id(&added);

    let list = json_object(&db, &["webhook", "list", "--account", &acc]);
    assert_eq!(list["endpoints"].as_array().expect("list").len(), 1);
    assert!(
        !list.to_string().contains(&secret),
        "list never shows the secret"
    );

    let disabled = json(&db, &["webhook", "disable", &w]);
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["disabled_reason"], "disabled by an operator");
    assert_eq!(json(&db, &["webhook", "enable", &w])["enabled"], true);

    let rotated = json(&db, &["webhook", "rotate-secret", &w]);
    let new = rotated["secret"].as_str().expect("secret");
    assert!(new.starts_with("whsec_") && new != secret);
    assert!(rotated["previous_secret_until"].is_string());

    assert_eq!(
        json(&db, &["webhook", "attempts", &w])["attempts"],
        serde_json::json!([])
    );
    let replay = json(
        &db,
        &[
            "webhook",
            "replay",
            &w,
            "--since",
            "2h",
            "--failed-only",
            "--dry-run",
        ],
    );
    assert_eq!(
        (replay["matched"].as_i64(), replay["dry_run"].as_bool()),
        (Some(0), Some(true))
    );

    // Human output shows the secret at creation only.
    let out = leadctl(
        &db,
        &[
            "webhook",
            "add",
            "--account",
            &acc,
            "--url",
            "http://10.0.0.5/in",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Signing secret (shown once): whsec_"));

    fails(
        &db,
        &[
            "webhook",
            "add",
            "--account",
            &acc,
            "--url",
            "https://x.example/",
            "--events",
            "lead.done",
        ],
        "unknown type \"lead.done\"",
    );
    fails(
        &db,
        &[
            "webhook",
            "add",
            "--account",
            &acc,
            "--url",
            "ftp://x.example/",
        ],
        "the scheme must be http or https",
    );
    fails(
        &db,
        &["webhook", "replay", &w, "--since", "yesterday"],
        "neither an RFC 3339 time",
    );
    fails(
        &db,
        &["webhook", "attempts", &w, "--event", "msg_x"],
        "is not an event id",
    );
    assert_eq!(
        json(&db, &["webhook", "remove", &w])["url"],
        "https://crm.example.com/hooks"
    );
    fails(
        &db,
        &["webhook", "disable", &w],
        &format!("webhook endpoint {w} not found"),
    );
}
