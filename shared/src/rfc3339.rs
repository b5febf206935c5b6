//! Instants in JSON exactly as chrono's `Serialize` writes them (RFC 3339 in UTC with `Z`,
//! the fraction in 0, 3, 6 or 9 digits as the value needs), written digit by digit instead
//! of through `fmt`: every event and view carries several, and the formatting machinery
//! was the larger part of their cost. Use as `#[serde(serialize_with = "rfc3339::utc")]`
//! (or `rfc3339::opt_utc` for an `Option`).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serializer;

/// The longest form: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const LONGEST: usize = 30;

/// `t` written into `out`; the length used, or `None` for a year outside 0–9999 (written
/// with a sign, which the caller leaves to chrono).
fn write(t: &DateTime<Utc>, out: &mut [u8; LONGEST]) -> Option<usize> {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return None;
    }
    // A leap second is second 59 with the nanoseconds past one second: written as 60.
    let (mut second, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        second += 1;
        nano -= 1_000_000_000;
    }
    let two = |out: &mut [u8; LONGEST], at: usize, v: u32| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    let year = year as u32;
    two(out, 0, year / 100);
    two(out, 2, year % 100);
    out[4] = b'-';
    two(out, 5, t.month());
    out[7] = b'-';
    two(out, 8, t.day());
    out[10] = b'T';
    two(out, 11, t.hour());
    out[13] = b':';
    two(out, 14, t.minute());
    out[16] = b':';
    two(out, 17, second);
    let mut len = 19;
    let (digits, mut fraction) = if nano == 0 {
        (0, 0)
    } else if nano % 1_000_000 == 0 {
        (3, nano / 1_000_000)
    } else if nano % 1_000 == 0 {
        (6, nano / 1_000)
    } else {
        (9, nano)
    };
    if digits > 0 {
        out[len] = b'.';
        for i in (1..=digits).rev() {
            out[len + i] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len += digits + 1;
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// Serializes `t` as chrono does.
pub fn utc<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut out = [0u8; LONGEST];
    match write(t, &mut out) {
        Some(len) => match std::str::from_utf8(&out[..len]) {
            Ok(text) => s.serialize_str(text),
            Err(e) => Err(serde::ser::Error::custom(e)),
        },
        None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    }
}

/// Serializes `t` as chrono does, `None` as null.
pub fn opt_utc<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => utc(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Serialize)]
    struct Fast(#[serde(serialize_with = "utc")] DateTime<Utc>);

    fn same_as_chrono(t: DateTime<Utc>) {
        assert_eq!(
            serde_json::to_string(&Fast(t)).expect("fast"),
            serde_json::to_string(&t).expect("chrono"),
            "{t:?}"
        );
    }

    #[test]
    fn writes_each_fraction_width_a_leap_second_and_far_years_as_chrono_does() {
        let at = |secs: i64, nanos: u32| DateTime::from_timestamp(secs, nanos).expect("instant");
        for (secs, nanos) in [
            (0, 0),
            (1_764_972_000, 0),
            (1_764_972_000, 120_000_000),
            (1_764_972_000, 123_456_000),
            (1_764_972_000, 123_456_789),
            (1_764_972_000, 1),
            (1_764_972_000, 999_999_999),
            // 2016-12-31T23:59:59 with the leap second's nanoseconds: 23:59:60.5.
            (1_483_228_799, 1_500_000_000),
            (1_483_228_799, 1_000_000_000),
            (-62_167_219_200, 0), // 0000-01-01
            (-62_167_219_201, 0), // -0001-12-31T23:59:59
            (253_402_300_799, 0), // 9999-12-31T23:59:59
            (253_402_300_800, 7), // 10000-01-01
        ] {
            same_as_chrono(at(secs, nanos));
        }
        assert_eq!(
            serde_json::to_string(&Fast(at(1_764_972_000, 123_456_000))).expect("fast"),
            "\"2025-12-05T22:00:00.123456Z\""
        );
    }

    #[derive(serde::Serialize)]
    struct FastOpt(#[serde(serialize_with = "opt_utc")] Option<DateTime<Utc>>);

    #[test]
    fn an_absent_instant_is_null() {
        assert_eq!(serde_json::to_string(&FastOpt(None)).expect("json"), "null");
        let t = DateTime::from_timestamp(1_764_972_000, 5_000).expect("instant");
        assert_eq!(
            serde_json::to_string(&FastOpt(Some(t))).expect("json"),
            serde_json::to_string(&Some(t)).expect("json")
        );
    }

    proptest! {
        #[test]
        fn any_instant_is_written_as_chrono_writes_it(
            secs in -100_000_000_000i64..300_000_000_000,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                same_as_chrono(t);
            }
        }
    }
}
