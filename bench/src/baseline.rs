//! The worker's baseline: the rows the worker writes for a backlog — new contacts with their
//! primary number and derived geo fields, updates of the contacts repeats hit, one intake
//! record per lead (payload and actions JSON of the same shape), and the notes, tags,
//! sequence enrollments and PowerDialer entries of leads with actions — written by plain
//! multi-row INSERT/UPDATE statements over ONE connection, 500 leads per transaction, into a
//! second account of the same database (its own copies of the contacts the backlog repeats,
//! so nothing conflicts with the worker's rows).
//!
//! It looks numbers up once per chunk, as any implementation must, and takes contact ids
//! from the sequence in bulk; it skips what makes the worker correct under concurrency
//! (locks, per-lead idempotency checks), which is exactly the overhead the ratio shows.

use crate::leads::Catalogs;
use crate::seed::stmt;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use serde_json::json;
use shared::intake::IntakeMessage;
use std::collections::HashMap;
use std::time::Instant;

const CHUNK: usize = 500;

/// Rows of one multi-row statement: `(…), (…)` with numbered, typed parameters.
struct Rows {
    sql: String,
    values: Vec<Value>,
}

impl Rows {
    fn new() -> Self {
        Self {
            sql: String::new(),
            values: Vec::new(),
        }
    }

    /// One row; `casts[i]` is the SQL type of column `i` (typed VALUES need no guessing).
    fn push(&mut self, row: Vec<Value>, casts: &[&str]) {
        if !self.values.is_empty() {
            self.sql.push(',');
        }
        self.sql.push('(');
        for (i, (v, cast)) in row.into_iter().zip(casts).enumerate() {
            if i > 0 {
                self.sql.push(',');
            }
            self.values.push(v);
            self.sql
                .push_str(&format!("${}::{cast}", self.values.len()));
        }
        self.sql.push(')');
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    async fn exec(self, c: &impl ConnectionTrait, head: &str, tail: &str) -> anyhow::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        c.execute_raw(stmt(
            &format!("{head} VALUES {} {tail}", self.sql),
            self.values,
        ))
        .await
        .with_context(|| format!("Failed to run the baseline's {head}"))?;
        Ok(())
    }
}

/// A contact the chunk creates.
struct NewContact {
    id: i64,
    m: usize,
    owner: Option<i64>,
    line: Option<i64>,
}

/// Fields a repeat brings to an existing contact (filled where blank).
#[derive(Default)]
struct Fill {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    lead_source: Option<String>,
    owner: Option<i64>,
    line: Option<i64>,
}

/// Writes the rows for `messages` (of account `from`) into account `to`; leads per second.
pub async fn run(
    conn: &DatabaseConnection,
    messages: &[IntakeMessage],
    from: &Catalogs,
    to: &Catalogs,
) -> anyhow::Result<f64> {
    // The same catalog in the other account, by position.
    let user = |id: i64| -> Option<i64> {
        from.users
            .iter()
            .position(|u| *u == id)
            .and_then(|i| to.users.get(i).copied())
    };
    let eligible: Vec<i64> = to
        .ring_members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, u)| *u)
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let mut positions: HashMap<i64, i64> = HashMap::new();
    let started = Instant::now();
    let mut last_report = Instant::now();
    for (chunk_no, chunk) in messages.chunks(CHUNK).enumerate() {
        let txn = conn.begin().await.context("Failed to begin")?;
        let mut numbers: Vec<&str> = chunk.iter().map(|m| m.lead.phone_number.as_str()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let mut known: HashMap<String, i64> = HashMap::new();
        for row in txn
            .query_all_raw(stmt(
                "SELECT phone_number, contact_id FROM contact_phone_numbers \
                 WHERE account_id = $1 AND phone_number = ANY(string_to_array($2, ','))",
                vec![to.account.into(), numbers.join(",").into()],
            ))
            .await
            .context("Failed to look numbers up")?
        {
            known.insert(
                row.try_get::<String>("", "phone_number")
                    .context("Failed to read a number")?,
                row.try_get::<i64>("", "contact_id")
                    .context("Failed to read a contact id")?,
            );
        }
        let fresh = numbers.iter().filter(|n| !known.contains_key(**n)).count();
        let mut ids: Vec<i64> = Vec::with_capacity(fresh);
        for row in txn
            .query_all_raw(stmt(
                "SELECT nextval('contacts_id_seq') AS id FROM generate_series(1, $1)",
                vec![(fresh as i64).into()],
            ))
            .await
            .context("Failed to reserve contact ids")?
        {
            ids.push(
                row.try_get::<i64>("", "id")
                    .context("Failed to read an id")?,
            );
        }

        let mut created: Vec<NewContact> = Vec::new();
        let mut created_by_number: HashMap<&str, usize> = HashMap::new();
        let mut fills: HashMap<i64, Fill> = HashMap::new();
        let mut intakes = Rows::new();
        let mut notes = Rows::new();
        let mut tags = Rows::new();
        let mut enrollments = Rows::new();
        let mut dialer = Rows::new();
        for (mi, m) in chunk.iter().enumerate() {
            // The worker already recorded this intake id: the baseline's records are new.
            let intake_id = uuid::Uuid::now_v7();
            let lead = &m.lead;
            let links = &lead.links;
            let phone = lead.phone_number.as_str();
            let owner = if lead.flags.distribute_to_ring_group && !eligible.is_empty() {
                Some(eligible[rng.random_range(0..eligible.len())])
            } else {
                links.user_id.and_then(user)
            };
            let line = links.line_id.map(|_| to.line);
            let mut actions = Vec::new();
            let (contact_id, status) = if let Some(&id) = known.get(phone) {
                let f = fills.entry(id).or_default();
                f.first_name = f.first_name.take().or(lead.fields.first_name.clone());
                f.last_name = f.last_name.take().or(lead.fields.last_name.clone());
                f.email = f.email.take().or(lead.fields.email.clone());
                f.lead_source = f.lead_source.take().or(lead.fields.lead_source.clone());
                f.owner = f.owner.or(owner);
                f.line = f.line.or(line);
                actions.push(
                    json!({"type": "contact_merged", "contact_id": id, "fields": ["first_name"]}),
                );
                (id, "merged")
            } else if let Some(&ci) = created_by_number.get(phone) {
                let c = &mut created[ci];
                c.owner = c.owner.or(owner);
                c.line = c.line.or(line);
                actions.push(json!({"type": "contact_merged", "contact_id": c.id, "fields": []}));
                (c.id, "merged")
            } else {
                let id = ids
                    .pop()
                    .context("Failed to plan: ran out of reserved ids")?;
                created_by_number.insert(phone, created.len());
                created.push(NewContact {
                    id,
                    m: mi,
                    owner,
                    line,
                });
                actions.push(json!({"type": "contact_created", "contact_id": id}));
                (id, "created")
            };
            if let Some(o) = owner {
                if lead.flags.distribute_to_ring_group {
                    actions.push(json!({"type": "ring_group_distributed", "ring_group_id": to.ring_group, "user_id": o}));
                } else {
                    actions.push(json!({"type": "owner_assigned", "user_id": o}));
                }
            }
            if let Some(l) = line {
                actions.push(json!({"type": "line_set", "line_id": l}));
            }
            if let Some(body) = &lead.notes {
                notes.push(
                    vec![
                        to.account.into(),
                        contact_id.into(),
                        body.clone().into(),
                        intake_id.into(),
                    ],
                    &["bigint", "bigint", "text", "uuid"],
                );
                actions.push(json!({"type": "note_added"}));
            }
            if links.tag_id.is_some() {
                tags.push(
                    vec![contact_id.into(), to.tag.into(), to.account.into()],
                    &["bigint", "bigint", "bigint"],
                );
                actions.push(json!({"type": "tag_added", "tag_id": to.tag}));
            }
            if links.sequence_id.is_some() {
                enrollments.push(
                    vec![to.account.into(), contact_id.into(), to.sequence.into()],
                    &["bigint", "bigint", "bigint"],
                );
                actions.push(json!({"type": "sequence_enrolled", "sequence_id": to.sequence}));
            }
            if lead.flags.add_to_powerdialer
                && let Some(o) = owner
            {
                let p = positions.entry(o).or_insert(0);
                *p -= 1;
                dialer.push(
                    vec![to.account.into(), o.into(), contact_id.into(), (*p).into()],
                    &["bigint", "bigint", "bigint", "bigint"],
                );
                actions.push(json!({"type": "powerdialer_added", "user_id": o, "position": "top"}));
            }
            intakes.push(
                vec![
                    intake_id.into(),
                    to.account.into(),
                    to.users[0].into(),
                    to.token_id.into(),
                    status.into(),
                    m.payload.clone().into(),
                    contact_id.into(),
                    serde_json::Value::Array(actions).into(),
                    m.received_at.into(),
                ],
                &[
                    "uuid",
                    "bigint",
                    "bigint",
                    "bigint",
                    "varchar",
                    "jsonb",
                    "bigint",
                    "jsonb",
                    "timestamptz",
                ],
            );
        }

        let mut contacts = Rows::new();
        let mut phones = Rows::new();
        for c in &created {
            let lead = &chunk[c.m].lead;
            let place = shared::geo::locate(&lead.phone_number);
            contacts.push(
                vec![
                    c.id.into(),
                    to.account.into(),
                    lead.phone_number.as_str().into(),
                    lead.fields.first_name.clone().into(),
                    lead.fields.last_name.clone().into(),
                    lead.fields.email.clone().into(),
                    lead.fields.lead_source.clone().into(),
                    place.country.into(),
                    place.state.into(),
                    place.city.into(),
                    place.timezone.map(|t| t.name().to_owned()).into(),
                    c.owner.into(),
                    c.line.into(),
                ],
                &[
                    "bigint", "bigint", "varchar", "varchar", "varchar", "varchar", "varchar",
                    "varchar", "varchar", "varchar", "varchar", "bigint", "bigint",
                ],
            );
            phones.push(
                vec![
                    to.account.into(),
                    c.id.into(),
                    lead.phone_number.as_str().into(),
                ],
                &["bigint", "bigint", "varchar"],
            );
        }
        let mut updates = Rows::new();
        for (id, f) in fills {
            updates.push(
                vec![
                    id.into(),
                    f.first_name.into(),
                    f.last_name.into(),
                    f.email.into(),
                    f.lead_source.into(),
                    f.owner.into(),
                    f.line.into(),
                ],
                &[
                    "bigint", "varchar", "varchar", "varchar", "varchar", "bigint", "bigint",
                ],
            );
        }

        contacts
            .exec(
                &txn,
                "INSERT INTO contacts (id, account_id, phone_number, first_name, last_name, email, \
                 lead_source, country, state, city, timezone, owner_id, line_id)",
                "",
            )
            .await?;
        phones
            .exec(
                &txn,
                "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
                 SELECT a, c, p, true FROM (",
                ") AS v(a, c, p)",
            )
            .await?;
        if !updates.is_empty() {
            let sql = format!(
                "UPDATE contacts AS c SET first_name = COALESCE(c.first_name, v.f), \
                 last_name = COALESCE(c.last_name, v.l), email = COALESCE(c.email, v.e), \
                 lead_source = COALESCE(c.lead_source, v.s), owner_id = COALESCE(c.owner_id, v.o), \
                 line_id = COALESCE(c.line_id, v.li), updated_at = now() \
                 FROM (VALUES {}) AS v(id, f, l, e, s, o, li) WHERE c.id = v.id",
                updates.sql
            );
            txn.execute_raw(stmt(&sql, updates.values))
                .await
                .context("Failed to run the baseline's UPDATE contacts")?;
        }
        intakes
            .exec(
                &txn,
                "INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, \
                 contact_id, actions, received_at, attempts, processed_at, updated_at) \
                 SELECT *, 1, now(), now() FROM (",
                ") AS v",
            )
            .await?;
        notes
            .exec(
                &txn,
                "INSERT INTO contact_notes (account_id, contact_id, body, intake_id)",
                "",
            )
            .await?;
        tags.exec(
            &txn,
            "INSERT INTO contact_tags (contact_id, tag_id, account_id)",
            "ON CONFLICT DO NOTHING",
        )
        .await?;
        enrollments
            .exec(
                &txn,
                "INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id)",
                "ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING",
            )
            .await?;
        dialer
            .exec(
                &txn,
                "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position)",
                "ON CONFLICT (account_id, contact_id) WHERE status = 'queued' DO NOTHING",
            )
            .await?;
        txn.commit().await.context("Failed to commit")?;
        if last_report.elapsed().as_secs_f64() >= 2.0 {
            last_report = Instant::now();
            let done = (chunk_no + 1) * CHUNK;
            eprintln!(
                "bench: baseline {done}/{} ({:.0} leads/s)",
                messages.len(),
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
