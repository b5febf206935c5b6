//! `leadctl import FILE.csv --token TOKEN`: streams a CSV file of any size through the
//! receiver's bulk endpoint, [`CHUNK`] rows a request, so an import obeys the same token,
//! limits, queue and worker as any other lead.
//!
//! - The header row names the columns; `--map 'Phone=phone_number'` renames them (the
//!   token's own mapping applies on the receiver too). A UTF-8 BOM, blank lines and quoted
//!   commas or line breaks are read as spreadsheets write them.
//! - A 429 (for the whole request, or for some of its leads) is honoured by waiting its
//!   `retry_after_ms` and sending the refused rows again; so is a 503.
//! - Rows the receiver refuses go to `FILE.rejected.csv` with their line and errors.
//! - Each request carries an `Idempotency-Key` made of its rows' content: a request sent
//!   again (after an interruption, with `--resume-from`) is answered from the first time
//!   and queues nothing twice.
//! - `--dry-run` checks each row with the validate endpoint and queues nothing.
//!
//! Memory is bounded by the chunks in flight ([`CHUNKS_IN_FLIGHT`]): the file is read as it
//! is sent.

use crate::cli::Output;
use bytes::Bytes;
use clap::Args;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use shared::answer::BulkAnswer;
use shared::mapping::FieldMap;
use shared::payload::{FieldErrors, RawLead};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Rows per bulk request (the endpoint's maximum).
pub const CHUNK: usize = 1_000;
/// Chunks (bulk requests) in flight at once: a few keep the receiver's publishing busy
/// while the next chunk is read and the last one's answer travels back.
const CHUNKS_IN_FLIGHT: usize = 3;
/// Validate requests in flight at once during a dry run (per chunk).
const DRY_RUN_IN_FLIGHT: usize = 16;
/// Attempts at a request the receiver could not serve (503, connection refused).
const UNAVAILABLE_ATTEMPTS: u32 = 6;
/// Longest a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The CSV file; its first row names the columns.
    pub file: PathBuf,
    /// The API token the leads are sent with.
    #[arg(long, env = "LEADCTL_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Rename a column to a lead field: `--map 'Phone=phone_number'` (repeatable).
    #[arg(long = "map")]
    pub maps: Vec<String>,
    /// Check every row with the validate endpoint; queue nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start at this data row (1 = the first row after the header), as an interrupted
    /// import printed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub resume_from: u64,
    /// The receiver's base URL.
    #[arg(long, env = "RECEIVER_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub file: String,
    pub dry_run: bool,
    /// Data rows read from `resume_from` on (blank ones not counted).
    pub rows: u64,
    /// Queued (or, in a dry run, valid).
    pub accepted: u64,
    pub rejected: u64,
    /// Where the rejected rows and their errors were written, if any was.
    pub rejected_file: Option<String>,
    /// The first row of this run.
    pub started_at_row: u64,
    /// Stopped before the end: run again with `--resume-from` this row.
    pub resume_from: Option<u64>,
    pub elapsed_ms: u64,
    pub rows_per_second: f64,
}

/// Runs `leadctl import` until done or Ctrl-C, and renders its summary.
pub async fn command(args: &ImportArgs, json: bool) -> anyhow::Result<Output> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let progress = !json && std::io::stderr().is_terminal();
    let summary = run(args, stop, progress).await?;
    let verb = if summary.dry_run {
        "Checked"
    } else {
        "Imported"
    };
    let mut human = format!(
        "{verb} {} row(s) of {}: {} {}, {} rejected in {:.1} s ({:.0} rows/s)",
        summary.rows,
        summary.file,
        summary.accepted,
        if summary.dry_run { "valid" } else { "accepted" },
        summary.rejected,
        summary.elapsed_ms as f64 / 1000.0,
        summary.rows_per_second
    );
    if let Some(path) = &summary.rejected_file {
        human.push_str(&format!("\nRejected rows and their errors: {path}"));
    }
    if let Some(row) = summary.resume_from {
        human.push_str(&format!(
            "\nInterrupted: run again with --resume-from {row} to continue"
        ));
    }
    let mut value = serde_json::to_value(&summary)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("id".into(), Value::Null);
    }
    Ok(Output { json: value, human })
}

/// One data row: where it is, what it says, and its lead.
struct Row {
    /// 1 = the first data row.
    number: u64,
    /// The line it starts on in the file.
    line: u64,
    record: csv::StringRecord,
    /// The lead's JSON (one line).
    lead: String,
}

/// Imports `args.file` until the end or until `stop`; `progress` draws a bar on stderr.
pub async fn run(
    args: &ImportArgs,
    stop: CancellationToken,
    progress: bool,
) -> anyhow::Result<Summary> {
    let map = FieldMap::parse(&args.maps)?;
    let total = if progress {
        count_rows(&args.file).ok()
    } else {
        None
    };
    let mut reader = open(&args.file)?;
    let headers = headers(&mut reader, &args.file)?;
    let sender = Sender {
        client: Client::builder(TokioExecutor::new()).build_http(),
        args,
    };
    let mut book = Book::new(args, &headers, total);

    // Chunks in flight, oldest first, each with its first row: results are booked in file
    // order, and an interruption resumes at the oldest chunk not booked.
    let mut in_flight = FuturesOrdered::new();
    let mut firsts: VecDeque<u64> = VecDeque::new();
    let mut chunk: Vec<Row> = Vec::with_capacity(CHUNK);
    let mut number = 0u64;
    let mut record = csv::StringRecord::new();
    let mut interrupted = None;
    let mut more = true;
    while more || !in_flight.is_empty() {
        if more && in_flight.len() < CHUNKS_IN_FLIGHT {
            more = reader
                .read_record(&mut record)
                .map_err(|e| anyhow::anyhow!("Failed to read {}: {e}", args.file.display()))?;
            if more {
                if record.iter().all(|f| f.trim().is_empty()) {
                    continue;
                }
                number += 1;
                if number < args.resume_from {
                    continue;
                }
                let line = record.position().map_or(0, |p| p.line());
                chunk.push(Row {
                    number,
                    line,
                    lead: lead_json(&headers, &record, &map),
                    record: record.clone(),
                });
            }
            if chunk.len() == CHUNK || (!more && !chunk.is_empty()) {
                let rows = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                firsts.push_back(rows.first().map_or(number, |r| r.number));
                let sender = &sender;
                in_flight.push_back(async move { sender.send(rows).await });
            }
            if !stop.is_cancelled() {
                continue;
            }
        }
        tokio::select! {
            biased;
            Some(tally) = in_flight.next() => {
                firsts.pop_front();
                book.add(tally?)?;
            }
            _ = stop.cancelled() => {
                interrupted = Some(
                    firsts
                        .front()
                        .copied()
                        .or(chunk.first().map(|r| r.number))
                        .unwrap_or(number + 1),
                );
                break;
            }
        }
    }
    drop(in_flight);
    book.finish(interrupted)
}

/// Data rows of `path` (a quick first pass, for the progress bar's total).
fn count_rows(path: &Path) -> anyhow::Result<u64> {
    let mut reader = open(path)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0;
    while reader.read_byte_record(&mut record)? {
        if !record.iter().all(|f| f.trim_ascii().is_empty()) {
            rows += 1;
        }
    }
    Ok(rows)
}

fn open(path: &Path) -> anyhow::Result<csv::Reader<std::fs::File>> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("Failed to open {}: {e}", path.display()))?;
    Ok(csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Fields)
        .from_reader(file))
}

/// The header row's column names (a spreadsheet's UTF-8 BOM removed, names trimmed).
fn headers(reader: &mut csv::Reader<std::fs::File>, file: &Path) -> anyhow::Result<Vec<String>> {
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("Failed to read the header row of {}: {e}", file.display()))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            };
            h.trim().to_owned()
        })
        .collect();
    anyhow::ensure!(
        headers.iter().any(|h| !h.is_empty()),
        "{} has no header row naming its columns",
        file.display()
    );
    Ok(headers)
}

/// A row as a lead: `{column: value}` for its non-blank cells, columns renamed by `map`.
fn lead_json(headers: &[String], record: &csv::StringRecord, map: &FieldMap) -> String {
    let mut fields = Map::new();
    for (name, value) in headers.iter().zip(record.iter()) {
        if name.is_empty() || value.is_empty() {
            continue;
        }
        fields.insert(name.clone(), Value::String(value.to_owned()));
    }
    let mut raw = RawLead::from_fields(fields);
    map.apply(&mut raw);
    raw.into_payload().to_string()
}

/// Sends chunks to the receiver; shared by the chunks in flight.
struct Sender<'a> {
    client: Client<HttpConnector, Full<Bytes>>,
    args: &'a ImportArgs,
}

/// The count of one chunk: its rows, how many were accepted, which were rejected.
struct ChunkTally {
    rows: u64,
    accepted: u64,
    /// Each refused row with its errors (if the receiver named any), in file order.
    rejected: Vec<(Row, Option<FieldErrors>)>,
}

/// The running totals, the rejected file and the progress bar.
struct Book {
    columns: usize,
    rejected: Rejected,
    summary: Summary,
    bar: Option<Bar>,
    started: Instant,
}

/// What the receiver said of one request.
struct Answer {
    status: StatusCode,
    /// The answer of an earlier request with the same key: its waits are stale.
    replayed: bool,
    retry_after: Option<Duration>,
    bytes: Bytes,
    /// `bytes` as JSON (`null` if they are not).
    body: Value,
}

impl Sender<'_> {
    /// Sends `rows` until each is accepted or rejected.
    async fn send(&self, rows: Vec<Row>) -> anyhow::Result<ChunkTally> {
        let mut tally = ChunkTally {
            rows: rows.len() as u64,
            accepted: 0,
            rejected: Vec::new(),
        };
        if self.args.dry_run {
            self.validate(rows, &mut tally).await?;
        } else {
            self.bulk(rows, &mut tally).await?;
        }
        tally.rejected.sort_by_key(|(row, _)| row.number);
        Ok(tally)
    }

    /// Sends `rows` through the bulk endpoint, again and again for those told to wait,
    /// until each is accepted or rejected.
    async fn bulk(&self, mut rows: Vec<Row>, tally: &mut ChunkTally) -> anyhow::Result<()> {
        let mut unavailable = 0;
        while !rows.is_empty() {
            let body = ndjson(&rows);
            let key = format!("import-{}", hex::encode(Sha256::digest(body.as_bytes())));
            let answer = self
                .post(
                    "/api/v1/webhook/forms/bulk",
                    "application/x-ndjson",
                    body,
                    Some(&key),
                )
                .await?;
            match answer.status {
                StatusCode::MULTI_STATUS => {
                    unavailable = 0;
                    let bulk: BulkAnswer = serde_json::from_slice(&answer.bytes).map_err(|e| {
                        anyhow::anyhow!("Failed to read the receiver's bulk answer: {e}")
                    })?;
                    let (again, mut wait) = sort_results(rows, bulk, tally);
                    rows = again;
                    if answer.replayed {
                        // Waits from the first time have passed or will be told afresh.
                        wait = Duration::ZERO;
                    }
                    if !rows.is_empty() {
                        tokio::time::sleep(wait).await;
                    }
                }
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                        unavailable += 1;
                        anyhow::ensure!(
                            unavailable < UNAVAILABLE_ATTEMPTS,
                            "the receiver stayed unavailable; resume with --resume-from {}",
                            rows.first().map_or(0, |r| r.number)
                        );
                    }
                    let wait = answer.body["retry_after_ms"]
                        .as_u64()
                        .map(Duration::from_millis)
                        .or(answer.retry_after)
                        .unwrap_or(Duration::from_secs(2));
                    tokio::time::sleep(wait).await;
                }
                status => anyhow::bail!(
                    "the receiver answered {status}: {}",
                    answer.body["message"].as_str().unwrap_or("(no message)")
                ),
            }
        }
        Ok(())
    }

    /// A dry run: each row through the validate endpoint, a few at a time.
    async fn validate(&self, rows: Vec<Row>, tally: &mut ChunkTally) -> anyhow::Result<()> {
        let this = self;
        let answers: Vec<(Row, anyhow::Result<Answer>)> = futures_util::stream::iter(rows)
            .map(|row| async move {
                let mut attempts = 0;
                loop {
                    let answer = this
                        .post(
                            "/api/v1/webhook/forms/validate",
                            "application/json",
                            row.lead.clone(),
                            None,
                        )
                        .await;
                    match answer {
                        Ok(a)
                            if (a.status == StatusCode::TOO_MANY_REQUESTS
                                || a.status == StatusCode::SERVICE_UNAVAILABLE)
                                && attempts < 20 =>
                        {
                            attempts += 1;
                            let wait = a.body["retry_after_ms"]
                                .as_u64()
                                .map(Duration::from_millis)
                                .or(a.retry_after)
                                .unwrap_or(Duration::from_secs(1));
                            tokio::time::sleep(wait).await;
                        }
                        other => return (row, other),
                    }
                }
            })
            .buffered(DRY_RUN_IN_FLIGHT)
            .collect()
            .await;
        for (row, answer) in answers {
            let answer = answer?;
            match answer.status {
                StatusCode::OK => tally.accepted += 1,
                StatusCode::BAD_REQUEST => tally.rejected.push((
                    row,
                    serde_json::from_value(answer.body["errors"].clone()).ok(),
                )),
                status => anyhow::bail!(
                    "the receiver answered {status}: {}",
                    answer.body["message"].as_str().unwrap_or("(no message)")
                ),
            }
        }
        Ok(())
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
        key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.args.url.trim_end_matches('/'));
        let mut attempts = 0;
        loop {
            let mut builder = Request::builder()
                .method(Method::POST)
                .uri(&url)
                .header("content-type", content_type)
                .header("authorization", format!("Bearer {}", self.args.token));
            if let Some(key) = key {
                builder = builder.header("idempotency-key", key);
            }
            let request = builder.body(Full::new(Bytes::from(body.clone())))?;
            let sent = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request)).await;
            let response = match sent {
                Ok(Ok(response)) => response,
                Ok(Err(error)) if attempts + 1 < UNAVAILABLE_ATTEMPTS => {
                    attempts += 1;
                    tracing::debug!(%error, "Receiver unreachable; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempts.min(4))).await;
                    continue;
                }
                Ok(Err(error)) => {
                    anyhow::bail!("Failed to reach the receiver at {url}: {error}")
                }
                Err(_) => anyhow::bail!("The receiver at {url} did not answer in time"),
            };
            let status = response.status();
            let replayed = response.headers().contains_key("idempotent-replayed");
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = response.into_body().collect().await?.to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == StatusCode::UNAUTHORIZED {
                anyhow::bail!("the receiver refused the token (401 Unauthenticated)");
            }
            return Ok(Answer {
                status,
                replayed,
                retry_after,
                bytes,
                body,
            });
        }
    }
}

impl Book {
    /// An empty book for the import of `args` with these headers; a bar when the file's
    /// `total` data rows were counted. The import's clock starts here.
    fn new(args: &ImportArgs, headers: &[String], total: Option<u64>) -> Self {
        Self {
            columns: headers.len(),
            rejected: Rejected::new(&args.file, headers, args.resume_from > 1),
            summary: Summary {
                file: args.file.display().to_string(),
                dry_run: args.dry_run,
                started_at_row: args.resume_from,
                ..Summary::default()
            },
            bar: total.map(|t| Bar::new(t.saturating_sub(args.resume_from - 1))),
            started: Instant::now(),
        }
    }

    /// Books a chunk's tally (chunks come in file order).
    fn add(&mut self, tally: ChunkTally) -> anyhow::Result<()> {
        self.summary.rows += tally.rows;
        self.summary.accepted += tally.accepted;
        for (row, errors) in &tally.rejected {
            self.summary.rejected += 1;
            self.rejected.write(row, errors.as_ref(), self.columns)?;
        }
        if let Some(bar) = &mut self.bar {
            bar.draw(&self.summary, self.started.elapsed());
        }
        Ok(())
    }

    fn finish(mut self, interrupted: Option<u64>) -> anyhow::Result<Summary> {
        if let Some(bar) = &mut self.bar {
            bar.done();
        }
        let elapsed = self.started.elapsed();
        self.summary.elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.summary.rows_per_second = if elapsed.as_secs_f64() > 0.0 {
            (self.summary.rows as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0
        } else {
            0.0
        };
        self.summary.resume_from = interrupted;
        self.summary.rejected_file = self.rejected.finish()?;
        Ok(self.summary)
    }
}

/// `FILE.rejected.csv`: each rejected row as it was, with its line and errors; created on
/// the first rejection (appended to when resuming).
struct Rejected {
    path: PathBuf,
    header: Vec<String>,
    append: bool,
    writer: Option<csv::Writer<std::fs::File>>,
}

impl Rejected {
    fn new(file: &Path, headers: &[String], append: bool) -> Self {
        let mut path = file.as_os_str().to_owned();
        path.push(".rejected.csv");
        let stem = file.with_extension("");
        let path = if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            let mut p = stem.into_os_string();
            p.push(".rejected.csv");
            PathBuf::from(p)
        } else {
            PathBuf::from(path)
        };
        let mut header = headers.to_vec();
        header.push("line".into());
        header.push("errors".into());
        Self {
            path,
            header,
            append,
            writer: None,
        }
    }

    fn write(
        &mut self,
        row: &Row,
        errors: Option<&FieldErrors>,
        columns: usize,
    ) -> anyhow::Result<()> {
        if self.writer.is_none() {
            let exists = self.append && self.path.exists();
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(exists)
                .truncate(!exists)
                .open(&self.path)
                .map_err(|e| anyhow::anyhow!("Failed to write {}: {e}", self.path.display()))?;
            let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(file);
            if !exists {
                writer.write_record(&self.header)?;
            }
            self.writer = Some(writer);
        }
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        let mut out: Vec<String> = (0..columns)
            .map(|i| row.record.get(i).unwrap_or_default().to_owned())
            .collect();
        out.push(row.line.to_string());
        out.push(error_text(errors));
        writer.write_record(&out)?;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<Option<String>> {
        match self.writer {
            Some(mut writer) => {
                writer.flush()?;
                Ok(Some(self.path.display().to_string()))
            }
            None => Ok(None),
        }
    }
}

/// `{"phone_number": ["…"], "email": ["…"]}` as `email: …; phone_number: …` (fields by
/// name, as the rejected file has always listed them).
fn error_text(errors: Option<&FieldErrors>) -> String {
    let Some(errors) = errors else {
        return "rejected".into();
    };
    let mut fields: Vec<(&str, &[String])> = errors.iter().collect();
    fields.sort_by_key(|(field, _)| *field);
    fields
        .iter()
        .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A one-line progress bar on stderr: rows/s, accepted, rejected, ETA.
struct Bar {
    total: u64,
}

impl Bar {
    fn new(total: u64) -> Self {
        Self { total }
    }

    fn draw(&mut self, summary: &Summary, elapsed: Duration) {
        let done = summary.rows.min(self.total);
        let fraction = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        let width = 30;
        let filled = (fraction * width as f64).round() as usize;
        let rate = summary.rows as f64 / elapsed.as_secs_f64().max(0.001);
        let eta = if rate > 0.0 {
            ((self.total - done) as f64 / rate) as u64
        } else {
            0
        };
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r[{}{}] {:>3.0}% {done}/{} rows  {rate:.0} rows/s  accepted {}  rejected {}  ETA {}:{:02}  ",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            fraction * 100.0,
            self.total,
            summary.accepted,
            summary.rejected,
            eta / 60,
            eta % 60
        );
        let _ = err.flush();
    }

    fn done(&mut self) {
        let _ = writeln!(std::io::stderr());
    }
}

/// `rows` as one NDJSON body, a lead a line.
fn ndjson(rows: &[Row]) -> String {
    let mut body = String::with_capacity(rows.iter().map(|r| r.lead.len() + 1).sum());
    for row in rows {
        body.push_str(&row.lead);
        body.push('\n');
    }
    body
}

/// Counts the accepted and rejected rows of a bulk answer into `tally`; gives back the
/// rows to send again, in file order, and how long to wait before sending them.
fn sort_results(rows: Vec<Row>, bulk: BulkAnswer, tally: &mut ChunkTally) -> (Vec<Row>, Duration) {
    let mut again = Vec::new();
    let mut wait = Duration::ZERO;
    let mut rows_by_index: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
    for result in bulk.results {
        let Some(row) = rows_by_index.get_mut(result.index).and_then(Option::take) else {
            continue;
        };
        match result.status {
            202 => tally.accepted += 1,
            429 => {
                let ms = result.retry_after_ms.unwrap_or(1000);
                wait = wait.max(Duration::from_millis(ms));
                again.push(row);
            }
            503 => {
                wait = wait.max(Duration::from_secs(2));
                again.push(row);
            }
            _ => tally.rejected.push((row, result.errors)),
        }
    }
    // A row the answer does not mention is sent again.
    again.extend(rows_by_index.into_iter().flatten());
    again.sort_by_key(|r| r.number);
    (again, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_commas_a_bom_and_blank_lines_read_as_a_spreadsheet_wrote_them() {
        let dir = std::env::temp_dir().join(format!("import-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("leads.csv");
        std::fs::write(
            &path,
            "\u{feff}Phone,Name,Notes\r\n\r\n\"(818) 123-4567\",\"Doe, Jane\",\"said \"\"hi\"\", then\nleft\"\r\n\r\n2125550100,Bo,\r\n",
        )
        .expect("write");
        let mut reader = open(&path).expect("open");
        let headers: Vec<String> = reader
            .headers()
            .expect("headers")
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_owned())
            .collect();
        assert_eq!(headers, ["Phone", "Name", "Notes"]);
        let map = FieldMap::parse(&["Phone=phone_number", "Name=name", "Notes=notes"]).expect("m");
        let rows: Vec<Value> = reader
            .records()
            .map(|r| r.expect("record"))
            .filter(|r| !r.iter().all(|f| f.trim().is_empty()))
            .map(|r| serde_json::from_str(&lead_json(&headers, &r, &map)).expect("json"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["name"], "Doe, Jane");
        assert_eq!(rows[0]["phone_number"], "(818) 123-4567");
        assert_eq!(rows[0]["notes"], "Notes: said \"hi\", then\nleft");
        assert_eq!(rows[1]["name"], "Bo");
        assert!(rows[1].get("notes").is_none(), "blank cells are absent");
        assert_eq!(count_rows(&path).expect("count"), 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rejected_rows_go_beside_the_file() {
        let r = Rejected::new(Path::new("x/leads.CSV"), &[], false);
        assert_eq!(r.path, Path::new("x/leads.rejected.csv"));
        let r = Rejected::new(Path::new("x/leads.txt"), &[], false);
        assert_eq!(r.path, Path::new("x/leads.txt.rejected.csv"));
        let mut errors = FieldErrors::default();
        errors.add("phone_number", "The phone number field is required.");
        errors.add("email", "The email must be a valid email address.");
        assert_eq!(
            error_text(Some(&errors)),
            "email: The email must be a valid email address.; \
             phone_number: The phone number field is required."
        );
        assert_eq!(error_text(None), "rejected");
    }
}
