//! The rule table: calling windows, closed days and message caps by place, as data.
//!
//! The product ships `shared/data/contact-policy-rules.toml`; `POLICY__RULES_FILE` replaces
//! it. A file that does not parse, or a row that says something impossible, is refused
//! with the line that is wrong, so a process never starts on a table it misread.

use super::Channel;
use chrono::{NaiveDate, NaiveTime, Weekday};
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;

/// The table that ships with the product.
pub const SHIPPED: &str = include_str!("../../data/contact-policy-rules.toml");

static SHIPPED_TABLE: std::sync::LazyLock<RuleTable> = std::sync::LazyLock::new(|| {
    // A test (`the_shipped_table_parses…`) holds the shipped file to parsing; should it
    // ever fail, the federal window still applies to everyone.
    RuleTable::parse(SHIPPED, "the shipped rule table").unwrap_or_else(|_| RuleTable {
        rules: vec![Rule {
            id: "US-federal".into(),
            region: Region::Everywhere,
            channels: vec![Channel::Call, Channel::Sms],
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(21, 0, 0).unwrap_or(NaiveTime::MIN),
            closed_days: Vec::new(),
            closed_dates: Vec::new(),
            max_per_24h: None,
            citation: "47 CFR § 64.1200(c)(1)".into(),
            checked: NaiveDate::MIN,
        }],
    })
});

/// The shipped table, parsed once.
pub fn shipped() -> RuleTable {
    SHIPPED_TABLE.clone()
}

/// The table in force: the file at `path` when set (`POLICY__RULES_FILE`), else the
/// shipped one. A file that cannot be read or parsed is an error naming the line.
pub fn load(path: Option<&std::path::Path>) -> Result<RuleTable, TableError> {
    let Some(path) = path else {
        return Ok(shipped());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TableError {
        source_name: name.clone(),
        line: 0,
        message: format!("cannot be read: {e}"),
    })?;
    RuleTable::parse(&text, &name)
}

/// Where a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    /// Every contact, wherever it is.
    Everywhere,
    /// Contacts in one US state or territory (postal code).
    State(String),
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Named in every verdict the rule decides (`US-FL`).
    pub id: String,
    pub region: Region,
    pub channels: Vec<Channel>,
    /// Allowed local time of day: from `start` (included) to `end` (excluded).
    pub start: NaiveTime,
    pub end: NaiveTime,
    /// Local weekdays with no attempt at all.
    pub closed_days: Vec<Weekday>,
    /// Local dates with no attempt at all (legal holidays).
    pub closed_dates: Vec<NaiveDate>,
    /// Messages one number may be sent in any 24 hours.
    pub max_per_24h: Option<u32>,
    pub citation: String,
    pub checked: NaiveDate,
}

impl Rule {
    pub fn governs(&self, channel: Channel) -> bool {
        self.channels.contains(&channel)
    }
}

/// The rules in force, in the order of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTable {
    pub rules: Vec<Rule>,
}

/// Why a table was refused: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}, line {line}: {message}")]
pub struct TableError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    region: Spanned<String>,
    channels: Spanned<Vec<String>>,
    window: Spanned<String>,
    #[serde(default)]
    closed_days: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    closed_dates: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    max_per_24h: Option<Spanned<i64>>,
    citation: Spanned<String>,
    checked: Spanned<String>,
}

impl RuleTable {
    /// The shipped table.
    pub fn shipped() -> Result<Self, TableError> {
        Self::parse(SHIPPED, "the shipped rule table")
    }

    /// Reads `text`; `source_name` names it in errors (a file path).
    pub fn parse(text: &str, source_name: &str) -> Result<Self, TableError> {
        let error = |span: Range<usize>, message: String| TableError {
            source_name: source_name.to_owned(),
            line: line_of(text, span.start),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            error(span, e.message().to_owned())
        })?;
        if file.rule.is_empty() {
            return Err(error(0..0, "the table has no [[rule]]".into()));
        }
        let mut rules: Vec<Rule> = Vec::with_capacity(file.rule.len());
        for raw in file.rule {
            let span = raw.span();
            let rule = raw.into_inner().check().map_err(|(s, m)| error(s, m))?;
            if rules.iter().any(|r| r.id == rule.id) {
                return Err(error(span, format!("the id {} is used twice", rule.id)));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Rules that govern `channel` for a contact in `state` (when known): the state's own
    /// first, so that a verdict names the most specific rule that decided it.
    pub fn applicable<'a>(
        &'a self,
        channel: Channel,
        state: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        let of_state = self.rules.iter().filter(move |r| {
            r.governs(channel) && matches!(&r.region, Region::State(s) if Some(s.as_str()) == state)
        });
        let everywhere = self
            .rules
            .iter()
            .filter(move |r| r.governs(channel) && r.region == Region::Everywhere);
        of_state.chain(everywhere)
    }
}

type Checked<T> = Result<T, (Range<usize>, String)>;

impl RawRule {
    fn check(self) -> Checked<Rule> {
        let id = nonblank(self.id)?;
        let region = match self.region.get_ref().trim() {
            "*" => Region::Everywhere,
            s if s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase()) => {
                Region::State(s.to_owned())
            }
            other => {
                return Err((
                    self.region.span(),
                    format!("region {other:?} is neither \"*\" nor a two-letter state code"),
                ));
            }
        };
        let channels = channels(self.channels)?;
        let (start, end) = window(self.window)?;
        let closed_days = match self.closed_days {
            Some(days) => weekdays(days)?,
            None => Vec::new(),
        };
        let closed_dates = match self.closed_dates {
            Some(dates) => dates_of(dates)?,
            None => Vec::new(),
        };
        let max_per_24h = match self.max_per_24h {
            Some(n) if *n.get_ref() < 1 || *n.get_ref() > 1000 => {
                return Err((n.span(), "max_per_24h must be from 1 to 1000".into()));
            }
            Some(n) => Some(*n.get_ref() as u32),
            None => None,
        };
        let citation = nonblank(self.citation)?;
        let checked = date(&self.checked)?;
        Ok(Rule {
            id,
            region,
            channels,
            start,
            end,
            closed_days,
            closed_dates,
            max_per_24h,
            citation,
            checked,
        })
    }
}

fn nonblank(s: Spanned<String>) -> Checked<String> {
    let v = s.get_ref().trim();
    if v.is_empty() {
        return Err((s.span(), "must not be blank".into()));
    }
    Ok(v.to_owned())
}

fn channels(list: Spanned<Vec<String>>) -> Checked<Vec<Channel>> {
    let mut out = Vec::new();
    for c in list.get_ref() {
        let channel = match c.as_str() {
            "call" => Channel::Call,
            "sms" => Channel::Sms,
            other => {
                return Err((
                    list.span(),
                    format!("unknown channel {other:?} (call, sms)"),
                ));
            }
        };
        if !out.contains(&channel) {
            out.push(channel);
        }
    }
    if out.is_empty() {
        return Err((list.span(), "channels must name call, sms or both".into()));
    }
    Ok(out)
}

fn window(w: Spanned<String>) -> Checked<(NaiveTime, NaiveTime)> {
    let bad = || {
        (
            w.span(),
            format!(
                "window {:?} is not \"HH:MM-HH:MM\" with the start before the end",
                w.get_ref()
            ),
        )
    };
    let (a, b) = w.get_ref().split_once('-').ok_or_else(bad)?;
    let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
    let (start, end) = (time(a)?, time(b)?);
    if start >= end {
        return Err(bad());
    }
    Ok((start, end))
}

fn weekdays(list: Spanned<Vec<String>>) -> Checked<Vec<Weekday>> {
    list.get_ref()
        .iter()
        .map(|d| {
            d.parse::<Weekday>().map_err(|_| {
                (
                    list.span(),
                    format!("{d:?} is not a weekday (mon, tue, … sun)"),
                )
            })
        })
        .collect()
}

fn dates_of(list: Spanned<Vec<String>>) -> Checked<Vec<NaiveDate>> {
    list.get_ref()
        .iter()
        .map(|d| {
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| (list.span(), format!("{d:?} is not a date (YYYY-MM-DD)")))
        })
        .collect()
}

fn date(d: &Spanned<String>) -> Checked<NaiveDate> {
    NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d").map_err(|_| {
        (
            d.span(),
            format!("{:?} is not a date (YYYY-MM-DD)", d.get_ref()),
        )
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.matches('\n').count() + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_with_the_federal_window_and_the_named_states() {
        let t = RuleTable::shipped().expect("shipped table");
        let federal = t
            .rules
            .iter()
            .find(|r| r.id == "US-federal")
            .expect("federal");
        assert_eq!(federal.region, Region::Everywhere);
        assert_eq!(
            (federal.start.to_string(), federal.end.to_string()),
            ("08:00:00".into(), "21:00:00".into())
        );
        for s in ["FL", "OK", "WA", "MD"] {
            let r = t
                .rules
                .iter()
                .find(|r| r.region == Region::State(s.into()))
                .unwrap_or_else(|| panic!("no rule for {s}"));
            assert_eq!(r.end.to_string(), "20:00:00", "{s}");
        }
        for s in ["FL", "OK"] {
            assert!(
                t.applicable(Channel::Sms, Some(s))
                    .any(|r| r.max_per_24h == Some(3)),
                "{s} caps messages"
            );
        }
        assert!(
            t.rules
                .iter()
                .any(|r| r.closed_days.contains(&Weekday::Sun))
        );
        assert!(t.rules.iter().all(|r| !r.citation.is_empty()));
    }

    #[test]
    fn a_malformed_table_names_the_line_that_is_wrong() {
        let good = "[[rule]]\nid = \"X\"\nregion = \"*\"\nchannels = [\"call\"]\n\
                    window = \"08:00-21:00\"\ncitation = \"c\"\nchecked = \"2026-01-01\"\n";
        RuleTable::parse(good, "rules.toml").expect("a good table");
        let text = &good.replace("08:00-21:00", "21:00-08:00");
        let e = RuleTable::parse(text, "rules.toml").expect_err("start after end");
        assert_eq!(e.line, 5, "{e}");
        assert!(
            e.to_string().starts_with("rules.toml, line 5: window"),
            "{e}"
        );

        let e = RuleTable::parse(&text.replace("\"call\"", "\"fax\""), "r").expect_err("fax");
        assert_eq!(e.line, 4, "{e}");

        let e = RuleTable::parse(&text.replace("region = \"*\"", "region = \"Florida\""), "r")
            .expect_err("region");
        assert_eq!(e.line, 3, "{e}");

        let e = RuleTable::parse("[[rule]]\nid = \"X\"\nregion = \n", "r").expect_err("syntax");
        assert_eq!(e.line, 3, "{e}");

        let e = RuleTable::parse(&format!("{text}oops = 1\n"), "r").expect_err("unknown key");
        assert!(e.message.contains("oops"), "{e}");

        let twice = format!("{good}{good}");
        let e = RuleTable::parse(&twice, "r").expect_err("same id twice");
        assert_eq!(e.line, 8, "{e}");
    }
}
