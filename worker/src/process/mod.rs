//! Turning intakes into contacts (§4): [`Processor::try_process`] for one lead,
//! [`Processor::try_process_batch`] for several sharing one commit.
//!
//! Every lead's writes, its intake record included, are atomic and commit together; a
//! batch only groups several leads' writes under one commit (one WAL flush), which is where
//! the throughput of a worker is on a disk that takes milliseconds to flush.
//!
//! Concurrency, across any number of processes, rests on transaction-scoped advisory locks:
//! 1. the intake id and every number of every lead of the transaction. Two leads sharing a
//!    number serialize here; an intake is processed by one transaction at a time, which then
//!    sees whether it already finished;
//! 2. the contacts the leads matched;
//! 3. just before the commit, the owners' PowerDialer lists.
//!
//! Each phase takes its locks in one pass, in one global order (by hash), and no transaction
//! goes back to an earlier phase, so these transactions cannot deadlock one another. A first
//! pass over a batch goes further: it only *tries* the locks of phases 1 and 2 and leaves the
//! leads whose locks are busy to a second transaction that waits for them, so a batch never
//! queues behind another while holding many locks.

mod lead;
pub(crate) mod outbox;
mod sql;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, RuntimeErr, TransactionTrait};
use shared::intake::{IntakeMessage, IntakeStatus};
use shared::snapshot::{self, IntakeRow, RowLock, Wanted};
use std::collections::{HashMap, HashSet};
use tracing::{debug, warn};
use uuid::Uuid;

use shared::outcome::{Action, Warning};
pub use sql::HOT_PATH;

/// One attempt at processing an intake: its message, delivered once more.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub message: IntakeMessage,
    /// Failed attempts before this one (the `x-attempts` header; absent = 0).
    pub previous_attempts: u32,
}

impl Attempt {
    /// This attempt's number, counting from 1.
    pub fn number(&self) -> u32 {
        self.previous_attempts.saturating_add(1)
    }
}

/// What became of an intake.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub intake_id: Uuid,
    /// created, updated, merged or duplicate.
    pub status: IntakeStatus,
    pub contact_id: Option<i64>,
    pub actions: Vec<Action>,
    pub warnings: Vec<Warning>,
    /// The intake had already finished: nothing was done a second time.
    pub already_done: bool,
}

/// Why a lead could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Worth retrying later: the database is unreachable, overloaded, timed out, read-only
    /// for now, a lock or serialization conflict, or a privilege an operator can restore.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: the message or its data is wrong.
    #[error("{0}")]
    Permanent(String),
}

/// SQLSTATEs that a later attempt can get past.
const TRANSIENT_STATES: [&str; 9] = [
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57014", // query_canceled (statement_timeout)
    "42501", // insufficient_privilege: an operator fixes grants
    "23505", // unique_violation: a concurrent writer outside the lock protocol; re-read
    "23503", // foreign_key_violation: a linked row vanished meanwhile; re-check links
    "25P02", // in_failed_sql_transaction
    "25006", // read_only_sql_transaction: a standby, or read-only until an operator lifts it
];

/// Sorts a database error into retry-later or give-up.
pub fn classify(e: &DbErr) -> ProcessError {
    let transient = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) | DbErr::RecordNotFound(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(se)) | DbErr::Query(RuntimeErr::SqlxError(se)) => {
            match &**se {
                sea_orm::sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                    TRANSIENT_STATES.contains(&code.as_ref())
                        // connection exception, insufficient resources, operator intervention
                        || ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c))
                }),
                sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::Tls(_)
                | sea_orm::sqlx::Error::Protocol(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
                | sea_orm::sqlx::Error::BeginFailed => true,
                _ => false,
            }
        }
        DbErr::Exec(RuntimeErr::Internal(_)) | DbErr::Query(RuntimeErr::Internal(_)) => true,
        _ => false,
    };
    let text = db_error_text(e);
    if transient {
        ProcessError::Transient(text)
    } else {
        ProcessError::Permanent(text)
    }
}

/// Whether `e` is the database's answer to a statement (an SQLSTATE), not a failure to
/// reach it.
fn database_answered(e: &DbErr) -> bool {
    matches!(
        e,
        DbErr::Exec(RuntimeErr::SqlxError(se)) | DbErr::Query(RuntimeErr::SqlxError(se))
            if matches!(&**se, sea_orm::sqlx::Error::Database(_))
    )
}

/// The database's own message when there is one ("permission denied for table contacts").
fn db_error_text(e: &DbErr) -> String {
    if let DbErr::Exec(RuntimeErr::SqlxError(se)) | DbErr::Query(RuntimeErr::SqlxError(se)) = e
        && let sea_orm::sqlx::Error::Database(db) = &**se
    {
        return match db.code() {
            Some(code) => format!("database error {code}: {}", db.message()),
            None => format!("database error: {}", db.message()),
        };
    }
    e.to_string()
}

/// How a transaction takes a contact's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockMode {
    /// One lead: wait for it.
    Wait,
    /// A batch: only take it when free, else hand the lead back.
    Try,
}

/// A lead processed inside the transaction, waiting for the PowerDialer phase and commit.
pub(crate) struct Planned {
    pub status: IntakeStatus,
    pub contact_id: i64,
    pub actions: Vec<Action>,
    pub warnings: Vec<Warning>,
    pub powerdialer: Option<lead::PowerdialerPlan>,
}

enum Step {
    Done(Outcome),
    Failed(ProcessError),
    /// Its contact is locked by another transaction: process it on its own.
    Busy,
    Planned(Box<Planned>),
    /// The same intake appears earlier in the batch, at this index.
    SameAs(usize),
}

/// Processes intakes against the database.
#[derive(Clone)]
pub struct Processor {
    /// The pool; each transaction holds one connection.
    db: DatabaseConnection,
    /// The contact policy's rule table (§9).
    rules: std::sync::Arc<shared::policy::table::RuleTable>,
}

impl Processor {
    /// A processor judging by the rule table shipped with the product.
    pub fn new(db: DatabaseConnection) -> Self {
        Self::with_rules(db, std::sync::Arc::new(shared::policy::table::shipped()))
    }

    /// A processor judging by `rules` (`POLICY__RULES_FILE`).
    pub fn with_rules(
        db: DatabaseConnection,
        rules: std::sync::Arc<shared::policy::table::RuleTable>,
    ) -> Self {
        Self { db, rules }
    }

    /// Processes one intake in a transaction of its own.
    #[tracing::instrument(skip_all, fields(intake_id = %intake.message.intake_id))]
    pub async fn try_process(&self, intake: &Attempt) -> Result<Outcome, ProcessError> {
        match self.run(std::slice::from_ref(intake), LockMode::Wait).await {
            Ok(mut steps) => match steps.pop() {
                Some(Step::Done(o)) => Ok(o),
                Some(Step::Failed(e)) => Err(e),
                _ => Err(ProcessError::Transient(
                    "the lead's contact was busy".to_owned(),
                )),
            },
            Err(e) => Err(classify(&e)),
        }
    }

    /// Processes intakes under one commit; results come back in order.
    ///
    /// The leads whose locks are free are processed first and commit together; those whose
    /// number, intake or contact another transaction holds are processed next, together,
    /// waiting for their locks. When a transaction fails for a reason that may be one lead's
    /// (any error the database answered a statement with, transient ones included), each of
    /// its leads is processed on its own, so one bad lead never takes others down.
    pub async fn try_process_batch(
        &self,
        intakes: &[Attempt],
    ) -> Vec<Result<Outcome, ProcessError>> {
        if intakes.len() == 1 {
            return vec![self.try_process(&intakes[0]).await];
        }
        let mut out: Vec<Option<Result<Outcome, ProcessError>>> = vec![None; intakes.len()];
        let all: Vec<usize> = (0..intakes.len()).collect();
        let deferred = self.settle(intakes, &all, LockMode::Try, &mut out).await;
        if !deferred.is_empty() {
            metrics::counter!(crate::ops_server::DEFERRED).increment(deferred.len() as u64);
            let still = self
                .settle(intakes, &deferred, LockMode::Wait, &mut out)
                .await;
            for i in still {
                out[i] = Some(self.try_process(&intakes[i]).await);
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ProcessError::Transient("the lead was not processed".into()))
                })
            })
            .collect()
    }

    /// Runs `which` of `intakes` in one transaction and fills their results; returns the
    /// ones to try again (busy in `Try` mode).
    async fn settle(
        &self,
        intakes: &[Attempt],
        which: &[usize],
        mode: LockMode,
        out: &mut [Option<Result<Outcome, ProcessError>>],
    ) -> Vec<usize> {
        // The first pass takes every lead in order: no copy of the batch.
        let chosen: std::borrow::Cow<'_, [Attempt]> = if which.iter().copied().eq(0..intakes.len())
        {
            std::borrow::Cow::Borrowed(intakes)
        } else {
            std::borrow::Cow::Owned(which.iter().map(|&i| intakes[i].clone()).collect())
        };
        match self.run(&chosen, mode).await {
            Ok(steps) => {
                let mut again = Vec::new();
                for (&i, step) in which.iter().zip(steps) {
                    match step {
                        Step::Done(o) => out[i] = Some(Ok(o)),
                        Step::Failed(e) => out[i] = Some(Err(e)),
                        Step::Busy | Step::Planned(_) | Step::SameAs(_) => again.push(i),
                    }
                }
                again
            }
            Err(e) => {
                let err = classify(&e);
                warn!(error = %err, leads = which.len(), "Batch failed");
                // An error the database answered a statement with may be one lead's (a
                // refused row, a lock cycle): each lead is tried on its own, so its batch-mates
                // do not share its retries. A lost connection is the whole batch's.
                let isolate = match &err {
                    ProcessError::Transient(_) => which.len() > 1 && database_answered(&e),
                    ProcessError::Permanent(_) => true,
                };
                for &i in which {
                    out[i] = Some(if isolate {
                        self.try_process(&intakes[i]).await
                    } else {
                        Err(err.clone())
                    });
                }
                Vec::new()
            }
        }
    }

    /// One transaction over `intakes`: lock → read → plan → write → commit.
    async fn run(&self, intakes: &[Attempt], mode: LockMode) -> Result<Vec<Step>, DbErr> {
        let txn = self.db.begin().await?;
        sea_orm::ConnectionTrait::execute_unprepared(&txn, crate::db::GENERIC_PLANS).await?;
        let (wanted, lead_keys) = wanted(intakes);
        let free = lock_leads(&txn, &lead_keys, mode).await?;
        // Read after the locks: this statement's snapshot includes every earlier holder's
        // commit.
        let mut batch = lead::Batch::new(snapshot::read(&txn, &wanted).await?, &self.rules);
        lock_contacts(&txn, &mut batch, intakes, &free, mode).await?;
        let steps = plan_all(&mut batch, intakes, &free)?;
        write(&txn, batch, intakes, &steps).await?;
        txn.commit().await?;
        debug!(leads = intakes.len(), "Committed");
        Ok(finish(intakes, steps))
    }

    /// Records an intake as dead-lettered (after its message reached the dead-letter queue).
    /// A finished intake is never downgraded; an unknown account leaves no record.
    /// Records intakes that failed and wait for a retry as `processing`, with their
    /// attempts and last error, in one statement.
    pub async fn record_retries(&self, records: &[RetryRecord]) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait;
        if records.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_value(records).map_err(json_err)?;
        self.db
            .execute_raw(sql::stmt(sql::PROCESSING, vec![json.into()]))
            .await?;
        Ok(())
    }

    /// Writes the `lead.dead_lettered` event in the same transaction (§11).
    pub async fn record_dead_letter(&self, dead: &DeadRecord) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait;
        let txn = self.db.begin().await?;
        // Both copies of a dead letter (the worker's and the broker's) come here: only the
        // one that moves the record into `dead_lettered` announces it.
        let before: Option<String> = txn
            .query_one_raw(sql::stmt(
                "SELECT status FROM lead_intakes WHERE id = $1 FOR UPDATE",
                vec![dead.intake_id.into()],
            ))
            .await?
            .map(|r| r.try_get("", "status"))
            .transpose()?;
        txn.execute_raw(sql::stmt(
            sql::DEAD_LETTER,
            vec![
                dead.intake_id.into(),
                dead.account_id.into(),
                dead.user_id.into(),
                dead.token_id.into(),
                dead.payload.clone().into(),
                i32::try_from(dead.attempts).unwrap_or(i32::MAX).into(),
                dead.reason.clone().into(),
                dead.received_at.unwrap_or_else(Utc::now).into(),
            ],
        ))
        .await?;
        // A finished intake is never downgraded, and then there is nothing to announce.
        if let Some(view) = shared::read::intake(&txn, dead.account_id, dead.intake_id)
            .await?
            .filter(|v| v.status == IntakeStatus::DeadLettered)
            .filter(|_| before.as_deref() != Some("dead_lettered"))
        {
            let event = outbox::intake_event(
                dead.account_id,
                shared::events::EventType::LeadDeadLettered,
                &view,
                Utc::now(),
            )?;
            shared::events::record(&txn, vec![event]).await?;
        }
        txn.commit().await
    }
}

/// What the intake record of a lead being retried keeps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetryRecord {
    pub id: Uuid,
    pub account_id: i64,
    pub user_id: i64,
    pub token_id: i64,
    pub payload: shared::intake::Payload,
    /// Attempts made so far.
    pub attempts: u32,
    pub last_error: String,
    pub received_at: chrono::DateTime<Utc>,
}

/// What the intake record of a dead-lettered message keeps.
#[derive(Debug, Clone)]
pub struct DeadRecord {
    pub intake_id: Uuid,
    pub account_id: i64,
    pub user_id: Option<i64>,
    pub token_id: Option<i64>,
    pub payload: serde_json::Value,
    pub received_at: Option<chrono::DateTime<Utc>>,
    pub attempts: u32,
    pub reason: String,
}

fn outcome_from_record(intake_id: Uuid, status: IntakeStatus, row: &IntakeRow) -> Outcome {
    Outcome {
        intake_id,
        status,
        contact_id: row.contact_id,
        actions: serde_json::from_value(row.actions.clone()).unwrap_or_default(),
        warnings: serde_json::from_value(row.warnings.clone()).unwrap_or_default(),
        already_done: true,
    }
}

/// What the transaction reads about `intakes`, and the phase-1 lock keys of each lead (its
/// intake id and every number).
fn wanted(intakes: &[Attempt]) -> (Wanted, Vec<Vec<String>>) {
    let mut wanted = Wanted {
        new_ids: intakes.len(),
        ..Wanted::default()
    };
    let mut lead_keys: Vec<Vec<String>> = Vec::with_capacity(intakes.len());
    for i in intakes {
        let m = &i.message;
        let mut own = vec![sql::key::intake(m.intake_id)];
        for n in m.lead.all_numbers() {
            own.push(sql::key::number(m.account_id, n.as_str()));
        }
        lead_keys.push(own);
        wanted.intakes.push(m.intake_id);
        wanted.accounts.push(m.account_id);
        wanted.tokens.push(m.token_id);
        wanted.add_lead(m.account_id, &m.lead);
    }
    (wanted, lead_keys)
}

/// Phase 1: the leads' keys. Which leads may go ahead: all of them when waiting; with
/// [`LockMode::Try`] only those whose keys were all free (a batch never waits for one).
async fn lock_leads(
    txn: &DatabaseTransaction,
    lead_keys: &[Vec<String>],
    mode: LockMode,
) -> Result<Vec<bool>, DbErr> {
    let keys: Vec<String> = lead_keys.iter().flatten().cloned().collect();
    Ok(match mode {
        LockMode::Wait => {
            sql::lock_all(txn, &keys).await?;
            vec![true; lead_keys.len()]
        }
        LockMode::Try => {
            let taken = sql::try_lock_all(txn, &keys).await?;
            lead_keys
                .iter()
                .map(|own| own.iter().all(|k| taken.contains(k)))
                .collect()
        }
    })
}

/// Phase 2: the contacts the free leads will change, locked (with `Try`, only the free
/// ones), then read with what the rules need to know of them.
async fn lock_contacts(
    txn: &DatabaseTransaction,
    batch: &mut lead::Batch<'_>,
    intakes: &[Attempt],
    free: &[bool],
    mode: LockMode,
) -> Result<(), DbErr> {
    let mut matched: Vec<i64> = intakes
        .iter()
        .zip(free)
        .filter(|(_, free)| **free)
        .map(|(i, _)| i)
        .filter(|i| batch.snapshot().accounts.contains(&i.message.account_id))
        .filter_map(|i| batch.matched(i.message.account_id, &i.message.lead))
        .collect();
    matched.sort_unstable();
    matched.dedup();
    let contact_keys: Vec<String> = matched.iter().map(|id| sql::key::contact(*id)).collect();
    let locked: Vec<i64> = match mode {
        LockMode::Wait => {
            sql::lock_all(txn, &contact_keys).await?;
            matched
        }
        LockMode::Try => {
            let taken = sql::try_lock_all(txn, &contact_keys).await?;
            matched
                .into_iter()
                .zip(&contact_keys)
                .filter(|(_, k)| taken.contains(*k))
                .map(|(id, _)| id)
                .collect()
        }
    };
    if locked.is_empty() {
        return Ok(());
    }
    // The row lock too: a changed contact is written back whole, so no writer that does not
    // know the advisory locks may slip in between.
    batch.add_locked(snapshot::contacts(txn, locked, RowLock::ForWrite).await?);
    Ok(())
}

/// Plans every lead in order: already finished, a repeat of an earlier one, busy, failed,
/// or planned by the §4 rules.
fn plan_all(
    batch: &mut lead::Batch<'_>,
    intakes: &[Attempt],
    free: &[bool],
) -> Result<Vec<Step>, DbErr> {
    let mut steps: Vec<Step> = Vec::with_capacity(intakes.len());
    let mut first_index: HashMap<Uuid, usize> = HashMap::new();
    for (idx, intake) in intakes.iter().enumerate() {
        let m = &intake.message;
        if !free[idx] {
            steps.push(Step::Busy);
            continue;
        }
        if let Some(row) = batch.snapshot().records.get(&m.intake_id)
            && let Some(status) = IntakeStatus::parse(&row.status).filter(IntakeStatus::is_outcome)
        {
            steps.push(Step::Done(outcome_from_record(m.intake_id, status, row)));
            continue;
        }
        if let Some(&first) = first_index.get(&m.intake_id) {
            steps.push(Step::SameAs(first));
            continue;
        }
        if !batch.snapshot().accounts.contains(&m.account_id) {
            steps.push(Step::Failed(ProcessError::Permanent(format!(
                "unknown account {}",
                m.account_id
            ))));
            continue;
        }
        match lead::plan(batch, intake, &mut rand::rng())? {
            None => steps.push(Step::Busy),
            Some(planned) => {
                first_index.insert(m.intake_id, idx);
                steps.push(Step::Planned(Box::new(planned)));
            }
        }
    }
    Ok(steps)
}

/// Writes what the planned leads decided: contacts and what hangs off them, the intake
/// records, the PowerDialer entries, then the batch's events as one outbox row.
async fn write(
    txn: &DatabaseTransaction,
    batch: lead::Batch<'_>,
    intakes: &[Attempt],
    steps: &[Step],
) -> Result<(), DbErr> {
    let known_tokens = batch.snapshot().tokens.clone();
    let existing: HashSet<Uuid> = batch.snapshot().records.keys().copied().collect();
    let subscriptions = batch.snapshot().subscriptions.clone();
    let records: Vec<(usize, &Planned)> = steps
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Step::Planned(p) => Some((i, p.as_ref())),
            _ => None,
        })
        .collect();
    let wanted = outbox::wanted(&subscriptions, intakes, &records);
    let created = batch.created_views(&wanted);
    let stored = batch.stored_rows(&wanted, &created);
    lead::flush(txn, batch).await?;
    let now = Utc::now();
    write_records(txn, intakes, &records, &known_tokens, &existing, now).await?;
    let powerdialer: Vec<lead::PowerdialerPlan> =
        records.iter().filter_map(|(_, p)| p.powerdialer).collect();
    let placed = lead::place_on_powerdialers(txn, &powerdialer).await?;
    let mut contacts = outbox::contacts(txn, &wanted, created, stored).await?;
    let events = outbox::build(
        &subscriptions,
        intakes,
        &records,
        &mut contacts,
        &placed,
        now,
    )?;
    shared::events::enqueue(txn, events).await
}

/// The committed steps as outcomes (a repeat of an intake gets its first's).
fn finish(intakes: &[Attempt], steps: Vec<Step>) -> Vec<Step> {
    let mut done: Vec<Step> = Vec::with_capacity(steps.len());
    for (idx, step) in steps.into_iter().enumerate() {
        done.push(match step {
            Step::Planned(p) => Step::Done(Outcome {
                intake_id: intakes[idx].message.intake_id,
                status: p.status,
                contact_id: Some(p.contact_id),
                actions: p.actions,
                warnings: p.warnings,
                already_done: false,
            }),
            Step::SameAs(first) => match done.get(first) {
                Some(Step::Done(o)) => Step::Done(Outcome {
                    already_done: true,
                    ..o.clone()
                }),
                _ => Step::Busy,
            },
            other => other,
        });
    }
    done
}

/// Writes the final intake records of the planned leads, in one statement
/// ([`sql::RECORDS`]): the `existing` ones (the snapshot read them) take their outcome, the
/// others are inserted.
async fn write_records(
    txn: &DatabaseTransaction,
    intakes: &[Attempt],
    planned: &[(usize, &Planned)],
    known_tokens: &HashSet<i64>,
    existing: &HashSet<Uuid>,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::ArrayType;
    use sea_orm::{ConnectionTrait, Value};
    if planned.is_empty() {
        return Ok(());
    }
    let leads: Vec<(&Attempt, &Planned)> =
        planned.iter().map(|(i, p)| (&intakes[*i], *p)).collect();
    let column = |kind: ArrayType, f: &dyn Fn(&Attempt, &Planned) -> Value| {
        Value::Array(
            kind,
            Some(Box::new(leads.iter().map(|(a, p)| f(a, p)).collect())),
        )
    };
    let mut payloads = Vec::with_capacity(leads.len());
    let mut actions = Vec::with_capacity(leads.len());
    let mut warnings = Vec::with_capacity(leads.len());
    for (a, p) in &leads {
        let text = |v: String| Value::String(Some(v));
        // The payload's text as the message carried it; the others written straight into a
        // buffer (`Value`'s `Display` goes through `fmt`, several times slower for the same
        // bytes).
        payloads.push(text(a.message.payload.get().to_owned()));
        actions.push(text(serde_json::to_string(&p.actions).map_err(json_err)?));
        warnings.push(text(serde_json::to_string(&p.warnings).map_err(json_err)?));
    }
    let values = vec![
        column(ArrayType::Uuid, &|a, _| {
            Value::Uuid(Some(a.message.intake_id))
        }),
        column(ArrayType::BigInt, &|a, _| {
            Value::BigInt(Some(a.message.account_id))
        }),
        column(ArrayType::BigInt, &|a, _| {
            Value::BigInt(Some(a.message.user_id))
        }),
        // The driver cannot bind a null inside an array: a token that is gone is 0.
        column(ArrayType::BigInt, &|a, _| {
            let t = a.message.token_id;
            Value::BigInt(Some(if known_tokens.contains(&t) { t } else { 0 }))
        }),
        column(ArrayType::String, &|_, p| {
            Value::String(Some(p.status.as_str().to_owned()))
        }),
        Value::Array(ArrayType::String, Some(Box::new(payloads))),
        column(ArrayType::BigInt, &|_, p| Value::BigInt(Some(p.contact_id))),
        Value::Array(ArrayType::String, Some(Box::new(actions))),
        Value::Array(ArrayType::String, Some(Box::new(warnings))),
        column(ArrayType::Int, &|a, _| {
            Value::Int(Some(i32::try_from(a.number()).unwrap_or(i32::MAX)))
        }),
        column(ArrayType::ChronoDateTimeUtc, &|a, _| {
            a.message.received_at.into()
        }),
        now.into(),
        column(ArrayType::Bool, &|a, _| {
            Value::Bool(Some(existing.contains(&a.message.intake_id)))
        }),
    ];
    txn.execute_raw(sql::stmt(sql::RECORDS, values)).await?;
    Ok(())
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}
