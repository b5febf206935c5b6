//! The HTTP load generator shared by the e2e and receiver sections: N keep-alive HTTP/1
//! connections (hyper's client, in this process), each sending the next request of a shared
//! list as soon as the previous answer is read, either until a count is reached (every
//! request sent once) or for a duration. Latencies are recorded per request and status codes
//! are checked against what each request expects.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One prepared request.
#[derive(Debug, Clone)]
pub struct Req {
    pub path: String,
    pub content_type: &'static str,
    pub body: Bytes,
    /// `Authorization: Bearer …` when the token is not in the body.
    pub bearer: Option<String>,
    /// The status a correct server answers.
    pub expect: u16,
}

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// Every request of the list exactly once.
    AllSent,
    /// Cycle through the list for this long.
    Elapsed(Duration),
}

/// Counts and latencies of one connection (or publisher), merged at the end.
#[derive(Debug, Default)]
pub struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    unexpected: u64,
    transport_errors: u64,
}

impl Tally {
    pub fn record(&mut self, status: u16, expected: u16, took: Duration) {
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        *self.statuses.entry(status).or_default() += 1;
        if status != expected {
            self.unexpected += 1;
        }
    }

    pub fn transport_error(&mut self) {
        self.transport_errors += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.unexpected += other.unexpected;
        self.transport_errors += other.transport_errors;
    }

    pub fn finish(mut self, secs: f64, started_at: chrono::DateTime<chrono::Utc>) -> LoadResult {
        self.latencies_us.sort_unstable();
        LoadResult {
            secs,
            started_at,
            latencies_us: self.latencies_us,
            statuses: self.statuses,
            unexpected: self.unexpected,
            transport_errors: self.transport_errors,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// From the first request to the last answer.
    pub secs: f64,
    /// Wall-clock time of the first request (compared with database timestamps).
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Sorted.
    pub latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    /// Answers whose status was not the expected one (5xx included).
    pub unexpected: u64,
    /// Connections that failed or requests that timed out.
    pub transport_errors: u64,
}

impl LoadResult {
    pub fn answered(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn rate(&self) -> f64 {
        self.answered() as f64 / self.secs.max(1e-9)
    }

    /// Latency percentile `p` (0–100), ms.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        nearest_rank(&self.latencies_us, p).map_or(0.0, |us| f64::from(*us) / 1000.0)
    }

    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn server_errors(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// Everything that is not the answer a correct server gives.
    pub fn errors(&self) -> u64 {
        self.unexpected + self.transport_errors
    }

    pub fn statuses_text(&self) -> String {
        self.statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.answered(),
            "secs": self.secs,
            "per_sec": self.rate(),
            "p50_ms": self.percentile_ms(50.0),
            "p99_ms": self.percentile_ms(99.0),
            "p999_ms": self.percentile_ms(99.9),
            "statuses": self.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect::<BTreeMap<_, _>>(),
            "unexpected": self.unexpected,
            "transport_errors": self.transport_errors,
        })
    }
}

/// Percentile `p` (0–100) of `sorted` by the nearest-rank method; `None` when it is empty.
pub fn nearest_rank<T>(sorted: &[T], p: f64) -> Option<&T> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1)
}

/// Drives `addr` with `connections` keep-alive connections over `requests`. `cap` bounds the
/// run whatever `until` says. With a `label`, progress goes to stderr every 2 s.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    requests: Arc<Vec<Req>>,
    until: Until,
    cap: Duration,
    label: Option<&str>,
) -> anyhow::Result<LoadResult> {
    if requests.is_empty() {
        bail!("Failed to run a load: no requests");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let end = match until {
        Until::AllSent => started + cap,
        Until::Elapsed(d) => started + d.min(cap),
    };
    let all_once = matches!(until, Until::AllSent);
    let answered = Arc::new(AtomicUsize::new(0));
    let ticker = label.map(|label| {
        let (label, answered, total) = (label.to_owned(), answered.clone(), requests.len());
        tokio::spawn(async move {
            // Ends with the run (aborted below), at the latest at the cap.
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let done = answered.load(Ordering::Relaxed);
                eprintln!(
                    "bench: {label}: {done}/{total} answered ({:.0} req/s)",
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        })
    });
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (requests, next, answered) = (requests.clone(), next.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            connection(addr, &requests, &next, &answered, all_once, end).await
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        total.merge(t.await.context("Failed to join a load connection")?);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    Ok(total.finish(started.elapsed().as_secs_f64(), started_at))
}

/// One client connection's request half.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1 connection to `addr` (5 s to connect).
pub async fn open(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("Failed to connect: timed out")?
        .context("Failed to connect")?;
    stream
        .set_nodelay(true)
        .context("Failed to set TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("Failed to start HTTP/1")?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One client connection: reconnects after a failure (at most 100 times).
async fn connection(
    addr: SocketAddr,
    requests: &[Req],
    next: &AtomicUsize,
    answered: &AtomicUsize,
    all_once: bool,
    end: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender: Option<Sender> = None;
    let mut reconnects = 0;
    let host = addr.to_string();
    while Instant::now() < end {
        let mut s = match sender.take() {
            Some(s) => s,
            None => match open(addr).await {
                Ok(s) => s,
                Err(_) => {
                    tally.transport_error();
                    reconnects += 1;
                    if reconnects > 100 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let i = next.fetch_add(1, Ordering::Relaxed);
        if all_once && i >= requests.len() {
            break;
        }
        let r = &requests[i % requests.len()];
        let mut builder = http::Request::post(r.path.as_str())
            .header(http::header::HOST, host.as_str())
            .header(http::header::CONTENT_TYPE, r.content_type);
        if let Some(token) = &r.bearer {
            builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let Ok(req) = builder.body(Full::new(r.body.clone())) else {
            tally.transport_error();
            continue;
        };
        let t = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            s.ready().await?;
            let res = s.send_request(req).await?;
            let status = res.status().as_u16();
            // The whole answer is read before the next request (keep-alive).
            res.into_body().collect().await?;
            Ok::<u16, hyper::Error>(status)
        })
        .await;
        match answer {
            Ok(Ok(status)) => {
                tally.record(status, r.expect, t.elapsed());
                answered.fetch_add(1, Ordering::Relaxed);
                sender = Some(s);
            }
            _ => {
                tally.transport_error();
                reconnects += 1;
                if reconnects > 100 {
                    break;
                }
            }
        }
    }
    tally
}
