//! What a run prints and keeps: a table with one row per figure and its same-run baseline
//! beside it, notes on anything irregular (retries, dead letters, warnings in the logs,
//! unexpected status codes), the plain `name value` lines tools read, and the JSON file of
//! every figure.

use crate::Sizes;
use crate::bulk_bench::{self, BulkFigures};
use crate::console_bench::ConsoleFigures;
use crate::e2e::E2eFigures;
use crate::events_bench::EventsFigures;
use crate::growth_bench::GrowthFigures;
use crate::procs::LogSummary;
use crate::receiver_bench::ReceiverFigures;
use crate::speed::SpeedFigures;
use crate::worker_bench::{Drain, WorkerFigures, statuses_text};
use anyhow::Context;
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct Report {
    pub worker: Option<WorkerFigures>,
    pub growth: Option<GrowthFigures>,
    pub events: Option<EventsFigures>,
    pub e2e: Option<E2eFigures>,
    pub speed: Option<SpeedFigures>,
    pub receiver: Option<ReceiverFigures>,
    pub bulk: Option<BulkFigures>,
    pub console: Option<ConsoleFigures>,
    /// (section, error)
    pub failures: Vec<(String, String)>,
}

struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
}

fn row(figure: impl Into<String>, value: String, baseline: String, ratio: String) -> Row {
    Row {
        figure: figure.into(),
        value,
        baseline,
        ratio,
    }
}

fn n0(x: f64) -> String {
    // Thousands separators: figures of five and six digits are read at a glance.
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn drain_name(d: &Drain) -> String {
    format!(
        "worker leads/s ({} proc, {} contacts)",
        d.processes,
        n0(d.contacts as f64)
    )
}

impl Report {
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        if let Some(w) = &self.worker {
            rows.extend(worker_rows(w));
        }
        if let Some(g) = &self.growth {
            rows.extend(growth_rows(g, self.worker.as_ref()));
        }
        if let Some(e) = &self.events {
            rows.extend(events_rows(e));
        }
        if let Some(e) = &self.e2e {
            rows.extend(e2e_rows(e));
        }
        if let Some(s) = &self.speed {
            rows.extend(speed_rows(s));
        }
        if let Some(r) = &self.receiver {
            rows.extend(receiver_rows(r));
        }
        if let Some(b) = &self.bulk {
            rows.extend(bulk_rows(b));
        }
        if let Some(c) = &self.console {
            for (i, (name, _)) in c.pages.iter().enumerate() {
                rows.push(row(
                    format!(
                        "console {name} p50 / p99 ({} contacts)",
                        n0(c.contacts as f64)
                    ),
                    format!("{:.1} / {:.1} ms", c.p(i, 50.0), c.p(i, 99.0)),
                    "target < 100 ms".into(),
                    String::new(),
                ));
            }
        }
        rows
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(w) = &self.worker {
            notes.extend(worker_notes(w));
        }
        if let Some(g) = &self.growth {
            notes.push(format!(
                "growth drain ({} leads into an empty account, statistics never refreshed), leads/s per {} s from its first commit: {}",
                n0(g.drain.leads as f64),
                g.slice_secs,
                g.slices_text()
            ));
            notes.push(format!(
                "growth drain statuses: {}",
                statuses_text(&g.drain.statuses)
            ));
        }
        if let Some(e) = &self.events {
            notes.push(format!(
                "events: {} delivered ({}); deliveries {}; at most {} in flight to the endpoint",
                e.events(),
                statuses_text(&e.types),
                statuses_text(&e.deliveries),
                e.most_in_flight
            ));
        }
        if let Some(e) = &self.e2e {
            notes.extend(e2e_notes(e));
        }
        if let Some(s) = &self.speed {
            notes.extend(speed_notes(s));
        }
        if let Some(r) = &self.receiver {
            notes.extend(receiver_notes(r));
        }
        if let Some(b) = &self.bulk {
            notes.push(bulk_note(b));
        }
        for (s, e) in &self.failures {
            notes.push(format!("section {s} FAILED: {e}"));
        }
        notes
    }

    /// The lines tools read, each `name value`.
    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(w) = &self.worker {
            out.push(format!("worker ratio {:.3}", w.ratio()));
            out.push(format!(
                "worker ratio one connection {:.3}",
                w.ratio_one_connection()
            ));
            out.push(format!("worker scale ratio {:.3}", w.scale_ratio()));
        }
        if let Some(g) = &self.growth {
            out.push(format!("worker growth ratio {:.3}", g.ratio()));
            out.push(format!("worker growth leads/s {:.1}", g.drain.rate()));
        }
        if let Some(e) = &self.events {
            out.push(format!(
                "worker ratio without events {:.3}",
                e.ratio_without()
            ));
            out.push(format!("worker ratio with events {:.3}", e.ratio_with()));
            out.push(format!(
                "worker ratio with events written only {:.3}",
                e.ratio_written()
            ));
            out.push(format!(
                "events with ÷ without {:.3}",
                e.with_over_without()
            ));
            out.push(format!(
                "events written only ÷ without {:.3}",
                e.written_over_without()
            ));
            out.push(format!("events/s {:.1}", e.events_per_sec()));
            out.push(format!("event p99 ms {:.1}", e.lag_p_ms(99.0)));
        }
        if let Some(b) = &self.bulk {
            out.push(format!("bulk leads/s {:.1}", b.bulk_leads_per_sec()));
            out.push(format!("single leads/s {:.1}", b.single_leads_per_sec()));
            if let Some(i) = &b.import {
                out.push(format!("import rows/s {:.1}", i.rate()));
            }
        }
        if let Some(e) = &self.e2e {
            out.push(format!("e2e leads/s {:.2}", e.rate()));
            out.push(format!("e2e ratio {:.3}", e.ratio()));
            out.push(format!("e2e burst req/s {:.1}", e.burst.posts.rate()));
            out.push(format!(
                "e2e burst drained leads/s {:.1}",
                e.burst.drain_rate()
            ));
            out.push(format!("e2e burst lag p50 ms {:.0}", e.burst.lag_p50_ms));
            out.push(format!("e2e burst lag p99 ms {:.0}", e.burst.lag_p99_ms));
        }
        if let Some(s) = &self.speed {
            out.push(format!("speed-to-lead p50 ms {:.1}", s.p_ms(50.0)));
            out.push(format!("speed-to-lead p99 ms {:.1}", s.p_ms(99.0)));
            out.push(format!("messages/s {:.1}", s.messages_per_sec()));
            out.push(format!("speed POSTs/s {:.1}", s.post_rate()));
        }
        if let Some(l) = self.receiver.as_ref().and_then(|r| r.at64()) {
            out.push(format!("receiver ratio {:.3}", l.ratio()));
            out.push(format!(
                "receiver p99 ms {:.2}",
                l.receiver.percentile_ms(99.0)
            ));
        }
        out
    }

    pub fn print(&self) {
        let rows = self.rows();
        let head = row(
            "figure",
            "value".into(),
            "baseline (same run)".into(),
            "ratio".into(),
        );
        let w = |f: fn(&Row) -> &String| {
            rows.iter()
                .chain(std::iter::once(&head))
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (w(|r| &r.figure), w(|r| &r.value), w(|r| &r.baseline));
        let pad =
            |s: &str, n: usize| format!("{s}{}", " ".repeat(n.saturating_sub(s.chars().count())));
        let line = |r: &Row| {
            format!(
                "{}  {}  {}  {}",
                pad(&r.figure, w0),
                pad(&r.value, w1),
                pad(&r.baseline, w2),
                r.ratio
            )
            .trim_end()
            .to_owned()
        };
        println!("{}", line(&head));
        println!("{}", "-".repeat(w0 + w1 + w2 + 6 + 24));
        for r in &rows {
            println!("{}", line(r));
        }
        let notes = self.notes();
        if !notes.is_empty() {
            println!();
            for n in notes {
                println!("note: {n}");
            }
        }
        println!();
        for l in self.lines() {
            println!("{l}");
        }
    }

    pub fn to_json(&self, sizes: &Sizes, quick: bool, wall_secs: f64) -> serde_json::Value {
        let mut lines = serde_json::Map::new();
        for l in self.lines() {
            if let Some((name, value)) = l.rsplit_once(' ')
                && let Ok(v) = value.parse::<f64>()
            {
                lines.insert(name.to_owned(), serde_json::json!(v));
            }
        }
        serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "quick": quick,
            "wall_secs": wall_secs,
            "sizes": {
                "large_contacts": sizes.large_contacts,
                "small_contacts": sizes.small_contacts,
                "backlog_leads": sizes.backlog,
                "growth_backlog_leads": sizes.growth_backlog,
                "e2e_posts": sizes.e2e_posts,
                "speed_leads": sizes.speed_leads,
                "speed_posts_per_sec": sizes.speed_rate,
                "receiver_secs_per_run": sizes.receiver_secs,
                "import_rows": sizes.import_rows,
            },
            "figures": lines,
            "worker": self.worker.as_ref().map(|w| serde_json::json!({
                "small": w.small.to_json(),
                "large": w.large.to_json(),
                "two_processes": w.two.to_json(),
                "baseline_leads_per_sec": w.baseline,
                "baseline_system": w.baseline_system.to_json(w.large.leads as f64),
                "baseline_concurrent_leads_per_sec": w.baseline_concurrent,
                "baseline_concurrent_transactions": w.baseline_streams,
                "baseline_concurrent_system": w.baseline_concurrent_system.to_json(w.large.leads as f64),
                "ratio": w.ratio(),
                "ratio_one_connection": w.ratio_one_connection(),
                "scale_ratio": w.scale_ratio(),
                "two_process_speedup": w.speedup(),
                "rows_written_worker_vs_baseline": w.written.iter().map(|(t, a, b)| serde_json::json!({"table": t, "worker": a, "baseline": b})).collect::<Vec<_>>(),
            })),
            "growth": self.growth.as_ref().map(GrowthFigures::to_json),
            "e2e": self.e2e.as_ref().map(E2eFigures::to_json),
            "speed": self.speed.as_ref().map(SpeedFigures::to_json),
            "events": self.events.as_ref().map(EventsFigures::to_json),
            "console": self.console.as_ref().map(ConsoleFigures::to_json),
            "receiver": self.receiver.as_ref().map(ReceiverFigures::to_json),
            "bulk": self.bulk.as_ref().map(BulkFigures::to_json),
            "failures": self.failures.iter().map(|(s, e)| serde_json::json!({"section": s, "error": e})).collect::<Vec<_>>(),
        })
    }
}

/// Writes `bench-<UTC timestamp>.json` and `latest.json` under `<target>/bench`; returns
/// the first path.
pub fn write_json(dir: &Path, json: &serde_json::Value) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(json).context("Failed to serialize the figures")?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let path = dir.join(format!("bench-{stamp}.json"));
    std::fs::write(&path, &text).with_context(|| format!("Failed to write {}", path.display()))?;
    let latest = dir.join("latest.json");
    std::fs::write(&latest, &text)
        .with_context(|| format!("Failed to write {}", latest.display()))?;
    Ok(path)
}

/// The growth section's rows: the drain into an empty account beside the seeded 2-process
/// drain of the worker section (when it ran), and its last fifth beside its first.
fn growth_rows(g: &GrowthFigures, w: Option<&WorkerFigures>) -> Vec<Row> {
    vec![
        row(
            format!(
                "worker growth leads/s ({} proc, empty account → {} contacts)",
                g.drain.processes,
                n0(g.contacts as f64)
            ),
            format!("{:.1}", g.drain.rate()),
            w.map(|w| format!("seeded {}: {:.1}", n0(w.two.contacts as f64), w.two.rate()))
                .unwrap_or_default(),
            String::new(),
        ),
        row(
            "worker growth (last fifth ÷ first fifth)",
            format!("{:.1}", g.last_fifth),
            format!("first fifth: {:.1}", g.first_fifth),
            format!("{:.3} worker growth ratio", g.ratio()),
        ),
    ]
}

/// The worker section's rows: each drain beside the plain-SQL baseline, scale, speed-up,
/// and what PostgreSQL and the worker used per lead.
fn worker_rows(w: &WorkerFigures) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(row(
        drain_name(&w.small),
        format!("{:.1}", w.small.rate()),
        String::new(),
        String::new(),
    ));
    rows.push(row(
        drain_name(&w.large),
        format!("{:.1}", w.large.rate()),
        format!(
            "plain SQL, {} transactions at once: {:.1}",
            w.baseline_streams, w.baseline_concurrent
        ),
        format!("{:.3} worker ratio", w.ratio()),
    ));
    rows.push(row(
        drain_name(&w.large),
        format!("{:.1}", w.large.rate()),
        format!("plain SQL, 1 connection: {:.1}", w.baseline),
        format!(
            "{:.3} worker ratio one connection",
            w.ratio_one_connection()
        ),
    ));
    rows.push(row(
        "worker scale (large ÷ small table)",
        format!("{:.1}", w.large.rate()),
        format!("small table: {:.1}", w.small.rate()),
        format!("{:.3} worker scale ratio", w.scale_ratio()),
    ));
    rows.push(row(
        drain_name(&w.two),
        format!("{:.1}", w.two.rate()),
        format!("1 process: {:.1}", w.large.rate()),
        format!("{:.3} 2-process speedup", w.speedup()),
    ));
    rows.push(row(
        format!(
            "PostgreSQL CPU µs/lead (1p, {} contacts)",
            n0(w.large.contacts as f64)
        ),
        format!(
            "{:.0} µs",
            w.large.system.postgres_secs * 1e6 / w.large.leads.max(1) as f64
        ),
        format!(
            "plain SQL: {:.0} µs ({} at once), {:.0} µs (1 connection)",
            w.baseline_concurrent_system.postgres_secs * 1e6 / w.large.leads.max(1) as f64,
            w.baseline_streams,
            w.baseline_system.postgres_secs * 1e6 / w.large.leads.max(1) as f64
        ),
        String::new(),
    ));
    for d in [&w.small, &w.large, &w.two] {
        rows.push(row(
            format!(
                "worker CPU µs/lead, peak RSS ({}p, {} contacts)",
                d.processes,
                n0(d.contacts as f64)
            ),
            format!("{:.0} µs", d.cpu_us_per_lead()),
            format!("{:.1} MiB", d.peak_rss_mib()),
            String::new(),
        ));
    }
    rows
}

/// The e2e section's rows: leads/s beside the broker's ceiling, the POSTs, the lag, and
/// what each process used per lead.
fn e2e_rows(e: &E2eFigures) -> Vec<Row> {
    let mut rows = Vec::new();
    rows.push(row(
        "e2e leads/s (first POST → last commit, 2 workers)",
        format!("{:.1}", e.rate()),
        format!("broker publish+consume: {:.1} msg/s", e.ceiling.rate()),
        format!("{:.3} e2e ratio", e.ratio()),
    ));
    rows.push(row(
        "e2e POST req/s (64 connections)",
        format!("{:.1}", e.load.rate()),
        format!("p99 {:.2} ms", e.load.percentile_ms(99.0)),
        String::new(),
    ));
    rows.push(row(
        "e2e lag received → committed p50 / p99",
        format!("{:.0} / {:.0} ms", e.lag_p50_ms, e.lag_p99_ms),
        String::new(),
        String::new(),
    ));
    let b = &e.burst;
    rows.push(row(
        format!(
            "e2e open-loop burst: req/s taken ({:.0} s, 256 connections)",
            b.posts.secs
        ),
        format!("{:.1}", b.posts.rate()),
        format!(
            "{} accepted; drained {:.1} leads/s",
            b.accepted,
            b.drain_rate()
        ),
        format!(
            "{:.3} drained ÷ taken",
            b.drain_rate() / b.posts.rate().max(1e-9)
        ),
    ));
    rows.push(row(
        "e2e open-loop burst lag received → committed p50 / p99",
        format!("{:.0} / {:.0} ms", b.lag_p50_ms, b.lag_p99_ms),
        format!("closed loop: {:.0} / {:.0} ms", e.lag_p50_ms, e.lag_p99_ms),
        String::new(),
    ));
    rows.push(row(
        "e2e PostgreSQL, RabbitMQ, Redis CPU µs/lead",
        format!(
            "{:.0}, {:.0}, {:.0} µs",
            e.system.postgres_secs * 1e6 / e.accepted.max(1) as f64,
            e.system.broker_secs * 1e6 / e.accepted.max(1) as f64,
            e.system.redis_secs * 1e6 / e.accepted.max(1) as f64
        ),
        format!(
            "broker alone: {:.0} µs/msg",
            e.ceiling_system.broker_secs * 1e6 / e.ceiling.messages.max(1) as f64
        ),
        String::new(),
    ));
    rows.push(row(
        "e2e receiver CPU µs/lead, peak RSS",
        format!(
            "{:.0} µs",
            e.receiver.cpu_secs * 1e6 / e.accepted.max(1) as f64
        ),
        format!("{:.1} MiB", e.receiver.peak_rss_mib),
        String::new(),
    ));
    for (i, (s, leads)) in e.workers.iter().enumerate() {
        rows.push(row(
            format!(
                "e2e worker {} CPU µs/lead, peak RSS ({} leads)",
                i + 1,
                n0(*leads)
            ),
            format!("{:.0} µs", s.cpu_secs * 1e6 / leads.max(1.0)),
            format!("{:.1} MiB", s.peak_rss_mib),
            String::new(),
        ));
    }
    rows
}

/// The events section's rows: each round's drains with an endpoint, each beside the
/// baseline and against the drains without events around it; the drains without; the
/// medians over the rounds; deliveries per second and commit → delivery.
fn events_rows(e: &EventsFigures) -> Vec<Row> {
    let drain = |label: String, d: &Drain, against: String| {
        row(
            format!("events: worker leads/s, {label}"),
            n0(d.rate()),
            format!("plain SQL {}", n0(e.baseline)),
            against,
        )
    };
    let ratio = |d: &Drain| format!("{:.3}", d.rate() / e.baseline.max(1e-9));
    let mut rows = Vec::new();
    for (i, d) in e.without.iter().enumerate() {
        rows.push(drain(format!("no endpoint, drain {}", i + 1), d, ratio(d)));
    }
    let by_round = |label: &str, drains: &[Drain], rounds: Vec<f64>| {
        drains
            .iter()
            .zip(rounds)
            .enumerate()
            .map(|(i, (d, r))| {
                drain(
                    format!("{label}, round {}", i + 1),
                    d,
                    format!("{} ({r:.3} of those around it)", ratio(d)),
                )
            })
            .collect::<Vec<_>>()
    };
    rows.extend(by_round(
        "one endpoint, every event",
        &e.with,
        e.rounds(&e.with),
    ));
    rows.extend(by_round(
        "one endpoint, written only",
        &e.written,
        e.rounds(&e.written),
    ));
    rows.extend([
        row(
            "events: with ÷ without (median of the rounds)",
            format!("{:.3}", e.with_over_without()),
            format!("written only ÷ without {:.3}", e.written_over_without()),
            String::new(),
        ),
        row(
            "events delivered/s (first → last received)",
            format!("{:.1}", e.events_per_sec()),
            format!("{} events", n0(e.received as f64)),
            String::new(),
        ),
        row(
            "event commit → delivery p50 / p99",
            format!("{:.0} / {:.0} ms", e.lag_p_ms(50.0), e.lag_p_ms(99.0)),
            format!("max {:.0} ms", e.lag_p_ms(100.0)),
            String::new(),
        ),
    ]);
    rows
}

/// The speed section's rows: 202 → message beside its enrollment → message part, the
/// messages/s beside the POST rate, and what each process used per message.
fn speed_rows(s: &SpeedFigures) -> Vec<Row> {
    let per = |secs: f64| secs * 1e6 / s.delivered.max(1) as f64;
    let workers: f64 = s.workers.iter().map(|w| w.cpu_secs).sum();
    vec![
        row(
            format!(
                "speed to lead 202 → provider p50 / p99 ({} leads at {:.0}/s)",
                n0(s.leads as f64),
                s.target_rate
            ),
            format!("{:.0} / {:.0} ms", s.p_ms(50.0), s.p_ms(99.0)),
            format!(
                "enrolled → provider: {:.0} / {:.0} ms",
                s.send_p_ms(50.0),
                s.send_p_ms(99.0)
            ),
            format!("max {:.0} ms", s.p_ms(100.0)),
        ),
        row(
            "speed messages/s (first → last received)",
            format!("{:.1}", s.messages_per_sec()),
            format!("POSTs accepted: {:.1}/s", s.post_rate()),
            String::new(),
        ),
        row(
            format!(
                "speed CPU µs/message: receiver, {} workers, PostgreSQL",
                s.workers.len()
            ),
            format!(
                "{:.0}, {:.0}, {:.0} µs",
                per(s.receiver.cpu_secs),
                per(workers),
                per(s.system.postgres_secs)
            ),
            format!("machine {:.0}% busy", s.system.busy() * 100.0),
            String::new(),
        ),
    ]
}

/// The speed section's notes: answers, provider requests, step statuses, logs.
fn speed_notes(s: &SpeedFigures) -> Vec<String> {
    let mut notes = vec![format!(
        "speed: {} of {} leads accepted ({}); provider: {} requests, {} messages delivered, {} numbers texted twice; steps: {}",
        s.accepted,
        s.leads,
        s.answers,
        s.requests,
        s.delivered,
        s.texted_twice,
        statuses_text(&s.statuses)
    )];
    for (name, l) in &s.logs {
        notes.extend(log_note(&format!("speed {name}"), l));
    }
    notes
}

/// The receiver section's rows: per connection level, req/s and latency beside the publish
/// ceiling and hello-world, errors and CPU; then peak RSS.
fn receiver_rows(r: &ReceiverFigures) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in &r.levels {
        let c = l.connections;
        rows.push(row(
            format!("receiver req/s ({c} connections, mixed leads)"),
            format!("{:.1}", l.receiver.rate()),
            format!("hello-world {:.1}", l.hello.rate()),
            format!(
                "{:.3} of hello",
                l.receiver.rate() / l.hello.rate().max(1e-9)
            ),
        ));
        rows.push(row(
            format!("receiver leads published/s ({c} connections, the 202s)"),
            format!("{:.1}", l.published_rate()),
            format!("publish ceiling {:.1}", l.ceiling.rate()),
            format!("{:.3} receiver ratio", l.ratio()),
        ));
        rows.push(row(
            format!("receiver p50/p99/p99.9 ms ({c} connections)"),
            format!(
                "{:.2}/{:.2}/{:.2}",
                l.receiver.percentile_ms(50.0),
                l.receiver.percentile_ms(99.0),
                l.receiver.percentile_ms(99.9)
            ),
            format!(
                "ceiling {:.2}/{:.2}/{:.2}; hello {:.2}/{:.2}/{:.2}",
                l.ceiling.percentile_ms(50.0),
                l.ceiling.percentile_ms(99.0),
                l.ceiling.percentile_ms(99.9),
                l.hello.percentile_ms(50.0),
                l.hello.percentile_ms(99.0),
                l.hello.percentile_ms(99.9)
            ),
            String::new(),
        ));
        rows.push(row(
            format!("receiver errors, CPU µs/request ({c} connections)"),
            format!(
                "{} errors ({} 5xx)",
                l.receiver.errors(),
                l.receiver.server_errors()
            ),
            format!(
                "{:.0} µs/request; Redis {:.0}",
                l.cpu_us_per_request(),
                l.redis_cpu_us_per_request()
            ),
            String::new(),
        ));
        rows.push(row(
            format!("receiver CPU µs/request against its floor ({c} connections)"),
            format!("{:.1}", l.cpu_us_per_request()),
            format!(
                "floor {:.1}: hello {:.1} + publish {:.1} per 202",
                l.floor_cpu_us_per_request(),
                l.hello_cpu_us_per_request(),
                l.ceiling_cpu_us_per_message()
            ),
            format!(
                "{:.2}× floor",
                l.cpu_us_per_request() / l.floor_cpu_us_per_request().max(1e-9)
            ),
        ));
    }
    rows.push(row(
        "receiver peak RSS",
        format!("{:.1} MiB", r.receiver.peak_rss_mib),
        String::new(),
        String::new(),
    ));
    rows
}

/// A note on the warnings and errors in a process's log, if it has any.
fn log_note(name: &str, l: &LogSummary) -> Option<String> {
    if l.warn + l.error == 0 {
        return None;
    }
    let top = l
        .top
        .iter()
        .map(|(n, level, m)| format!("{n}× {level} {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!(
        "{name}: {} warnings, {} errors in its log ({top})",
        l.warn, l.error
    ))
}

/// The worker section's notes: the baseline, rows written, and each drain's statuses,
/// retries, CPU and log.
fn worker_notes(w: &WorkerFigures) -> Vec<String> {
    let mut notes = Vec::new();
    notes.push(format!(
        "baseline: machine {:.0}% busy on 1 connection, {:.0}% with {} transactions at once",
        w.baseline_system.busy() * 100.0,
        w.baseline_concurrent_system.busy() * 100.0,
        w.baseline_streams
    ));
    notes.push(format!(
        "rows written for the large backlog, worker / baseline: {}",
        w.written
            .iter()
            .map(|(t, a, b)| format!("{t} {a}/{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for d in [&w.small, &w.large, &w.two] {
        let c = d.counters();
        notes.push(format!(
            "drain {}: {} leads in {:.2} s; {}; {:.0} retried, {:.0} dead-lettered, {:.0} deferred to a second transaction, mean batch {:.1}; machine {:.0}% busy, CPU µs/lead: PostgreSQL {:.0}, RabbitMQ {:.0}",
            d.label,
            d.leads,
            d.secs,
            statuses_text(&d.statuses),
            c.retried,
            c.dead_lettered,
            c.deferred,
            c.batched_leads / c.batches.max(1.0),
            d.system.busy() * 100.0,
            d.system.postgres_secs * 1e6 / d.leads.max(1) as f64,
            d.system.broker_secs * 1e6 / d.leads.max(1) as f64
        ));
        if d.completed() != d.leads as i64 {
            notes.push(format!(
                "drain {}: only {} of {} leads have a final status",
                d.label,
                d.completed(),
                d.leads
            ));
        }
        for (i, l) in d.logs.iter().enumerate() {
            notes.extend(log_note(&format!("worker {} #{}", d.label, i + 1), l));
        }
    }
    notes
}

/// The e2e section's notes: the POSTs' answers, the intakes' statuses, the logs.
fn e2e_notes(e: &E2eFigures) -> Vec<String> {
    let mut notes = Vec::new();
    notes.push(format!(
        "e2e: {} POSTs answered ({}), {} transport errors, {} unexpected; intakes: {}; mean batch {:.1} leads",
        e.load.answered(),
        e.load.statuses_text(),
        e.load.transport_errors,
        e.load.unexpected,
        statuses_text(&e.statuses),
        e.mean_batch
    ));
    for (name, l) in &e.logs {
        notes.extend(log_note(&format!("e2e {name}"), l));
    }
    notes
}

/// The receiver section's notes: each level's answers and errors, the log.
fn receiver_notes(r: &ReceiverFigures) -> Vec<String> {
    let mut notes = Vec::new();
    for l in &r.levels {
        notes.push(format!(
            "receiver at {}: {} requests ({}), {} unexpected, {} transport errors; hello {} errors, ceiling {} errors",
            l.connections,
            l.receiver.answered(),
            l.receiver.statuses_text(),
            l.receiver.unexpected,
            l.receiver.transport_errors,
            l.hello.errors(),
            l.ceiling.errors()
        ));
    }
    notes.extend(log_note("receiver", &r.log));
    notes
}

/// The bulk section's note: both endpoints' answers and errors.
fn bulk_note(b: &BulkFigures) -> String {
    format!(
        "bulk: single {} requests ({}), bulk {} requests ({}); {} unexpected, {} transport errors",
        b.single.answered(),
        b.single.statuses_text(),
        b.bulk.answered(),
        b.bulk.statuses_text(),
        b.single.unexpected + b.bulk.unexpected,
        b.single.transport_errors + b.bulk.transport_errors
    )
}

/// The bulk section's rows: bulk leads/s beside the single endpoint's, and the import.
fn bulk_rows(b: &BulkFigures) -> Vec<Row> {
    let mut rows = vec![row(
        format!(
            "bulk leads/s ({} connections × {} leads)",
            bulk_bench::BULK_CONNECTIONS,
            bulk_bench::LEADS_PER_REQUEST
        ),
        format!("{:.1}", b.bulk_leads_per_sec()),
        format!(
            "single endpoint ({} connections): {:.1}",
            bulk_bench::SINGLE_CONNECTIONS,
            b.single_leads_per_sec()
        ),
        format!(
            "{:.3} bulk ÷ single",
            b.bulk_leads_per_sec() / b.single_leads_per_sec().max(1e-9)
        ),
    )];
    if let Some(i) = &b.import {
        rows.push(row(
            format!("leadctl import rows/s ({} rows)", n0(i.rows as f64)),
            format!("{:.1}", i.rate()),
            format!("bulk endpoint: {:.1}", b.bulk_leads_per_sec()),
            format!(
                "{:.3} import ÷ bulk; peak RSS {:.1} MiB",
                i.rate() / b.bulk_leads_per_sec().max(1e-9),
                i.peak_rss_mib
            ),
        ));
    }
    rows
}
