//! Section `events`: what outbound events (§11) cost the worker, and how fast they go out.
//!
//! In one database with the large contact table, backlogs drain one after the other through
//! one worker process, in rounds (`--event-rounds`; 2 with `--quick`, else 3). A round is a
//! drain without an endpoint; one with one endpoint subscribed to every event (a receiver in
//! this process that answers 204 at once) and the worker's delivery loop on (it yields to
//! the backlog while the drain lasts; the drain's figures end at the last lead, and the
//! section waits for every event before going on); and one with the endpoint and the
//! delivery loop off (`WEBHOOKS__ENABLED=false`, as when other processes deliver: what
//! writing the events' outbox rows costs the intake path itself; turning them into events
//! and deliveries is the delivering process's work, which the drain with delivery counts).
//! One more drain without events closes the last round, so every drain with events lies
//! between two without, and the growth of the tables weighs on both sides. Each drain starts
//! from the same state of the server: the previous drain's rows vacuumed and analyzed and a
//! checkpoint taken (otherwise the autovacuum of one drain's rows and the full-page writes
//! after a checkpoint land in whichever drain comes next, and move it by a quarter). The
//! ratios that matter are each drain with events against the mean of the two without around
//! it, one per round; the section reports their median. The plain-SQL baseline writes the
//! first backlog's rows into a second account, as in the `worker` section. The delivery
//! figures are the deliveries per second from the first to the last received in each round,
//! and the time from each event's transaction (its `timestamp`) to its arrival.

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
    /// The drains without events: one opening each round, one closing the last.
    pub without: Vec<Drain>,
    /// Each round's drain whose worker delivers the events as they come.
    pub with: Vec<Drain>,
    /// Each round's drain whose worker only writes them (the delivery loop off, as when
    /// other processes deliver).
    pub written: Vec<Drain>,
    /// Baseline leads per second (plain SQL, one connection, the same database).
    pub baseline: f64,
    /// Events the drains with deliveries wrote (and delivered), by type.
    pub types: BTreeMap<String, i64>,
    /// Deliveries the receiver got, and the sum over the rounds of first → last of them.
    pub received: usize,
    pub receipt_secs: f64,
    /// Event transaction → arrival, ms, sorted.
    pub lag_ms: Vec<f64>,
    /// Deliveries by final status.
    pub deliveries: BTreeMap<String, i64>,
    /// Requests the receiver had in flight at most (the per-endpoint bound).
    pub most_in_flight: usize,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl EventsFigures {
    pub fn ratio_without(&self) -> f64 {
        mean(self.without.iter().map(Drain::rate)) / self.baseline.max(1e-9)
    }

    pub fn ratio_with(&self) -> f64 {
        mean(self.with.iter().map(Drain::rate)) / self.baseline.max(1e-9)
    }

    pub fn ratio_written(&self) -> f64 {
        mean(self.written.iter().map(Drain::rate)) / self.baseline.max(1e-9)
    }

    /// Round `i`'s drains without events: the one before it and the one after.
    fn around(&self, i: usize) -> f64 {
        let rate = |j: usize| self.without.get(j).map(Drain::rate);
        mean([rate(i), rate(i + 1)].into_iter().flatten())
    }

    /// Each round's `drains[i]` ÷ the mean of the drains without events around it.
    pub fn rounds(&self, drains: &[Drain]) -> Vec<f64> {
        drains
            .iter()
            .enumerate()
            .map(|(i, d)| d.rate() / self.around(i).max(1e-9))
            .collect()
    }

    /// The median over the rounds of the drain with delivery ÷ those without around it.
    pub fn with_over_without(&self) -> f64 {
        median(self.rounds(&self.with))
    }

    /// The same for the drain that only writes the events.
    pub fn written_over_without(&self) -> f64 {
        median(self.rounds(&self.written))
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
        let drains = |v: &[Drain]| v.iter().map(Drain::to_json).collect::<Vec<_>>();
        serde_json::json!({
            "worker_ratio_without_events": self.ratio_without(),
            "worker_ratio_with_events": self.ratio_with(),
            "worker_ratio_events_written_only": self.ratio_written(),
            "with_over_without": self.with_over_without(),
            "written_over_without": self.written_over_without(),
            "with_over_without_by_round": self.rounds(&self.with),
            "written_over_without_by_round": self.rounds(&self.written),
            "baseline_leads_per_sec": self.baseline,
            "without": drains(&self.without),
            "with": drains(&self.with),
            "written": drains(&self.written),
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

/// Sets whether the bench's endpoint is enabled (the drains without events: not).
async fn endpoint(db: &sea_orm::DatabaseConnection, enabled: bool) -> anyhow::Result<()> {
    db.execute_unprepared(&format!("UPDATE webhook_endpoints SET enabled = {enabled}"))
        .await
        .context("Failed to switch the endpoint")?;
    Ok(())
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<EventsFigures> {
    let n = ctx.sizes.backlog;
    let contacts = ctx.sizes.large_contacts;
    let rounds = ctx.sizes.event_rounds.max(1);
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

    let receiver = WebhookReceiver::start_light().await;
    db.conn
        .execute_unprepared(&format!(
            "INSERT INTO webhook_endpoints (account_id, url, secret, enabled) \
             VALUES ({}, '{}', '{}', false)",
            c.account,
            receiver.url("/events"),
            shared::events::new_secret()
        ))
        .await
        .context("Failed to add the endpoint")?;
    // Every drain its own leads (the first one the baseline's).
    let mut drawn = 0u64;
    let mut fresh = || {
        drawn += 1;
        worker_bench::backlog(n, mix(drawn, 11 + drawn), &c)
    };
    let deliver = [("WEBHOOKS__ALLOW_PRIVATE".to_owned(), "true".to_owned())];
    let off = [("WEBHOOKS__ENABLED".to_owned(), "false".to_owned())];
    let (mut without, mut with, mut written) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lag_ms, mut receipt_secs) = (Vec::new(), 0.0);
    for round in 1..=rounds + 1 {
        endpoint(&db.conn, false).await?;
        seed::settle(&db.conn).await?;
        let messages = if round == 1 { first.clone() } else { fresh()? };
        let label = format!("events-none-{round}");
        without.push(worker_bench::drain(ctx, &db, &messages, 1, &label, contacts).await?);
        if round > rounds {
            break;
        }

        endpoint(&db.conn, true).await?;
        seed::settle(&db.conn).await?;
        let messages = fresh()?;
        let from = receiver.count();
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
        let label = format!("events-one-endpoint-{round}");
        with.push(
            worker_bench::drain_with(
                ctx,
                &db,
                &messages,
                1,
                &label,
                contacts,
                &deliver,
                Some(delivered),
            )
            .await?,
        );
        let got = receiver.got();
        let got = got.get(from..).unwrap_or_default();
        let first_at = got.iter().map(|d| d.at).min();
        let last_at = got.iter().map(|d| d.at).max();
        if let (Some(a), Some(b)) = (first_at, last_at) {
            receipt_secs += b.duration_since(a).as_secs_f64();
        }
        lag_ms.extend(got.iter().filter_map(|d| {
            d.event_at
                .map(|e| (d.at_utc - e).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        }));

        // The same writes with this worker's delivery loop off: what events cost the
        // intake path itself when other processes deliver them.
        seed::settle(&db.conn).await?;
        let messages = fresh()?;
        let label = format!("events-written-only-{round}");
        written.push(
            worker_bench::drain_with(
                ctx,
                &db,
                &messages,
                1,
                &label,
                contacts,
                &off,
                None::<std::future::Ready<anyhow::Result<()>>>,
            )
            .await?,
        );
        // What the written-only drain left in the outbox is not delivered: the next drain
        // with delivery would turn it into events while it runs.
        db.conn
            .execute_unprepared("DELETE FROM event_batches")
            .await
            .context("Failed to empty the outbox")?;
    }
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
    let types = count_by("SELECT type AS k, count(*) AS n FROM events GROUP BY type").await?;
    let deliveries =
        count_by("SELECT status AS k, count(*) AS n FROM event_deliveries GROUP BY status").await?;
    let figures = EventsFigures {
        without,
        with,
        written,
        baseline,
        types,
        received: receiver.count(),
        receipt_secs,
        lag_ms,
        deliveries,
        most_in_flight: receiver.most_in_flight(),
    };
    let _ = db.conn.close().await;
    let by_round = |v: Vec<f64>| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    eprintln!(
        "bench: events: with ÷ without {:.3} (rounds {}), written only ÷ without {:.3} (rounds {}); {:.0} events/s, p99 {:.0} ms",
        figures.with_over_without(),
        by_round(figures.rounds(&figures.with)),
        figures.written_over_without(),
        by_round(figures.rounds(&figures.written)),
        figures.events_per_sec(),
        figures.lag_p_ms(99.0)
    );
    Ok(figures)
}
