//! The leads of one transaction: each is planned in order by [`shared::rules::plan`] against
//! an in-memory view of the contacts it touches, and its plan applied to that view at once
//! (so a later lead sees what an earlier one did); then everything is written in a handful
//! of multi-row statements. A lead costs no round trip of its own unless it changes an
//! existing contact.

use super::sql;
use super::{Attempt, Planned};
use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, Value};
use shared::entities::powerdialer_item::PowerdialerStatus;
use shared::entities::sequence_enrollment::EnrollmentStatus;
use shared::entities::{contact, contact_consent, powerdialer_item};
use shared::intake::IntakeMessage;
use shared::lead::ConsentChannel;
use shared::lead::{Lead, PowerdialerPosition};
use shared::phone::PhoneNumber;
use shared::policy::table::RuleTable;
use shared::policy::{Channel, Consent};
use shared::read::{
    self, ConsentView, EnrollmentView, NoteView, PhoneView, PowerdialerView, as_stored,
};
use shared::rules::{self, Judge, Landing, Plan};
use shared::snapshot::{ContactView, Snapshot};
use std::collections::{HashMap, HashSet, VecDeque};

/// A PowerDialer entry to add once every lead is planned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PowerdialerPlan {
    pub user_id: i64,
    pub account_id: i64,
    pub contact_id: i64,
    pub position: PowerdialerPosition,
    /// Outside the contact's calling window: dialed from this instant (§9).
    pub not_before: Option<DateTime<Utc>>,
}

/// A contact as this transaction sees it.
struct ContactState {
    view: ContactView,
    /// A stored contact's row is to be written back at flush (contacts this transaction
    /// creates are inserted whole, in [`Batch::created`] order).
    changed: bool,
}

/// An enrollment row to insert at flush; one ended within the transaction is inserted ended.
#[derive(serde::Serialize)]
struct NewEnrollment {
    account_id: i64,
    contact_id: i64,
    sequence_id: i64,
    ended: bool,
    /// The intake that enrolled the contact; its first step records it.
    intake_id: uuid::Uuid,
}

/// The transaction's view and the writes it has planned.
pub(crate) struct Batch<'r> {
    /// What the leads read; its numbers' contacts are kept up to date as leads add numbers.
    snap: Snapshot,
    now: DateTime<Utc>,
    /// The contact policy's rule table.
    rules: &'r RuleTable,
    /// Locked existing contacts and contacts created by this transaction.
    contacts: HashMap<i64, ContactState>,
    /// Contacts in creation order.
    created: Vec<i64>,
    new_ids: VecDeque<i64>,
    numbers: NewNumbers,
    notes: NewNotes,
    consents: Vec<contact_consent::ActiveModel>,
    tags: NewTags,
    /// Contacts whose stored active enrollment ends.
    disenroll: Vec<i64>,
    enrollments: Vec<NewEnrollment>,
}

/// The phone numbers a batch adds, a column per field ([`sql::NUMBERS`]).
#[derive(Default)]
struct NewNumbers {
    accounts: Vec<i64>,
    contacts: Vec<i64>,
    numbers: Vec<String>,
    /// Empty where a number has none (`labelled` false): array parameters carry no nulls.
    labels: Vec<String>,
    labelled: Vec<bool>,
    primary: Vec<bool>,
}

impl NewNumbers {
    /// The parameters of [`sql::NUMBERS`] but the time.
    fn into_columns(self) -> Vec<Value> {
        vec![
            self.accounts.into(),
            self.contacts.into(),
            self.numbers.into(),
            self.labels.into(),
            self.labelled.into(),
            self.primary.into(),
        ]
    }
}

/// The notes a batch adds, a column per field ([`sql::NOTES`]).
#[derive(Default)]
struct NewNotes {
    accounts: Vec<i64>,
    contacts: Vec<i64>,
    bodies: Vec<String>,
    intakes: Vec<uuid::Uuid>,
}

impl NewNotes {
    /// The parameters of [`sql::NOTES`] but the time.
    fn into_columns(self) -> Vec<Value> {
        vec![
            self.accounts.into(),
            self.contacts.into(),
            self.bodies.into(),
            self.intakes.into(),
        ]
    }
}

/// The tags a batch gives contacts, a column per field ([`sql::TAGS`]).
#[derive(Default)]
struct NewTags {
    accounts: Vec<i64>,
    contacts: Vec<i64>,
    tags: Vec<i64>,
}

impl NewTags {
    /// The parameters of [`sql::TAGS`] but the time.
    fn into_columns(self) -> Vec<Value> {
        vec![self.accounts.into(), self.contacts.into(), self.tags.into()]
    }
}

impl<'r> Batch<'r> {
    pub fn new(mut snap: Snapshot, rules: &'r RuleTable) -> Self {
        let new_ids = std::mem::take(&mut snap.new_ids).into();
        Self {
            snap,
            now: Utc::now(),
            rules,
            contacts: HashMap::new(),
            created: Vec::new(),
            new_ids,
            numbers: NewNumbers::default(),
            notes: NewNotes::default(),
            consents: Vec::new(),
            tags: NewTags::default(),
            disenroll: Vec::new(),
            enrollments: Vec::new(),
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The contact `lead` belongs to by its numbers (§4.1), as the transaction sees them.
    pub fn matched(&self, account_id: i64, lead: &Lead) -> Option<i64> {
        rules::matched(&self.snap, account_id, lead)
    }

    /// The contacts of `wanted` this transaction creates, as the read API will show them
    /// once the batch is written: built from what it writes, without reading it back. The
    /// PowerDialer entry is placed last and added by the caller; do-not-contact is the
    /// number's as the policy read it. Contacts that existed before are not among them.
    pub fn created_views(&self, wanted: &HashSet<i64>) -> HashMap<i64, read::ContactView> {
        let mut lists: HashMap<i64, read::Related> = self
            .created
            .iter()
            .filter(|id| wanted.contains(id))
            .map(|id| (*id, read::Related::default()))
            .collect();
        if lists.is_empty() {
            return HashMap::new();
        }
        let n = &self.numbers;
        let numbers = n.contacts.iter().zip(&n.numbers).zip(&n.labels);
        for (((contact_id, number), label), (labelled, primary)) in
            numbers.zip(n.labelled.iter().zip(&n.primary))
        {
            if let Some(l) = lists.get_mut(contact_id).filter(|_| !primary) {
                l.other_phone_numbers.push(PhoneView {
                    label: labelled.then(|| label.clone()),
                    phone_number: number.clone(),
                });
            }
        }
        for (contact_id, tag_id) in self.tags.contacts.iter().zip(&self.tags.tags) {
            if let Some(l) = lists.get_mut(contact_id) {
                l.tag_ids.push(*tag_id);
            }
        }
        for (contact_id, body) in self.notes.contacts.iter().zip(&self.notes.bodies) {
            if let Some(l) = lists.get_mut(contact_id) {
                l.notes.push(NoteView {
                    body: body.clone(),
                    created_at: as_stored(self.now),
                });
            }
        }
        // Each lead's channels are without repeats and each intake is planned once, so no
        // record meets the unique (intake, channel) index; likewise the rules add no tag a
        // contact has.
        for k in &self.consents {
            let (Some(contact_id), Some(channel), Some(given_at)) = (
                k.contact_id.try_as_ref(),
                k.channel.try_as_ref(),
                k.given_at.try_as_ref(),
            ) else {
                continue;
            };
            let Some(l) = lists.get_mut(contact_id) else {
                continue;
            };
            let text = |v: &sea_orm::ActiveValue<Option<String>>| v.try_as_ref().cloned().flatten();
            l.consent.push(ConsentView {
                channel: channel.clone(),
                given_at: as_stored(*given_at),
                text: text(&k.text),
                source_url: text(&k.source_url),
                trustedform_cert_url: text(&k.trustedform_cert_url),
                leadid_token: text(&k.leadid_token),
                revoked_at: None,
            });
        }
        for e in &self.enrollments {
            if let Some(l) = lists.get_mut(&e.contact_id) {
                l.sequence_enrollments.push(EnrollmentView {
                    sequence_id: e.sequence_id,
                    status: if e.ended {
                        EnrollmentStatus::Disenrolled
                    } else {
                        EnrollmentStatus::Active
                    },
                });
            }
        }
        let mut views = HashMap::with_capacity(lists.len());
        for (id, mut l) in lists {
            let Some(st) = self.contacts.get(&id) else {
                continue;
            };
            let model = stored_copy(&st.view.model);
            l.tag_ids.sort_unstable();
            let key = (model.account_id, model.phone_number.clone());
            let mut dnc: Vec<String> = self
                .snap
                .dnc
                .get(&key)
                .into_iter()
                .flatten()
                .filter(|d| d.in_force(self.now))
                .map(|d| d.channel.as_str().to_owned())
                .collect();
            dnc.sort_unstable();
            l.do_not_contact = dnc;
            views.insert(id, read::ContactView::new(model, l));
        }
        views
    }

    /// The rows of the contacts of `wanted` that this transaction did not create (`built`
    /// holds those it did) as the read API will show them once it commits: each was read
    /// under its lock, and the transaction writes it back whole when it changes it. In id
    /// order; a contact of `wanted` the transaction does not hold is left out.
    pub fn stored_rows(
        &self,
        wanted: &HashSet<i64>,
        built: &HashMap<i64, read::ContactView>,
    ) -> Vec<contact::Model> {
        let mut rows: Vec<contact::Model> = wanted
            .iter()
            .filter(|id| !built.contains_key(id))
            .filter_map(|id| self.contacts.get(id))
            .map(|st| stored_copy(&st.view.model))
            .collect();
        rows.sort_unstable_by_key(|m| m.id);
        rows
    }

    /// Adds contacts this transaction has locked, with what it needs to know of them.
    pub fn add_locked(&mut self, views: Vec<ContactView>) {
        for view in views {
            let state = ContactState {
                view,
                changed: false,
            };
            self.contacts.insert(state.view.model.id, state);
        }
    }

    /// A contact this transaction creates, with one of the reserved ids.
    fn new_contact(&mut self, account_id: i64, phone: &PhoneNumber) -> Result<ContactState, DbErr> {
        let id = self
            .new_ids
            .pop_front()
            .ok_or_else(|| DbErr::Custom("Failed to reserve a contact id".into()))?;
        Ok(ContactState {
            view: ContactView::new(rules::blank_contact(id, account_id, phone, self.now)),
            changed: false,
        })
    }

    /// Carries out a lead's plan: on the transaction's view of its contact, and as the rows
    /// to write at flush. Returns the PowerDialer entry to add, if any.
    fn apply(
        &mut self,
        st: &mut ContactState,
        m: &IntakeMessage,
        plan: &Plan,
    ) -> Option<PowerdialerPlan> {
        let (account_id, contact_id) = (m.account_id, plan.contact_id);
        plan.row.apply(&mut st.view.model);
        if plan.touched {
            st.view.model.updated_at = self.now;
            st.changed = true;
        }
        if !plan.existing {
            self.created.push(contact_id);
        }
        let related = &plan.related;
        for n in &related.numbers {
            self.add_number(account_id, contact_id, n);
        }
        if let Some(body) = &related.note {
            self.add_note(account_id, contact_id, m.intake_id, body);
        }
        for c in &related.consents {
            self.add_consent(st, m, contact_id, c);
        }
        if let Some(tag_id) = related.tag {
            st.view.tags.insert(tag_id);
            self.add_tag(account_id, contact_id, tag_id);
        }
        self.enroll(st, m, &related.enrollment);
        plan.powerdialer.map(|q| {
            st.view.queued = true;
            PowerdialerPlan {
                user_id: q.user_id,
                account_id,
                contact_id,
                position: m.lead.powerdialer_position,
                not_before: q.not_before,
            }
        })
    }

    /// Gives a number to `contact_id` (later leads of the transaction see it).
    fn add_number(&mut self, account_id: i64, contact_id: i64, n: &rules::NewNumber) {
        let e164 = n.number.as_str().to_owned();
        let new = &mut self.numbers;
        new.accounts.push(account_id);
        new.contacts.push(contact_id);
        new.numbers.push(e164.clone());
        new.labels.push(n.label.clone().unwrap_or_default());
        new.labelled.push(n.label.is_some());
        new.primary.push(n.primary);
        self.snap.owners.insert((account_id, e164), contact_id);
    }

    /// A consent record of the lead's consent, with its evidence; the transaction's view of
    /// the contact counts it for the leads after this one.
    fn add_consent(
        &mut self,
        st: &mut ContactState,
        m: &IntakeMessage,
        contact_id: i64,
        c: &rules::NewConsent,
    ) {
        let evidence = &m.lead.evidence;
        let Some(consent) = &evidence.consent else {
            return;
        };
        let channel = match c.channel {
            ConsentChannel::Call => Some(Channel::Call),
            ConsentChannel::Sms => Some(Channel::Sms),
            ConsentChannel::Email => None,
        };
        if let Some(channel) = channel {
            st.view.consents.push(Consent {
                channel,
                given_at: c.given_at,
                revoked_at: None,
            });
        }
        self.consents.push(contact_consent::ActiveModel {
            account_id: Set(m.account_id),
            contact_id: Set(contact_id),
            channel: Set(c.channel.as_str().to_owned()),
            given_at: Set(c.given_at),
            text: Set(consent.text.clone()),
            source_url: Set(consent.source_url.clone()),
            ip: Set(consent.ip.clone()),
            user_agent: Set(consent.user_agent.clone()),
            seller: Set(consent.seller.clone()),
            trustedform_cert_url: Set(evidence.trustedform_cert_url.clone()),
            leadid_token: Set(evidence.leadid_token.clone()),
            intake_id: Set(Some(m.intake_id)),
            created_at: Set(self.now),
            ..Default::default()
        });
    }

    fn add_note(&mut self, account_id: i64, contact_id: i64, intake_id: uuid::Uuid, body: &str) {
        let notes = &mut self.notes;
        notes.accounts.push(account_id);
        notes.contacts.push(contact_id);
        notes.bodies.push(body.to_owned());
        notes.intakes.push(intake_id);
    }

    fn add_tag(&mut self, account_id: i64, contact_id: i64, tag_id: i64) {
        let tags = &mut self.tags;
        tags.accounts.push(account_id);
        tags.contacts.push(contact_id);
        tags.tags.push(tag_id);
    }

    /// Ends and starts the enrollments §4.8 decided for `st`'s contact. An enrollment made
    /// earlier in this transaction is inserted ended; a stored one is ended in place.
    fn enroll(&mut self, st: &mut ContactState, m: &IntakeMessage, e: &rules::Enrollment) {
        let Some(sequence_id) = e.enroll else {
            return;
        };
        let contact_id = st.view.model.id;
        for &ended in &e.end {
            match self
                .enrollments
                .iter_mut()
                .find(|n| n.contact_id == contact_id && n.sequence_id == ended && !n.ended)
            {
                Some(pending) => pending.ended = true,
                None => {
                    if !self.disenroll.contains(&contact_id) {
                        self.disenroll.push(contact_id);
                    }
                }
            }
        }
        self.enrollments.push(NewEnrollment {
            account_id: m.account_id,
            contact_id,
            sequence_id,
            ended: false,
            intake_id: m.intake_id,
        });
        st.view.active = vec![sequence_id];
    }
}

/// Plans one lead (§4) with [`rules::plan`] against the transaction's view of its contact,
/// and applies the plan. `None` when its contact is held by another transaction (nothing
/// is planned for it then).
pub(crate) fn plan(
    batch: &mut Batch<'_>,
    intake: &Attempt,
    rng: &mut impl Rng,
) -> Result<Option<Planned>, DbErr> {
    let m = &intake.message;
    // Existing from this lead's point of view: stored, or created by an earlier lead of the
    // transaction.
    let (mut st, existing) = match batch.matched(m.account_id, &m.lead) {
        Some(id) => match batch.contacts.remove(&id) {
            Some(s) => (s, true),
            None => return Ok(None),
        },
        None => (
            batch.new_contact(m.account_id, &m.lead.phone_number)?,
            false,
        ),
    };
    let landing = Landing {
        contact: &st.view,
        existing,
    };
    let judge = Judge {
        rules: batch.rules,
        now: batch.now,
        received_at: m.received_at,
    };
    let plan = rules::plan(&batch.snap, m.account_id, &m.lead, landing, judge, rng);
    // Recorded now; the entry is placed last in the transaction (see place_on_powerdialers),
    // and if that fails nothing of the lead commits.
    let powerdialer = batch.apply(&mut st, m, &plan);
    batch.contacts.insert(plan.contact_id, st);
    Ok(Some(Planned {
        status: plan.status,
        contact_id: plan.contact_id,
        actions: plan.actions,
        warnings: plan.warnings,
        powerdialer,
    }))
}

/// Writes everything the batch planned but the PowerDialer entries.
pub(crate) async fn flush(txn: &DatabaseTransaction, batch: Batch<'_>) -> Result<(), DbErr> {
    let Batch {
        contacts,
        created,
        numbers,
        notes,
        consents,
        tags,
        disenroll,
        enrollments,
        now,
        ..
    } = batch;
    write_contacts(txn, contacts, &created).await?;
    let columns = [
        (sql::NUMBERS, numbers.accounts.len(), numbers.into_columns()),
        (sql::NOTES, notes.accounts.len(), notes.into_columns()),
        (sql::TAGS, tags.accounts.len(), tags.into_columns()),
    ];
    for (statement, rows, mut values) in columns {
        if rows > 0 {
            values.push(now.into());
            txn.execute_raw(sql::stmt(statement, values)).await?;
        }
    }
    if !consents.is_empty() {
        // A redelivered lead's records exist already (unique per intake and channel).
        contact_consent::Entity::insert_many(consents)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await?;
    }
    write_enrollments(txn, disenroll, enrollments, now).await
}

/// A contact row as PostgreSQL keeps it once written (timestamps to the microsecond).
fn stored_copy(model: &contact::Model) -> contact::Model {
    let mut model = model.clone();
    model.created_at = as_stored(model.created_at);
    model.updated_at = as_stored(model.updated_at);
    model
}

/// New contacts, in creation order, by one insert; changed ones, each written whole from the
/// copy read under its lock, in id order by one update (the statements share their
/// parameters, [`contact_columns`]).
async fn write_contacts(
    txn: &DatabaseTransaction,
    mut contacts: HashMap<i64, ContactState>,
    created: &[i64],
) -> Result<(), DbErr> {
    let new: Vec<contact::Model> = created
        .iter()
        .filter_map(|id| contacts.remove(id))
        .map(|s| s.view.model)
        .collect();
    let mut changed: Vec<contact::Model> = contacts
        .into_values()
        .filter(|s| s.changed)
        .map(|s| s.view.model)
        .collect();
    changed.sort_by_key(|m| m.id);
    for (statement, rows) in [(sql::CONTACTS, new), (sql::CONTACT_UPDATES, changed)] {
        if !rows.is_empty() {
            txn.execute_raw(sql::stmt(statement, contact_columns(&rows)))
                .await?;
        }
    }
    Ok(())
}

/// The nullable text columns of a contact in the order of [`sql::CONTACTS`]'s `$4..$19`
/// (bit `i` of its null mask is the `i`-th).
const NULLABLE_TEXT: [fn(&contact::Model) -> &Option<String>; 16] = [
    |m| &m.name,
    |m| &m.first_name,
    |m| &m.last_name,
    |m| &m.company_name,
    |m| &m.email,
    |m| &m.lead_source,
    |m| &m.source,
    |m| &m.address,
    |m| &m.city,
    |m| &m.state,
    |m| &m.zipcode,
    |m| &m.country,
    |m| &m.csf1,
    |m| &m.csf2,
    |m| &m.website,
    |m| &m.timezone,
];
/// The null mask's bit of the date of birth.
const DATE_OF_BIRTH_NULL: i32 = 1 << NULLABLE_TEXT.len();

/// The parameters of [`sql::CONTACTS`] and [`sql::CONTACT_UPDATES`] for `rows`: a column
/// each, nulls in the mask (the nullable ids as 0, never a row's id).
fn contact_columns(rows: &[contact::Model]) -> Vec<Value> {
    fn column<T: Into<Value>>(rows: &[contact::Model], f: impl Fn(&contact::Model) -> T) -> Value
    where
        Vec<T>: Into<Value>,
    {
        rows.iter().map(f).collect::<Vec<T>>().into()
    }
    let mut nulls = vec![0i32; rows.len()];
    let mut values = vec![
        column(rows, |m| m.id),
        column(rows, |m| m.account_id),
        column(rows, |m| m.phone_number.clone()),
    ];
    for (bit, field) in NULLABLE_TEXT.iter().enumerate() {
        let texts: Vec<String> = rows
            .iter()
            .zip(nulls.iter_mut())
            .map(|(m, mask)| {
                field(m).clone().unwrap_or_else(|| {
                    *mask |= 1 << bit;
                    String::new()
                })
            })
            .collect();
        values.push(texts.into());
    }
    let dates: Vec<NaiveDate> = rows
        .iter()
        .zip(nulls.iter_mut())
        .map(|(m, mask)| {
            m.date_of_birth.unwrap_or_else(|| {
                *mask |= DATE_OF_BIRTH_NULL;
                NaiveDate::default()
            })
        })
        .collect();
    values.extend([
        dates.into(),
        column(rows, |m| m.owner_id.unwrap_or(0)),
        column(rows, |m| m.line_id.unwrap_or(0)),
        column(rows, |m| m.disposition_status_id.unwrap_or(0)),
        column(rows, |m| m.created_at),
        column(rows, |m| m.updated_at),
        nulls.into(),
    ]);
    values
}

/// Ends the stored active enrollments of `disenroll` (cancelling their unsent steps) and
/// inserts the new ones (ended when a later lead of the transaction moved the contact on),
/// scheduling the first step of each that stays active (§10).
async fn write_enrollments(
    txn: &DatabaseTransaction,
    disenroll: Vec<i64>,
    enrollments: Vec<NewEnrollment>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    if !disenroll.is_empty() {
        txn.execute_raw(sql::stmt(
            sql::DISENROLL,
            vec![disenroll.into(), now.into()],
        ))
        .await?;
    }
    if enrollments.is_empty() {
        return Ok(());
    }
    let rows = serde_json::to_value(&enrollments).map_err(|e| DbErr::Custom(e.to_string()))?;
    txn.query_all_raw(sql::stmt(sql::ENROLL, vec![rows.into(), now.into()]))
        .await?;
    Ok(())
}

/// Adds the planned PowerDialer entries, each at the top or bottom of its owner's list, in
/// lead order: positions drawn from one sequence, so a bottom entry lands below every entry
/// placed before it and a top entry above (negated), with no read or lock of the list.
/// Two batches placing on one list at once never wait for each other.
pub(crate) async fn place_on_powerdialers(
    txn: &DatabaseTransaction,
    plans: &[PowerdialerPlan],
) -> Result<Vec<(i64, PowerdialerView)>, DbErr> {
    let now = Utc::now();
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    // Ascending, so that a later lead's bottom entry is below an earlier one's and its top
    // entry above.
    let drawn = sql::powerdialer_positions(txn, plans.len()).await?;
    if drawn.len() != plans.len() {
        return Err(DbErr::Custom(format!(
            "{} PowerDialer positions drawn for {} entries",
            drawn.len(),
            plans.len()
        )));
    }
    let mut rows = Vec::with_capacity(plans.len());
    let mut placed = Vec::with_capacity(plans.len());
    for (plan, drawn) in plans.iter().zip(drawn) {
        let position = match plan.position {
            PowerdialerPosition::Top => -drawn,
            PowerdialerPosition::Bottom => drawn,
        };
        placed.push((
            plan.contact_id,
            PowerdialerView {
                user_id: plan.user_id,
                position,
                not_before: plan.not_before,
            },
        ));
        rows.push(powerdialer_item::ActiveModel {
            account_id: Set(plan.account_id),
            user_id: Set(plan.user_id),
            contact_id: Set(plan.contact_id),
            position: Set(position),
            status: Set(PowerdialerStatus::Queued),
            not_before: Set(plan.not_before),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        });
    }
    powerdialer_item::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(placed)
}
