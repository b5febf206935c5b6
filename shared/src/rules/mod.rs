//! The §4 rules, one function each, over what [`crate::snapshot`] reads. A rule takes what
//! it reads and returns its decision with a [`Report`]: the actions it took, the warnings it
//! gives and whether the contact changed. Nothing here touches the database: the worker
//! runs the rules for a lead in order and writes what they decide; the validate endpoint
//! runs the same rules to tell what the worker would do. Ring-group randomness comes in as
//! a parameter, so a test can fix it.

pub mod fields;
mod plan;

pub use plan::{Judge, Landing, NewConsent, NewNumber, Plan, RelatedPlan, RowPlan, plan};

use crate::entities::contact;
use crate::intake::IntakeStatus;
use crate::lead::{LINKS, Lead, LeadLinks};
use crate::outcome::{Action, Warning};
use crate::phone::PhoneNumber;
use crate::policy::{Reason, Verdict};
use crate::snapshot::{Member, Snapshot};
use chrono::{DateTime, Utc};
use fields::{Field, Value};
use rand::Rng;
use std::collections::{HashMap, HashSet};

/// What a rule did for a lead.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Report {
    pub actions: Vec<Action>,
    pub warnings: Vec<Warning>,
    /// The contact, or what hangs off it (numbers, notes, tags, enrollments, PowerDialer
    /// entries), changed.
    pub changed: bool,
}

impl Report {
    fn action(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// An action that changes the contact.
    fn change(&mut self, action: Action) {
        self.actions.push(action);
        self.changed = true;
    }

    fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.warnings.push(Warning::new(field, message));
    }

    /// Appends what another rule did.
    pub fn absorb(&mut self, other: Report) {
        self.actions.extend(other.actions);
        self.warnings.extend(other.warnings);
        self.changed |= other.changed;
    }
}

/// §4.1: the contact a lead of `account_id` belongs to by its numbers: the primary number's
/// contact, else the oldest (lowest id) contact any of its numbers belongs to.
pub fn matched(snap: &Snapshot, account_id: i64, lead: &Lead) -> Option<i64> {
    let owner = |n: &PhoneNumber| owner_of(snap, account_id, n);
    owner(&lead.phone_number).or_else(|| lead.all_numbers().into_iter().filter_map(owner).min())
}

/// The contact of the account that has number `n`.
pub fn owner_of(snap: &Snapshot, account_id: i64, n: &PhoneNumber) -> Option<i64> {
    snap.owners
        .get(&(account_id, n.as_str().to_owned()))
        .copied()
}

/// A contact row with only its number: what a new contact starts from.
pub fn blank_contact(
    id: i64,
    account_id: i64,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> contact::Model {
    contact::Model {
        id,
        account_id,
        phone_number: phone.as_str().to_owned(),
        created_at: now,
        updated_at: now,
        ..Default::default()
    }
}

/// §2: the lead's ids that are the account's, and a warning for every other one (another
/// account's id is treated exactly like a missing one).
pub(crate) fn links(snap: &Snapshot, account_id: i64, lead: &Lead) -> (LeadLinks, Report) {
    let mut kept = lead.links;
    let mut report = Report::default();
    for field in LINKS {
        let id = kept.get_mut(field.link);
        if let Some(n) = *id
            && !snap.ids(field.link).contains(&(account_id, n))
        {
            report.warn(field.name, field.not_found(n));
            *id = None;
        }
    }
    (kept, report)
}

/// §4.2–4.4: the contact's own fields to write: the lead's values, and what its number
/// tells (name parts, state, timezone…), by the create / fill-blank / force rules.
/// `current` is `None` for a new contact.
pub(crate) fn contact_fields(
    current: Option<&contact::Model>,
    lead: &Lead,
    force: bool,
) -> Vec<(Field, Value)> {
    let mut candidates = fields::from_lead(lead);
    let located_by = match current {
        Some(c) => PhoneNumber::from_e164(c.phone_number.clone()).ok(),
        None => Some(lead.phone_number.clone()),
    };
    if let Some(number) = located_by {
        let derived = fields::from_number(&number, current, &candidates);
        candidates.extend(derived);
    }
    fields::changes(current, &candidates, force)
}

/// The action that heads a lead's list: the contact created, or the fields a merge filled
/// in or force_update overwrote (none when nothing of the contact's own fields changed).
pub(crate) fn contact_action(
    existing: bool,
    force: bool,
    contact_id: i64,
    changed: &[(Field, Value)],
) -> Option<Action> {
    if !existing {
        return Some(Action::ContactCreated { contact_id });
    }
    if changed.is_empty() {
        return None;
    }
    let fields = changed.iter().map(|(f, _)| f.as_str().to_owned()).collect();
    Some(if force {
        Action::ContactUpdated { contact_id, fields }
    } else {
        Action::ContactMerged { contact_id, fields }
    })
}

/// §4.5 ownership and §4.6 ring-group distribution: the contact's owner after this lead.
/// `current` is its owner before; `rng` picks among the eligible members.
pub(crate) fn owner(
    members: &HashMap<i64, Vec<Member>>,
    lead: &Lead,
    links: &LeadLinks,
    existing: bool,
    current: Option<i64>,
    rng: &mut impl Rng,
) -> (Option<i64>, Report) {
    let flags = &lead.flags;
    let mut report = Report::default();
    let may_change = !existing || flags.force_update || current.is_none();
    if !may_change {
        if let Some(owner) = current {
            if flags.distribute_to_ring_group {
                report.warn(
                    "distribute_to_ring_group",
                    format!(
                        "Contact already has an owner (user {owner}); not redistributed without force_update."
                    ),
                );
            }
            if links.user_id.is_some_and(|u| u != owner) {
                report.warn(
                    "user_id",
                    format!(
                        "Contact already has an owner (user {owner}); kept without force_update."
                    ),
                );
            }
        }
        return (current, report);
    }

    let distributed = if flags.distribute_to_ring_group {
        distribute(members, lead, links, rng, &mut report)
    } else {
        None
    };
    let owner = match distributed {
        Some((ring_group_id, user_id)) => {
            report.action(Action::RingGroupDistributed {
                ring_group_id,
                user_id,
            });
            Some(user_id)
        }
        None => {
            let owner = links.user_id.or(current);
            if let Some(user_id) = owner.filter(|o| Some(*o) != current) {
                report.action(Action::OwnerAssigned { user_id });
            }
            owner
        }
    };
    report.changed = owner != current;
    (owner, report)
}

/// §4.6: the ring group and the member picked, or why nobody was (a warning).
fn distribute(
    members: &HashMap<i64, Vec<Member>>,
    lead: &Lead,
    links: &LeadLinks,
    rng: &mut impl Rng,
    report: &mut Report,
) -> Option<(i64, i64)> {
    let flags = &lead.flags;
    let group = match (lead.links.ring_group_id, links.ring_group_id) {
        (None, _) => {
            report.warn(
                "ring_group_id",
                "distribute_to_ring_group is set but no ring_group_id was given; distribution skipped.",
            );
            return None;
        }
        // Not the account's: `links` said so.
        (Some(_), None) => return None,
        (Some(_), Some(group)) => group,
    };
    let members: &[Member] = members.get(&group).map_or(&[], Vec::as_slice);
    let active: Vec<i64> = members
        .iter()
        .filter(|m| m.active)
        .map(|m| m.user_id)
        .collect();
    let available: Vec<i64> = members
        .iter()
        .filter(|m| m.active && m.available)
        .map(|m| m.user_id)
        .collect();
    let check_available = flags.check_available_users || flags.check_available_users_with_fallback;
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
        report.warn(
            field,
            format!("Ring group {group}: {why}; distribution skipped."),
        );
        return None;
    }
    Some((group, pool[rng.random_range(0..pool.len())]))
}

/// §4.9: the line and the disposition to set: on create, or when blank, or with
/// force_update.
pub(crate) fn line_and_disposition(
    current: Option<&contact::Model>,
    links: &LeadLinks,
    force: bool,
) -> (Option<i64>, Option<i64>, Report) {
    let settable = |have: Option<i64>, want: Option<i64>| -> Option<i64> {
        let want = want?;
        (current.is_none() || ((have.is_none() || force) && have != Some(want))).then_some(want)
    };
    let line = settable(current.and_then(|c| c.line_id), links.line_id);
    let disposition = settable(
        current.and_then(|c| c.disposition_status_id),
        links.disposition_status_id,
    );
    let mut report = Report::default();
    if let Some(line_id) = line {
        report.change(Action::LineSet { line_id });
    }
    if let Some(disposition_status_id) = disposition {
        report.change(Action::DispositionSet {
            disposition_status_id,
        });
    }
    (line, disposition, report)
}

/// §4.1 numbers: the lead's numbers to add to `contact_id`: all of them for a new contact,
/// for an existing one those nobody has yet; a number of another contact stays there (a
/// warning). `owner_of` says whose a number is now.
pub(crate) fn numbers(
    lead: &Lead,
    contact_id: i64,
    existing: bool,
    owner_of: impl Fn(&PhoneNumber) -> Option<i64>,
) -> (Vec<&PhoneNumber>, Report) {
    let mut report = Report::default();
    let mut add = Vec::new();
    for n in lead.all_numbers() {
        match owner_of(n) {
            None => {
                add.push(n);
                if existing {
                    report.change(Action::PhoneNumberAdded {
                        phone_number: n.as_str().to_owned(),
                    });
                }
            }
            Some(id) if id == contact_id => {}
            Some(other) => report.warn(
                if n == &lead.phone_number {
                    "phone_number"
                } else {
                    "other_phone_numbers"
                },
                format!(
                    "Phone number {n} already belongs to contact {other}; not added to contact {contact_id}."
                ),
            ),
        }
    }
    (add, report)
}

/// §4.3: the note to append, whatever else happens (a blank one is none).
pub(crate) fn note(lead: &Lead) -> (Option<&str>, Report) {
    let mut report = Report::default();
    let body = lead.notes.as_deref().filter(|b| !b.trim().is_empty());
    if body.is_some() {
        report.change(Action::NoteAdded);
    }
    (body, report)
}

/// §4.9: the tag to add, unless the contact has it.
pub(crate) fn tag(links: &LeadLinks, has: &HashSet<i64>) -> (Option<i64>, Report) {
    let mut report = Report::default();
    let tag = links.tag_id.filter(|t| !has.contains(t));
    if let Some(tag_id) = tag {
        report.change(Action::TagAdded { tag_id });
    }
    (tag, report)
}

/// What §4.8 does to a contact's enrollments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// Active enrollments that end.
    pub end: Vec<i64>,
    /// The sequence the contact is enrolled in.
    pub enroll: Option<i64>,
}

/// §4.8: enrolls in the lead's sequence unless the contact is active in it; a contact
/// active in another is moved only with force_update_sequence.
pub(crate) fn sequence(links: &LeadLinks, active: &[i64], lead: &Lead) -> (Enrollment, Report) {
    let mut report = Report::default();
    let Some(sequence_id) = links.sequence_id.filter(|s| !active.contains(s)) else {
        return (Enrollment::default(), report);
    };
    if !active.is_empty() && !lead.flags.force_update_sequence {
        let list = active
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        report.warn(
            "sequence_id",
            format!(
                "Contact is active in sequence {list}; not enrolled in {sequence_id} without force_update_sequence."
            ),
        );
        return (Enrollment::default(), report);
    }
    for &ended in active {
        report.change(Action::SequenceDisenrolled { sequence_id: ended });
    }
    report.change(Action::SequenceEnrolled { sequence_id });
    (
        Enrollment {
            end: active.to_vec(),
            enroll: Some(sequence_id),
        },
        report,
    )
}

/// §4.7 and §9: the owner whose PowerDialer list gets the contact, when the lead asks for
/// it, the contact has an owner and is not queued yet, and the contact policy allows a call
/// (`verdict`, asked only then). Outside the calling window the entry waits for the window
/// (`not_before`); a number on the do-not-contact list, a missing consent or an unknown
/// local time add nothing.
pub(crate) fn powerdialer(
    lead: &Lead,
    owner: Option<i64>,
    queued: bool,
    verdict: impl FnOnce() -> Verdict,
) -> (Option<Queued>, Report, Option<Verdict>) {
    let mut report = Report::default();
    if !lead.flags.add_to_powerdialer {
        return (None, report, None);
    }
    let user_id = match owner {
        None => {
            report.warn(
                "add_to_powerdialer",
                "Contact has no owner; not added to a PowerDialer list.",
            );
            return (None, report, None);
        }
        Some(_) if queued => {
            report.warn(
                "add_to_powerdialer",
                "Contact is already queued in a PowerDialer list; not added again.",
            );
            return (None, report, None);
        }
        Some(user_id) => user_id,
    };
    let v = verdict();
    let not_before = match v.reason {
        None => None,
        Some(reason) => {
            report.action(Action::PolicyBlocked {
                channel: v.channel,
                reason,
                rule: v.rule.clone(),
                next_allowed_at: v.next_allowed_at,
            });
            match reason {
                Reason::OutsideHours | Reason::FrequencyCap => v.next_allowed_at,
                Reason::Dnc | Reason::NoConsent | Reason::UnknownLocalTime => {
                    report.warn(
                        "add_to_powerdialer",
                        format!(
                            "Not added to a PowerDialer list: {}.",
                            blocked_because(reason)
                        ),
                    );
                    return (None, report, Some(v));
                }
            }
        }
    };
    report.change(Action::PowerdialerAdded {
        user_id,
        position: lead.powerdialer_position,
        not_before,
    });
    (
        Some(Queued {
            user_id,
            not_before,
        }),
        report,
        Some(v),
    )
}

/// A PowerDialer entry a lead adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub user_id: i64,
    /// Not to be dialed before this instant (§9).
    pub not_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why the policy refused, as the end of a sentence.
fn blocked_because(reason: Reason) -> &'static str {
    match reason {
        Reason::Dnc => "the number is on the do-not-contact list",
        Reason::NoConsent => "the account requires consent for calls and the contact has none",
        Reason::UnknownLocalTime => {
            "the contact's local time is unknown (no timezone, state or area code tells it)"
        }
        Reason::OutsideHours => "outside the contact's calling window",
        Reason::FrequencyCap => "the contact was reached as often as the law allows today",
    }
}

/// §4.1: what the intake is: created for a new contact, updated under force_update, merged
/// when anything changed, else a duplicate.
pub(crate) fn status(existing: bool, force: bool, changed: bool) -> IntakeStatus {
    if !existing {
        IntakeStatus::Created
    } else if force {
        IntakeStatus::Updated
    } else if changed {
        IntakeStatus::Merged
    } else {
        IntakeStatus::Duplicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn lead() -> Lead {
        Lead::of_number(PhoneNumber::from_e164("+18185550100".into()).expect("e164"))
    }

    fn member(user_id: i64, active: bool, available: bool) -> Member {
        Member {
            user_id,
            active,
            available,
        }
    }

    fn group(members: Vec<Member>) -> HashMap<i64, Vec<Member>> {
        HashMap::from([(7, members)])
    }

    fn distributing(check_available: bool, fallback: bool) -> (Lead, LeadLinks) {
        let mut l = lead();
        l.links.ring_group_id = Some(7);
        l.flags.distribute_to_ring_group = true;
        l.flags.check_available_users = check_available;
        l.flags.check_available_users_with_fallback = fallback;
        let links = LeadLinks {
            ring_group_id: Some(7),
            ..LeadLinks::default()
        };
        (l, links)
    }

    #[test]
    fn distribution_picks_what_the_rng_says_among_eligible_members_only() {
        let members = group(vec![
            member(1, true, false),
            member(2, false, true),
            member(3, true, true),
            member(4, true, true),
        ]);
        let (l, links) = distributing(true, false);
        let mut seen = HashSet::new();
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let (owner, report) = owner(&members, &l, &links, false, None, &mut rng);
            seen.insert(owner.expect("picked"));
            assert!(report.changed);
            assert!(matches!(
                report.actions[..],
                [Action::RingGroupDistributed {
                    ring_group_id: 7,
                    ..
                }]
            ));
        }
        assert_eq!(seen, HashSet::from([3, 4]), "only active and available");
        // The same seed, the same pick.
        let pick = |seed| {
            owner(
                &members,
                &l,
                &links,
                false,
                None,
                &mut StdRng::seed_from_u64(seed),
            )
            .0
        };
        assert_eq!(pick(42), pick(42));
    }

    #[test]
    fn without_an_eligible_member_distribution_is_skipped_or_falls_back() {
        let members = group(vec![member(1, true, false), member(2, false, true)]);
        let mut rng = StdRng::seed_from_u64(0);
        let (strict, links) = distributing(true, false);
        let (o, report) = owner(&members, &strict, &links, false, None, &mut rng);
        assert_eq!(o, None);
        assert_eq!(report.warnings[0].field, "check_available_users");
        let (fallback, links) = distributing(false, true);
        let (o, _) = owner(&members, &fallback, &links, false, None, &mut rng);
        assert_eq!(o, Some(1), "the active member when nobody is available");
    }

    #[test]
    fn an_owned_contact_keeps_its_owner_without_force_update() {
        let (mut l, mut links) = distributing(false, false);
        links.user_id = Some(9);
        l.links.user_id = Some(9);
        let members = group(vec![member(1, true, true)]);
        let (o, report) = owner(
            &members,
            &l,
            &links,
            true,
            Some(5),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(o, Some(5));
        assert!(!report.changed && report.actions.is_empty());
        let fields: Vec<&str> = report.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(fields, ["distribute_to_ring_group", "user_id"]);
        l.flags.force_update = true;
        let (o, report) = owner(
            &members,
            &l,
            &links,
            true,
            Some(5),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(o, Some(1), "force_update redistributes");
        assert!(report.changed);
    }

    #[test]
    fn a_sequence_switch_needs_force_update_sequence() {
        let mut l = lead();
        let links = LeadLinks {
            sequence_id: Some(2),
            ..LeadLinks::default()
        };
        let (e, report) = sequence(&links, &[1], &l);
        assert_eq!(e, Enrollment::default());
        assert_eq!(report.warnings[0].field, "sequence_id");
        assert!(!report.changed);
        l.flags.force_update_sequence = true;
        let (e, report) = sequence(&links, &[1], &l);
        assert_eq!(
            e,
            Enrollment {
                end: vec![1],
                enroll: Some(2)
            }
        );
        assert_eq!(
            report.actions,
            [
                Action::SequenceDisenrolled { sequence_id: 1 },
                Action::SequenceEnrolled { sequence_id: 2 }
            ]
        );
        let (e, report) = sequence(&links, &[2], &l);
        assert_eq!(e, Enrollment::default(), "already active: nothing");
        assert_eq!(report, Report::default());
    }

    #[test]
    fn powerdialer_needs_an_owner_and_a_contact_not_yet_queued() {
        let mut l = lead();
        let allowed = || verdict(None, None);
        assert_eq!(
            powerdialer(&l, Some(3), false, allowed),
            (None, Report::default(), None)
        );
        l.flags.add_to_powerdialer = true;
        assert_eq!(powerdialer(&l, None, false, allowed).0, None);
        assert_eq!(powerdialer(&l, Some(3), true, allowed).0, None);
        let (queued, report, v) = powerdialer(&l, Some(3), false, allowed);
        assert_eq!(queued.map(|q| (q.user_id, q.not_before)), Some((3, None)));
        assert!(report.changed && v.is_some());
    }

    fn verdict(reason: Option<Reason>, next: Option<DateTime<Utc>>) -> Verdict {
        Verdict {
            channel: crate::policy::Channel::Call,
            reason,
            rule: "US-federal".into(),
            next_allowed_at: next,
        }
    }

    #[test]
    fn the_policy_holds_an_entry_until_its_window_or_refuses_it() {
        let mut l = lead();
        l.flags.add_to_powerdialer = true;
        let at = DateTime::from_timestamp(1_800_000_000, 0);
        let (queued, report, _) = powerdialer(&l, Some(3), false, || {
            verdict(Some(Reason::OutsideHours), at)
        });
        assert_eq!(
            queued.map(|q| q.not_before),
            Some(at),
            "queued for the window"
        );
        assert!(report.actions.iter().any(|a| matches!(
            a,
            Action::PolicyBlocked {
                reason: Reason::OutsideHours,
                ..
            }
        )));
        for reason in [Reason::Dnc, Reason::NoConsent, Reason::UnknownLocalTime] {
            let (queued, report, v) =
                powerdialer(&l, Some(3), false, || verdict(Some(reason), None));
            assert_eq!(queued, None, "{reason:?} adds nothing");
            assert!(!report.changed, "{reason:?}");
            assert_eq!(report.warnings.len(), 1, "{reason:?}");
            assert_eq!(v.and_then(|v| v.reason), Some(reason));
        }
    }

    #[test]
    fn line_and_disposition_follow_create_blank_force() {
        let links = LeadLinks {
            line_id: Some(4),
            disposition_status_id: Some(6),
            ..LeadLinks::default()
        };
        let (line, disposition, report) = line_and_disposition(None, &links, false);
        assert_eq!((line, disposition), (Some(4), Some(6)));
        assert!(report.changed);
        let mut c = super::blank_contact(
            1,
            1,
            &PhoneNumber::from_e164("+18185550100".into()).expect("e164"),
            chrono::Utc::now(),
        );
        c.line_id = Some(3);
        let (line, disposition, _) = line_and_disposition(Some(&c), &links, false);
        assert_eq!((line, disposition), (None, Some(6)), "a set line stays");
        let (line, _, _) = line_and_disposition(Some(&c), &links, true);
        assert_eq!(line, Some(4), "force_update overwrites");
    }

    #[test]
    fn statuses_follow_existing_force_and_changed() {
        assert_eq!(status(false, true, false), IntakeStatus::Created);
        assert_eq!(status(true, true, false), IntakeStatus::Updated);
        assert_eq!(status(true, false, true), IntakeStatus::Merged);
        assert_eq!(status(true, false, false), IntakeStatus::Duplicate);
    }
}
