//! The law pinned down at fixed instants: time zones, both clock changes, 20:00 and 21:00
//! windows, Sundays, a time zone that disagrees with the area code, expired entries and
//! revoked consent; and a property: no verdict allows a time outside the federal window.

use super::*;
use crate::phone::Region;
use chrono::Timelike;
use proptest::prelude::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("instant")
        .with_timezone(&Utc)
}

fn number(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s, Region::US).expect("number")
}

fn shipped() -> RuleTable {
    RuleTable::shipped().expect("shipped table")
}

fn consent(channel: Channel) -> Consent {
    Consent {
        channel,
        given_at: at("2026-01-01T00:00:00Z"),
        revoked_at: None,
    }
}

/// A contact of `number` with consent for both channels and nothing else known.
struct Case {
    number: PhoneNumber,
    timezone: Option<Tz>,
    state: Option<&'static str>,
    consents: Vec<Consent>,
    dnc: Vec<DncEntry>,
    sends: Vec<DateTime<Utc>>,
}

impl Case {
    fn new(n: &str) -> Self {
        Self {
            number: number(n),
            timezone: None,
            state: None,
            consents: vec![consent(Channel::Call), consent(Channel::Sms)],
            dnc: Vec::new(),
            sends: Vec::new(),
        }
    }

    fn decide_with(&self, channel: Channel, now: &str, rules: &RuleTable) -> Verdict {
        let facts = Facts {
            number: &self.number,
            timezone: self.timezone,
            state: self.state,
            consents: &self.consents,
            dnc: &self.dnc,
            recent_sends: &self.sends,
        };
        decide(channel, &facts, &AccountPolicy::default(), rules, at(now))
    }

    fn decide(&self, channel: Channel, now: &str) -> Verdict {
        self.decide_with(channel, now, &shipped())
    }
}

fn assert_blocked(v: &Verdict, reason: Reason, rule: &str, next: Option<&str>) {
    assert_eq!(v.reason, Some(reason), "{v:?}");
    assert_eq!(v.rule, rule, "{v:?}");
    assert_eq!(v.next_allowed_at, next.map(at), "{v:?}");
}

#[test]
fn a_new_york_number_may_be_called_until_21_00_and_from_08_00_its_time() {
    let c = Case::new("212 555 0100");
    // 2026-12-02 is a Wednesday; New York is UTC−5 in winter.
    assert!(c.decide(Channel::Call, "2026-12-02T13:00:00Z").allowed()); // 08:00
    assert!(c.decide(Channel::Call, "2026-12-03T01:59:59Z").allowed()); // 20:59:59
    let v = c.decide(Channel::Call, "2026-12-03T02:00:00Z"); // 21:00
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-federal",
        Some("2026-12-03T13:00:00Z"),
    );
    let v = c.decide(Channel::Call, "2026-12-02T12:59:00Z"); // 07:59
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-federal",
        Some("2026-12-02T13:00:00Z"),
    );
}

#[test]
fn a_lead_at_22_00_its_time_is_queued_for_08_00_the_next_morning() {
    let c = Case::new("(818) 555-0100"); // Los Angeles, UTC−8 in winter
    let v = c.decide(Channel::Call, "2026-12-03T06:00:00Z"); // 22:00 on the 2nd
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-federal",
        Some("2026-12-03T16:00:00Z"),
    );
}

#[test]
fn florida_closes_at_20_00_where_the_federal_window_runs_to_21_00() {
    let miami = Case::new("305 555 0100");
    let new_york = Case::new("212 555 0100");
    let t = "2026-12-03T01:30:00Z"; // 20:30 in both
    assert!(new_york.decide(Channel::Call, t).allowed());
    let v = miami.decide(Channel::Call, t);
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-FL",
        Some("2026-12-03T13:00:00Z"),
    );
    // Allowed: the strictest window that applied is named.
    assert_eq!(
        miami.decide(Channel::Call, "2026-12-02T15:00:00Z").rule,
        "US-FL"
    );
}

#[test]
fn sundays_are_closed_where_a_state_closes_them() {
    let c = Case::new("205 555 0100"); // Birmingham, Alabama, UTC−6 in winter
    // Sunday 2026-12-06 at noon, then Monday 08:00.
    let v = c.decide(Channel::Call, "2026-12-06T18:00:00Z");
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-AL",
        Some("2026-12-07T14:00:00Z"),
    );
    // Saturday evening after 20:00: the next opening skips Sunday.
    let v = c.decide(Channel::Call, "2026-12-06T02:30:00Z"); // Sat 20:30
    assert_eq!(v.next_allowed_at, Some(at("2026-12-07T14:00:00Z")));
    // A holiday of the table: Christmas Day 2026 is a Friday.
    let v = c.decide(Channel::Call, "2026-12-25T18:00:00Z");
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-AL",
        Some("2026-12-26T14:00:00Z"),
    );
}

#[test]
fn the_spring_clock_change_is_taken_in_local_time() {
    // 2027-03-14: New York goes from 02:00 EST to 03:00 EDT.
    let c = Case::new("212 555 0100");
    let v = c.decide(Channel::Call, "2027-03-14T06:30:00Z"); // 01:30 EST
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-federal",
        Some("2027-03-14T12:00:00Z"),
    ); // 08:00 EDT
    // A window opening inside the skipped hour opens when the hour ends.
    let rules = RuleTable::parse(
        "[[rule]]\nid = \"early\"\nregion = \"*\"\nchannels = [\"call\"]\n\
         window = \"02:30-21:00\"\ncitation = \"test\"\nchecked = \"2026-12-02\"\n",
        "test",
    )
    .expect("rules");
    let v = c.decide_with(Channel::Call, "2027-03-14T06:00:00Z", &rules); // 01:00 EST
    assert_eq!(v.next_allowed_at, Some(at("2027-03-14T07:00:00Z"))); // 03:00 EDT
}

#[test]
fn the_autumn_clock_change_repeats_an_hour_that_is_judged_by_its_local_time() {
    // 2026-11-01: New York goes from 02:00 EDT back to 01:00 EST; 01:xx happens twice.
    let c = Case::new("212 555 0100");
    for t in ["2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z"] {
        let v = c.decide(Channel::Call, t); // 01:30 EDT, then 01:30 EST
        assert_blocked(
            &v,
            Reason::OutsideHours,
            "US-federal",
            Some("2026-11-01T13:00:00Z"),
        );
    }
    let rules = RuleTable::parse(
        "[[rule]]\nid = \"night\"\nregion = \"*\"\nchannels = [\"call\"]\n\
         window = \"01:00-01:45\"\ncitation = \"test\"\nchecked = \"2026-12-02\"\n",
        "test",
    )
    .expect("rules");
    assert!(
        c.decide_with(Channel::Call, "2026-11-01T05:30:00Z", &rules)
            .allowed()
    );
    assert!(
        c.decide_with(Channel::Call, "2026-11-01T06:30:00Z", &rules)
            .allowed()
    );
}

#[test]
fn an_explicit_timezone_wins_over_the_area_code() {
    let mut c = Case::new("212 555 0100"); // New York number
    c.timezone = Some(Tz::America__Los_Angeles);
    // 09:00 in New York, 06:00 in Los Angeles.
    let v = c.decide(Channel::Call, "2026-12-02T14:00:00Z");
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-federal",
        Some("2026-12-02T16:00:00Z"),
    );
}

#[test]
fn a_state_with_two_zones_allows_only_what_both_allow() {
    let mut c = Case::new("800 555 0100"); // toll free: the number tells nothing
    c.state = Some("Florida");
    // 08:30 in Miami, 07:30 in Pensacola.
    let v = c.decide(Channel::Call, "2026-12-02T13:30:00Z");
    assert_blocked(
        &v,
        Reason::OutsideHours,
        "US-FL",
        Some("2026-12-02T14:00:00Z"),
    );
    // 19:30 in Miami, 18:30 in Pensacola: both open; 20:30/19:30: Miami closed.
    assert!(c.decide(Channel::Call, "2026-12-03T00:30:00Z").allowed());
    assert_eq!(
        c.decide(Channel::Call, "2026-12-03T01:30:00Z").reason,
        Some(Reason::OutsideHours)
    );
}

#[test]
fn nothing_known_of_where_the_contact_is_blocks_and_guesses_no_time() {
    let c = Case::new("800 555 0100");
    let v = c.decide(Channel::Call, "2026-12-02T18:00:00Z");
    assert_blocked(&v, Reason::UnknownLocalTime, "US-federal", None);
    let mut c = Case::new("800 555 0100");
    c.state = Some("Atlantis");
    assert_eq!(
        c.decide(Channel::Call, "2026-12-02T18:00:00Z").reason,
        Some(Reason::UnknownLocalTime)
    );
}

#[test]
fn do_not_contact_entries_block_their_channel_until_they_expire() {
    let mut c = Case::new("212 555 0100");
    let noon = "2026-12-02T17:00:00Z";
    c.dnc = vec![DncEntry {
        channel: DncChannel::Sms,
        expires_at: None,
    }];
    assert!(c.decide(Channel::Call, noon).allowed(), "sms only");
    assert_blocked(&c.decide(Channel::Sms, noon), Reason::Dnc, DNC_RULE, None);
    c.dnc = vec![DncEntry {
        channel: DncChannel::All,
        expires_at: Some(at("2026-12-10T00:00:00Z")),
    }];
    let v = c.decide(Channel::Call, noon);
    assert_blocked(&v, Reason::Dnc, DNC_RULE, Some("2026-12-10T00:00:00Z"));
    // Expired: no longer applies.
    assert!(c.decide(Channel::Call, "2026-12-10T17:00:00Z").allowed());
}

#[test]
fn messages_need_a_standing_consent_and_calls_do_not_by_default() {
    let mut c = Case::new("212 555 0100");
    let noon = "2026-12-02T17:00:00Z";
    c.consents.clear();
    assert!(c.decide(Channel::Call, noon).allowed());
    assert_blocked(
        &c.decide(Channel::Sms, noon),
        Reason::NoConsent,
        CONSENT_RULE,
        None,
    );
    c.consents = vec![Consent {
        revoked_at: Some(at("2026-12-01T00:00:00Z")),
        ..consent(Channel::Sms)
    }];
    assert_eq!(
        c.decide(Channel::Sms, noon).reason,
        Some(Reason::NoConsent),
        "revoked"
    );
    c.consents = vec![consent(Channel::Call)];
    assert_eq!(
        c.decide(Channel::Sms, noon).reason,
        Some(Reason::NoConsent),
        "another channel's consent"
    );
    // An account that requires consent for calls too.
    let facts = Facts {
        number: &c.number,
        timezone: None,
        state: None,
        consents: &[],
        dnc: &[],
        recent_sends: &[],
    };
    let strict = AccountPolicy {
        require_consent_call: true,
        require_consent_sms: true,
    };
    let v = decide(Channel::Call, &facts, &strict, &shipped(), at(noon));
    assert_eq!(v.reason, Some(Reason::NoConsent));
}

#[test]
fn the_do_not_contact_list_is_checked_before_consent_and_hours() {
    let mut c = Case::new("212 555 0100");
    c.consents.clear();
    c.dnc = vec![DncEntry {
        channel: DncChannel::All,
        expires_at: None,
    }];
    let v = c.decide(Channel::Sms, "2026-12-03T04:00:00Z"); // 23:00, no consent
    assert_eq!(v.reason, Some(Reason::Dnc));
}

#[test]
fn florida_caps_messages_at_three_in_24_hours() {
    let mut c = Case::new("305 555 0100");
    c.sends = vec![
        at("2026-12-01T18:00:00Z"),
        at("2026-12-02T14:00:00Z"),
        at("2026-12-02T15:00:00Z"),
    ];
    let v = c.decide(Channel::Sms, "2026-12-02T17:00:00Z");
    // The oldest of the three turns 24 hours old at 18:00Z, 13:00 in Miami.
    assert_blocked(
        &v,
        Reason::FrequencyCap,
        "US-FL",
        Some("2026-12-02T18:00:00Z"),
    );
    // Calls are not messages.
    assert!(c.decide(Channel::Call, "2026-12-02T17:00:00Z").allowed());
    // New York has no cap.
    let mut ny = Case::new("212 555 0100");
    ny.sends = c.sends.clone();
    assert!(ny.decide(Channel::Sms, "2026-12-02T17:00:00Z").allowed());
}

#[test]
fn a_cap_that_lifts_after_hours_waits_for_the_window_too() {
    let mut c = Case::new("305 555 0100");
    c.sends = vec![
        at("2026-12-02T00:30:00Z"), // 19:30 on the 1st in Miami
        at("2026-12-02T14:00:00Z"),
        at("2026-12-02T15:00:00Z"),
    ];
    // At 19:00 Miami on the 2nd the cap lifts at 19:30, inside the window.
    let v = c.decide(Channel::Sms, "2026-12-03T00:00:00Z");
    assert_blocked(
        &v,
        Reason::FrequencyCap,
        "US-FL",
        Some("2026-12-03T00:30:00Z"),
    );
    c.sends[0] = at("2026-12-02T00:59:00Z"); // lifts at 19:59
    c.sends.push(at("2026-12-02T16:00:00Z"));
    // Four sends: the cap lifts when the second oldest is 24 h old, 09:00 the 3rd, in hours.
    let v = c.decide(Channel::Sms, "2026-12-03T00:00:00Z");
    assert_eq!(v.next_allowed_at, Some(at("2026-12-03T14:00:00Z")));
}

/// Every zone a US contact can be in, from the shipped state table.
fn us_zones() -> Vec<Tz> {
    let mut zones: Vec<Tz> = ["FL", "TX", "AZ", "AK", "HI", "IN", "ID", "MI", "NY", "CA"]
        .iter()
        .flat_map(|s| place::state_zones(s).iter().copied())
        .collect();
    zones.dedup();
    zones
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the instant, zone, state and channel: an allowed attempt is inside 08:00–21:00
    /// local time, and a blocked one's `next_allowed_at` is itself allowed.
    #[test]
    fn no_verdict_allows_a_time_outside_the_federal_window(
        secs in 1_767_225_600i64..1_830_297_600, // 2026-01-01 .. 2028-01-01
        zone in 0usize..64,
        state in proptest::option::of(proptest::sample::select(vec!["FL", "OK", "AL", "MS", "WA", "NY", "TX"])),
        sms in any::<bool>(),
    ) {
        let zones = us_zones();
        let tz = zones[zone % zones.len()];
        let now = DateTime::from_timestamp(secs, 0).expect("instant");
        let n = number("212 555 0100");
        let consents = [consent(Channel::Call), consent(Channel::Sms)];
        let facts = Facts { number: &n, timezone: Some(tz), state, consents: &consents, dnc: &[], recent_sends: &[] };
        let channel = if sms { Channel::Sms } else { Channel::Call };
        let rules = shipped();
        let v = decide(channel, &facts, &AccountPolicy::default(), &rules, now);
        if v.allowed() {
            let hour = now.with_timezone(&tz).hour();
            prop_assert!((8..21).contains(&hour), "allowed at {hour}:xx in {tz}: {v:?}");
        } else {
            prop_assert_eq!(v.reason, Some(Reason::OutsideHours));
            let next = v.next_allowed_at.expect("a window opens");
            prop_assert!(next > now);
            let again = decide(channel, &facts, &AccountPolicy::default(), &rules, next);
            prop_assert!(again.allowed(), "{:?} at {}", again, next);
        }
    }
}

#[test]
fn channel_names_read_back_as_they_are_written() {
    for c in Channel::ALL {
        assert_eq!(Channel::parse(c.as_str()), Some(c));
    }
    for c in DncChannel::ALL {
        assert_eq!(DncChannel::parse(c.as_str()), Some(c));
    }
    assert_eq!(Channel::parse(" SMS "), Some(Channel::Sms));
    assert_eq!(DncChannel::parse("All"), Some(DncChannel::All));
    assert_eq!(Channel::parse("all"), None);
    assert_eq!(DncChannel::parse("email"), None);
}
