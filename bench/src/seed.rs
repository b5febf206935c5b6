//! Data a section starts from: an account with users, a ring group, tag, line, sequence and
//! token (through `leadctl::admin`, as operators create them), and pre-existing contacts
//! written *by SQL* in bulk, each with its primary number and a finished intake record, so
//! every table the worker reads is as large as the run asks.

use crate::leads::{self, Catalogs};
use anyhow::Context;
use leadctl::admin::{self, Catalog};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};
use std::time::Instant;

/// Intake requests per minute the bench accounts allow: far above anything a run sends, so
/// no lead is ever answered 429.
const HUGE_RATE_LIMIT: i32 = 1_000_000_000;

/// Creates an account with five users (one unavailable), a ring group of the first three,
/// a tag, a line, a sequence and an API token.
pub async fn account(db: &DatabaseConnection, name: &str) -> anyhow::Result<Catalogs> {
    let account = admin::create_account(db, name, "US", Some(HUGE_RATE_LIMIT))
        .await
        .context("Failed to create the bench account")?
        .id;
    let mut users = Vec::new();
    for (i, available) in [true, true, false, true, true].into_iter().enumerate() {
        users.push(
            admin::create_user(db, account, &format!("Agent {i}"), None, true, available)
                .await
                .context("Failed to create a bench user")?
                .id,
        );
    }
    let token = admin::create_token(db, users[0], Some("bench"))
        .await
        .context("Failed to create the bench token")?;
    let ring_members = users[..3].to_vec();
    let ring_group = admin::create_ring_group(db, account, "Sales", &ring_members)
        .await
        .context("Failed to create the ring group")?
        .id;
    let named = |kind: Catalog, name: &'static str| async move {
        admin::create_named(db, kind, account, name)
            .await
            .with_context(|| format!("Failed to create the {}", kind.noun()))
            .map(|n| n.id)
    };
    Ok(Catalogs {
        account,
        ring_group,
        ring_members,
        tag: named(Catalog::Tag, "web").await?,
        line: named(Catalog::Line, "Main").await?,
        sequence: named(Catalog::Sequence, "Welcome").await?,
        token_id: token.row.id,
        token: token.token,
        users,
    })
}

/// The number the account's line sends from.
pub const LINE_NUMBER: &str = "+14155550100";

/// Makes `c`'s sequence send: its line gets [`LINE_NUMBER`] and the sequence a first step
/// with no delay, through `leadctl::admin` as an operator would.
pub async fn texting_sequence(db: &DatabaseConnection, c: &Catalogs) -> anyhow::Result<()> {
    use leadctl::admin::messaging;
    messaging::set_line_number(db, c.line, Some(LINE_NUMBER))
        .await
        .context("Failed to give the line a number")?;
    messaging::set_sequence_line(db, c.sequence, Some(c.line))
        .await
        .context("Failed to give the sequence its line")?;
    messaging::add_step(
        db,
        c.sequence,
        "Hi {{first_name|there}}, thanks for asking! We will call you shortly.",
        std::time::Duration::ZERO,
    )
    .await
    .context("Failed to add the sequence's first step")?;
    Ok(())
}

pub fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Contacts `from..to` of the seeded range for `c`'s account: contact, primary number and
/// a `created` intake record each, in one statement (the data-modifying CTEs run together;
/// the foreign keys are checked at its end).
fn seed_sql(numbers: &str) -> String {
    // Country, state and timezone of each area code of `leads::AREA_CODES`, as the worker
    // would have derived them.
    format!(
        r#"
WITH src AS (
    SELECT {numbers} AS phone, (ARRAY['US','US','US','CA','US','US','US'])[j % 7 + 1] AS country,
           (ARRAY['NY','CA','CA','ON','TX','MA','CA'])[j % 7 + 1] AS state,
           (ARRAY['America/New_York','America/Los_Angeles','America/Los_Angeles','America/Toronto',
                  'America/Chicago','America/New_York','America/Los_Angeles'])[j % 7 + 1] AS tz, j
    FROM {{source}}
), c AS (
    INSERT INTO contacts (account_id, phone_number, first_name, last_name, email, lead_source,
                          country, state, timezone, created_at, updated_at)
    SELECT $1, phone, 'Seed' || j, 'Contact', 'seed' || j || '@example.com', 'import',
           country, state, tz, now() - interval '30 days', now() - interval '30 days'
    FROM src
    RETURNING id, phone_number, first_name, email, created_at
), p AS (
    INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary, created_at)
    SELECT $1, id, phone_number, true, created_at FROM c
)
INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, contact_id, actions,
                          attempts, received_at, processed_at, updated_at)
SELECT gen_random_uuid(), $1, $2, $3, 'created',
       jsonb_build_object('phone_number', phone_number, 'first_name', first_name,
                          'last_name', 'Contact', 'email', email, 'lead_source', 'import'),
       id, jsonb_build_array(jsonb_build_object('type', 'contact_created', 'contact_id', id)),
       1, created_at, created_at, created_at
FROM c
"#
    )
}

/// Writes pre-seeded contacts `0..n` of `c`'s account in chunks (call [`analyze`] after).
pub async fn contacts(db: &DatabaseConnection, c: &Catalogs, n: u64) -> anyhow::Result<()> {
    const CHUNK: u64 = 50_000;
    if n > leads::MAX_CONTACTS {
        anyhow::bail!("at most {} pre-seeded contacts", leads::MAX_CONTACTS);
    }
    let started = Instant::now();
    let sql = seed_sql(&leads::seeded_sql_expr("j"))
        .replace("{source}", "generate_series($4::bigint, $5::bigint) AS j");
    let mut from = 0;
    while from < n {
        let to = (from + CHUNK).min(n);
        db.execute_raw(stmt(
            &sql,
            vec![
                c.account.into(),
                c.users[0].into(),
                c.token_id.into(),
                (from as i64).into(),
                (to as i64 - 1).into(),
            ],
        ))
        .await
        .context("Failed to seed contacts")?;
        from = to;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "bench: seeding contacts {to}/{n} ({:.0} contacts/s)",
            to as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

/// Copies of the pre-seeded contacts `numbers` (E.164) into `c`'s account: what the
/// baseline's repeats of pre-seeded contacts update.
pub async fn copies(
    db: &DatabaseConnection,
    c: &Catalogs,
    numbers: &[String],
) -> anyhow::Result<()> {
    // `j` only picks the area code's geo columns here: recover it from the area code.
    let sql = seed_sql("value").replace(
        "{source}",
        "(SELECT DISTINCT value, array_position(ARRAY['212','310','415','416','512','617','818'], \
         substr(value, 3, 3)) - 1 AS j FROM jsonb_array_elements_text($4::jsonb)) AS v",
    );
    db.execute_raw(stmt(
        &sql,
        vec![
            c.account.into(),
            c.users[0].into(),
            c.token_id.into(),
            serde_json::json!(numbers).into(),
        ],
    ))
    .await
    .context("Failed to copy pre-seeded contacts")?;
    Ok(())
}

/// VACUUM ANALYZE: a long-lived table has statistics and a visibility map, and the worker
/// should not pay for setting hint bits on rows it did not write.
pub async fn analyze(db: &DatabaseConnection) -> anyhow::Result<()> {
    let started = Instant::now();
    db.execute_unprepared("VACUUM (ANALYZE)")
        .await
        .context("Failed to VACUUM ANALYZE")?;
    eprintln!(
        "bench: VACUUM ANALYZE in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A measured run (each drain of the events section, the e2e run) starts from the same
/// state of the server: what ran before it vacuumed (no hint bits or dead rows left to the
/// next run, no autovacuum under it) and analyzed, and a checkpoint behind it (the
/// full-page writes after a checkpoint otherwise fall on whichever run comes then).
///
/// The broker likewise: its quorum queues' write-ahead log rolls over at 512 MB, about
/// every third full-size backlog, and the drain whose backlog it rolled over under read
/// its messages back from segment files at up to twice the broker's CPU per lead. With
/// three drains to a round, that was the same drain of every round. The log is rolled over
/// (and its segments written) before every measured run, so that none crosses it.
pub async fn settle(db: &DatabaseConnection) -> anyhow::Result<()> {
    analyze(db).await?;
    db.execute_unprepared("CHECKPOINT")
        .await
        .context("Failed to take a checkpoint")?;
    roll_broker_log().await;
    Ok(())
}

/// Rolls the local broker's quorum-queue log over and waits for its segments (with
/// `rabbitmqctl`); a broker it cannot reach is only reported, and the run goes on with the
/// log as it stands.
async fn roll_broker_log() {
    const ROLL: &str = "ra_log_wal:force_roll_over(ra_log_wal), \
                        ra_log_segment_writer:await(ra_log_segment_writer).";
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["eval", ROLL])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "bench: the broker's log was not rolled over: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => {
            eprintln!("bench: the broker's log was not rolled over (rabbitmqctl: {e})")
        }
    }
}

/// One number from a one-row query.
pub async fn scalar_i64(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> anyhow::Result<i64> {
    db.query_one_raw(stmt(sql, values))
        .await
        .with_context(|| format!("Failed to run {sql}"))?
        .context("Failed to read a row: none returned")?
        .try_get_by_index::<i64>(0)
        .context("Failed to read a number")
}
