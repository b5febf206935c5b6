//! The worker's baseline: the rows the worker writes for a backlog — new contacts with their
//! primary number and derived geo fields, updates of the contacts repeats hit, one intake
//! record per lead (payload and actions JSON of the same shape), and the notes, tags,
//! sequence enrollments and PowerDialer entries of leads with actions — written by plain
//! INSERT/UPDATE statements, 500 leads per transaction, into another account of the same
//! database (its own copies of the contacts the backlog repeats, so nothing conflicts with
//! the worker's rows). Each statement takes one typed array per column (`unnest`), so its
//! text is the same whatever the chunk holds and PostgreSQL plans it once per connection,
//! as it does the worker's batch writes (a multi-row `VALUES` list would be a new text, and
//! a new plan, for almost every chunk: a cost the worker does not pay).
//!
//! It runs over one connection, or over as many at once as the worker runs transactions
//! (four): the backlog is split by phone number into that many streams, each written in
//! order on its own connection, so two transactions never touch one contact and need no
//! locks; PowerDialer positions are drawn from one shared counter per user.
//!
//! It looks numbers up once per chunk, as any implementation must, and takes contact ids
//! from the sequence in bulk; it skips what makes the worker correct under concurrency
//! (locks, per-lead idempotency checks), which is exactly the overhead the ratio shows.

use crate::leads::Catalogs;
use crate::seed::stmt;
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait, Value};
use serde_json::json;
use shared::intake::IntakeMessage;
use shared::lead::Lead;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const CHUNK: usize = 500;

/// Rows of one statement as one typed array per column, unnested by the statement.
/// `types[i]` is column `i`'s SQL type; a `?` after it marks a nullable column: the driver
/// cannot bind a null inside an array, so a blank travels as '' (text) or 0 (ids, never a
/// row's id) and the statement turns it back into NULL.
struct Rows {
    types: &'static [&'static str],
    columns: Vec<Vec<Value>>,
}

impl Rows {
    fn new(types: &'static [&'static str]) -> Self {
        Self {
            types,
            columns: types.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// One row, a value per column in `types`' order.
    fn push(&mut self, row: Vec<Value>) {
        for (column, value) in self.columns.iter_mut().zip(row) {
            column.push(match value {
                Value::String(None) => Value::String(Some(String::new())),
                Value::BigInt(None) => Value::BigInt(Some(0)),
                v => v,
            });
        }
    }

    fn is_empty(&self) -> bool {
        self.columns.first().is_none_or(Vec::is_empty)
    }

    /// `SELECT <the columns>, <extra> FROM unnest($1::…[], …)` and its parameters.
    fn select(self, extra: &str) -> (String, Vec<Value>) {
        let mut arrays = Vec::new();
        let mut names = Vec::new();
        let mut exprs = Vec::new();
        let mut values = Vec::new();
        for (i, (ty, column)) in self.types.iter().zip(self.columns).enumerate() {
            let (ty, nullable) = ty.strip_suffix('?').map_or((*ty, false), |t| (t, true));
            let (element, kind) = match ty {
                "bigint" => ("bigint", ArrayType::BigInt),
                "uuid" => ("uuid", ArrayType::Uuid),
                "timestamptz" => ("timestamptz", ArrayType::ChronoDateTimeUtc),
                _ => ("text", ArrayType::String),
            };
            let name = format!("c{i}");
            arrays.push(format!("${}::{element}[]", i + 1));
            exprs.push(match (nullable, element) {
                (true, "bigint") => format!("nullif({name}, 0)"),
                (true, _) => format!("nullif({name}, '')::{ty}"),
                (false, _) => format!("{name}::{ty}"),
            });
            names.push(name);
            values.push(Value::Array(kind, Some(Box::new(column))));
        }
        let sql = format!(
            "SELECT {}{extra} FROM unnest({}) AS v({})",
            exprs.join(", "),
            arrays.join(", "),
            names.join(", ")
        );
        (sql, values)
    }

    async fn exec(self, c: &impl ConnectionTrait, head: &str, tail: &str) -> anyhow::Result<()> {
        self.exec_with(c, head, "", tail).await
    }

    /// `{head} SELECT …{extra} FROM unnest(…) {tail}`: an insert of the rows.
    async fn exec_with(
        self,
        c: &impl ConnectionTrait,
        head: &str,
        extra: &str,
        tail: &str,
    ) -> anyhow::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let (select, values) = self.select(extra);
        c.execute_raw(stmt(&format!("{head} {select} {tail}"), values))
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

/// Writes the rows for `messages` (of account `from`) into account `to` in `streams`
/// transactions at once over `pool` (which has at least that many connections); leads per
/// second.
pub async fn run(
    pool: &DatabaseConnection,
    streams: usize,
    messages: &[IntakeMessage],
    from: &Catalogs,
    to: &Catalogs,
) -> anyhow::Result<f64> {
    let streams = streams.max(1);
    let mut split: Vec<Vec<&IntakeMessage>> = vec![Vec::new(); streams];
    for m in messages {
        split[stream_of(m.lead.phone_number.as_str(), streams)].push(m);
    }
    let positions = Mutex::new(HashMap::new());
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let runs = split.iter().enumerate().map(|(i, stream)| {
        let mut baseline = Baseline::new(from, to, i as u64, &positions);
        let done = &done;
        async move {
            let mut last_report = Instant::now();
            for chunk in stream.chunks(CHUNK) {
                baseline.write_chunk(pool, chunk).await?;
                let total = done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                if i == 0 && last_report.elapsed().as_secs_f64() >= 2.0 {
                    last_report = Instant::now();
                    eprintln!(
                        "bench: baseline ({streams} at once) {total}/{} ({:.0} leads/s)",
                        messages.len(),
                        total as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            anyhow::Ok(())
        }
    });
    for result in futures_util::future::join_all(runs).await {
        result?;
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64().max(1e-9))
}

/// The stream a number's leads go to: one number, one stream.
fn stream_of(number: &str, streams: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    number.hash(&mut hasher);
    (hasher.finish() % streams as u64) as usize
}

/// The worker's choices, made in the second account; what carries from chunk to chunk.
struct Baseline<'a> {
    /// The catalog of the account the leads were sent to.
    from: &'a Catalogs,
    /// The same catalog in the account the baseline writes into, by position.
    to: &'a Catalogs,
    /// Ring-group members a distributed lead may go to: all but the unavailable user 2.
    eligible: Vec<i64>,
    /// Draws the ring-group member; seeded, so every run draws the same members.
    rng: StdRng,
    /// Each user's top PowerDialer position so far, shared by the streams; a new entry goes
    /// above it.
    positions: &'a Mutex<HashMap<i64, i64>>,
}

impl<'a> Baseline<'a> {
    fn new(
        from: &'a Catalogs,
        to: &'a Catalogs,
        stream: u64,
        positions: &'a Mutex<HashMap<i64, i64>>,
    ) -> Self {
        let eligible = to
            .ring_members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, u)| *u)
            .collect();
        Self {
            from,
            to,
            eligible,
            rng: StdRng::seed_from_u64(7 + stream),
            positions,
        }
    }

    /// One chunk, one transaction: look its numbers up, reserve the new contacts' ids, plan
    /// every lead, write the rows, commit.
    async fn write_chunk(
        &mut self,
        conn: &DatabaseConnection,
        chunk: &[&IntakeMessage],
    ) -> anyhow::Result<()> {
        let txn = conn.begin().await.context("Failed to begin")?;
        let mut numbers: Vec<&str> = chunk.iter().map(|m| m.lead.phone_number.as_str()).collect();
        numbers.sort_unstable();
        numbers.dedup();
        let known = look_up_numbers(&txn, self.to.account, &numbers).await?;
        let fresh = numbers.iter().filter(|n| !known.contains_key(**n)).count();
        let ids = reserve_ids(&txn, fresh).await?;
        let mut plan = Plan::new(known, ids);
        for (mi, m) in chunk.iter().enumerate() {
            self.plan_lead(&mut plan, mi, m)?;
        }
        plan.write(&txn, chunk, self.to).await?;
        txn.commit().await.context("Failed to commit")?;
        Ok(())
    }

    /// The user of the second account at the position user `id` has in the first.
    fn user(&self, id: i64) -> Option<i64> {
        self.from
            .users
            .iter()
            .position(|u| *u == id)
            .and_then(|i| self.to.users.get(i).copied())
    }

    /// Who gets the lead: a random eligible member when it is distributed, else its user.
    fn owner(&mut self, lead: &Lead) -> Option<i64> {
        if lead.flags.distribute_to_ring_group && !self.eligible.is_empty() {
            Some(self.eligible[self.rng.random_range(0..self.eligible.len())])
        } else {
            lead.links.user_id.and_then(|id| self.user(id))
        }
    }

    /// Plans lead `mi` of the chunk: its contact, its linked rows and its intake record.
    fn plan_lead<'c>(
        &mut self,
        plan: &mut Plan<'c>,
        mi: usize,
        m: &'c IntakeMessage,
    ) -> anyhow::Result<()> {
        // The worker already recorded this intake id: the baseline's records are new.
        let intake_id = uuid::Uuid::now_v7();
        let lead = &m.lead;
        let owner = self.owner(lead);
        let line = lead.links.line_id.map(|_| self.to.line);
        let (contact_id, status, contact_action) = plan.contact(mi, lead, owner, line)?;
        let mut actions = vec![contact_action];
        if let Some(o) = owner {
            if lead.flags.distribute_to_ring_group {
                actions.push(json!({"type": "ring_group_distributed", "ring_group_id": self.to.ring_group, "user_id": o}));
            } else {
                actions.push(json!({"type": "owner_assigned", "user_id": o}));
            }
        }
        if let Some(l) = line {
            actions.push(json!({"type": "line_set", "line_id": l}));
        }
        actions.extend(self.link(plan, lead, contact_id, intake_id, owner));
        plan.intakes.push(vec![
            intake_id.into(),
            self.to.account.into(),
            self.to.users[0].into(),
            self.to.token_id.into(),
            status.into(),
            m.payload.get().into(),
            contact_id.into(),
            serde_json::Value::Array(actions).to_string().into(),
            m.received_at.into(),
        ]);
        Ok(())
    }

    /// The lead's note, tag, sequence enrollment and PowerDialer entry: a row each in the
    /// plan; returns their actions.
    fn link(
        &mut self,
        plan: &mut Plan<'_>,
        lead: &Lead,
        contact_id: i64,
        intake_id: uuid::Uuid,
        owner: Option<i64>,
    ) -> Vec<serde_json::Value> {
        let to = self.to;
        let mut actions = Vec::new();
        if let Some(body) = &lead.notes {
            plan.notes.push(vec![
                to.account.into(),
                contact_id.into(),
                body.clone().into(),
                intake_id.into(),
            ]);
            actions.push(json!({"type": "note_added"}));
        }
        if lead.links.tag_id.is_some() {
            plan.tags
                .push(vec![contact_id.into(), to.tag.into(), to.account.into()]);
            actions.push(json!({"type": "tag_added", "tag_id": to.tag}));
        }
        if lead.links.sequence_id.is_some() {
            plan.enrollments.push(vec![
                to.account.into(),
                contact_id.into(),
                to.sequence.into(),
            ]);
            actions.push(json!({"type": "sequence_enrolled", "sequence_id": to.sequence}));
        }
        if lead.flags.add_to_powerdialer
            && let Some(o) = owner
        {
            let position = {
                let mut positions = self
                    .positions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let p = positions.entry(o).or_insert(0);
                *p -= 1;
                *p
            };
            plan.dialer.push(vec![
                to.account.into(),
                o.into(),
                contact_id.into(),
                position.into(),
            ]);
            actions.push(json!({"type": "powerdialer_added", "user_id": o, "position": "top"}));
        }
        actions
    }
}

/// The contact ids of those of `numbers` the account already has.
async fn look_up_numbers(
    txn: &impl ConnectionTrait,
    account: i64,
    numbers: &[&str],
) -> anyhow::Result<HashMap<String, i64>> {
    let mut known: HashMap<String, i64> = HashMap::new();
    for row in txn
        .query_all_raw(stmt(
            "SELECT phone_number, contact_id FROM contact_phone_numbers \
             WHERE account_id = $1 AND phone_number = ANY(string_to_array($2, ','))",
            vec![account.into(), numbers.join(",").into()],
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
    Ok(known)
}

/// `count` contact ids taken from the sequence in one statement.
async fn reserve_ids(txn: &impl ConnectionTrait, count: usize) -> anyhow::Result<Vec<i64>> {
    let mut ids: Vec<i64> = Vec::with_capacity(count);
    for row in txn
        .query_all_raw(stmt(
            "SELECT nextval('contacts_id_seq') AS id FROM generate_series(1, $1)",
            vec![(count as i64).into()],
        ))
        .await
        .context("Failed to reserve contact ids")?
    {
        ids.push(
            row.try_get::<i64>("", "id")
                .context("Failed to read an id")?,
        );
    }
    Ok(ids)
}

/// What one chunk writes, gathered lead by lead; `'c` is the chunk's lifetime.
struct Plan<'c> {
    /// Contact ids of the numbers the account already had.
    known: HashMap<String, i64>,
    /// Reserved ids not yet given to a new contact.
    ids: Vec<i64>,
    created: Vec<NewContact>,
    /// Index in `created` of the contact this chunk creates for a number.
    created_by_number: HashMap<&'c str, usize>,
    fills: HashMap<i64, Fill>,
    intakes: Rows,
    notes: Rows,
    tags: Rows,
    enrollments: Rows,
    dialer: Rows,
}

impl<'c> Plan<'c> {
    fn new(known: HashMap<String, i64>, ids: Vec<i64>) -> Self {
        Self {
            known,
            ids,
            created: Vec::new(),
            created_by_number: HashMap::new(),
            fills: HashMap::new(),
            intakes: Rows::new(&[
                "uuid",
                "bigint",
                "bigint",
                "bigint",
                "varchar",
                "jsonb",
                "bigint",
                "jsonb",
                "timestamptz",
            ]),
            notes: Rows::new(&["bigint", "bigint", "text", "uuid"]),
            tags: Rows::new(&["bigint", "bigint", "bigint"]),
            enrollments: Rows::new(&["bigint", "bigint", "bigint"]),
            dialer: Rows::new(&["bigint", "bigint", "bigint", "bigint"]),
        }
    }

    /// The contact lead `mi` lands on — one the account has (its blanks filled), one this
    /// chunk creates already, or a new one — with the intake status and the contact action.
    fn contact(
        &mut self,
        mi: usize,
        lead: &'c Lead,
        owner: Option<i64>,
        line: Option<i64>,
    ) -> anyhow::Result<(i64, &'static str, serde_json::Value)> {
        let phone = lead.phone_number.as_str();
        Ok(if let Some(&id) = self.known.get(phone) {
            let f = self.fills.entry(id).or_default();
            f.first_name = f.first_name.take().or(lead.fields.first_name.clone());
            f.last_name = f.last_name.take().or(lead.fields.last_name.clone());
            f.email = f.email.take().or(lead.fields.email.clone());
            f.lead_source = f.lead_source.take().or(lead.fields.lead_source.clone());
            f.owner = f.owner.or(owner);
            f.line = f.line.or(line);
            let action =
                json!({"type": "contact_merged", "contact_id": id, "fields": ["first_name"]});
            (id, "merged", action)
        } else if let Some(&ci) = self.created_by_number.get(phone) {
            let c = &mut self.created[ci];
            c.owner = c.owner.or(owner);
            c.line = c.line.or(line);
            let action = json!({"type": "contact_merged", "contact_id": c.id, "fields": []});
            (c.id, "merged", action)
        } else {
            let id = self
                .ids
                .pop()
                .context("Failed to plan: ran out of reserved ids")?;
            self.created_by_number.insert(phone, self.created.len());
            self.created.push(NewContact {
                id,
                m: mi,
                owner,
                line,
            });
            (
                id,
                "created",
                json!({"type": "contact_created", "contact_id": id}),
            )
        })
    }

    /// Writes the chunk's rows, contacts first, then the records that refer to them.
    async fn write(
        self,
        txn: &impl ConnectionTrait,
        chunk: &[&IntakeMessage],
        to: &Catalogs,
    ) -> anyhow::Result<()> {
        let (contacts, phones) = new_contact_rows(&self.created, chunk, to);
        let updates = update_rows(self.fills);
        write_contacts(txn, contacts, phones, updates).await?;
        self.intakes
            .exec_with(
                txn,
                "INSERT INTO lead_intakes (id, account_id, user_id, token_id, status, payload, \
                 contact_id, actions, received_at, attempts, processed_at, updated_at)",
                ", 1, now(), now()",
                "",
            )
            .await?;
        self.notes
            .exec(
                txn,
                "INSERT INTO contact_notes (account_id, contact_id, body, intake_id)",
                "",
            )
            .await?;
        self.tags
            .exec(
                txn,
                "INSERT INTO contact_tags (contact_id, tag_id, account_id)",
                "ON CONFLICT DO NOTHING",
            )
            .await?;
        self.enrollments
            .exec(
                txn,
                "INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id)",
                "ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING",
            )
            .await?;
        self.dialer
            .exec(
                txn,
                "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position)",
                "ON CONFLICT (account_id, contact_id) WHERE status = 'queued' DO NOTHING",
            )
            .await
    }
}

/// The rows of the contacts the chunk creates, and of their primary numbers.
fn new_contact_rows(
    created: &[NewContact],
    chunk: &[&IntakeMessage],
    to: &Catalogs,
) -> (Rows, Rows) {
    let mut contacts = Rows::new(&[
        "bigint", "bigint", "varchar", "varchar?", "varchar?", "varchar?", "varchar?", "varchar?",
        "varchar?", "varchar?", "varchar?", "bigint?", "bigint?",
    ]);
    let mut phones = Rows::new(&["bigint", "bigint", "varchar"]);
    for c in created {
        let lead = &chunk[c.m].lead;
        let place = shared::geo::locate(&lead.phone_number);
        contacts.push(vec![
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
        ]);
        phones.push(vec![
            to.account.into(),
            c.id.into(),
            lead.phone_number.as_str().into(),
        ]);
    }
    (contacts, phones)
}

/// The rows of the fields repeats bring to existing contacts.
fn update_rows(fills: HashMap<i64, Fill>) -> Rows {
    let mut updates = Rows::new(&[
        "bigint", "varchar?", "varchar?", "varchar?", "varchar?", "bigint?", "bigint?",
    ]);
    for (id, f) in fills {
        updates.push(vec![
            id.into(),
            f.first_name.into(),
            f.last_name.into(),
            f.email.into(),
            f.lead_source.into(),
            f.owner.into(),
            f.line.into(),
        ]);
    }
    updates
}

/// Inserts the new contacts and their numbers, then fills the blanks of existing ones.
async fn write_contacts(
    txn: &impl ConnectionTrait,
    contacts: Rows,
    phones: Rows,
    updates: Rows,
) -> anyhow::Result<()> {
    contacts
        .exec(
            txn,
            "INSERT INTO contacts (id, account_id, phone_number, first_name, last_name, email, \
             lead_source, country, state, city, timezone, owner_id, line_id)",
            "",
        )
        .await?;
    phones
        .exec_with(
            txn,
            "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary)",
            ", true",
            "",
        )
        .await?;
    if !updates.is_empty() {
        let (select, values) = updates.select("");
        let sql = format!(
            "UPDATE contacts AS c SET first_name = COALESCE(c.first_name, v.f), \
             last_name = COALESCE(c.last_name, v.l), email = COALESCE(c.email, v.e), \
             lead_source = COALESCE(c.lead_source, v.s), owner_id = COALESCE(c.owner_id, v.o), \
             line_id = COALESCE(c.line_id, v.li), updated_at = now() \
             FROM ({select}) AS v(id, f, l, e, s, o, li) WHERE c.id = v.id"
        );
        txn.execute_raw(stmt(&sql, values))
            .await
            .context("Failed to run the baseline's UPDATE contacts")?;
    }
    Ok(())
}
