//! Regression guard: the worker's cost per lead follows the batch, never the table.
//!
//! The worker's statements run the way the worker runs them (prepared, on one pooled
//! connection with the worker's session settings), more than five times while the tables
//! are small, which is when PostgreSQL may fix a generic plan, and again after the small
//! (or empty) tables were analyzed. Then 200,000 contacts with their numbers, intakes,
//! consents, tags, enrollments, PowerDialer entries and events (a delivery and an attempt
//! each), and a do-not-contact list of 200,000 numbers, are loaded (without ANALYZE and
//! with autovacuum off, as between two autovacuum runs of a growing table: the statistics
//! still describe the small tables), and:
//! - processing more leads through the real processor, and the delivery loop's removal of
//!   old events (planned on its own connection while the tables were small), must not scan
//!   any of those tables sequentially (`pg_stat_user_tables.seq_scan`);
//! - nor touch more than a few index blocks of them per lead
//!   (`pg_statio_user_indexes`), foreign-key checks included: an index scan that walks a
//!   whole account's entries and rejects them one by one reads few tuples but many blocks;
//! - the plan of each hand-written hot-path statement, as the worker's session plans it
//!   after those executions, must reach those tables only through index conditions.
//!
//! Plans and scan counts, not timings: it cannot flake on a busy machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use serde_json::Value;
use std::collections::BTreeMap;
use support::{Ctx, lead, message_for};
use testkit::reads::{Reads, table_reads};
use uuid::Uuid;
use worker::deliveries::Dispatcher;
use worker::process::{Attempt, HOT_PATH, Processor};

/// The tables that grow with an account: none may be read whole on the hot path.
const LARGE: [&str; 12] = [
    "contacts",
    "messages",
    "events",
    "event_deliveries",
    "delivery_attempts",
    "contact_phone_numbers",
    "lead_intakes",
    "contact_tags",
    "sequence_enrollments",
    "powerdialer_items",
    "contact_consents",
    "do_not_contact",
];
/// The account's catalogs that a lead's transaction reads by key: analyzed while they hold
/// a few rows, so that plans made then rest on statistics of tiny tables.
const CATALOGS: [&str; 12] = [
    "accounts",
    "api_tokens",
    "users",
    "ring_groups",
    "ring_group_members",
    "lines",
    "tags",
    "disposition_statuses",
    "sequences",
    "sequence_steps",
    "webhook_endpoints",
    "webhook_endpoint_totals",
];
const SEEDED: i64 = 200_000;
/// Index blocks one lead may touch per large table.
const MAX_INDEX_BLOCKS_PER_LEAD: i64 = 100;

struct Catalog {
    users: Vec<i64>,
    ring_group: i64,
    tag: i64,
    line: i64,
    sequence: i64,
    other_sequence: i64,
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_unprepared(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
}

async fn json_of(db: &DatabaseConnection, sql: &str) -> Value {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
        .unwrap();
    row.try_get_by_index::<Value>(0).unwrap()
}

/// Per large table, what statements did to it so far. A session reports its counters when
/// it goes idle, at most once a second unless told otherwise: every session that ran
/// statements (the worker's, its delivery loop's) flushes its own first.
async fn reads(
    loader: &DatabaseConnection,
    sessions: &[&DatabaseConnection],
) -> BTreeMap<String, Reads> {
    for s in sessions {
        exec(s, "SELECT pg_stat_force_next_flush()").await;
    }
    table_reads(loader, &LARGE).await
}

/// A mixed batch: new numbers, numbers of seeded contacts (so locks, related rows and the
/// PowerDialer bounds of a long list are read), and every kind of action.
fn batch(ctx: &Ctx, c: &Catalog, round: usize, seeded: bool) -> Vec<Attempt> {
    (0..16)
        .map(|i| {
            let n = round * 16 + i;
            let number = if seeded && i % 2 == 0 {
                format!("+1555{:07}", 1 + (n * 7919) % SEEDED as usize)
            } else {
                format!("+1212{:03}{:04}", 200 + n / 10_000, n % 10_000)
            };
            let mut l = lead(&number);
            l.fields.first_name = Some(format!("Lead {n}"));
            l.links.user_id = Some(c.users[n % c.users.len()]);
            l.links.tag_id = Some(c.tag);
            l.notes = Some("Agreed to be contacted.".into());
            match i % 4 {
                0 => {
                    l.links.ring_group_id = Some(c.ring_group);
                    l.flags.distribute_to_ring_group = true;
                    l.flags.check_available_users = true;
                }
                1 => l.flags.add_to_powerdialer = true,
                2 => {
                    l.links.sequence_id = Some(if n.is_multiple_of(3) {
                        c.other_sequence
                    } else {
                        c.sequence
                    });
                    l.flags.force_update_sequence = n.is_multiple_of(2);
                }
                _ => {
                    l.links.line_id = Some(c.line);
                    l.flags.force_update = true;
                }
            }
            Attempt {
                message: message_for(ctx.account, ctx.user, ctx.token, l),
                previous_attempts: 0,
            }
        })
        .collect()
}

async fn process_rounds(
    p: &Processor,
    ctx: &Ctx,
    c: &Catalog,
    rounds: std::ops::Range<usize>,
    seeded: bool,
) {
    for round in rounds {
        let intakes = batch(ctx, c, round, seeded);
        for (r, i) in p.try_process_batch(&intakes).await.iter().zip(&intakes) {
            assert!(r.is_ok(), "lead {:?} failed: {r:?}", i.message.lead);
        }
        // One lead on its own too: the single-lead path takes its locks by waiting.
        let one = &batch(ctx, c, round + 1000, seeded)[1];
        p.try_process(one).await.unwrap();
    }
}

/// Runs the delivery loop's removal of old events `times` times, as the loop does once a
/// minute: from the sixth run on its connection may keep one generic plan of it.
async fn expire_rounds(d: &Dispatcher, times: usize) {
    for _ in 0..times {
        d.expire(chrono::Utc::now()).await.unwrap();
    }
}

/// Loads `SEEDED` contacts (numbers +1555…) with a primary number, a finished intake, a
/// consent and a tag each, half of them enrolled and the other half queued on the first
/// user's list; and a do-not-contact list of `SEEDED` other numbers (+1666…), as an
/// operator's import makes it.
async fn load_large_tables(ctx: &Ctx, loader: &DatabaseConnection, c: &Catalog) {
    let a = ctx.account;
    exec(
        loader,
        &format!(
            "WITH c AS (INSERT INTO contacts (account_id, phone_number, first_name) \
               SELECT {a}, '+1555' || lpad(g::text, 7, '0'), 'Seeded' \
               FROM generate_series(1, {SEEDED}) AS g RETURNING id, phone_number) \
             INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
             SELECT {a}, id, phone_number, true FROM c"
        ),
    )
    .await;
    let seeded = format!("FROM contacts WHERE account_id = {a} AND first_name = 'Seeded'");
    for sql in [
        format!(
            "INSERT INTO lead_intakes (id, account_id, status, payload, contact_id, received_at, processed_at) \
             SELECT gen_random_uuid(), {a}, 'created', '{{}}'::jsonb, id, now(), now() {seeded}"
        ),
        format!(
            "INSERT INTO contact_tags (contact_id, tag_id, account_id) SELECT id, {}, {a} {seeded}",
            c.tag
        ),
        format!(
            "INSERT INTO contact_consents (account_id, contact_id, channel, given_at) \
             SELECT {a}, id, 'sms', now() {seeded}"
        ),
        format!(
            "INSERT INTO do_not_contact (account_id, phone_number, channel, source) \
             SELECT {a}, '+1666' || lpad(g::text, 7, '0'), 'all', 'import' \
             FROM generate_series(1, {SEEDED}) AS g"
        ),
        format!(
            "INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id) \
             SELECT {a}, id, {} {seeded} AND id % 2 = 0",
            c.sequence
        ),
        format!(
            "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) \
             SELECT {a}, {}, id, id + 10000000 {seeded} AND id % 2 = 1",
            c.users[0]
        ),
        format!(
            "INSERT INTO sequence_steps (account_id, sequence_id, position, body, delay_seconds) \
             VALUES ({a}, {s}, 1, 'Hi {{{{first_name}}}}', 0), ({a}, {s}, 2, 'Still there?', 86400), \
                    ({a}, {o}, 1, 'Welcome', 3600)",
            s = c.sequence,
            o = c.other_sequence
        ),
        format!(
            "INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, \
                                   step_id, to_number, body, sent_at) \
             SELECT e.account_id, e.contact_id, 'outbound', 'sent', e.id, \
                    (SELECT id FROM sequence_steps WHERE sequence_id = e.sequence_id AND position = 1), \
                    '+15550000000', 'Hi', now() \
             FROM sequence_enrollments e WHERE e.account_id = {a}"
        ),
        // An endpoint with every contact's event delivered, and a tail still pending: the
        // leads processed from now on write their events too (§11).
        format!(
            "INSERT INTO webhook_endpoints (account_id, url, secret) \
             VALUES ({a}, 'https://hooks.example.com/leads', 'whsec_c2VjcmV0')"
        ),
        format!(
            // Ids of today's time, as the worker writes them (UUIDv7): none is old
            // enough for the delivery loop to remove.
            "INSERT INTO events (id, account_id, type, contact_id, body, created_at) \
             SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint), 12, '0') || '7' \
                     || substr(md5(id::text), 1, 3) || '8' || substr(md5(id::text), 4, 15))::uuid, \
                    {a}, 'contact.created', id, '{{}}', now() {seeded}"
        ),
        format!(
            "INSERT INTO event_deliveries (event_id, endpoint_id, status, attempts, \
                                           next_attempt_at, created_at) \
             SELECT e.id, w.id, CASE WHEN e.contact_id % 50 = 0 THEN 'pending' ELSE 'delivered' END, 1, \
                    CASE WHEN e.contact_id % 50 = 0 THEN now() + interval '1 hour' END, now() \
             FROM events e, webhook_endpoints w WHERE e.account_id = {a} AND w.account_id = {a}"
        ),
        // An attempt for each delivery, as the log of a busy endpoint holds them.
        format!(
            "INSERT INTO delivery_attempts (delivery_id, endpoint_id, event_id, attempted_at, \
                                            status_code, latency_ms) \
             SELECT d.id, d.endpoint_id, d.event_id, now(), 204, 3 \
             FROM event_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             WHERE w.account_id = {a}"
        ),
        format!(
            "INSERT INTO webhook_endpoint_totals (endpoint_id, delivered) \
             SELECT w.id, count(*) FROM webhook_endpoints w JOIN event_deliveries d \
             ON d.endpoint_id = w.id AND d.status = 'delivered' WHERE w.account_id = {a} \
             GROUP BY w.id ON CONFLICT (endpoint_id) DO UPDATE SET delivered = excluded.delivered"
        ),
        // Follow-ups pending for every enrollment, due over the next day.
        format!(
            "INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, \
                                   step_id, due_at) \
             SELECT e.account_id, e.contact_id, 'outbound', 'scheduled', e.id, \
                    (SELECT id FROM sequence_steps WHERE sequence_id = e.sequence_id AND position = 2), \
                    now() + (e.id % 86400) * interval '1 second' \
             FROM sequence_enrollments e WHERE e.account_id = {a} AND e.sequence_id = {}",
            c.sequence
        ),
    ] {
        exec(loader, &sql).await;
    }
}

/// Every node of a plan that reads a table or an index whole: a sequential scan, an index
/// scan without an index condition (unless a `Limit` right above the index scan stops it
/// after its first entries), or an index scan whose condition leaves out the index's first
/// column (`first_columns`: index name → its first column), which walks the whole index to
/// find its entries. Small tables too: a plan kept from when a table was small must not
/// read it whole once it is large.
fn whole_table_reads(plan: &Value, first_columns: &Value, out: &mut Vec<String>) {
    whole_read(plan, first_columns, out);
    visit_children(plan, first_columns, out);
}

/// [`whole_table_reads`] of the children of `plan`.
fn visit_children(plan: &Value, first_columns: &Value, out: &mut Vec<String>) {
    let limited = plan["Node Type"] == "Limit";
    for child in plan["Plans"].as_array().into_iter().flatten() {
        let node = child["Node Type"].as_str().unwrap_or_default();
        if limited && node.starts_with("Index") {
            visit_children(child, first_columns, out);
        } else {
            whole_table_reads(child, first_columns, out);
        }
    }
}

/// Whether this one node (not its children) reads a table or an index whole.
fn whole_read(plan: &Value, first_columns: &Value, out: &mut Vec<String>) {
    let node = plan["Node Type"].as_str().unwrap_or_default();
    let relation = plan["Relation Name"].as_str().unwrap_or_default();
    let index = plan["Index Name"].as_str().unwrap_or_default();
    let index_scan = matches!(node, "Index Scan" | "Index Only Scan" | "Bitmap Index Scan");
    if node == "Seq Scan" || (index_scan && plan.get("Index Cond").is_none()) {
        out.push(format!("{node} on {relation} {index}"));
    } else if let (true, Some(cond), Some(first)) = (
        index_scan,
        plan["Index Cond"].as_str(),
        first_columns[index].as_str(),
    ) {
        let names_first = cond
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .any(|word| word == first);
        if !names_first {
            out.push(format!(
                "{node} on {relation} {index} without {first}: {cond}"
            ));
        }
    }
}

/// Joins that pair every row of one side with every row of the other: a nested loop whose
/// inner side is a CTE or a materialized row set is read again, whole, for each outer row
/// (the worker's sessions have no hash or merge joins; a CTE has no index). Unless one side
/// reads a table by `= ANY` of the batch's keys: then both sides are the batch, whatever
/// the tables hold.
fn pairwise_joins(plan: &Value, out: &mut Vec<String>) {
    let children = plan["Plans"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if plan["Node Type"] == "Nested Loop" && !children.iter().any(by_keys) {
        for inner in children
            .iter()
            .filter(|c| c["Parent Relationship"] == "Inner")
        {
            let node = inner["Node Type"].as_str().unwrap_or_default();
            if matches!(node, "CTE Scan" | "Materialize") {
                let name = inner["CTE Name"].as_str().unwrap_or_default();
                out.push(format!("Nested Loop over {node} {name}"));
            }
        }
    }
    for child in children {
        pairwise_joins(child, out);
    }
}

/// Whether a join's side reads its table by `= ANY` of given keys: the scan itself, or the
/// scan a `Materialize` or a bitmap heap scan holds.
fn by_keys(side: &Value) -> bool {
    let keyed = ["Index Cond", "Recheck Cond"]
        .iter()
        .any(|k| side[*k].as_str().is_some_and(|c| c.contains("= ANY (")));
    let node = side["Node Type"].as_str().unwrap_or_default();
    keyed
        || (matches!(node, "Materialize" | "Bitmap Heap Scan")
            && side["Plans"]
                .as_array()
                .is_some_and(|c| c.iter().any(by_keys)))
}

/// The plan cache mode the worker's sessions run `name` with: a lead transaction's
/// statements and the delivery loop's records of attempts keep one generic plan each
/// (worker::db::GENERIC_PLANS); the loops' others run with PostgreSQL's choice.
async fn plan_mode(db: &DatabaseConnection, name: &str) {
    let generic = HOT_PATH.iter().any(|(n, _)| *n == name) || ["enqueue", "settle"].contains(&name);
    exec(
        db,
        if generic {
            "SET plan_cache_mode = force_generic_plan"
        } else {
            "RESET plan_cache_mode"
        },
    )
    .await;
}

/// `(args)` for `EXECUTE`, or nothing for a statement without parameters.
fn in_parens(args: &str) -> String {
    match args {
        "" => String::new(),
        a => format!("({a})"),
    }
}

/// Prepares `sql` (`name` in the checks' lists) as `label` and executes it six times with
/// `args`, as the worker's session runs it: from then on the session may keep one plan.
async fn prepare_plan(db: &DatabaseConnection, label: &str, name: &str, sql: &str, args: &str) {
    plan_mode(db, name).await;
    exec(db, &format!("PREPARE {label} AS {sql}")).await;
    for _ in 0..6 {
        exec(db, &format!("EXECUTE {label}{}", in_parens(args))).await;
    }
}

/// Each index's name with its first column (expression indexes have none and are left
/// out), for [`whole_table_reads`].
async fn index_first_columns(db: &DatabaseConnection) -> Value {
    json_of(
        db,
        "SELECT coalesce(json_object_agg(c.relname, a.attname), '{}') FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
    )
    .await
}

/// What the plan of the statement prepared as `label` ([`prepare_plan`]), executed now with
/// `args`, reads whole or pairs up (see [`whole_table_reads`] and [`pairwise_joins`]), each
/// prefixed with `name`; the statement is deallocated.
async fn plan_findings(
    db: &DatabaseConnection,
    first_columns: &Value,
    label: &str,
    name: &str,
    args: &str,
) -> Vec<String> {
    plan_mode(db, name).await;
    let plan = json_of(
        db,
        &format!("EXPLAIN (FORMAT JSON) EXECUTE {label}{}", in_parens(args)),
    )
    .await;
    let mut found = Vec::new();
    whole_table_reads(&plan[0]["Plan"], first_columns, &mut found);
    pairwise_joins(&plan[0]["Plan"], &mut found);
    // The delivery loop visits every enabled endpoint (a catalog of tens of rows, not a
    // table that grows with leads, read whole or through its account index alike) and
    // reads each one's range of pending deliveries.
    if worker::deliveries::STATEMENTS
        .iter()
        .any(|(n, _)| *n == name)
    {
        found.retain(|f| !f.contains(" on webhook_endpoints "));
    }
    // The outbox's gauges read all of its rows (a row per batch of leads, there only
    // while the delivery loops are behind), and its expansion reads its oldest rows in
    // key order up to its limit.
    match name {
        "awaiting" => found.retain(|f| !f.starts_with("Seq Scan on event_batches")),
        "expand" => found.retain(|f| f != "Index Scan on event_batches event_batches_pkey"),
        _ => {}
    }
    exec(db, &format!("DEALLOCATE {label}")).await;
    found.into_iter().map(|f| format!("{name}: {f}")).collect()
}

/// [`plan_findings`] of a plan made now: prepared, executed six times, explained.
async fn plan_reads(
    db: &DatabaseConnection,
    first_columns: &Value,
    name: &str,
    sql: &str,
    args: &str,
) -> Vec<String> {
    let label = format!("hot_{name}");
    prepare_plan(db, &label, name, sql, args).await;
    plan_findings(db, first_columns, &label, name, args).await
}

/// The statements of the loops beside the lead transactions (message steps, the outbox,
/// the delivery loop): their sessions prepare them once and run them for as long as the
/// worker runs.
fn loop_statements() -> impl Iterator<Item = (&'static str, &'static str)> {
    worker::messages::STATEMENTS
        .into_iter()
        .chain([
            ("outbox", shared::events::RECORD),
            ("enqueue", shared::events::ENQUEUE),
        ])
        .chain(worker::deliveries::STATEMENTS)
}

/// Up to eight contacts of account `a` (`filter`: more of the `WHERE`), comma-separated.
async fn contact_ids(loader: &DatabaseConnection, a: i64, filter: &str) -> String {
    let ids = json_of(
        loader,
        &format!(
            "SELECT coalesce(json_agg(id), '[]') FROM (SELECT id FROM contacts \
             WHERE account_id = {a} {filter} ORDER BY id LIMIT 8) s"
        ),
    )
    .await;
    ids.as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The arguments each hand-written statement is executed with (`contacts`: ids of the
/// account's contacts, comma-separated).
fn statement_args(ctx: &Ctx, c: &Catalog, contacts: &str) -> BTreeMap<&'static str, String> {
    let a = ctx.account;
    let users = c
        .users
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let accounts = vec![a.to_string(); c.users.len()].join(",");
    let related_accounts = vec![a.to_string(); 8].join(",");
    let first = contacts.split(',').next().unwrap_or_default().to_owned();
    let intake = Uuid::now_v7();
    // No rows: the contacts' insert and update as planned while the table is small.
    let no_contacts = format!(
        "'{{}}'::bigint[], '{{}}'::bigint[], {}'{{}}'::date[], '{{}}'::bigint[], \
         '{{}}'::bigint[], '{{}}'::bigint[], '{{}}'::timestamptz[], '{{}}'::timestamptz[], \
         '{{}}'::int[]",
        "'{}'::text[], ".repeat(17)
    );
    [
        (
            "snapshot",
            format!(
                "'{{{intake}}}'::uuid[], '{{{a}}}', '{{{}}}', '{{{a},{a}}}', \
                 '{{+15550000042,+12125550100}}', '{{{accounts}}}', '{{{users}}}', \
                 '{{{a}}}', '{{{}}}', '{{{a}}}', '{{{}}}', '{{{a}}}', '{{{}}}', '{{}}', '{{}}', \
                 '{{{a}}}', '{{{}}}', 2",
                ctx.token, c.ring_group, c.line, c.tag, c.sequence
            ),
        ),
        (
            "related",
            format!("'{{{related_accounts}}}', '{{{contacts}}}'"),
        ),
        ("lock_all", "'{lead-number:1:+15550000042}'".to_owned()),
        ("try_lock_all", "'{lead-number:1:+15550000042}'".to_owned()),
        ("powerdialer_positions", "2".to_owned()),
        (
            "enroll",
            format!(
                "'[{{\"account_id\":{a},\"contact_id\":{first},\"sequence_id\":{},\
                 \"ended\":true,\"intake_id\":\"{intake}\"}}]', now()",
                c.sequence
            ),
        ),
        ("disenroll", "'{}', now()".to_owned()),
        (
            "records",
            format!(
                "'{{{intake}}}'::uuid[], '{{{a}}}', '{{{}}}', '{{{}}}', '{{created}}', \
                 '{{\"{{}}\"}}', '{{{first}}}', '{{\"[]\"}}', '{{\"[]\"}}', '{{1}}', \
                 '{{2026-01-01T00:00:00Z}}', now(), '{{true}}'",
                ctx.user, ctx.token
            ),
        ),
        ("contacts", no_contacts.clone()),
        ("contact_updates", no_contacts),
        (
            "notes",
            "'{}'::bigint[], '{}'::bigint[], '{}'::text[], '{}'::uuid[], now()".to_owned(),
        ),
        (
            "tags",
            "'{}'::bigint[], '{}'::bigint[], '{}'::bigint[], now()".to_owned(),
        ),
        (
            "numbers",
            // No rows: executed seven times, a number would break its uniqueness.
            "'{}'::bigint[], '{}'::bigint[], '{}'::text[], '{}'::text[], '{}'::boolean[], \
             '{}'::boolean[], now()"
                .to_owned(),
        ),
        // The send loop's statements (§10).
        ("due", "now(), 100".to_owned()),
        ("record", "'[]', now()".to_owned()),
        ("next", "'[]', now()".to_owned()),
        ("intake_verdicts", "'[]'".to_owned()),
        ("unsubscribed", "'[]'".to_owned()),
        ("next_due", String::new()),
        // The outbox (§11) and the delivery loop's statements.
        (
            "outbox",
            "'{}'::uuid[], '{}'::bigint[], '{}'::text[], '{}'::uuid[], '{}'::bigint[], '{}'::text[]"
                .to_owned(),
        ),
        (
            "enqueue",
            "'{}'::uuid[], '{}'::bigint[], '{}'::text[], '{}'::uuid[], '{}'::bigint[], '{}'::text[]"
                .to_owned(),
        ),
        ("expand", "20".to_owned()),
        ("awaiting", String::new()),
        (
            "claim",
            "now(), 16, 500, '{}'::bigint[], '{}'::int[], 35".to_owned(),
        ),
        ("settle", "'[]'".to_owned()),
        ("next_delivery_due", String::new()),
        ("backlog", String::new()),
        (
            "expire",
            "'00000000-0000-7000-8000-000000000000', 100".to_owned(),
        ),
        (
            "dead_letter",
            format!(
                "'{intake}', {a}, {}, {}, '{{}}'::jsonb, 1, 'reason', now()",
                ctx.user, ctx.token
            ),
        ),
    ]
    .into_iter()
    .collect()
}

#[tokio::test]
async fn hot_path_plans_do_not_scan_large_tables() {
    let ctx = Ctx::new().await;
    let mut users = vec![ctx.user];
    for (name, available) in [("Bo", true), ("Cy", false)] {
        users.push(ctx.user(name, true, available).await);
    }
    let c = Catalog {
        ring_group: leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "Sales", &users)
            .await
            .unwrap()
            .id,
        tag: ctx.named(leadctl::admin::Catalog::Tag, "web").await,
        line: ctx.named(leadctl::admin::Catalog::Line, "Main").await,
        sequence: ctx
            .named(leadctl::admin::Catalog::Sequence, "Welcome")
            .await,
        other_sequence: ctx
            .named(leadctl::admin::Catalog::Sequence, "Nurture")
            .await,
        users,
    };

    // The worker's own pool, with one connection: every statement is prepared on it and
    // runs on it, as on each connection of a worker's pool.
    let worker_db = Database::connect(worker::db::options(&ctx.settings, 1))
        .await
        .unwrap();
    let processor = Processor::new(worker_db.clone());
    // The delivery loop's own pool, also of one connection: its statements run outside lead
    // transactions, with PostgreSQL's choice of plan.
    let loop_db = Database::connect(worker::db::options(&ctx.settings, 1))
        .await
        .unwrap();
    let dispatcher = Dispatcher::new(loop_db.clone(), &ctx.settings.webhooks);

    // The loader's single session: its scans are flushed before the counting starts.
    let mut single = ConnectOptions::new(ctx.db.url.clone());
    single.max_connections(1).sqlx_logging(false);
    let loader = Database::connect(single).await.unwrap();

    // Autovacuum's ANALYZE would invalidate the cached plans, and so would this ALTER if it
    // came later: both happen before anything is prepared.
    for t in LARGE {
        exec(
            &loader,
            &format!("ALTER TABLE {t} SET (autovacuum_enabled = false)"),
        )
        .await;
    }

    // Small tables: each statement runs well over five times, then the tables are
    // analyzed as autovacuum does once a new account's first rows arrive, and the
    // statements run again: their plans now rest on statistics of a few hundred rows (how
    // many distinct contacts, how many active enrollments and queued entries) or of none (a
    // do-not-contact list not imported yet) that the load below makes wrong by three orders
    // of magnitude.
    process_rounds(&processor, &ctx, &c, 0..8, false).await;
    expire_rounds(&dispatcher, 7).await;
    exec(
        &loader,
        &format!("ANALYZE {}, {}", LARGE.join(", "), CATALOGS.join(", ")),
    )
    .await;
    process_rounds(&processor, &ctx, &c, 8..14, false).await;
    expire_rounds(&dispatcher, 7).await;
    // The loops' other statements too, each prepared on the loop's connection and run
    // while the tables are small; their plans are looked at once the tables are large.
    let small = statement_args(&ctx, &c, &contact_ids(&loader, ctx.account, "").await);
    for (name, sql) in loop_statements() {
        prepare_plan(&loop_db, &format!("small_{name}"), name, sql, &small[name]).await;
    }

    load_large_tables(&ctx, &loader, &c).await;
    let sessions = [&worker_db, &loop_db];
    let before = reads(&loader, &sessions).await;
    process_rounds(&processor, &ctx, &c, 14..22, true).await;
    // Nothing is old enough to go: the removal must find that by key, not by reading the
    // events, their deliveries and their attempts whole.
    expire_rounds(&dispatcher, 2).await;
    let after = reads(&loader, &sessions).await;
    let delta = |t: &str, f: fn(&Reads) -> i64| f(&after[t]) - f(&before[t]);
    let scanned: Vec<String> = LARGE
        .iter()
        .filter(|t| delta(t, |r| r.seq_scans) > 0)
        .map(|t| format!("{t}: {} sequential scans", delta(t, |r| r.seq_scans)))
        .collect();
    assert!(
        scanned.is_empty(),
        "the hot path read large tables whole: {scanned:?}"
    );
    // 8 rounds of 17 leads: a few index entries per lead and table; one read of a whole
    // index would be 200,000.
    let leads = 8 * 17;
    let index_reads: Vec<String> = LARGE
        .iter()
        .filter(|t| delta(t, |r| r.index_entries) > leads * 50)
        .map(|t| format!("{t}: {} index entries read", delta(t, |r| r.index_entries)))
        .collect();
    assert!(
        index_reads.is_empty(),
        "the hot path read whole indexes of large tables: {index_reads:?}"
    );
    // Blocks, foreign-key checks and index upkeep included: a lead inserts or updates a
    // handful of rows per table, each descending a few indexes three or four levels deep,
    // about 25 blocks a lead on contacts. A key lookup that walks the account's entries of
    // another index instead touches thousands per lead at 200,000 contacts.
    let blocks: Vec<String> = LARGE
        .iter()
        .map(|t| (t, delta(t, |r| r.index_blocks)))
        .filter(|(_, b)| *b > leads * MAX_INDEX_BLOCKS_PER_LEAD)
        .map(|(t, b)| format!("{t}: {} index blocks per lead", b / leads))
        .collect();
    println!(
        "index blocks per lead: {:?}",
        LARGE
            .iter()
            .map(|t| (*t, delta(t, |r| r.index_blocks) / leads))
            .collect::<Vec<_>>()
    );
    assert!(
        blocks.is_empty(),
        "the hot path walks indexes of large tables: {blocks:?}"
    );

    // Every statement the processor ran on its connection kept one generic plan: none of
    // their executions was planned afresh.
    let planned_afresh = json_of(
        &worker_db,
        "SELECT coalesce(json_agg(json_build_array(custom_plans, left(statement, 80))), '[]') \
         FROM pg_prepared_statements WHERE custom_plans > 0",
    )
    .await;
    assert_eq!(
        planned_afresh,
        serde_json::json!([]),
        "statements planned afresh in lead transactions"
    );

    // The plans of the hand-written statements, as the worker's session makes them after
    // more than five executions of one prepared statement.
    let contacts = contact_ids(&loader, ctx.account, "AND first_name = 'Seeded'").await;
    let args = statement_args(&ctx, &c, &contacts);
    let first_columns = index_first_columns(&loader).await;
    let mut reads = Vec::new();
    for (name, sql) in HOT_PATH.into_iter().chain(loop_statements()) {
        reads.extend(plan_reads(&worker_db, &first_columns, name, sql, &args[name]).await);
    }
    // The loops' statements as their sessions planned them while the tables were small.
    for (name, _) in loop_statements() {
        let label = format!("small_{name}");
        let found = plan_findings(&loop_db, &first_columns, &label, name, &args[name]).await;
        reads.extend(found.into_iter().map(|f| format!("{f} (planned small)")));
    }
    // Once every delivery has finished (an endpoint that is up to date, analyzed so): the
    // statistics then say no delivery is pending, and a plan made then is kept by the
    // connection (the records of attempts) or made again at every call; either must still
    // reach the rows by key, not read the deliveries' history.
    exec(
        &loader,
        "UPDATE event_deliveries SET status = 'delivered', next_attempt_at = NULL, \
         delivered_at = now() WHERE status = 'pending'",
    )
    .await;
    exec(&loader, "ANALYZE event_deliveries").await;
    for (name, sql) in worker::deliveries::STATEMENTS {
        let found = plan_reads(&worker_db, &first_columns, name, sql, &args[name]).await;
        reads.extend(found.into_iter().map(|f| format!("{f} (nothing pending)")));
    }
    assert!(
        reads.is_empty(),
        "hot-path statements plan whole-table reads or pairwise joins: {reads:?}"
    );
}
