//! The events of a batch's leads (§11), written in the batch's transaction as one outbox
//! row (the delivery loops turn it into events and deliveries after the commit): an event
//! exists if and only if the work it reports committed.
//!
//! Only what some enabled endpoint of the lead's account wants is built (the snapshot read
//! the subscriptions under the same locks), so an account without endpoints costs nothing.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr};
use shared::entities::contact;
use shared::events::{Event, EventType, Subscriptions};
use shared::intake::IntakeStatus;
use shared::outcome::Action;
use shared::read::{self, ContactView, IntakeView, PowerdialerView};
use std::collections::{HashMap, HashSet};

use super::{Attempt, Planned};

/// The kind of contact event a planned lead reports, if any.
fn contact_event(p: &Planned) -> Option<EventType> {
    match p.status {
        IntakeStatus::Created => Some(EventType::ContactCreated),
        IntakeStatus::Updated | IntakeStatus::Merged => Some(EventType::ContactUpdated),
        _ => None,
    }
}

/// The contacts whose contact events some endpoint wants, of the planned leads.
pub(super) fn wanted(
    subs: &Subscriptions,
    intakes: &[Attempt],
    planned: &[(usize, &Planned)],
) -> HashSet<i64> {
    if subs.is_empty() {
        return HashSet::new();
    }
    planned
        .iter()
        .filter(|(i, p)| {
            contact_event(p).is_some_and(|k| subs.wants(intakes[*i].message.account_id, k))
        })
        .map(|(_, p)| p.contact_id)
        .collect()
}

/// The contacts the contact events carry, as the read API shows them: `built` (the
/// contacts the batch created, from what it wrote), `stored` (the rows of the other
/// contacts of `wanted` it holds, as they are once it commits) with what other tables hold
/// of them read, and any other contact of `wanted` read whole.
pub(super) async fn contacts(
    txn: &DatabaseTransaction,
    wanted: &HashSet<i64>,
    mut built: HashMap<i64, ContactView>,
    stored: Vec<contact::Model>,
) -> Result<HashMap<i64, ContactView>, DbErr> {
    let held: HashSet<i64> = stored.iter().map(|m| m.id).collect();
    let mut ids: Vec<i64> = wanted
        .iter()
        .filter(|id| !built.contains_key(id) && !held.contains(id))
        .copied()
        .collect();
    ids.sort_unstable();
    let mut rows = stored;
    rows.extend(read::contact_rows(txn, ids).await?);
    built.extend(read::views(txn, rows).await?.into_iter().map(|c| (c.id, c)));
    Ok(built)
}

/// The events of the planned leads `planned` (index into `intakes`, plan), their contacts as
/// [`contacts`] read them with the PowerDialer entries `placed` added.
pub(super) fn build(
    subs: &Subscriptions,
    intakes: &[Attempt],
    planned: &[(usize, &Planned)],
    contacts: &mut HashMap<i64, ContactView>,
    placed: &[(i64, PowerdialerView)],
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DbErr> {
    let mut out = Vec::new();
    if subs.is_empty() {
        return Ok(out);
    }
    for (contact_id, entry) in placed {
        if let Some(c) = contacts.get_mut(contact_id) {
            c.powerdialer = Some(entry.clone());
        }
    }
    let wants = |account: i64, kind: EventType| subs.wants(account, kind);
    for (i, p) in planned {
        let attempt = &intakes[*i];
        let m = &attempt.message;
        let account = m.account_id;
        if wants(account, EventType::LeadProcessed) {
            let view = IntakeView {
                intake_id: m.intake_id,
                status: p.status,
                contact_id: Some(p.contact_id),
                actions: p.actions.clone(),
                warnings: p.warnings.clone(),
                attempts: i32::try_from(attempt.number()).unwrap_or(i32::MAX),
                last_error: None,
                received_at: m.received_at,
                processed_at: Some(now),
            };
            out.push(intake_event(account, EventType::LeadProcessed, &view, now)?);
        }
        if let Some(kind) = contact_event(p).filter(|k| wants(account, *k))
            && let Some(c) = contacts.get(&p.contact_id)
        {
            let id = c.id;
            out.push(
                Event::new(account, kind, now, c, || serde_json::json!({"id": id}))
                    .map_err(json_err)?
                    .intake(m.intake_id)
                    .contact(Some(id)),
            );
        }
        if wants(account, EventType::PolicyBlocked) {
            for a in &p.actions {
                if let Action::PolicyBlocked { .. } = a {
                    let data = blocked(a, m.intake_id, p.contact_id, None);
                    out.push(
                        Event::new(account, EventType::PolicyBlocked, now, &data, || {
                            data.clone()
                        })
                        .map_err(json_err)?
                        .intake(m.intake_id)
                        .contact(Some(p.contact_id)),
                    );
                }
            }
        }
    }
    Ok(out)
}

/// An event carrying an intake record.
pub(crate) fn intake_event(
    account: i64,
    kind: EventType,
    view: &IntakeView,
    now: DateTime<Utc>,
) -> Result<Event, DbErr> {
    let id = view.intake_id;
    Ok(Event::new(
        account,
        kind,
        now,
        view,
        || serde_json::json!({"intake_id": id}),
    )
    .map_err(json_err)?
    .intake(id)
    .contact(view.contact_id))
}

/// The data of a `policy.blocked` event: the verdict (a [`Action::PolicyBlocked`]) and
/// what it held back.
pub(crate) fn blocked(
    verdict: &Action,
    intake_id: uuid::Uuid,
    contact_id: i64,
    message_id: Option<i64>,
) -> serde_json::Value {
    let mut data = serde_json::to_value(verdict).unwrap_or_default();
    if let Some(o) = data.as_object_mut() {
        o.remove("type");
        o.insert("intake_id".into(), intake_id.to_string().into());
        o.insert("contact_id".into(), contact_id.into());
        if let Some(id) = message_id {
            o.insert("message_id".into(), id.into());
        }
    }
    data
}

fn json_err(e: serde_json::Error) -> DbErr {
    DbErr::Json(e.to_string())
}
