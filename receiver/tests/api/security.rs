//! Security: one account never reads, links to or changes another's data (broken
//! object-level authorization, mass assignment), and hostile clients (slow, oversized,
//! deeply nested, badly encoded, huge lists) get a clear 4xx in bounded time and memory
//! while the receiver keeps answering everyone else.

use crate::helpers::{TestApp, lead, raw_request, spawn_app, spawn_app_with};
use hyper::StatusCode;
use leadctl::admin::{self, Catalog};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use shared::entities::{contact, powerdialer_item, sequence_enrollment};
use shared::intake::IntakeMessage;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;
use worker::process::{Attempt, Outcome, Processor};

/// Everything of an account a lead can name.
struct Catalogue {
    account_id: i64,
    user_id: i64,
    token: String,
    ring_group_id: i64,
    line_id: i64,
    tag_id: i64,
    disposition_id: i64,
    sequence_id: i64,
}

impl Catalogue {
    /// The ids of this catalogue as §3 fields, aliases when `aliases`.
    fn fields(&self, aliases: bool) -> Value {
        let (line, sequence, disposition) = if aliases {
            ("campaign_id", "automation_id", "disposition_id")
        } else {
            ("line_id", "sequence_id", "disposition_status_id")
        };
        json!({
            "user_id": self.user_id,
            "ring_group_id": self.ring_group_id,
            "distribute_to_ring_group": true,
            line: self.line_id.to_string(),
            sequence: self.sequence_id,
            "tag_id": self.tag_id,
            disposition: self.disposition_id,
            "add_to_powerdialer": true,
            "force_update": true,
            "force_update_sequence": true,
        })
    }
}

/// A user, ring group, line, tag, disposition and sequence in `account_id`.
async fn catalogue(app: &TestApp, account_id: i64, user_id: i64, token: String) -> Catalogue {
    let conn = &app.db.conn;
    let named = |kind| async move {
        admin::create_named(conn, kind, account_id, "Spring")
            .await
            .unwrap()
            .id
    };
    Catalogue {
        account_id,
        user_id,
        token,
        ring_group_id: admin::create_ring_group(conn, account_id, "Sales", &[user_id])
            .await
            .unwrap()
            .id,
        line_id: named(Catalog::Line).await,
        tag_id: named(Catalog::Tag).await,
        disposition_id: named(Catalog::Disposition).await,
        sequence_id: named(Catalog::Sequence).await,
    }
}

/// A second account with a user, a token and a full catalogue.
async fn other_catalogue(app: &TestApp) -> Catalogue {
    let account = admin::create_account(&app.db.conn, "Rival", "US", None)
        .await
        .unwrap();
    let user = admin::create_user(&app.db.conn, account.id, "Rita", None, true, true)
        .await
        .unwrap();
    let token = admin::create_token(&app.db.conn, user.id, None)
        .await
        .unwrap();
    catalogue(app, account.id, user.id, token.token).await
}

impl TestApp {
    /// Runs every queued message through the worker's processing, in order.
    async fn process_queue(&self) -> Vec<(IntakeMessage, Outcome)> {
        let mut out = Vec::new();
        for delivery in self.drain_queue().await {
            let message: IntakeMessage = serde_json::from_slice(&delivery.delivery.data).unwrap();
            let outcome = Processor::new(self.db.conn.clone())
                .try_process(&Attempt {
                    message: message.clone(),
                    previous_attempts: 0,
                })
                .await
                .expect("processed");
            out.push((message, outcome));
        }
        out
    }
}

fn warned(outcome: &Outcome) -> Vec<&str> {
    outcome.warnings.iter().map(|w| w.field.as_str()).collect()
}

#[tokio::test]
async fn another_accounts_ids_in_a_lead_are_warnings_and_touch_nothing_of_theirs() {
    let app = spawn_app().await;
    let ours = catalogue(&app, app.account_id, app.user_id, app.token.clone()).await;
    let theirs = other_catalogue(&app).await;
    // Their contact has the number our lead will carry, with their owner, tag, line,
    // disposition, sequence and PowerDialer entry.
    let mut their_lead = theirs.fields(false);
    their_lead["phone_number"] = json!("8181234567");
    their_lead["first_name"] = json!("Theirs");
    let their_contact = app.contact_in(theirs.account_id, their_lead).await;
    let their_path = format!("/api/v1/contacts/{their_contact}");
    let before = app.get_as(&theirs.token, &their_path).await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.body["user_id"], theirs.user_id, "{:?}", before.body);
    assert!(before.body["powerdialer"].is_object());

    for aliases in [false, true] {
        // Our lead, with every id-bearing field naming one of theirs.
        let mut fields = theirs.fields(aliases);
        fields["phone_number"] = json!(if aliases {
            "2125550100"
        } else {
            "(818) 123-4567"
        });
        fields["first_name"] = json!("Ours");
        let accepted = app.post_lead(&fields).await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
        let [(message, outcome)] = app.process_queue().await.try_into().unwrap();
        assert_eq!(message.account_id, app.account_id);

        // A new contact of ours: their contact with the same number was not matched.
        assert_eq!(outcome.status.as_str(), "created", "{outcome:?}");
        let ours_id = outcome.contact_id.unwrap();
        assert_ne!(ours_id, their_contact);
        let mut warnings = warned(&outcome);
        warnings.sort_unstable();
        // Named by the field of the contract, whichever alias the client used.
        let mut expected = vec![
            "add_to_powerdialer",
            "disposition_status_id",
            "line_id",
            "ring_group_id",
            "sequence_id",
            "tag_id",
            "user_id",
        ];
        expected.sort_unstable();
        assert_eq!(warnings, expected, "{:?}", outcome.warnings);
        // The intake record says the same to its client, and never names their data.
        let status = app
            .get(&format!("/api/v1/intakes/{}", message.intake_id))
            .await;
        assert_eq!(status.body["status"], "created");
        assert_eq!(status.body["warnings"].as_array().unwrap().len(), 7);
        assert!(!status.body.to_string().contains("Theirs"));

        // Nothing of theirs is linked to our contact.
        let contact = app.get(&format!("/api/v1/contacts/{ours_id}")).await;
        let c = &contact.body;
        assert_eq!(c["first_name"], "Ours");
        for key in ["user_id", "line_id", "disposition_status_id", "powerdialer"] {
            assert_eq!(c[key], Value::Null, "{key}: {c}");
        }
        assert_eq!(c["tag_ids"], json!([]));
        assert_eq!(c["sequence_enrollments"], json!([]));
    }

    // Their contact, and everything of theirs, is as it was.
    let after = app.get_as(&theirs.token, &their_path).await;
    assert_eq!(after.body, before.body);
    let conn = &app.db.conn;
    assert_eq!(
        powerdialer_item::Entity::find()
            .filter(powerdialer_item::Column::UserId.eq(theirs.user_id))
            .count(conn)
            .await
            .unwrap(),
        1,
        "only their own contact is on their user's PowerDialer list"
    );
    assert_eq!(
        sequence_enrollment::Entity::find()
            .filter(sequence_enrollment::Column::SequenceId.eq(theirs.sequence_id))
            .count(conn)
            .await
            .unwrap(),
        1
    );

    // The control: our own ids in the same fields are used, so the warnings above came
    // from the account check and not from ids being ignored altogether.
    let mut fields = ours.fields(false);
    fields["phone_number"] = json!("3105550100");
    assert_eq!(app.post_lead(&fields).await.status, StatusCode::ACCEPTED);
    let [(_, outcome)] = app.process_queue().await.try_into().unwrap();
    assert_eq!(warned(&outcome), Vec::<&str>::new(), "{outcome:?}");
    let c = app
        .get(&format!("/api/v1/contacts/{}", outcome.contact_id.unwrap()))
        .await
        .body;
    assert_eq!(c["user_id"], ours.user_id);
    assert_eq!(c["line_id"], ours.line_id);
    assert_eq!(c["disposition_status_id"], ours.disposition_id);
    assert_eq!(c["tag_ids"], json!([ours.tag_id]));
    assert_eq!(
        c["sequence_enrollments"][0]["sequence_id"],
        ours.sequence_id
    );
    assert_eq!(c["powerdialer"]["user_id"], ours.user_id);
}

#[tokio::test]
async fn every_read_endpoint_answers_another_accounts_ids_like_missing_ones() {
    let app = spawn_app().await;
    let ours = catalogue(&app, app.account_id, app.user_id, app.token.clone()).await;
    let theirs = other_catalogue(&app).await;
    let mut fields = ours.fields(false);
    fields["phone_number"] = json!("8181234567");
    fields["email"] = json!("ours@example.com");
    fields["lead_source"] = json!("ours-only");
    let accepted = app.post_lead(&fields).await;
    let intake_id = accepted.body["intake_id"].as_str().unwrap().to_owned();
    // Queued (the receiver's record) and then processed (the worker's record).
    let queued_path = format!("/api/v1/intakes/{intake_id}");
    let not_found = json!({"message": "Not found."});
    let foreign = app.get_as(&theirs.token, &queued_path).await;
    assert_eq!(
        (foreign.status, &foreign.body),
        (StatusCode::NOT_FOUND, &not_found)
    );
    let [(_, outcome)] = app.process_queue().await.try_into().unwrap();
    let contact_id = outcome.contact_id.unwrap();
    assert_eq!(
        app.get(&queued_path).await.status,
        StatusCode::OK,
        "the owner reads it"
    );

    for path in [
        queued_path.clone(),
        format!("/api/v1/contacts/{contact_id}"),
        format!("/api/v1/contacts/{contact_id}?api_token={}", theirs.token),
    ] {
        let reply = app.get_as(&theirs.token, &path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.body, not_found, "{path}");
    }
    // A token in the query wins over the header: still their account, still nothing.
    let reply = app
        .request(
            hyper::Method::GET,
            &format!("/api/v1/contacts/{contact_id}?api_token={}", theirs.token),
            &[("authorization", &format!("Bearer {}", app.token))],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    // Every search filter with our values finds nothing for them; the same searches find
    // our contact for us (so each filter does select it).
    let searches = [
        "phone_number=8181234567".to_owned(),
        "email=ours@example.com".to_owned(),
        "lead_source=ours-only".to_owned(),
        format!("tag_id={}", ours.tag_id),
        format!("line_id={}", ours.line_id),
        format!("user_id={}", ours.user_id),
        "limit=100".to_owned(),
    ];
    for query in &searches {
        let path = format!("/api/v1/contacts?{query}");
        let mine = app.get(&path).await;
        assert_eq!(mine.body["data"][0]["id"], contact_id, "{query}");
        let them = app.get_as(&theirs.token, &path).await;
        assert_eq!(them.status, StatusCode::OK, "{query}");
        assert_eq!(them.body["data"], json!([]), "{query}");
    }
    // A cursor from our pages read with their token: their pages only.
    for i in 0..3 {
        app.contact(json!({"phone_number": format!("31055501{i:02}")}))
            .await;
    }
    let page = app.get("/api/v1/contacts?limit=1").await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let them = app
        .get_as(
            &theirs.token,
            &format!("/api/v1/contacts?limit=10&cursor={cursor}"),
        )
        .await;
    assert_eq!(them.status, StatusCode::OK);
    assert_eq!(them.body["data"], json!([]), "{:?}", them.body);
}

#[tokio::test]
async fn fields_the_server_owns_cannot_be_set_from_the_body() {
    let app = spawn_app().await;
    let theirs = other_catalogue(&app).await;
    let existing = app
        .contact(json!({"phone_number": "2125550100", "first_name": "Keep"}))
        .await;
    let their_contact = app
        .contact_in(theirs.account_id, json!({"phone_number": "3105550100"}))
        .await;
    let planted_intake = Uuid::now_v7();
    let server_owned = json!({
        "account_id": theirs.account_id,
        "id": existing,
        "contact_id": their_contact,
        "intake_id": planted_intake,
        "status": "dead_lettered",
        "created_at": "2001-01-01T00:00:00Z",
        "updated_at": "2001-01-01T00:00:00Z",
        "received_at": "2001-01-01T00:00:00Z",
        "processed_at": "2001-01-01T00:00:00Z",
        "token_id": 999,
        "user": theirs.user_id,
        "version": 99,
        "actions": [{"type": "tag_added", "tag_id": theirs.tag_id}],
        "warnings": [],
        "attempts": 7,
        "powerdialer": {"user_id": theirs.user_id, "position": 1},
        "tag_ids": [theirs.tag_id],
        "sequence_enrollments": [{"sequence_id": theirs.sequence_id, "status": "active"}],
        "notes": "A real note.",
    });
    let started = chrono::Utc::now();
    for format in ["json", "form"] {
        let mut fields = server_owned.clone();
        fields["phone_number"] = json!(if format == "json" {
            "8181234567"
        } else {
            "4155550100"
        });
        let accepted = if format == "json" {
            app.post_lead(&fields).await
        } else {
            let form: String = fields
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair(k, &v)
                        .finish()
                })
                .collect::<Vec<_>>()
                .join("&");
            app.request(
                hyper::Method::POST,
                &format!("/api/v1/webhook/forms?api_token={}", app.token),
                &[("content-type", "application/x-www-form-urlencoded")],
                form,
            )
            .await
        };
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
        let intake_id = accepted.body["intake_id"].as_str().unwrap().to_owned();
        assert_ne!(intake_id, planted_intake.to_string());
        let [(message, outcome)] = app.process_queue().await.try_into().unwrap();
        assert_eq!(message.account_id, app.account_id, "{format}");
        assert_eq!(message.user_id, app.user_id, "{format}");
        assert_eq!(message.token_id, app.token_id, "{format}");
        assert_eq!(message.intake_id.to_string(), intake_id);

        // A new contact with server-set fields: not the one named by `id`, not theirs.
        assert_eq!(outcome.status.as_str(), "created", "{format}: {outcome:?}");
        let id = outcome.contact_id.unwrap();
        assert!(id != existing && id != their_contact);
        let row = contact::Entity::find_by_id(id)
            .one(&app.db.conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.account_id, app.account_id);
        assert!(
            row.created_at >= started && row.updated_at >= started,
            "{row:?}"
        );
        let c = app.get(&format!("/api/v1/contacts/{id}")).await.body;
        assert_eq!(c["tag_ids"], json!([]), "{format}");
        assert_eq!(c["sequence_enrollments"], json!([]), "{format}");
        assert_eq!(c["powerdialer"], Value::Null, "{format}");
        assert_eq!(c["user_id"], Value::Null, "{format}");
        assert_eq!(c["notes"][0]["body"], "A real note.", "{format}");

        let record = app.get(&format!("/api/v1/intakes/{intake_id}")).await;
        assert_eq!(record.body["status"], "created", "{format}");
        assert_eq!(record.body["contact_id"], id, "{format}");
        assert!(!record.body["actions"].to_string().contains("tag_added"));
    }
    // The planted intake id names nothing; the named contacts are untouched.
    assert_eq!(
        app.get(&format!("/api/v1/intakes/{planted_intake}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let kept = app.get(&format!("/api/v1/contacts/{existing}")).await.body;
    assert_eq!(kept["first_name"], "Keep");
    assert_eq!(kept["notes"], json!([]));
    let theirs_now = app
        .get_as(&theirs.token, &format!("/api/v1/contacts/{their_contact}"))
        .await
        .body;
    assert_eq!(theirs_now["notes"], json!([]));
    assert_eq!(theirs_now["first_name"], Value::Null);
}

#[tokio::test]
async fn a_slow_head_is_cut_at_the_header_timeout_while_others_are_served() {
    let app = spawn_app_with(|s| s.receiver.header_timeout = Duration::from_millis(2_000)).await;
    // Slowloris: many connections, each sending its head one byte a second.
    let head = format!(
        "POST /api/v1/webhook/forms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Pad: {}\r\n",
        app.token,
        "a".repeat(64)
    );
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let bytes = head.clone().into_bytes();
        slow.push(tokio::spawn(async move {
            let started = Instant::now();
            for byte in bytes {
                if stream.write_all(&[byte]).await.is_err() {
                    break;
                }
                // The slow client's pace: the behaviour under test.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Cut: a write fails once the server has closed (the first may still be
            // buffered, the next meets the reset).
            started.elapsed()
        }));
    }
    // Meanwhile everyone else is served.
    let serving = Instant::now();
    while serving.elapsed() < Duration::from_secs(3) {
        let reply = app.post_lead(&lead()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        app.assert_up("slow heads").await;
        // Requests spread over the slow clients' 3 s, on purpose.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for handle in slow {
        let held = tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the slow client is cut off well before its head ends")
            .unwrap();
        // Two seconds of header timeout, plus the writes that notice the close (a head
        // let through would take ~170 s).
        assert!(held < Duration::from_secs(9), "held for {held:?}");
    }
}

#[tokio::test]
async fn oversized_heads_get_431_and_the_service_stays_up() {
    let app = spawn_app().await;
    let request = |headers: String| {
        format!(
            "GET /api/v1/contacts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n{headers}\r\n",
            app.token
        )
        .into_bytes()
    };
    // Just under the bound: served.
    let fits = raw_request(
        app.addr,
        request(format!("X-Pad: {}\r\n", "a".repeat(60 * 1024))),
    )
    .await;
    assert_eq!(fits.status, 200, "{}", fits.head);

    for (name, headers) in [
        (
            "one 100 KiB header",
            format!("X-Pad: {}\r\n", "a".repeat(100 * 1024)),
        ),
        (
            "one 1 MiB header",
            format!("X-Pad: {}\r\n", "a".repeat(1024 * 1024)),
        ),
        (
            "80 headers of 1 KiB",
            (0..80)
                .map(|i| format!("X-Pad-{i}: {}\r\n", "a".repeat(1024)))
                .collect(),
        ),
        (
            "500 small headers",
            (0..500).map(|i| format!("X-Pad-{i}: a\r\n")).collect(),
        ),
    ] {
        let started = Instant::now();
        let reply = raw_request(app.addr, request(headers)).await;
        assert_eq!(reply.status, 431, "{name}: {}", reply.head);
        assert!(started.elapsed() < Duration::from_secs(8), "{name}");
        app.assert_up(name).await;
    }
    // A request line past the bound too.
    let long_uri = format!(
        "GET /api/v1/contacts?source={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let reply = raw_request(app.addr, long_uri.into_bytes()).await;
    assert!(
        [414, 431].contains(&reply.status),
        "a 100 KiB URI: {}",
        reply.head
    );
    app.assert_up("a long URI").await;
}

#[tokio::test]
async fn oversized_bodies_get_413_with_or_without_a_content_length() {
    let app = spawn_app().await;
    let limit = app.settings.receiver.body_limit_bytes;
    let head = |framing: &str| {
        format!(
            "POST /api/v1/webhook/forms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n{framing}\r\n",
            app.token
        )
    };
    let big = format!(
        r#"{{"phone_number":"8181234567","notes":"{}"}}"#,
        "x".repeat(limit + 1024)
    );
    let chunked = |body: &str, chunk: usize| {
        let mut out = head("Transfer-Encoding: chunked\r\n");
        for part in body.as_bytes().chunks(chunk) {
            out.push_str(&format!(
                "{:x}\r\n{}\r\n",
                part.len(),
                String::from_utf8_lossy(part)
            ));
        }
        out.push_str("0\r\n\r\n");
        out
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "a declared length over the limit",
            format!(
                "{}{big}",
                head(&format!("Content-Length: {}\r\n", big.len()))
            ),
        ),
        (
            "a declared length of a terabyte, nothing sent",
            head("Content-Length: 1000000000000\r\n"),
        ),
        ("a chunked body over the limit", chunked(&big, 4096)),
        ("one chunk over the limit", chunked(&big, big.len())),
        (
            "a chunk that announces a terabyte",
            format!(
                "{}e8d4a51000\r\n{}",
                head("Transfer-Encoding: chunked\r\n"),
                "x".repeat(limit + 1024)
            ),
        ),
    ];
    for (name, request) in cases {
        let started = Instant::now();
        let reply = raw_request(app.addr, request.into_bytes()).await;
        assert_eq!(reply.status, 413, "{name}: {}", reply.head);
        assert_eq!(
            reply.body,
            json!({"message": format!("The request body must not be larger than {limit} bytes.")}),
            "{name}"
        );
        assert!(started.elapsed() < Duration::from_secs(8), "{name}");
        app.assert_up(name).await;
    }
    // Right at the limit, chunked: read and judged like any body.
    let fits = format!(
        r#"{{"phone_number":"8181234567","x":"{}"}}"#,
        "x".repeat(limit - 64)
    );
    let reply = raw_request(app.addr, chunked(&fits, 1000).into_bytes()).await;
    assert_eq!(reply.status, 202, "{}", reply.head);
    assert_eq!(
        app.queue_len().await,
        1,
        "only the lead that fit was queued"
    );
}

#[tokio::test]
async fn deep_nesting_and_invalid_utf8_get_400_naming_what_is_wrong() {
    // A body limit large enough that the parser, not the limit, meets the nesting.
    let app = spawn_app_with(|s| s.receiver.body_limit_bytes = 1024 * 1024).await;
    let auth = format!("Bearer {}", app.token);
    let post = |content_type: &'static str, body: Vec<u8>| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.request(
                hyper::Method::POST,
                "/api/v1/webhook/forms",
                &[("content-type", content_type), ("authorization", &auth)],
                body,
            )
            .await
        }
    };
    let json_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("100,000 [", "[".repeat(100_000).into_bytes(), "body"),
        (
            "50,000 nested objects",
            r#"{"a":"#.repeat(50_000).into_bytes(),
            "body",
        ),
        (
            "100,000 [ inside a field",
            format!(
                r#"{{"phone_number":"8181234567","name":{}"#,
                "[".repeat(60_000)
            )
            .into_bytes(),
            "body",
        ),
        (
            "a nested array where a number belongs",
            format!(
                r#"{{"phone_number":{}"8181234567"{}}}"#,
                "[".repeat(100),
                "]".repeat(100)
            )
            .into_bytes(),
            "phone_number",
        ),
        (
            "invalid UTF-8 in a JSON string",
            [
                &b"{\"phone_number\":\"8181234567\",\"name\":\"A"[..],
                &[0xff, 0xc3],
                b"\"}",
            ]
            .concat(),
            "body",
        ),
        (
            "UTF-16 JSON",
            "{\"phone_number\":\"8181234567\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            "body",
        ),
        (
            "a lone surrogate escape",
            br#"{"phone_number":"8181234567","name":"\ud800"}"#.to_vec(),
            "body",
        ),
    ];
    for (name, body, field) in json_cases {
        let reply = post("application/json", body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {:?}",
            reply.body
        );
        assert_eq!(
            reply.body["message"], "The given data was invalid.",
            "{name}"
        );
        assert!(
            reply.body["errors"][field].is_array(),
            "{name}: {:?}",
            reply.body
        );
        app.assert_up(name).await;
    }

    // Form bodies decode percent-escapes leniently: invalid UTF-8 is replaced, never a
    // crash, and the field that ends up invalid is named.
    let form_cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "an escaped invalid byte",
            b"phone_number=8181234567&email=a%FF@x.com".to_vec(),
            "email",
        ),
        (
            "a raw invalid byte",
            [
                &b"phone_number=8181234567&email="[..],
                &[0xff, 0xfe],
                b"@x.com",
            ]
            .concat(),
            "email",
        ),
        (
            "a key 10,000 levels deep",
            format!(
                "phone_number=8181234567&other_phone_numbers{}=1&email=x",
                "[0]".repeat(10_000)
            )
            .into_bytes(),
            "email",
        ),
    ];
    for (name, body, field) in form_cases {
        let reply = post("application/x-www-form-urlencoded", body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {:?}",
            reply.body
        );
        assert!(
            reply.body["errors"][field].is_array(),
            "{name}: {:?}",
            reply.body
        );
        app.assert_up(name).await;
    }

    // Invalid UTF-8 in headers: a clear 4xx from the header's own rule.
    let raw = |header: &[u8]| {
        [
            &b"POST /api/v1/webhook/forms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"[..],
            header,
            b"\r\nContent-Length: 29\r\n\r\n{\"phone_number\":\"8181234567\"}",
        ]
        .concat()
    };
    let token_header = format!("Authorization: Bearer {}\r\n", app.token);
    for (name, header, status) in [
        (
            "an Authorization header",
            b"Content-Type: application/json\r\nAuthorization: Bearer \xff\xfe".to_vec(),
            401,
        ),
        (
            "a Content-Type header",
            [
                token_header.as_bytes(),
                b"Content-Type: application/\xffjson",
            ]
            .concat(),
            415,
        ),
        (
            "an Idempotency-Key header",
            [
                token_header.as_bytes(),
                b"Content-Type: application/json\r\nIdempotency-Key: k\xff",
            ]
            .concat(),
            400,
        ),
    ] {
        let reply = raw_request(app.addr, raw(&header)).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.head);
        assert!(
            reply.body["message"].is_string(),
            "{name}: {:?}",
            reply.body
        );
        app.assert_up(name).await;
    }
    // In the query string, escaped: a token that does not exist.
    let reply = app
        .post_raw(
            "/api/v1/webhook/forms?api_token=%FF%FE&phone_number=8181234567",
            None,
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // Error bodies name fields and rules, never what was sent.
    let marker = "zq-marker-7431";
    let reply = app
        .post_raw(
            "/api/v1/webhook/forms",
            Some("application/json"),
            &json!({
                "api_token": app.token,
                "phone_number": marker,
                "email": marker,
                "tag_id": marker,
                "date_of_birth": marker,
            })
            .to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let text = reply.body.to_string();
    assert!(
        !text.contains(marker) && !text.contains(&app.token["lit_".len()..]),
        "{text}"
    );
    assert_eq!(app.queue_len().await, 0, "nothing was queued");
}

/// Peak resident memory of this process (the receiver runs in it), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn ten_thousand_other_numbers_are_refused_in_bounded_time_and_memory() {
    // A body limit large enough that the parser, not the limit, meets the list.
    let app = spawn_app_with(|s| s.receiver.body_limit_bytes = 2 * 1024 * 1024).await;
    let numbers: Vec<String> = (0..10_000).map(|i| format!("818555{i:04}")).collect();
    let objects = json!({
        "phone_number": "8181234567",
        "other_phone_numbers": numbers
            .iter()
            .map(|n| json!({"label": "work", "phone_number": n}))
            .collect::<Vec<_>>(),
    });
    let pairs = json!({
        "phone_number": "8181234567",
        "other_phone_numbers": numbers.iter().map(|n| json!(["work", n])).collect::<Vec<_>>(),
    });
    let form = std::iter::once("phone_number=8181234567".to_owned())
        .chain(numbers.iter().enumerate().map(|(i, n)| {
            format!(
                "other_phone_numbers[{i}][label]=work&other_phone_numbers[{i}][phone_number]={n}"
            )
        }))
        .collect::<Vec<_>>()
        .join("&");
    let auth = format!("Bearer {}", app.token);
    let before = peak_rss();
    let requests: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "objects",
            "application/json",
            serde_json::to_vec(&objects).unwrap(),
        ),
        (
            "pairs",
            "application/json",
            serde_json::to_vec(&pairs).unwrap(),
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        ),
    ];
    // Each several times at once: what a burst of them costs.
    let mut answers = Vec::new();
    for (name, content_type, body) in &requests {
        let headers = [("content-type", *content_type), ("authorization", &auth)];
        let started = Instant::now();
        let replies = futures_util::future::join_all((0..8).map(|_| {
            app.request(
                hyper::Method::POST,
                "/api/v1/webhook/forms",
                &headers,
                body.clone(),
            )
        }))
        .await;
        answers.push((name, started.elapsed(), replies));
    }
    for (name, elapsed, replies) in answers {
        for reply in replies {
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
            let errors = reply.body["errors"].as_object().unwrap();
            assert_eq!(
                errors.keys().collect::<Vec<_>>(),
                ["other_phone_numbers"],
                "{name}: only the count is reported, not 10,000 item errors"
            );
        }
        assert!(elapsed < Duration::from_secs(15), "{name}: {elapsed:?}");
    }
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 256 * 1024 * 1024,
        "peak memory grew by {} MiB",
        grown / 1024 / 1024
    );
    app.assert_up("10,000 other numbers").await;
    assert_eq!(app.queue_len().await, 0);

    // Under the default limit, the shortest spelling of 10,000 numbers.
    let app = spawn_app().await;
    let short = format!(
        r#"{{"phone_number":"8181234567","other_phone_numbers":[{}]}}"#,
        vec!["1"; 10_000].join(",")
    );
    let reply = app
        .request(
            hyper::Method::POST,
            "/api/v1/webhook/forms",
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {}", app.token)),
            ],
            short,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["errors"]["other_phone_numbers"].is_array());
    app.assert_up("10,000 short numbers").await;
}
