//! Section `console`: how fast the console's pages answer (§12) in an account with the large
//! contact table and a drained backlog of leads (their intake records, contacts and
//! PowerDialer entries). A receiver serves the pages; one signed-in session GETs each page
//! in turn over one keep-alive connection (a person, not a load test), and each page's
//! p50 and p99 are reported. The target is under 100 ms.

use crate::Ctx;
use crate::e2e;
use crate::leads::Mix;
use crate::load::{self, nearest_rank};
use crate::seed;
use crate::worker_bench;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Instant;

/// GETs of each page.
const ROUNDS: usize = 40;

#[derive(Debug, Clone)]
pub struct ConsoleFigures {
    pub contacts: u64,
    pub intakes: usize,
    /// (page, sorted ms)
    pub pages: Vec<(String, Vec<f64>)>,
}

impl ConsoleFigures {
    pub fn p(&self, page: usize, p: f64) -> f64 {
        nearest_rank(&self.pages[page].1, p).copied().unwrap_or(0.0)
    }

    /// The slowest page's p99.
    pub fn worst_p99(&self) -> f64 {
        (0..self.pages.len())
            .map(|i| self.p(i, 99.0))
            .fold(0.0, f64::max)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "contacts": self.contacts,
            "intakes": self.intakes,
            "pages": self.pages.iter().enumerate().map(|(i, (name, _))| serde_json::json!({
                "page": name, "p50_ms": self.p(i, 50.0), "p99_ms": self.p(i, 99.0),
            })).collect::<Vec<_>>(),
        })
    }
}

async fn request(
    sender: &mut load::Sender,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> anyhow::Result<(u16, http::HeaderMap, Bytes)> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    let body = match form {
        Some(f) => {
            b = b.header("content-type", "application/x-www-form-urlencoded");
            Full::new(Bytes::from(f))
        }
        None => Full::new(Bytes::new()),
    };
    sender.ready().await.context("connection")?;
    let r = sender
        .send_request(b.body(body)?)
        .await
        .context("request")?;
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.into_body().collect().await.context("body")?.to_bytes();
    Ok((status, headers, bytes))
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ConsoleFigures> {
    let contacts = ctx.sizes.large_contacts;
    let n = ctx.sizes.backlog;
    let (db, c, _) = worker_bench::database(ctx, contacts).await?;
    let messages = worker_bench::backlog(
        n,
        Mix {
            namespace: 0,
            seeded: contacts,
            actions: true,
            rng_seed: 21,
        },
        &c,
    )?;
    seed::analyze(&db.conn).await?;
    worker_bench::drain(ctx, &db, &messages, 1, "console", contacts).await?;
    let prefixes = ctx.janitor.prefixes(&crate::env::default_retry_delays());
    let receiver = e2e::start_receiver(ctx, &db.url, &prefixes, "receiver-console").await?;
    let addr = receiver.addr;
    let mut sender = load::open(addr).await?;
    let (status, headers, _) = request(
        &mut sender,
        addr,
        "POST",
        "/console/sign-in",
        None,
        Some(format!("token={}", c.token)),
    )
    .await?;
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let Some(cookie) = cookie.filter(|_| status == 303) else {
        bail!("console sign-in answered {status}");
    };
    // A lead, its contact and a number of it in another format, from the drained backlog.
    let row = seed::stmt(
        "SELECT id::text AS id, contact_id, payload->>'phone_number' AS phone FROM lead_intakes \
         WHERE account_id = $1 AND contact_id IS NOT NULL ORDER BY received_at DESC LIMIT 1",
        vec![c.account.into()],
    );
    let r = sea_orm::ConnectionTrait::query_one_raw(&db.conn, row)
        .await?
        .context("no intake was recorded")?;
    let intake: String = r.try_get("", "id")?;
    let contact: i64 = r.try_get("", "contact_id")?;
    let phone: String = r
        .try_get::<Option<String>>("", "phone")?
        .unwrap_or_default();
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let pages = vec![
        ("overview", "/console".to_owned()),
        ("live figures", "/console/live".to_owned()),
        ("leads, newest", "/console/leads".to_owned()),
        ("leads by phone", format!("/console/leads?q={digits}")),
        ("leads by status", "/console/leads?status=merged".to_owned()),
        ("lead timeline", format!("/console/leads/{intake}")),
        ("contact", format!("/console/contacts/{contact}")),
        ("dead letters", "/console/dead-letters".to_owned()),
        ("webhooks", "/console/webhooks".to_owned()),
        ("tokens", "/console/tokens".to_owned()),
    ];
    let mut out = Vec::new();
    for (name, path) in &pages {
        let mut ms = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let (status, _, _) =
                request(&mut sender, addr, "GET", path, Some(&cookie), None).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if status != 200 {
                bail!("console page {path} answered {status}");
            }
        }
        ms.sort_by(f64::total_cmp);
        eprintln!(
            "bench: console {name}: p50 {:.1} ms, p99 {:.1} ms",
            nearest_rank(&ms, 50.0).copied().unwrap_or(0.0),
            nearest_rank(&ms, 99.0).copied().unwrap_or(0.0)
        );
        out.push(((*name).to_owned(), ms));
    }
    drop(sender);
    receiver.stop().await?;
    let _ = db.conn.close().await;
    Ok(ConsoleFigures {
        contacts,
        intakes: n,
        pages: out,
    })
}
