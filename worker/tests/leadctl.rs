//! `leadctl` as an operator runs it: the real binary against a real, fresh database.

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

/// Runs a command that must succeed with `--json` and returns its one JSON object.
fn json(db: &TestDb, args: &[&str]) -> Value {
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
    let v: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert!(v.is_object() && v["id"].is_i64(), "object with id: {v}");
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
    for (phone, position) in [("+18181234567", 5), ("+13105550100", -2)] {
        use sea_orm::ConnectionTrait;
        db.conn
            .execute_unprepared(&format!(
                "WITH c AS (INSERT INTO contacts (account_id, phone_number) VALUES ({a}, '{phone}') RETURNING id) \
                 INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) SELECT {a}, {uid}, id, {position} FROM c"
            ))
            .await
            .expect("seed");
    }
    let list = json(&db, &["powerdialer", "list", "--user", &uid.to_string()]);
    let positions: Vec<i64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["position"].as_i64().expect("position"))
        .collect();
    assert_eq!(positions, vec![-2, 5]);
    let out = leadctl(&db, &["powerdialer", "list", "--user", &uid.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 queued"));
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
