//! Tracing setup: `LOG_FORMAT=json` for log shippers, `pretty` for terminals; `RUST_LOG`
//! filters (default `info`).
//!
//! At the default level the receiver logs a line per accepted lead and the worker one per
//! processed lead: 10–20% of the receiver's CPU per request and about 15% of the worker's
//! per lead (docs/performance.md, "Logging off the request's thread"). Lines are formatted
//! where they are logged and written to stdout by a thread of their own, many lines a
//! write. No line is dropped: when the writer falls behind by [`BUFFERED_LINES`], logging
//! waits for it.
//!
//! A JSON line has the fields of tracing-subscriber's JSON format (`timestamp`, `level`,
//! `fields`, `target` and the current `span` with its `name`); [`JsonLines`] writes them
//! without parsing the span's fields again for every line.

use crate::config::LogFormat;
use std::io::BufWriter;
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{JsonFields, JsonVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Lines formatted and not yet written before a logging thread waits for the writer.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// Bytes the writer gathers before one write to stdout; it also writes whenever it has no
/// more lines waiting.
const WRITE_BYTES: usize = 64 * 1024;

/// The log writer's thread: dropping it writes what is still waiting, so `main` holds it
/// until it returns.
#[must_use = "dropping the guard stops the log writer; hold it until main returns"]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber. Call once, first thing in `main`, and keep the guard.
pub fn init(format: LogFormat) -> LogGuard {
    let (writer, guard) = line_writer(BufWriter::with_capacity(WRITE_BYTES, std::io::stdout()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(JsonLines)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(fmt::layer().compact().with_writer(writer))
            .try_init(),
    };
    // A second init (tests calling several mains) keeps the first subscriber and its writer.
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}

/// The writer of the lines into `out`, on a thread of its own, never dropping one.
fn line_writer<W: std::io::Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(out)
}

/// The JSON line of one event. The span's fields are stored as a JSON object when the span
/// is made or recorded ([`JsonFields`]); tracing-subscriber's own JSON format parses that
/// object again for every line logged in the span, which was most of a line's cost. Here it
/// is copied as it is, so keys keep the order they were recorded in.
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
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
                .get::<FormattedFields<JsonFields>>()
                .map_or("", |f| f.fields.as_str());
            let inner = recorded
                .trim()
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .unwrap_or("")
                .trim();
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

/// `s` as a JSON string, quoted and escaped.
fn json_string(writer: &mut Writer<'_>, s: &str) -> std::fmt::Result {
    let quoted = serde_json::to_string(s).map_err(|_| std::fmt::Error)?;
    writer.write_str(&quoted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    impl Lines {
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

    fn lines_of(layer_lines: Lines, json: bool) -> Vec<serde_json::Value> {
        let layer = fmt::layer().with_writer(layer_lines.clone());
        if json {
            let subscriber = tracing_subscriber::registry()
                .with(layer.json().with_current_span(true).with_span_list(false));
            tracing::subscriber::with_default(subscriber, log_some);
        } else {
            let subscriber = tracing_subscriber::registry()
                .with(layer.fmt_fields(JsonFields::new()).event_format(JsonLines));
            tracing::subscriber::with_default(subscriber, log_some);
        }
        layer_lines.parsed()
    }

    #[test]
    fn json_lines_say_what_the_stock_json_format_says() {
        let ours = lines_of(Lines::default(), false);
        let stock = lines_of(Lines::default(), true);
        assert_eq!(ours.len(), 5);
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
    struct SlowAtFirst(Lines, bool);

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
        let lines = Lines::default();
        let (writer, guard) = line_writer(SlowAtFirst(lines.clone(), false));
        let total = BUFFERED_LINES + 5_000;
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(JsonFields::new())
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

    #[test]
    fn a_line_carries_its_spans_fields_and_name() {
        let lines = lines_of(Lines::default(), false);
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
