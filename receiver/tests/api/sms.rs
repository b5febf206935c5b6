//! Inbound SMS (§10) through the receiver: the provider's signature (computed here on its
//! own, from the provider's documented rule), each message kept once, STOP and START on the
//! do-not-contact list, and a contact's messages read back account-scoped.

use crate::helpers::{TestApp, spawn_app_with};
use hmac::{KeyInit, Mac};
use hyper::{Method, StatusCode};
use sea_orm::ConnectionTrait;

const AUTH_TOKEN: &str = "provider-auth-token";
const LINE: &str = "+14155550100";
const SENDER: &str = "+12125550123";

/// The provider's signature: base64(HMAC-SHA1(auth token, URL + each parameter's name and
/// value in name order)).
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    )
}

fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn params<'a>(body: &'a str, sid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("From", SENDER),
        ("To", LINE),
        ("Body", body),
        ("MessageSid", sid),
        ("AccountSid", "AC0000"),
        ("NumMedia", "0"),
    ]
}

/// Posts an inbound message signed over `signed_url`.
async fn inbound(app: &TestApp, p: &[(&str, &str)], signed_url: &str) -> crate::helpers::Reply {
    let signature = sign(signed_url, p);
    app.request(
        Method::POST,
        "/api/v1/webhook/sms/inbound",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", &signature),
        ],
        form(p),
    )
    .await
}

/// The URL the receiver sees called without SMS__WEBHOOK_BASE_URL.
fn own_url(app: &TestApp) -> String {
    format!("http://{}/api/v1/webhook/sms/inbound", app.addr)
}

async fn sms_app(base: Option<&str>) -> TestApp {
    let base = base.map(str::to_owned);
    let app = spawn_app_with(|s| {
        s.sms.auth_token = AUTH_TOKEN.into();
        s.sms.webhook_base_url = base;
    })
    .await;
    let line = leadctl::admin::create_named(
        &app.db.conn,
        leadctl::admin::Catalog::Line,
        app.account_id,
        "Main",
    )
    .await
    .unwrap();
    leadctl::admin::messaging::set_line_number(&app.db.conn, line.id, Some(LINE))
        .await
        .unwrap();
    app
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let row = app
        .db
        .conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A contact of the sender's number with SMS consent, enrolled in a sequence whose next
/// step is pending; returns the contact id.
async fn contact_with_a_pending_step(app: &TestApp) -> i64 {
    let a = app.account_id;
    app.db
        .conn
        .execute_unprepared(&format!(
            "WITH c AS (INSERT INTO contacts (account_id, phone_number, first_name) \
                        VALUES ({a}, '{SENDER}', 'Ada') RETURNING id), \
                  n AS (INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
                        SELECT {a}, id, '{SENDER}', true FROM c), \
                  k AS (INSERT INTO contact_consents (account_id, contact_id, channel, given_at) \
                        SELECT {a}, id, 'sms', now() - interval '1 day' FROM c), \
                  s AS (INSERT INTO sequences (account_id, name) VALUES ({a}, 'Welcome') RETURNING id), \
                  e AS (INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id) \
                        SELECT {a}, c.id, s.id FROM c, s RETURNING id, contact_id) \
             INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, due_at) \
             SELECT {a}, contact_id, 'outbound', 'scheduled', id, now() + interval '1 hour' FROM e"
        ))
        .await
        .unwrap();
    count(
        app,
        &format!("SELECT id FROM contacts WHERE account_id = {a} AND phone_number = '{SENDER}'"),
    )
    .await
}

#[tokio::test]
async fn a_signed_message_is_kept_once_and_an_unsigned_one_is_refused() {
    let app = sms_app(None).await;
    let contact = contact_with_a_pending_step(&app).await;
    let p = params("Hi, is this still available?", "SM0001");

    let forged = app
        .request(
            Method::POST,
            "/api/v1/webhook/sms/inbound",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ],
            form(&p),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let unsigned = app
        .post_raw(
            "/api/v1/webhook/sms/inbound",
            Some("application/x-www-form-urlencoded"),
            &form(&p),
        )
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    // Signed over another URL (a proxy's address the receiver was not told about).
    let elsewhere = inbound(&app, &p, "https://example.com/api/v1/webhook/sms/inbound").await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'inbound'"
        )
        .await,
        0
    );

    let kept = inbound(&app, &p, &own_url(&app)).await;
    assert_eq!(kept.status, StatusCode::OK);
    assert_eq!(kept.header("content-type"), Some("text/xml"));
    // The provider retries: the same MessageSid is kept once.
    assert_eq!(
        inbound(&app, &p, &own_url(&app)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM messages WHERE direction = 'inbound'"
        )
        .await,
        1
    );

    let listed = app
        .request(
            Method::GET,
            &format!(
                "/api/v1/contacts/{contact}/messages?api_token={}",
                app.token
            ),
            &[],
            "",
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let data = listed.body["data"].as_array().unwrap();
    assert_eq!(
        data.len(),
        2,
        "the reply and the pending step: {}",
        listed.body
    );
    assert_eq!(data[0]["direction"], "inbound", "newest first");
    assert_eq!(data[0]["status"], "received");
    assert_eq!(data[0]["from"], SENDER);
    assert_eq!(data[0]["body"], "Hi, is this still available?");
    assert_eq!(data[0]["provider_sid"], "SM0001");
    assert_eq!(data[1]["direction"], "outbound");
    assert_eq!(data[1]["status"], "scheduled");
    // An ordinary reply stops nothing.
    assert_eq!(count(&app, "SELECT count(*) FROM do_not_contact").await, 0);
}

#[tokio::test]
async fn stop_puts_the_number_on_the_list_cancels_its_steps_and_start_takes_it_off() {
    let app = sms_app(None).await;
    let contact = contact_with_a_pending_step(&app).await;
    let stop = inbound(&app, &params("  Stop ", "SM0002"), &own_url(&app)).await;
    assert_eq!(stop.status, StatusCode::OK);
    assert_eq!(
        count(&app, &format!(
            "SELECT count(*) FROM do_not_contact WHERE account_id = {} AND phone_number = '{SENDER}' \
             AND channel = 'sms' AND source = 'stop'", app.account_id)).await,
        1
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM messages WHERE direction = 'outbound' AND status = 'cancelled' AND due_at IS NULL").await,
        1,
        "the pending step is cancelled"
    );
    let read = app
        .request(
            Method::GET,
            &format!("/api/v1/contacts/{contact}?api_token={}", app.token),
            &[],
            "",
        )
        .await;
    assert_eq!(
        read.body["do_not_contact"],
        serde_json::json!(["sms"]),
        "{}",
        read.body
    );
    let consent = &read.body["consent"][0];
    assert_eq!(consent["channel"], "sms");
    assert!(consent["revoked_at"].is_string(), "revoked: {}", read.body);

    // An operator's entry for calls stays when the person opts back in to texts.
    app.db
        .conn
        .execute_unprepared(&format!(
            "INSERT INTO do_not_contact (account_id, phone_number, channel) VALUES ({}, '{SENDER}', 'call')",
            app.account_id
        ))
        .await
        .unwrap();
    let start = inbound(&app, &params("START", "SM0003"), &own_url(&app)).await;
    assert_eq!(start.status, StatusCode::OK);
    let left: Vec<String> = {
        let rows = app
            .db
            .conn
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT channel FROM do_not_contact ORDER BY channel".to_owned(),
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| r.try_get::<String>("", "channel").unwrap())
            .collect()
    };
    assert_eq!(left, vec!["call".to_owned()]);
}

#[tokio::test]
async fn behind_a_proxy_the_signature_covers_the_configured_public_address() {
    let base = "https://leads.example.com";
    let app = sms_app(Some(base)).await;
    let p = params("hello", "SM0004");
    assert_eq!(
        inbound(&app, &p, &own_url(&app)).await.status,
        StatusCode::UNAUTHORIZED,
        "the receiver's own address is not what the provider signed"
    );
    let public = format!("{base}/api/v1/webhook/sms/inbound");
    assert_eq!(inbound(&app, &p, &public).await.status, StatusCode::OK);
    // A number no line has.
    let mut other = params("hello", "SM0005");
    other[1] = ("To", "+14155550199");
    let unknown = inbound(&app, &other, &public).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
    // Missing fields.
    let missing = inbound(&app, &[("Body", "hi")], &public).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.body["errors"]["From"].is_array(),
        "{}",
        missing.body
    );
}

#[tokio::test]
async fn another_accounts_contact_has_no_messages_to_read() {
    let app = sms_app(None).await;
    let contact = contact_with_a_pending_step(&app).await;
    let theirs = leadctl::admin::create_account(&app.db.conn, "Other", "US", None)
        .await
        .unwrap()
        .id;
    let user = leadctl::admin::create_user(&app.db.conn, theirs, "Eve", None, true, true)
        .await
        .unwrap()
        .id;
    let token = leadctl::admin::create_token(&app.db.conn, user, None)
        .await
        .unwrap()
        .token;
    let read = app
        .request(
            Method::GET,
            &format!("/api/v1/contacts/{contact}/messages?api_token={token}"),
            &[],
            "",
        )
        .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND);
    let bad = app
        .request(
            Method::GET,
            &format!(
                "/api/v1/contacts/{contact}/messages?api_token={}&limit=0",
                app.token
            ),
            &[],
            "",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["errors"]["limit"].is_array(), "{}", bad.body);
}
