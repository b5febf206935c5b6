//! The read API (§5) over HTTP: intake statuses, contacts, every filter, pagination,
//! account scoping, bad filters, authentication and its own rate limit.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use chrono::Utc;
use hyper::{Method, StatusCode};
use leadctl::admin;
use serde_json::{Value, json};
use shared::contact_fields::{TextField, TextKind};
use shared::intake::{IntakeMessage, MESSAGE_VERSION};
use shared::payload::{ParseContext, RawLead};
use shared::phone::Region;
use strum::IntoEnumIterator;
use uuid::Uuid;
use worker::process::{Attempt, Processor};

impl TestApp {
    /// A GET with the app's token as a bearer token.
    pub async fn get(&self, path: &str) -> crate::helpers::Reply {
        self.get_as(&self.token, path).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> crate::helpers::Reply {
        let auth = format!("Bearer {token}");
        self.request(Method::GET, path, &[("authorization", &auth)], "")
            .await
    }

    /// Runs `fields` through the worker's processing for `account_id` (as the worker does
    /// for a queued lead) and returns the contact id.
    pub async fn contact_in(&self, account_id: i64, fields: Value) -> i64 {
        self.process_in(account_id, fields)
            .await
            .contact_id
            .expect("a contact")
    }

    /// Runs `fields` through the worker's processing for `account_id`; its outcome.
    pub async fn process_in(&self, account_id: i64, fields: Value) -> worker::process::Outcome {
        let raw = RawLead::from_json(fields.to_string().as_bytes()).expect("object");
        let lead = raw
            .parse(&ParseContext::now(Region::US))
            .expect("a valid lead");
        let message = IntakeMessage {
            version: MESSAGE_VERSION,
            intake_id: Uuid::now_v7(),
            account_id,
            user_id: self.user_id,
            token_id: self.token_id,
            received_at: Utc::now(),
            lead,
            payload: raw.into_payload().into(),
        };
        Processor::new(self.db.conn.clone())
            .try_process(&Attempt {
                message,
                previous_attempts: 0,
            })
            .await
            .expect("processed")
    }

    pub async fn contact(&self, fields: Value) -> i64 {
        self.contact_in(self.account_id, fields).await
    }

    /// A second account with its own user and token: (account id, token).
    pub async fn other_account(&self) -> (i64, String) {
        let account = admin::create_account(&self.db.conn, "Other", "US", None)
            .await
            .expect("account");
        let user = admin::create_user(&self.db.conn, account.id, "Olga", None, true, true)
            .await
            .expect("user");
        let token = admin::create_token(&self.db.conn, user.id, None)
            .await
            .expect("token");
        (account.id, token.token)
    }
}

fn ids(reply: &crate::helpers::Reply) -> Vec<i64> {
    reply.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {:?}", reply.body))
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn an_accepted_intake_reads_queued_then_the_workers_outcome_and_only_in_its_account() {
    let app = spawn_app().await;
    let accepted = app.post_lead(&json!({"phone_number": "8181234567"})).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let id = accepted.body["intake_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/intakes/{id}");

    let queued = app.get(&path).await;
    assert_eq!(queued.status, StatusCode::OK, "{:?}", queued.body);
    assert_eq!(queued.body["status"], "queued");
    assert_eq!(queued.body["intake_id"], id);
    assert_eq!(queued.body["contact_id"], Value::Null);
    assert!(queued.body["received_at"].is_string());
    assert!(queued.header_u64("x-ratelimit-limit").is_some());
    // The token in the query string works as well.
    let by_query = app
        .request(
            Method::GET,
            &format!("{path}?api_token={}", app.token),
            &[],
            "",
        )
        .await;
    assert_eq!(by_query.status, StatusCode::OK);
    assert_eq!(by_query.body["status"], "queued");

    // The worker processes the queued message: its record takes over.
    let messages = app.drain_queue().await;
    let message: IntakeMessage = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    let processor = Processor::new(app.db.conn.clone());
    // A first attempt failed and waits for its retry.
    processor
        .record_retries(&[worker::process::RetryRecord {
            id: message.intake_id,
            account_id: message.account_id,
            user_id: message.user_id,
            token_id: message.token_id,
            payload: message.payload.clone(),
            attempts: 1,
            last_error: "deadlock detected".into(),
            received_at: message.received_at,
        }])
        .await
        .unwrap();
    let retrying = app.get(&path).await;
    assert_eq!(retrying.body["status"], "processing");
    assert_eq!(retrying.body["attempts"], 1);
    assert_eq!(retrying.body["last_error"], "deadlock detected");
    assert_eq!(retrying.body["contact_id"], Value::Null);
    processor
        .try_process(&Attempt {
            message,
            previous_attempts: 1,
        })
        .await
        .unwrap();
    let done = app.get(&path).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["status"], "created");
    assert_eq!(done.body["attempts"], 2);
    assert_eq!(done.body["last_error"], Value::Null);
    assert!(done.body["contact_id"].as_i64().is_some());
    assert!(done.body["processed_at"].is_string());
    assert!(done.body["actions"].is_array() && done.body["warnings"].is_array());

    // Another account's token: exactly like an id that does not exist.
    let (_, other) = app.other_account().await;
    let foreign = app.get_as(&other, &path).await;
    let missing = app
        .get(&format!("/api/v1/intakes/{}", Uuid::now_v7()))
        .await;
    let garbage = app.get("/api/v1/intakes/not-a-uuid").await;
    for reply in [&foreign, &missing, &garbage] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.body, json!({"message": "Not found."}));
    }
    // Also while only the receiver's queued record exists.
    let fresh = app.post_lead(&json!({"phone_number": "2125550100"})).await;
    let fresh_path = format!(
        "/api/v1/intakes/{}",
        fresh.body["intake_id"].as_str().unwrap()
    );
    assert_eq!(app.get(&fresh_path).await.body["status"], "queued");
    assert_eq!(
        app.get_as(&other, &fresh_path).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_contact_filter_selects_the_right_contacts() {
    let app = spawn_app().await;
    let conn = &app.db.conn;
    let tag = admin::create_named(conn, admin::Catalog::Tag, app.account_id, "hot")
        .await
        .unwrap()
        .id;
    let line = admin::create_named(conn, admin::Catalog::Line, app.account_id, "Main")
        .await
        .unwrap()
        .id;
    let a = app
        .contact(json!({
            "phone_number": "8181234567",
            "other_phone_numbers": [{"label": "work", "phone_number": "3105550100"}],
            "first_name": "Ann", "last_name": "Lee",
            "email": "Ann@Example.com",
            "lead_source": "web", "source": "form",
            "tag_id": tag, "line_id": line, "user_id": app.user_id,
            "date_of_birth": "04/21/1990",
            "notes": "Agreed to be called.",
        }))
        .await;
    let b = app
        .contact(json!({"phone_number": "2125550100", "lead_source": "ads", "source": "fb"}))
        .await;
    let (other_account, other_token) = app.other_account().await;
    let foreign = app
        .contact_in(other_account, json!({"phone_number": "8181234567"}))
        .await;

    let cases: Vec<(String, Vec<i64>)> = vec![
        ("".into(), vec![a, b]),
        ("phone_number=(818)%20123-4567".into(), vec![a]),
        ("phone_number=%2B1%20310.555.0100".into(), vec![a]),
        ("email=ann@example.com".into(), vec![a]),
        (format!("tag_id={tag}"), vec![a]),
        ("lead_source=ads".into(), vec![b]),
        ("source=form".into(), vec![a]),
        (format!("line_id={line}"), vec![a]),
        (format!("user_id={}", app.user_id), vec![a]),
        ("created_after=2000-01-01".into(), vec![a, b]),
        ("created_after=2999-01-01".into(), vec![]),
        ("created_before=2000-01-01T00:00:00Z".into(), vec![]),
        ("created_before=2999-01-01".into(), vec![a, b]),
        ("lead_source=web&source=fb".into(), vec![]),
    ];
    for (query, expected) in cases {
        let reply = app.get(&format!("/api/v1/contacts?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
        assert_eq!(ids(&reply), expected, "{query}");
        assert_eq!(reply.body["next_cursor"], Value::Null, "{query}");
    }

    // The other account sees only its own contact.
    let theirs = app.get_as(&other_token, "/api/v1/contacts").await;
    assert_eq!(ids(&theirs), vec![foreign]);

    // One contact, with every field of §5.
    let one = app.get(&format!("/api/v1/contacts/{a}")).await;
    assert_eq!(one.status, StatusCode::OK);
    let c = &one.body;
    assert_eq!(c["id"], a);
    assert_eq!(c["phone_number"], "+18181234567");
    assert_eq!(
        c["other_phone_numbers"],
        json!([{"label": "work", "phone_number": "+13105550100"}])
    );
    assert_eq!(c["first_name"], "Ann");
    assert_eq!(c["name"], "Ann Lee");
    assert_eq!(c["date_of_birth"], "1990-04-21");
    assert_eq!(c["tag_ids"], json!([tag]));
    assert_eq!(c["line_id"], line);
    assert_eq!(c["user_id"], app.user_id);
    assert_eq!(c["state"], "CA");
    assert_eq!(c["notes"][0]["body"], "Agreed to be called.");
    for key in [
        "company_name",
        "disposition_status_id",
        "sequence_enrollments",
        "powerdialer",
        "created_at",
        "updated_at",
    ] {
        assert!(c.get(key).is_some(), "{key} present");
    }

    // Another account's contact, a missing one and a non-numeric id: the same 404.
    for path in [
        format!("/api/v1/contacts/{foreign}"),
        "/api/v1/contacts/99999999".to_owned(),
        "/api/v1/contacts/abc".to_owned(),
    ] {
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.body, json!({"message": "Not found."}));
    }
}

/// Every text field of the declaration list, from a lead's payload through the worker to
/// the read view, under its own name: a field added to the list is covered here.
#[tokio::test]
async fn every_text_field_goes_from_the_payload_to_the_read_view() {
    let app = spawn_app().await;
    let value = |field: TextField| match field.kind() {
        TextKind::Text => format!("{field} value"),
        TextKind::Email => format!("{field}@example.com"),
        TextKind::Website => format!("https://{field}.example.com"),
    };
    let mut fields = json!({"phone_number": "8181234567"});
    for field in TextField::iter() {
        fields[field.as_str()] = json!(value(field));
    }
    let id = app.contact(fields).await;
    let reply = app.get(&format!("/api/v1/contacts/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    for field in TextField::iter() {
        assert_eq!(reply.body[field.as_str()], json!(value(field)), "{field}");
    }
}

#[tokio::test]
async fn bad_filters_get_every_error_in_the_laravel_shape() {
    let app = spawn_app().await;
    let reply = app
        .get(
            "/api/v1/contacts?phone_number=12&tag_id=x&created_after=yesterday&limit=0&cursor=nope",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["message"], "The given data was invalid.");
    let errors = reply.body["errors"].as_object().expect("errors");
    for field in ["phone_number", "tag_id", "created_after", "limit", "cursor"] {
        assert!(
            errors[field].as_array().is_some_and(|m| !m.is_empty()),
            "{field} in {errors:?}"
        );
    }
}

#[tokio::test]
async fn pages_follow_the_cursor_without_skipping_or_repeating_while_contacts_arrive() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for i in 0..7 {
        expected.push(
            app.contact(json!({"phone_number": format!("81855501{i:02}"), "source": "fair"}))
                .await,
        );
    }
    // A contact the filter excludes never shows up.
    app.contact(json!({"phone_number": "8185550199", "source": "other"}))
        .await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contacts?source=fair&limit=2&cursor={c}"),
            None => "/api/v1/contacts?source=fair&limit=2".to_owned(),
        };
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        let page = ids(&reply);
        assert!(page.len() <= 2);
        seen.extend(page);
        pages += 1;
        if pages == 1 || pages == 3 {
            // New contacts arrive between pages: they come later, nothing shifts.
            let id = app
                .contact(json!({"phone_number": format!("81855502{pages:02}"), "source": "fair"}))
                .await;
            expected.push(id);
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 20, "pagination ends");
    }
    assert!(pages > 2, "more than two pages: {pages}");
    assert_eq!(seen, expected, "every contact exactly once, in order");
}

#[tokio::test]
async fn reads_need_a_token_and_failed_ones_count_against_the_address() {
    let app = spawn_app_with(|s| s.rate_limit.auth_failures_per_minute = 2).await;
    for (headers, path) in [
        (vec![], "/api/v1/contacts"),
        (vec![("authorization", "Bearer nope")], "/api/v1/contacts/1"),
    ] {
        let reply = app.request(Method::GET, path, &headers, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body, json!({"message": "Unauthenticated."}));
    }
    let blocked = app
        .request(Method::GET, "/api/v1/contacts?api_token=guess", &[], "")
        .await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(blocked.body["message"], "Too Many Attempts.");
}

#[tokio::test]
async fn reads_have_their_own_limit_per_token() {
    let app = spawn_app_with(|s| s.rate_limit.read_per_minute = 3).await;
    for remaining in [2, 1, 0] {
        let reply = app.get("/api/v1/contacts").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header_u64("x-ratelimit-limit"), Some(3));
        assert_eq!(reply.header_u64("x-ratelimit-remaining"), Some(remaining));
    }
    let refused = app
        .get(&format!("/api/v1/intakes/{}", Uuid::now_v7()))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["message"], "Too Many Attempts.");
    let wait_ms = refused.body["retry_after_ms"].as_u64().expect("exact wait");
    assert!(wait_ms > 50_000 && wait_ms <= 60_000, "{wait_ms}");
    assert_eq!(
        refused.header_u64("retry-after"),
        Some(wait_ms.div_ceil(1000))
    );
    assert_eq!(refused.header_u64("x-ratelimit-remaining"), Some(0));

    // The intake budget is untouched, and another token reads on.
    let lead = app.post_lead(&json!({"phone_number": "8181234567"})).await;
    assert_eq!(lead.status, StatusCode::ACCEPTED);
    assert_eq!(lead.header_u64("x-ratelimit-limit"), Some(1000));
    let second = app.another_token().await;
    assert_eq!(
        app.get_as(&second.token, "/api/v1/contacts").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn other_methods_get_405_naming_the_routes_methods() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/contacts", "GET"),
        (Method::POST, "/api/v1/contacts/1", "GET"),
        (Method::PUT, "/api/v1/intakes/x", "GET"),
        (Method::GET, "/api/v1/webhook/forms", "POST"),
        (Method::POST, "/openapi.json", "GET"),
    ] {
        let reply = app.request(method.clone(), path, &[], "").await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        assert!(reply.body["message"].is_string());
    }
    assert_eq!(
        app.request(Method::GET, "/api/v1/contacts/1/x", &[], "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_openapi_document_is_served() {
    let app = spawn_app().await;
    let reply = app.request(Method::GET, "/openapi.json", &[], "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/api/v1/webhook/forms", "/api/v1/contacts/{id}", "/metrics"] {
        assert!(reply.body["paths"][path].is_object(), "{path}");
    }
}
