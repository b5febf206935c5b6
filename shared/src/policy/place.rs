//! Where a contact is, as far as the policy may rely on it: the time zones its local time
//! may be in, and the US state whose rules apply.

use crate::geo;
use crate::phone::PhoneNumber;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Every zone in use in each US state and territory (`shared/data/us-state-timezones.tsv`).
const STATE_ZONES_TSV: &str = include_str!("../../data/us-state-timezones.tsv");

static STATE_ZONES: LazyLock<HashMap<&'static str, Vec<Tz>>> = LazyLock::new(|| {
    STATE_ZONES_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("state\t"))
        .filter_map(|l| {
            let (state, zones) = l.split_once('\t')?;
            let zones = zones
                .split_whitespace()
                .filter_map(|z| z.parse::<Tz>().ok())
                .collect();
            Some((state, zones))
        })
        .collect()
});

/// US states and territories by name, for a contact's `state` written out.
const STATE_NAMES: [(&str, &str); 56] = [
    ("alabama", "AL"),
    ("alaska", "AK"),
    ("arizona", "AZ"),
    ("arkansas", "AR"),
    ("california", "CA"),
    ("colorado", "CO"),
    ("connecticut", "CT"),
    ("delaware", "DE"),
    ("district of columbia", "DC"),
    ("florida", "FL"),
    ("georgia", "GA"),
    ("hawaii", "HI"),
    ("idaho", "ID"),
    ("illinois", "IL"),
    ("indiana", "IN"),
    ("iowa", "IA"),
    ("kansas", "KS"),
    ("kentucky", "KY"),
    ("louisiana", "LA"),
    ("maine", "ME"),
    ("maryland", "MD"),
    ("massachusetts", "MA"),
    ("michigan", "MI"),
    ("minnesota", "MN"),
    ("mississippi", "MS"),
    ("missouri", "MO"),
    ("montana", "MT"),
    ("nebraska", "NE"),
    ("nevada", "NV"),
    ("new hampshire", "NH"),
    ("new jersey", "NJ"),
    ("new mexico", "NM"),
    ("new york", "NY"),
    ("north carolina", "NC"),
    ("north dakota", "ND"),
    ("ohio", "OH"),
    ("oklahoma", "OK"),
    ("oregon", "OR"),
    ("pennsylvania", "PA"),
    ("rhode island", "RI"),
    ("south carolina", "SC"),
    ("south dakota", "SD"),
    ("tennessee", "TN"),
    ("texas", "TX"),
    ("utah", "UT"),
    ("vermont", "VT"),
    ("virginia", "VA"),
    ("washington", "WA"),
    ("west virginia", "WV"),
    ("wisconsin", "WI"),
    ("wyoming", "WY"),
    ("puerto rico", "PR"),
    ("us virgin islands", "VI"),
    ("guam", "GU"),
    ("northern mariana islands", "MP"),
    ("american samoa", "AS"),
];

/// The postal code of a US state or territory written as its code or its name, in any case
/// (`"fl"`, `"Florida"`); `None` for anything else.
pub fn us_state(text: &str) -> Option<&'static str> {
    let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if t.len() == 2 {
        let upper = t.to_ascii_uppercase();
        return STATE_ZONES.get_key_value(upper.as_str()).map(|(k, _)| *k);
    }
    STATE_NAMES
        .iter()
        .find(|(name, _)| *name == t)
        .map(|(_, code)| *code)
}

/// Every zone in use in a US state or territory.
pub fn state_zones(state: &str) -> &'static [Tz] {
    STATE_ZONES.get(state).map(Vec::as_slice).unwrap_or(&[])
}

/// What the policy knows of where a contact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The zones the contact's local time may be in: one when it is known, several when
    /// only a state spanning several is, none when nothing is.
    pub zones: Vec<Tz>,
    /// The US state whose rules apply, when known.
    pub state: Option<&'static str>,
    /// Where the local time came from, for the verdict's explanation.
    pub from: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Timezone,
    State,
    AreaCode,
    Unknown,
}

/// Where the contact is: local time from its `timezone`, else its `state`, else the area
/// code of its number; the state from its `state`, else its area code. Nothing is guessed:
/// a contact none of these place has no zones.
pub fn locate(timezone: Option<Tz>, state: Option<&str>, number: &PhoneNumber) -> Place {
    let area = number.nanp_area_code().and_then(geo::area_code);
    let given = state.and_then(us_state);
    let of_area = area.and_then(|a| a.state).and_then(us_state);
    let zoned = |s: Option<&'static str>| s.filter(|s| !state_zones(s).is_empty());
    let (zones, from) = if let Some(tz) = timezone {
        (vec![tz], Source::Timezone)
    } else if let Some(s) = zoned(given) {
        (state_zones(s).to_vec(), Source::State)
    } else if let Some(tz) = area.and_then(|a| a.timezone) {
        (vec![tz], Source::AreaCode)
    } else if let Some(s) = zoned(of_area) {
        (state_zones(s).to_vec(), Source::State)
    } else {
        (Vec::new(), Source::Unknown)
    };
    Place {
        zones,
        state: given.or(of_area),
        from,
    }
}
