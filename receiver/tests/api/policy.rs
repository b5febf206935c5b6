//! The contact policy (§9) end to end: leads posted over HTTP to a receiver and processed by
//! a worker, the operator's `leadctl` commands in between, and what the intake record, the
//! read API and the validate endpoint then say.
//!
//! One test per reason a PowerDialer insertion is held back. `frequency_cap` is not among
//! them: the caps count messages the product sent, and it sends none yet (calls are never
//! capped), so only the engine's own tests (`shared::policy`) reach it.

use crate::helpers::{TestApp, spawn_app};
use crate::sources::{contact_with, post_bulk, post_google};
use crate::sync::RunningWorker;
use crate::validate::{process, validate};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use clap::Parser;
use hyper::StatusCode;
use leadctl::admin::sources;
use leadctl::import::{self, ImportArgs};
use serde_json::{Value, json};
use shared::mapping::FieldMap;
use tokio_util::sync::CancellationToken;

/// Runs `leadctl --json ARGS` against the app's database, as an operator would, and
/// returns the object it prints.
async fn leadctl(app: &TestApp, args: &[&str]) -> Value {
    let url = app.settings.database_url.as_str();
    let mut all = vec!["leadctl", "--json", "--database-url", url];
    all.extend_from_slice(args);
    let cli = leadctl::cli::Cli::try_parse_from(&all).unwrap();
    leadctl::cli::run(cli)
        .await
        .unwrap_or_else(|e| panic!("leadctl {args:?}: {e:#}"))
        .json
}

/// A lead of `number` for the app's user's PowerDialer list.
fn dial(app: &TestApp, number: &str) -> Value {
    json!({"phone_number": number, "user_id": app.user_id, "add_to_powerdialer": true})
}

/// The same, for a contact whose local time is `tz`'s.
fn dial_in(app: &TestApp, number: &str, tz: Tz) -> Value {
    let mut lead = dial(app, number);
    lead["timezone"] = tz.name().into();
    lead
}

/// The action of `kind` an intake record lists, or `null`.
fn action(record: &Value, kind: &str) -> Value {
    record["actions"]
        .as_array()
        .and_then(|actions| actions.iter().find(|a| a["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

fn instant(v: &Value) -> DateTime<Utc> {
    serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("an instant: {v}"))
}

async fn contact(app: &TestApp, id: &Value) -> Value {
    let reply = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

/// The app's user's PowerDialer list, as `leadctl powerdialer list` prints it.
async fn dialer(app: &TestApp) -> Vec<Value> {
    let list = leadctl(
        app,
        &["powerdialer", "list", "--user", &app.user_id.to_string()],
    )
    .await;
    list["items"].as_array().unwrap().clone()
}

/// The consent records of a contact as `(channel, revoked)`, by channel.
fn consent(contact: &Value) -> Vec<(String, bool)> {
    let mut records: Vec<(String, bool)> = contact["consent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channel"].as_str().unwrap().to_owned(),
                !c["revoked_at"].is_null(),
            )
        })
        .collect();
    records.sort();
    records
}

/// Asserts that `next` is the next 08:00 in `tz` (a contact's local time is 22:xx now).
fn is_next_8am(next: DateTime<Utc>, tz: Tz) {
    let local = next.with_timezone(&tz);
    assert_eq!(
        local.time(),
        NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
        "{local}"
    );
    let ahead = next - Utc::now();
    assert!(
        ahead > Duration::hours(8) && ahead <= Duration::hours(10),
        "{local} is the next morning"
    );
}

#[tokio::test]
async fn a_number_on_the_do_not_contact_list_is_not_queued_and_the_intake_says_why() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let account = app.account_id.to_string();
    leadctl(
        &app,
        &[
            "dnc",
            "add",
            "--account",
            &account,
            "(212) 555-0140",
            "--channel",
            "call",
        ],
    )
    .await;

    // The lead gives the number in another format than the operator did.
    let record = process(&app, &dial(&app, "212.555.0140")).await;
    assert_eq!(record["status"], "created");
    assert_eq!(
        action(&record, "policy_blocked"),
        json!({"type": "policy_blocked", "channel": "call", "reason": "dnc",
               "rule": "do-not-contact", "next_allowed_at": null})
    );
    assert_eq!(action(&record, "powerdialer_added"), Value::Null);
    assert!(
        record["warnings"].as_array().unwrap().iter().any(|w| {
            w["field"] == "add_to_powerdialer"
                && w["message"].as_str().unwrap().contains("do-not-contact")
        }),
        "{record}"
    );
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(c["powerdialer"], Value::Null);
    assert_eq!(c["do_not_contact"], json!(["call"]));
    assert_eq!(dialer(&app).await, Vec::<Value>::new());

    // An entry that lapses tells when the number may be called again.
    let entry = leadctl(
        &app,
        &[
            "dnc",
            "add",
            "--account",
            &account,
            "+1 212 555 0141",
            "--expires",
            "2h",
        ],
    )
    .await;
    let record = process(&app, &dial(&app, "2125550141")).await;
    let blocked = action(&record, "policy_blocked");
    assert_eq!(blocked["reason"], "dnc");
    assert_eq!(
        instant(&blocked["next_allowed_at"]),
        instant(&entry["expires_at"])
    );
    assert_eq!(dialer(&app).await, Vec::<Value>::new());
    worker.stop().await;
}

#[tokio::test]
async fn an_account_that_requires_consent_for_calls_queues_only_leads_that_bring_it() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let set = leadctl(
        &app,
        &[
            "account",
            "set",
            &app.account_id.to_string(),
            "--require-consent",
            "call,sms",
        ],
    )
    .await;
    assert_eq!(set["require_consent"], json!(["call", "sms"]));

    let record = process(&app, &dial(&app, "(212) 555-0142")).await;
    assert_eq!(
        action(&record, "policy_blocked"),
        json!({"type": "policy_blocked", "channel": "call", "reason": "no_consent",
               "rule": "account-consent", "next_allowed_at": null})
    );
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(c["powerdialer"], Value::Null);
    assert_eq!(dialer(&app).await, Vec::<Value>::new());

    // The same with consent to calls, at noon its time: queued.
    let mut lead = dial_in(&app, "(212) 555-0143", testkit::zone_at(12));
    lead["consent"] = json!({"channels": ["call"], "text": "You may call me."});
    let record = process(&app, &lead).await;
    assert_eq!(action(&record, "policy_blocked"), Value::Null, "{record}");
    assert_eq!(action(&record, "powerdialer_added")["user_id"], app.user_id);
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(c["powerdialer"]["user_id"], app.user_id);
    assert_eq!(consent(&c), [("call".to_owned(), false)]);
    assert_eq!(dialer(&app).await.len(), 1);
    worker.stop().await;
}

#[tokio::test]
async fn a_lead_at_22_00_its_time_is_queued_for_08_00_and_the_dialer_shows_when() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let tz = testkit::zone_at(22);
    let record = process(&app, &dial_in(&app, "212 555 0144", tz)).await;

    let blocked = action(&record, "policy_blocked");
    assert_eq!(
        (&blocked["channel"], &blocked["reason"], &blocked["rule"]),
        (
            &json!("call"),
            &json!("outside_hours"),
            &json!("US-federal")
        ),
        "{record}"
    );
    let next = instant(&blocked["next_allowed_at"]);
    is_next_8am(next, tz);
    let added = action(&record, "powerdialer_added");
    assert_eq!(instant(&added["not_before"]), next);

    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(c["powerdialer"]["user_id"], app.user_id);
    assert_eq!(instant(&c["powerdialer"]["not_before"]), next);
    let items = dialer(&app).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["contact_id"], record["contact_id"]);
    assert_eq!(instant(&items[0]["not_before"]), next);
    worker.stop().await;
}

#[tokio::test]
async fn a_contact_whose_local_time_nothing_tells_is_not_queued() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    // A toll-free number: no area code places it, and the lead gives no timezone or state.
    let record = process(&app, &dial(&app, "(800) 555-0100")).await;
    assert_eq!(
        action(&record, "policy_blocked"),
        json!({"type": "policy_blocked", "channel": "call", "reason": "unknown_local_time",
               "rule": "US-federal", "next_allowed_at": null})
    );
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!((&c["timezone"], &c["state"]), (&Value::Null, &Value::Null));
    assert_eq!(c["powerdialer"], Value::Null);
    assert_eq!(dialer(&app).await, Vec::<Value>::new());
    worker.stop().await;
}

#[tokio::test]
async fn consent_sent_in_bulk_is_kept_and_leadctl_dnc_add_revokes_it() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let cert = "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567";
    let leads = json!([{
        "phone_number": "(818) 555-0160",
        "consent": {"channels": ["sms", "call"], "text": "I agree to calls and texts from Acme.",
                    "source_url": "https://acme.example/form"},
        "trustedform_cert_url": cert,
    }]);
    let reply = post_bulk(&app, "application/json", leads.to_string(), None).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{:?}", reply.body);
    let record = app
        .finished(reply.body["results"][0]["intake_id"].as_str().unwrap())
        .await;
    assert_eq!(
        action(&record, "consent_recorded"),
        json!({"type": "consent_recorded", "channels": ["sms", "call"]})
    );
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(
        consent(&c),
        [("call".to_owned(), false), ("sms".to_owned(), false)]
    );
    for r in c["consent"].as_array().unwrap() {
        assert_eq!(r["text"], "I agree to calls and texts from Acme.");
        assert_eq!(r["source_url"], "https://acme.example/form");
        assert_eq!(r["trustedform_cert_url"], cert);
        assert!(r["given_at"].is_string());
    }
    assert_eq!(c["do_not_contact"], json!([]));

    // The number asks not to be texted: the sms consent is revoked, the record kept.
    let added = leadctl(
        &app,
        &[
            "dnc",
            "add",
            "--account",
            &app.account_id.to_string(),
            "+1 818-555-0160",
            "--channel",
            "sms",
            "--reason",
            "texted STOP",
        ],
    )
    .await;
    assert_eq!(added["consents_revoked"], 1);
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(
        consent(&c),
        [("call".to_owned(), false), ("sms".to_owned(), true)]
    );
    let sms = c["consent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel"] == "sms")
        .unwrap();
    assert!(instant(&sms["revoked_at"]) >= instant(&sms["given_at"]));
    assert_eq!(sms["text"], "I agree to calls and texts from Acme.");
    assert_eq!(c["do_not_contact"], json!(["sms"]));
    worker.stop().await;
}

#[tokio::test]
async fn a_google_ads_question_mapped_to_consent_channels_records_consent() {
    let app = spawn_app().await;
    // Google's lead forms have no consent column: the advertiser asks a question whose
    // answers name channels, and the token maps it (before the token is first used, as
    // receivers cache it).
    sources::set_google_key(&app.db.conn, app.token_id, Some("k"))
        .await
        .unwrap();
    let map = FieldMap::parse(&["How may we contact you?=consent_channels"]).unwrap();
    sources::set_field_map(&app.db.conn, app.token_id, &map)
        .await
        .unwrap();
    let worker = RunningWorker::start(&app).await;
    let lead = json!({
        "lead_id": "consent-1", "google_key": "k", "is_test": false,
        "user_column_data": [
            {"column_id": "PHONE_NUMBER", "column_name": "Phone", "string_value": "+1 818 555 0161"},
            {"column_id": "contact_pref", "column_name": "How may we contact you?",
             "string_value": "Text, Call"}
        ]
    });
    let reply = post_google(&app, &lead).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let record = app
        .finished(reply.body["intake_id"].as_str().unwrap())
        .await;
    assert_eq!(
        action(&record, "consent_recorded")["channels"],
        json!(["sms", "call"])
    );
    let c = contact(&app, &record["contact_id"]).await;
    assert_eq!(
        consent(&c),
        [("call".to_owned(), false), ("sms".to_owned(), false)]
    );
    // Given when the lead was received.
    assert_eq!(
        instant(&c["consent"][0]["given_at"]),
        instant(&record["received_at"])
    );
    worker.stop().await;
}

#[tokio::test]
async fn consent_columns_of_a_csv_import_become_consent_records() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let path = std::env::temp_dir().join(format!("consent-{}.csv", testkit::random_id()));
    std::fs::write(
        &path,
        "phone_number,first_name,consent_channels,consent_text,consent_source_url\n\
         (818) 555-0162,Ada,sms,I agree to texts from Acme.,https://acme.example/csv\n\
         (818) 555-0163,Bo,\"call,sms\",,\n",
    )
    .unwrap();
    let summary = import::run(
        &ImportArgs {
            file: path.clone(),
            token: app.token.clone(),
            maps: Vec::new(),
            dry_run: false,
            resume_from: 1,
            url: format!("http://{}", app.addr),
        },
        CancellationToken::new(),
        false,
    )
    .await
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!((summary.accepted, summary.rejected), (2, 0));

    let ada = contact_with(&app, "+18185550162").await;
    assert_eq!(consent(&ada), [("sms".to_owned(), false)]);
    assert_eq!(ada["consent"][0]["text"], "I agree to texts from Acme.");
    assert_eq!(ada["consent"][0]["source_url"], "https://acme.example/csv");
    let bo = contact_with(&app, "+18185550163").await;
    assert_eq!(
        consent(&bo),
        [("call".to_owned(), false), ("sms".to_owned(), false)]
    );
    worker.stop().await;
}

#[tokio::test]
async fn validate_answers_the_verdicts_the_worker_would_reach() {
    let app = spawn_app().await;
    leadctl(
        &app,
        &[
            "dnc",
            "add",
            "--account",
            &app.account_id.to_string(),
            "(212) 555-0170",
        ],
    )
    .await;
    let v = validate(&app, &dial(&app, "212-555-0170")).await;
    assert_eq!(
        v["policy"],
        json!([{"channel": "call", "reason": "dnc", "rule": "do-not-contact",
                "next_allowed_at": null}])
    );

    let tz = testkit::zone_at(22);
    let v = validate(&app, &dial_in(&app, "212-555-0171", tz)).await;
    let verdict = &v["policy"][0];
    assert_eq!(
        (&verdict["channel"], &verdict["reason"], &verdict["rule"]),
        (
            &json!("call"),
            &json!("outside_hours"),
            &json!("US-federal")
        ),
        "{v}"
    );
    is_next_8am(instant(&verdict["next_allowed_at"]), tz);

    // At noon its time, allowed: no reason, the rule that applied.
    let v = validate(&app, &dial_in(&app, "212-555-0172", testkit::zone_at(12))).await;
    assert_eq!(
        v["policy"],
        json!([{"channel": "call", "reason": null, "rule": "US-federal",
                "next_allowed_at": null}])
    );
    assert_eq!(app.queue_len().await, 0, "validate queues nothing");
}
