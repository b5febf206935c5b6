//! Backlog benchmark: how fast one worker process drains a queue of mixed leads, next to what
//! the same database does with the same rows as plain batched `INSERT … ON CONFLICT`.
//!
//!   cargo bench -p worker --bench backlog          (or scripts/bench-worker)
//!
//! A fresh database and queue prefix are made and removed. Knobs (environment):
//! `BENCH_LEADS` (20000), `BENCH_CONCURRENCY` (8), `BENCH_PREFETCH` (256),
//! `BENCH_BATCH_SIZE` (32), `BENCH_TIMEOUT_SECS` (600).
//! The mix: 80% new numbers, 20% repeats of earlier ones; a third of the leads carry actions
//! (owner, tag, note, and in turn ring-group distribution, PowerDialer, sequence, line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rand::Rng;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use shared::admin::{self, Catalog};
use shared::amqp::{INTAKE_ROUTING_KEY, Topology};
use shared::intake::{IntakeMessage, MESSAGE_VERSION};
use shared::lead::{Lead, LeadFields, LeadFlags, LeadLinks, PowerdialerPosition};
use shared::phone::{PhoneNumber, Region};
use std::time::{Duration, Instant};
use uuid::Uuid;
use worker::app::Worker;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Catalogs {
    users: Vec<i64>,
    ring_group: i64,
    tag: i64,
    line: i64,
    sequence: i64,
}

fn make_leads(n: usize, account: i64, token: i64, user: i64, c: &Catalogs) -> Vec<IntakeMessage> {
    let mut rng = rand::rng();
    let mut numbers: Vec<String> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let repeat = i > 0 && rng.random_bool(0.2);
        let digits = if repeat {
            numbers[rng.random_range(0..numbers.len())].clone()
        } else {
            let d = format!(
                "{}{:03}{:04}",
                [212, 310, 415, 416, 512, 617, 818][i % 7],
                200 + (i / 10_000) % 800,
                i % 10_000
            );
            numbers.push(d.clone());
            d
        };
        let mut lead = Lead {
            phone_number: PhoneNumber::parse(&digits, Region::US).expect("phone"),
            other_phone_numbers: vec![],
            fields: LeadFields {
                first_name: Some(format!("First{i}")),
                last_name: Some("Bench".into()),
                email: Some(format!("lead{i}@example.com")),
                lead_source: Some("benchmark".into()),
                ..LeadFields::default()
            },
            date_of_birth: None,
            timezone: None,
            notes: None,
            links: LeadLinks::default(),
            flags: LeadFlags::default(),
            powerdialer_position: PowerdialerPosition::Top,
        };
        if i % 3 == 0 {
            lead.links.user_id = Some(c.users[i % c.users.len()]);
            lead.links.tag_id = Some(c.tag);
            lead.notes = Some("Agreed to be contacted.".into());
            match (i / 3) % 4 {
                0 => {
                    lead.links.ring_group_id = Some(c.ring_group);
                    lead.flags.distribute_to_ring_group = true;
                    lead.flags.check_available_users = true;
                }
                1 => lead.flags.add_to_powerdialer = true,
                2 => lead.links.sequence_id = Some(c.sequence),
                _ => lead.links.line_id = Some(c.line),
            }
        }
        let payload = serde_json::json!({ "phone_number": digits });
        out.push(IntakeMessage {
            version: MESSAGE_VERSION,
            intake_id: Uuid::now_v7(),
            account_id: account,
            user_id: user,
            token_id: token,
            received_at: chrono::Utc::now(),
            lead,
            payload,
        });
    }
    out
}

async fn count(db: &sea_orm::DatabaseConnection, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

#[tokio::main]
async fn main() {
    let leads = env_or("BENCH_LEADS", 20_000usize);
    let timeout = Duration::from_secs(env_or("BENCH_TIMEOUT_SECS", 600u64));
    let db = testkit::TestDb::new().await;
    let mut settings = testkit::settings(&db);
    settings.worker.concurrency = env_or("BENCH_CONCURRENCY", 8usize);
    settings.worker.prefetch = env_or("BENCH_PREFETCH", 256u16);
    settings.worker.batch_size = env_or("BENCH_BATCH_SIZE", 32usize);
    settings.worker.db_pool_size = (settings.worker.concurrency as u32 + 2).max(4);

    let account = admin::create_account(&db.conn, "Bench", "US", None)
        .await
        .unwrap()
        .id;
    let mut users = Vec::new();
    for (i, available) in [true, true, false, true, true].into_iter().enumerate() {
        users.push(
            admin::create_user(
                &db.conn,
                account,
                &format!("Agent {i}"),
                None,
                true,
                available,
            )
            .await
            .unwrap()
            .id,
        );
    }
    let token = admin::create_token(&db.conn, users[0], None)
        .await
        .unwrap()
        .row
        .id;
    let catalogs = Catalogs {
        ring_group: admin::create_ring_group(&db.conn, account, "Sales", &users[..3])
            .await
            .unwrap()
            .id,
        tag: admin::create_named(&db.conn, Catalog::Tag, account, "web")
            .await
            .unwrap()
            .id,
        line: admin::create_named(&db.conn, Catalog::Line, account, "Main")
            .await
            .unwrap()
            .id,
        sequence: admin::create_named(&db.conn, Catalog::Sequence, account, "Welcome")
            .await
            .unwrap()
            .id,
        users,
    };
    let messages = make_leads(leads, account, token, catalogs.users[0], &catalogs);

    // The backlog: every message confirmed in the queue before the worker starts.
    let conn = Connection::connect(&settings.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let topology = Topology::new(&settings.amqp_prefix, &settings.worker.retry_delays_ms);
    topology.declare(&channel).await.unwrap();
    let seeded = Instant::now();
    for chunk in messages.chunks(1_000) {
        for m in chunk {
            channel
                .basic_publish(
                    topology.exchange().into(),
                    INTAKE_ROUTING_KEY.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &serde_json::to_vec(m).unwrap(),
                    BasicProperties::default()
                        .with_message_id(m.intake_id.to_string().into())
                        .with_delivery_mode(2),
                )
                .await
                .unwrap();
        }
        assert!(channel.wait_for_confirms().await.unwrap().is_empty());
    }
    eprintln!(
        "seeded {leads} leads in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    // One worker drains it.
    let worker = Worker::build(settings.clone()).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(worker.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    loop {
        let done = count(
            &db.conn,
            "SELECT count(*) FROM lead_intakes WHERE status <> 'processing'",
        )
        .await;
        if done as usize >= leads {
            break;
        }
        assert!(
            started.elapsed() < timeout,
            "drain timed out at {done} of {leads}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker_secs = started.elapsed().as_secs_f64();
    let metrics = worker::observe::recorder().unwrap().render();
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let batches = sample("worker_batch_size_count");
    let mean_batch = sample("worker_batch_size_sum") / batches.max(1.0);
    let deferred = sample("worker_deferred_leads_total");
    let _ = stop_tx.send(());
    task.await.unwrap().unwrap();
    let by_status = db
        .conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT status, count(*) AS n FROM lead_intakes GROUP BY status ORDER BY status",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{} {}",
                r.try_get::<String>("", "status").unwrap(),
                r.try_get::<i64>("", "n").unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let contacts = count(&db.conn, "SELECT count(*) FROM contacts").await;

    // The same rows as plain 100-row upserts, one statement (one commit) per batch.
    db.conn
        .execute_unprepared(
            "CREATE TABLE bench_contacts (account_id BIGINT NOT NULL, phone_number VARCHAR(16) NOT NULL, \
             first_name VARCHAR(255), last_name VARCHAR(255), email VARCHAR(255), lead_source VARCHAR(255), \
             owner_id BIGINT, created_at TIMESTAMPTZ NOT NULL DEFAULT now(), updated_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
             PRIMARY KEY (account_id, phone_number))",
        )
        .await
        .unwrap();
    let baseline = Instant::now();
    for chunk in messages.chunks(100) {
        // One statement cannot touch a row twice: a number repeated within the batch is
        // merged first, as the upsert would.
        let mut rows: Vec<&IntakeMessage> = Vec::with_capacity(chunk.len());
        for m in chunk {
            if !rows
                .iter()
                .any(|r| r.lead.phone_number == m.lead.phone_number)
            {
                rows.push(m);
            }
        }
        let mut sql = String::from(
            "INSERT INTO bench_contacts (account_id, phone_number, first_name, last_name, email, lead_source, owner_id) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows.len() * 7);
        for (i, m) in rows.iter().enumerate() {
            let b = i * 7;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
            let f = &m.lead.fields;
            values.extend([
                m.account_id.into(),
                m.lead.phone_number.as_str().into(),
                f.first_name.clone().into(),
                f.last_name.clone().into(),
                f.email.clone().into(),
                f.lead_source.clone().into(),
                m.lead.links.user_id.into(),
            ]);
        }
        sql.push_str(
            " ON CONFLICT (account_id, phone_number) DO UPDATE SET \
             first_name = COALESCE(bench_contacts.first_name, EXCLUDED.first_name), \
             last_name = COALESCE(bench_contacts.last_name, EXCLUDED.last_name), \
             email = COALESCE(bench_contacts.email, EXCLUDED.email), \
             lead_source = COALESCE(bench_contacts.lead_source, EXCLUDED.lead_source), \
             owner_id = COALESCE(bench_contacts.owner_id, EXCLUDED.owner_id), updated_at = now()",
        );
        db.conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .unwrap();
    }
    let baseline_secs = baseline.elapsed().as_secs_f64();
    let baseline_rows = count(&db.conn, "SELECT count(*) FROM bench_contacts").await;

    let worker_rate = leads as f64 / worker_secs;
    let baseline_rate = leads as f64 / baseline_secs;
    println!(
        "worker: concurrency {}, prefetch {}, batch_size {}",
        settings.worker.concurrency, settings.worker.prefetch, settings.worker.batch_size
    );
    println!(
        "worker drained {leads} leads in {worker_secs:.2} s: {worker_rate:.0} leads/s ({by_status}; {contacts} contacts)"
    );
    println!(
        "batched INSERT … ON CONFLICT (100 rows per statement): {leads} rows in {baseline_secs:.2} s: {baseline_rate:.0} rows/s ({baseline_rows} rows)"
    );
    println!(
        "worker transactions: {batches:.0} batches, {mean_batch:.1} leads on average, {deferred:.0} leads left to a second transaction (locks busy)"
    );
    println!(
        "ratio: the plain upsert is {:.1}× the worker",
        baseline_rate / worker_rate
    );
    testkit::delete_topology(&settings).await;
}
