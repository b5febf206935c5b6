//! The RabbitMQ topology, declared in one place and idempotently.
//!
//! ```text
//! receiver ──► exchange `leads` (direct) ──intake──► quorum queue `leads.intake`
//!                                                      │  worker: transient failure
//!                                                      ├──► quorum `leads.delay.N` (TTL) ──► back to `leads`
//!                                                      │  worker: poison / out of retries
//!                                                      └──► exchange `leads.dlx` (fanout) ──► `leads.dead`
//!                            broker: delivery limit reached ──┘                 └──► `leads.dead.records`
//! ```
//! `leads.dead` holds dead letters for operators to inspect and replay; `leads.dead.records`
//! gets a copy of each, from which workers write the `dead_lettered` intake record.
//! Every name is prefixed by `amqp_prefix`, so environments and tests sharing one broker
//! stay apart. Every queue is a quorum queue: in a RabbitMQ cluster each is replicated to
//! the nodes, so losing one node loses no message and no queue, and [`connect`] moves a
//! process to another node of `AMQP_URL`'s list.

use crate::config::Settings;
use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Routing key of intake messages on the `leads` exchange.
pub const INTAKE_ROUTING_KEY: &str = "intake";

/// Deliveries of one message before RabbitMQ itself dead-letters it. The worker retries
/// through delay queues (each a fresh message), so this only stops a message that crashes
/// its consumer over and over (RabbitMQ 3.x has no default limit).
pub const DELIVERY_LIMIT: i64 = 10;

/// Names of every exchange and queue, for one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    retry_delays_ms: Vec<u64>,
}

impl Topology {
    /// The topology of `settings`: its `amqp_prefix` and its retry steps
    /// (`settings.retry`), as every process of one environment declares it.
    pub fn from_settings(settings: &Settings) -> Self {
        let delays_ms: Vec<u64> = (settings.retry.delays.iter())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        Self::new(&settings.amqp_prefix, &delays_ms)
    }

    /// `retry_delays_ms`: one delay queue per retry step (see `RetrySettings`).
    pub fn new(prefix: &str, retry_delays_ms: &[u64]) -> Self {
        Self {
            prefix: prefix.to_owned(),
            retry_delays_ms: retry_delays_ms.to_vec(),
        }
    }

    /// The exchange the receiver publishes intakes to.
    pub fn exchange(&self) -> String {
        format!("{}leads", self.prefix)
    }

    /// The queue workers consume.
    pub fn intake_queue(&self) -> String {
        format!("{}leads.intake", self.prefix)
    }

    /// The exchange dead letters go through.
    pub fn dead_exchange(&self) -> String {
        format!("{}leads.dlx", self.prefix)
    }

    /// Leads that could not be processed, with the reason in their headers.
    pub fn dead_queue(&self) -> String {
        format!("{}leads.dead", self.prefix)
    }

    /// A copy of every dead letter, whoever dead-lettered it (the worker, or the broker at
    /// the delivery limit), read by workers to write its `dead_lettered` intake record.
    pub fn dead_record_queue(&self) -> String {
        format!("{}leads.dead.records", self.prefix)
    }

    /// The delays of the retry steps, in ms.
    pub fn retry_delays_ms(&self) -> &[u64] {
        &self.retry_delays_ms
    }

    /// The delay queue of retry step `step` (0-based); published to through the default
    /// exchange by name. Its name carries the delay, because a queue's TTL cannot change
    /// once declared.
    pub fn retry_queue(&self, step: usize) -> Option<String> {
        self.retry_delays_ms
            .get(step)
            .map(|ms| format!("{}leads.delay.{ms}ms", self.prefix))
    }

    /// Declares everything; safe to call from every process at every start.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        self.declare_exchanges(channel).await?;
        self.declare_intake_queue(channel).await?;
        self.declare_dead_queues(channel).await?;
        self.declare_retry_queues(channel).await
    }

    /// The intake exchange (direct, by routing key) and the dead-letter exchange (fanout:
    /// every dead letter goes to every dead queue).
    async fn declare_exchanges(&self, channel: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for (name, kind) in [
            (self.exchange(), ExchangeKind::Direct),
            (self.dead_exchange(), ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await?;
        }
        Ok(())
    }

    /// The queue workers consume, bound to the intake exchange.
    async fn declare_intake_queue(&self, channel: &Channel) -> lapin::Result<()> {
        let mut args = FieldTable::default();
        // Quorum: replicated, and survives broker restarts with confirmed messages intact.
        put(&mut args, "x-queue-type", string("quorum"));
        // A message redelivered this often (its consumer keeps crashing) is dead-lettered
        // instead of looping for ever.
        put(
            &mut args,
            "x-delivery-limit",
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        put(
            &mut args,
            "x-dead-letter-exchange",
            string(&self.dead_exchange()),
        );
        // Dead-lettering by the broker is confirmed by the target queue, so a crash-looping
        // lead is moved, never dropped (needs reject-publish overflow).
        put(&mut args, "x-dead-letter-strategy", string("at-least-once"));
        put(&mut args, "x-overflow", string("reject-publish"));
        let queue = self.intake_queue();
        declare_queue(channel, &queue, args).await?;
        bind(channel, &queue, &self.exchange(), INTAKE_ROUTING_KEY).await
    }

    /// The dead-letter queue operators read and its copy workers record from, both bound
    /// to the dead-letter exchange.
    async fn declare_dead_queues(&self, channel: &Channel) -> lapin::Result<()> {
        for queue in [self.dead_queue(), self.dead_record_queue()] {
            let mut args = FieldTable::default();
            put(&mut args, "x-queue-type", string("quorum"));
            declare_queue(channel, &queue, args).await?;
            bind(channel, &queue, &self.dead_exchange(), "").await?;
        }
        Ok(())
    }

    /// One delay queue per retry step, unbound: the worker publishes to it by name.
    async fn declare_retry_queues(&self, channel: &Channel) -> lapin::Result<()> {
        for (step, ms) in self.retry_delays_ms.iter().enumerate() {
            let Some(queue) = self.retry_queue(step) else {
                continue;
            };
            let mut args = FieldTable::default();
            // Quorum, like the intake queue: a lead waiting for its retry survives the loss
            // of a cluster node, and its return to the intake queue is confirmed (at least
            // once) instead of dropped when that queue cannot take it.
            put(&mut args, "x-queue-type", string("quorum"));
            put(&mut args, "x-dead-letter-strategy", string("at-least-once"));
            put(&mut args, "x-overflow", string("reject-publish"));
            // Every message of a delay queue waits the same time, so expiry at the head is
            // exact; expired messages go back to the intake queue.
            put(
                &mut args,
                "x-message-ttl",
                AMQPValue::LongLongInt(i64::try_from(*ms).unwrap_or(i64::MAX)),
            );
            put(
                &mut args,
                "x-dead-letter-exchange",
                string(&self.exchange()),
            );
            put(
                &mut args,
                "x-dead-letter-routing-key",
                string(INTAKE_ROUTING_KEY),
            );
            declare_queue(channel, &queue, args).await?;
        }
        Ok(())
    }

    /// Every queue of the topology (for cleanup in tests and for operators' tooling).
    pub fn queues(&self) -> Vec<String> {
        let mut q = vec![
            self.intake_queue(),
            self.dead_queue(),
            self.dead_record_queue(),
        ];
        q.extend((0..self.retry_delays_ms.len()).filter_map(|s| self.retry_queue(s)));
        q
    }

    /// Every exchange of the topology.
    pub fn exchanges(&self) -> Vec<String> {
        vec![self.exchange(), self.dead_exchange()]
    }

    /// The name of the policy that sets the delivery limit of the intake queue.
    pub fn delivery_limit_policy(&self) -> String {
        format!("{}leads-delivery-limit", self.prefix)
    }

    /// The topology as RabbitMQ definitions (`load_definitions` at boot, or
    /// `rabbitmqctl import_definitions`) for virtual host `vhost`: the same exchanges,
    /// queues, arguments and bindings [`Topology::declare`] makes, plus a policy carrying
    /// the intake queue's delivery limit. Loading them and then declaring is a no-op, so a
    /// broker can be provisioned before any process starts.
    pub fn definitions(&self, vhost: &str) -> serde_json::Value {
        use serde_json::json;
        let exchange = |name: String, kind: &str| {
            json!({"name": name, "vhost": vhost, "type": kind, "durable": true,
                   "auto_delete": false, "internal": false, "arguments": {}})
        };
        let queue = |name: String, arguments: serde_json::Value| {
            json!({"name": name, "vhost": vhost, "durable": true, "auto_delete": false,
                   "arguments": arguments})
        };
        let binding = |source: String, destination: String, key: &str| {
            json!({"source": source, "vhost": vhost, "destination": destination,
                   "destination_type": "queue", "routing_key": key, "arguments": {}})
        };
        let mut queues = vec![
            queue(
                self.intake_queue(),
                json!({
                    "x-queue-type": "quorum",
                    "x-delivery-limit": DELIVERY_LIMIT,
                    "x-dead-letter-exchange": self.dead_exchange(),
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }),
            ),
            queue(self.dead_queue(), json!({"x-queue-type": "quorum"})),
            queue(self.dead_record_queue(), json!({"x-queue-type": "quorum"})),
        ];
        for (step, ms) in self.retry_delays_ms.iter().enumerate() {
            if let Some(name) = self.retry_queue(step) {
                queues.push(queue(
                    name,
                    json!({
                        "x-queue-type": "quorum",
                        "x-dead-letter-strategy": "at-least-once",
                        "x-overflow": "reject-publish",
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": self.exchange(),
                        "x-dead-letter-routing-key": INTAKE_ROUTING_KEY,
                    }),
                ));
            }
        }
        json!({
            "vhosts": [{"name": vhost}],
            "exchanges": [
                exchange(self.exchange(), "direct"),
                exchange(self.dead_exchange(), "fanout"),
            ],
            "queues": queues,
            "bindings": [
                binding(self.exchange(), self.intake_queue(), INTAKE_ROUTING_KEY),
                binding(self.dead_exchange(), self.dead_queue(), ""),
                binding(self.dead_exchange(), self.dead_record_queue(), ""),
            ],
            "policies": [{
                "vhost": vhost,
                "name": self.delivery_limit_policy(),
                "pattern": format!("^{}$", regex_escape(&self.intake_queue())),
                "apply-to": "queues",
                "priority": 0,
                "definition": {"delivery-limit": DELIVERY_LIMIT},
            }],
        })
    }
}

/// How long one broker address may take to accept a connection before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The address of [`connect`]'s list that answered last: the next connection starts there.
static LAST_GOOD: AtomicUsize = AtomicUsize::new(0);

/// Connects to RabbitMQ. `urls` is `AMQP_URL`: one URL, or several separated by commas (the
/// nodes of a cluster). Each address is tried in turn, starting with the one that answered
/// last, so a process whose node died moves to the next node; an address that neither
/// accepts nor refuses within [`CONNECT_TIMEOUT`] is passed over. Fails with the last
/// address's error when none answers.
pub async fn connect(urls: &str, properties: ConnectionProperties) -> lapin::Result<Connection> {
    let list = broker_urls(urls);
    let first = LAST_GOOD.load(Ordering::Relaxed) % list.len().max(1);
    let mut last_error = None;
    for i in 0..list.len() {
        let at = (first + i) % list.len();
        let url = list[at];
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(url, properties.clone()),
        );
        let error = match attempt.await {
            Ok(Ok(connection)) => {
                if list.len() > 1 {
                    LAST_GOOD.store(at, Ordering::Relaxed);
                    tracing::info!(broker = %authority(url), "Connected to RabbitMQ");
                }
                return Ok(connection);
            }
            Ok(Err(e)) => e,
            Err(_) => lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )),
        };
        if list.len() > 1 {
            tracing::warn!(broker = %authority(url), error = %error, "RabbitMQ did not answer; trying the next address");
        }
        last_error = Some(error);
    }
    Err(last_error.unwrap_or_else(|| {
        lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "AMQP_URL names no broker",
        ))
    }))
}

/// The addresses of an `AMQP_URL`: comma-separated, blanks around each ignored.
pub fn broker_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// `host:port` of a broker URL, without its credentials (for logs).
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.rsplit_once('@').map_or(authority, |(_, a)| a)
}

/// Where the definitions of the default topology are committed, relative to the workspace.
pub const DEFINITIONS_FILE: &str = "deploy/rabbitmq/definitions.json";

/// [`Topology::definitions`] as the text of a definitions file: pretty JSON and a newline.
pub fn definitions_text(topology: &Topology, vhost: &str) -> String {
    let mut text = serde_json::to_string_pretty(&topology.definitions(vhost))
        .unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

/// `s` as a regular expression matching itself (queue names contain dots).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How many messages wait in a queue and how many consumers it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub depth: u32,
    pub consumers: u32,
}

/// The counts of `queue`, read with a passive declare (which creates nothing). A queue that
/// does not exist is an error, and the broker then closes `channel`.
pub async fn counts(channel: &Channel, queue: &str) -> lapin::Result<QueueCounts> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(QueueCounts {
        depth: q.message_count(),
        consumers: q.consumer_count(),
    })
}

/// Declares the durable queue `name` with `args`.
async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(name.into(), durable, args).await?;
    Ok(())
}

/// Binds `queue` to `exchange` with routing key `key`.
async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

fn put(table: &mut FieldTable, key: &str, value: AMQPValue) {
    table.insert(ShortString::from(key), value);
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed definitions are the default topology's, byte for byte: a change to the
    /// topology (or to the default retry delays) that is not regenerated fails here.
    #[test]
    fn committed_definitions_match_the_topology() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(DEFINITIONS_FILE);
        let committed = std::fs::read_to_string(&path).expect("read the definitions file");
        let topology = Topology::from_settings(&Settings::default());
        assert!(
            committed == definitions_text(&topology, "/"),
            "{DEFINITIONS_FILE} is out of date; regenerate it with \
             `cargo run -q --bin leadctl -- topology definitions > {DEFINITIONS_FILE}`"
        );
    }

    #[test]
    fn definitions_name_every_queue_and_exchange_with_the_prefix() {
        let topology = Topology::new("staging.", &[1000, 5000]);
        let d = topology.definitions("/");
        let names = |key: &str| -> Vec<String> {
            d[key]
                .as_array()
                .expect("array")
                .iter()
                .map(|v| v["name"].as_str().expect("name").to_owned())
                .collect()
        };
        assert_eq!(names("queues"), topology.queues());
        assert_eq!(names("exchanges"), topology.exchanges());
        assert_eq!(d["queues"][3]["arguments"]["x-message-ttl"], 1000);
        for q in d["queues"].as_array().expect("array") {
            assert_eq!(q["arguments"]["x-queue-type"], "quorum", "{q}");
        }
        assert_eq!(
            d["policies"][0]["pattern"], "^staging\\.leads\\.intake$",
            "the policy matches the intake queue only"
        );
        assert_eq!(
            d["policies"][0]["definition"]["delivery-limit"],
            DELIVERY_LIMIT
        );
    }

    #[test]
    fn a_broker_list_is_comma_separated_and_logged_without_credentials() {
        let urls = "amqp://u:secret@rabbit-1:5672/%2f, amqp://u:secret@rabbit-2:5673/%2f,";
        let list = broker_urls(urls);
        assert_eq!(
            list,
            [
                "amqp://u:secret@rabbit-1:5672/%2f",
                "amqp://u:secret@rabbit-2:5673/%2f"
            ]
        );
        assert_eq!(authority(list[1]), "rabbit-2:5673");
        assert_eq!(broker_urls("amqp://h"), ["amqp://h"]);
    }

    /// The first address accepts connections and never answers, the second refuses them:
    /// both are passed over and the third, a real broker, is connected to; the next
    /// connection starts with it.
    #[tokio::test]
    async fn connect_passes_over_brokers_that_do_not_answer() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let silent_addr = silent.local_addr().expect("its address");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                open.push(s);
            }
        });
        let refusing = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let refusing_addr = refusing.local_addr().expect("its address");
        drop(refusing);
        let real = std::env::var("TEST_AMQP_URL")
            .unwrap_or_else(|_| crate::config::defaults::AMQP_URL.to_owned());
        let urls = format!(
            "amqp://guest:guest@{silent_addr}/%2f,amqp://guest:guest@{refusing_addr}/%2f,{real}"
        );
        let started = std::time::Instant::now();
        let connection = connect(&urls, ConnectionProperties::default())
            .await
            .expect("the third address connects");
        assert!(connection.status().connected());
        assert!(
            started.elapsed() >= CONNECT_TIMEOUT,
            "the silent one was waited for"
        );
        let again = std::time::Instant::now();
        connect(&urls, ConnectionProperties::default())
            .await
            .expect("connects again");
        assert!(
            again.elapsed() < CONNECT_TIMEOUT,
            "the next connection starts with the broker that answered"
        );
        let only_dead = format!("amqp://guest:guest@{refusing_addr}/%2f");
        assert!(
            connect(&only_dead, ConnectionProperties::default())
                .await
                .is_err()
        );
        held.abort();
    }
}
