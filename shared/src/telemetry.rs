//! Tracing setup: `LOG_FORMAT=json` for log shippers, `pretty` for terminals; `RUST_LOG`
//! filters (default `info`).
//!
//! At the default level the receiver logs a line per accepted lead and the worker one per
//! processed lead: 10–20% of the receiver's CPU per request and about 15% of the worker's
//! per lead (docs/performance.md, "Logging off the request's thread"). Lines are formatted
//! where they are logged and written to stdout by a thread of their own, many lines a
//! write; while lines keep coming the writer rests a millisecond between writes, so that a
//! thread that logs does not have to wake it for every line. No line is dropped: when the
//! writer falls behind by [`BUFFERED_LINES`], logging waits for it.
//!
//! A JSON line has the fields of tracing-subscriber's JSON format (`timestamp`, `level`,
//! `fields`, `target` and the current `span` with its `name`); [`JsonLines`] writes them
//! without parsing the span's fields again for every line.

use crate::config::LogFormat;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{JsonVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Lines formatted and not yet written before a logging thread waits for the writer.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// Bytes the writer gathers before one write to stdout; it also writes whenever it has no
/// more lines waiting.
const WRITE_BYTES: usize = 64 * 1024;

/// How long the writer rests after a write while lines keep coming. The lines logged
/// meanwhile wait in the queue and go out in the next write, and a thread that logs one
/// finds the writer awake (resting, not waiting on the queue), so it does not have to wake
/// it: under load the writer runs about once per rest instead of once per line.
const REST: Duration = Duration::from_millis(1);

/// How long dropping the [`LogGuard`] waits for the writer to write what is waiting.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The log writer's thread: dropping it writes what is still waiting, so `main` holds it
/// until it returns.
#[must_use = "dropping the guard stops the log writer; hold it until main returns"]
pub struct LogGuard {
    _writer: Option<WriterGuard>,
}

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard.
/// Fails only when the writer's thread cannot be started.
pub fn init(format: LogFormat) -> std::io::Result<LogGuard> {
    let (writer, guard) = line_writer(BufWriter::with_capacity(WRITE_BYTES, std::io::stdout()))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .fmt_fields(SpanFields)
                    .event_format(JsonLines)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(writer))
            .try_init(),
    };
    // A second init (tests calling several mains) keeps the first subscriber and its writer.
    Ok(LogGuard {
        _writer: installed.is_ok().then_some(guard),
    })
}

enum Message {
    Line(Vec<u8>),
    /// Write what is waiting, then answer and stop.
    Stop(SyncSender<()>),
}

/// Where the subscriber puts its formatted lines: the queue to the writer's thread.
pub struct Lines(SyncSender<Message>);

/// One line's way into the queue.
pub struct Line<'a>(&'a SyncSender<Message>);

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.0)
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Waits while the queue is full: a line is never dropped.
        self.0.send(Message::Line(buf.to_vec())).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the log writer has stopped")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops the writer's thread when dropped, once it has written every line queued before.
pub struct WriterGuard {
    queue: SyncSender<Message>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + STOP_WAIT;
        let (done, stopped) = std::sync::mpsc::sync_channel(1);
        let mut stop = Message::Stop(done);
        // A writer stuck on its output is given up on after STOP_WAIT, so that a process
        // whose stdout nobody reads still exits.
        loop {
            match self.queue.try_send(stop) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    stop = back;
                    std::thread::sleep(REST);
                }
                Err(_) => return,
            }
        }
        let _ = stopped.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The writer of the lines into `out`, on a thread of its own, never dropping one.
fn line_writer<W: Write + Send + 'static>(out: W) -> std::io::Result<(Lines, WriterGuard)> {
    let (queue, lines) = std::sync::mpsc::sync_channel(BUFFERED_LINES);
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(&lines, out))?;
    Ok((Lines(queue.clone()), WriterGuard { queue }))
}

/// The writer's thread: waits for a line, writes every line waiting, rests, and goes on
/// while lines keep coming. A failed write is not reported: stdout is where it would go.
fn write_lines<W: Write>(lines: &Receiver<Message>, mut out: W) {
    while let Ok(first) = lines.recv() {
        let mut next = Some(first);
        loop {
            while let Some(message) = next.take().or_else(|| lines.try_recv().ok()) {
                match message {
                    Message::Line(line) => {
                        let _ = out.write_all(&line);
                    }
                    Message::Stop(done) => {
                        let _ = out.flush();
                        let _ = done.send(());
                        return;
                    }
                }
            }
            let _ = out.flush();
            std::thread::sleep(REST);
            match lines.try_recv() {
                Ok(message) => next = Some(message),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// The JSON line of one event. The span's fields are stored as a JSON object when the span
/// is made or recorded ([`SpanFields`]); tracing-subscriber's own JSON format parses that
/// object again for every line logged in the span, which was most of a line's cost. Here it
/// is copied as it is, so keys keep the order they were recorded in.
pub struct JsonLines;

impl<S> FormatEvent<S, SpanFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, SpanFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\",\"fields\":", meta.level())?;
        let mut fields = JsonVisitor::new(&mut writer);
        event.record(&mut fields);
        fields.finish()?;
        writer.write_str(",\"target\":")?;
        json_string(&mut writer, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            let extensions = span.extensions();
            let recorded = extensions
                .get::<FormattedFields<SpanFields>>()
                .map_or("", |f| f.fields.as_str());
            let inner = object_inner(recorded);
            writer.write_str(",\"span\":{")?;
            if !inner.is_empty() {
                writer.write_str(inner)?;
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            json_string(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// A span's fields as one JSON object, kept as text, as tracing-subscriber's `JsonFields`
/// keeps them. `JsonFields` parses that text and writes it anew whenever a field is
/// recorded after the span was made (the receiver's intake span records its intake and its
/// account so, on every request); here the new fields are added to the end of the object,
/// and only a field recorded a second time, whose value must replace the first, takes the
/// long way.
pub struct SpanFields;

impl<'w> FormatFields<'w> for SpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = JsonVisitor::new(&mut writer);
        fields.record(&mut v);
        v.finish()
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> std::fmt::Result {
        let mut added = String::new();
        let mut v = JsonVisitor::new(&mut added);
        fields.record(&mut v);
        v.finish()?;
        let new = object_inner(&added);
        if new.is_empty() {
            return Ok(());
        }
        let old = object_inner(&current.fields);
        if old.is_empty() {
            current.fields = added;
            return Ok(());
        }
        let mut seen = Seen { old, again: false };
        fields.record(&mut seen);
        current.fields = if seen.again {
            replaced(&current.fields, &added)?
        } else {
            format!("{{{old},{new}}}")
        };
        Ok(())
    }
}

/// Whether a record sets a field that the span's fields `old` already hold.
struct Seen<'a> {
    old: &'a str,
    again: bool,
}

impl Visit for Seen<'_> {
    fn record_debug(&mut self, field: &Field, _: &dyn std::fmt::Debug) {
        // A key inside a string value has its quotes escaped, so a match is a key (or, at
        // worst, a false alarm that takes the long way).
        self.again |= self.old.contains(&format!("\"{}\":", field.name()));
    }
}

/// What is between the braces of a JSON object's text, trimmed.
fn object_inner(object: &str) -> &str {
    object
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("")
        .trim()
}

/// The object `old` with the keys of `new` set to their values in it.
fn replaced(old: &str, new: &str) -> Result<String, std::fmt::Error> {
    type Object = serde_json::Map<String, serde_json::Value>;
    let mut merged: Object = serde_json::from_str(old).map_err(|_| std::fmt::Error)?;
    let added: Object = serde_json::from_str(new).map_err(|_| std::fmt::Error)?;
    merged.extend(added);
    serde_json::to_string(&merged).map_err(|_| std::fmt::Error)
}

/// `s` as a JSON string, quoted and escaped.
fn json_string(writer: &mut Writer<'_>, s: &str) -> std::fmt::Result {
    let quoted = serde_json::to_string(s).map_err(|_| std::fmt::Error)?;
    writer.write_str(&quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn parsed(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().expect("lines").clone();
            String::from_utf8(bytes)
                .expect("utf-8")
                .lines()
                .map(|line| serde_json::from_str(line).expect("each line is one JSON value"))
                .collect()
        }
    }

    /// Events in and out of spans, with fields recorded late, nested spans, and text that
    /// needs escaping.
    fn log_some() {
        tracing::info!("outside any span");
        let intake = tracing::info_span!(
            "intake",
            intake_id = tracing::field::Empty,
            account_id = tracing::field::Empty
        );
        let _entered = intake.enter();
        tracing::warn!(
            count = 3,
            ok = true,
            "before the span's fields \"quoted\"\n"
        );
        intake.record("intake_id", "0193-ab");
        intake.record("account_id", 7);
        tracing::info!(ratio = 0.5, text = "tab\there", "after them");
        let inner = tracing::info_span!("lead", trace_id = "4bf92f35", attempt = 2);
        inner.in_scope(|| tracing::error!(error = %"a \\ b", "in a nested span"));
        let empty = tracing::info_span!("empty");
        empty.in_scope(|| tracing::info!("in a span without fields"));
    }

    /// A span's fields recorded more than once, and values that look like keys.
    fn record_again() {
        let span = tracing::info_span!(
            "intake",
            intake_id = "first",
            account_id = tracing::field::Empty,
            note = tracing::field::Empty
        );
        let _entered = span.enter();
        span.record("note", "\"intake_id\":\"not a key\"");
        tracing::info!("a field added");
        span.record("account_id", 7);
        span.record("intake_id", "second");
        tracing::info!("a field recorded again");
        span.record("note", 3);
        tracing::info!("a field of a new type");
    }

    fn lines_of(layer_lines: Captured, json: bool, log: fn()) -> Vec<serde_json::Value> {
        let layer = fmt::layer().with_writer(layer_lines.clone());
        if json {
            let subscriber = tracing_subscriber::registry()
                .with(layer.json().with_current_span(true).with_span_list(false));
            tracing::subscriber::with_default(subscriber, log);
        } else {
            let subscriber = tracing_subscriber::registry()
                .with(layer.fmt_fields(SpanFields).event_format(JsonLines));
            tracing::subscriber::with_default(subscriber, log);
        }
        layer_lines.parsed()
    }

    #[test]
    fn json_lines_say_what_the_stock_json_format_says() {
        for (log, count) in [(log_some as fn(), 5), (record_again, 3)] {
            same_as_stock(log, count);
        }
    }

    #[test]
    fn a_field_recorded_again_is_written_once() {
        let lines = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(SpanFields)
                .event_format(JsonLines)
                .with_writer(lines.clone()),
        );
        tracing::subscriber::with_default(subscriber, record_again);
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        for line in text.lines() {
            // serde_json keeps the last of two equal keys, so count them in the text.
            for key in ["\"intake_id\":", "\"note\":", "\"account_id\":"] {
                assert!(line.matches(key).count() <= 1, "{key} twice in {line}");
            }
        }
        let parsed = lines.parsed();
        assert_eq!(parsed[1]["span"]["intake_id"], "second");
        assert_eq!(parsed[2]["span"]["note"], 3);
    }

    fn same_as_stock(log: fn(), count: usize) {
        let ours = lines_of(Captured::default(), false, log);
        let stock = lines_of(Captured::default(), true, log);
        assert_eq!(ours.len(), count);
        assert_eq!(ours.len(), stock.len());
        for (mut ours, mut stock) in ours.into_iter().zip(stock) {
            let time = ours["timestamp"].as_str().expect("a timestamp").to_owned();
            chrono::DateTime::parse_from_rfc3339(&time).expect("RFC 3339");
            for line in [&mut ours, &mut stock] {
                line.as_object_mut().expect("an object").remove("timestamp");
            }
            assert_eq!(ours, stock);
        }
    }

    /// Takes its time with the first write, as a stuck log pipe would.
    struct SlowAtFirst(Captured, bool);

    impl std::io::Write for SlowAtFirst {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.1 {
                self.1 = true;
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn no_line_is_dropped_when_the_writer_falls_behind() {
        let lines = Captured::default();
        let (writer, guard) = line_writer(SlowAtFirst(lines.clone(), false)).expect("writer");
        let total = BUFFERED_LINES + 5_000;
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(SpanFields)
                .event_format(JsonLines)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..total {
                tracing::info!(n, "line");
            }
        });
        drop(guard);
        let written = lines.parsed();
        assert_eq!(written.len(), total);
        assert_eq!(written[total - 1]["fields"]["n"], total - 1);
    }

    /// Counts the writes that reach the output: one per flush of the writer's buffer.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<(usize, usize)>>);

    impl std::io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("writes").0 += buf.iter().filter(|b| **b == b'\n').count();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.lock().expect("writes").1 += 1;
            Ok(())
        }
    }

    #[test]
    fn lines_that_keep_coming_are_written_many_at_a_time() {
        let writes = Writes::default();
        let (writer, guard) = line_writer(writes.clone()).expect("writer");
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(SpanFields)
                .event_format(JsonLines)
                .with_writer(writer),
        );
        let total = 2_000;
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..total {
                tracing::info!(n, "line");
                // A line every 20 µs, as a busy service logs them.
                let next = Instant::now() + Duration::from_micros(20);
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
            }
        });
        drop(guard);
        let (lines, flushes) = *writes.0.lock().expect("writes");
        assert_eq!(lines, total);
        assert!(
            flushes <= total / 10,
            "{flushes} writes for {total} lines: the writer woke for nearly every line"
        );
    }

    /// Never finishes a write, as a stdout pipe nobody reads.
    struct Stuck;

    impl std::io::Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stopping_gives_up_on_a_writer_that_is_stuck() {
        let (writer, guard) = line_writer(Stuck).expect("writer");
        let subscriber = tracing_subscriber::registry().with(fmt::layer().with_writer(writer));
        tracing::subscriber::with_default(subscriber, || tracing::info!("never written"));
        let started = Instant::now();
        drop(guard);
        let waited = started.elapsed();
        assert!(waited >= STOP_WAIT / 2, "returned at once: {waited:?}");
        assert!(waited < STOP_WAIT * 2, "waited {waited:?}");
    }

    #[test]
    fn a_line_carries_its_spans_fields_and_name() {
        let lines = lines_of(Captured::default(), false, log_some);
        assert_eq!(lines[0].get("span"), None);
        assert_eq!(lines[1]["span"], serde_json::json!({"name": "intake"}));
        assert_eq!(
            lines[2]["span"],
            serde_json::json!({"intake_id": "0193-ab", "account_id": 7, "name": "intake"})
        );
        assert_eq!(
            lines[3]["span"],
            serde_json::json!({"trace_id": "4bf92f35", "attempt": 2, "name": "lead"})
        );
        assert_eq!(lines[3]["fields"]["error"], "a \\ b");
        assert_eq!(lines[4]["span"], serde_json::json!({"name": "empty"}));
    }
}
