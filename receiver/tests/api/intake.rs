use crate::helpers::{TestApp, eventually, lead, spawn_app, spawn_app_with};
use hyper::{Method, StatusCode};
use lapin::types::AMQPValue;
use leadctl::admin;
use serde_json::{Value, json};
use shared::intake::{IntakeMessage, IntakeStatus, QueuedIntake, headers};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PATH: &str = "/api/v1/webhook/forms";

fn header_value<'a>(props: &'a lapin::BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    props
        .headers()
        .as_ref()?
        .inner()
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn an_accepted_lead_is_in_the_queue_with_the_right_properties() {
    let app = spawn_app().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let auth = format!("Bearer {}", app.token);
    let reply = app
        .request(
            Method::POST,
            PATH,
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01")),
            ],
            serde_json::to_vec(&json!({
                "phone_number": "(818) 123-4567",
                "first_name": "Ada",
                "email": "ada@example.com",
                "date_of_birth": "05/17/1990",
                "timezone": "America/Los_Angeles",
                "tag_id": "7",
                "unknown_field": {"nested": true},
            }))
            .unwrap(),
        )
        .await;

    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let intake_id: Uuid = reply.body["intake_id"].as_str().unwrap().parse().unwrap();
    let status_url = format!("/api/v1/intakes/{intake_id}");
    assert_eq!(reply.body["message"], "Lead accepted.");
    assert_eq!(reply.body["status_url"], status_url.as_str());
    assert_eq!(reply.header("location"), Some(status_url.as_str()));
    assert_eq!(reply.header("x-ratelimit-limit"), Some("1000"));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("999"));
    assert!(reply.header_u64("x-ratelimit-reset").is_some());

    let messages = app.drain_queue().await;
    assert_eq!(messages.len(), 1);
    let delivery = &messages[0].delivery;
    let props = &delivery.properties;
    assert_eq!(props.delivery_mode(), &Some(2), "persistent");
    assert_eq!(
        props.message_id().as_ref().map(|m| m.to_string()),
        Some(intake_id.to_string())
    );
    assert_eq!(
        props
            .content_type()
            .as_ref()
            .map(|c| c.to_string())
            .as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header_value(props, headers::ACCOUNT_ID),
        Some(&AMQPValue::LongLongInt(app.account_id))
    );
    assert_eq!(
        header_value(props, headers::USER_ID),
        Some(&AMQPValue::LongLongInt(app.user_id))
    );
    let Some(AMQPValue::LongString(traceparent)) = header_value(props, headers::TRACEPARENT) else {
        panic!("no traceparent header");
    };
    let traceparent = traceparent.to_string();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")) && traceparent.ends_with("-01"),
        "the caller's trace continues: {traceparent}"
    );
    assert!(!traceparent.contains("00f067aa0ba902b7"), "a new span id");

    let message: IntakeMessage = serde_json::from_slice(&delivery.data).unwrap();
    assert_eq!(message.intake_id, intake_id);
    assert_eq!(message.account_id, app.account_id);
    assert_eq!(message.user_id, app.user_id);
    assert_eq!(message.token_id, app.token_id);
    assert_eq!(message.lead.phone_number.as_str(), "+18181234567");
    assert_eq!(message.lead.links.tag_id, Some(7));
    assert_eq!(message.lead.timezone, Some(chrono_tz::America::Los_Angeles));
    assert_eq!(
        message.payload.to_value()["unknown_field"],
        json!({"nested": true})
    );

    // GET /api/v1/intakes/{id} can answer `queued` from this record right after the 202.
    let mut redis = app.redis().await;
    let record: String = redis::cmd("GET")
        .arg(shared::keys::intake_status(
            &app.settings.redis_prefix,
            intake_id,
        ))
        .query_async(&mut redis)
        .await
        .expect("the queued record exists");
    let record: QueuedIntake = serde_json::from_str(&record).unwrap();
    assert_eq!(record.intake_id, intake_id);
    assert_eq!(record.account_id, app.account_id);
    assert_eq!(record.status, IntakeStatus::Queued);
    let ttl: i64 = redis::cmd("TTL")
        .arg(shared::keys::intake_status(
            &app.settings.redis_prefix,
            intake_id,
        ))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 23 * 3600, "kept long enough: {ttl}");
}

#[tokio::test]
async fn every_token_source_authenticates_and_the_token_is_never_stored() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let json_body = json!({"api_token": token, "phone_number": "8181234567"}).to_string();
    let form_body = format!("api_token={token}&phone_number=8181234567");
    let query = format!("{PATH}?api_token={token}&phone_number=8181234567");
    let bearer = format!("Bearer {token}");
    let replies = [
        app.post_raw(PATH, Some("application/json"), &json_body)
            .await,
        app.post_raw(PATH, Some("application/x-www-form-urlencoded"), &form_body)
            .await,
        app.post_raw(&query, None, "").await,
        app.request(
            Method::POST,
            PATH,
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            r#"{"phone_number":"8181234567"}"#,
        )
        .await,
    ];
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(
            reply.status,
            StatusCode::ACCEPTED,
            "source {i}: {:?}",
            reply.body
        );
    }
    let messages = app.drain_queue().await;
    assert_eq!(messages.len(), 4);
    for m in &messages {
        let text = String::from_utf8_lossy(&m.delivery.data);
        assert!(
            !text.contains(&token),
            "the token is not in the message: {text}"
        );
        let message: IntakeMessage = serde_json::from_slice(&m.delivery.data).unwrap();
        assert!(message.payload.to_value().get("api_token").is_none());
        assert_eq!(message.token_id, app.token_id);
    }
}

#[tokio::test]
async fn missing_unknown_and_revoked_tokens_get_401() {
    let app = spawn_app_with(|s| s.receiver.token_cache_ttl = Duration::from_millis(300)).await;
    let unauthenticated = json!({"message": "Unauthenticated."});

    let missing = app
        .post_raw(PATH, Some("application/json"), &lead().to_string())
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body, unauthenticated);

    let unknown = app
        .post_lead_as("lit_0000000000000000000000000000000000000000", &lead())
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.body, unauthenticated);

    let second = app.another_token().await;
    assert_eq!(
        app.post_lead_as(&second.token, &lead()).await.status,
        StatusCode::ACCEPTED
    );
    admin::revoke_token(&app.db.conn, second.row.id)
        .await
        .unwrap();
    let revoked_at = Instant::now();
    let refused = eventually(
        "a revoked token is refused",
        Duration::from_secs(5),
        || async {
            let reply = app.post_lead_as(&second.token, &lead()).await;
            (reply.status == StatusCode::UNAUTHORIZED).then_some(reply)
        },
    )
    .await;
    assert_eq!(refused.body, unauthenticated);
    assert!(
        revoked_at.elapsed() < Duration::from_millis(300 + 1_000),
        "revocation takes effect within the cache TTL ({:?})",
        revoked_at.elapsed()
    );
    // The other token of the same user still works.
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_cannot_set_account_status_or_ids() {
    let app = spawn_app().await;
    let other = admin::create_account(&app.db.conn, "Other", "US", None)
        .await
        .unwrap();
    let forced = "0193a000-0000-7000-8000-000000000000";
    let reply = app
        .post_lead(&json!({
            "phone_number": "8181234567",
            "account_id": other.id,
            "intake_id": forced,
            "token_id": 999,
            "status": "created",
            "contact_id": 5,
            "version": 99,
            "received_at": "2000-01-01T00:00:00Z",
        }))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    assert_ne!(reply.body["intake_id"], forced);
    let messages = app.drain_queue().await;
    let message: IntakeMessage = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    assert_eq!(message.account_id, app.account_id);
    assert_eq!(message.token_id, app.token_id);
    assert_eq!(message.version, shared::intake::MESSAGE_VERSION);
    assert_ne!(message.intake_id.to_string(), forced);
    assert!(message.received_at.timestamp() > 1_700_000_000);
}

#[tokio::test]
async fn query_fields_fill_in_and_the_body_wins() {
    let app = spawn_app().await;
    let path = format!("{PATH}?phone_number=2125550100&city=Queens&first_name=Query");
    let auth = format!("Bearer {}", app.token);
    let reply = app
        .request(
            Method::POST,
            &path,
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "phone_number=8181234567&first_name=Body",
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let messages = app.drain_queue().await;
    let message: IntakeMessage = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    assert_eq!(message.lead.phone_number.as_str(), "+18181234567");
    assert_eq!(message.lead.fields.first_name.as_deref(), Some("Body"));
    assert_eq!(message.lead.fields.city.as_deref(), Some("Queens"));
}

async fn post_with_key(app: &TestApp, token: &str, key: &str) -> crate::helpers::Reply {
    let auth = format!("Bearer {token}");
    app.request(
        Method::POST,
        PATH,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        lead().to_string(),
    )
    .await
}

#[tokio::test]
async fn the_same_idempotency_key_gets_the_first_202_and_nothing_is_enqueued_twice() {
    let app = spawn_app().await;
    let first = post_with_key(&app, &app.token, "order-42").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = post_with_key(&app, &app.token, "order-42").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body, "the first 202 again");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    // Another key, or the same key with another token, is another intake.
    let other_key = post_with_key(&app, &app.token, "order-43").await;
    let second = app.another_token().await;
    let other_token = post_with_key(&app, &second.token, "order-42").await;
    for reply in [&other_key, &other_token] {
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert_ne!(reply.body["intake_id"], first.body["intake_id"]);
    }

    let ids: Vec<String> = app
        .drain_queue()
        .await
        .iter()
        .map(|m| {
            m.delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3, "one message per intake: {ids:?}");
    assert_eq!(
        ids.iter()
            .filter(|id| Value::String((*id).clone()) == first.body["intake_id"])
            .count(),
        1
    );

    let bad = post_with_key(&app, &app.token, "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["errors"]["idempotency_key"].is_array());
}

/// What a receiver leaves on a key when it published `intake_id` and died before the
/// confirm (or got none): the key `open:<intake id>`, its lock held until it expires.
async fn unconfirmed_claim(app: &TestApp, key: &str, intake_id: Uuid, locked: bool) {
    use receiver::admission::intake_records::IntakeRecords;
    let records = IntakeRecords::new(&app.settings.redis_prefix, Duration::from_secs(5));
    let claim = records.claim_for(app.token_id, key, intake_id);
    let mut conn = app.redis().await;
    let _: () = redis::cmd("SET")
        .arg(claim.redis_key())
        .arg(claim.open())
        .arg("PX")
        .arg(records.key_ttl_ms())
        .query_async(&mut conn)
        .await
        .unwrap();
    if locked {
        let _: () = redis::cmd("SET")
            .arg(claim.lock_key())
            .arg("another request")
            .arg("PX")
            .arg(records.claim_ttl_ms())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_retry_after_a_publish_without_confirm_publishes_the_same_intake_id() {
    let app = spawn_app().await;
    // A request still publishing holds the lock: a retry meanwhile gets 409, no message.
    let busy = Uuid::now_v7();
    unconfirmed_claim(&app, "order-busy", busy, true).await;
    let conflict = post_with_key(&app, &app.token, "order-busy").await;
    assert_eq!(conflict.status, StatusCode::CONFLICT, "{:?}", conflict.body);

    // The publisher died (its lock expired) or gave up without a confirm: its message may
    // be in the queue, so the retry publishes the very same intake id, never a second one.
    let earlier = Uuid::now_v7();
    unconfirmed_claim(&app, "order-lost-confirm", earlier, false).await;
    let retry = post_with_key(&app, &app.token, "order-lost-confirm").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{:?}", retry.body);
    assert_eq!(retry.body["intake_id"], earlier.to_string());
    assert_eq!(retry.header("idempotent-replayed"), None);
    // Once confirmed, the key answers with that intake like any accepted one.
    let again = post_with_key(&app, &app.token, "order-lost-confirm").await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["intake_id"], earlier.to_string());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let messages = app.drain_queue().await;
    assert_eq!(messages.len(), 1, "one message, the retry's");
    let props = &messages[0].delivery.properties;
    assert_eq!(
        props.message_id().as_ref().map(|id| id.to_string()),
        Some(earlier.to_string())
    );
    let message: IntakeMessage = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    assert_eq!(message.intake_id, earlier);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_message_and_one_intake() {
    let app = spawn_app().await;
    let replies =
        futures_util::future::join_all((0..16).map(|_| post_with_key(&app, &app.token, "burst-7")))
            .await;
    let mut accepted_ids = std::collections::HashSet::new();
    for reply in &replies {
        match reply.status {
            StatusCode::ACCEPTED => {
                accepted_ids.insert(reply.body["intake_id"].as_str().unwrap().to_owned());
            }
            // Another request with the key is still being published: retry later.
            StatusCode::CONFLICT => assert!(reply.body["message"].is_string()),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(accepted_ids.len(), 1, "one intake id: {accepted_ids:?}");
    // Every retry now gets that intake's 202.
    for _ in 0..4 {
        let again = post_with_key(&app, &app.token, "burst-7").await;
        assert_eq!(again.status, StatusCode::ACCEPTED);
        assert!(accepted_ids.contains(again.body["intake_id"].as_str().unwrap()));
    }
    assert_eq!(app.drain_queue().await.len(), 1, "one message in the queue");
}

#[tokio::test]
async fn content_types_methods_and_sizes_get_their_status() {
    let app = spawn_app_with(|s| s.receiver.body_limit_bytes = 1024).await;
    let q = format!("{PATH}?api_token={}", app.token);

    for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = app.request(method.clone(), PATH, &[], "").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"));
    }
    for content_type in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let reply = app
            .post_raw(&q, Some(content_type), "phone_number=8181234567")
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    let no_type = app.post_raw(&q, None, "phone_number=8181234567").await;
    assert_eq!(
        no_type.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "a body needs a type"
    );

    let big = format!(
        r#"{{"phone_number":"8181234567","notes":"{}"}}"#,
        "x".repeat(2000)
    );
    let reply = app.post_raw(&q, Some("application/json"), &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    for body in [
        "{\"phone_number\":",
        "[{\"phone_number\":\"8181234567\"}]",
        "\"x\"",
    ] {
        let reply = app.post_raw(&q, Some("application/json"), body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["message"], "The given data was invalid.");
        assert!(reply.body["errors"]["body"].is_array(), "{:?}", reply.body);
    }

    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "APPLICATION/JSON",
    ] {
        let reply = app
            .post_raw(&q, Some(content_type), r#"{"phone_number":"8181234567"}"#)
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{content_type}");
    }
    let form = app
        .post_raw(
            &q,
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            "phone_number=8181234567",
        )
        .await;
    assert_eq!(form.status, StatusCode::ACCEPTED);
    // Integrations that can only set a URL.
    let url_only = app
        .post_raw(&format!("{q}&phone_number=8181234567"), None, "")
        .await;
    assert_eq!(url_only.status, StatusCode::ACCEPTED);

    let unknown = app.request(Method::GET, "/nope", &[], "").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body, json!({"message": "Not found."}));
}

#[tokio::test]
async fn known_tokens_keep_working_while_the_database_is_unreachable() {
    let (proxy, via) = testkit::proxy::proxied(&testkit::server_url()).await;
    // The app's own database, reached through the proxy.
    let app = spawn_app_with(|s| {
        let name = s.database_url.rsplit('/').next().unwrap().to_owned();
        s.database_url = format!("{via}/{name}");
        s.receiver.token_cache_ttl = Duration::from_millis(200);
        s.receiver.token_stale = Duration::from_secs(2);
    })
    .await;
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
    let looked_up = Instant::now();

    proxy.down();
    // Let the cached lookup expire (a wait that is the behaviour under test).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cached = app.post_lead(&lead()).await;
    assert_eq!(
        cached.status,
        StatusCode::ACCEPTED,
        "an expired entry is used while the database is down"
    );
    // ...but not beyond its stated bound: TTL + token_stale after the last good lookup
    // (waited out on purpose).
    tokio::time::sleep(Duration::from_millis(2_200).saturating_sub(looked_up.elapsed())).await;
    eventually(
        "a last good lookup is not served past its bound",
        Duration::from_secs(8),
        || async {
            let reply = app.post_lead(&lead()).await;
            (reply.status == StatusCode::SERVICE_UNAVAILABLE).then_some(())
        },
    )
    .await;
    assert!(
        looked_up.elapsed() < Duration::from_millis(200 + 2_000 + 5_000 + 1_000),
        "refused {:?} after the last good lookup",
        looked_up.elapsed()
    );
    let second = app.another_token().await;
    let unknown = app.post_lead_as(&second.token, &lead()).await;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an uncached token cannot be checked"
    );
    assert!(unknown.header_u64("retry-after").is_some());
    let ready = app.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.body["checks"]["database"], "unreachable");

    proxy.up();
    eventually(
        "lookups work again once the database is back",
        Duration::from_secs(10),
        || async {
            (app.post_lead_as(&second.token, &lead()).await.status == StatusCode::ACCEPTED)
                .then_some(())
        },
    )
    .await;
}
