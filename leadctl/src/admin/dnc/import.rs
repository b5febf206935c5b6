//! `leadctl dnc import`: a file of numbers onto an account's do-not-contact list, streamed
//! (memory does not grow with the file) and written [`BATCH`] entries a statement.
//!
//! The file is either
//! - a list: one number per line, in any format a lead's number may have (a line's first
//!   CSV column, if it has several); or
//! - a CSV file whose first row is a header naming a `phone_number` (or `phone`, `number`)
//!   column, and optionally `channel` (call, sms, all), `reason` and `expires` (or
//!   `expires_at`: an RFC 3339 instant or a duration such as `30d`) columns. A blank cell
//!   takes the import's default.
//!
//! Either way an entry is one line (a quoted cell cannot span lines), so that a bad line is
//! named by its line number.
//!
//! An import adds the entries that are not on the list yet and leaves those that are as they
//! are (`dnc add` replaces a reason or an expiry), so running it again changes nothing. A
//! new entry revokes the consent its number's contact gave on the entry's channels, as
//! `dnc add` does. Lines that cannot be read (a number the phone parser refuses, an unknown
//! channel, an expiry in the past) are counted with their line numbers and skipped.

use super::{NewEntry, Source, Terms, expires_at, number, reason, region_of, write};
use crate::admin::{AdminError, Result};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, TransactionSession, TransactionTrait};
use serde::Serialize;
use shared::phone::Region;
use shared::policy::DncChannel;
use std::collections::HashSet;

/// Entries a statement writes.
pub const BATCH: usize = 1_000;
/// Invalid lines an import lists (all are counted).
pub const INVALID_SHOWN: usize = 20;

/// Header names of the number column, compared ignoring case.
const NUMBER_COLUMNS: [&str; 4] = ["phone_number", "phone", "number", "phone number"];

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub account_id: i64,
    /// `list` (a number a line) or `csv` (a header row naming the columns).
    pub format: &'static str,
    /// Lines that hold an entry (neither blank nor the header).
    pub lines: u64,
    /// Entries put on the list by this import.
    pub added: u64,
    /// Entries that were on the list already (or earlier in the file), left as they were.
    pub already_present: u64,
    pub invalid: u64,
    /// The first [`INVALID_SHOWN`] invalid lines.
    pub invalid_lines: Vec<InvalidLine>,
    /// Consent records revoked because their number was added.
    pub consents_revoked: u64,
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidLine {
    /// 1 = the file's first line.
    pub line: u64,
    pub error: String,
}

/// Where the columns are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    number: usize,
    channel: Option<usize>,
    reason: Option<usize>,
    expires: Option<usize>,
}

impl Columns {
    /// A list's: the number in the first column.
    const LIST: Columns = Columns {
        number: 0,
        channel: None,
        reason: None,
        expires: None,
    };

    /// The columns a header row names, if it names a number column.
    fn of_header(cells: &[String]) -> Option<Self> {
        let find = |names: &[&str]| {
            cells
                .iter()
                .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))
        };
        Some(Self {
            number: find(&NUMBER_COLUMNS)?,
            channel: find(&["channel"]),
            reason: find(&["reason"]),
            expires: find(&["expires", "expires_at"]),
        })
    }
}

/// Imports the numbers `source` holds onto the list of `account_id`, each entry on the
/// `defaults`' terms where its line does not say otherwise. `progress` is told the bytes
/// read so far after each batch.
pub async fn import(
    db: &(impl ConnectionTrait + TransactionTrait),
    account_id: i64,
    mut source: impl std::io::BufRead,
    defaults: &Terms,
    mut progress: impl FnMut(u64),
) -> Result<Summary> {
    let region = region_of(db, account_id).await?;
    let now = Utc::now();
    let mut summary = Summary {
        account_id,
        format: "list",
        ..Summary::default()
    };
    let mut columns: Option<Columns> = None;
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let (mut line, mut bytes) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = source
            .read_until(b'\n', &mut buf)
            .map_err(|e| AdminError::Invalid(format!("Failed to read the file: {e}")))?;
        if n == 0 {
            break;
        }
        line += 1;
        bytes += n as u64;
        let cells = cells(&buf, line == 1);
        if cells.iter().all(String::is_empty) {
            continue;
        }
        let cols = match columns {
            Some(c) => c,
            None => {
                let found = Columns::of_header(&cells);
                columns = Some(found.unwrap_or(Columns::LIST));
                if found.is_some() {
                    summary.format = "csv";
                    continue;
                }
                Columns::LIST
            }
        };
        summary.lines += 1;
        match entry(&cells, cols, defaults, region, now) {
            Ok(e) => batch.push(e),
            Err(error) => summary.invalid(line, error),
        }
        if batch.entries.len() >= BATCH {
            batch.flush(db, account_id, &mut summary).await?;
            progress(bytes);
        }
    }
    batch.flush(db, account_id, &mut summary).await?;
    progress(bytes);
    Ok(summary)
}

/// The trimmed cells of one line of CSV (read lossily when it is not UTF-8; without the
/// byte-order mark a spreadsheet puts before the `first` line).
fn cells(line: &[u8], first: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    let text = if first {
        text.trim_start_matches('\u{feff}')
    } else {
        text
    };
    if !text.contains('"') {
        return text.split(',').map(|c| c.trim().to_owned()).collect();
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => record.iter().map(|c| c.trim().to_owned()).collect(),
        // Reading bytes that are there cannot fail; should it, the line as one cell.
        _ => vec![text.trim().to_owned()],
    }
}

impl Summary {
    fn invalid(&mut self, line: u64, error: String) {
        self.invalid += 1;
        if self.invalid_lines.len() < INVALID_SHOWN {
            self.invalid_lines.push(InvalidLine { line, error });
        }
    }
}

/// The entry one line holds.
fn entry(
    cells: &[String],
    cols: Columns,
    defaults: &Terms,
    region: Region,
    now: DateTime<Utc>,
) -> std::result::Result<NewEntry, String> {
    let cell = |i: Option<usize>| {
        i.and_then(|i| cells.get(i))
            .map(String::as_str)
            .filter(|c| !c.is_empty())
    };
    let number = match cell(Some(cols.number)) {
        Some(text) => number(text, region).map_err(|e| e.to_string())?,
        None => return Err("no number".into()),
    };
    let channel = match cell(cols.channel) {
        Some(text) => DncChannel::parse(text)
            .ok_or_else(|| format!("the channel must be call, sms or all; {text:?} is not"))?,
        None => defaults.channel,
    };
    let reason = match cell(cols.reason) {
        Some(text) => reason(text).map_err(|e| e.to_string())?,
        None => defaults.reason.clone(),
    };
    let expires_at = match cell(cols.expires) {
        Some(text) => Some(expires_at(text, now).map_err(|e| e.to_string())?),
        None => defaults.expires_at,
    };
    Ok(NewEntry {
        number,
        terms: Terms {
            channel,
            reason,
            expires_at,
        },
    })
}

/// Entries waiting to be written, each (number, channel) once.
#[derive(Default)]
struct Batch {
    entries: Vec<NewEntry>,
    keys: HashSet<(String, DncChannel)>,
    /// Lines that repeat an entry of the batch: already present once it is written.
    repeated: u64,
}

impl Batch {
    fn push(&mut self, e: NewEntry) {
        if self
            .keys
            .insert((e.number.as_str().to_owned(), e.terms.channel))
        {
            self.entries.push(e);
        } else {
            self.repeated += 1;
        }
    }

    async fn flush(
        &mut self,
        db: &(impl ConnectionTrait + TransactionTrait),
        account_id: i64,
        summary: &mut Summary,
    ) -> Result<()> {
        // The entries and their announcements (`dnc.added`, §11) commit together.
        let txn = db.begin().await?;
        let written = write(&txn, account_id, &self.entries, Source::Import, false).await?;
        shared::events::record(
            &txn,
            written.events(account_id, Source::Import, Utc::now())?,
        )
        .await?;
        txn.commit().await?;
        let total = self.entries.len() as u64 + self.repeated;
        summary.added += written.added;
        summary.already_present += total - written.added;
        summary.consents_revoked += written.consents_revoked;
        self.entries.clear();
        self.keys.clear();
        self.repeated = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_line_splits_into_trimmed_cells_quoted_or_not() {
        assert_eq!(
            cells(b"\xef\xbb\xbfphone , reason\r\n", true),
            ["phone", "reason"]
        );
        assert_eq!(
            cells(b"\"(818) 555-0100\",\"asked, twice\"\n", false),
            ["(818) 555-0100", "asked, twice"]
        );
        assert_eq!(cells(b"8185550100", false), ["8185550100"]);
        // An unclosed quote runs to the end of its line, not into the next.
        assert_eq!(cells(b"\"8185550100,sms\n", false), ["8185550100,sms"]);
        assert_eq!(cells(b"\xff8185550100\n", false), ["\u{fffd}8185550100"]);
    }

    #[test]
    fn a_header_is_a_row_naming_a_number_column() {
        assert_eq!(
            Columns::of_header(&strings(&["Reason", "Phone", "channel", "Expires_At"])),
            Some(Columns {
                number: 1,
                channel: Some(2),
                reason: Some(0),
                expires: Some(3),
            })
        );
        assert_eq!(
            Columns::of_header(&strings(&["number"])),
            Some(Columns {
                number: 0,
                ..Columns::LIST
            })
        );
        assert_eq!(Columns::of_header(&strings(&["+18185550100"])), None);
        assert_eq!(
            Columns::of_header(&strings(&["(818) 555-0100", "sms"])),
            None
        );
    }

    #[test]
    fn a_line_takes_the_defaults_where_its_cells_are_blank() {
        let now: DateTime<Utc> = "2026-12-02T12:00:00Z".parse().expect("t");
        let defaults = Terms {
            channel: DncChannel::All,
            reason: Some("complaint".into()),
            expires_at: None,
        };
        let cols = Columns::of_header(&strings(&["phone", "channel", "reason", "expires"]))
            .expect("header");
        let e = entry(
            &strings(&["(818) 555-0100", "", "", ""]),
            cols,
            &defaults,
            Region::US,
            now,
        )
        .expect("valid");
        assert_eq!(e.number.as_str(), "+18185550100");
        assert_eq!(e.terms, defaults);
        let e = entry(
            &strings(&["818.555.0100", "SMS", "texted STOP", "1d"]),
            cols,
            &defaults,
            Region::US,
            now,
        )
        .expect("valid");
        assert_eq!(
            e.terms,
            Terms {
                channel: DncChannel::Sms,
                reason: Some("texted STOP".into()),
                expires_at: Some("2026-12-03T12:00:00Z".parse().expect("t")),
            }
        );
        let bad =
            |c: &[&str]| entry(&strings(c), cols, &defaults, Region::US, now).expect_err("invalid");
        assert!(bad(&["12", "", "", ""]).contains("\"12\""));
        assert!(bad(&["8185550100", "fax", "", ""]).contains("\"fax\" is not"));
        assert!(bad(&["8185550100", "", "", "2001-01-01T00:00:00Z"]).contains("future"));
        assert_eq!(bad(&["", "sms", "", ""]), "no number");
    }
}
