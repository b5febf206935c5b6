//! Scenario `event-kill`: outbound events (§11) under kill -9. A burst of leads goes
//! through an account with one webhook endpoint subscribed to every event; the endpoint (in
//! this process) answers each delivery after 100 ms, so the workers' delivery loops always
//! hold requests in flight. Three times during the burst, at a moment the endpoint holds
//! requests, every worker is killed with kill -9 and started again.
//!
//! An event exists if and only if its work committed, and none is lost on the way out:
//! every finished intake has exactly one `lead.processed` event, and every `created` one
//! exactly one `contact.created`; no event names an intake that did not finish; every event
//! reached the endpoint, each time with its stored bytes, and the endpoint got nothing that
//! is not an event. Repeats (a delivery whose worker died before recording it goes out again
//! with the same `webhook-id`) are counted, not failures: receivers drop them by id.

use super::client::{self, BurstResult, Pace};
use super::{Row, Sizes, Stage, limits, tick};
use crate::Ctx;
use crate::seed;
use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::webhooks::{Answer, WebhookReceiver};
use uuid::Uuid;

/// Shares of the burst accepted at which every worker is killed.
const KILLS: [f64; 3] = [0.25, 0.5, 0.75];

pub async fn kill_while_delivering(ctx: &Ctx, sizes: &Sizes) -> anyhow::Result<Row> {
    let endpoint = WebhookReceiver::start().await;
    endpoint.answer_all(Some(Answer::status(204).after(Duration::from_millis(100))));
    let env = [
        ("WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("WEBHOOKS__RETRY_SCHEDULE", "1s,1s,1s,1s,1s"),
        // A claim's lease is twice this and 5 s: a killed worker's deliveries are due again
        // 9 s later.
        ("WEBHOOKS__REQUEST_TIMEOUT", "2s"),
    ];
    let mut stage = Stage::new(ctx, sizes, "events", 2, &[], &env, true).await?;
    stage
        .db
        .conn
        .execute_unprepared(&format!(
            "INSERT INTO webhook_endpoints (account_id, url, secret) VALUES ({}, '{}', '{}')",
            stage.c.account,
            endpoint.url("/events"),
            shared::events::new_secret()
        ))
        .await
        .context("Failed to add the endpoint")?;
    let leads = Arc::new(client::draw(sizes.burst, &stage.c, "events", 12)?);
    let (send_limit, finish_limit) = limits(sizes, leads.len());
    let pace = Pace {
        connections: sizes.connections,
        per_sec: sizes.per_sec,
        limit: send_limit,
    };
    let burst = stage.burst(&leads, pace);
    let mut notes = Vec::new();
    for share in KILLS {
        if !burst.reached(share, send_limit).await {
            bail!("the burst did not reach {:.0}%", share * 100.0);
        }
        let in_flight =
            super::kill_all_while(&mut stage, || endpoint.in_flight(), "deliveries").await?;
        notes.push(format!(
            "kill -9 of every worker at {} accepted, {in_flight} deliveries in flight",
            burst.accepted()
        ));
    }
    let result = burst.finish().await?;
    let ids: Vec<Uuid> = result.intake_ids.iter().flatten().copied().collect();
    super::reconcile::wait_finished(
        &stage.db,
        &ids,
        Duration::from_secs(60),
        finish_limit,
        || tick(&mut stage.receiver, &mut stage.workers),
    )
    .await?;
    let t = Instant::now();
    wait_delivered(&mut stage, finish_limit).await?;
    notes.push(format!(
        "every delivery done {:.1} s after the last lead finished",
        t.elapsed().as_secs_f64()
    ));
    let check = check(&stage, &result, &endpoint).await?;
    let mut row = stage.settle(ctx, &leads, &result, finish_limit).await?;
    row.notes.extend(notes);
    row.notes.push(check.summary());
    row.failures.extend(check.failures);
    if row.tally.dead_lettered > 0 {
        row.failures
            .push(format!("{} dead-lettered", row.tally.dead_lettered));
    }
    Ok(row)
}

/// Waits until no delivery is pending, nothing moved for 30 s, or `limit` passed.
async fn wait_delivered(stage: &mut Stage, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut best, mut moved) = (i64::MAX, Instant::now());
    loop {
        tick(&mut stage.receiver, &mut stage.workers)?;
        let pending = seed::scalar_i64(
            &stage.db.conn,
            "SELECT (SELECT count(*) FROM event_deliveries WHERE status = 'pending')
                  + (SELECT count(*) FROM event_batches)",
            vec![],
        )
        .await?;
        if pending == 0 {
            return Ok(());
        }
        if pending < best {
            (best, moved) = (pending, Instant::now());
        }
        if moved.elapsed() > Duration::from_secs(30) || started.elapsed() > limit {
            eprintln!("chaos: {pending} deliveries still pending; checking anyway");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Debug, Default)]
struct Check {
    finished: usize,
    events: usize,
    received: usize,
    repeats: usize,
    failures: Vec<String>,
}

impl Check {
    fn summary(&self) -> String {
        format!(
            "{} intakes finished, {} events written, {} deliveries received ({} repeats of a webhook-id)",
            self.finished, self.events, self.received, self.repeats
        )
    }
}

fn some(v: &[String]) -> String {
    v[..v.len().min(3)].join("; ")
}

/// Events against intakes, and deliveries against events.
async fn check(
    stage: &Stage,
    burst: &BurstResult,
    endpoint: &WebhookReceiver,
) -> anyhow::Result<Check> {
    let a = stage.c.account;
    let intakes = stage
        .db
        .conn
        .query_all_raw(seed::stmt(
            "SELECT id, status::text AS status FROM lead_intakes WHERE account_id = $1",
            vec![a.into()],
        ))
        .await
        .context("Failed to read the intakes")?;
    let mut status: HashMap<Uuid, String> = HashMap::new();
    for r in intakes {
        status.insert(
            r.try_get("", "id").context("id")?,
            r.try_get("", "status").context("status")?,
        );
    }
    let events = stage
        .db
        .conn
        .query_all_raw(seed::stmt(
            "SELECT id, type, intake_id, body FROM events WHERE account_id = $1",
            vec![a.into()],
        ))
        .await
        .context("Failed to read the events")?;
    let mut c = Check::default();
    let mut per_intake: HashMap<(Uuid, String), usize> = HashMap::new();
    let mut bodies: HashMap<String, String> = HashMap::new();
    for r in events {
        let id: Uuid = r.try_get("", "id").context("id")?;
        let kind: String = r.try_get("", "type").context("type")?;
        let intake: Option<Uuid> = r.try_get("", "intake_id").context("intake")?;
        bodies.insert(
            shared::events::webhook_id(id),
            r.try_get("", "body").context("body")?,
        );
        c.events += 1;
        match intake {
            Some(i) => *per_intake.entry((i, kind)).or_default() += 1,
            None => c
                .failures
                .push(format!("event {id} ({kind}) has no intake")),
        }
    }
    let finished = ["created", "updated", "merged", "duplicate"];
    let (mut missing, mut doubled, mut invented) = (Vec::new(), Vec::new(), Vec::new());
    for id in burst.intake_ids.iter().flatten() {
        let Some(s) = status.get(id).filter(|s| finished.contains(&s.as_str())) else {
            continue;
        };
        c.finished += 1;
        let mut want = vec!["lead.processed"];
        if s == "created" {
            want.push("contact.created");
        }
        for kind in want {
            match per_intake
                .get(&(*id, kind.to_owned()))
                .copied()
                .unwrap_or(0)
            {
                1 => {}
                0 => missing.push(format!("{id} {kind}")),
                n => doubled.push(format!("{id} {kind} ×{n}")),
            }
        }
    }
    for (intake, kind) in per_intake.keys() {
        if !status
            .get(intake)
            .is_some_and(|s| finished.contains(&s.as_str()))
        {
            invented.push(format!("{intake} {kind}"));
        }
    }
    for (what, list) in [
        ("events missing (lost)", &missing),
        ("events written twice", &doubled),
        (
            "events for intakes that did not finish (invented)",
            &invented,
        ),
    ] {
        if !list.is_empty() {
            c.failures
                .push(format!("{} {what}, e.g. {}", list.len(), some(list)));
        }
    }

    let got = endpoint.got();
    c.received = got.len();
    let mut seen: HashSet<&str> = HashSet::new();
    let (mut strangers, mut altered) = (Vec::new(), Vec::new());
    for d in &got {
        if !seen.insert(d.webhook_id.as_str()) {
            c.repeats += 1;
        }
        match bodies.get(&d.webhook_id) {
            None => strangers.push(d.webhook_id.clone()),
            Some(b) if b.as_bytes() != &d.body[..] => altered.push(d.webhook_id.clone()),
            Some(_) => {}
        }
    }
    let undelivered: Vec<String> = bodies
        .keys()
        .filter(|id| !seen.contains(id.as_str()))
        .cloned()
        .collect();
    for (what, list) in [
        ("events never delivered (lost)", &undelivered),
        ("deliveries of no event (invented)", &strangers),
        ("deliveries whose bytes differ from the event's", &altered),
    ] {
        if !list.is_empty() {
            c.failures
                .push(format!("{} {what}, e.g. {}", list.len(), some(list)));
        }
    }
    Ok(c)
}
