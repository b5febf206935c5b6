//! The token cache: revocations reach every receiver at once, a flood of unknown tokens
//! cannot push out the known ones, concurrent first lookups share one query and no answer is
//! kept past 30 s. And the token itself: on no path is it stored, in PostgreSQL or a dead
//! letter.

use crate::helpers::{eventually, lead, spawn_app};
use crate::sources::{google_test_lead, post_google};
use crate::sync::RunningWorker;
use hyper::{Method, StatusCode};
use lapin::options::BasicGetOptions;
use leadctl::admin::{self, sources};
use receiver::admission::token::{Authenticator, Clock};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_by_every_receiver() {
    // The default TTL (30 s): only the announcement can make the revocation this quick.
    let app = spawn_app().await;
    assert_eq!(
        app.settings.receiver.token_cache_ttl,
        Duration::from_secs(30)
    );
    let (peer, _stop_peer) = app.spawn_peer().await;
    let second = app.another_token().await;
    for addr in [app.addr, peer] {
        assert_eq!(
            app.post_lead_at(addr, &second.token, &lead()).await.status,
            StatusCode::ACCEPTED,
            "cached as valid on {addr}"
        );
    }
    // Both receivers listen for revocations.
    app.wait_for_token_listeners(2).await;

    let revoked = admin::revoke_token(&app.db.conn, second.row.id)
        .await
        .unwrap();
    leadctl::cli::announce_token_change(&app.settings, &revoked.token_hash)
        .await
        .expect("announced");
    let at = Instant::now();
    for addr in [app.addr, peer] {
        eventually(
            &format!("{addr} refusing the revoked token"),
            Duration::from_secs(5),
            || async {
                let reply = app.post_lead_at(addr, &second.token, &lead()).await;
                (reply.status == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
    }
    assert!(
        at.elapsed() < Duration::from_secs(2),
        "refused by both within {:?}, long before the 30 s TTL",
        at.elapsed()
    );
    // The app's other token is untouched.
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_announced_change_also_forgets_that_a_token_was_unknown() {
    let app = spawn_app().await;
    let second = app.another_token().await;
    app.wait_for_token_listeners(1).await;
    let revoke = format!(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = {}",
        second.row.id
    );
    app.db
        .conn
        .execute_unprepared(&revoke)
        .await
        .expect("revoke");
    // Looked up first while it is not valid: cached as unknown for the TTL (30 s).
    assert_eq!(
        app.post_lead_as(&second.token, &lead()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let restore = format!(
        "UPDATE api_tokens SET revoked_at = NULL WHERE id = {}",
        second.row.id
    );
    app.db
        .conn
        .execute_unprepared(&restore)
        .await
        .expect("restore");
    leadctl::cli::announce_token_change(&app.settings, &second.row.token_hash)
        .await
        .expect("announced");
    eventually(
        "the valid token accepted after its announcement",
        Duration::from_secs(5),
        || async {
            let reply = app.post_lead_as(&second.token, &lead()).await;
            (reply.status == StatusCode::ACCEPTED).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_never_evicts_a_known_one() {
    let app = spawn_app().await;
    let capacity = 100;
    let auth = Authenticator::with_capacity(
        app.db.conn.clone(),
        Duration::from_secs(30),
        Duration::from_secs(60),
        capacity,
    );
    let known = auth.authenticate(&app.token).await.unwrap().expect("known");
    for i in 0..(capacity * 20) {
        let guess = format!("lit_{i:040}");
        assert_eq!(auth.authenticate(&guess).await.unwrap(), None);
    }
    // Revoked in the database without an announcement: only the cache can still answer,
    // so the token is accepted exactly when its entry survived the flood.
    admin::revoke_token(&app.db.conn, app.token_id)
        .await
        .unwrap();
    assert_eq!(
        auth.authenticate(&app.token).await.unwrap(),
        Some(known),
        "the known token is still cached after {} unknown ones",
        capacity * 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_lookups_of_one_token_share_one_database_query() {
    let app = spawn_app().await;
    let auth = Arc::new(Authenticator::new(
        app.db.conn.clone(),
        Duration::from_secs(30),
        Duration::from_secs(60),
    ));
    let unknown = "lit_1111111111111111111111111111111111111111".to_owned();
    // All 64 ask at the same moment, on four threads.
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let lookups = (0..64).map(|i| {
        let auth = auth.clone();
        let start = start.clone();
        let token = if i % 2 == 0 {
            app.token.clone()
        } else {
            unknown.clone()
        };
        tokio::spawn(async move {
            start.wait().await;
            (i, auth.authenticate(&token).await)
        })
    });
    for answer in futures_util::future::join_all(lookups).await {
        let (i, principal) = answer.unwrap();
        let principal = principal.unwrap();
        if i % 2 == 1 {
            assert_eq!(principal, None, "lookup {i}: the unknown token");
            continue;
        }
        let principal = principal.expect("known");
        assert_eq!(principal.token_id, app.token_id);
        assert_eq!(principal.account_id, app.account_id);
    }
    // 32 first lookups of the known token and 32 of the unknown one, all at once: one
    // query each.
    assert_eq!(auth.database_queries(), 2);
    auth.authenticate(&app.token).await.unwrap().expect("known");
    assert_eq!(auth.database_queries(), 2, "cached afterwards");
}

/// A clock the test moves by hand.
struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap()
    }
}

#[tokio::test]
async fn a_lookup_is_cached_for_at_most_30_seconds_even_when_configured_longer() {
    let app = spawn_app().await;
    let clock = Arc::new(ManualClock {
        start: Instant::now(),
        elapsed: Mutex::new(Duration::ZERO),
    });
    // Configured at 10 minutes: capped at 30 s.
    let auth = Authenticator::with_clock(
        app.db.conn.clone(),
        Duration::from_secs(600),
        Duration::from_secs(300),
        clock.clone(),
    );
    let second = app.another_token().await;
    let changing = "lit_2222222222222222222222222222222222222222";
    assert!(auth.authenticate(&app.token).await.unwrap().is_some());
    assert_eq!(auth.authenticate(changing).await.unwrap(), None);
    assert_eq!(auth.database_queries(), 2);

    // Behind the cache's back (no announcement): the known token is revoked and the unknown
    // one becomes the second token's.
    admin::revoke_token(&app.db.conn, app.token_id)
        .await
        .unwrap();
    app.db
        .conn
        .execute_unprepared(&format!(
            "UPDATE api_tokens SET token_hash = '{}' WHERE id = {}",
            shared::token::hash(changing),
            second.row.id
        ))
        .await
        .unwrap();

    clock.advance(Duration::from_secs(30) - Duration::from_millis(1));
    assert!(
        auth.authenticate(&app.token).await.unwrap().is_some(),
        "still the cached answer 1 ms before 30 s"
    );
    assert_eq!(auth.authenticate(changing).await.unwrap(), None);
    assert_eq!(auth.database_queries(), 2, "both answered from the cache");

    clock.advance(Duration::from_millis(1));
    assert_eq!(
        auth.authenticate(&app.token).await.unwrap(),
        None,
        "the revocation counts at 30 s"
    );
    let now_known = auth.authenticate(changing).await.unwrap().expect("known");
    assert_eq!(now_known.token_id, second.row.id);
    assert_eq!(auth.database_queries(), 4);
}

/// Every text of every row of every table of the test's database that contains `secret`.
async fn rows_containing(app: &crate::helpers::TestApp, secret: &str) -> Vec<String> {
    let tables: Vec<String> = app
        .db
        .conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public'",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect();
    assert!(tables.len() > 10, "{tables:?}");
    let mut found = Vec::new();
    for table in tables {
        let rows = app
            .db
            .conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                format!(
                    "SELECT to_jsonb(t)::text AS row FROM \"{table}\" t \
                     WHERE strpos(to_jsonb(t)::text, $1) > 0"
                ),
                [secret.into()],
            ))
            .await
            .unwrap();
        found.extend(
            rows.iter()
                .map(|row| format!("{table}: {}", row.try_get::<String>("", "row").unwrap())),
        );
    }
    found
}

#[tokio::test]
async fn no_path_stores_the_token_whether_the_lead_is_processed_or_dead_lettered() {
    let app = spawn_app().await;
    let token = app.token.clone();
    let google_key = "gk-only-in-the-token-row";
    sources::set_google_key(&app.db.conn, app.token_id, Some(google_key))
        .await
        .unwrap();
    // Leads named Deadletter fail permanently (a check the database refuses) and end in
    // the dead-letter queue.
    app.db
        .conn
        .execute_unprepared(
            "CREATE FUNCTION refuse_deadletter() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = '23514'; END $$; \
             CREATE TRIGGER refuse_deadletter BEFORE INSERT ON contacts FOR EACH ROW \
             WHEN (NEW.first_name = 'Deadletter') EXECUTE FUNCTION refuse_deadletter();",
        )
        .await
        .unwrap();
    let worker = RunningWorker::start(&app).await;
    let bearer = format!("Bearer {token}");
    let json_headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let path = "/api/v1/webhook/forms";
    let mut accepted = 0;
    let mut expect = |reply: crate::helpers::Reply, leads: usize| {
        assert!(
            [
                StatusCode::ACCEPTED,
                StatusCode::OK,
                StatusCode::MULTI_STATUS
            ]
            .contains(&reply.status),
            "{reply:?}"
        );
        accepted += leads;
    };
    // The token in a JSON body, in a form body, in the query, beside a bearer header.
    for (phone, name) in [("8182000001", "Kept"), ("8182000002", "Deadletter")] {
        let body = json!({"api_token": token, "phone_number": phone, "first_name": name});
        expect(
            app.post_raw(path, Some("application/json"), &body.to_string())
                .await,
            1,
        );
    }
    let form = format!("api_token={token}&phone_number=8182000003&first_name=Form");
    expect(
        app.post_raw(path, Some("application/x-www-form-urlencoded"), &form)
            .await,
        1,
    );
    let query = format!("{path}?api_token={token}&phone_number=8182000004");
    expect(app.post_raw(&query, None, "").await, 1);
    let body = json!({"api_token": token, "phone_number": "8182000005"}).to_string();
    expect(
        app.request(Method::POST, path, &json_headers, body).await,
        1,
    );
    // Bulk: the token in the header and in each lead, a JSON array and NDJSON.
    let bulk = json!([
        {"api_token": token, "phone_number": "8182000006"},
        {"api_token": token, "phone_number": "8182000007", "first_name": "Deadletter"}
    ]);
    let bulk_path = "/api/v1/webhook/forms/bulk";
    let reply = app
        .request(Method::POST, bulk_path, &json_headers, bulk.to_string())
        .await;
    assert_eq!(reply.body["results"][1]["status"], 202, "{reply:?}");
    expect(reply, 2);
    let ndjson = format!("{{\"api_token\":\"{token}\",\"phone_number\":\"8182000008\"}}\n");
    let reply = app
        .post_raw(
            &format!("{bulk_path}?api_token={token}"),
            Some("application/x-ndjson"),
            &ndjson,
        )
        .await;
    assert_eq!(reply.body["results"][0]["status"], 202, "{reply:?}");
    expect(reply, 1);
    // Google Ads: the token in the query, the key in the body.
    let mut kept = google_test_lead(google_key);
    kept["is_test"] = json!(false);
    expect(post_google(&app, &kept).await, 1);
    let mut dead = google_test_lead(google_key);
    dead["lead_id"] = json!("dead-1");
    dead["user_column_data"] = json!([
        {"column_name": "Full Name", "string_value": "Deadletter Google", "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": "(212) 555-0100", "column_id": "PHONE_NUMBER"}
    ]);
    expect(post_google(&app, &dead).await, 1);
    assert_eq!(accepted, 10);

    let finished = eventually(
        "every lead processed or dead-lettered",
        Duration::from_secs(60),
        || async {
            let row = app
                .db
                .conn
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT count(*) FILTER (WHERE status NOT IN ('queued', 'processing')) AS done, \
                     count(*) FILTER (WHERE status = 'dead_lettered') AS dead FROM lead_intakes",
                ))
                .await
                .unwrap()
                .unwrap();
            let done: i64 = row.try_get("", "done").unwrap();
            let dead: i64 = row.try_get("", "dead").unwrap();
            (done == 10).then_some(dead)
        },
    )
    .await;
    assert_eq!(finished, 3, "three leads dead-lettered");
    worker.stop().await;

    // PostgreSQL: the token nowhere, the Google key only in its token's row.
    assert_eq!(rows_containing(&app, &token).await, Vec::<String>::new());
    let keys = rows_containing(&app, google_key).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("api_tokens: "), "{keys:?}");
    // The dead-letter queue: neither, in bodies or headers.
    let conn = crate::helpers::amqp().await;
    let channel = conn.create_channel().await.unwrap();
    let mut letters = 0;
    while let Some(letter) = channel
        .basic_get(
            app.topology().dead_queue().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        letters += 1;
        let text = format!(
            "{} {:?}",
            String::from_utf8_lossy(&letter.delivery.data),
            letter.delivery.properties.headers()
        );
        assert!(text.contains("Deadletter"), "{text}");
        assert!(!text.contains(&token), "the token in a dead letter: {text}");
        assert!(
            !text.contains(google_key),
            "the key in a dead letter: {text}"
        );
    }
    assert_eq!(letters, 3);
    let _ = conn.close(200, "done".into()).await;
}
