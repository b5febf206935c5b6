//! The status literals of hand-written SQL. Statuses are literals in SQL (a partial index
//! only serves a query that names its predicate's value), so a test of each crate that
//! writes such SQL checks every one against the status enums.

use sea_orm::{ActiveEnum, Iterable};
use shared::entities::message::MessageStatus;
use shared::entities::powerdialer_item::PowerdialerStatus;
use shared::entities::sequence_enrollment::EnrollmentStatus;
use shared::intake::IntakeStatus;
use std::collections::HashSet;

/// Asserts that every literal `status` is compared with or set to in `sources` (name, SQL
/// or Rust text; `--` comments skipped) is a value of a status enum; returns how many it
/// found, so a caller can tell the check saw its statements.
pub fn assert_known<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    let known: HashSet<String> = IntakeStatus::iter()
        .map(|s| s.to_value())
        .chain(EnrollmentStatus::iter().map(|s| s.to_value()))
        .chain(PowerdialerStatus::iter().map(|s| s.to_value()))
        .chain(MessageStatus::iter().map(|s| s.to_value()))
        .collect();
    let mut named = 0;
    for (name, text) in sources {
        for line in text.lines() {
            let code = line.split("--").next().unwrap_or_default();
            for literal in compared(code) {
                named += 1;
                assert!(
                    known.contains(literal),
                    "{name}: '{literal}' is not a status: {line}"
                );
            }
        }
    }
    named
}

/// The literals `status` is compared with or set to on a line: `status = 'x'`,
/// `status IN ('x', 'y')`, `status NOT IN (…)`.
fn compared(code: &str) -> Vec<&str> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("status") {
        let rest = code[at + "status".len()..].trim_start();
        let list = if let Some(r) = rest.strip_prefix('=') {
            r.trim_start()
                .strip_prefix('\'')
                .and_then(|r| r.split_once('\''))
                .map(|(literal, _)| vec![literal])
        } else {
            rest.strip_prefix("NOT IN")
                .or_else(|| rest.strip_prefix("IN"))
                .and_then(|r| r.trim_start().strip_prefix('('))
                .and_then(|r| r.split_once(')'))
                .map(|(inside, _)| inside.split('\'').skip(1).step_by(2).collect())
        };
        found.extend(list.unwrap_or_default());
    }
    found
}
