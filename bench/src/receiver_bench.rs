//! Section `receiver`: the intake endpoint under load at 64 and 256 connections, each run as
//! long as the others, next to two baselines of the same run: a bare hyper hello-world
//! (`receiver/examples/hello`, the HTTP stack alone) and a plain confirmed lapin publisher
//! of the same message bytes into the same queue with as many publishes in flight as there
//! are connections (the broker's ceiling, which bounds the receiver). The receiver ratio
//! counts the leads it published (its 202s) against that ceiling; the mix's 400s publish
//! nothing. No worker runs: the queue and the Redis keys the receiver fills are purged after
//! each run.

use crate::Ctx;
use crate::env::{self, default_retry_delays};
use crate::leads;
use crate::load::{self, LoadResult, Req, Until};
use crate::procs::{self, LogSummary, Proc, ProcStats};
use crate::publish::{self, Payload};
use crate::seed;
use anyhow::Context;
use bytes::Bytes;
use shared::amqp::Topology;
use std::sync::Arc;
use std::time::Duration;

pub const CONNECTIONS: [usize; 2] = [64, 256];

#[derive(Debug, Clone)]
pub struct Level {
    pub connections: usize,
    pub hello: LoadResult,
    pub ceiling: LoadResult,
    pub receiver: LoadResult,
    /// Receiver CPU during its run.
    pub receiver_cpu_secs: f64,
    /// Redis's CPU during the receiver's run (its rate limits and intake records).
    pub redis_cpu_secs: f64,
    /// The hello-world's CPU during its run.
    pub hello_cpu_secs: f64,
    /// The publisher's CPU during the ceiling's run (the bench process, which does nothing
    /// else meanwhile).
    pub ceiling_cpu_secs: f64,
}

impl Level {
    /// Leads the receiver published per second: its 202s (the 400s of the mix publish
    /// nothing, so they do not count against the publish ceiling).
    pub fn published_rate(&self) -> f64 {
        self.receiver.count(202) as f64 / self.receiver.secs.max(1e-9)
    }

    /// Published leads per second against the confirmed publisher alone.
    pub fn ratio(&self) -> f64 {
        self.published_rate() / self.ceiling.rate().max(1e-9)
    }

    pub fn cpu_us_per_request(&self) -> f64 {
        self.receiver_cpu_secs * 1e6 / self.receiver.answered().max(1) as f64
    }

    /// Redis's CPU per request of the receiver's run.
    pub fn redis_cpu_us_per_request(&self) -> f64 {
        self.redis_cpu_secs * 1e6 / self.receiver.answered().max(1) as f64
    }

    /// The HTTP stack alone: the hello-world's CPU per request of the same bytes.
    pub fn hello_cpu_us_per_request(&self) -> f64 {
        self.hello_cpu_secs * 1e6 / self.hello.answered().max(1) as f64
    }

    /// A confirmed publish alone: the publisher's CPU per confirmed message.
    pub fn ceiling_cpu_us_per_message(&self) -> f64 {
        self.ceiling_cpu_secs * 1e6 / self.ceiling.answered().max(1) as f64
    }

    /// What the receiver's requests cost at least, from the two baselines of the run: the
    /// HTTP stack for every request and a confirmed publish for each one it published
    /// (its share of 202s). The receiver adds the token, the rate limit, parsing and its
    /// log line to this.
    pub fn floor_cpu_us_per_request(&self) -> f64 {
        let published = self.receiver.count(202) as f64 / self.receiver.answered().max(1) as f64;
        self.hello_cpu_us_per_request() + published * self.ceiling_cpu_us_per_message()
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "connections": self.connections,
            "hello": self.hello.to_json(),
            "publish_ceiling": self.ceiling.to_json(),
            "receiver": self.receiver.to_json(),
            "receiver_cpu_us_per_request": self.cpu_us_per_request(),
            "redis_cpu_us_per_request": self.redis_cpu_us_per_request(),
            "hello_cpu_us_per_request": self.hello_cpu_us_per_request(),
            "publish_ceiling_cpu_us_per_message": self.ceiling_cpu_us_per_message(),
            "floor_cpu_us_per_request": self.floor_cpu_us_per_request(),
            "receiver_published_per_sec": self.published_rate(),
            "receiver_ratio": self.ratio(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct ReceiverFigures {
    pub secs: u64,
    pub levels: Vec<Level>,
    pub receiver: ProcStats,
    pub log: LogSummary,
}

impl ReceiverFigures {
    /// The run at 64 connections (the first).
    pub fn at64(&self) -> Option<&Level> {
        self.levels.iter().find(|l| l.connections == 64)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "secs_per_run": self.secs,
            "levels": self.levels.iter().map(Level::to_json).collect::<Vec<_>>(),
            "receiver_peak_rss_mib": self.receiver.peak_rss_mib,
            "log_warnings": self.log.warn,
            "log_errors": self.log.error,
        })
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ReceiverFigures> {
    let secs = ctx.sizes.receiver_secs;
    let duration = Duration::from_secs(secs);
    let db = ctx.janitor.database().await?;
    let c = seed::account(&db.conn, "Bench receiver").await?;
    let delays = default_retry_delays();
    let prefixes = ctx.janitor.prefixes(&delays);
    let receiver_topology = Topology::new(&prefixes.amqp, &delays);

    let hello_addr = crate::procs::free_addr()?;
    let mut hello = Proc::spawn(
        "hello",
        "examples/hello",
        &[hello_addr.to_string()],
        &[],
        hello_addr,
        &ctx.log_dir,
    )?;
    hello.wait_listening().await?;
    let mut receiver = crate::e2e::start_receiver(ctx, &db.url, &prefixes, "receiver").await?;

    let mix = leads::receiver_mix(5_000, &c, 5);
    let (requests, hello_requests) = requests(&mix, &c);
    let sample = mix
        .iter()
        .find(|m| !m.form && m.expect == 202)
        .context("Failed to find a valid JSON lead in the mix")?;
    let payload = Payload::of(&leads::to_message(
        &serde_json::from_slice(&sample.body).context("Failed to re-read a body")?,
        &c,
    )?)?;

    // Warm the receiver's token cache, so the first measured requests are not special.
    let _ = load::run(
        receiver.addr,
        1,
        Arc::new(requests[..1].to_vec()),
        Until::AllSent,
        Duration::from_secs(10),
        None,
    )
    .await?;

    let loads = Loads {
        requests,
        hello_requests,
        payload,
        receiver_topology,
        redis_prefix: prefixes.redis.clone(),
        duration,
    };
    let mut levels = Vec::new();
    for connections in CONNECTIONS {
        levels.push(level(ctx, &loads, &hello, &mut receiver, connections).await?);
    }
    let stats = receiver.stats()?;
    let log = receiver.log.clone();
    receiver.stop().await?;
    hello.stop().await?;
    let _ = db.conn.close().await;
    Ok(ReceiverFigures {
        secs,
        levels,
        receiver: stats,
        log: crate::procs::summarize_log(&log),
    })
}

/// The mix's requests to the receiver, and the same bytes for the hello-world.
fn requests(mix: &[leads::MixedRequest], c: &leads::Catalogs) -> (Arc<Vec<Req>>, Arc<Vec<Req>>) {
    let requests: Vec<Req> = mix
        .iter()
        .map(|m| Req {
            path: "/api/v1/webhook/forms".into(),
            content_type: if m.form {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
            body: Bytes::from(m.body.clone()),
            bearer: m.bearer.then(|| c.token.clone()),
            expect: m.expect,
        })
        .collect();
    // The hello-world gets the same bytes; it answers 200 to everything.
    let hello_requests: Vec<Req> = requests
        .iter()
        .cloned()
        .map(|r| Req { expect: 200, ..r })
        .collect();
    (Arc::new(requests), Arc::new(hello_requests))
}

/// What each connection level sends, and where.
struct Loads {
    /// To the receiver.
    requests: Arc<Vec<Req>>,
    /// The same bytes, to the hello-world.
    hello_requests: Arc<Vec<Req>>,
    /// What the publish ceiling publishes: the message of a valid lead of the mix.
    payload: Payload,
    /// The receiver's queues (the publish ceiling publishes into them too), purged after
    /// each run.
    receiver_topology: Topology,
    /// The receiver's Redis keys, deleted after each level.
    redis_prefix: String,
    /// How long each run lasts.
    duration: Duration,
}

/// One connection level: the hello-world, the publish ceiling, then the receiver, each for
/// the same time; the receiver's queue and Redis keys are emptied afterwards.
async fn level(
    ctx: &Ctx,
    loads: &Loads,
    hello: &Proc,
    receiver: &mut Proc,
    connections: usize,
) -> anyhow::Result<Level> {
    let secs = ctx.sizes.receiver_secs;
    let duration = loads.duration;
    let cap = duration + Duration::from_secs(30);
    // The hello-world and the receiver get the same load for the same time.
    let timed = |addr, requests| {
        load::run(
            addr,
            connections,
            requests,
            Until::Elapsed(duration),
            cap,
            None,
        )
    };
    eprintln!("bench: receiver: {connections} connections, {secs} s each: hello-world");
    let hello_before = hello.stats()?;
    let hello_run = timed(hello.addr, loads.hello_requests.clone()).await?;
    let hello_cpu_secs = hello.stats()?.cpu_secs - hello_before.cpu_secs;
    eprintln!("bench: receiver: {connections} connections: publish ceiling");
    let own_before = procs::own_cpu_secs()?;
    let ceiling = publish::publish_for(
        &ctx.janitor.services().amqp_url,
        &loads.receiver_topology,
        loads.payload.clone(),
        connections,
        duration,
    )
    .await?;
    let ceiling_cpu_secs = procs::own_cpu_secs()? - own_before;
    publish::purge(&ctx.janitor.services().amqp_url, &loads.receiver_topology).await?;
    eprintln!("bench: receiver: {connections} connections: receiver");
    receiver.check_alive()?;
    let before = receiver.stats()?;
    let system_before = procs::SystemCpu::sample();
    let run = timed(receiver.addr, loads.requests.clone()).await?;
    let system = procs::SystemCpu::sample().since(&system_before);
    let after = receiver.stats()?;
    publish::purge(&ctx.janitor.services().amqp_url, &loads.receiver_topology).await?;
    env::delete_redis(&ctx.janitor.services().redis_url, &loads.redis_prefix).await?;
    eprintln!(
        "bench: receiver: {connections} connections: {:.0} req/s (hello {:.0}, publish ceiling {:.0}); {}",
        run.rate(),
        hello_run.rate(),
        ceiling.rate(),
        run.statuses_text()
    );
    Ok(Level {
        connections,
        hello: hello_run,
        ceiling,
        receiver: run,
        receiver_cpu_secs: after.cpu_secs - before.cpu_secs,
        redis_cpu_secs: system.redis_secs,
        hello_cpu_secs,
        ceiling_cpu_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// `n` answers in one second, `statuses` as given.
    fn answers(n: usize, statuses: &[(u16, u64)]) -> LoadResult {
        LoadResult {
            secs: 1.0,
            started_at: chrono::Utc::now(),
            latencies_us: vec![100; n],
            statuses: statuses.iter().copied().collect::<BTreeMap<_, _>>(),
            unexpected: 0,
            transport_errors: 0,
        }
    }

    #[test]
    fn the_floor_is_the_http_stack_per_request_and_a_publish_per_lead_published() {
        let level = Level {
            connections: 64,
            // 10 µs per request of the HTTP stack alone.
            hello: answers(1_000, &[(200, 1_000)]),
            hello_cpu_secs: 0.01,
            // 20 µs per confirmed message of the publisher alone.
            ceiling: answers(500, &[(202, 500)]),
            ceiling_cpu_secs: 0.01,
            // 90% of the receiver's answers published a lead, at 60 µs per request.
            receiver: answers(100, &[(202, 90), (400, 10)]),
            receiver_cpu_secs: 0.006,
            redis_cpu_secs: 0.002,
        };
        assert!((level.hello_cpu_us_per_request() - 10.0).abs() < 1e-9);
        assert!((level.ceiling_cpu_us_per_message() - 20.0).abs() < 1e-9);
        assert!((level.floor_cpu_us_per_request() - 28.0).abs() < 1e-9);
        assert!((level.cpu_us_per_request() - 60.0).abs() < 1e-9);
        assert!((level.redis_cpu_us_per_request() - 20.0).abs() < 1e-9);
    }
}
