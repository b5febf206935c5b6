//! One lead inside its transaction: match, create or update the contact, and every action
//! of §4.5–§4.9. The PowerDialer insert waits for the end of the transaction (see
//! [`place_on_powerdialers`]).

use super::fields;
use super::sql::{self, LinkCheck};
use super::{Action, BatchCtx, Intake, LockMode, Planned, Warning};
use chrono::Utc;
use rand::Rng;
use sea_orm::ActiveValue::{Set, Unchanged};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter,
    QuerySelect,
};
use shared::entities::{
    contact, contact_note, contact_phone_number, contact_tag, powerdialer_item, sequence_enrollment,
};
use shared::intake::IntakeStatus;
use shared::lead::{Lead, PowerdialerPosition};
use shared::phone::PhoneNumber;

/// A PowerDialer entry to add once the lead's other work is done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PowerdialerPlan {
    pub user_id: i64,
    pub account_id: i64,
    pub contact_id: i64,
    pub position: PowerdialerPosition,
}

/// Processes one lead; `None` when its contact is locked by another transaction and `ctx`
/// only tries locks (nothing has been written for the lead then).
pub(crate) async fn process(
    txn: &DatabaseTransaction,
    ctx: &mut BatchCtx,
    intake: &Intake,
) -> Result<Option<Planned>, DbErr> {
    let m = &intake.message;
    let lead = &m.lead;
    let account_id = m.account_id;
    let force = lead.flags.force_update;
    let numbers = lead.all_numbers();
    let owner_of = |ctx: &BatchCtx, n: &PhoneNumber| {
        ctx.owners
            .get(&(account_id, n.as_str().to_owned()))
            .copied()
    };

    // §4.1: the primary number's contact, else the oldest contact any number matches.
    let matched = owner_of(ctx, &lead.phone_number)
        .or_else(|| numbers.iter().filter_map(|n| owner_of(ctx, n)).min());
    let existing = match matched {
        Some(contact_id) => {
            let key = sql::key::contact(contact_id);
            match ctx.mode {
                LockMode::Wait => sql::lock(txn, &key).await?,
                LockMode::Try => {
                    if !sql::try_lock(txn, &key).await? {
                        return Ok(None);
                    }
                }
            }
            // Read after the lock: a fresh snapshot with every earlier writer's commit.
            Some(
                contact::Entity::find_by_id(contact_id)
                    .one(txn)
                    .await?
                    .ok_or_else(|| {
                        DbErr::RecordNotFound(format!("contact {contact_id} vanished"))
                    })?,
            )
        }
        None => None,
    };

    let mut actions: Vec<Action> = Vec::new();
    let mut warnings: Vec<Warning> = Vec::new();
    let links = &lead.links;
    let check = if [
        links.user_id,
        links.ring_group_id,
        links.line_id,
        links.tag_id,
        links.disposition_status_id,
        links.sequence_id,
    ]
    .iter()
    .any(Option::is_some)
    {
        sql::check_links(txn, account_id, links).await?
    } else {
        LinkCheck::default()
    };
    link_warnings(lead, &check, &mut warnings);

    // §4.2–4.4: the contact's own fields.
    let mut candidates = fields::from_lead(lead);
    let located_by = match &existing {
        Some(c) => PhoneNumber::from_e164(c.phone_number.clone()).ok(),
        None => Some(lead.phone_number.clone()),
    };
    if let Some(number) = located_by {
        let derived = fields::from_number(&number, existing.as_ref(), &candidates);
        candidates.extend(derived);
    }
    let changes = fields::changes(existing.as_ref(), &candidates, force);

    // §4.5–4.6: the owner.
    let owner = decide_owner(
        txn,
        lead,
        account_id,
        &check,
        existing.as_ref(),
        &mut actions,
        &mut warnings,
    )
    .await?;

    // §4.9: line and disposition, on create, or when blank, or with force_update.
    let settable = |have: Option<i64>, want: Option<i64>| -> Option<i64> {
        let want = want?;
        match existing {
            None => Some(want),
            Some(_) if (have.is_none() || force) && have != Some(want) => Some(want),
            Some(_) => None,
        }
    };
    let line = settable(
        existing.as_ref().and_then(|c| c.line_id),
        links.line_id.filter(|_| check.line),
    );
    let disposition = settable(
        existing.as_ref().and_then(|c| c.disposition_status_id),
        links
            .disposition_status_id
            .filter(|_| check.disposition_status),
    );

    let now = Utc::now();
    let mut changed = false;
    let contact_id = match &existing {
        None => {
            let mut am = contact::ActiveModel {
                account_id: Set(account_id),
                phone_number: Set(lead.phone_number.as_str().to_owned()),
                owner_id: Set(owner),
                line_id: Set(line),
                disposition_status_id: Set(disposition),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            };
            blank_fields(&mut am);
            fields::set(&mut am, &changes);
            let created = am.insert(txn).await?;
            actions.insert(
                0,
                Action::ContactCreated {
                    contact_id: created.id,
                },
            );
            let rows: Vec<contact_phone_number::ActiveModel> = numbers
                .iter()
                .map(|n| contact_phone_number::ActiveModel {
                    account_id: Set(account_id),
                    contact_id: Set(created.id),
                    phone_number: Set(n.as_str().to_owned()),
                    label: Set(label_of(lead, n)),
                    is_primary: Set(*n == &lead.phone_number),
                    created_at: Set(now),
                    ..Default::default()
                })
                .collect();
            contact_phone_number::Entity::insert_many(rows)
                .exec_without_returning(txn)
                .await?;
            for n in &numbers {
                ctx.owners
                    .insert((account_id, n.as_str().to_owned()), created.id);
            }
            created.id
        }
        Some(c) => {
            if !changes.is_empty() {
                let names = changes.iter().map(|(f, _)| f.as_str().to_owned()).collect();
                actions.insert(
                    0,
                    if force {
                        Action::ContactUpdated {
                            contact_id: c.id,
                            fields: names,
                        }
                    } else {
                        Action::ContactMerged {
                            contact_id: c.id,
                            fields: names,
                        }
                    },
                );
                changed = true;
            }
            changed |= owner != c.owner_id || line.is_some() || disposition.is_some();

            let mut added = Vec::new();
            for n in &numbers {
                match owner_of(ctx, n) {
                    None => added.push(contact_phone_number::ActiveModel {
                        account_id: Set(account_id),
                        contact_id: Set(c.id),
                        phone_number: Set(n.as_str().to_owned()),
                        label: Set(label_of(lead, n)),
                        is_primary: Set(false),
                        created_at: Set(now),
                        ..Default::default()
                    }),
                    Some(id) if id == c.id => {}
                    Some(other) => warnings.push(Warning::new(
                        if *n == &lead.phone_number {
                            "phone_number"
                        } else {
                            "other_phone_numbers"
                        },
                        format!(
                            "Phone number {n} already belongs to contact {other}; not added to contact {}.",
                            c.id
                        ),
                    )),
                }
            }
            if !added.is_empty() {
                for n in &added {
                    if let Set(p) = &n.phone_number {
                        actions.push(Action::PhoneNumberAdded {
                            phone_number: p.clone(),
                        });
                        ctx.owners.insert((account_id, p.clone()), c.id);
                    }
                }
                contact_phone_number::Entity::insert_many(added)
                    .exec_without_returning(txn)
                    .await?;
                changed = true;
            }
            c.id
        }
    };
    if let Some(l) = line {
        actions.push(Action::LineSet { line_id: l });
    }
    if let Some(d) = disposition {
        actions.push(Action::DispositionSet {
            disposition_status_id: d,
        });
    }

    // §4.3: the note is appended, whatever else happens.
    if let Some(body) = lead.notes.as_ref().filter(|b| !b.trim().is_empty()) {
        contact_note::Entity::insert(contact_note::ActiveModel {
            account_id: Set(account_id),
            contact_id: Set(contact_id),
            body: Set(body.clone()),
            intake_id: Set(Some(m.intake_id)),
            created_at: Set(now),
            ..Default::default()
        })
        .exec_without_returning(txn)
        .await?;
        actions.push(Action::NoteAdded);
        changed = true;
    }

    // §4.9: tag.
    if let Some(tag_id) = links.tag_id.filter(|_| check.tag) {
        let inserted = contact_tag::Entity::insert(contact_tag::ActiveModel {
            contact_id: Set(contact_id),
            tag_id: Set(tag_id),
            account_id: Set(account_id),
            created_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(txn)
        .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            actions.push(Action::TagAdded { tag_id });
            changed = true;
        }
    }

    // §4.8: sequence.
    if let Some(sequence_id) = links.sequence_id.filter(|_| check.sequence) {
        changed |= enroll(
            txn,
            lead,
            account_id,
            contact_id,
            existing.is_some(),
            sequence_id,
            &mut actions,
            &mut warnings,
        )
        .await?;
    }

    // §4.7: PowerDialer (placed at the end of the transaction).
    let mut powerdialer = None;
    if lead.flags.add_to_powerdialer {
        match owner {
            None => warnings.push(Warning::new(
                "add_to_powerdialer",
                "Contact has no owner; not added to a PowerDialer list.",
            )),
            Some(user_id) => {
                let queued = ctx.pd_planned.contains(&contact_id)
                    || (existing.is_some()
                        && powerdialer_item::Entity::find()
                            .select_only()
                            .column(powerdialer_item::Column::Id)
                            .filter(powerdialer_item::Column::AccountId.eq(account_id))
                            .filter(powerdialer_item::Column::ContactId.eq(contact_id))
                            .filter(powerdialer_item::Column::Status.eq("queued"))
                            .into_tuple::<i64>()
                            .one(txn)
                            .await?
                            .is_some());
                if queued {
                    warnings.push(Warning::new(
                        "add_to_powerdialer",
                        "Contact is already queued in a PowerDialer list; not added again.",
                    ));
                } else {
                    ctx.pd_planned.insert(contact_id);
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
    }

    let status = match &existing {
        None => IntakeStatus::Created,
        Some(_) if force => IntakeStatus::Updated,
        Some(_) if changed => IntakeStatus::Merged,
        Some(_) => IntakeStatus::Duplicate,
    };
    // The existing contact's row is written once, when everything else is known, so that
    // any change (a tag or a note too) moves updated_at.
    if let Some(c) = &existing
        && (changed || force)
    {
        let mut am = contact::ActiveModel {
            id: Unchanged(c.id),
            updated_at: Set(now),
            ..Default::default()
        };
        fields::set(&mut am, &changes);
        if owner != c.owner_id {
            am.owner_id = Set(owner);
        }
        if line.is_some() {
            am.line_id = Set(line);
        }
        if disposition.is_some() {
            am.disposition_status_id = Set(disposition);
        }
        am.update(txn).await?;
    }

    Ok(Some(Planned {
        status,
        contact_id,
        actions,
        warnings,
        powerdialer,
    }))
}

/// Every column of a new contact starts blank (the insert lists them all, so its prepared
/// statement is the same for every lead).
fn blank_fields(am: &mut contact::ActiveModel) {
    am.name = Set(None);
    am.first_name = Set(None);
    am.last_name = Set(None);
    am.company_name = Set(None);
    am.email = Set(None);
    am.lead_source = Set(None);
    am.source = Set(None);
    am.address = Set(None);
    am.city = Set(None);
    am.state = Set(None);
    am.zipcode = Set(None);
    am.country = Set(None);
    am.csf1 = Set(None);
    am.csf2 = Set(None);
    am.date_of_birth = Set(None);
    am.timezone = Set(None);
    am.website = Set(None);
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

/// A warning for every id the lead names that is not the account's (§2: another account's
/// id is treated exactly like a missing one).
fn link_warnings(lead: &Lead, check: &LinkCheck, warnings: &mut Vec<Warning>) {
    let l = &lead.links;
    let mut missing = |id: Option<i64>, ok: bool, field: &str, what: &str, consequence: &str| {
        if let Some(id) = id
            && !ok
        {
            warnings.push(Warning::new(
                field,
                format!("{what} {id} not found in this account; {consequence}."),
            ));
        }
    };
    missing(
        l.user_id,
        check.user,
        "user_id",
        "User",
        "owner not set from it",
    );
    missing(
        l.ring_group_id,
        check.ring_group,
        "ring_group_id",
        "Ring group",
        "distribution skipped",
    );
    missing(l.line_id, check.line, "line_id", "Line", "line not set");
    missing(l.tag_id, check.tag, "tag_id", "Tag", "tag not added");
    missing(
        l.disposition_status_id,
        check.disposition_status,
        "disposition_status_id",
        "Disposition status",
        "disposition not set",
    );
    missing(
        l.sequence_id,
        check.sequence,
        "sequence_id",
        "Sequence",
        "not enrolled",
    );
}

/// §4.5 ownership and §4.6 ring-group distribution: the contact's owner after this lead.
async fn decide_owner(
    txn: &DatabaseTransaction,
    lead: &Lead,
    account_id: i64,
    check: &LinkCheck,
    existing: Option<&contact::Model>,
    actions: &mut Vec<Action>,
    warnings: &mut Vec<Warning>,
) -> Result<Option<i64>, DbErr> {
    let flags = &lead.flags;
    let current = existing.and_then(|c| c.owner_id);
    let requested = lead.links.user_id.filter(|_| check.user);
    let may_change = existing.is_none() || flags.force_update || current.is_none();
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
            if requested.is_some_and(|u| u != owner) {
                warnings.push(Warning::new(
                    "user_id",
                    format!(
                        "Contact already has an owner (user {owner}); kept without force_update."
                    ),
                ));
            }
        }
        return Ok(current);
    }

    let mut owner = requested.or(current);
    let mut distributed = None;
    if flags.distribute_to_ring_group {
        match lead.links.ring_group_id {
            None => warnings.push(Warning::new(
                "ring_group_id",
                "distribute_to_ring_group is set but no ring_group_id was given; distribution skipped.",
            )),
            // Not the account's: link_warnings said so.
            Some(_) if !check.ring_group => {}
            Some(group) => {
                let members = sql::ring_group_members(txn, account_id, group).await?;
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
    Ok(owner)
}

/// §4.8. Returns whether the contact's enrollments changed.
#[allow(clippy::too_many_arguments)]
async fn enroll(
    txn: &DatabaseTransaction,
    lead: &Lead,
    account_id: i64,
    contact_id: i64,
    existing: bool,
    sequence_id: i64,
    actions: &mut Vec<Action>,
    warnings: &mut Vec<Warning>,
) -> Result<bool, DbErr> {
    use sequence_enrollment::Column as C;
    let active: Vec<i64> = if existing {
        sequence_enrollment::Entity::find()
            .select_only()
            .column(C::SequenceId)
            .filter(C::AccountId.eq(account_id))
            .filter(C::ContactId.eq(contact_id))
            .filter(C::Status.eq("active"))
            .into_tuple::<i64>()
            .all(txn)
            .await?
    } else {
        Vec::new()
    };
    if active.contains(&sequence_id) {
        return Ok(false);
    }
    let now = Utc::now();
    if !active.is_empty() {
        if !lead.flags.force_update_sequence {
            let list = active
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
            return Ok(false);
        }
        sequence_enrollment::Entity::update_many()
            .col_expr(C::Status, "disenrolled".into())
            .col_expr(C::DisenrolledAt, now.into())
            .filter(C::AccountId.eq(account_id))
            .filter(C::ContactId.eq(contact_id))
            .filter(C::Status.eq("active"))
            .exec(txn)
            .await?;
        for s in active {
            actions.push(Action::SequenceDisenrolled { sequence_id: s });
        }
    }
    sequence_enrollment::Entity::insert(sequence_enrollment::ActiveModel {
        account_id: Set(account_id),
        contact_id: Set(contact_id),
        sequence_id: Set(sequence_id),
        status: Set("active".into()),
        enrolled_at: Set(now),
        disenrolled_at: Set(None),
        ..Default::default()
    })
    .exec_without_returning(txn)
    .await?;
    actions.push(Action::SequenceEnrolled { sequence_id });
    Ok(true)
}

/// Adds the planned PowerDialer entries: per owner in user-id order, under the owner's list
/// lock, each at the top (`min - 1`) or bottom (`max + 1`) in lead order.
pub(crate) async fn place_on_powerdialers(
    txn: &DatabaseTransaction,
    _intakes: &[Intake],
    planned: &mut [(usize, &mut Planned)],
) -> Result<(), DbErr> {
    let mut users: Vec<i64> = planned
        .iter()
        .filter_map(|(_, p)| p.powerdialer.map(|pd| pd.user_id))
        .collect();
    users.sort_unstable();
    users.dedup();
    let now = Utc::now();
    for user_id in users {
        sql::lock(txn, &sql::key::powerdialer(user_id)).await?;
        let mut bounds = sql::powerdialer_bounds(txn, user_id).await?;
        let mut rows = Vec::new();
        for (_, p) in planned.iter_mut() {
            let Some(plan) = p.powerdialer.filter(|pd| pd.user_id == user_id) else {
                continue;
            };
            let position = match (bounds, plan.position) {
                (None, _) => 0,
                (Some((top, _)), PowerdialerPosition::Top) => top - 1,
                (Some((_, bottom)), PowerdialerPosition::Bottom) => bottom + 1,
            };
            bounds = Some(match bounds {
                None => (position, position),
                Some((top, bottom)) => (top.min(position), bottom.max(position)),
            });
            rows.push(powerdialer_item::ActiveModel {
                account_id: Set(plan.account_id),
                user_id: Set(user_id),
                contact_id: Set(plan.contact_id),
                position: Set(position),
                status: Set("queued".into()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
            p.actions.push(Action::PowerdialerAdded {
                user_id,
                position: plan.position,
            });
        }
        powerdialer_item::Entity::insert_many(rows)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}
