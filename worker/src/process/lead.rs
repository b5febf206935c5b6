//! The leads of one transaction: each is planned in order against an in-memory view of the
//! contacts it touches (so a later lead sees what an earlier one did) by the rules of
//! [`shared::rules`], then everything is written in a handful of multi-row statements. A lead costs no round trip of its own
//! unless it changes an existing contact.

use super::sql;
use super::{Attempt, Planned};
use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use shared::entities::powerdialer_item::PowerdialerStatus;
use shared::entities::sequence_enrollment::EnrollmentStatus;
use shared::entities::{
    contact, contact_note, contact_phone_number, contact_tag, powerdialer_item, sequence_enrollment,
};
use shared::lead::{Lead, PowerdialerPosition};
use shared::outcome::Action;
use shared::phone::PhoneNumber;
use shared::rules::{self, fields};
use shared::snapshot::{ContactView, Snapshot};
use std::collections::{HashMap, HashSet, VecDeque};

/// A PowerDialer entry to add once every lead is planned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PowerdialerPlan {
    pub user_id: i64,
    pub account_id: i64,
    pub contact_id: i64,
    pub position: PowerdialerPosition,
}

/// A contact as this transaction sees it.
struct ContactState {
    model: contact::Model,
    /// Created by this transaction (inserted at flush).
    new: bool,
    /// Columns of an existing contact to write at flush.
    dirty: Vec<contact::Column>,
    tags: HashSet<i64>,
    /// Sequences the contact is actively enrolled in (at most one).
    active: Vec<i64>,
    /// Queued in some PowerDialer list of the account (or planned to be).
    queued: bool,
}

/// An enrollment row to insert at flush; one ended within the transaction is inserted ended.
struct NewEnrollment {
    account_id: i64,
    contact_id: i64,
    sequence_id: i64,
    ended: bool,
}

/// The transaction's view and the writes it has planned.
pub(crate) struct Batch {
    /// What the leads read; its numbers' contacts are kept up to date as leads add numbers.
    snap: Snapshot,
    now: DateTime<Utc>,
    /// Locked existing contacts and contacts created by this transaction.
    contacts: HashMap<i64, ContactState>,
    /// Contacts in creation order.
    created: Vec<i64>,
    new_ids: VecDeque<i64>,
    numbers: Vec<contact_phone_number::ActiveModel>,
    notes: Vec<contact_note::ActiveModel>,
    tags: Vec<contact_tag::ActiveModel>,
    /// Contacts whose stored active enrollment ends.
    disenroll: Vec<i64>,
    enrollments: Vec<NewEnrollment>,
}

impl Batch {
    pub fn new(mut snap: Snapshot) -> Self {
        let new_ids = std::mem::take(&mut snap.new_ids).into();
        Self {
            snap,
            now: Utc::now(),
            contacts: HashMap::new(),
            created: Vec::new(),
            new_ids,
            numbers: Vec::new(),
            notes: Vec::new(),
            tags: Vec::new(),
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

    /// Adds contacts this transaction has locked, with what it needs to know of them.
    pub fn add_locked(&mut self, views: Vec<ContactView>) {
        for view in views {
            self.contacts.insert(
                view.model.id,
                ContactState {
                    model: view.model,
                    new: false,
                    dirty: Vec::new(),
                    tags: view.tags,
                    active: view.active,
                    queued: view.queued,
                },
            );
        }
    }

    /// A contact this transaction creates, with one of the reserved ids.
    fn new_contact(&mut self, account_id: i64, phone: &PhoneNumber) -> Result<ContactState, DbErr> {
        let id = self
            .new_ids
            .pop_front()
            .ok_or_else(|| DbErr::Custom("Failed to reserve a contact id".into()))?;
        Ok(ContactState {
            model: rules::blank_contact(id, account_id, phone, self.now),
            new: true,
            dirty: Vec::new(),
            tags: HashSet::new(),
            active: Vec::new(),
            queued: false,
        })
    }

    /// Gives `n` to `contact_id` (later leads of the transaction see it).
    fn add_number(
        &mut self,
        account_id: i64,
        contact_id: i64,
        n: &PhoneNumber,
        label: Option<String>,
        is_primary: bool,
    ) {
        self.numbers.push(contact_phone_number::ActiveModel {
            account_id: Set(account_id),
            contact_id: Set(contact_id),
            phone_number: Set(n.as_str().to_owned()),
            label: Set(label),
            is_primary: Set(is_primary),
            created_at: Set(self.now),
            ..Default::default()
        });
        self.snap
            .owners
            .insert((account_id, n.as_str().to_owned()), contact_id);
    }

    fn add_note(&mut self, account_id: i64, contact_id: i64, intake_id: uuid::Uuid, body: &str) {
        self.notes.push(contact_note::ActiveModel {
            account_id: Set(account_id),
            contact_id: Set(contact_id),
            body: Set(body.to_owned()),
            intake_id: Set(Some(intake_id)),
            created_at: Set(self.now),
            ..Default::default()
        });
    }

    fn add_tag(&mut self, account_id: i64, contact_id: i64, tag_id: i64) {
        self.tags.push(contact_tag::ActiveModel {
            contact_id: Set(contact_id),
            tag_id: Set(tag_id),
            account_id: Set(account_id),
            created_at: Set(self.now),
        });
    }

    /// Ends and starts the enrollments §4.8 decided for `st`'s contact. An enrollment made
    /// earlier in this transaction is inserted ended; a stored one is ended in place.
    fn enroll(&mut self, st: &mut ContactState, account_id: i64, e: rules::Enrollment) {
        let Some(sequence_id) = e.enroll else {
            return;
        };
        let contact_id = st.model.id;
        for ended in e.end {
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
            account_id,
            contact_id,
            sequence_id,
            ended: false,
        });
        st.active = vec![sequence_id];
    }
}

/// Plans one lead (§4): runs the rules of [`rules`] in order against the transaction's view
/// of its contact and collects the writes they decide. `None` when its contact is held by
/// another transaction (nothing is planned for it then).
pub(crate) fn plan(
    batch: &mut Batch,
    intake: &Attempt,
    rng: &mut impl Rng,
) -> Result<Option<Planned>, DbErr> {
    let m = &intake.message;
    let lead = &m.lead;
    // Existing from this lead's point of view: stored, or created by an earlier lead of the
    // transaction.
    let (mut st, existing) = match batch.matched(m.account_id, lead) {
        Some(id) => match batch.contacts.remove(&id) {
            Some(s) => (s, true),
            None => return Ok(None),
        },
        None => (batch.new_contact(m.account_id, &lead.phone_number)?, false),
    };
    let contact_id = st.model.id;
    let target = Target {
        account_id: m.account_id,
        contact_id,
        existing,
        lead,
    };
    let (links, mut report) = rules::links(&batch.snap, m.account_id, lead);
    let (head, contact_report) = batch.update_contact(&mut st, &target, &links, rng);
    report.absorb(contact_report);
    report.absorb(batch.add_related(&mut st, &target, &links, m.intake_id));
    // Recorded now; the entry is placed last in the transaction (see place_on_powerdialers),
    // and if that fails nothing of the lead commits.
    let (listed, powerdialer_report) = rules::powerdialer(lead, st.model.owner_id, st.queued);
    report.absorb(powerdialer_report);
    let powerdialer = listed.map(|user_id| {
        st.queued = true;
        PowerdialerPlan {
            user_id,
            account_id: m.account_id,
            contact_id,
            position: lead.powerdialer_position,
        }
    });

    let force = lead.flags.force_update;
    let status = rules::status(existing, force, report.changed);
    if existing && (report.changed || force) {
        st.model.updated_at = batch.now;
        if !st.new {
            st.dirty.push(contact::Column::UpdatedAt);
        }
    }
    batch.contacts.insert(contact_id, st);
    let mut actions = report.actions;
    if let Some(head) = head {
        actions.insert(0, head);
    }
    Ok(Some(Planned {
        status,
        contact_id,
        actions,
        warnings: report.warnings,
        powerdialer,
    }))
}

/// The contact one lead is planned for.
struct Target<'a> {
    account_id: i64,
    contact_id: i64,
    /// Stored, or created by an earlier lead of the transaction.
    existing: bool,
    lead: &'a Lead,
}

impl Batch {
    /// The rules on the contact's own row (§4.2–§4.6): fields, owner, line and disposition.
    /// Returns the contact's own action (created / updated), which leads the lead's actions.
    fn update_contact(
        &mut self,
        st: &mut ContactState,
        target: &Target<'_>,
        links: &rules::Links,
        rng: &mut impl Rng,
    ) -> (Option<Action>, rules::Report) {
        let Target {
            contact_id,
            existing,
            lead,
            ..
        } = *target;
        let force = lead.flags.force_update;
        let current = existing.then_some(&st.model);
        let changes = rules::contact_fields(current, lead, force);
        let (owner, mut report) = rules::owner(
            &self.snap.members,
            lead,
            links,
            existing,
            current.and_then(|c| c.owner_id),
            rng,
        );
        let (line, disposition, line_report) = rules::line_and_disposition(current, links, force);
        let head = rules::contact_action(existing, force, contact_id, &changes);

        let columns = fields::apply(&mut st.model, &changes);
        if existing && !columns.is_empty() {
            st.dirty.extend(columns);
            report.changed = true;
        }
        if !existing {
            self.created.push(contact_id);
        }
        if owner != st.model.owner_id {
            st.model.owner_id = owner;
            st.dirty.push(contact::Column::OwnerId);
        }
        report.absorb(line_report);
        if let Some(l) = line {
            st.model.line_id = Some(l);
            st.dirty.push(contact::Column::LineId);
        }
        if let Some(d) = disposition {
            st.model.disposition_status_id = Some(d);
            st.dirty.push(contact::Column::DispositionStatusId);
        }
        (head, report)
    }

    /// The rules on the contact's related rows (§4.7–§4.8): numbers, note, tag, sequence.
    fn add_related(
        &mut self,
        st: &mut ContactState,
        target: &Target<'_>,
        links: &rules::Links,
        intake_id: uuid::Uuid,
    ) -> rules::Report {
        let Target {
            account_id,
            contact_id,
            existing,
            lead,
        } = *target;
        let (numbers, mut report) = rules::numbers(lead, contact_id, existing, |n| {
            rules::owner_of(&self.snap, account_id, n)
        });
        for n in numbers {
            let primary = !existing && n.as_str() == st.model.phone_number;
            self.add_number(account_id, contact_id, n, label_of(lead, n), primary);
        }

        let (note, note_report) = rules::note(lead);
        report.absorb(note_report);
        if let Some(body) = note {
            self.add_note(account_id, contact_id, intake_id, body);
        }

        let (tag, tag_report) = rules::tag(links, &st.tags);
        report.absorb(tag_report);
        if let Some(tag_id) = tag {
            st.tags.insert(tag_id);
            self.add_tag(account_id, contact_id, tag_id);
        }

        let (enrollment, sequence_report) = rules::sequence(links, &st.active, lead);
        report.absorb(sequence_report);
        self.enroll(st, account_id, enrollment);
        report
    }
}

fn label_of(lead: &Lead, n: &PhoneNumber) -> Option<String> {
    if n == &lead.phone_number {
        return None;
    }
    lead.other_phone_numbers
        .iter()
        .find(|o| &o.phone_number == n)
        .and_then(|o| o.label.clone())
}

/// Writes everything the batch planned but the PowerDialer entries.
pub(crate) async fn flush(txn: &DatabaseTransaction, batch: Batch) -> Result<(), DbErr> {
    let Batch {
        contacts,
        created,
        numbers,
        notes,
        tags,
        disenroll,
        enrollments,
        now,
        ..
    } = batch;
    write_contacts(txn, contacts, &created).await?;
    if !numbers.is_empty() {
        contact_phone_number::Entity::insert_many(numbers)
            .exec_without_returning(txn)
            .await?;
    }
    if !notes.is_empty() {
        contact_note::Entity::insert_many(notes)
            .exec_without_returning(txn)
            .await?;
    }
    if !tags.is_empty() {
        contact_tag::Entity::insert_many(tags)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await?;
    }
    write_enrollments(txn, disenroll, enrollments, now).await
}

/// New contacts and changed ones in one statement: a changed contact's row is written
/// whole from the copy read under its lock, so an upsert on the id is its update. New
/// contacts go first, in creation order; changed ones in id order.
async fn write_contacts(
    txn: &DatabaseTransaction,
    mut contacts: HashMap<i64, ContactState>,
    created: &[i64],
) -> Result<(), DbErr> {
    let mut rows: Vec<contact::ActiveModel> = created
        .iter()
        .filter_map(|id| contacts.remove(id))
        .map(|s| s.model.into_active_model().reset_all())
        .collect();
    let mut changed: Vec<contact::Model> = contacts
        .into_values()
        .filter(|s| !s.dirty.is_empty())
        .map(|s| s.model)
        .collect();
    changed.sort_by_key(|m| m.id);
    rows.extend(
        changed
            .into_iter()
            .map(|m| m.into_active_model().reset_all()),
    );
    if rows.is_empty() {
        return Ok(());
    }
    use contact::Column as C;
    use sea_orm::Iterable;
    contact::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(C::Id)
                .update_columns(C::iter().filter(C::is_updatable))
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Ends the stored active enrollments of `disenroll` and inserts the new ones (ended when
/// a later lead of the transaction moved the contact on).
async fn write_enrollments(
    txn: &DatabaseTransaction,
    disenroll: Vec<i64>,
    enrollments: Vec<NewEnrollment>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if !disenroll.is_empty() {
        use sequence_enrollment::Column as C;
        sequence_enrollment::Entity::update_many()
            .col_expr(
                C::Status,
                sea_orm::sea_query::Expr::value(EnrollmentStatus::Disenrolled),
            )
            .col_expr(C::DisenrolledAt, now.into())
            .filter(C::ContactId.is_in(disenroll))
            .filter(C::Status.eq(EnrollmentStatus::Active))
            .exec(txn)
            .await?;
    }
    if enrollments.is_empty() {
        return Ok(());
    }
    let rows = enrollments
        .into_iter()
        .map(|e| sequence_enrollment::ActiveModel {
            account_id: Set(e.account_id),
            contact_id: Set(e.contact_id),
            sequence_id: Set(e.sequence_id),
            status: Set(if e.ended {
                EnrollmentStatus::Disenrolled
            } else {
                EnrollmentStatus::Active
            }),
            enrolled_at: Set(now),
            disenrolled_at: Set(e.ended.then_some(now)),
            ..Default::default()
        });
    sequence_enrollment::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Adds the planned PowerDialer entries under their owners' list locks, each at the top
/// (`min - 1`) or bottom (`max + 1`) of its owner's list, in lead order. Last thing before the
/// commit, so the list locks are held as briefly as possible.
pub(crate) async fn place_on_powerdialers(
    txn: &DatabaseTransaction,
    plans: &[PowerdialerPlan],
) -> Result<(), DbErr> {
    let now = Utc::now();
    if plans.is_empty() {
        return Ok(());
    }
    let mut users: Vec<i64> = plans.iter().map(|p| p.user_id).collect();
    users.sort_unstable();
    users.dedup();
    let keys: Vec<String> = users.iter().map(|u| sql::key::powerdialer(*u)).collect();
    sql::lock_all(txn, &keys).await?;
    let mut bounds = sql::powerdialer_bounds(txn, &users).await?;
    let mut rows = Vec::with_capacity(plans.len());
    for plan in plans {
        let b = bounds.get(&plan.user_id).copied();
        let position = match (b, plan.position) {
            (None, _) => 0,
            (Some((top, _)), PowerdialerPosition::Top) => top - 1,
            (Some((_, bottom)), PowerdialerPosition::Bottom) => bottom + 1,
        };
        bounds.insert(
            plan.user_id,
            match b {
                None => (position, position),
                Some((top, bottom)) => (top.min(position), bottom.max(position)),
            },
        );
        rows.push(powerdialer_item::ActiveModel {
            account_id: Set(plan.account_id),
            user_id: Set(plan.user_id),
            contact_id: Set(plan.contact_id),
            position: Set(position),
            status: Set(PowerdialerStatus::Queued),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        });
    }
    powerdialer_item::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
