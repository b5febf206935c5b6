//! What a phone number tells about where its owner is (§4.4): the country always, and for
//! NANP (+1) numbers the state or province, sometimes a city, and the timezone of the area
//! code.
//!
//! The area-code table ships inside the binary (`shared/data/nanp-area-codes.tsv`, generated
//! by `scripts/gen-numbering-plan` from a maintained numbering-plan data set); nothing is
//! fetched at run time.

use crate::phone::PhoneNumber;
use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The generated table: a `#` comment naming the source, a header line, then one tab-separated
/// row per area code.
const NANP_TSV: &str = include_str!("../data/nanp-area-codes.tsv");

/// What the numbering plan says about one NANP area code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaCode {
    /// ISO 3166-1 alpha-2 (`US`, `CA`, `JM`, …).
    pub country: &'static str,
    /// Two-letter postal code of the state, province or territory, when the area code lies
    /// in one.
    pub state: Option<&'static str>,
    /// Only when most of the area code's exchanges are in one city.
    pub city: Option<&'static str>,
    /// Blank for non-geographic codes (toll-free, personal) and where the data cannot tell.
    pub timezone: Option<Tz>,
}

/// Where a number points: each part only as far as the numbering plan knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub country: Option<String>,
    pub state: Option<String>,
    pub city: Option<String>,
    pub timezone: Option<Tz>,
}

static NANP: LazyLock<HashMap<&'static str, AreaCode>> = LazyLock::new(|| parse_table(NANP_TSV));

fn parse_table(tsv: &'static str) -> HashMap<&'static str, AreaCode> {
    let non_blank = |s: &'static str| Some(s.trim()).filter(|s| !s.is_empty());
    tsv.lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("area_code\t"))
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let code = non_blank(cols.next()?)?;
            let country = non_blank(cols.next()?)?;
            let state = cols.next().and_then(non_blank);
            let city = cols.next().and_then(non_blank);
            let timezone = cols
                .next()
                .and_then(non_blank)
                .and_then(|tz| tz.parse::<Tz>().ok());
            Some((
                code,
                AreaCode {
                    country,
                    state,
                    city,
                    timezone,
                },
            ))
        })
        .collect()
}

/// The numbering plan's entry for a three-digit NANP area code (`"818"`).
pub fn area_code(code: &str) -> Option<&'static AreaCode> {
    NANP.get(code)
}

/// Every area code of the table, for completeness checks and operators' tooling.
pub fn area_codes() -> impl Iterator<Item = (&'static str, &'static AreaCode)> {
    NANP.iter().map(|(code, entry)| (*code, entry))
}

/// Where `number` points. NANP numbers are looked up by area code; any other number gets
/// the country of its calling code.
pub fn locate(number: &PhoneNumber) -> Location {
    if let Some(entry) = number.nanp_area_code().and_then(area_code) {
        return Location {
            country: Some(entry.country.to_owned()),
            state: entry.state.map(str::to_owned),
            city: entry.city.map(str::to_owned),
            timezone: entry.timezone,
        };
    }
    Location {
        country: number.region(),
        ..Location::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phone::Region;

    fn located(input: &str) -> Location {
        locate(&PhoneNumber::parse(input, Region::US).expect("parse"))
    }

    #[test]
    fn contract_examples_resolve_to_country_state_and_zone() {
        for (input, country, state, tz) in [
            ("(818) 123-4567", "US", "CA", Tz::America__Los_Angeles),
            ("212 555 0100", "US", "NY", Tz::America__New_York),
            ("+1 416 555 0199", "CA", "ON", Tz::America__Toronto),
        ] {
            let l = located(input);
            assert_eq!(l.country.as_deref(), Some(country), "{input}");
            assert_eq!(l.state.as_deref(), Some(state), "{input}");
            assert_eq!(l.timezone, Some(tz), "{input}");
        }
    }

    #[test]
    fn a_city_is_given_only_where_the_data_knows_one() {
        assert_eq!(located("212 555 0100").city.as_deref(), Some("New York"));
        assert_eq!(located("416 555 0199").city.as_deref(), Some("Toronto"));
        // 818 covers Burbank, Glendale, Van Nuys, …: no single city.
        assert_eq!(located("818 123 4567").city, None);
    }

    #[test]
    fn the_table_covers_every_nanp_area_code_with_valid_zones() {
        let all: Vec<_> = area_codes().collect();
        assert!(all.len() >= 400, "only {} area codes", all.len());
        let raw_rows = NANP_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("area_code"))
            .count();
        assert_eq!(all.len(), raw_rows, "every row parses");
        // Every row with a zone name has one chrono-tz knows.
        for line in NANP_TSV.lines().filter(|l| !l.starts_with('#')).skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let code = cols[0];
            assert_eq!(code.len(), 3, "{line}");
            if let Some(tz) = cols.get(4).filter(|s| !s.is_empty()) {
                assert_eq!(
                    area_code(code).and_then(|a| a.timezone).map(|t| t.name()),
                    Some(*tz)
                );
            }
        }
        // Canada, the Caribbean and the Pacific territories are NANP too.
        for (code, country) in [
            ("604", "CA"),
            ("514", "CA"),
            ("867", "CA"),
            ("876", "JM"),
            ("787", "PR"),
            ("671", "GU"),
            ("242", "BS"),
            ("800", "US"),
        ] {
            assert_eq!(area_code(code).map(|a| a.country), Some(country), "{code}");
        }
        // Every geographic US state and Canadian province appears.
        let states: std::collections::HashSet<&str> =
            all.iter().filter_map(|(_, a)| a.state).collect();
        for s in [
            "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL",
            "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE",
            "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD",
            "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "AB", "BC", "MB", "NB", "NL",
            "NS", "ON", "QC", "SK",
        ] {
            assert!(states.contains(s), "no area code for {s}");
        }
    }

    #[test]
    fn non_nanp_numbers_get_their_country_only() {
        let l = located("+44 20 7946 0958");
        assert_eq!(l.country.as_deref(), Some("GB"));
        assert_eq!((l.state, l.city, l.timezone), (None, None, None));
    }

    #[test]
    fn toll_free_numbers_have_a_country_but_no_place() {
        let l = located("800 555 0100");
        assert_eq!(l.country.as_deref(), Some("US"));
        assert_eq!((l.state, l.timezone), (None, None));
    }
}
