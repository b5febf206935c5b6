//! One claimed step: what the policy and the template decide ([`decide`]), and what is
//! recorded of it once the provider answered ([`settle`]). Both are pure.

use super::provider::{Answer, UNSUBSCRIBED};
use chrono::{DateTime, Utc};
use sea_orm::{DbErr, QueryResult};
use serde::Serialize;
use shared::outcome::Action;
use shared::phone::PhoneNumber;
use shared::policy::table::RuleTable;
use shared::policy::{self, Channel, Consent, DncChannel, DncEntry, Reason, Verdict};
use shared::template::{Field, Template};
use std::time::Duration;
use uuid::Uuid;

/// A due step as claimed, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub account_id: i64,
    pub contact_id: Option<i64>,
    pub enrollment_id: i64,
    pub intake_id: Option<Uuid>,
    /// Provider attempts made so far.
    pub attempts: i32,
    pub due_at: DateTime<Utc>,
    /// The policy delayed the step before: its first verdict is on the intake already.
    pub judged_before: bool,
    /// The enrollment is still active.
    pub enrolled: bool,
    pub sequence_id: i64,
    /// The step's place in its sequence; `None`: the step was removed.
    pub position: Option<i32>,
    pub template: Option<String>,
    /// The contact's row as JSON; `None`: the contact was removed.
    pub contact: Option<serde_json::Value>,
    /// The contact's line's number, else the sequence's line's.
    pub line_number: Option<String>,
    pub require_consent: Vec<String>,
    pub consents: Vec<Consent>,
    pub dnc: Vec<DncEntry>,
    pub recent_sends: Vec<DateTime<Utc>>,
}

#[derive(serde::Deserialize)]
struct ConsentRow {
    given_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(serde::Deserialize)]
struct DncRow {
    channel: DncChannel,
    expires_at: Option<DateTime<Utc>>,
}

impl Claimed {
    pub fn from_row(row: &QueryResult) -> Result<Self, DbErr> {
        let json = |col: &str| -> Result<serde_json::Value, DbErr> { row.try_get("", col) };
        let parse = |e: serde_json::Error| DbErr::Custom(e.to_string());
        let consents: Vec<ConsentRow> = serde_json::from_value(json("consents")?).map_err(parse)?;
        let dnc: Vec<DncRow> = serde_json::from_value(json("dnc")?).map_err(parse)?;
        Ok(Self {
            id: row.try_get("", "id")?,
            account_id: row.try_get("", "account_id")?,
            contact_id: row.try_get("", "contact_id")?,
            enrollment_id: row.try_get("", "enrollment_id")?,
            intake_id: row.try_get("", "intake_id")?,
            attempts: row.try_get("", "attempts")?,
            due_at: row.try_get("", "due_at")?,
            judged_before: row.try_get("", "judged_before")?,
            enrolled: row.try_get("", "enrolled")?,
            sequence_id: row.try_get("", "sequence_id")?,
            position: row.try_get("", "position")?,
            template: row.try_get("", "template")?,
            contact: row.try_get("", "contact")?,
            line_number: row.try_get("", "line_number")?,
            require_consent: row.try_get("", "require_consent")?,
            consents: consents
                .into_iter()
                .map(|c| Consent {
                    channel: Channel::Sms,
                    given_at: c.given_at,
                    revoked_at: c.revoked_at,
                })
                .collect(),
            dnc: dnc
                .into_iter()
                .map(|d| DncEntry {
                    channel: d.channel,
                    expires_at: d.expires_at,
                })
                .collect(),
            recent_sends: serde_json::from_value(json("recent_sends")?).map_err(parse)?,
        })
    }

    fn contact_text(&self, name: &str) -> Option<String> {
        self.contact
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

/// A message ready for the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: String,
    pub from: String,
    pub body: String,
}

/// What to do with a claimed step.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Send(Outgoing),
    /// The policy says not now: due again at `until`.
    Wait {
        until: DateTime<Utc>,
        verdict: Verdict,
        to: String,
    },
    /// The policy says never (do-not-contact, no consent, unknown local time).
    Block {
        verdict: Verdict,
        to: String,
    },
    /// The enrollment ended, or its contact or step is gone.
    Cancel(&'static str),
    /// The step cannot be sent as it stands.
    Fail {
        code: &'static str,
        message: String,
        to: Option<String>,
    },
}

/// Judges a claimed step by the contact policy (§9) and renders its message.
pub fn decide(
    c: &Claimed,
    rules: &RuleTable,
    default_from: Option<&str>,
    now: DateTime<Utc>,
) -> Decision {
    if !c.enrolled {
        return Decision::Cancel("disenrolled");
    }
    let (Some(_), Some(template)) = (&c.contact, &c.template) else {
        return Decision::Cancel("the contact or the step was removed");
    };
    let to = c.contact_text("phone_number").unwrap_or_default();
    let number = match PhoneNumber::from_e164(to.clone()) {
        Ok(n) => n,
        Err(e) => {
            return Decision::Fail {
                code: "number",
                message: format!("the contact's number {to:?} is not E.164: {e}"),
                to: None,
            };
        }
    };
    let timezone = c.contact_text("timezone").and_then(|t| t.parse().ok());
    let state = c.contact_text("state");
    let facts = policy::Facts {
        number: &number,
        timezone,
        state: state.as_deref(),
        consents: &c.consents,
        dnc: &c.dnc,
        recent_sends: &c.recent_sends,
    };
    let account = shared::snapshot::account_policy(&c.require_consent);
    let verdict = policy::decide(Channel::Sms, &facts, &account, rules, now);
    if !verdict.allowed() {
        let waits = matches!(
            verdict.reason,
            Some(Reason::OutsideHours | Reason::FrequencyCap)
        );
        return match verdict.next_allowed_at {
            Some(until) if waits => Decision::Wait { until, verdict, to },
            _ => Decision::Block { verdict, to },
        };
    }
    let Some(from) = c.line_number.clone().or(default_from.map(str::to_owned)) else {
        return Decision::Fail {
            code: "no_from",
            message: "no sending number: neither the contact's line nor the sequence's has one, \
                      and SMS__FROM is not set"
                .into(),
            to: Some(to),
        };
    };
    let body = match Template::parse(template) {
        Ok(t) => t.render(|field| match field {
            Field::PhoneNumber => Some(to.clone()),
            Field::Text(f) => c.contact_text(f.as_str()),
        }),
        Err(e) => {
            return Decision::Fail {
                code: "template",
                message: e.to_string(),
                to: Some(to),
            };
        }
    };
    Decision::Send(Outgoing { to, from, body })
}

/// The columns a step's record writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: i64,
    pub status: &'static str,
    pub due_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub body: Option<String>,
    pub provider_sid: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub policy: Option<serde_json::Value>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// What becomes of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub row: Row,
    /// The first step's first blocking verdict, for the intake that enrolled the contact.
    pub intake_action: Option<serde_json::Value>,
    /// The provider reports the number unsubscribed: it joins the do-not-contact list.
    pub unsubscribed: bool,
}

impl Record {
    /// Counts the record in the send loop's metrics.
    pub fn count(&self) {
        let r = &self.row;
        match r.status {
            "sent" => metrics::counter!(super::SENT).increment(1),
            "failed" => {
                let code = r.error_code.clone().unwrap_or_default();
                metrics::counter!(super::FAILED, "code" => code).increment(1);
            }
            _ => {}
        }
        if let Some(reason) = r
            .policy
            .as_ref()
            .and_then(|p| p.get("reason"))
            .and_then(|v| v.as_str())
            && r.status != "sent"
        {
            metrics::counter!(super::BLOCKED, "reason" => reason.to_owned()).increment(1);
        }
        if r.status == "scheduled" && r.policy.is_none() {
            let code = r.error_code.clone().unwrap_or_default();
            metrics::counter!(super::RETRIED, "code" => code).increment(1);
        }
    }
}

/// What is recorded of a step given its decision and, when it was sent, the provider's
/// answer. A 429, 5xx or missing answer schedules another attempt after the next of
/// `retry_delays` (longer when the provider's `Retry-After` asks), until they run out. The
/// wait is stretched by up to a fifth (`jitter` in `[0, 1)`), so steps throttled together do
/// not all come back at the same instant.
pub fn resolve(
    c: &Claimed,
    decision: Decision,
    answer: Option<Answer>,
    retry_delays: &[Duration],
    jitter: f64,
    now: DateTime<Utc>,
) -> Record {
    let mut row = Row {
        id: c.id,
        status: "cancelled",
        due_at: None,
        attempts: c.attempts,
        from_number: None,
        to_number: None,
        body: None,
        provider_sid: None,
        error_code: None,
        error_message: None,
        policy: None,
        sent_at: None,
    };
    let record = |row: Row| Record {
        row,
        intake_action: None,
        unsubscribed: false,
    };
    let first_verdict = |v: &Verdict| {
        (c.position == Some(1) && !c.judged_before).then(|| {
            serde_json::to_value(Action::PolicyBlocked {
                channel: v.channel,
                reason: v.reason.unwrap_or(Reason::OutsideHours),
                rule: v.rule.clone(),
                next_allowed_at: v.next_allowed_at,
            })
            .unwrap_or_default()
        })
    };
    match decision {
        Decision::Cancel(why) => {
            row.error_message = Some(why.to_owned());
            record(row)
        }
        Decision::Fail { code, message, to } => {
            row.status = "failed";
            row.to_number = to;
            row.error_code = Some(code.to_owned());
            row.error_message = Some(message);
            record(row)
        }
        Decision::Block { verdict, to } => {
            row.status = "blocked";
            row.to_number = Some(to);
            row.policy = serde_json::to_value(&verdict).ok();
            Record {
                intake_action: first_verdict(&verdict),
                ..record(row)
            }
        }
        Decision::Wait { until, verdict, to } => {
            row.status = "scheduled";
            row.due_at = Some(until);
            row.to_number = Some(to);
            row.policy = serde_json::to_value(&verdict).ok();
            Record {
                intake_action: first_verdict(&verdict),
                ..record(row)
            }
        }
        Decision::Send(out) => {
            row.attempts = c.attempts.saturating_add(1);
            row.to_number = Some(out.to);
            row.from_number = Some(out.from);
            row.body = Some(out.body);
            let answer = answer.unwrap_or(Answer::Retry {
                after: None,
                code: "not_sent".into(),
                message: "the step was not sent".into(),
            });
            let mut unsubscribed = false;
            match answer {
                Answer::Sent { sid } => {
                    row.status = "sent";
                    row.sent_at = Some(now);
                    row.provider_sid = Some(sid);
                }
                Answer::Retry {
                    after,
                    code,
                    message,
                } => {
                    match retry_delays.get(usize::try_from(c.attempts).unwrap_or(usize::MAX)) {
                        Some(delay) => {
                            let wait = after.map_or(*delay, |a| a.max(*delay));
                            let wait = wait.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0));
                            row.status = "scheduled";
                            row.due_at = Some(
                                now + chrono::Duration::from_std(wait)
                                    .unwrap_or(chrono::Duration::MAX),
                            );
                        }
                        None => row.status = "failed",
                    }
                    row.error_code = Some(code);
                    row.error_message = Some(message);
                }
                Answer::Refused { code, message } => {
                    row.status = "failed";
                    unsubscribed = code == UNSUBSCRIBED;
                    row.error_code = Some(code);
                    row.error_message = Some(message);
                }
            }
            Record {
                unsubscribed,
                ..record(row)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(position: i32, attempts: i32, judged_before: bool) -> Claimed {
        Claimed {
            id: 7,
            account_id: 1,
            contact_id: Some(2),
            enrollment_id: 3,
            intake_id: Some(Uuid::nil()),
            attempts,
            due_at: Utc::now(),
            judged_before,
            enrolled: true,
            sequence_id: 4,
            position: Some(position),
            template: Some("Hi".into()),
            contact: None,
            line_number: None,
            require_consent: vec!["sms".into()],
            consents: Vec::new(),
            dnc: Vec::new(),
            recent_sends: Vec::new(),
        }
    }

    fn send() -> Decision {
        Decision::Send(Outgoing {
            to: "+12125550100".into(),
            from: "+14155550100".into(),
            body: "Hi".into(),
        })
    }

    fn verdict(reason: Reason) -> Verdict {
        Verdict {
            channel: Channel::Sms,
            reason: Some(reason),
            rule: "US-federal".into(),
            next_allowed_at: None,
        }
    }

    const DELAYS: [Duration; 2] = [Duration::from_secs(5), Duration::from_secs(30)];

    fn retry(after: Option<u64>) -> Option<Answer> {
        Some(Answer::Retry {
            after: after.map(Duration::from_secs),
            code: "503".into(),
            message: "Service Unavailable".into(),
        })
    }

    #[test]
    fn each_answer_and_decision_settles_the_step_as_the_contract_says() {
        let now = Utc::now();
        let secs =
            |r: &Record| (r.row.due_at.unwrap_or(now) - now).num_milliseconds() as f64 / 1000.0;
        // (case, record, status, seconds until due: least and most)
        type Case<'a> = (&'a str, Record, &'a str, Option<(f64, f64)>);
        let cases: Vec<Case> = vec![
            (
                "accepted",
                resolve(
                    &claimed(1, 0, false),
                    send(),
                    Some(Answer::Sent { sid: "SM1".into() }),
                    &DELAYS,
                    0.0,
                    now,
                ),
                "sent",
                None,
            ),
            (
                "first retry waits the first delay",
                resolve(
                    &claimed(1, 0, false),
                    send(),
                    retry(None),
                    &DELAYS,
                    0.0,
                    now,
                ),
                "scheduled",
                Some((5.0, 5.0)),
            ),
            (
                "a longer Retry-After wins",
                resolve(
                    &claimed(1, 1, false),
                    send(),
                    retry(Some(90)),
                    &DELAYS,
                    0.0,
                    now,
                ),
                "scheduled",
                Some((90.0, 90.0)),
            ),
            (
                "jitter stretches by at most a fifth",
                resolve(
                    &claimed(1, 1, false),
                    send(),
                    retry(None),
                    &DELAYS,
                    0.999,
                    now,
                ),
                "scheduled",
                Some((35.9, 36.0)),
            ),
            (
                "out of retries",
                resolve(
                    &claimed(1, 2, false),
                    send(),
                    retry(None),
                    &DELAYS,
                    0.0,
                    now,
                ),
                "failed",
                None,
            ),
            (
                "refused",
                resolve(
                    &claimed(1, 0, false),
                    send(),
                    Some(Answer::Refused {
                        code: "21211".into(),
                        message: "bad To".into(),
                    }),
                    &DELAYS,
                    0.0,
                    now,
                ),
                "failed",
                None,
            ),
            (
                "disenrolled",
                resolve(
                    &claimed(1, 0, false),
                    Decision::Cancel("disenrolled"),
                    None,
                    &DELAYS,
                    0.0,
                    now,
                ),
                "cancelled",
                None,
            ),
        ];
        for (name, record, status, wait) in cases {
            assert_eq!(record.row.status, status, "{name}");
            if let Some((least, most)) = wait {
                let s = secs(&record);
                assert!(s >= least - 0.01 && s <= most + 0.01, "{name}: waits {s} s");
            } else {
                assert_eq!(record.row.due_at, None, "{name}");
            }
        }
        let sent = resolve(
            &claimed(1, 0, false),
            send(),
            Some(Answer::Sent { sid: "SM1".into() }),
            &DELAYS,
            0.0,
            now,
        );
        assert_eq!((sent.row.attempts, sent.row.sent_at), (1, Some(now)));
        assert_eq!(sent.row.provider_sid.as_deref(), Some("SM1"));
    }

    #[test]
    fn only_an_unsubscribed_recipient_joins_the_do_not_contact_list() {
        let now = Utc::now();
        let refused = |code: &str| {
            resolve(
                &claimed(1, 0, false),
                send(),
                Some(Answer::Refused {
                    code: code.into(),
                    message: String::new(),
                }),
                &DELAYS,
                0.0,
                now,
            )
        };
        assert!(refused(UNSUBSCRIBED).unsubscribed);
        assert!(!refused("21211").unsubscribed);
    }

    #[test]
    fn the_first_steps_first_verdict_goes_on_the_intake_and_no_other() {
        let now = Utc::now();
        let block = |position, judged| {
            resolve(
                &claimed(position, 0, judged),
                Decision::Block {
                    verdict: verdict(Reason::Dnc),
                    to: "+12125550100".into(),
                },
                None,
                &DELAYS,
                0.0,
                now,
            )
        };
        let first = block(1, false);
        assert_eq!(first.row.status, "blocked");
        let action = first.intake_action.expect("on the intake");
        assert_eq!(action["type"], "policy_blocked");
        assert_eq!(action["reason"], "dnc");
        assert_eq!(action["channel"], "sms");
        assert!(block(2, false).intake_action.is_none(), "a later step");
        assert!(block(1, true).intake_action.is_none(), "judged before");
        let until = now + chrono::Duration::hours(3);
        let wait = resolve(
            &claimed(1, 0, false),
            Decision::Wait {
                until,
                verdict: verdict(Reason::OutsideHours),
                to: "+12125550100".into(),
            },
            None,
            &DELAYS,
            0.0,
            now,
        );
        assert_eq!(
            (wait.row.status, wait.row.due_at),
            ("scheduled", Some(until))
        );
        assert!(wait.intake_action.is_some());
    }
}
