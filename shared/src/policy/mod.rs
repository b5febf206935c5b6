//! The contact policy (§9): may the product call or text this contact now, and if not, why
//! and from when?
//!
//! [`decide`] is one pure function of what the product knows of the contact (its number,
//! time zone, state, consent records, do-not-contact entries and the messages it was sent
//! recently), the account's settings, the rule table and the instant. It checks, in order:
//! the do-not-contact list, consent, the calling window in the contact's local time, and
//! the message caps. It never guesses: a contact whose local time cannot be known is
//! blocked (`unknown_local_time`), and a contact whose state spans several time zones may
//! be reached only at a time allowed in every one of them.

pub mod place;
pub mod table;

#[cfg(test)]
mod tests;

use crate::phone::PhoneNumber;
use chrono::{DateTime, Datelike, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use table::{Rule, RuleTable};

/// A way of reaching a contact that the policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Call,
    Sms,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Call, Channel::Sms];

    /// `"call"` or `"sms"`, in any case and with surrounding spaces; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        named(&Self::ALL, Self::as_str, text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Call => "call",
            Channel::Sms => "sms",
        }
    }
}

/// The one of `all` whose name is `text`, in any case and with surrounding spaces.
fn named<T: Copy>(all: &[T], name: fn(T) -> &'static str, text: &str) -> Option<T> {
    all.iter()
        .copied()
        .find(|c| name(*c).eq_ignore_ascii_case(text.trim()))
}

/// What a do-not-contact entry covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DncChannel {
    Call,
    Sms,
    All,
}

impl DncChannel {
    pub const ALL: [DncChannel; 3] = [DncChannel::Call, DncChannel::Sms, DncChannel::All];

    /// `"call"`, `"sms"` or `"all"`, in any case and with surrounding spaces; `None` for
    /// anything else.
    pub fn parse(text: &str) -> Option<Self> {
        named(&Self::ALL, Self::as_str, text)
    }

    /// The name stored in `do_not_contact.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            DncChannel::Call => "call",
            DncChannel::Sms => "sms",
            DncChannel::All => "all",
        }
    }

    pub fn covers(self, channel: Channel) -> bool {
        matches!(
            (self, channel),
            (DncChannel::All, _)
                | (DncChannel::Call, Channel::Call)
                | (DncChannel::Sms, Channel::Sms)
        )
    }
}

/// One do-not-contact entry of the contact's number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    pub channel: DncChannel,
    /// After this instant the entry no longer applies; `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

impl DncEntry {
    /// Whether the entry still applies at `now`.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|x| x > now)
    }
}

/// One consent record of the contact, for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub channel: Channel,
    pub given_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Consent {
    /// Whether the consent stands at `now`: given by then and not revoked by then.
    pub fn stands(&self, now: DateTime<Utc>) -> bool {
        self.given_at <= now && self.revoked_at.is_none_or(|r| r > now)
    }
}

/// What the product knows of the contact it is about to reach.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub number: &'a PhoneNumber,
    /// The contact's own `timezone`.
    pub timezone: Option<Tz>,
    /// The contact's own `state`, as written (`FL`, `Florida`).
    pub state: Option<&'a str>,
    pub consents: &'a [Consent],
    /// The do-not-contact entries of the number in the contact's account.
    pub dnc: &'a [DncEntry],
    /// When the product sent the number a message in the last 24 hours (for the caps).
    pub recent_sends: &'a [DateTime<Utc>],
}

/// An account's policy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountPolicy {
    /// Channels that need a standing consent record (default: `sms` only).
    pub require_consent_call: bool,
    pub require_consent_sms: bool,
}

impl Default for AccountPolicy {
    fn default() -> Self {
        Self {
            require_consent_call: false,
            require_consent_sms: true,
        }
    }
}

impl AccountPolicy {
    fn requires_consent(&self, channel: Channel) -> bool {
        match channel {
            Channel::Call => self.require_consent_call,
            Channel::Sms => self.require_consent_sms,
        }
    }
}

/// Why an attempt is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Dnc,
    NoConsent,
    OutsideHours,
    FrequencyCap,
    UnknownLocalTime,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Dnc,
        Reason::NoConsent,
        Reason::OutsideHours,
        Reason::FrequencyCap,
        Reason::UnknownLocalTime,
    ];

    /// The wire name (`dnc`, `no_consent`, `outside_hours`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dnc => "dnc",
            Reason::NoConsent => "no_consent",
            Reason::OutsideHours => "outside_hours",
            Reason::FrequencyCap => "frequency_cap",
            Reason::UnknownLocalTime => "unknown_local_time",
        }
    }
}

/// The `rule` of a verdict decided by the do-not-contact list.
pub const DNC_RULE: &str = "do-not-contact";
/// The `rule` of a verdict decided by the account's consent requirement.
pub const CONSENT_RULE: &str = "account-consent";

/// The policy's answer for one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub channel: Channel,
    /// `None`: allowed.
    pub reason: Option<Reason>,
    /// The rule that decided: the strictest window that applied when allowed, the one that
    /// blocked otherwise.
    pub rule: String,
    /// When the attempt will be allowed, if it is blocked and anything can tell.
    pub next_allowed_at: Option<DateTime<Utc>>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.reason.is_none()
    }

    fn blocked(channel: Channel, reason: Reason, rule: &str, next: Option<DateTime<Utc>>) -> Self {
        Self {
            channel,
            reason: Some(reason),
            rule: rule.to_owned(),
            next_allowed_at: next,
        }
    }
}

/// Whether `channel` may reach the contact of `facts` at `now`, and if not, why.
pub fn decide(
    channel: Channel,
    facts: &Facts<'_>,
    account: &AccountPolicy,
    rules: &RuleTable,
    now: DateTime<Utc>,
) -> Verdict {
    let active: Vec<&DncEntry> = facts
        .dnc
        .iter()
        .filter(|e| e.channel.covers(channel) && e.in_force(now))
        .collect();
    if !active.is_empty() {
        // Allowed again only when every entry has expired.
        let until = active
            .iter()
            .map(|e| e.expires_at)
            .try_fold(now, |acc, x| x.map(|x| acc.max(x)));
        return Verdict::blocked(channel, Reason::Dnc, DNC_RULE, until);
    }
    if account.requires_consent(channel)
        && !facts
            .consents
            .iter()
            .any(|c| c.channel == channel && c.stands(now))
    {
        return Verdict::blocked(channel, Reason::NoConsent, CONSENT_RULE, None);
    }
    let place = place::locate(facts.timezone, facts.state, facts.number);
    let applicable: Vec<&Rule> = rules.applicable(channel, place.state).collect();
    let strictest = applicable
        .iter()
        .min_by_key(|r| r.end - r.start)
        .map_or("none", |r| r.id.as_str());
    if place.zones.is_empty()
        && let Some(first) = applicable.first()
    {
        return Verdict::blocked(channel, Reason::UnknownLocalTime, &first.id, None);
    }
    let limits = Limits {
        rules: &applicable,
        zones: &place.zones,
        sends: if channel == Channel::Sms {
            facts.recent_sends
        } else {
            &[]
        },
    };
    match limits.first_violation(now) {
        None => Verdict {
            channel,
            reason: None,
            rule: strictest.to_owned(),
            next_allowed_at: None,
        },
        Some(v) => Verdict::blocked(channel, v.reason, &v.rule.id, limits.next_allowed(now)),
    }
}

/// The time limits of one attempt: windows and closed days in each zone, and caps.
struct Limits<'a> {
    rules: &'a [&'a Rule],
    zones: &'a [Tz],
    sends: &'a [DateTime<Utc>],
}

struct Violation<'a> {
    rule: &'a Rule,
    reason: Reason,
    /// The earliest instant at which this limit no longer stands in the way.
    lifts_at: Option<DateTime<Utc>>,
}

/// How far ahead `next_allowed` looks before it says nothing can tell.
const HORIZON_DAYS: i64 = 400;

impl<'a> Limits<'a> {
    /// The first limit that blocks an attempt at `t`: windows before caps.
    fn first_violation(&self, t: DateTime<Utc>) -> Option<Violation<'a>> {
        for rule in self.rules {
            for zone in self.zones {
                if !open(rule, *zone, t) {
                    return Some(Violation {
                        rule,
                        reason: Reason::OutsideHours,
                        lifts_at: next_open(rule, *zone, t),
                    });
                }
            }
        }
        for rule in self.rules {
            let Some(cap) = rule.max_per_24h else {
                continue;
            };
            let mut within: Vec<DateTime<Utc>> = self
                .sends
                .iter()
                .copied()
                .filter(|s| *s <= t && *s > t - Duration::hours(24))
                .collect();
            if within.len() >= cap as usize {
                within.sort();
                // Allowed once enough of them are more than 24 hours old.
                let lifts = within[within.len() - cap as usize] + Duration::hours(24);
                return Some(Violation {
                    rule,
                    reason: Reason::FrequencyCap,
                    lifts_at: Some(lifts),
                });
            }
        }
        None
    }

    /// The first instant from `now` at which no limit blocks, if one comes within the
    /// horizon.
    fn next_allowed(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let horizon = now + Duration::days(HORIZON_DAYS);
        let mut t = now;
        while t <= horizon {
            match self.first_violation(t) {
                None => return Some(t),
                Some(v) => t = v.lifts_at.filter(|l| *l > t)?,
            }
        }
        None
    }
}

fn closed(rule: &Rule, date: chrono::NaiveDate) -> bool {
    rule.closed_days.contains(&date.weekday()) || rule.closed_dates.contains(&date)
}

/// Whether `rule` allows an attempt at `t` in `zone`.
fn open(rule: &Rule, zone: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&zone).naive_local();
    !closed(rule, local.date()) && rule.start <= local.time() && local.time() < rule.end
}

/// The next instant after `t` at which `rule`'s window opens in `zone`.
fn next_open(rule: &Rule, zone: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = t.with_timezone(&zone).naive_local();
    let mut date = local.date();
    if closed(rule, date) || local.time() >= rule.start {
        date = date.succ_opt()?;
    }
    for _ in 0..HORIZON_DAYS {
        if !closed(rule, date) {
            return instant(zone, date.and_time(rule.start)).filter(|i| *i > t);
        }
        date = date.succ_opt()?;
    }
    None
}

/// The instant of a local time; a time that a clock change skips is taken as the first
/// instant after the gap, and a repeated one as its first occurrence.
fn instant(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut at = local;
    for _ in 0..8 {
        if let Some(t) = zone.from_local_datetime(&at).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        at += Duration::minutes(15);
    }
    None
}
