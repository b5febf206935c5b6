//! The reconciliation of a burst: every intake id a client got a 202 for, checked against
//! the database and the dead-letter queue once the workers are done. A lead is *lost* when
//! it has no final intake record, when its record is final but its contact or its note is
//! missing, or when it is dead-lettered without being in the dead-letter queue with a
//! reason. *Duplicated* counts contacts sharing a number; *duplicated actions* counts notes
//! written twice (each lead's note is unique) and contacts with more than one enrollment or
//! PowerDialer entry. The dead-letter queue is read as an operator reads it:
//! `leadctl --json dlq list`.

use super::client::{BurstResult, Lead};
use crate::env::BenchDb;
use crate::procs;
use crate::seed::stmt;
use anyhow::{Context, bail};
use sea_orm::ConnectionTrait;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Statuses a lead ends in.
const FINAL: &str = "('created', 'updated', 'merged', 'duplicate', 'dead_lettered')";

/// What the reconciliation found.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub accepted: usize,
    pub contacts: i64,
    pub lost: usize,
    pub duplicated: i64,
    pub duplicated_actions: i64,
    pub dead_lettered: usize,
    /// What each non-zero loss or duplicate is, for the report.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.duplicated_actions == 0
    }
}

fn id_list(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Final intake records among `ids`.
pub async fn finished(db: &BenchDb, ids: &[Uuid]) -> anyhow::Result<i64> {
    let row = db
        .conn
        .query_one_raw(stmt(
            &format!(
                "SELECT count(*) AS n FROM lead_intakes \
                 WHERE id = ANY(string_to_array($1, ',')::uuid[]) AND status IN {FINAL}"
            ),
            vec![id_list(ids).into()],
        ))
        .await
        .context("Failed to count final intakes")?
        .context("Failed to count final intakes: no row")?;
    row.try_get("", "n").context("Failed to read a count")
}

/// Waits until every one of `ids` has a final record, nothing moved for `stall`, or `limit`
/// passed; `tick` runs every poll (the caller samples RSS and checks its processes there).
pub async fn wait_finished(
    db: &BenchDb,
    ids: &[Uuid],
    stall: Duration,
    limit: Duration,
    mut tick: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<i64> {
    let started = Instant::now();
    let (mut best, mut moved, mut printed) = (-1, Instant::now(), Instant::now());
    loop {
        tick()?;
        let done = finished(db, ids).await?;
        if done >= ids.len() as i64 {
            return Ok(done);
        }
        if done > best {
            best = done;
            moved = Instant::now();
        }
        if moved.elapsed() > stall || started.elapsed() > limit {
            eprintln!(
                "chaos: {done} of {} accepted leads final after {:.0} s; reconciling anyway",
                ids.len(),
                started.elapsed().as_secs_f64()
            );
            return Ok(done);
        }
        if printed.elapsed() > Duration::from_secs(5) {
            printed = Instant::now();
            eprintln!("chaos: {done}/{} leads final", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `leadctl --json ARGS` with `env`; its JSON answer, or its error text.
pub async fn leadctl(
    env: &[(String, String)],
    log_dir: &Path,
    args: &[&str],
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let out = tokio::process::Command::new(procs::bin_dir()?.join("leadctl"))
        .arg("--json")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(log_dir)
        .kill_on_drop(true)
        .output()
        .await
        .context("Failed to run leadctl")?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    serde_json::from_slice(&out.stdout)
        .map(Ok)
        .context("Failed to read leadctl's JSON")
}

/// Intake ids in the dead-letter queue, with their reasons.
pub async fn dead_letters(
    env: &[(String, String)],
    log_dir: &Path,
) -> anyhow::Result<HashMap<Uuid, String>> {
    let v = match leadctl(env, log_dir, &["dlq", "list", "--limit", "1000000"]).await? {
        Ok(v) => v,
        Err(e) => bail!("leadctl dlq list failed: {e}"),
    };
    let mut out = HashMap::new();
    for item in v["items"].as_array().into_iter().flatten() {
        if let Some(id) = item["intake_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            out.insert(id, item["reason"].as_str().unwrap_or_default().to_owned());
        }
    }
    Ok(out)
}

/// The intakes that wrote the note `body`, with their status and attempts.
async fn note_intakes(db: &BenchDb, account: i64, body: &str) -> anyhow::Result<String> {
    let rows = db
        .conn
        .query_all_raw(stmt(
            "SELECT n.intake_id::text AS id, i.status, i.attempts, i.received_at::text AS received \
             FROM contact_notes n LEFT JOIN lead_intakes i ON i.id = n.intake_id \
             WHERE n.account_id = $1 AND n.body = $2 ORDER BY n.id",
            vec![account.into(), body.to_owned().into()],
        ))
        .await
        .context("Failed to read a note's intakes")?;
    let mut out = Vec::new();
    for r in rows {
        let id: Option<String> = r.try_get("", "id").context("Failed to read an id")?;
        let status: Option<String> = r.try_get("", "status").context("Failed to read a status")?;
        let attempts: Option<i32> = r
            .try_get("", "attempts")
            .context("Failed to read attempts")?;
        let received: Option<String> = r
            .try_get("", "received")
            .context("Failed to read received_at")?;
        out.push(format!(
            "{} ({}, {} attempt(s), received {})",
            id.unwrap_or_default(),
            status.unwrap_or_default(),
            attempts.unwrap_or_default(),
            received.unwrap_or_default()
        ));
    }
    Ok(out.join(" and "))
}

/// Reconciles `burst` (of `leads`, on `account`) against the database and `dlq`.
pub async fn reconcile(
    db: &BenchDb,
    account: i64,
    leads: &[Lead],
    burst: &BurstResult,
    dlq: &HashMap<Uuid, String>,
) -> anyhow::Result<Tally> {
    let ids: Vec<Uuid> = burst.intake_ids.iter().flatten().copied().collect();
    let found = Found::read(db, account, &ids).await?;
    let mut t = Tally {
        accepted: burst.accepted(),
        contacts: found.phones.values().sum(),
        ..Tally::default()
    };
    // Every problem in the order found; the report shows the first ten.
    let mut problems: Vec<String> = Vec::new();
    for (lead, id) in leads.iter().zip(&burst.intake_ids) {
        let Some(id) = id else { continue };
        let record = found.records.get(id);
        if matches!(record, Some((status, _)) if status == "dead_lettered") {
            t.dead_lettered += 1;
        }
        if let Some(loss) = found.loss(lead, id, record, dlq) {
            t.lost += 1;
            problems.push(loss);
        }
    }
    for (phone, n) in &found.phones {
        if *n > 1 {
            t.duplicated += n - 1;
            problems.push(format!("{n} contacts with number {phone}"));
        }
    }
    for (lead, id) in leads.iter().zip(&burst.intake_ids) {
        let n = found.notes.get(&lead.note).copied().unwrap_or(0);
        if n > 1 {
            t.duplicated_actions += n - 1;
            let by = note_intakes(db, account, &lead.note).await?;
            problems.push(format!(
                "note of {} written {n} times, by intakes {by} (the client's 202 named {})",
                lead.key,
                id.map_or_else(|| "none".to_owned(), |id| id.to_string())
            ));
        }
    }
    for (what, contact, n) in repeated_links(db, account).await? {
        t.duplicated_actions += n - 1;
        problems.push(format!("contact {contact} has {n} {what}"));
    }
    problems.truncate(10);
    t.problems = problems;
    Ok(t)
}

/// What the database holds for a burst.
struct Found {
    /// Intake id → (status, whether a reason is recorded).
    records: HashMap<Uuid, (String, bool)>,
    /// Contacts of the account per number.
    phones: HashMap<String, i64>,
    /// Notes of the account per body.
    notes: HashMap<String, i64>,
}

impl Found {
    async fn read(db: &BenchDb, account: i64, ids: &[Uuid]) -> anyhow::Result<Self> {
        let mut records: HashMap<Uuid, (String, bool)> = HashMap::new();
        for r in db
            .conn
            .query_all_raw(stmt(
                "SELECT id, status, last_error IS NOT NULL AS has_reason FROM lead_intakes \
                 WHERE id = ANY(string_to_array($1, ',')::uuid[])",
                vec![id_list(ids).into()],
            ))
            .await
            .context("Failed to read the intake records")?
        {
            records.insert(
                r.try_get("", "id").context("Failed to read an id")?,
                (
                    r.try_get("", "status").context("Failed to read a status")?,
                    r.try_get("", "has_reason")
                        .context("Failed to read a reason")?,
                ),
            );
        }
        let phones = counts(
            db,
            "SELECT phone_number AS key, count(*) AS n FROM contacts WHERE account_id = $1 GROUP BY 1",
            account,
            ("contacts by number", "a number"),
        )
        .await?;
        let notes = counts(
            db,
            "SELECT body AS key, count(*) AS n FROM contact_notes WHERE account_id = $1 GROUP BY 1",
            account,
            ("notes", "a note"),
        )
        .await?;
        Ok(Self {
            records,
            phones,
            notes,
        })
    }

    /// Why the lead with intake `id` and this intake `record` is lost, if it is.
    fn loss(
        &self,
        lead: &Lead,
        id: &Uuid,
        record: Option<&(String, bool)>,
        dlq: &HashMap<Uuid, String>,
    ) -> Option<String> {
        match record {
            None => {
                let where_ = if dlq.contains_key(id) {
                    "in the dead-letter queue without an intake record"
                } else {
                    "no intake record, not in the dead-letter queue"
                };
                Some(format!("lost {id} ({}): {where_}", lead.key))
            }
            Some((status, has_reason)) if status == "dead_lettered" => {
                (!dlq.contains_key(id) || !has_reason).then(|| {
                    format!(
                        "lost {id} ({}): dead_lettered record, in the queue: {}, reason recorded: {has_reason}",
                        lead.key,
                        dlq.contains_key(id)
                    )
                })
            }
            Some((status, _)) if !FINAL.contains(&format!("'{status}'")) => {
                Some(format!("lost {id} ({}): still {status}", lead.key))
            }
            Some(_) => {
                if self.phones.get(&lead.e164).copied().unwrap_or(0) == 0 {
                    Some(format!(
                        "lost {id} ({}): no contact for {}",
                        lead.key, lead.e164
                    ))
                } else if self.notes.get(&lead.note).copied().unwrap_or(0) == 0 {
                    Some(format!("lost {id} ({}): its note is missing", lead.key))
                } else {
                    None
                }
            }
        }
    }
}

/// `key → n` from `sql` (which selects `key` and `n` of account `$1`); `(what, item)` name
/// the counted rows and one key in errors.
async fn counts(
    db: &BenchDb,
    sql: &str,
    account: i64,
    (what, item): (&str, &str),
) -> anyhow::Result<HashMap<String, i64>> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for r in db
        .conn
        .query_all_raw(stmt(sql, vec![account.into()]))
        .await
        .with_context(|| format!("Failed to count {what}"))?
    {
        let n: i64 = r.try_get("", "n").context("Failed to read a count")?;
        out.insert(
            r.try_get("", "key")
                .with_context(|| format!("Failed to read {item}"))?,
            n,
        );
    }
    Ok(out)
}

/// Contacts with more than one enrollment or PowerDialer entry: (what, contact, count).
async fn repeated_links(
    db: &BenchDb,
    account: i64,
) -> anyhow::Result<Vec<(&'static str, i64, i64)>> {
    let mut out = Vec::new();
    for (table, what) in [
        ("sequence_enrollments", "enrollments"),
        ("powerdialer_items", "PowerDialer entries"),
    ] {
        for r in db
            .conn
            .query_all_raw(stmt(
                &format!(
                    "SELECT contact_id, count(*) AS n FROM {table} WHERE account_id = $1 \
                     GROUP BY 1 HAVING count(*) > 1"
                ),
                vec![account.into()],
            ))
            .await
            .with_context(|| format!("Failed to count {what}"))?
        {
            let n: i64 = r.try_get("", "n").context("Failed to read a count")?;
            let contact: i64 = r
                .try_get("", "contact_id")
                .context("Failed to read an id")?;
            out.push((what, contact, n));
        }
    }
    Ok(out)
}
