//! One lead's journey (§12): every step the pipeline recorded, in time order, each with its
//! reason — received, checks, the dedupe decision, fields changed and left, owner and ring
//! group, the contact policy's verdicts, the PowerDialer, the sequence and its messages,
//! the outbound events and their attempts, retries and the dead letter — and on top, the
//! answer to "why was this lead (not) called?".
//!
//! Everything comes from records the pipeline writes anyway: the intake record, the
//! messages, the events with their deliveries and attempts.

use super::Ctx;
use super::html::{self, Tab, badge, esc, time};
use crate::web::respond::Body;
use chrono::{DateTime, Utc};
use hyper::Response;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement};
use shared::contact_fields::TextField;
use shared::outcome::{Action, Warning};
use std::fmt::Write as _;
use strum::IntoEnumIterator;
use uuid::Uuid;

/// One step of the timeline.
struct Step {
    at: DateTime<Utc>,
    /// Keeps steps of one instant in the order they happened.
    order: u32,
    kind: &'static str,
    title: String,
    detail: String,
}

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

fn get<T: sea_orm::TryGetable>(r: &QueryResult, c: &str) -> Result<T, DbErr> {
    r.try_get("", c)
}

/// `GET /console/leads/{id}`.
pub(super) async fn page(ctx: &Ctx<'_>, param: &str) -> Response<Body> {
    let Ok(id) = param.parse::<Uuid>() else {
        return ctx.not_found("lead");
    };
    match build(ctx, id).await {
        Ok(Some((title, body))) => ctx.page(&title, Tab::Leads, &body),
        Ok(None) => ctx.not_found("lead"),
        Err(e) => ctx.failed(&e),
    }
}

async fn build(ctx: &Ctx<'_>, id: Uuid) -> Result<Option<(String, String)>, DbErr> {
    let db = &ctx.state.db;
    let Some(r) = db
        .query_one_raw(stmt(
            "SELECT i.status::text AS status, i.payload, i.contact_id, i.actions, i.warnings, \
                    i.attempts, i.last_error, i.received_at, i.processed_at, i.replay_count, \
                    i.replayed_at, i.replayed_by, \
                    coalesce(t.label, t.token_prefix || '…') AS token \
             FROM lead_intakes i LEFT JOIN api_tokens t ON t.id = i.token_id \
             WHERE i.id = $1 AND i.account_id = $2",
            vec![id.into(), ctx.account().into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let status: String = get(&r, "status")?;
    let payload: serde_json::Value = get(&r, "payload")?;
    let contact: Option<i64> = get(&r, "contact_id")?;
    let actions: Vec<Action> = serde_json::from_value(get(&r, "actions")?).unwrap_or_default();
    let warnings: Vec<Warning> = serde_json::from_value(get(&r, "warnings")?).unwrap_or_default();
    let attempts: i32 = get(&r, "attempts")?;
    let last_error: Option<String> = get(&r, "last_error")?;
    let received: DateTime<Utc> = get(&r, "received_at")?;
    let processed: Option<DateTime<Utc>> = get(&r, "processed_at")?;
    let replays: i32 = get(&r, "replay_count")?;
    let replayed_at: Option<DateTime<Utc>> = get(&r, "replayed_at")?;
    let replayed_by: Option<String> = get(&r, "replayed_by")?;
    let token: Option<String> = get(&r, "token")?;
    let phone = payload
        .get("phone_number")
        .and_then(|v| v.as_str())
        .unwrap_or("(no number)")
        .to_owned();

    let mut steps: Vec<Step> = Vec::new();
    let mut push = |at, order, kind, title: String, detail: String| {
        steps.push(Step {
            at,
            order,
            kind,
            title,
            detail,
        })
    };
    let source = payload
        .get("lead_source")
        .or_else(|| payload.get("source"))
        .and_then(|v| v.as_str());
    push(
        received,
        0,
        "received",
        "Received and accepted (202)".into(),
        format!(
            "Sent with token {}{}. Checked before the 202: a valid phone number, known fields, the account's rate limit.",
            esc(token.as_deref().unwrap_or("(removed)")),
            source
                .map(|s| format!(", lead source “{}”", esc(s)))
                .unwrap_or_default()
        ),
    );
    let done = processed.unwrap_or(received);
    if attempts > 1 || (status == "processing" && last_error.is_some()) {
        let failed = if status == "processing" || status == "dead_lettered" {
            attempts
        } else {
            attempts - 1
        };
        push(
            done,
            1,
            "retry",
            format!("{failed} attempt(s) failed and were retried"),
            last_error
                .as_deref()
                .filter(|_| status == "processing")
                .map(|e| format!("Last error: {}", esc(e)))
                .unwrap_or_else(|| "Transient failures are retried on the schedule (§4).".into()),
        );
    }
    if !warnings.is_empty() {
        let list: String = warnings
            .iter()
            .map(|w| {
                format!(
                    "<li><code>{}</code>: {}</li>",
                    esc(&w.field),
                    esc(&w.message)
                )
            })
            .collect();
        push(
            done,
            2,
            "checks",
            format!(
                "{} field(s) could not be honoured (the lead was still saved)",
                warnings.len()
            ),
            format!("<ul>{list}</ul>"),
        );
    }
    // The dedupe decision and the fields.
    let changed: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ContactUpdated { fields, .. } | Action::ContactMerged { fields, .. } => {
                Some(fields.clone())
            }
            _ => None,
        })
        .flatten()
        .collect();
    let given: Vec<&'static str> = TextField::iter()
        .map(TextField::as_str)
        .filter(|f| payload.get(*f).is_some_and(|v| !v.is_null() && v != ""))
        .collect();
    let left: Vec<&str> = given
        .iter()
        .copied()
        .filter(|f| !changed.iter().any(|c| c == f))
        .collect();
    let contact_link = |c: i64| format!(r#"<a href="/console/contacts/{c}">contact #{c}</a>"#);
    match (status.as_str(), contact) {
        ("created", Some(c)) => push(
            done,
            3,
            "dedupe",
            "New contact".into(),
            format!(
                "No contact of the account has {}: {} was created{}.",
                esc(&phone),
                contact_link(c),
                if given.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", esc(&given.join(", ")))
                }
            ),
        ),
        ("updated" | "merged" | "duplicate", Some(c)) => {
            let how = match status.as_str() {
                "updated" => "force_update overwrote",
                "merged" => "blank fields were filled",
                _ => "nothing of the contact changed",
            };
            push(
                done,
                3,
                "dedupe",
                format!("Matched an existing contact ({status})"),
                format!(
                    "{} already has the number {}, so the lead went to it: {how}.<br>Changed: {}.<br>Left as they were: {}.",
                    contact_link(c),
                    esc(&phone),
                    if changed.is_empty() {
                        "none".into()
                    } else {
                        esc(&changed.join(", "))
                    },
                    if left.is_empty() {
                        "none".into()
                    } else {
                        format!(
                            "{} (the contact had values; send force_update to overwrite)",
                            esc(&left.join(", "))
                        )
                    },
                ),
            );
        }
        _ => {}
    }
    for (n, a) in actions.iter().enumerate() {
        let order = 4 + u32::try_from(n).unwrap_or(0);
        let (kind, title, detail) = match a {
            Action::OwnerAssigned { user_id } => (
                "owner",
                format!("Owner: user {user_id}"),
                "Assigned by the lead's user_id.".to_owned(),
            ),
            Action::RingGroupDistributed {
                ring_group_id,
                user_id,
            } => (
                "owner",
                format!("Distributed to user {user_id}"),
                format!(
                    "Ring group {ring_group_id} chose user {user_id} (round robin among its members)."
                ),
            ),
            Action::PolicyBlocked {
                channel,
                reason,
                rule,
                next_allowed_at,
            } => (
                "policy",
                format!(
                    "Contact policy: {} blocked ({})",
                    channel.as_str(),
                    reason.as_str().replace('_', " ")
                ),
                format!(
                    "Rule {}.{}",
                    esc(rule),
                    next_allowed_at
                        .map(|t| format!(" Next allowed at {}.", time(t)))
                        .unwrap_or_else(|| " Not allowed until the cause changes.".into())
                ),
            ),
            Action::PowerdialerAdded {
                user_id,
                position,
                not_before,
            } => (
                "dialer",
                format!("Queued on user {user_id}'s PowerDialer"),
                format!(
                    "At the {} of the list{}.",
                    match position {
                        shared::lead::PowerdialerPosition::Top => "top",
                        shared::lead::PowerdialerPosition::Bottom => "bottom",
                    },
                    not_before
                        .map(|t| format!(
                            ", dialed from {} (the contact's calling window)",
                            time(t)
                        ))
                        .unwrap_or_default()
                ),
            ),
            Action::ConsentRecorded { channels } => (
                "policy",
                "Consent recorded".into(),
                format!(
                    "For {}.",
                    channels
                        .iter()
                        .map(|c| format!("{c:?}").to_lowercase())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Action::SequenceEnrolled { sequence_id } => (
                "sequence",
                format!("Enrolled in sequence {sequence_id}"),
                "Its first step was scheduled in the same transaction.".into(),
            ),
            Action::SequenceDisenrolled { sequence_id } => (
                "sequence",
                format!("Left sequence {sequence_id}"),
                "Its pending steps were cancelled.".into(),
            ),
            Action::TagAdded { tag_id } => ("other", format!("Tag {tag_id} added"), String::new()),
            Action::LineSet { line_id } => ("other", format!("Line {line_id} set"), String::new()),
            Action::DispositionSet {
                disposition_status_id,
            } => (
                "other",
                format!("Disposition {disposition_status_id} set"),
                String::new(),
            ),
            Action::NoteAdded => ("other", "Note added".into(), String::new()),
            Action::PhoneNumberAdded { phone_number } => (
                "other",
                format!("Number {} added", esc(phone_number)),
                String::new(),
            ),
            Action::ContactCreated { .. }
            | Action::ContactUpdated { .. }
            | Action::ContactMerged { .. } => continue,
        };
        push(done, order, kind, title, detail);
    }
    if let Some(c) = contact {
        for m in ctx
            .state
            .db
            .query_all_raw(stmt(
                "SELECT m.id, m.status, m.body, m.to_number, m.error_code, m.error_message, m.policy, \
                        m.due_at, m.sent_at, m.created_at, m.updated_at, st.position \
                 FROM messages m LEFT JOIN sequence_steps st ON st.id = m.step_id \
                 WHERE m.contact_id = $1 AND m.account_id = $2 AND m.intake_id = $3 ORDER BY m.id",
                vec![c.into(), ctx.account().into(), id.into()],
            ))
            .await?
        {
            let st: String = get(&m, "status")?;
            let pos: Option<i32> = get(&m, "position")?;
            let sent: Option<DateTime<Utc>> = get(&m, "sent_at")?;
            let created: DateTime<Utc> = get(&m, "created_at")?;
            let updated: DateTime<Utc> = get(&m, "updated_at")?;
            let due: Option<DateTime<Utc>> = get(&m, "due_at")?;
            let body: Option<String> = get(&m, "body")?;
            let code: Option<String> = get(&m, "error_code")?;
            let why: Option<String> = get(&m, "error_message")?;
            let policy: Option<serde_json::Value> = get(&m, "policy")?;
            let at = sent
                .unwrap_or(if st == "scheduled" { created } else { updated })
                .max(done);
            let mut detail = String::new();
            if let Some(b) = body {
                let _ = write!(detail, "“{}” ", esc(&b));
            }
            if let Some(d) = due.filter(|_| st == "scheduled") {
                let _ = write!(detail, "Due {}. ", time(d));
            }
            if let Some(p) = policy.filter(|_| st != "sent") {
                let _ = write!(
                    detail,
                    "Contact policy: {} ({}). ",
                    esc(p["reason"].as_str().unwrap_or("")),
                    esc(p["rule"].as_str().unwrap_or(""))
                );
            }
            if code.is_some() || why.is_some() {
                let _ = write!(
                    detail,
                    "{} {}",
                    esc(code.as_deref().unwrap_or("")),
                    esc(why.as_deref().unwrap_or(""))
                );
            }
            push(
                at,
                50,
                "message",
                format!("SMS step {}: {}", pos.map(|p| p.to_string()).unwrap_or_else(|| "?".into()), badge(&st)),
                detail,
            );
        }
    }
    for e in ctx
        .state
        .db
        .query_all_raw(stmt(
            "SELECT e.id, e.type, e.created_at, \
                    (SELECT coalesce(jsonb_agg(jsonb_build_object( \
                        'endpoint', d.endpoint_id, 'status', d.status, 'attempts', d.attempts, \
                        'log', (SELECT coalesce(jsonb_agg(jsonb_build_object('at', a.attempted_at, \
                                 'status', a.status_code, 'ms', a.latency_ms, 'error', a.error) ORDER BY a.id), '[]') \
                                FROM delivery_attempts a WHERE a.delivery_id = d.id)) ORDER BY d.id), '[]') \
                     FROM event_deliveries d WHERE d.event_id = e.id) AS deliveries \
             FROM events e WHERE e.intake_id = $1 AND e.account_id = $2 ORDER BY e.id",
            vec![id.into(), ctx.account().into()],
        ))
        .await?
    {
        let eid: Uuid = get(&e, "id")?;
        let kind: String = get(&e, "type")?;
        let at: DateTime<Utc> = get(&e, "created_at")?;
        let deliveries: serde_json::Value = get(&e, "deliveries")?;
        let mut detail = format!("<code>{}</code>", esc(&shared::events::webhook_id(eid)));
        detail.push_str("<ul>");
        for d in deliveries.as_array().into_iter().flatten() {
            let log: Vec<String> = d["log"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    let answer = a["status"]
                        .as_i64()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| format!("no answer ({})", a["error"].as_str().unwrap_or("")));
                    let when = a["at"]
                        .as_str()
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| time(t.with_timezone(&Utc)))
                        .unwrap_or_default();
                    format!("{when} → {} in {} ms", esc(&answer), a["ms"])
                })
                .collect();
            let _ = write!(
                detail,
                r#"<li><a href="/console/webhooks/{ep}">endpoint {ep}</a>: {} after {} attempt(s){}</li>"#,
                badge(d["status"].as_str().unwrap_or("")),
                d["attempts"],
                if log.is_empty() { String::new() } else { format!(": {}", log.join("; ")) },
                ep = d["endpoint"],
            );
        }
        detail.push_str("</ul>");
        // Written by the transaction that processed the lead: shown after its steps.
        push(at.max(done), 80, "event", format!("Event {}", esc(&kind)), detail);
    }
    if status == "dead_lettered" {
        push(
            processed.unwrap_or(received),
            90,
            "dead",
            "Dead-lettered".into(),
            format!(
                "After {attempts} attempt(s): {}. Replay it from <a href=\"/console/dead-letters\">Dead letters</a> once the cause is fixed.",
                esc(last_error.as_deref().unwrap_or("no reason recorded"))
            ),
        );
    }
    if let (Some(at), n) = (replayed_at, replays) {
        push(
            at,
            95,
            "retry",
            format!("Replayed from the dead-letter queue ({n}×)"),
            format!(
                "By {}.",
                esc(replayed_by.as_deref().unwrap_or("an operator"))
            ),
        );
    }
    steps.sort_by(|a, b| a.at.cmp(&b.at).then(a.order.cmp(&b.order)));

    let answer = called(&status, &actions, &payload, last_error.as_deref());
    let mut list = String::new();
    for s in &steps {
        let _ = write!(
            list,
            r#"<li class="step {kind}"><div class="when">{}</div><div class="what"><h3>{}</h3><p>{}</p></div></li>"#,
            time(s.at),
            s.title,
            s.detail,
            kind = s.kind
        );
    }
    let body = format!(
        r#"<p class="answer" role="status"><strong>Was it called?</strong> {answer}</p>
<dl class="facts"><dt>Intake</dt><dd><code>{id}</code></dd><dt>Status</dt><dd>{status}</dd><dt>Contact</dt><dd>{contact}</dd></dl>
<ol class="timeline">{list}</ol>
<details><summary>The lead as received</summary>{payload}</details>"#,
        status = badge(&status),
        contact = contact
            .map(|c| format!(r#"<a href="/console/contacts/{c}">#{c}</a>"#))
            .unwrap_or_else(|| "—".into()),
        payload = html::json(&payload),
    );
    Ok(Some((format!("Lead {}", phone), body)))
}

/// The one-line answer to "why was this lead (not) called?".
fn called(
    status: &str,
    actions: &[Action],
    payload: &serde_json::Value,
    error: Option<&str>,
) -> String {
    if status == "dead_lettered" {
        return format!(
            "No: it was never processed; it was dead-lettered ({}).",
            esc(error.unwrap_or("no reason recorded"))
        );
    }
    if matches!(status, "queued" | "processing") {
        return "Not yet: the lead is still waiting for a worker.".into();
    }
    for a in actions {
        if let Action::PowerdialerAdded {
            user_id,
            not_before,
            ..
        } = a
        {
            return match not_before {
                Some(t) => format!(
                    "Queued on user {user_id}'s PowerDialer, to be dialed from {} (outside the calling window until then).",
                    time(*t)
                ),
                None => format!("Yes: queued on user {user_id}'s PowerDialer."),
            };
        }
    }
    for a in actions {
        if let Action::PolicyBlocked {
            channel,
            reason,
            rule,
            next_allowed_at,
        } = a
            && *channel == shared::policy::Channel::Call
        {
            return format!(
                "No: the contact policy blocked the call ({}, rule {}){}.",
                reason.as_str().replace('_', " "),
                esc(rule),
                next_allowed_at
                    .map(|t| format!("; allowed again at {}", time(t)))
                    .unwrap_or_default()
            );
        }
    }
    let asked = payload
        .get("add_to_powerdialer")
        .is_some_and(|v| v == true || v == "true" || v == "1");
    if asked {
        "No: the PowerDialer was asked for but no owner could take the lead (see the warnings)."
            .into()
    } else {
        "No: the lead did not ask for the PowerDialer (add_to_powerdialer).".into()
    }
}
