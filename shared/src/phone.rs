//! Phone numbers normalized to E.164.
//!
//! A number is accepted when it is *possible* for its region (parseable, right length);
//! strict validity against numbering-plan patterns is not required, because real lead
//! forms send numbers such as `8181234567` whose exchange is not assigned.

use phonenumber::{country, metadata::DATABASE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// A phone number in E.164 (`+18181234567`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is not a phone number")]
    NotANumber,
    #[error("has an unknown country code")]
    UnknownCountryCode,
    #[error("has the wrong number of digits")]
    WrongLength,
}

/// An ISO 3166-1 alpha-2 region used to read numbers without a country code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region(country::Id);

impl Region {
    pub const US: Region = Region(country::Id::US);

    /// `"US"`, `"gb"`, … → a region; `None` for an unknown code.
    pub fn parse(code: &str) -> Option<Self> {
        code.trim().to_ascii_uppercase().parse().ok().map(Region)
    }

    /// The two-letter code (`"US"`).
    pub fn code(&self) -> String {
        self.0.as_ref().to_owned()
    }
}

impl Default for Region {
    fn default() -> Self {
        Self::US
    }
}

impl PhoneNumber {
    /// Reads `input` in any human format; numbers without a country code are read in
    /// `default_region`.
    pub fn parse(input: &str, default_region: Region) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        if let Some(e164) =
            nanp_international(trimmed).or_else(|| nanp_national(trimmed, default_region))
        {
            return Self::from_e164(e164);
        }
        let parsed = read(input, default_region)?;
        let code = parsed.code().value();
        let lengths = possible_lengths(code).ok_or(PhoneError::UnknownCountryCode)?;
        let national = parsed.national().to_string();
        if !(national.len() < 32 && lengths & (1 << national.len()) != 0) {
            return Err(PhoneError::WrongLength);
        }
        // E.164 is the country code and the national number (with its leading zeros), as
        // the library's E.164 formatter writes it, without the national formats it looks up.
        Self::from_e164(format!("+{code}{national}"))
    }

    /// Wraps a string already in E.164 (as stored in the database).
    pub fn from_e164(e164: String) -> Result<Self, PhoneError> {
        let digits = e164.strip_prefix('+').ok_or(PhoneError::NotANumber)?;
        let ok = (6..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(Self(e164))
        } else {
            Err(PhoneError::NotANumber)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country calling code (`1` for NANP).
    pub fn country_code(&self) -> u16 {
        phonenumber::parse(None, &self.0)
            .map(|n| n.code().value())
            .unwrap_or(0)
    }

    /// The three-digit area code of a NANP (+1) number.
    pub fn nanp_area_code(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("+1")?;
        (rest.len() == 10).then(|| &rest[..3])
    }

    /// The ISO 3166-1 alpha-2 region the number belongs to, as far as the numbering plan
    /// tells: the matching region's patterns, else the main region of its country code.
    pub fn region(&self) -> Option<String> {
        let parsed = phonenumber::parse(None, &self.0).ok()?;
        if let Some(id) = parsed.country().id() {
            return Some(Region(id).code());
        }
        let metas = DATABASE.by_code(&parsed.code().value())?;
        let main = metas
            .iter()
            .find(|m| m.is_main_country_for_code())
            .or_else(|| metas.first())?;
        Region::parse(main.id()).map(|r| r.code())
    }
}

/// `+1 818 123 4567`, `+1 (818) 123-4567`, `+18181234567`: a NANP number in international
/// form, its ten digits starting with 2–9 and separated by nothing but spaces, dashes, dots
/// and parentheses (the country code apart from them), in E.164. Every NANP region reads such a number the same way (its
/// national prefix "1" and its local-number rules apply to other shapes only), so the
/// library's search for the region, the most costly part of its parse, changes nothing and
/// is skipped. `None` for every other input, which the library reads.
fn nanp_international(input: &str) -> Option<String> {
    let rest = input.strip_prefix('+')?.trim_start_matches(' ');
    if rest.contains("(0)") {
        return None;
    }
    // With separators, the library reads the country code only when it stands apart.
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        let mut start = rest.chars();
        if start.next() != Some('1') || !matches!(start.next(), Some(' ' | '-' | '.' | '(' | ')')) {
            return None;
        }
    }
    let e164 = with_digits("+", rest, 12)?;
    let b = e164.as_bytes();
    (b.len() == 12 && b[1] == b'1' && (b'2'..=b'9').contains(&b[2])).then_some(e164)
}

/// `8181234567`, `(818) 123-4567`, `1.818.123.4567`: a NANP number in national form, read in
/// a NANP region, as E.164: ten digits starting with 2–9, after the national prefix "1" or
/// not, separated by nothing but spaces, dashes, dots and parentheses. Every NANP region
/// reads such a number the same way (its local-number rules apply to seven digits only, its
/// international call prefix 011 cannot begin it), so the library's parse, most of the cost
/// of a lead's number in the form contact centers send most, is skipped. `None` for every
/// other input or region, which the library reads.
fn nanp_national(input: &str, region: Region) -> Option<String> {
    let mut e164 = with_digits("+1", input, 13)?;
    // Eleven digits are the national prefix and the ten.
    if e164.len() == 13 && e164.as_bytes()[2] == b'1' {
        e164.remove(2);
    }
    let b = e164.as_bytes();
    let shape = b.len() == 12 && (b'2'..=b'9').contains(&b[2]);
    (shape && DATABASE.by_id(region.0.as_ref())?.country_code() == 1).then_some(e164)
}

/// `start` followed by the digits of `input`, at most `max` bytes in all; `None` when `input`
/// holds anything but digits, spaces, dashes, dots and parentheses, or too many digits.
fn with_digits(start: &str, input: &str, max: usize) -> Option<String> {
    let mut out = String::with_capacity(max);
    out.push_str(start);
    for c in input.chars() {
        match c {
            '0'..='9' if out.len() < max => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    Some(out)
}

/// `input` as the phone-number library reads it: numbers without a country code in
/// `region`, international ones without a region.
fn read(input: &str, region: Region) -> Result<phonenumber::PhoneNumber, PhoneError> {
    let trimmed = input.trim();
    if trimmed.is_empty() || !trimmed.chars().any(|c| c.is_ascii_digit()) {
        return Err(PhoneError::NotANumber);
    }
    // Given a region, the parser also strips that region's national prefix after a
    // country code ("+44 1632 960983" read in US loses its "1"), so international numbers
    // are read without one.
    // "+44 (0) 20 …": the "(0)" tells national callers to dial the trunk prefix; it is
    // not part of the international number.
    let trimmed = if trimmed.starts_with('+') {
        std::borrow::Cow::Owned(trimmed.replace("(0)", ""))
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    };
    match as_international(&trimmed, region) {
        Some(international) => phonenumber::parse(None, &international),
        None => phonenumber::parse(Some(region.0), &trimmed),
    }
    .map_err(|_| PhoneError::NotANumber)
}

/// `+44 1632 960983`, or the same after the region's international call prefix
/// (`011 44 1632 960983` in NANP, `00 44 …` in most other places), as `+441632960983`;
/// `None` for a national number.
fn as_international(input: &str, region: Region) -> Option<String> {
    if input.starts_with('+') {
        return Some(input.to_owned());
    }
    let digits: String = input.chars().filter(char::is_ascii_digit).collect();
    let idd = DATABASE.by_id(region.0.as_ref())?.international_prefix()?;
    let found = idd.find(&digits)?;
    let rest = &digits[found.end()..];
    (found.start() == 0 && !rest.is_empty() && !rest.starts_with('0')).then(|| format!("+{rest}"))
}

/// Lengths of national numbers the regions of country calling code `code` allow, of any
/// number type, as a bit set (bit `n`: `n` digits); `None` for an unknown code. The
/// metadata lists them per region and type (the general description often carries none);
/// the sets are built once, on first use.
fn possible_lengths(code: u16) -> Option<u32> {
    static BY_CODE: LazyLock<HashMap<u16, u32>> = LazyLock::new(|| {
        (1..1000)
            .filter_map(|code| {
                let metas = DATABASE.by_code(&code)?;
                let set = metas
                    .iter()
                    .flat_map(|m| region_lengths(m))
                    .fold(0u32, |set, len| if len < 32 { set | 1 << len } else { set });
                Some((code, set))
            })
            .collect()
    });
    BY_CODE.get(&code).copied()
}

/// Lengths of national numbers one region allows, of any number type.
fn region_lengths(meta: &phonenumber::metadata::Metadata) -> Vec<u16> {
    let d = meta.descriptors();
    let mut lengths: Vec<u16> = d.general().possible_length().to_vec();
    for desc in [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
    .into_iter()
    .flatten()
    {
        lengths.extend_from_slice(desc.possible_length());
    }
    lengths
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_e164(value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> Result<String, PhoneError> {
        PhoneNumber::parse(s, Region::US).map(|p| p.0)
    }

    #[test]
    fn human_formats_normalize_to_e164() {
        for (input, want) in [
            ("8181234567", "+18181234567"),
            ("(818) 123-4567", "+18181234567"),
            ("+1 818-740-5020", "+18187405020"),
            ("1.818.740.5020", "+18187405020"),
            ("818.740.5020", "+18187405020"),
            ("+44 20 7946 0958", "+442079460958"),
            ("  +1 (416) 555-0199 ", "+14165550199"),
            // National numbers that begin with the default region's national prefix "1".
            ("+44 1632 960983", "+441632960983"),
            ("011 44 1632 960983", "+441632960983"),
            ("+33 1 42 68 53 00", "+33142685300"),
            ("+44 (0) 20 7946 0958", "+442079460958"),
        ] {
            assert_eq!(us(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn impossible_numbers_are_rejected() {
        for input in [
            "",
            "abc",
            "123",
            "818123456",
            "81812345678901",
            "+999 123 4567",
        ] {
            assert!(us(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn default_region_reads_national_numbers() {
        let gb = Region::parse("gb").expect("GB");
        assert_eq!(
            PhoneNumber::parse("020 7946 0958", gb).map(|p| p.0),
            Ok("+442079460958".to_string())
        );
    }

    #[test]
    fn regions_and_area_codes() {
        let p = PhoneNumber::parse("416 555 0199", Region::US).expect("parse");
        assert_eq!(p.nanp_area_code(), Some("416"));
        assert_eq!(p.country_code(), 1);
        let uk = PhoneNumber::parse("+44 20 7946 0958", Region::US).expect("parse");
        assert_eq!(uk.region().as_deref(), Some("GB"));
        assert_eq!(uk.nanp_area_code(), None);
    }

    proptest::proptest! {
        /// The number is accepted when some region of its country code allows its length,
        /// and written as the library's own E.164 formatter writes it.
        #[test]
        fn numbers_are_checked_and_written_as_the_library_does(
            prefix in proptest::sample::select(vec!["", "+", "+1 ", "+39 0", "+44 (0) ", "00", "011", "0"]),
            digits in "[0-9]{3,16}",
            region in proptest::sample::select(vec!["US", "GB", "IT", "DE", "BR", "AU", "IN", "RU"]),
        ) {
            let region = Region::parse(region).expect("region");
            let input = format!("{prefix}{digits}");
            let expected = read(&input, region).and_then(|n| {
                let metas = DATABASE.by_code(&n.code().value()).ok_or(PhoneError::UnknownCountryCode)?;
                let len = n.national().to_string().len() as u16;
                if !metas.iter().any(|m| region_lengths(m).contains(&len)) {
                    return Err(PhoneError::WrongLength);
                }
                Ok(n.format().mode(phonenumber::Mode::E164).to_string())
            });
            let expected = expected.and_then(PhoneNumber::from_e164).map(|p| p.0);
            proptest::prop_assert_eq!(PhoneNumber::parse(&input, region).map(|p| p.0), expected);
        }
    }

    /// `start`, then `digits` with `seps[i]` before digit i and the last separator after them.
    fn separated(start: &str, digits: &str, seps: &[&str]) -> String {
        let mut input = String::from(start);
        for (i, d) in digits.chars().enumerate() {
            input.push_str(seps[i]);
            input.push(d);
        }
        input.push_str(seps[seps.len() - 1]);
        input
    }

    /// `input` read by the library in `region`, checked for its length and written in E.164.
    fn as_the_library_reads(input: &str, region: Region) -> Result<String, PhoneError> {
        read(input, region)
            .and_then(|n| {
                let len = n.national().to_string().len() as u32;
                match possible_lengths(n.code().value()) {
                    Some(set) if set & (1 << len) != 0 => {
                        Ok(n.format().mode(phonenumber::Mode::E164).to_string())
                    }
                    Some(_) => Err(PhoneError::WrongLength),
                    None => Err(PhoneError::UnknownCountryCode),
                }
            })
            .and_then(PhoneNumber::from_e164)
            .map(|p| p.0)
    }

    proptest::proptest! {
        /// NANP numbers in international form, with separators anywhere, read as the
        /// library reads them.
        #[test]
        fn nanp_international_numbers_are_read_as_the_library_does(
            digits in "1[0-9]{10}|1[2-9][0-9]{9}|1?[0-9]{9,11}",
            seps in proptest::collection::vec(proptest::sample::select(vec!["", "", "", " ", "-", ".", "(", ")", " (", ") ", "+"]), 14),
        ) {
            let input = separated("+", &digits, &seps);
            let expected = as_the_library_reads(&input, Region::US);
            proptest::prop_assert_eq!(PhoneNumber::parse(&input, Region::US).map(|p| p.0), expected, "{}", input);
        }
    }

    /// Every NANP region, and a few others.
    fn regions_reading_nanp_national_numbers() -> Vec<Region> {
        let mut ids: Vec<String> = DATABASE
            .by_code(&1)
            .expect("NANP")
            .iter()
            .map(|m| m.id().to_owned())
            .collect();
        ids.extend(["GB", "IT", "BR", "IN"].map(String::from));
        ids.iter().filter_map(|id| Region::parse(id)).collect()
    }

    proptest::proptest! {
        /// Numbers in national form, with separators anywhere, read in each NANP region (and
        /// some others) as the library reads them.
        #[test]
        fn national_numbers_are_read_as_the_library_does(
            digits in "1?[2-9][0-9]{9}|1?[0-9]{9,11}|0?11[0-9]{8,10}",
            seps in proptest::collection::vec(proptest::sample::select(vec!["", "", "", " ", "-", ".", "(", ")", " (", ") "]), 14),
            region in proptest::sample::select(regions_reading_nanp_national_numbers()),
        ) {
            let input = separated("", &digits, &seps);
            let expected = as_the_library_reads(&input, region);
            proptest::prop_assert_eq!(PhoneNumber::parse(&input, region).map(|p| p.0), expected, "{} in {}", input, region.code());
        }
    }

    #[test]
    fn italian_numbers_keep_their_leading_zero() {
        assert_eq!(us("+39 06 6982 1234"), Ok("+390669821234".to_string()));
    }

    #[test]
    fn serde_round_trips_and_rejects_non_e164() {
        let p = PhoneNumber::parse("8181234567", Region::US).expect("parse");
        let json = serde_json::to_string(&p).expect("ser");
        assert_eq!(json, "\"+18181234567\"");
        assert_eq!(serde_json::from_str::<PhoneNumber>(&json).expect("de"), p);
        assert!(serde_json::from_str::<PhoneNumber>("\"8181234567\"").is_err());
    }
}
