//! A lead's [`Plan`]: every rule of §4 run in order over the contact the lead lands on, and
//! what they decide, changing nothing. The worker carries a plan out in its transaction;
//! the validate endpoint only reads its contact, outcome and warnings.

use super::fields::{self, Field, Value};
use super::{Enrollment, Report};
use crate::entities::contact;
use crate::intake::IntakeStatus;
use crate::lead::{Lead, LeadLinks};
use crate::outcome::{Action, Warning};
use crate::phone::PhoneNumber;
use crate::policy::{self, Channel, Consent, Facts, Verdict, table::RuleTable};
use crate::snapshot::{ContactView, Snapshot};
use chrono::{DateTime, Utc};
use rand::Rng;

/// The contact a lead lands on.
#[derive(Debug, Clone, Copy)]
pub struct Landing<'a> {
    /// The matched contact, or the new one the lead creates.
    pub contact: &'a ContactView,
    /// The lead matched it: stored, or created by an earlier lead of the same transaction.
    pub existing: bool,
}

/// What the contact policy (§9) judges a lead's attempts by, besides the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    pub rules: &'a RuleTable,
    /// The instant of the decision.
    pub now: DateTime<Utc>,
    /// When the lead was received: the time of its consent when it names none.
    pub received_at: DateTime<Utc>,
}

/// What a lead does to its contact, and what it reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub contact_id: i64,
    /// The lead matched the contact (see [`Landing::existing`]).
    pub existing: bool,
    pub status: IntakeStatus,
    /// The contact's own action first (created, updated or merged), then each rule's.
    pub actions: Vec<Action>,
    pub warnings: Vec<Warning>,
    pub row: RowPlan,
    pub related: RelatedPlan,
    /// The PowerDialer entry the contact gets.
    pub powerdialer: Option<super::Queued>,
    /// The contact policy's verdicts on the lead's attempts (§9).
    pub verdicts: Vec<Verdict>,
    /// The matched contact changed, or force_update touched it: its row is written back
    /// with a new `updated_at`.
    pub touched: bool,
}

/// What the lead writes on the contact's own row (§4.2–§4.6, §4.9).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowPlan {
    /// The fields to write, provided and derived.
    pub fields: Vec<(Field, Value)>,
    /// The owner after the lead.
    pub owner: Option<i64>,
    pub line: Option<i64>,
    pub disposition: Option<i64>,
}

impl RowPlan {
    /// Writes the plan into a copy of the contact's row.
    pub fn apply(&self, model: &mut contact::Model) {
        fields::apply(model, &self.fields);
        model.owner_id = self.owner;
        if let Some(line) = self.line {
            model.line_id = Some(line);
        }
        if let Some(disposition) = self.disposition {
            model.disposition_status_id = Some(disposition);
        }
    }
}

/// What the lead adds to what hangs off the contact (§4.1, §4.3, §4.8, §4.9).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelatedPlan {
    pub numbers: Vec<NewNumber>,
    /// Consent records the lead brings, one per channel (§9).
    pub consents: Vec<NewConsent>,
    pub note: Option<String>,
    pub tag: Option<i64>,
    pub enrollment: Enrollment,
}

/// A consent record the contact gets: a channel of the lead's consent, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub channel: crate::lead::ConsentChannel,
    pub given_at: DateTime<Utc>,
}

/// A number the contact gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNumber {
    pub number: PhoneNumber,
    pub label: Option<String>,
    /// The primary number of a contact the lead creates.
    pub primary: bool,
}

/// Plans one lead of `account_id` (§4): links, the contact's own row, what hangs off it,
/// the PowerDialer, then the outcome. The contact's numbers are looked up in `snap`.
pub fn plan(
    snap: &Snapshot,
    account_id: i64,
    lead: &Lead,
    landing: Landing<'_>,
    judge: Judge<'_>,
    rng: &mut impl Rng,
) -> Plan {
    let (links, mut report) = super::links(snap, account_id, lead);
    let (row, head, row_report) = own_row(snap, lead, &links, landing, rng);
    report.absorb(row_report);
    let (mut related, related_report) = related(snap, account_id, lead, &links, landing);
    report.absorb(related_report);
    related.consents = consents(lead, judge.received_at);
    if !related.consents.is_empty() {
        report.change(Action::ConsentRecorded {
            channels: related.consents.iter().map(|c| c.channel).collect(),
        });
    }
    let call = || {
        let contact = planned_contact(landing.contact, &row);
        let consents = Consents {
            stored: &landing.contact.consents,
            new: &related.consents,
        };
        verdict(Channel::Call, snap, account_id, &contact, consents, judge)
    };
    let (powerdialer, powerdialer_report, verdict) =
        super::powerdialer(lead, row.owner, landing.contact.queued, call);
    report.absorb(powerdialer_report);

    let force = lead.flags.force_update;
    let mut actions = report.actions;
    if let Some(head) = head {
        actions.insert(0, head);
    }
    Plan {
        contact_id: landing.contact.model.id,
        existing: landing.existing,
        status: super::status(landing.existing, force, report.changed),
        actions,
        warnings: report.warnings,
        row,
        related,
        powerdialer,
        verdicts: verdict.into_iter().collect(),
        touched: landing.existing && (report.changed || force),
    }
}

/// The consent records `lead` brings: one per channel of its `consent`.
fn consents(lead: &Lead, received_at: DateTime<Utc>) -> Vec<NewConsent> {
    let Some(c) = &lead.evidence.consent else {
        return Vec::new();
    };
    c.channels
        .iter()
        .map(|channel| NewConsent {
            channel: *channel,
            given_at: c.given_at.unwrap_or(received_at),
        })
        .collect()
}

/// The contact's row as the lead leaves it.
fn planned_contact(contact: &ContactView, row: &RowPlan) -> contact::Model {
    let mut model = contact.model.clone();
    row.apply(&mut model);
    model
}

/// A contact's consent records and those its lead brings.
#[derive(Clone, Copy)]
struct Consents<'a> {
    stored: &'a [Consent],
    new: &'a [NewConsent],
}

/// The policy's verdict on reaching `contact` on `channel` (§9), with the consent the lead
/// brings counted.
fn verdict(
    channel: Channel,
    snap: &Snapshot,
    account_id: i64,
    contact: &contact::Model,
    consents: Consents<'_>,
    judge: Judge<'_>,
) -> Verdict {
    let number = PhoneNumber::from_e164(contact.phone_number.clone());
    let consents: Vec<Consent> = consents
        .new
        .iter()
        .filter_map(|c| {
            let channel = match c.channel {
                crate::lead::ConsentChannel::Call => Channel::Call,
                crate::lead::ConsentChannel::Sms => Channel::Sms,
                crate::lead::ConsentChannel::Email => return None,
            };
            Some(Consent {
                channel,
                given_at: c.given_at,
                revoked_at: None,
            })
        })
        .chain(consents.stored.iter().cloned())
        .collect();
    let dnc = snap
        .dnc
        .get(&(account_id, contact.phone_number.clone()))
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let account = snap.policies.get(&account_id).copied().unwrap_or_default();
    match number {
        Ok(number) => {
            let facts = Facts {
                number: &number,
                timezone: contact.timezone.as_deref().and_then(|t| t.parse().ok()),
                state: contact.state.as_deref(),
                consents: &consents,
                dnc,
                recent_sends: &[],
            };
            policy::decide(channel, &facts, &account, judge.rules, judge.now)
        }
        // A stored number is E.164 by a CHECK constraint; should one not parse, nothing
        // is known of where the contact is.
        Err(_) => Verdict {
            channel,
            reason: Some(policy::Reason::UnknownLocalTime),
            rule: "US-federal".into(),
            next_allowed_at: None,
        },
    }
}

/// The rules on the contact's own row (§4.2–§4.6, §4.9): fields, owner, line and
/// disposition; and the contact's own action (created, updated or merged).
fn own_row(
    snap: &Snapshot,
    lead: &Lead,
    links: &LeadLinks,
    landing: Landing<'_>,
    rng: &mut impl Rng,
) -> (RowPlan, Option<Action>, Report) {
    let Landing { contact, existing } = landing;
    let force = lead.flags.force_update;
    let current = existing.then_some(&contact.model);
    let fields = super::contact_fields(current, lead, force);
    let (owner, mut report) = super::owner(
        &snap.members,
        lead,
        links,
        existing,
        current.and_then(|c| c.owner_id),
        rng,
    );
    let (line, disposition, line_report) = super::line_and_disposition(current, links, force);
    let head = super::contact_action(existing, force, contact.model.id, &fields);
    if existing && !fields.is_empty() {
        report.changed = true;
    }
    report.absorb(line_report);
    let row = RowPlan {
        fields,
        owner,
        line,
        disposition,
    };
    (row, head, report)
}

/// The rules on what hangs off the contact (§4.1, §4.3, §4.8, §4.9): numbers, note, tag,
/// sequence.
fn related(
    snap: &Snapshot,
    account_id: i64,
    lead: &Lead,
    links: &LeadLinks,
    landing: Landing<'_>,
) -> (RelatedPlan, Report) {
    let Landing { contact, existing } = landing;
    let (numbers, mut report) = super::numbers(lead, contact.model.id, existing, |n| {
        super::owner_of(snap, account_id, n)
    });
    let numbers = numbers
        .into_iter()
        .map(|n| NewNumber {
            number: n.clone(),
            label: label_of(lead, n),
            primary: !existing && n.as_str() == contact.model.phone_number,
        })
        .collect();
    let (note, note_report) = super::note(lead);
    report.absorb(note_report);
    let (tag, tag_report) = super::tag(links, &contact.tags);
    report.absorb(tag_report);
    let (enrollment, sequence_report) = super::sequence(links, &contact.active, lead);
    report.absorb(sequence_report);
    let related = RelatedPlan {
        numbers,
        consents: Vec::new(),
        note: note.map(str::to_owned),
        tag,
        enrollment,
    };
    (related, report)
}

/// The label the lead gives number `n` (the primary number has none).
fn label_of(lead: &Lead, n: &PhoneNumber) -> Option<String> {
    if n == &lead.phone_number {
        return None;
    }
    lead.other_phone_numbers
        .iter()
        .find(|o| &o.phone_number == n)
        .and_then(|o| o.label.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::OtherPhoneNumber;
    use crate::rules::{blank_contact, matched};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const ACCOUNT: i64 = 1;

    fn judge(rules: &RuleTable) -> Judge<'_> {
        let now = Utc::now();
        Judge {
            rules,
            now,
            received_at: now,
        }
    }

    fn number(e164: &str) -> PhoneNumber {
        PhoneNumber::from_e164(e164.into()).expect("e164")
    }

    fn lead(primary: &str, others: &[&str]) -> Lead {
        Lead {
            other_phone_numbers: others
                .iter()
                .map(|n| OtherPhoneNumber {
                    label: Some("work".into()),
                    phone_number: number(n),
                })
                .collect(),
            ..Lead::of_number(number(primary))
        }
    }

    /// Contact 2 has +12125550002 (its primary), contact 3 has +18185550003 as a second
    /// number.
    fn snapshot() -> Snapshot {
        let mut snap = Snapshot::default();
        for (n, contact) in [("+12125550002", 2), ("+18185550003", 3)] {
            snap.owners.insert((ACCOUNT, n.to_owned()), contact);
        }
        snap
    }

    fn stored(id: i64, primary: &str) -> ContactView {
        ContactView::new(blank_contact(
            id,
            ACCOUNT,
            &number(primary),
            chrono::Utc::now(),
        ))
    }

    #[test]
    fn a_lead_matches_its_primary_numbers_contact_else_the_oldest_of_its_numbers() {
        let snap = snapshot();
        // The first matching number in the lead's order is contact 3's; contact 2 is older.
        let l = lead("+13105550001", &["+18185550003", "+12125550002"]);
        assert_eq!(matched(&snap, ACCOUNT, &l), Some(2));
        let l = lead("+18185550003", &["+12125550002"]);
        assert_eq!(
            matched(&snap, ACCOUNT, &l),
            Some(3),
            "the primary's contact"
        );
        assert_eq!(matched(&snap, 9, &l), None, "another account's numbers");
    }

    #[test]
    fn a_number_of_another_contact_stays_there_with_a_warning() {
        let snap = snapshot();
        let l = lead("+13105550001", &["+18185550003", "+12125550002"]);
        let contact = stored(2, "+12125550002");
        let landing = Landing {
            contact: &contact,
            existing: true,
        };
        let rules = policy::table::shipped();
        let p = plan(
            &snap,
            ACCOUNT,
            &l,
            landing,
            judge(&rules),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(p.contact_id, 2);
        assert_eq!(p.status, IntakeStatus::Merged);
        assert!(p.touched);
        assert_eq!(
            p.related.numbers,
            [NewNumber {
                number: number("+13105550001"),
                label: None,
                primary: false,
            }]
        );
        assert_eq!(
            p.warnings,
            [Warning::new(
                "other_phone_numbers",
                "Phone number +18185550003 already belongs to contact 3; not added to contact 2."
            )]
        );
    }

    #[test]
    fn a_new_contact_gets_every_number_and_its_own_action_first() {
        let snap = Snapshot::default();
        let mut l = lead("+13105550001", &["+13105550009"]);
        l.notes = Some("Call me".into());
        let contact = stored(7, "+13105550001");
        let landing = Landing {
            contact: &contact,
            existing: false,
        };
        let rules = policy::table::shipped();
        let p = plan(
            &snap,
            ACCOUNT,
            &l,
            landing,
            judge(&rules),
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(p.status, IntakeStatus::Created);
        assert!(!p.touched, "a new row is inserted whole");
        assert_eq!(
            p.actions,
            [Action::ContactCreated { contact_id: 7 }, Action::NoteAdded]
        );
        let primaries: Vec<bool> = p.related.numbers.iter().map(|n| n.primary).collect();
        assert_eq!(primaries, [true, false]);
        assert_eq!(p.related.numbers[1].label.as_deref(), Some("work"));
        assert!(p.warnings.is_empty());
    }
}
