//! Lead sources (§8) end to end: the bulk endpoint, the validate endpoint, the Google Ads
//! lead form webhook and per-token mappings and default actions, against the real
//! services, with a real worker where the outcome is the contact.

use crate::helpers::{
    Reply, TestApp, eventually, lead, spawn_app, spawn_app_with, spawn_app_with_limit,
};
use crate::sync::RunningWorker;
use hyper::{Method, StatusCode};
use leadctl::admin::{self, Catalog, sources};
use serde_json::{Value, json};
use shared::mapping::{DefaultActions, FieldMap};
use std::time::Duration;

const BULK: &str = "/api/v1/webhook/forms/bulk";
const VALIDATE: &str = "/api/v1/webhook/forms/validate";

pub(crate) async fn post_bulk(
    app: &TestApp,
    content_type: &str,
    body: String,
    key: Option<&str>,
) -> Reply {
    let auth = format!("Bearer {}", app.token);
    let mut headers = vec![
        ("content-type", content_type),
        ("authorization", auth.as_str()),
    ];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    app.request(Method::POST, BULK, &headers, body).await
}

async fn post_json(app: &TestApp, path: &str, body: &Value) -> Reply {
    let auth = format!("Bearer {}", app.token);
    app.request(
        Method::POST,
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

pub(crate) async fn post_google(app: &TestApp, body: &Value) -> Reply {
    let path = format!("/api/v1/webhook/google-ads?api_token={}", app.token);
    app.post_raw(&path, Some("application/json"), &body.to_string())
        .await
}

/// A distinct valid number per `i`.
fn phone(i: usize) -> String {
    format!("(818) 555-{:04}", i % 10_000)
}

/// The contact of the app's account with `phone_number`, once the worker has made it.
pub(crate) async fn contact_with(app: &TestApp, phone_number: &str) -> Value {
    let auth = format!("Bearer {}", app.token);
    let path = format!(
        "/api/v1/contacts?phone_number={}",
        phone_number.replace('+', "%2B").replace(' ', "%20")
    );
    eventually(
        "the worker creates the contact",
        Duration::from_secs(20),
        || {
            let (auth, path) = (auth.clone(), path.clone());
            async move {
                let reply = app
                    .request(Method::GET, &path, &[("authorization", &auth)], "")
                    .await;
                reply.body["data"].get(0).cloned()
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_bulk_body_where_half_are_invalid_queues_the_valid_half_in_input_order() {
    let app = spawn_app().await;
    let leads: Vec<Value> = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                json!({"phone_number": phone(i), "first_name": format!("Lead {i}")})
            } else {
                json!({"first_name": format!("No phone {i}"), "email": "not an email"})
            }
        })
        .collect();
    let reply = post_bulk(&app, "application/json", json!(leads).to_string(), None).await;

    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{:?}", reply.body);
    assert_eq!(reply.body["accepted"], 5);
    assert_eq!(reply.body["rejected"], 5);
    let results = reply.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 10);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], i);
        if i % 2 == 0 {
            assert_eq!(result["status"], 202);
            let id = result["intake_id"].as_str().expect("intake_id");
            assert_eq!(result["status_url"], format!("/api/v1/intakes/{id}"));
        } else {
            assert_eq!(result["status"], 400);
            assert_eq!(
                result["errors"]["phone_number"][0],
                "The phone number field is required."
            );
            assert!(result["errors"]["email"].is_array());
        }
    }
    assert_eq!(app.queue_len().await, 5);
    // An accepted lead reads as queued at once.
    let auth = format!("Bearer {}", app.token);
    let status_url = results[0]["status_url"].as_str().unwrap();
    let status = app
        .request(Method::GET, status_url, &[("authorization", &auth)], "")
        .await;
    assert_eq!(status.body["status"], "queued");
    // Each lead cost one unit of the limit, the invalid ones too.
    assert_eq!(
        reply.header_u64("x-ratelimit-remaining"),
        Some(u64::from(app.settings.rate_limit.per_minute) - 10)
    );
}

#[tokio::test]
async fn a_bulk_body_of_1001_leads_is_413_and_queues_nothing() {
    let app = spawn_app().await;
    let leads: Vec<Value> = (0..1001)
        .map(|i| json!({"phone_number": phone(i)}))
        .collect();
    let reply = post_bulk(&app, "application/json", json!(leads).to_string(), None).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        reply.body["message"],
        "A bulk request must not carry more than 1000 leads."
    );
    let ndjson: String = leads.iter().map(|l| format!("{l}\n")).collect();
    let reply = post_bulk(&app, "application/x-ndjson", ndjson, None).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Exactly 1,000 pass.
    let ndjson: String = leads[..1000].iter().map(|l| format!("{l}\n")).collect();
    let reply = post_bulk(&app, "application/x-ndjson", ndjson, None).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    assert_eq!(reply.body["accepted"], 1000);
    assert_eq!(app.queue_len().await, 1000);

    let over = " ".repeat(5 * 1024 * 1024 + 1);
    let reply = post_bulk(&app, "application/json", over, None).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn ndjson_lines_that_are_not_leads_fail_alone_and_bad_bodies_are_400_or_415() {
    let app = spawn_app().await;
    let body = format!(
        "{}\n\n   \nnot json\n[1,2]\n{}\n",
        json!({"phone_number": phone(1)}),
        json!({"phone_number": phone(2), "api_token": "ignored"})
    );
    let reply = post_bulk(&app, "application/x-ndjson", body, None).await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{:?}", reply.body);
    let statuses: Vec<u64> = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 400, 400, 202]);
    assert_eq!(
        reply.body["results"][1]["errors"]["body"][0],
        "The body must be valid JSON."
    );
    assert_eq!(
        reply.body["results"][2]["errors"]["body"][0],
        "The body must be a JSON object."
    );
    // No stored payload keeps a token.
    for message in app.drain_queue().await {
        let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
        assert!(body["payload"].get("api_token").is_none());
    }

    for (content_type, body, status) in [
        ("application/json", "{}", StatusCode::BAD_REQUEST),
        ("application/json", "[]", StatusCode::BAD_REQUEST),
        ("application/json", "[{", StatusCode::BAD_REQUEST),
        (
            "text/csv",
            "phone\n8181234567",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let reply = post_bulk(&app, content_type, body.into(), None).await;
        assert_eq!(reply.status, status, "{content_type} {body}");
    }
    let reply = app
        .post_raw(BULK, Some("application/json"), &json!([lead()]).to_string())
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn leads_beyond_the_quota_get_429_items_and_a_request_with_none_left_gets_429() {
    let app = spawn_app_with_limit(5, |_| {}).await;
    let leads: Vec<Value> = (0..8).map(|i| json!({"phone_number": phone(i)})).collect();
    let reply = post_bulk(&app, "application/json", json!(leads).to_string(), None).await;

    assert_eq!(reply.status, StatusCode::MULTI_STATUS);
    assert_eq!(reply.body["accepted"], 5);
    assert_eq!(reply.body["rejected"], 3);
    let results = reply.body["results"].as_array().unwrap();
    for result in &results[5..] {
        assert_eq!(result["status"], 429);
        let wait = result["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!((1..=60_000).contains(&wait), "{wait}");
        assert!(result.get("intake_id").is_none());
    }
    assert_eq!(reply.header_u64("x-ratelimit-remaining"), Some(0));
    assert_eq!(app.queue_len().await, 5);

    let reply = post_bulk(
        &app,
        "application/json",
        json!(leads[..2]).to_string(),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let wait = reply.body["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms");
    assert!((1..=60_000).contains(&wait));
    assert!(reply.header_u64("retry-after").is_some());
    assert_eq!(app.queue_len().await, 5);
}

#[tokio::test]
async fn one_idempotency_key_covers_the_whole_bulk_request() {
    let app = spawn_app().await;
    let leads =
        json!([{"phone_number": phone(1)}, {"first_name": "no phone"}, {"phone_number": phone(2)}]);
    let first = post_bulk(&app, "application/json", leads.to_string(), Some("batch-7")).await;
    assert_eq!(first.status, StatusCode::MULTI_STATUS);
    let again = post_bulk(&app, "application/json", leads.to_string(), Some("batch-7")).await;
    assert_eq!(again.status, StatusCode::MULTI_STATUS);
    assert_eq!(
        again.body, first.body,
        "the first answer, intake ids included"
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.queue_len().await, 2);
    // The single endpoint's keys are a separate space.
    let auth = format!("Bearer {}", app.token);
    let single = app
        .request(
            Method::POST,
            "/api/v1/webhook/forms",
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("idempotency-key", "batch-7"),
            ],
            lead().to_string(),
        )
        .await;
    assert_eq!(single.status, StatusCode::ACCEPTED);
    assert_eq!(app.queue_len().await, 3);
}

#[tokio::test]
async fn validate_runs_every_check_publishes_nothing_and_counts_as_a_read() {
    let app = spawn_app().await;
    let tag = admin::create_named(&app.db.conn, Catalog::Tag, app.account_id, "vip")
        .await
        .unwrap();
    let other = admin::create_account(&app.db.conn, "Other", "US", None)
        .await
        .unwrap();
    let foreign = admin::create_named(&app.db.conn, Catalog::Sequence, other.id, "theirs")
        .await
        .unwrap();

    let reply = post_json(
        &app,
        VALIDATE,
        &json!({"phone_number": "(818) 123-4567", "tag_id": tag.id, "sequence_id": foreign.id,
                "ring_group_id": 999_999}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["valid"], true);
    assert_eq!(reply.body["would"], "create");
    assert_eq!(reply.body["contact_id"], Value::Null);
    let fields: Vec<&str> = reply.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["ring_group_id", "sequence_id"],
        "another account's id is missing too"
    );
    assert_eq!(
        reply.header_u64("x-ratelimit-limit"),
        Some(u64::from(app.settings.rate_limit.read_per_minute))
    );

    let invalid = post_json(&app, VALIDATE, &json!({"email": "nope"})).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["message"], "The given data was invalid.");
    assert!(invalid.body["errors"]["phone_number"].is_array());
    assert!(invalid.body["errors"]["email"].is_array());
    let unauthenticated = app
        .post_raw(VALIDATE, Some("application/json"), &lead().to_string())
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.queue_len().await, 0, "validation publishes nothing");

    // Once the contact exists, the same number (in another format) would match it.
    let worker = RunningWorker::start(&app).await;
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    let contact = contact_with(&app, "+18181234567").await;
    worker.stop().await;
    let reply = post_json(&app, VALIDATE, &json!({"phone_number": "+1 818 123 4567"})).await;
    assert_eq!(reply.body["would"], "match");
    assert_eq!(reply.body["contact_id"], contact["id"]);
}

/// The Google Ads test lead from the platform's documentation, with the key set.
pub(crate) fn google_test_lead(key: &str) -> Value {
    json!({
        "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
        "user_column_data": [
            {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
            {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
            {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
            {"column_name": "Postal Code", "string_value": "94043", "column_id": "POSTAL_CODE"},
            {"column_name": "What is your budget?", "string_value": "$5,000", "column_id": "budget"}
        ],
        "api_version": "1.0",
        "form_id": 40000000000_i64,
        "campaign_id": 20000000000_i64,
        "google_key": key,
        "is_test": true,
        "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
        "adgroup_id": 20000000000_i64,
        "creative_id": 30000000000_i64
    })
}

/// A ring group of the app's user, a sequence and a tag, set as the token's defaults.
async fn with_defaults(app: &TestApp) -> (i64, i64, i64) {
    let group = admin::create_ring_group(&app.db.conn, app.account_id, "Sales", &[app.user_id])
        .await
        .unwrap();
    let sequence =
        admin::create_named(&app.db.conn, Catalog::Sequence, app.account_id, "Follow-up")
            .await
            .unwrap();
    let tag = admin::create_named(&app.db.conn, Catalog::Tag, app.account_id, "ads")
        .await
        .unwrap();
    let defaults = DefaultActions::new(
        json!({"ring_group_id": group.id, "distribute_to_ring_group": true,
               "add_to_powerdialer": true, "powerdialer_position": "bottom",
               "sequence_id": sequence.id, "tag_id": tag.id})
        .as_object()
        .cloned()
        .unwrap(),
    )
    .unwrap();
    sources::set_default_actions(&app.db.conn, app.token_id, &defaults)
        .await
        .unwrap();
    (group.id, sequence.id, tag.id)
}

#[tokio::test]
async fn google_ads_leads_become_contacts_and_test_leads_reach_nobody() {
    let app = spawn_app().await;
    let (_, sequence_id, tag_id) = with_defaults(&app).await;
    sources::set_google_key(&app.db.conn, app.token_id, Some("s3cret"))
        .await
        .unwrap();
    let test_tag = shared::sources::test_tag(&app.db.conn, app.account_id)
        .await
        .unwrap()
        .expect("setting a key creates the test tag");
    let worker = RunningWorker::start(&app).await;

    // The documented test lead: tagged `test`, no distribution, PowerDialer or sequence.
    let first = post_google(&app, &google_test_lead("s3cret")).await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(first.body["message"], "Lead accepted.");
    // Google retries: the same lead_id answers the first intake again.
    let retried = post_google(&app, &google_test_lead("s3cret")).await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.body["intake_id"], first.body["intake_id"]);
    let contact = contact_with(&app, "+16505550123").await;
    assert_eq!(contact["first_name"], "FirstName");
    assert_eq!(contact["last_name"], "LastName");
    assert_eq!(contact["email"], "test@example.com");
    assert_eq!(contact["zipcode"], "94043");
    assert_eq!(contact["lead_source"], "Google Ads");
    assert_eq!(contact["tag_ids"], json!([test_tag]));
    assert_eq!(contact["user_id"], Value::Null, "not distributed");
    assert_eq!(contact["powerdialer"], Value::Null);
    assert_eq!(contact["sequence_enrollments"], json!([]));
    assert_eq!(contact["notes"][0]["body"], "What is your budget?: $5,000");

    // A real lead: the token's default actions apply; a second phone becomes another number.
    let mut real = google_test_lead("s3cret");
    real["lead_id"] = json!("real-lead-1");
    real["is_test"] = json!(false);
    real["user_column_data"] = json!([
        {"column_name": "Full Name", "string_value": "Grace Hopper", "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": "(212) 555-0100", "column_id": "PHONE_NUMBER"},
        {"column_name": "Work Phone", "string_value": "(212) 555-0199", "column_id": "WORK_PHONE"}
    ]);
    assert_eq!(post_google(&app, &real).await.status, StatusCode::OK);
    let contact = contact_with(&app, "+12125550100").await;
    assert_eq!(
        contact["user_id"], app.user_id,
        "distributed to the ring group"
    );
    assert_eq!(contact["tag_ids"], json!([tag_id]));
    assert_eq!(contact["powerdialer"]["user_id"], app.user_id);
    assert_eq!(
        contact["sequence_enrollments"][0]["sequence_id"],
        sequence_id
    );
    assert_eq!(
        contact["other_phone_numbers"],
        json!([{"label": "Work Phone", "phone_number": "+12125550199"}])
    );
    worker.stop().await;

    // A wrong key, no key, or a token without a key: 401, nothing queued.
    let mut wrong = google_test_lead("guess");
    wrong["lead_id"] = json!("other");
    assert_eq!(
        post_google(&app, &wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    wrong.as_object_mut().unwrap().remove("google_key");
    assert_eq!(
        post_google(&app, &wrong).await.status,
        StatusCode::UNAUTHORIZED
    );
    // No phone column at all: the §3 400.
    let mut no_phone = google_test_lead("s3cret");
    no_phone["lead_id"] = json!("no-phone");
    no_phone["user_column_data"] =
        json!([{"column_name": "Full Name", "string_value": "X Y", "column_id": "FULL_NAME"}]);
    let reply = post_google(&app, &no_phone).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["errors"]["phone_number"][0],
        "The phone number field is required."
    );
    let no_lead_id = json!({"google_key": "s3cret", "user_column_data": []});
    assert_eq!(
        post_google(&app, &no_lead_id).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_phone_asked_in_a_custom_google_question_is_mapped_by_the_token() {
    let app = spawn_app().await;
    sources::set_google_key(&app.db.conn, app.token_id, Some("k"))
        .await
        .unwrap();
    sources::set_field_map(
        &app.db.conn,
        app.token_id,
        &FieldMap::parse(&["Best number to reach you?=phone_number"]).unwrap(),
    )
    .await
    .unwrap();
    let body = json!({"lead_id": "custom-phone", "google_key": "k", "is_test": false,
    "user_column_data": [
        {"column_name": "Best number to reach you?", "string_value": "818 555 0142", "column_id": "best_number"},
        {"column_name": "Full Name", "string_value": "Ada L", "column_id": "FULL_NAME"}
    ]});
    let reply = post_google(&app, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let messages = app.drain_queue().await;
    let message: Value = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    assert_eq!(message["lead"]["phone_number"], "+18185550142");
    assert_eq!(message["lead"]["lead_source"], "Google Ads");
    assert!(
        message["payload"].get("google_key").is_none(),
        "the key is not stored"
    );
    assert_eq!(
        message["payload"]["lead_id"], "custom-phone",
        "Google's fields are kept"
    );
}

#[tokio::test]
async fn a_typeform_style_flat_post_ends_as_the_right_contact_with_the_token_defaults() {
    let app = spawn_app().await;
    let (_, sequence_id, tag_id) = with_defaults(&app).await;
    sources::set_field_map(
        &app.db.conn,
        app.token_id,
        &FieldMap::parse(&[
            "Your phone number=phone_number",
            "Your mobile=phone_number",
            "What is your name?=name",
            "Email address=email",
            "What are you looking for?=notes",
        ])
        .unwrap(),
    )
    .await
    .unwrap();
    let worker = RunningWorker::start(&app).await;
    // Flat fields as a form builder posts them (form-urlencoded, question labels as keys);
    // the lead keeps the PowerDialer off itself, which wins over the token's default.
    let body = "Your+phone+number=%28415%29+555-0134&Your+mobile=415-555-0177\
                &What+is+your+name%3F=Alan+Turing&Email+address=alan%40example.org\
                &What+are+you+looking+for%3F=A+quote&add_to_powerdialer=0";
    let path = format!("/api/v1/webhook/forms?api_token={}", app.token);
    let reply = app
        .post_raw(&path, Some("application/x-www-form-urlencoded"), body)
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let contact = contact_with(&app, "+14155550134").await;
    assert_eq!(contact["first_name"], "Alan");
    assert_eq!(contact["last_name"], "Turing");
    assert_eq!(contact["email"], "alan@example.org");
    assert_eq!(
        contact["other_phone_numbers"],
        json!([{"label": "Your mobile", "phone_number": "+14155550177"}]),
        "a second phone becomes another number"
    );
    assert_eq!(
        contact["notes"][0]["body"],
        "What are you looking for?: A quote"
    );
    assert_eq!(contact["user_id"], app.user_id);
    assert_eq!(contact["tag_ids"], json!([tag_id]));
    assert_eq!(
        contact["sequence_enrollments"][0]["sequence_id"],
        sequence_id
    );
    assert_eq!(
        contact["powerdialer"],
        Value::Null,
        "the lead said otherwise"
    );

    // The same form's rows through the bulk endpoint end the same way, with the token's
    // PowerDialer default this time.
    let rows = format!(
        "{}\n",
        json!({"Your phone number": "(415) 555-0188", "What is your name?": "Joan Clarke"})
    );
    let reply = post_bulk(&app, "application/x-ndjson", rows, None).await;
    assert_eq!(reply.body["accepted"], 1, "{:?}", reply.body);
    let contact = contact_with(&app, "+14155550188").await;
    assert_eq!(contact["first_name"], "Joan");
    assert_eq!(contact["user_id"], app.user_id);
    assert_eq!(contact["tag_ids"], json!([tag_id]));
    assert_eq!(contact["powerdialer"]["user_id"], app.user_id);
    worker.stop().await;

    // A form without a phone column: the usual 400 names the contract's field.
    let reply = app
        .post_raw(
            &path,
            Some("application/x-www-form-urlencoded"),
            "What+is+your+name%3F=Nobody",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["errors"]["phone_number"].is_array());
}

#[tokio::test]
async fn a_changed_mapping_takes_effect_within_the_token_cache_bound() {
    let app =
        crate::helpers::spawn_app_with(|s| s.receiver.token_cache_ttl = Duration::from_millis(300))
            .await;
    let form = json!({"Telefon": "818 123 4567"});
    let before = app.post_lead(&form).await;
    assert_eq!(before.status, StatusCode::BAD_REQUEST);
    sources::set_field_map(
        &app.db.conn,
        app.token_id,
        &FieldMap::parse(&["telefon=phone_number"]).unwrap(),
    )
    .await
    .unwrap();
    eventually(
        "the mapping applies once the cached lookup expires",
        Duration::from_secs(5),
        || async {
            let reply = app.post_lead(&form).await;
            (reply.status == StatusCode::ACCEPTED).then_some(reply)
        },
    )
    .await;
}

#[tokio::test]
async fn a_mapping_changed_with_leadctl_applies_at_once_long_before_the_cache_ttl() {
    let app = spawn_app().await;
    assert_eq!(
        app.settings.receiver.token_cache_ttl,
        Duration::from_secs(30)
    );
    let form = json!({"Telefon": "818 123 4567"});
    assert_eq!(app.post_lead(&form).await.status, StatusCode::BAD_REQUEST);
    // The receiver listens for token announcements.
    app.wait_for_token_listeners(1).await;

    let out = leadctl::token_cli::execute(
        &app.db.conn,
        &app.settings,
        leadctl::token_cli::SourcesCmd::Map {
            id: app.token_id,
            pairs: vec!["Telefon=phone_number".into()],
            clear: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(out.json["announced"], true);
    let at = std::time::Instant::now();
    eventually(
        "the new mapping applies",
        Duration::from_secs(5),
        || async {
            let reply = app.post_lead(&form).await;
            (reply.status == StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
    assert!(at.elapsed() < Duration::from_secs(5), "{:?}", at.elapsed());
}

/// A wrong `google_key` is a failed authentication: guessing keys from one address is
/// blocked like guessing tokens, and the right key is still refused while blocked.
#[tokio::test]
async fn wrong_google_keys_count_against_the_address_like_wrong_tokens() {
    let app = spawn_app_with(|s| s.rate_limit.auth_failures_per_minute = 2).await;
    sources::set_google_key(&app.db.conn, app.token_id, Some("s3cret"))
        .await
        .unwrap();
    for guess in ["guess-1", "guess-2"] {
        let reply = post_google(&app, &google_test_lead(guess)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{guess}");
        assert!(reply.headers.contains_key("x-ratelimit-remaining"));
    }
    let blocked = post_google(&app, &google_test_lead("guess-3")).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.body["message"], "Too Many Attempts.");
}
