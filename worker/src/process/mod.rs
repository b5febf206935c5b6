//! Turning intakes into contacts (§4): [`Processor::try_process`] for one lead,
//! [`Processor::try_process_batch`] for several sharing one commit.
//!
//! Every lead's writes, its intake record included, are atomic and commit together; a
//! batch only groups several leads' writes under one commit (one WAL flush), which is where
//! the throughput of a worker is on a disk that takes milliseconds to flush.
//!
//! Concurrency, across any number of processes, rests on transaction-scoped advisory locks:
//! - up front, in one global order (by hash): the intake id and every number of every lead of
//!   the transaction. Two leads sharing a number serialize here; an intake is processed by
//!   one transaction at a time, which then sees whether it already finished;
//! - then the matched contact: waited for by a single lead, only *tried* inside a batch (a
//!   busy contact sends its lead to a transaction of its own after the batch commits), so a
//!   batch never waits while holding row locks;
//! - last, the owners' PowerDialer lists, in user-id order.
//!
//! Each phase only waits for locks that are taken in a fixed order or by transactions that
//! wait for nothing, so transactions of this module cannot deadlock one another.

mod fields;
mod lead;
mod sql;

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, RuntimeErr,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use shared::entities::lead_intake;
use shared::intake::{IntakeMessage, IntakeStatus};
use std::collections::{HashMap, HashSet};
use tracing::{debug, warn};
use uuid::Uuid;

pub use fields::{join_name, split_name};

/// One delivery of an intake message.
#[derive(Debug, Clone)]
pub struct Intake {
    pub message: IntakeMessage,
    /// Failed attempts before this one (the `x-attempts` header; absent = 0).
    pub previous_attempts: u32,
}

impl Intake {
    /// This attempt's number, counting from 1.
    pub fn attempt(&self) -> u32 {
        self.previous_attempts.saturating_add(1)
    }
}

/// Something the worker did for a lead, as recorded on the intake (`actions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    ContactCreated {
        contact_id: i64,
    },
    /// force_update overwrote these fields.
    ContactUpdated {
        contact_id: i64,
        fields: Vec<String>,
    },
    /// Blank fields filled without force_update.
    ContactMerged {
        contact_id: i64,
        fields: Vec<String>,
    },
    OwnerAssigned {
        user_id: i64,
    },
    RingGroupDistributed {
        ring_group_id: i64,
        user_id: i64,
    },
    PowerdialerAdded {
        user_id: i64,
        position: shared::lead::PowerdialerPosition,
    },
    SequenceEnrolled {
        sequence_id: i64,
    },
    SequenceDisenrolled {
        sequence_id: i64,
    },
    TagAdded {
        tag_id: i64,
    },
    LineSet {
        line_id: i64,
    },
    DispositionSet {
        disposition_status_id: i64,
    },
    NoteAdded,
    PhoneNumberAdded {
        phone_number: String,
    },
}

/// Something of the lead the worker could not honour; the lead is still saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The payload field concerned.
    pub field: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Warning {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
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
    /// Worth retrying later: the database is unreachable, overloaded, timed out, a lock or
    /// serialization conflict, or a privilege an operator can restore.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: the message or its data is wrong.
    #[error("{0}")]
    Permanent(String),
}

/// SQLSTATEs that a later attempt can get past.
const TRANSIENT_STATES: [&str; 8] = [
    "40001", // serialization_failure
    "40P01", // deadlock_detected
    "55P03", // lock_not_available
    "57014", // query_canceled (statement_timeout)
    "42501", // insufficient_privilege: an operator fixes grants
    "23505", // unique_violation: a concurrent writer outside the lock protocol; re-read
    "23503", // foreign_key_violation: a linked row vanished meanwhile; re-check links
    "25P02", // in_failed_sql_transaction
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

/// What a transaction knows while it processes leads one after another.
pub(crate) struct BatchCtx {
    mode: LockMode,
    /// (account, E.164) → contact, for every number of the transaction's leads, kept up to
    /// date as leads add numbers.
    owners: HashMap<(i64, String), i64>,
    /// Contacts a PowerDialer entry is planned for in this transaction.
    pd_planned: HashSet<i64>,
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
}

impl Processor {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Processes one intake in a transaction of its own.
    #[tracing::instrument(skip_all, fields(intake_id = %intake.message.intake_id))]
    pub async fn try_process(&self, intake: &Intake) -> Result<Outcome, ProcessError> {
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

    /// Processes intakes under one commit; results come back in order. A lead whose contact
    /// another transaction holds is processed on its own afterwards; when the batch fails
    /// for a reason that may be one lead's, every lead is processed on its own, so one bad
    /// lead never takes others down with it.
    pub async fn try_process_batch(
        &self,
        intakes: &[Intake],
    ) -> Vec<Result<Outcome, ProcessError>> {
        if intakes.len() == 1 {
            return vec![self.try_process(&intakes[0]).await];
        }
        let steps = match self.run(intakes, LockMode::Try).await {
            Ok(steps) => steps,
            Err(e) => {
                let err = classify(&e);
                warn!(error = %err, leads = intakes.len(), "Batch failed");
                if let ProcessError::Transient(_) = err {
                    return intakes.iter().map(|_| Err(err.clone())).collect();
                }
                let mut out = Vec::with_capacity(intakes.len());
                for intake in intakes {
                    out.push(self.try_process(intake).await);
                }
                return out;
            }
        };
        let mut out = Vec::with_capacity(intakes.len());
        for (intake, step) in intakes.iter().zip(steps) {
            out.push(match step {
                Step::Done(o) => Ok(o),
                Step::Failed(e) => Err(e),
                Step::Busy | Step::Planned(_) | Step::SameAs(_) => {
                    metrics::counter!("worker_deferred_leads_total").increment(1);
                    self.try_process(intake).await
                }
            });
        }
        out
    }

    async fn run(&self, intakes: &[Intake], mode: LockMode) -> Result<Vec<Step>, DbErr> {
        let txn = self.db.begin().await?;
        let mut keys = Vec::with_capacity(intakes.len() * 2);
        for i in intakes {
            let m = &i.message;
            keys.push(sql::key::intake(m.intake_id));
            for n in m.lead.all_numbers() {
                keys.push(sql::key::number(m.account_id, n.as_str()));
            }
        }
        sql::lock_all(&txn, &keys).await?;

        let ids: Vec<Uuid> = intakes.iter().map(|i| i.message.intake_id).collect();
        let records = sql::intake_rows(&txn, &ids).await?;
        let mut accounts: Vec<i64> = intakes.iter().map(|i| i.message.account_id).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut tokens: Vec<i64> = intakes.iter().map(|i| i.message.token_id).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let (known_accounts, known_tokens) =
            sql::existing_accounts_and_tokens(&txn, &accounts, &tokens).await?;
        let pairs: Vec<(i64, String)> = intakes
            .iter()
            .filter(|i| known_accounts.contains(&i.message.account_id))
            .flat_map(|i| {
                let a = i.message.account_id;
                i.message
                    .lead
                    .all_numbers()
                    .into_iter()
                    .map(move |n| (a, n.as_str().to_owned()))
            })
            .collect();
        let mut ctx = BatchCtx {
            mode,
            owners: sql::number_owners(&txn, &pairs).await?,
            pd_planned: HashSet::new(),
        };

        let mut steps: Vec<Step> = Vec::with_capacity(intakes.len());
        let mut first_index: HashMap<Uuid, usize> = HashMap::new();
        for (idx, intake) in intakes.iter().enumerate() {
            let m = &intake.message;
            if let Some(row) = records.get(&m.intake_id)
                && row.status.is_outcome()
            {
                steps.push(Step::Done(outcome_from_record(m.intake_id, row)));
                continue;
            }
            if let Some(&first) = first_index.get(&m.intake_id) {
                steps.push(Step::SameAs(first));
                continue;
            }
            if !known_accounts.contains(&m.account_id) {
                steps.push(Step::Failed(ProcessError::Permanent(format!(
                    "unknown account {}",
                    m.account_id
                ))));
                continue;
            }
            match lead::process(&txn, &mut ctx, intake).await? {
                None => steps.push(Step::Busy),
                Some(planned) => {
                    first_index.insert(m.intake_id, idx);
                    steps.push(Step::Planned(Box::new(planned)));
                }
            }
        }

        let mut planned: Vec<(usize, &mut Planned)> = steps
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Step::Planned(p) => Some((i, p.as_mut())),
                _ => None,
            })
            .collect();
        lead::place_on_powerdialers(&txn, intakes, &mut planned).await?;
        write_records(&txn, intakes, &planned, &known_tokens).await?;
        txn.commit().await?;

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
        debug!(leads = intakes.len(), "Committed");
        Ok(done)
    }

    /// Records an intake as dead-lettered (after its message reached the dead-letter queue).
    /// A finished intake is never downgraded; an unknown account leaves no record.
    pub async fn record_dead_letter(&self, dead: &DeadRecord) -> Result<(), DbErr> {
        use sea_orm::ConnectionTrait;
        self.db
            .execute_raw(sql::stmt(
                "INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, \
                   attempts, last_error, received_at, processed_at, updated_at) \
                 SELECT $1, $2, $3, (SELECT id FROM api_tokens WHERE id = $4), 'dead_lettered', \
                   $5, $6, $7, $8, now(), now() \
                 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $2) \
                 ON CONFLICT (id) DO UPDATE SET status = 'dead_lettered', \
                   attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, \
                   processed_at = now(), updated_at = now() \
                 WHERE lead_intakes.status NOT IN ('created', 'updated', 'merged', 'duplicate')",
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
        Ok(())
    }
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

fn outcome_from_record(intake_id: Uuid, row: &sql::IntakeRow) -> Outcome {
    Outcome {
        intake_id,
        status: row.status,
        contact_id: row.contact_id,
        actions: serde_json::from_value(row.actions.clone()).unwrap_or_default(),
        warnings: serde_json::from_value(row.warnings.clone()).unwrap_or_default(),
        already_done: true,
    }
}

/// Writes the final intake records of the planned leads, in one statement.
async fn write_records(
    txn: &DatabaseTransaction,
    intakes: &[Intake],
    planned: &[(usize, &mut Planned)],
    known_tokens: &HashSet<i64>,
) -> Result<(), DbErr> {
    if planned.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let mut rows = Vec::with_capacity(planned.len());
    for (idx, p) in planned {
        let i = &intakes[*idx];
        let m = &i.message;
        rows.push(lead_intake::ActiveModel {
            id: Set(m.intake_id),
            account_id: Set(m.account_id),
            user_id: Set(Some(m.user_id)),
            token_id: Set(known_tokens.contains(&m.token_id).then_some(m.token_id)),
            status: Set(p.status.as_str().to_owned()),
            payload: Set(m.payload.clone()),
            contact_id: Set(Some(p.contact_id)),
            actions: Set(serde_json::to_value(&p.actions).map_err(json_err)?),
            warnings: Set(serde_json::to_value(&p.warnings).map_err(json_err)?),
            attempts: Set(i32::try_from(i.attempt()).unwrap_or(i32::MAX)),
            last_error: Set(None),
            received_at: Set(m.received_at),
            processed_at: Set(Some(now)),
            replay_count: Set(0),
            replayed_at: Set(None),
            replayed_by: Set(None),
            updated_at: Set(now),
        });
    }
    use lead_intake::Column as C;
    lead_intake::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns([
                    C::Status,
                    C::Payload,
                    C::ContactId,
                    C::Actions,
                    C::Warnings,
                    C::Attempts,
                    C::LastError,
                    C::ProcessedAt,
                    C::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}
