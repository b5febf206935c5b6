//! The clients of a chaos scenario: keep-alive connections sending each lead with its own
//! `Idempotency-Key` at a steady pace, and retrying every answer that is not 202 (and every
//! failed connection) with the same key and body until the lead is accepted or the burst's
//! time is up. The intake id of each 202 and the instant it arrived are kept for the
//! reconciliation and for the speed-to-lead figure (`bench --only speed`).

use crate::leads::{self, Catalogs, Mix};
use crate::load::{self, Sender};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// One lead as a client sends it (again and again until it gets 202).
#[derive(Debug, Clone)]
pub struct Lead {
    pub key: String,
    pub body: Bytes,
    /// The number as the worker stores it (E.164), for the per-number contact count.
    pub e164: String,
    /// Unique to this lead, so a note written twice is seen.
    pub note: String,
}

/// `n` leads of `c`'s account: 80% new numbers, 20% repeats of them in other formats
/// (`leads::draw`), a third with owner, tag and one of distribution, PowerDialer, sequence
/// or line, and every one with a note of its own. `tag` keeps keys and notes of different
/// bursts apart.
pub fn draw(n: usize, c: &Catalogs, tag: &str, rng_seed: u64) -> anyhow::Result<Vec<Lead>> {
    let mix = Mix {
        namespace: 0,
        seeded: 0,
        actions: true,
        rng_seed,
    };
    leads::draw(n, mix, c)?
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let mut fields = b.fields;
            let note = format!("{tag} lead {i}");
            fields.insert("notes".into(), serde_json::json!(note));
            let e164 = leads::to_message(&fields, c)?
                .lead
                .phone_number
                .as_str()
                .to_owned();
            Ok(Lead {
                key: format!("{tag}-{i}"),
                body: Bytes::from(serde_json::to_vec(&fields).context("Failed to serialize")?),
                e164,
                note,
            })
        })
        .collect()
}

/// `n` leads of `c`'s account that each get a text at once: distinct numbers (fresh
/// namespace `namespace`), SMS consent, a `timezone` where it is now about noon (inside every
/// calling window), enrolled in `c.sequence`, and a note of their own. `tag` keeps keys and
/// notes of different bursts apart.
pub fn draw_texted(n: usize, c: &Catalogs, tag: &str, namespace: u64) -> anyhow::Result<Vec<Lead>> {
    if n as u64 > leads::MAX_FRESH {
        anyhow::bail!("at most {} leads per burst", leads::MAX_FRESH);
    }
    let zone = leads::zone_at_noon(chrono::Utc::now());
    (0..n)
        .map(|i| {
            let national = leads::fresh_national(namespace, i as u64);
            let note = format!("{tag} lead {i}");
            let fields = serde_json::json!({
                "phone_number": national,
                "first_name": format!("First{i}"),
                "last_name": "Texted",
                "email": format!("{tag}{i}@example.com"),
                "lead_source": "benchmark",
                "timezone": zone,
                "consent": {"channels": ["sms"], "text": "I agree to receive texts."},
                "sequence_id": c.sequence,
                "notes": note,
            });
            Ok(Lead {
                key: format!("{tag}-{i}"),
                body: Bytes::from(serde_json::to_vec(&fields).context("Failed to serialize")?),
                e164: format!("+1{national}"),
                note,
            })
        })
        .collect()
}

/// How a burst is sent.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub connections: usize,
    /// First attempts per second, all connections together.
    pub per_sec: f64,
    /// Retries stop after this long; a lead not accepted by then counts as not accepted.
    pub limit: Duration,
}

/// What the clients saw.
#[derive(Debug, Clone, Default)]
pub struct BurstResult {
    /// Per lead (same order as sent): the intake id of its 202.
    pub intake_ids: Vec<Option<Uuid>>,
    /// Per lead: when its 202 was read.
    pub accepted_at: Vec<Option<Instant>>,
    /// Every answer, retries included.
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub secs: f64,
}

impl BurstResult {
    pub fn accepted(&self) -> usize {
        self.intake_ids.iter().flatten().count()
    }

    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn statuses_text(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}×{n}"))
            .collect();
        if self.transport_errors > 0 {
            parts.push(format!("connection errors×{}", self.transport_errors));
        }
        parts.join(" ")
    }
}

/// A burst on its way.
pub struct Burst {
    accepted: Arc<AtomicUsize>,
    total: usize,
    task: JoinHandle<anyhow::Result<BurstResult>>,
}

/// What one connection saw.
#[derive(Default)]
struct Seen {
    accepted: Vec<(usize, Uuid, Instant)>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
}

impl Burst {
    /// Starts sending `leads` to the receiver at `addr` with `token`.
    pub fn start(addr: SocketAddr, token: &str, leads: Arc<Vec<Lead>>, pace: Pace) -> Self {
        let accepted = Arc::new(AtomicUsize::new(0));
        let total = leads.len();
        let counter = accepted.clone();
        let auth = format!("Bearer {token}");
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::with_capacity(pace.connections);
            for _ in 0..pace.connections {
                let (leads, next, counter, auth) =
                    (leads.clone(), next.clone(), counter.clone(), auth.clone());
                tasks.push(tokio::spawn(async move {
                    client(addr, &auth, &leads, &next, &counter, started, pace).await
                }));
            }
            let mut out = BurstResult {
                intake_ids: vec![None; leads.len()],
                accepted_at: vec![None; leads.len()],
                ..BurstResult::default()
            };
            for t in tasks {
                let seen = t.await.context("Failed to join a client")?;
                for (i, id, at) in seen.accepted {
                    out.intake_ids[i] = Some(id);
                    out.accepted_at[i] = Some(at);
                }
                for (s, n) in seen.statuses {
                    *out.statuses.entry(s).or_default() += n;
                }
                out.transport_errors += seen.transport_errors;
            }
            out.secs = started.elapsed().as_secs_f64();
            Ok(out)
        });
        Self {
            accepted,
            total,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until `share` (0–1) of the leads are accepted (at most `limit`); false when the
    /// time ran out first.
    pub async fn reached(&self, share: f64, limit: Duration) -> bool {
        let want = (self.total as f64 * share).ceil() as usize;
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.accepted() >= want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub async fn finish(self) -> anyhow::Result<BurstResult> {
        self.task.await.context("Failed to join the burst")?
    }
}

/// One client connection: takes the next lead when its time has come and sends it until it
/// is accepted, with growing pauses (50 ms to 1 s) between attempts.
async fn client(
    addr: SocketAddr,
    auth: &str,
    leads: &[Lead],
    next: &AtomicUsize,
    accepted: &AtomicUsize,
    started: Instant,
    pace: Pace,
) -> Seen {
    let mut seen = Seen::default();
    let mut sender: Option<Sender> = None;
    let end = started + pace.limit;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(lead) = leads.get(i) else {
            break;
        };
        let due = started + Duration::from_secs_f64(i as f64 / pace.per_sec);
        tokio::time::sleep_until(due.into()).await;
        let mut pause = Duration::from_millis(50);
        while Instant::now() < end {
            let mut s = match sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => match load::open(addr).await {
                    Ok(s) => s,
                    Err(_) => {
                        seen.transport_errors += 1;
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            match post(&mut s, addr, auth, lead).await {
                Ok((status, body)) => {
                    *seen.statuses.entry(status).or_default() += 1;
                    sender = Some(s);
                    if status == 202
                        && let Some(id) = intake_id(&body)
                    {
                        seen.accepted.push((i, id, Instant::now()));
                        accepted.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                Err(_) => seen.transport_errors += 1,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    seen
}

async fn post(
    s: &mut Sender,
    addr: SocketAddr,
    auth: &str,
    lead: &Lead,
) -> anyhow::Result<(u16, Bytes)> {
    let req = http::Request::post("/api/v1/webhook/forms")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, auth)
        .header("Idempotency-Key", lead.key.as_str())
        .body(Full::new(lead.body.clone()))
        .context("Failed to build a request")?;
    tokio::time::timeout(Duration::from_secs(15), async {
        s.ready().await?;
        let res = s.send_request(req).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    })
    .await
    .context("Failed to get an answer within 15 s")?
    .context("Failed to send a request")
}

fn intake_id(body: &[u8]) -> Option<Uuid> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Uuid::parse_str(v.get("intake_id")?.as_str()?).ok()
}
