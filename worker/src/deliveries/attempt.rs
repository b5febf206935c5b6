//! One delivery attempt: the signed request, the answer read, and what follows from it
//! (delivered, again later, or failed for good) as a pure function of the answer.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// The first bytes of an answer kept in the attempt log.
pub const KEPT_ANSWER: usize = 1024;
/// The longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What an endpoint did with one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `None`: no answer (refused, connection failed, timed out).
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The first [`KEPT_ANSWER`] bytes of the answer's body.
    pub body: Option<String>,
    /// Why there was no answer, or a note about the one there was (a redirect).
    pub error: Option<String>,
    /// The address was refused by the SSRF guard: no connection was made.
    pub refused: bool,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// No attempt is left.
    Failed,
    /// 410 Gone: the delivery fails and the endpoint is disabled.
    Gone,
}

/// What follows an attempt, the `attempts_before` earlier ones counted: 2xx delivered, 410
/// gone, else the next wait of `schedule` (a `Retry-After` on 429/503 instead), or failed
/// after the schedule's last.
pub fn next(
    answer: &Answer,
    attempts_before: i32,
    schedule: &[Duration],
    now: DateTime<Utc>,
) -> Next {
    match answer.status {
        Some(s) if (200..300).contains(&s) => return Next::Delivered,
        Some(410) => return Next::Gone,
        _ => {}
    }
    let done = usize::try_from(attempts_before).unwrap_or(0) + 1;
    let Some(wait) = schedule.get(done - 1) else {
        return Next::Failed;
    };
    let wait = match (answer.status, answer.retry_after) {
        (Some(429 | 503), Some(after)) => after.min(MAX_RETRY_AFTER),
        _ => *wait,
    };
    Next::Retry(now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX))
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok()
}

/// Reads at most 64 KB of an answer's body and keeps its first [`KEPT_ANSWER`] bytes; a
/// longer body is left unread (its connection is then not reused).
pub async fn read_answer(mut body: hyper::body::Incoming) -> Option<String> {
    let mut kept: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            let room = KEPT_ANSWER.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
            if seen > 64 * 1024 {
                break;
            }
        }
    }
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}

/// The answer of a status line without a body worth keeping.
pub fn answered(status: StatusCode, headers: &HeaderMap, body: Option<String>) -> Answer {
    let error = status
        .is_redirection()
        .then(|| "redirects are not followed".to_owned());
    Answer {
        status: Some(status.as_u16()),
        retry_after: retry_after(headers, Utc::now()),
        body,
        error,
        refused: false,
    }
}

/// No answer came: `why`.
pub fn unanswered(why: String, refused: bool) -> Answer {
    Answer {
        status: None,
        retry_after: None,
        body: None,
        error: Some(why),
        refused,
    }
}

/// A request body that is the event's stored bytes.
pub fn body(bytes: &str) -> Full<Bytes> {
    Full::new(Bytes::copy_from_slice(bytes.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>, retry_after: Option<u64>) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: None,
            error: None,
            refused: false,
        }
    }

    fn schedule() -> Vec<Duration> {
        [5, 300, 1800].map(Duration::from_secs).to_vec()
    }

    #[test]
    fn the_schedule_is_followed_then_the_delivery_fails() {
        let now = Utc::now();
        let s = schedule();
        let secs = |n: Next| match n {
            Next::Retry(at) => (at - now).num_seconds(),
            other => panic!("{other:?}"),
        };
        assert_eq!(secs(next(&answer(Some(500), None), 0, &s, now)), 5);
        assert_eq!(secs(next(&answer(None, None), 1, &s, now)), 300);
        assert_eq!(secs(next(&answer(Some(404), None), 2, &s, now)), 1800);
        assert_eq!(next(&answer(Some(500), None), 3, &s, now), Next::Failed);
    }

    #[test]
    fn success_gone_and_retry_after() {
        let now = Utc::now();
        let s = schedule();
        for ok in [200, 201, 204, 299] {
            assert_eq!(next(&answer(Some(ok), None), 0, &s, now), Next::Delivered);
        }
        assert_eq!(next(&answer(Some(410), None), 0, &s, now), Next::Gone);
        for status in [429, 503] {
            assert_eq!(
                next(&answer(Some(status), Some(42)), 0, &s, now),
                Next::Retry(now + chrono::Duration::seconds(42))
            );
        }
        // Only 429 and 503 are asked to wait by their Retry-After.
        assert_eq!(
            next(&answer(Some(500), Some(42)), 0, &s, now),
            Next::Retry(now + chrono::Duration::seconds(5))
        );
        // A Retry-After cannot outlast the schedule.
        assert_eq!(next(&answer(Some(429), Some(42)), 3, &s, now), Next::Failed);
        assert_eq!(
            next(&answer(Some(503), Some(10 * 24 * 3600)), 0, &s, now),
            Next::Retry(now + chrono::Duration::hours(24))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "120".parse().expect("v"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(120)));
        let later = (now + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert(header::RETRY_AFTER, later.parse().expect("v"));
        let got = retry_after(&h, now).expect("date").as_secs();
        assert!((88..=90).contains(&got), "{got}");
        h.insert(header::RETRY_AFTER, "soon".parse().expect("v"));
        assert_eq!(retry_after(&h, now), None);
    }
}
