//! Scenario `message-kill`: message steps (§10) under kill -9. A burst of leads, each with
//! SMS consent, a time zone where it is now about noon and a number of its own, is enrolled
//! in a sequence whose first step has no delay. The provider (in this process) answers
//! every request after 200–500 ms, so a worker's send loop always holds claimed steps whose
//! requests are under way or not yet made; three times during the burst, at a moment the
//! provider holds requests in flight, every worker is killed with kill -9 and started again.
//!
//! At-least-once towards the provider, exactly once in effect: each enrolled lead's first
//! step ends `sent` exactly once in the database; the provider saw exactly one idempotency
//! key per step, the keys of the sent steps and no other (so none was lost), and no number
//! got two keys (so no lead was texted twice). Requests may outnumber leads: a step whose
//! worker died mid-send is sent again with the same key, and the provider delivers it once.

use super::client::{self, BurstResult, Pace};
use super::{Row, Sizes, Stage, limits, tick};
use crate::Ctx;
use crate::seed;
use crate::speed::provider_env;
use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::sms::SmsProvider;

/// Fresh-number namespace of the burst.
const NAMESPACE: u64 = 3;
/// Shares of the burst accepted at which every worker is killed.
const KILLS: [f64; 3] = [0.25, 0.5, 0.75];

pub async fn kill_while_sending(ctx: &Ctx, sizes: &Sizes) -> anyhow::Result<Row> {
    let provider = SmsProvider::start().await;
    provider.answer_after(Duration::from_millis(200), Duration::from_millis(500));
    let sms = provider_env(&provider);
    let sms: Vec<(&str, &str)> = sms.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut stage = Stage::new(ctx, sizes, "msg", 2, &[], &sms, true).await?;
    seed::texting_sequence(&stage.db.conn, &stage.c).await?;
    let leads = Arc::new(client::draw_texted(
        sizes.burst,
        &stage.c,
        "msg",
        NAMESPACE,
    )?);
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
        let in_flight = super::kill_all_while(&mut stage, || provider.in_flight(), "sends").await?;
        notes.push(format!(
            "kill -9 of every worker at {} accepted, {in_flight} sends in flight",
            burst.accepted()
        ));
    }
    let result = burst.finish().await?;
    let ids: Vec<uuid::Uuid> = result.intake_ids.iter().flatten().copied().collect();
    let t = Instant::now();
    wait_sent(&mut stage, ids.len(), finish_limit).await?;
    notes.push(format!(
        "every step sent {:.1} s after the last 202",
        t.elapsed().as_secs_f64()
    ));
    let check = check(&stage, &result, &provider).await?;
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

/// First steps of the account's enrollments that are `sent`.
const SENT_FIRST_STEPS: &str = "SELECT count(*) FROM messages m \
     JOIN sequence_steps st ON st.id = m.step_id \
     WHERE m.account_id = $1 AND st.position = 1 AND m.status = 'sent'";

/// Waits until `n` first steps are sent, nothing moved for 30 s, or `limit` passed (the
/// checks then say what is missing).
async fn wait_sent(stage: &mut Stage, n: usize, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut best, mut moved, mut printed) = (-1, Instant::now(), Instant::now());
    loop {
        tick(&mut stage.receiver, &mut stage.workers)?;
        let sent = seed::scalar_i64(
            &stage.db.conn,
            SENT_FIRST_STEPS,
            vec![stage.c.account.into()],
        )
        .await?;
        if sent >= n as i64 {
            return Ok(());
        }
        if sent > best {
            (best, moved) = (sent, Instant::now());
        }
        if moved.elapsed() > Duration::from_secs(30) || started.elapsed() > limit {
            eprintln!("chaos: {sent} of {n} first steps sent; checking anyway");
            return Ok(());
        }
        if printed.elapsed() > Duration::from_secs(5) {
            printed = Instant::now();
            eprintln!("chaos: {sent}/{n} first steps sent");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the database and the provider say about the burst's first steps.
#[derive(Debug, Default)]
struct Check {
    enrolled: usize,
    sent_once: usize,
    requests: usize,
    keys: usize,
    failures: Vec<String>,
}

impl Check {
    fn summary(&self) -> String {
        format!(
            "{} leads enrolled, {} first steps sent once; provider: {} requests ({} resends), {} distinct keys",
            self.enrolled,
            self.sent_once,
            self.requests,
            self.requests.saturating_sub(self.keys),
            self.keys
        )
    }
}

/// Every accepted lead's first step is `sent`, once; the provider's keys are exactly the
/// sent steps' keys; no number got two keys.
async fn check(
    stage: &Stage,
    burst: &BurstResult,
    provider: &SmsProvider,
) -> anyhow::Result<Check> {
    let rows = stage
        .db
        .conn
        .query_all_raw(seed::stmt(
            "SELECT m.id, m.intake_id, m.status FROM messages m \
             JOIN sequence_steps st ON st.id = m.step_id \
             WHERE m.account_id = $1 AND st.position = 1",
            vec![stage.c.account.into()],
        ))
        .await
        .context("Failed to read the first steps")?;
    // Per intake: (step id, status) of its first steps.
    let mut steps: HashMap<uuid::Uuid, Vec<(i64, String)>> = HashMap::new();
    for r in rows {
        let id: i64 = r.try_get("", "id").context("Failed to read a step id")?;
        let intake: Option<uuid::Uuid> = r
            .try_get("", "intake_id")
            .context("Failed to read an intake id")?;
        let status: String = r.try_get("", "status").context("Failed to read a status")?;
        let Some(intake) = intake else {
            bail!("first step {id} has no intake");
        };
        steps.entry(intake).or_default().push((id, status));
    }
    let mut c = Check::default();
    let mut sent_keys = HashSet::new();
    let (mut unsent, mut twice) = (Vec::new(), Vec::new());
    for id in burst.intake_ids.iter().flatten() {
        c.enrolled += 1;
        let mine = steps.get(id).map(Vec::as_slice).unwrap_or_default();
        let sent: Vec<i64> = (mine.iter())
            .filter(|(_, s)| s == "sent")
            .map(|(m, _)| *m)
            .collect();
        match (mine.len(), sent.as_slice()) {
            (1, [m]) => {
                c.sent_once += 1;
                sent_keys.insert(format!("message-{m}"));
            }
            (1, _) | (0, _) => unsent.push(format!("{id}: {mine:?}")),
            _ => twice.push(format!("{id}: {mine:?}")),
        }
    }
    if !unsent.is_empty() {
        c.failures.push(format!(
            "{} leads' first step not sent (lost), e.g. {}",
            unsent.len(),
            unsent[..unsent.len().min(3)].join("; ")
        ));
    }
    if !twice.is_empty() {
        c.failures.push(format!(
            "{} leads with more than one first step, e.g. {}",
            twice.len(),
            twice[..twice.len().min(3)].join("; ")
        ));
    }

    let received = provider.received();
    c.requests = received.len();
    let mut keys_by_number: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut keys: HashSet<&str> = HashSet::new();
    for r in &received {
        let Some(k) = r.idempotency_key.as_deref() else {
            c.failures
                .push(format!("a request to {} without an idempotency key", r.to));
            continue;
        };
        keys.insert(k);
        keys_by_number.entry(r.to.as_str()).or_default().insert(k);
    }
    c.keys = keys.len();
    let never: Vec<&String> = (sent_keys.iter())
        .filter(|k| !keys.contains(k.as_str()))
        .collect();
    if !never.is_empty() {
        c.failures.push(format!(
            "{} steps recorded sent that the provider never got (lost), e.g. {:?}",
            never.len(),
            &never[..never.len().min(3)]
        ));
    }
    let unrecorded: Vec<&&str> = keys.iter().filter(|k| !sent_keys.contains(**k)).collect();
    if !unrecorded.is_empty() {
        c.failures.push(format!(
            "{} keys delivered whose step is not recorded sent once, e.g. {:?}",
            unrecorded.len(),
            &unrecorded[..unrecorded.len().min(3)]
        ));
    }
    let doubled: Vec<&&str> = (keys_by_number.iter())
        .filter(|(_, ks)| ks.len() > 1)
        .map(|(n, _)| n)
        .collect();
    if !doubled.is_empty() {
        c.failures.push(format!(
            "{} numbers texted under more than one key (delivered twice), e.g. {:?}",
            doubled.len(),
            &doubled[..doubled.len().min(3)]
        ));
    }
    if c.keys != c.enrolled {
        c.failures.push(format!(
            "{} distinct keys for {} enrolled leads",
            c.keys, c.enrolled
        ));
    }
    Ok(c)
}
