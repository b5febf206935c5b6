//! The leads of one transaction: each is planned in order against an in-memory view of the
//! contacts it touches (so a later lead sees what an earlier one did), then everything is
//! written in a handful of multi-row statements. A lead costs no round trip of its own
//! unless it changes an existing contact.

use super::fields;
use super::sql::{self, Member, Related, Snapshot};
use super::{Action, Intake, Planned, Warning};
use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use shared::entities::{
    contact, contact_note, contact_phone_number, contact_tag, powerdialer_item, sequence_enrollment,
};
use shared::intake::IntakeStatus;
use shared::lead::{Lead, PowerdialerPosition};
use shared::phone::PhoneNumber;
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
    snap: Snapshot,
    now: DateTime<Utc>,
    /// (account, E.164) → contact, kept up to date as leads add numbers.
    owners: HashMap<(i64, String), i64>,
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
        let owners = std::mem::take(&mut snap.owners);
        let new_ids = std::mem::take(&mut snap.new_ids).into();
        Self {
            snap,
            now: Utc::now(),
            owners,
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

    /// The contact `lead` belongs to by its numbers (§4.1): the primary number's contact,
    /// else the oldest contact any of its numbers belongs to.
    pub fn matched(&self, account_id: i64, lead: &Lead) -> Option<i64> {
        let owner = |n: &PhoneNumber| {
            self.owners
                .get(&(account_id, n.as_str().to_owned()))
                .copied()
        };
        owner(&lead.phone_number).or_else(|| lead.all_numbers().into_iter().filter_map(owner).min())
    }

    /// Adds contacts this transaction has locked, with what it needs to know of them.
    pub fn add_locked(&mut self, models: Vec<contact::Model>, mut related: Related) {
        for model in models {
            let id = model.id;
            self.contacts.insert(
                id,
                ContactState {
                    model,
                    new: false,
                    dirty: Vec::new(),
                    tags: related.tags.remove(&id).unwrap_or_default(),
                    active: related.active.remove(&id).unwrap_or_default(),
                    queued: related.queued.contains(&id),
                },
            );
        }
    }

    fn owner_of(&self, account_id: i64, n: &PhoneNumber) -> Option<i64> {
        self.owners
            .get(&(account_id, n.as_str().to_owned()))
            .copied()
    }
}

/// What the lead's linked ids are worth in its account.
struct Links {
    user: Option<i64>,
    ring_group: Option<i64>,
    line: Option<i64>,
    tag: Option<i64>,
    disposition: Option<i64>,
    sequence: Option<i64>,
}

/// Plans one lead; `None` when its contact is held by another transaction (nothing is
/// planned for it then).
pub(crate) fn plan(batch: &mut Batch, intake: &Intake) -> Result<Option<Planned>, DbErr> {
    let m = &intake.message;
    let lead = &m.lead;
    let account_id = m.account_id;
    let force = lead.flags.force_update;
    let matched = batch.matched(account_id, lead);
    let mut state = match matched {
        Some(id) => match batch.contacts.remove(&id) {
            Some(s) => Some(s),
            None => return Ok(None),
        },
        None => None,
    };
    // Existing from this lead's point of view: stored, or created by an earlier lead of the
    // transaction.
    let existing = state.is_some();

    let mut actions: Vec<Action> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    let links = check_links(&batch.snap, account_id, lead, &mut warnings);

    // §4.2–4.4: the contact's own fields.
    let current = state.as_ref().map(|s| &s.model);
    let mut candidates = fields::from_lead(lead);
    let located_by = match current {
        Some(c) => PhoneNumber::from_e164(c.phone_number.clone()).ok(),
        None => Some(lead.phone_number.clone()),
    };
    if let Some(number) = located_by {
        let derived = fields::from_number(&number, current, &candidates);
        candidates.extend(derived);
    }
    let changes = fields::changes(current, &candidates, force);

    // §4.5–4.6.
    let before = current.and_then(|c| c.owner_id);
    let owner = decide_owner(
        &batch.snap,
        lead,
        &links,
        existing,
        before,
        &mut actions,
        &mut warnings,
    );

    // §4.9: line and disposition, on create, or when blank, or with force_update.
    let settable = |have: Option<i64>, want: Option<i64>| -> Option<i64> {
        let want = want?;
        (!existing || ((have.is_none() || force) && have != Some(want))).then_some(want)
    };
    let line = settable(current.and_then(|c| c.line_id), links.line);
    let disposition = settable(
        current.and_then(|c| c.disposition_status_id),
        links.disposition,
    );

    let now = batch.now;
    let mut changed = false;
    let mut st = match state.take() {
        Some(s) => s,
        None => {
            let id = batch
                .new_ids
                .pop_front()
                .ok_or_else(|| DbErr::Custom("Failed to reserve a contact id".into()))?;
            ContactState {
                model: blank_contact(id, account_id, &lead.phone_number, now),
                new: true,
                dirty: Vec::new(),
                tags: HashSet::new(),
                active: Vec::new(),
                queued: false,
            }
        }
    };
    let contact_id = st.model.id;
    let columns = fields::apply(&mut st.model, &changes);
    if !existing {
        actions.insert(0, Action::ContactCreated { contact_id });
        batch.created.push(contact_id);
    } else if !columns.is_empty() {
        let names = changes.iter().map(|(f, _)| f.as_str().to_owned()).collect();
        actions.insert(
            0,
            if force {
                Action::ContactUpdated {
                    contact_id,
                    fields: names,
                }
            } else {
                Action::ContactMerged {
                    contact_id,
                    fields: names,
                }
            },
        );
        st.dirty.extend(columns);
        changed = true;
    }
    if owner != st.model.owner_id {
        st.model.owner_id = owner;
        st.dirty.push(contact::Column::OwnerId);
        changed = true;
    }
    if let Some(l) = line {
        st.model.line_id = Some(l);
        st.dirty.push(contact::Column::LineId);
        actions.push(Action::LineSet { line_id: l });
        changed = true;
    }
    if let Some(d) = disposition {
        st.model.disposition_status_id = Some(d);
        st.dirty.push(contact::Column::DispositionStatusId);
        actions.push(Action::DispositionSet {
            disposition_status_id: d,
        });
        changed = true;
    }

    // Numbers: a new contact takes them all; an existing one those nobody has yet.
    for n in lead.all_numbers() {
        match batch.owner_of(account_id, n) {
            None => {
                batch.numbers.push(contact_phone_number::ActiveModel {
                    account_id: Set(account_id),
                    contact_id: Set(contact_id),
                    phone_number: Set(n.as_str().to_owned()),
                    label: Set(label_of(lead, n)),
                    is_primary: Set(!existing && n.as_str() == st.model.phone_number),
                    created_at: Set(now),
                    ..Default::default()
                });
                batch
                    .owners
                    .insert((account_id, n.as_str().to_owned()), contact_id);
                if existing {
                    actions.push(Action::PhoneNumberAdded {
                        phone_number: n.as_str().to_owned(),
                    });
                    changed = true;
                }
            }
            Some(id) if id == contact_id => {}
            Some(other) => warnings.push(Warning::new(
                if n == &lead.phone_number {
                    "phone_number"
                } else {
                    "other_phone_numbers"
                },
                format!(
                    "Phone number {n} already belongs to contact {other}; not added to contact {contact_id}."
                ),
            )),
        }
    }

    // §4.3: the note is appended, whatever else happens.
    if let Some(body) = lead.notes.as_ref().filter(|b| !b.trim().is_empty()) {
        batch.notes.push(contact_note::ActiveModel {
            account_id: Set(account_id),
            contact_id: Set(contact_id),
            body: Set(body.clone()),
            intake_id: Set(Some(m.intake_id)),
            created_at: Set(now),
            ..Default::default()
        });
        actions.push(Action::NoteAdded);
        changed = true;
    }

    // §4.9: tag.
    if let Some(tag_id) = links.tag
        && st.tags.insert(tag_id)
    {
        batch.tags.push(contact_tag::ActiveModel {
            contact_id: Set(contact_id),
            tag_id: Set(tag_id),
            account_id: Set(account_id),
            created_at: Set(now),
        });
        actions.push(Action::TagAdded { tag_id });
        changed = true;
    }

    // §4.8: sequence.
    if let Some(sequence_id) = links.sequence {
        changed |= enroll(
            batch,
            &mut st,
            lead,
            account_id,
            sequence_id,
            &mut actions,
            &mut warnings,
        );
    }

    // §4.7: PowerDialer (placed after every lead is planned).
    let mut powerdialer = None;
    if lead.flags.add_to_powerdialer {
        match owner {
            None => warnings.push(Warning::new(
                "add_to_powerdialer",
                "Contact has no owner; not added to a PowerDialer list.",
            )),
            Some(_) if st.queued => warnings.push(Warning::new(
                "add_to_powerdialer",
                "Contact is already queued in a PowerDialer list; not added again.",
            )),
            Some(user_id) => {
                st.queued = true;
                // Recorded now; the entry is placed last in the transaction (see
                // place_on_powerdialers), and if that fails nothing of the lead commits.
                actions.push(Action::PowerdialerAdded {
                    user_id,
                    position: lead.powerdialer_position,
                });
                powerdialer = Some(PowerdialerPlan {
                    user_id,
                    account_id,
                    contact_id,
                    position: lead.powerdialer_position,
                });
                changed = true;
            }
        }
    }

    let status = if !existing {
        IntakeStatus::Created
    } else if force {
        IntakeStatus::Updated
    } else if changed {
        IntakeStatus::Merged
    } else {
        IntakeStatus::Duplicate
    };
    if existing && (changed || force) {
        st.model.updated_at = now;
        if !st.new {
            st.dirty.push(contact::Column::UpdatedAt);
        }
    }
    batch.contacts.insert(contact_id, st);
    Ok(Some(Planned {
        status,
        contact_id,
        actions,
        warnings,
        powerdialer,
    }))
}

pub(super) fn blank_contact(
    id: i64,
    account_id: i64,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> contact::Model {
    contact::Model {
        id,
        account_id,
        phone_number: phone.as_str().to_owned(),
        name: None,
        first_name: None,
        last_name: None,
        company_name: None,
        email: None,
        lead_source: None,
        source: None,
        address: None,
        city: None,
        state: None,
        zipcode: None,
        country: None,
        csf1: None,
        csf2: None,
        date_of_birth: None,
        timezone: None,
        website: None,
        owner_id: None,
        line_id: None,
        disposition_status_id: None,
        created_at: now,
        updated_at: now,
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

/// The lead's ids that are the account's, and a warning for every other one (§2: another
/// account's id is treated exactly like a missing one).
fn check_links(
    snap: &Snapshot,
    account_id: i64,
    lead: &Lead,
    warnings: &mut Vec<Warning>,
) -> Links {
    let l = &lead.links;
    let mut keep =
        |id: Option<i64>, set: &HashSet<(i64, i64)>, field: &str, what: &str, consequence: &str| {
            let id = id?;
            if set.contains(&(account_id, id)) {
                return Some(id);
            }
            warnings.push(Warning::new(
                field,
                format!("{what} {id} not found in this account; {consequence}."),
            ));
            None
        };
    Links {
        user: keep(
            l.user_id,
            &snap.users,
            "user_id",
            "User",
            "owner not set from it",
        ),
        ring_group: keep(
            l.ring_group_id,
            &snap.ring_groups,
            "ring_group_id",
            "Ring group",
            "distribution skipped",
        ),
        line: keep(l.line_id, &snap.lines, "line_id", "Line", "line not set"),
        tag: keep(l.tag_id, &snap.tags, "tag_id", "Tag", "tag not added"),
        disposition: keep(
            l.disposition_status_id,
            &snap.dispositions,
            "disposition_status_id",
            "Disposition status",
            "disposition not set",
        ),
        sequence: keep(
            l.sequence_id,
            &snap.sequences,
            "sequence_id",
            "Sequence",
            "not enrolled",
        ),
    }
}

/// §4.5 ownership and §4.6 ring-group distribution: the contact's owner after this lead.
fn decide_owner(
    snap: &Snapshot,
    lead: &Lead,
    links: &Links,
    existing: bool,
    current: Option<i64>,
    actions: &mut Vec<Action>,
    warnings: &mut Vec<Warning>,
) -> Option<i64> {
    let flags = &lead.flags;
    let may_change = !existing || flags.force_update || current.is_none();
    if !may_change {
        if let Some(owner) = current {
            if flags.distribute_to_ring_group {
                warnings.push(Warning::new(
                    "distribute_to_ring_group",
                    format!(
                        "Contact already has an owner (user {owner}); not redistributed without force_update."
                    ),
                ));
            }
            if links.user.is_some_and(|u| u != owner) {
                warnings.push(Warning::new(
                    "user_id",
                    format!(
                        "Contact already has an owner (user {owner}); kept without force_update."
                    ),
                ));
            }
        }
        return current;
    }

    let mut owner = links.user.or(current);
    let mut distributed = None;
    if flags.distribute_to_ring_group {
        match (lead.links.ring_group_id, links.ring_group) {
            (None, _) => warnings.push(Warning::new(
                "ring_group_id",
                "distribute_to_ring_group is set but no ring_group_id was given; distribution skipped.",
            )),
            // Not the account's: check_links said so.
            (Some(_), None) => {}
            (Some(_), Some(group)) => {
                let members: &[Member] = snap.members.get(&group).map_or(&[], Vec::as_slice);
                let active: Vec<i64> = members.iter().filter(|m| m.active).map(|m| m.user_id).collect();
                let available: Vec<i64> = members
                    .iter()
                    .filter(|m| m.active && m.available)
                    .map(|m| m.user_id)
                    .collect();
                let check_available =
                    flags.check_available_users || flags.check_available_users_with_fallback;
                let pool: &[i64] = if !check_available {
                    &active
                } else if !available.is_empty() {
                    &available
                } else if flags.check_available_users_with_fallback {
                    &active
                } else {
                    &[]
                };
                if pool.is_empty() {
                    let (field, why) = if check_available {
                        ("check_available_users", "no member is active and available")
                    } else {
                        ("ring_group_id", "it has no active member")
                    };
                    warnings.push(Warning::new(
                        field,
                        format!("Ring group {group}: {why}; distribution skipped."),
                    ));
                } else {
                    let pick = pool[rand::rng().random_range(0..pool.len())];
                    owner = Some(pick);
                    distributed = Some((group, pick));
                }
            }
        }
    }
    match distributed {
        Some((ring_group_id, user_id)) => actions.push(Action::RingGroupDistributed {
            ring_group_id,
            user_id,
        }),
        None => {
            if let Some(user_id) = owner.filter(|o| Some(*o) != current) {
                actions.push(Action::OwnerAssigned { user_id });
            }
        }
    }
    owner
}

/// §4.8. Returns whether the contact's enrollments changed.
fn enroll(
    batch: &mut Batch,
    st: &mut ContactState,
    lead: &Lead,
    account_id: i64,
    sequence_id: i64,
    actions: &mut Vec<Action>,
    warnings: &mut Vec<Warning>,
) -> bool {
    if st.active.contains(&sequence_id) {
        return false;
    }
    let contact_id = st.model.id;
    if !st.active.is_empty() {
        if !lead.flags.force_update_sequence {
            let list = st
                .active
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            warnings.push(Warning::new(
                "sequence_id",
                format!(
                    "Contact is active in sequence {list}; not enrolled in {sequence_id} without force_update_sequence."
                ),
            ));
            return false;
        }
        for ended in std::mem::take(&mut st.active) {
            // Enrolled earlier in this transaction: insert it ended; else end the stored one.
            match batch
                .enrollments
                .iter_mut()
                .find(|e| e.contact_id == contact_id && e.sequence_id == ended && !e.ended)
            {
                Some(pending) => pending.ended = true,
                None => {
                    if !batch.disenroll.contains(&contact_id) {
                        batch.disenroll.push(contact_id);
                    }
                }
            }
            actions.push(Action::SequenceDisenrolled { sequence_id: ended });
        }
    }
    batch.enrollments.push(NewEnrollment {
        account_id,
        contact_id,
        sequence_id,
        ended: false,
    });
    st.active.push(sequence_id);
    actions.push(Action::SequenceEnrolled { sequence_id });
    true
}

/// Writes everything the batch planned but the PowerDialer entries.
pub(crate) async fn flush(txn: &DatabaseTransaction, batch: Batch) -> Result<(), DbErr> {
    let Batch {
        mut contacts,
        created,
        numbers,
        notes,
        tags,
        disenroll,
        enrollments,
        now,
        ..
    } = batch;
    // New contacts and changed ones in one statement: a changed contact's row is written
    // whole from the copy read under its lock, so an upsert on the id is its update.
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
    if !rows.is_empty() {
        use contact::Column as C;
        contact::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(C::Id)
                    .update_columns([
                        C::Name,
                        C::FirstName,
                        C::LastName,
                        C::CompanyName,
                        C::Email,
                        C::LeadSource,
                        C::Source,
                        C::Address,
                        C::City,
                        C::State,
                        C::Zipcode,
                        C::Country,
                        C::Csf1,
                        C::Csf2,
                        C::DateOfBirth,
                        C::Timezone,
                        C::Website,
                        C::OwnerId,
                        C::LineId,
                        C::DispositionStatusId,
                        C::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
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
    if !disenroll.is_empty() {
        use sequence_enrollment::Column as C;
        sequence_enrollment::Entity::update_many()
            .col_expr(C::Status, "disenrolled".into())
            .col_expr(C::DisenrolledAt, now.into())
            .filter(C::ContactId.is_in(disenroll))
            .filter(C::Status.eq("active"))
            .exec(txn)
            .await?;
    }
    if !enrollments.is_empty() {
        let rows = enrollments
            .into_iter()
            .map(|e| sequence_enrollment::ActiveModel {
                account_id: Set(e.account_id),
                contact_id: Set(e.contact_id),
                sequence_id: Set(e.sequence_id),
                status: Set(if e.ended { "disenrolled" } else { "active" }.into()),
                enrolled_at: Set(now),
                disenrolled_at: Set(e.ended.then_some(now)),
                ..Default::default()
            });
        sequence_enrollment::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
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
            status: Set("queued".into()),
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
