//! Section `growth`: a backlog drained into an account that starts empty, on a database
//! whose statistics are never refreshed (autovacuum off on every table, no ANALYZE), by two
//! worker processes — a new customer's first campaign. Every plan the workers make is made
//! while the account is small, so a lookup whose plan depends on the table's size shows
//! here as a drain that slows down as the account grows.
//!
//! The figure is the growth ratio: leads/s of the last fifth of the backlog ÷ leads/s of the
//! first fifth (1.0: steady; the target is ≥ 0.8), with the drain's rate per time slice.

use crate::Ctx;
use crate::leads::Mix;
use crate::seed;
use crate::worker_bench::{self, Drain};
use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

/// Worker processes of the growth drain.
const PROCESSES: usize = 2;

#[derive(Debug, Clone)]
pub struct GrowthFigures {
    pub drain: Drain,
    /// Leads/s over the first and the last fifth of the backlog, by commit time.
    pub first_fifth: f64,
    pub last_fifth: f64,
    /// Length of one slice of `per_slice`, in seconds.
    pub slice_secs: i64,
    /// Leads committed in each slice of the drain, from its first commit.
    pub per_slice: Vec<i64>,
    /// Contacts of the account at the end (it had none at the start).
    pub contacts: i64,
}

impl GrowthFigures {
    pub fn ratio(&self) -> f64 {
        self.last_fifth / self.first_fifth.max(1e-9)
    }

    /// `1: 1,357/s, 2: 1,301/s, …`
    pub fn slices_text(&self) -> String {
        self.per_slice
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{}: {:.0}/s", i + 1, *n as f64 / self.slice_secs as f64))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "drain": self.drain.to_json(),
            "first_fifth_leads_per_sec": self.first_fifth,
            "last_fifth_leads_per_sec": self.last_fifth,
            "growth_ratio": self.ratio(),
            "slice_secs": self.slice_secs,
            "per_slice": self.per_slice,
            "contacts_at_end": self.contacts,
        })
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<GrowthFigures> {
    let n = ctx.sizes.growth_backlog;
    let db = ctx.janitor.database().await?;
    let c = seed::account(&db.conn, "Bench growth").await?;
    // Statistics stay those of the empty tables for the whole drain.
    db.conn
        .execute_unprepared(
            "DO $$ DECLARE t regclass; BEGIN \
               FOR t IN SELECT oid FROM pg_class WHERE relkind = 'r' \
                 AND relnamespace = 'public'::regnamespace LOOP \
                 EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', t); \
               END LOOP; END $$",
        )
        .await
        .context("Failed to turn autovacuum off")?;
    let mix = Mix {
        namespace: 2,
        seeded: 0,
        actions: true,
        rng_seed: 4,
    };
    let messages = worker_bench::backlog(n, mix, &c)?;
    let drain = worker_bench::drain(ctx, &db, &messages, PROCESSES, "growth-2p", 0).await?;
    let figures = fifths(&db.conn, c.account, drain).await?;
    let _ = db.conn.close().await;
    eprintln!(
        "bench: growth: first fifth {:.0} leads/s, last fifth {:.0} leads/s, ratio {:.3}; {}",
        figures.first_fifth,
        figures.last_fifth,
        figures.ratio(),
        figures.slices_text()
    );
    Ok(figures)
}

/// The rates of the first and last fifth and the per-slice counts, from the commit times
/// of the account's intakes, in two queries after the drain.
async fn fifths(
    conn: &impl ConnectionTrait,
    account: i64,
    drain: Drain,
) -> anyhow::Result<GrowthFigures> {
    let row = conn
        .query_one_raw(seed::stmt(
            "SELECT min(processed_at) AS t0, \
               percentile_disc(0.2) WITHIN GROUP (ORDER BY processed_at) AS t20, \
               percentile_disc(0.8) WITHIN GROUP (ORDER BY processed_at) AS t80, \
               max(processed_at) AS t100, \
               (SELECT count(*) FROM contacts WHERE account_id = $1) AS contacts \
             FROM lead_intakes WHERE account_id = $1",
            vec![account.into()],
        ))
        .await
        .context("Failed to read the commit times")?
        .context("Failed to read the commit times: no row")?;
    let at = |name: &str| -> anyhow::Result<DateTime<Utc>> {
        row.try_get::<Option<DateTime<Utc>>>("", name)
            .with_context(|| format!("Failed to read {name}"))?
            .with_context(|| format!("No lead was committed ({name})"))
    };
    let (t0, t20, t80, t100) = (at("t0")?, at("t20")?, at("t80")?, at("t100")?);
    let contacts: i64 = row
        .try_get("", "contacts")
        .context("Failed to read the contacts count")?;
    let fifth = drain.leads as f64 / 5.0;
    let rate = |a: DateTime<Utc>, b: DateTime<Utc>| fifth / (b - a).as_seconds_f64().max(1e-3);
    let slice_secs: i64 = if (t100 - t0).num_seconds() >= 300 {
        60
    } else {
        10
    };
    let rows = conn
        .query_all_raw(seed::stmt(
            "SELECT floor(extract(epoch FROM processed_at - $2) / $3)::bigint AS slice, \
               count(*) AS n \
             FROM lead_intakes WHERE account_id = $1 GROUP BY 1 ORDER BY 1",
            vec![account.into(), t0.into(), (slice_secs as f64).into()],
        ))
        .await
        .context("Failed to count the commits per slice")?;
    let mut per_slice = Vec::new();
    for r in rows {
        let slice: i64 = r.try_get("", "slice").context("Failed to read a slice")?;
        let n: i64 = r.try_get("", "n").context("Failed to read a count")?;
        let i = usize::try_from(slice).unwrap_or(0);
        if per_slice.len() <= i {
            per_slice.resize(i + 1, 0);
        }
        per_slice[i] += n;
    }
    Ok(GrowthFigures {
        first_fifth: rate(t0, t20),
        last_fifth: rate(t80, t100),
        slice_secs,
        per_slice,
        contacts,
        drain,
    })
}
