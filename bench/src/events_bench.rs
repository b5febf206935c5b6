//! Section `events`: what outbound events (§11) cost the worker, and how fast they go out.
//!
//! In one database with the large contact table, four backlogs drain one after the other
//! through one worker process: without an endpoint; with one endpoint subscribed to every
//! event (a receiver in this process that answers 204 at once) and the worker's delivery
//! loop on (it yields to the backlog while the drain lasts; the drain's figures end at the
//! last lead, and the section waits for every event before going on); with the endpoint and the delivery loop off (`WEBHOOKS__ENABLED=false`,
//! as when other processes deliver: what writing the events' outbox rows costs the intake
//! path itself; turning them into events and deliveries is the delivering process's work,
//! which the drain with delivery counts);
//! and without again. The plain-SQL baseline writes the first backlog's rows into a second
//! account, as in the `worker` section. The two drains without events bracket the others,
//! so the growth of the tables between drains weighs on both sides. The delivery figures
//! are the deliveries per second from the first to the last received, and the time from
//! each event's transaction (its `timestamp`) to its arrival.

use crate::Ctx;
use crate::baseline;
use crate::leads::Mix;
use crate::load::nearest_rank;
use crate::seed;
use crate::worker_bench::{self, Drain};
use anyhow::Context;
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use testkit::webhooks::WebhookReceiver;

#[derive(Debug, Clone)]
pub struct EventsFigures {
    /// The drains before and after the ones with events, the one whose worker delivers
    /// them as they come, and the one whose worker only writes them (the delivery loop
    /// off, as when other processes deliver).
    pub before: Drain,
    pub with: Drain,
    pub written: Drain,
    pub after: Drain,
    /// Baseline leads per second (plain SQL, one connection, the same database).
    pub baseline: f64,
    /// Events the drain with deliveries wrote (and delivered), by type.
    pub types: BTreeMap<String, i64>,
    /// Deliveries the receiver got, and first → last of them.
    pub received: usize,
    pub receipt_secs: f64,
    /// Event transaction → arrival, ms, sorted.
    pub lag_ms: Vec<f64>,
    /// Deliveries by final status.
    pub deliveries: BTreeMap<String, i64>,
    /// Requests the receiver had in flight at most (the per-endpoint bound).
    pub most_in_flight: usize,
}

impl EventsFigures {
    pub fn ratio_without(&self) -> f64 {
        (self.before.rate() + self.after.rate()) / 2.0 / self.baseline.max(1e-9)
    }

    pub fn ratio_with(&self) -> f64 {
        self.with.rate() / self.baseline.max(1e-9)
    }

    pub fn ratio_written(&self) -> f64 {
        self.written.rate() / self.baseline.max(1e-9)
    }

    pub fn events(&self) -> i64 {
        self.types.values().sum()
    }

    pub fn events_per_sec(&self) -> f64 {
        self.received as f64 / self.receipt_secs.max(1e-9)
    }

    pub fn lag_p_ms(&self, p: f64) -> f64 {
        nearest_rank(&self.lag_ms, p).copied().unwrap_or(0.0)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "worker_ratio_without_events": self.ratio_without(),
            "worker_ratio_with_events": self.ratio_with(),
            "worker_ratio_events_written_only": self.ratio_written(),
            "baseline_leads_per_sec": self.baseline,
            "before": self.before.to_json(),
            "with": self.with.to_json(),
            "written": self.written.to_json(),
            "after": self.after.to_json(),
            "events": self.types,
            "received": self.received,
            "events_per_sec": self.events_per_sec(),
            "event_p50_ms": self.lag_p_ms(50.0),
            "event_p99_ms": self.lag_p_ms(99.0),
            "event_max_ms": self.lag_p_ms(100.0),
            "deliveries": self.deliveries,
            "most_in_flight": self.most_in_flight,
        })
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<EventsFigures> {
    let n = ctx.sizes.backlog;
    let contacts = ctx.sizes.large_contacts;
    let (db, c, second) = worker_bench::database(ctx, contacts).await?;
    let mix = |namespace, rng_seed| Mix {
        namespace,
        seeded: contacts,
        actions: true,
        rng_seed,
    };
    let first = worker_bench::backlog(n, mix(0, 11), &c)?;
    seed::copies(&db.conn, &second, &crate::leads::seeded_hits(&first)).await?;
    seed::analyze(&db.conn).await?;

    eprintln!("bench: events: baseline, the first backlog's rows by plain SQL");
    let one = db.single_connection().await?;
    let baseline = baseline::run(&one, 1, &first, &c, &second).await?;
    let _ = one.close().await;
    worker_bench::check_baseline(&db, &second, n).await?;

    let before = worker_bench::drain(ctx, &db, &first, 1, "events-none-1", contacts).await?;

    let receiver = WebhookReceiver::start_light().await;
    db.conn
        .execute_unprepared(&format!(
            "INSERT INTO webhook_endpoints (account_id, url, secret) VALUES ({}, '{}', '{}')",
            c.account,
            receiver.url("/events"),
            shared::events::new_secret()
        ))
        .await
        .context("Failed to add the endpoint")?;
    let second_backlog = worker_bench::backlog(n, mix(1, 12), &c)?;
    let env = [("WEBHOOKS__ALLOW_PRIVATE".to_owned(), "true".to_owned())];
    let delivered = async {
        // The events written so far and those still in the outbox's rows.
        let expected = seed::scalar_i64(
            &db.conn,
            "SELECT (SELECT count(*) FROM events)
                  + (SELECT coalesce(sum(cardinality(ids)), 0) FROM event_batches)",
            vec![],
        )
        .await?;
        let limit = Instant::now() + Duration::from_secs(120) + Duration::from_millis(n as u64);
        while (receiver.count() as i64) < expected {
            if Instant::now() > limit {
                // The figures then cover what was delivered; the note says how much.
                eprintln!(
                    "bench: events: {} of {expected} events delivered when time ran out",
                    receiver.count()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    };
    let with = worker_bench::drain_with(
        ctx,
        &db,
        &second_backlog,
        1,
        "events-one-endpoint",
        contacts,
        &env,
        Some(delivered),
    )
    .await?;
    // The same writes with this worker's delivery loop off: what events cost the intake
    // path itself when other processes deliver them.
    let written_backlog = worker_bench::backlog(n, mix(3, 14), &c)?;
    let off = [("WEBHOOKS__ENABLED".to_owned(), "false".to_owned())];
    let written = worker_bench::drain_with(
        ctx,
        &db,
        &written_backlog,
        1,
        "events-written-only",
        contacts,
        &off,
        None::<std::future::Ready<anyhow::Result<()>>>,
    )
    .await?;
    // What the written-only drain left in the outbox is not delivered: the next drain's
    // delivery loop would turn it into events while it runs.
    db.conn
        .execute_unprepared(
            "UPDATE webhook_endpoints SET enabled = false; DELETE FROM event_batches",
        )
        .await
        .context("Failed to disable the endpoint")?;

    let third = worker_bench::backlog(n, mix(2, 13), &c)?;
    let after = worker_bench::drain(ctx, &db, &third, 1, "events-none-2", contacts).await?;

    let got = receiver.got();
    let first_at = got.iter().map(|d| d.at).min();
    let last_at = got.iter().map(|d| d.at).max();
    let receipt_secs = match (first_at, last_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let mut lag_ms: Vec<f64> = got
        .iter()
        .filter_map(|d| {
            d.event_at
                .map(|e| (d.at_utc - e).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    lag_ms.sort_by(f64::total_cmp);
    let count_by = |sql: &'static str| {
        let conn = db.conn.clone();
        async move {
            let rows = conn
                .query_all_raw(seed::stmt(sql, vec![]))
                .await
                .context("Failed to count events")?;
            rows.into_iter()
                .map(|r| {
                    Ok((
                        r.try_get::<String>("", "k").context("key")?,
                        r.try_get::<i64>("", "n").context("count")?,
                    ))
                })
                .collect::<anyhow::Result<BTreeMap<String, i64>>>()
        }
    };
    // The drain with deliveries only: the events the written-only drain left pending are
    // not its figures.
    let types = count_by(
        "SELECT e.type AS k, count(*) AS n FROM events e
         WHERE EXISTS (SELECT 1 FROM event_deliveries d
                       WHERE d.event_id = e.id AND d.status <> 'pending')
         GROUP BY e.type",
    )
    .await?;
    let deliveries =
        count_by("SELECT status AS k, count(*) AS n FROM event_deliveries GROUP BY status").await?;
    let figures = EventsFigures {
        before,
        with,
        written,
        after,
        baseline,
        types,
        received: got.len(),
        receipt_secs,
        lag_ms,
        deliveries,
        most_in_flight: receiver.most_in_flight(),
    };
    let _ = db.conn.close().await;
    eprintln!(
        "bench: events: worker ratio {:.3} without, {:.3} with, {:.3} written only; {:.0} events/s, p99 {:.0} ms",
        figures.ratio_without(),
        figures.ratio_with(),
        figures.ratio_written(),
        figures.events_per_sec(),
        figures.lag_p_ms(99.0)
    );
    Ok(figures)
}
