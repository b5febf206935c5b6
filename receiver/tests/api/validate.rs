//! The validate endpoint (§8) tells what the worker then does (§4): the same contact, the
//! same outcome and the same warnings, because both run one rule engine over one snapshot.

use crate::helpers::{TestApp, eventually, spawn_app};
use crate::sync::RunningWorker;
use hyper::{Method, StatusCode};
use leadctl::admin::{self, Catalog};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use std::time::Duration;

const VALIDATE: &str = "/api/v1/webhook/forms/validate";

pub(crate) async fn validate(app: &TestApp, lead: &Value) -> Value {
    let auth = format!("Bearer {}", app.token);
    let reply = app
        .request(
            Method::POST,
            VALIDATE,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
            ],
            serde_json::to_vec(lead).unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body
}

/// Posts `lead` for real and returns its intake record once the worker has finished it.
pub(crate) async fn process(app: &TestApp, lead: &Value) -> Value {
    let accepted = app.post_lead(lead).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    app.finished(accepted.body["intake_id"].as_str().unwrap())
        .await
}

impl TestApp {
    /// The record of intake `id` once the worker has finished it.
    pub(crate) async fn finished(&self, id: &str) -> Value {
        let path = format!("/api/v1/intakes/{id}");
        eventually(
            "the worker finishes the lead",
            Duration::from_secs(20),
            || {
                let path = path.clone();
                async move {
                    let record = self.get(&path).await.body;
                    let status = record["status"].as_str()?;
                    (!matches!(status, "queued" | "processing")).then_some(record)
                }
            },
        )
        .await
    }
}

/// The last contact id handed out (`None` before the first).
async fn last_contact_id(app: &TestApp) -> Option<i64> {
    let row = app
        .db
        .conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('contacts', 'id')::regclass)",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<Option<i64>>(0).unwrap()
}

/// What the leads of the cases refer to.
struct World {
    /// Has +1 212 555 0101 (its primary number); older than `b`.
    a: i64,
    /// Has +1 310 555 0102 and, as a second number, +1 818 555 0103.
    b: i64,
    /// Owned by the app's user and queued in their PowerDialer list.
    c: i64,
    /// Active in `welcome`.
    d: i64,
    nurture: i64,
    /// Its only member is active but not available.
    ring_group: i64,
    foreign_user: i64,
    foreign_tag: i64,
}

/// Another account's user and tag, a ring group, two sequences, and four contacts made by
/// the worker one after the other.
async fn world(app: &TestApp) -> World {
    let conn = &app.db.conn;
    let other = admin::create_account(conn, "Other", "US", None)
        .await
        .unwrap();
    let foreign_user = admin::create_user(conn, other.id, "Eve", None, true, true)
        .await
        .unwrap();
    let foreign_tag = admin::create_named(conn, Catalog::Tag, other.id, "theirs")
        .await
        .unwrap();
    let away = admin::create_user(conn, app.account_id, "Dee", None, true, false)
        .await
        .unwrap();
    let ring_group = admin::create_ring_group(conn, app.account_id, "Night", &[away.id])
        .await
        .unwrap();
    let welcome = admin::create_named(conn, Catalog::Sequence, app.account_id, "Welcome")
        .await
        .unwrap();
    let nurture = admin::create_named(conn, Catalog::Sequence, app.account_id, "Nurture")
        .await
        .unwrap();
    let seeds = [
        json!({"phone_number": "+1 212 555 0101", "first_name": "Ann"}),
        json!({"phone_number": "+1 310 555 0102", "first_name": "Bo",
               "other_phone_numbers": [{"label": "work", "phone_number": "+1 818 555 0103"}]}),
        json!({"phone_number": "+1 415 555 0104", "user_id": app.user_id, "add_to_powerdialer": true}),
        json!({"phone_number": "+1 646 555 0105", "sequence_id": welcome.id}),
    ];
    let mut contacts = Vec::new();
    for seed in &seeds {
        let record = process(app, seed).await;
        assert_eq!(record["status"], "created", "{record}");
        contacts.push(record["contact_id"].as_i64().unwrap());
    }
    World {
        a: contacts[0],
        b: contacts[1],
        c: contacts[2],
        d: contacts[3],
        nurture: nurture.id,
        ring_group: ring_group.id,
        foreign_user: foreign_user.id,
        foreign_tag: foreign_tag.id,
    }
}

/// Each case: what it shows, the lead, the contact it lands on (`None`: a new one) and the
/// fields of its warnings. No case changes what another reads.
fn cases(w: &World) -> Vec<(&'static str, Value, Option<i64>, Vec<&'static str>)> {
    vec![
        (
            "a new contact",
            json!({"phone_number": "+1 702 555 0106", "first_name": "Cy"}),
            None,
            vec![],
        ),
        (
            "the contact of its primary number",
            json!({"phone_number": "(212) 555-0101", "company_name": "Acme"}),
            Some(w.a),
            vec![],
        ),
        (
            "the oldest contact of its numbers, not the first number's in the lead's order",
            json!({"phone_number": "+1 503 555 0107", "other_phone_numbers": [
                {"label": "work", "phone_number": "+1 818 555 0103"},
                {"label": "home", "phone_number": "+1 212 555 0101"}]}),
            Some(w.a),
            vec!["other_phone_numbers"],
        ),
        (
            "another account's user and tag",
            json!({"phone_number": "+1 720 555 0108", "user_id": w.foreign_user,
                   "tag_id": w.foreign_tag}),
            None,
            vec!["user_id", "tag_id"],
        ),
        (
            "a ring group without an eligible member, then no owner for the PowerDialer",
            json!({"phone_number": "+1 305 555 0109", "ring_group_id": w.ring_group,
                   "distribute_to_ring_group": true, "check_available_users": true,
                   "add_to_powerdialer": true}),
            None,
            vec!["check_available_users", "add_to_powerdialer"],
        ),
        (
            "a contact already queued in a PowerDialer list",
            json!({"phone_number": "+1 415 555 0104", "add_to_powerdialer": true}),
            Some(w.c),
            vec!["add_to_powerdialer"],
        ),
        (
            "a contact active in another sequence",
            json!({"phone_number": "+1 646 555 0105", "sequence_id": w.nurture}),
            Some(w.d),
            vec!["sequence_id"],
        ),
    ]
}

#[tokio::test]
async fn validate_names_the_contact_outcome_and_warnings_the_worker_then_records() {
    let app = spawn_app().await;
    let worker = RunningWorker::start(&app).await;
    let w = world(&app).await;
    assert!(
        w.b > w.a,
        "the contact of the bug case's first number is the newer one"
    );
    let cases = cases(&w);

    let ids_before = last_contact_id(&app).await;
    let mut predicted = Vec::new();
    for (_, lead, _, _) in &cases {
        predicted.push(validate(&app, lead).await);
    }
    assert_eq!(
        last_contact_id(&app).await,
        ids_before,
        "validate reserves no contact id"
    );

    for ((case, lead, contact, fields), validated) in cases.iter().zip(predicted) {
        let record = process(&app, lead).await;
        let would = if record["status"] == "created" {
            "create"
        } else {
            "match"
        };
        assert_eq!(validated["would"], would, "{case}: {record}");
        assert_eq!(validated["would"] == "match", contact.is_some(), "{case}");
        if contact.is_some() {
            assert_eq!(validated["contact_id"], json!(contact), "{case}");
            assert_eq!(record["contact_id"], json!(contact), "{case}");
        } else {
            assert_eq!(validated["contact_id"], Value::Null, "{case}");
        }
        assert_eq!(validated["warnings"], record["warnings"], "{case}");
        let warned: Vec<&str> = record["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["field"].as_str().unwrap())
            .collect();
        assert_eq!(&warned, fields, "{case}: {record}");
    }
    worker.stop().await;
}
