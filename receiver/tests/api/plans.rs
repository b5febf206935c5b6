//! The read API's and the console's statements as an account grows from a few leads to
//! two hundred thousand: the receiver's database connections keep their prepared statements,
//! and a plan PostgreSQL kept from when the account was small (a sequential scan, or an
//! index walked whole) would stay with it. So every page and search runs more than five
//! times on one pooled connection while the tables are small and analyzed, then 200,000
//! contacts with their numbers, intakes, tags, consents, messages, PowerDialer entries and
//! delivered events arrive (without ANALYZE and with autovacuum off: the statistics still
//! describe the small tables), and each request must then read the large tables only by
//! key: no sequential scan, and a bounded number of index entries and blocks
//! (`pg_stat_user_indexes`, `pg_statio_user_indexes`), whatever the account's size.
//!
//! With the receiver's connections left to PostgreSQL's default plan cache mode (generic
//! plans from the sixth execution on) the check finds sequential scans of every large
//! table, from the contact list's filters to the console's lead search.
//!
//! Scan and block counts, not timings: it cannot flake on a busy machine.

use crate::console::sign_in;
use crate::helpers::{TestApp, spawn_app_with};
use hyper::{Method, StatusCode};
use leadctl::admin::{self, Catalog};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use std::time::Duration;
use testkit::reads::{Reads, table_reads};

/// The tables that grow with an account.
const LARGE: [&str; 11] = [
    "contacts",
    "contact_phone_numbers",
    "lead_intakes",
    "contact_tags",
    "contact_consents",
    "messages",
    "powerdialer_items",
    "do_not_contact",
    "events",
    "event_deliveries",
    "delivery_attempts",
];
/// The catalogs: analyzed while they hold a row or two, and staying small.
const CATALOGS: [&str; 7] = [
    "accounts",
    "users",
    "api_tokens",
    "tags",
    "lines",
    "webhook_endpoints",
    "webhook_endpoint_totals",
];
const SMALL: i64 = 12;
const GROWN: i64 = 200_000;
/// Index entries one request may read per large table: the console's lead search reads at
/// most the account's newest 20,000 intakes, and a page shows at most 100 rows.
const MAX_INDEX_ENTRIES_PER_REQUEST: i64 = 25_000;
/// Index blocks one request may touch per large table: a page of 100 rows looks each up
/// by key (three or four blocks each, root and inner pages included).
const MAX_INDEX_BLOCKS_PER_REQUEST: i64 = 400;

async fn exec(app: &TestApp, sql: &str) {
    app.db
        .conn
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

/// What the account's catalog holds for the seeded rows.
struct Seed {
    account: i64,
    user: i64,
    tag: i64,
    line: i64,
    endpoint: i64,
}

/// `count` contacts numbered from `from` (numbers +1555…, emails seeded{n}@example.com),
/// created a second apart from 30 days ago, each with its primary number, a finished
/// intake, the tag, an SMS consent, an inbound message, a `contact.created` event delivered
/// to the endpoint on its first attempt, every other one queued on the user's PowerDialer
/// list; and as many do-not-contact numbers (+1666…). The other rows take the contact's
/// creation time.
async fn seed(app: &TestApp, s: &Seed, from: i64, count: i64) {
    let (a, to) = (s.account, from + count - 1);
    let batch = format!("FROM contacts WHERE account_id = {a} AND first_name = 'Seeded {from}'");
    let statements = [
        format!(
            "WITH c AS (INSERT INTO contacts (account_id, phone_number, first_name, email, \
               lead_source, source, owner_id, line_id, created_at, updated_at) \
               SELECT {a}, '+1555' || lpad(g::text, 7, '0'), 'Seeded {from}', \
                      'seeded' || g || '@example.com', 'import', 'csv', {u}, {l}, {t}, {t} \
               FROM generate_series({from}, {to}) AS g RETURNING id, phone_number) \
             INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
             SELECT {a}, id, phone_number, true FROM c",
            u = s.user,
            l = s.line,
            t = "now() - interval '30 days' + g * interval '1 second'"
        ),
        format!(
            "INSERT INTO lead_intakes (id, account_id, user_id, status, payload, contact_id, \
                                       received_at, processed_at) \
             SELECT gen_random_uuid(), {a}, owner_id, 'created', \
                    jsonb_build_object('phone_number', phone_number, 'lead_source', 'import'), \
                    id, created_at, created_at {batch}"
        ),
        format!(
            "INSERT INTO contact_tags (contact_id, tag_id, account_id) SELECT id, {}, {a} {batch}",
            s.tag
        ),
        format!(
            "INSERT INTO contact_consents (account_id, contact_id, channel, given_at) \
             SELECT {a}, id, 'sms', created_at {batch}"
        ),
        format!(
            "INSERT INTO messages (account_id, contact_id, direction, status, to_number, body, \
                                   from_number, sent_at, created_at, updated_at) \
             SELECT {a}, id, 'inbound', 'received', '+15550009999', 'Is this still open?', \
                    phone_number, created_at, created_at, created_at {batch}"
        ),
        format!(
            "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) \
             SELECT {a}, owner_id, id, id {batch} AND id % 2 = 1"
        ),
        format!(
            "INSERT INTO do_not_contact (account_id, phone_number, channel, source) \
             SELECT {a}, '+1666' || lpad(g::text, 7, '0'), 'all', 'import' \
             FROM generate_series({from}, {to}) AS g"
        ),
        format!(
            "INSERT INTO events (id, account_id, type, contact_id, body, created_at) \
             SELECT gen_random_uuid(), {a}, 'contact.created', id, '{{}}', created_at {batch}"
        ),
        format!(
            "WITH d AS (INSERT INTO event_deliveries (event_id, endpoint_id, status, attempts, \
                                                      created_at) \
               SELECT e.id, {w}, 'delivered', 1, e.created_at FROM events e \
               JOIN contacts c ON c.id = e.contact_id AND c.first_name = 'Seeded {from}' \
               WHERE e.account_id = {a} RETURNING id, event_id, created_at) \
             INSERT INTO delivery_attempts (delivery_id, endpoint_id, event_id, attempted_at, \
                                            status_code, latency_ms) \
             SELECT id, {w}, event_id, created_at, 204, 4 FROM d",
            w = s.endpoint
        ),
        format!(
            "INSERT INTO webhook_endpoint_totals (endpoint_id, delivered) VALUES ({w}, {count}) \
             ON CONFLICT (endpoint_id) DO UPDATE \
             SET delivered = webhook_endpoint_totals.delivered + excluded.delivered",
            w = s.endpoint
        ),
    ];
    for sql in statements {
        exec(app, &sql).await;
    }
}

/// One GET, signed in to the console (`cookie`) or with the API token.
async fn get(app: &TestApp, path: &str, cookie: &str) -> crate::helpers::Reply {
    let auth = format!("Bearer {}", app.token);
    let headers: &[(&str, &str)] = if path.starts_with("/console") {
        &[("cookie", cookie)]
    } else {
        &[("authorization", &auth)]
    };
    let r = app.request(Method::GET, path, headers, "").await;
    assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.text);
    r
}

async fn one_value(app: &TestApp, sql: &str) -> String {
    let row = app
        .db
        .conn
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<String>(0).expect("text")
}

#[tokio::test]
async fn pages_and_searches_read_a_grown_account_by_key() {
    // One connection: every request below runs on the session that prepared its
    // statements while the account was small.
    let app = spawn_app_with(|s| s.receiver.db_pool_size = 1).await;
    let a = app.account_id;
    let named = |kind| admin::create_named(&app.db.conn, kind, a, "Web");
    let (tag, line) = (
        named(Catalog::Tag).await.unwrap().id,
        named(Catalog::Line).await.unwrap().id,
    );
    let endpoint = admin::webhooks::add(
        &app.db.conn,
        a,
        "https://hooks.example.com/leads",
        vec![],
        None,
    )
    .await
    .unwrap()
    .endpoint
    .id;
    let s = Seed {
        account: a,
        user: app.user_id,
        tag,
        line,
        endpoint,
    };
    seed(&app, &s, 1, SMALL).await;
    for t in LARGE.iter().chain(&CATALOGS) {
        exec(
            &app,
            &format!("ALTER TABLE {t} SET (autovacuum_enabled = false)"),
        )
        .await;
        exec(&app, &format!("ANALYZE {t}")).await;
    }

    let contact = one_value(
        &app,
        &format!(
            "SELECT id::text FROM contacts WHERE account_id = {a} AND phone_number = '+15550000003'"
        ),
    )
    .await;
    let intake = one_value(
        &app,
        &format!("SELECT id::text FROM lead_intakes WHERE contact_id = {contact}"),
    )
    .await;
    let cookie = sign_in(&app, &app.token).await;
    let cursor = get(&app, "/api/v1/contacts?limit=2", &cookie).await.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let day = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    };
    let since = (chrono::Utc::now() - chrono::Duration::days(31))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let paths = [
        "/api/v1/contacts".to_owned(),
        format!("/api/v1/contacts?limit=2&cursor={cursor}"),
        "/api/v1/contacts?phone_number=%2B15550000003".to_owned(),
        "/api/v1/contacts?email=seeded3%40example.com".to_owned(),
        "/api/v1/contacts?lead_source=import".to_owned(),
        "/api/v1/contacts?lead_source=rare".to_owned(),
        "/api/v1/contacts?source=csv".to_owned(),
        format!("/api/v1/contacts?tag_id={tag}"),
        format!("/api/v1/contacts?line_id={line}"),
        format!("/api/v1/contacts?user_id={}", app.user_id),
        format!("/api/v1/contacts?created_after={since}"),
        format!("/api/v1/contacts?created_before={since}"),
        format!("/api/v1/contacts/{contact}"),
        format!("/api/v1/contacts/{contact}/messages"),
        format!("/api/v1/intakes/{intake}"),
        "/console".to_owned(),
        "/console/live".to_owned(),
        "/console/leads".to_owned(),
        "/console/leads?q=%2B15550000003".to_owned(),
        "/console/leads?q=seeded3%40example.com".to_owned(),
        "/console/leads?status=dead_lettered".to_owned(),
        "/console/leads?source=rare".to_owned(),
        "/console/leads?verdict=do_not_contact".to_owned(),
        format!("/console/leads?from={}&to={}", day(31), day(29)),
        format!("/console/leads/{intake}"),
        format!("/console/contacts/{contact}"),
        "/console/webhooks".to_owned(),
        format!("/console/webhooks/{endpoint}"),
        "/console/tokens".to_owned(),
    ];
    // Six runs each while small: from the sixth, PostgreSQL may keep a generic plan.
    for _ in 0..6 {
        for p in &paths {
            get(&app, p, &cookie).await;
        }
    }

    seed(&app, &s, SMALL + 1, GROWN).await;

    // The pooled connection reports its counters when it goes idle, at most once a
    // second: each request is followed, a second later, by a cheap one whose idle point
    // reports both.
    let settle = format!("/api/v1/intakes/{intake}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&app, &settle, &cookie).await;
    let mut before = table_reads(&app.db.conn, &LARGE).await;
    let mut findings = Vec::new();
    for p in &paths {
        get(&app, p, &cookie).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        get(&app, &settle, &cookie).await;
        let after = table_reads(&app.db.conn, &LARGE).await;
        for t in LARGE {
            let Reads {
                seq_scans: scans,
                index_entries: entries,
                index_blocks: blocks,
            } = after[t] - before[t];
            if scans > 0 {
                findings.push(format!("GET {p}: {scans} sequential scan(s) of {t}"));
            }
            if entries > MAX_INDEX_ENTRIES_PER_REQUEST {
                findings.push(format!("GET {p}: {entries} index entries of {t}"));
            }
            if blocks > MAX_INDEX_BLOCKS_PER_REQUEST {
                findings.push(format!("GET {p}: {blocks} index blocks of {t}"));
            }
        }
        before = after;
    }
    assert!(
        findings.is_empty(),
        "with {GROWN} contacts, requests read whole tables:\n{}",
        findings.join("\n")
    );
}
