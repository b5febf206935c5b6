//! Settings for every binary: defaults < optional file < environment, checked once at load.
//!
//! The file is `CONFIG_FILE` if set, else `config/lead-intake.toml` when it exists.
//! Environment variables override both: the flat names of the contract (`DATABASE_URL`,
//! `REDIS_URL`, `AMQP_URL`, `RECEIVER_ADDR`, `LOG_FORMAT`, `RATE_LIMIT_FAIL_MODE`, …) and,
//! for any nested key, `SECTION__KEY` (e.g. `WORKER__CONCURRENCY=16`).
//!
//! Durations are written with a unit (`250ms`, `30s`, `10m`); a bare number is refused. A
//! list of them is comma-separated (`RETRY__DELAYS=1s,5s,30s`), and one value is a list of
//! one. Counts and sizes must be at least 1 and durations more than 0: a load that breaks
//! a rule fails with an error naming the variable (or file key) and its value, so the
//! binaries use the values as they are.

use std::collections::HashMap;
use std::time::Duration;

use config::ConfigError;
use serde::Deserialize;

/// Where the services are by default: a local PostgreSQL, Redis and RabbitMQ with their
/// stock ports and credentials. [`Settings::default`], the test kit and the bench read these.
pub mod defaults {
    macro_rules! postgres_server {
        () => {
            "postgres://postgres@127.0.0.1:5432"
        };
    }

    /// The PostgreSQL server, without a database (tests and the bench create their own).
    pub const POSTGRES_SERVER: &str = postgres_server!();
    /// The PostgreSQL database of the product.
    pub const DATABASE_URL: &str = concat!(postgres_server!(), "/lead_intake");
    /// Redis.
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
    /// RabbitMQ, its default virtual host.
    pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// PostgreSQL connection string.
    pub database_url: String,
    /// Redis connection string (rate limits, token-cache misses, intake status, idempotency).
    pub redis_url: String,
    /// RabbitMQ connection string.
    pub amqp_url: String,
    /// Prepended to every exchange and queue name, so environments (and tests) sharing one
    /// broker stay apart.
    pub amqp_prefix: String,
    /// Prepended to every Redis key, for the same reason.
    pub redis_prefix: String,
    pub log_format: LogFormat,
    pub receiver: ReceiverSettings,
    pub rate_limit: RateLimitSettings,
    pub worker: WorkerSettings,
    pub retry: RetrySettings,
    pub policy: PolicySettings,
    pub sms: SmsSettings,
    pub webhooks: WebhookSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: defaults::DATABASE_URL.into(),
            redis_url: defaults::REDIS_URL.into(),
            amqp_url: defaults::AMQP_URL.into(),
            amqp_prefix: String::new(),
            redis_prefix: "li:".into(),
            log_format: LogFormat::Pretty,
            receiver: ReceiverSettings::default(),
            rate_limit: RateLimitSettings::default(),
            worker: WorkerSettings::default(),
            retry: RetrySettings::default(),
            policy: PolicySettings::default(),
            sms: SmsSettings::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable, for a terminal.
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReceiverSettings {
    /// Listen address (`RECEIVER_ADDR`).
    pub addr: String,
    /// Largest accepted request body; larger gets 413.
    pub body_limit_bytes: usize,
    /// Time a client has to send the request head; slow clients cannot hold connections.
    #[serde(deserialize_with = "duration::one")]
    pub header_timeout: Duration,
    /// Time a client has to send the whole body.
    #[serde(deserialize_with = "duration::one")]
    pub body_timeout: Duration,
    /// Open connections at most; more wait in the accept backlog.
    pub max_connections: usize,
    /// How long to wait for the broker's publisher confirm before answering 503.
    #[serde(deserialize_with = "duration::one")]
    pub publish_timeout: Duration,
    /// How long a token lookup is cached; bounds how late a revocation takes effect.
    #[serde(deserialize_with = "duration::one")]
    pub token_cache_ttl: Duration,
    /// While the database cannot be reached, how long past its TTL a token's last good
    /// lookup may still be used; after that its requests get 503.
    #[serde(deserialize_with = "duration::one")]
    pub token_stale: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(deserialize_with = "duration::one")]
    pub shutdown_grace: Duration,
    /// How long one Redis call may take before the request goes on without it (fail-open)
    /// or gives up (fail-closed); Redis answers in well under a millisecond when healthy.
    #[serde(deserialize_with = "duration::one")]
    pub redis_timeout: Duration,
    /// Database connections for token lookups (cache misses only), the read API and the
    /// console.
    pub db_pool_size: u32,
    /// AMQP channels that publish leads; confirms are pipelined on each. One channel
    /// batches confirms best (measured: more channels lowered throughput on 2 cores); more
    /// only help once one channel's broker process is saturated.
    pub publish_channels: usize,
    /// Take the client address for per-IP limits from the last `X-Forwarded-For` entry
    /// (set it only behind a proxy that appends it); otherwise the TCP peer counts.
    pub trust_forwarded_for: bool,
    /// How often the queue-depth gauges are read from the broker; at least
    /// [`Self::MIN_QUEUE_DEPTH_INTERVAL`].
    #[serde(deserialize_with = "duration::one")]
    pub queue_depth_interval: Duration,
}

impl ReceiverSettings {
    /// The shortest `queue_depth_interval`: each reading asks the broker about every queue.
    pub const MIN_QUEUE_DEPTH_INTERVAL: Duration = Duration::from_millis(50);
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8080".into(),
            body_limit_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            publish_timeout: Duration::from_secs(5),
            token_cache_ttl: Duration::from_secs(30),
            token_stale: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(15),
            redis_timeout: Duration::from_millis(250),
            db_pool_size: 8,
            publish_channels: 1,
            trust_forwarded_for: false,
            queue_depth_interval: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Redis unreachable: accept leads anyway (and count it).
    Open,
    /// Redis unreachable: answer 503.
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Intake POSTs per token per rolling 60 s, unless the account overrides it.
    pub per_minute: u32,
    /// Read-API requests per token per rolling 60 s.
    pub read_per_minute: u32,
    /// Failed authentications per client IP per rolling 60 s.
    pub auth_failures_per_minute: u32,
    /// What to do when Redis cannot be reached (`RATE_LIMIT_FAIL_MODE`).
    pub fail_mode: FailMode,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_minute: 1000,
            read_per_minute: 6000,
            auth_failures_per_minute: 30,
            fail_mode: FailMode::Open,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Leads processed at once by one worker process (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Unacknowledged messages the broker may push to this process (`WORKER_PREFETCH`).
    pub prefetch: u16,
    /// Address of the worker's /healthz and /metrics (`WORKER_METRICS_ADDR`).
    pub metrics_addr: String,
    /// Database connection pool size.
    pub db_pool_size: u32,
    /// A pooled database connection is closed and replaced after this long. PostgreSQL
    /// keeps the plans a connection made (its prepared statements and foreign-key checks)
    /// for the connection's life; a bounded life re-makes them as tables grow.
    #[serde(deserialize_with = "duration::one")]
    pub db_max_lifetime: Duration,
    /// Most leads one database transaction commits together (`WORKER__BATCH_SIZE`). Each
    /// lead's writes stay atomic and are acknowledged only after the commit; grouping them
    /// saves a disk flush per lead when a backlog builds up. 1 = a transaction per lead;
    /// at most [`Self::MAX_BATCH_SIZE`].
    pub batch_size: usize,
    /// How long a lead that finds this process's other transactions running may wait for
    /// more leads to join its batch (`WORKER__BATCH_LINGER`; 0 = never). A lead that arrives
    /// while the process is idle is processed at once; under a steady stream the wait forms
    /// fewer, larger transactions, which cost the database less per lead. At most
    /// [`Self::MAX_BATCH_LINGER`].
    #[serde(deserialize_with = "duration::one")]
    pub batch_linger: Duration,
    /// How long leads received before SIGTERM may take to finish before the process exits
    /// anyway (their messages then return to the queue).
    #[serde(deserialize_with = "duration::one")]
    pub shutdown_grace: Duration,
    /// Threads of the worker process's async runtime (`WORKER__RUNTIME_THREADS`). A worker
    /// spends most of a lead waiting for PostgreSQL and the broker; on one thread, handing a
    /// delivery to a consumer task wakes no other thread, and a worker took 10–19% less
    /// CPU per lead than on two (docs/performance.md, "The worker's runtime threads").
    /// Add processes to use more cores; more threads suit a process whose delivery loop or
    /// send loop is its main work.
    pub runtime_threads: usize,
}

impl WorkerSettings {
    /// Most leads in one transaction: keeps every multi-row statement far below
    /// PostgreSQL's limit of 65,535 parameters.
    pub const MAX_BATCH_SIZE: usize = 256;
    /// Longest batch linger: a lead's wait for company stays far below the time it takes
    /// to reach it.
    pub const MAX_BATCH_LINGER: Duration = Duration::from_millis(100);
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            prefetch: 1024,
            metrics_addr: "0.0.0.0:9090".into(),
            db_pool_size: 16,
            db_max_lifetime: Duration::from_secs(600),
            batch_size: 128,
            batch_linger: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(30),
            runtime_threads: 1,
        }
    }
}

/// The contact policy (§9).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PolicySettings {
    /// A rule table replacing the shipped one (`POLICY__RULES_FILE`); a file that does not
    /// parse stops the process at start with the line that is wrong.
    pub rules_file: Option<std::path::PathBuf>,
}

impl PolicySettings {
    /// The rule table in force.
    pub fn rules(
        &self,
    ) -> Result<crate::policy::table::RuleTable, crate::policy::table::TableError> {
        crate::policy::table::load(self.rules_file.as_deref())
    }
}

/// Sequences that send (§10): the Twilio-compatible provider and the worker's send loop.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    /// Run the send loop in this worker (`SMS__ENABLED=false` turns it off; steps then
    /// wait for a worker that runs it).
    pub enabled: bool,
    /// The provider's API root (`SMS__BASE_URL`, e.g. `https://api.twilio.com`). Unset:
    /// nothing is sent and due steps wait.
    pub base_url: Option<String>,
    pub account_sid: String,
    /// The provider's auth token: basic-auth password and the key of inbound signatures.
    pub auth_token: String,
    /// The sending number when neither the contact's line nor the sequence's has one.
    pub from: Option<String>,
    /// The public address the provider posts inbound messages to (without the path); the
    /// inbound signature is checked over it. Unset: the request's `Host`, over http.
    pub webhook_base_url: Option<String>,
    /// Due steps one claim takes at most.
    pub batch_size: usize,
    /// Sends in flight at once per worker.
    pub concurrency: usize,
    /// Longest wait between two looks at the due steps; enrollments in this process wake
    /// the loop at once.
    #[serde(deserialize_with = "duration::one")]
    pub poll_interval: Duration,
    /// Time one provider request may take.
    #[serde(deserialize_with = "duration::one")]
    pub request_timeout: Duration,
    /// Waits before each new attempt of a step the provider answered 429 or 5xx (a
    /// `Retry-After` that asks for longer wins); after the last the step fails.
    #[serde(deserialize_with = "duration::list")]
    pub retry_delays: Vec<Duration>,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: None,
            account_sid: String::new(),
            auth_token: String::new(),
            from: None,
            webhook_base_url: None,
            batch_size: 100,
            concurrency: 32,
            poll_interval: Duration::from_millis(500),
            request_timeout: Duration::from_secs(10),
            retry_delays: [1, 5, 30, 120, 600].map(Duration::from_secs).to_vec(),
        }
    }
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("enabled", &self.enabled)
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("webhook_base_url", &self.webhook_base_url)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .field("poll_interval", &self.poll_interval)
            .field("request_timeout", &self.request_timeout)
            .field("retry_delays", &self.retry_delays)
            .finish()
    }
}

/// Outbound events (§11): the worker's delivery loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Run the delivery loop in this worker (`WEBHOOKS__ENABLED=false` turns it off; events
    /// then wait for a worker that runs it). Events are written either way.
    pub enabled: bool,
    /// Waits before each new attempt of a delivery that failed (`5s,5m,30m,2h,5h,10h,10h`);
    /// after the last the delivery fails. A `Retry-After` on 429/503 wins.
    #[serde(deserialize_with = "duration::list")]
    pub retry_schedule: Vec<Duration>,
    /// Deliver to endpoints whose addresses are private, loopback, link-local or shared
    /// (for local setups and tests); refused otherwise, at connect time.
    pub allow_private: bool,
    /// Time one delivery may take, connecting included.
    #[serde(deserialize_with = "duration::one")]
    pub request_timeout: Duration,
    /// Deliveries in flight at once to one endpoint; a slow endpoint holds only its own.
    pub endpoint_concurrency: usize,
    /// Deliveries in flight at once per worker.
    pub concurrency: usize,
    /// Longest wait between two looks at the due deliveries; commits with new events wake
    /// the loop at once.
    #[serde(deserialize_with = "duration::one")]
    pub poll_interval: Duration,
    /// Attempts per second this worker starts while its own intake has leads waiting (a
    /// burst): deliveries yield the machine to the leads and catch up at full speed once
    /// the backlog is gone. `0` holds them until then.
    pub backlog_rate: u32,
    /// How long a backlog holds deliveries back entirely before [`Self::backlog_rate`]
    /// applies (`30s`): a burst shorter than this gets the whole machine, and its events go
    /// out at full speed right after it.
    #[serde(deserialize_with = "duration::one")]
    pub backlog_hold: Duration,
    /// How long events are kept, with their deliveries and attempts (`30d`); the delivery
    /// loops remove older ones (up to 20,000 a minute each) while the intake has no backlog.
    #[serde(deserialize_with = "duration::one")]
    pub retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_schedule: [5, 300, 1800, 7200, 18000, 36000, 36000]
                .map(Duration::from_secs)
                .to_vec(),
            allow_private: false,
            request_timeout: Duration::from_secs(15),
            endpoint_concurrency: 16,
            concurrency: 256,
            poll_interval: Duration::from_secs(1),
            backlog_rate: 200,
            backlog_hold: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The retry steps of a transiently failing lead. The worker waits them out; the receiver
/// and the worker both declare the delay queues that carry them (a delay queue's name holds
/// its delay), so both read this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Delays before each retry (`RETRY__DELAYS=1s,5s`), in whole milliseconds; after the
    /// last one the lead is dead-lettered.
    #[serde(deserialize_with = "duration::list")]
    pub delays: Vec<Duration>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            delays: [1, 5, 30, 120, 600].map(Duration::from_secs).to_vec(),
        }
    }
}

/// Flat environment names of the contract, mapped onto nested keys.
const FLAT_ENV: [(&str, &str); 7] = [
    ("RECEIVER_ADDR", "receiver.addr"),
    ("RATE_LIMIT_FAIL_MODE", "rate_limit.fail_mode"),
    ("RATE_LIMIT_PER_MINUTE", "rate_limit.per_minute"),
    ("BODY_LIMIT_BYTES", "receiver.body_limit_bytes"),
    ("WORKER_CONCURRENCY", "worker.concurrency"),
    ("WORKER_PREFETCH", "worker.prefetch"),
    ("WORKER_METRICS_ADDR", "worker.metrics_addr"),
];

impl Settings {
    /// Loads settings from the optional file and the process environment, and checks them.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Loads settings with `vars` standing in for the process environment, and checks them.
    pub fn load_from(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let file = vars
            .get("CONFIG_FILE")
            .cloned()
            .unwrap_or_else(|| "config/lead-intake.toml".into());
        let explicit_file = vars.contains_key("CONFIG_FILE");
        // Lists are split by the durations' own parser, so a lone value is a list of one.
        let environment = config::Environment::default()
            .separator("__")
            .try_parsing(true);
        let mut builder = config::Config::builder()
            .add_source(config::File::with_name(&file).required(explicit_file))
            .add_source(environment.source(Some(vars.clone())));
        for (env, key) in FLAT_ENV {
            if let Some(value) = vars.get(env) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        let names = Names {
            vars: &vars,
            file: &file,
        };
        let settings: Self = builder
            .build()?
            .try_deserialize()
            .map_err(|e| names.error(e))?;
        settings.check().map_err(|(key, problem)| {
            ConfigError::Message(format!("{}: {problem}", names.of(key)))
        })?;
        Ok(settings)
    }

    /// The rules a load enforces: the key and the problem of the first one broken.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let (r, w) = (&self.receiver, &self.worker);
        let counts = [
            ("receiver.body_limit_bytes", r.body_limit_bytes == 0),
            ("receiver.max_connections", r.max_connections == 0),
            ("receiver.db_pool_size", r.db_pool_size == 0),
            ("receiver.publish_channels", r.publish_channels == 0),
            ("worker.concurrency", w.concurrency == 0),
            ("worker.prefetch", w.prefetch == 0),
            ("worker.db_pool_size", w.db_pool_size == 0),
            ("worker.batch_size", w.batch_size == 0),
            ("worker.runtime_threads", w.runtime_threads == 0),
            ("sms.batch_size", self.sms.batch_size == 0),
            ("sms.concurrency", self.sms.concurrency == 0),
            (
                "webhooks.endpoint_concurrency",
                self.webhooks.endpoint_concurrency == 0,
            ),
            ("webhooks.concurrency", self.webhooks.concurrency == 0),
        ];
        if let Some((key, _)) = counts.iter().find(|(_, zero)| *zero) {
            return Err((key, "0 is too few; it must be at least 1".into()));
        }
        if w.batch_size > WorkerSettings::MAX_BATCH_SIZE {
            return Err((
                "worker.batch_size",
                format!(
                    "{} is too many; it must be at most {}",
                    w.batch_size,
                    WorkerSettings::MAX_BATCH_SIZE
                ),
            ));
        }
        let positive = None;
        let durations = [
            ("receiver.header_timeout", r.header_timeout, positive),
            ("receiver.body_timeout", r.body_timeout, positive),
            ("receiver.publish_timeout", r.publish_timeout, positive),
            ("receiver.token_cache_ttl", r.token_cache_ttl, positive),
            ("receiver.token_stale", r.token_stale, positive),
            ("receiver.shutdown_grace", r.shutdown_grace, positive),
            ("receiver.redis_timeout", r.redis_timeout, positive),
            (
                "receiver.queue_depth_interval",
                r.queue_depth_interval,
                Some(ReceiverSettings::MIN_QUEUE_DEPTH_INTERVAL),
            ),
            ("worker.shutdown_grace", w.shutdown_grace, positive),
            ("worker.db_max_lifetime", w.db_max_lifetime, positive),
            ("sms.poll_interval", self.sms.poll_interval, positive),
            ("sms.request_timeout", self.sms.request_timeout, positive),
            (
                "webhooks.request_timeout",
                self.webhooks.request_timeout,
                positive,
            ),
            (
                "webhooks.poll_interval",
                self.webhooks.poll_interval,
                positive,
            ),
            ("webhooks.retention", self.webhooks.retention, positive),
        ]
        .into_iter()
        // Retry delays name delay queues in whole milliseconds.
        .chain(
            (self.retry.delays.iter())
                .map(|d| ("retry.delays", *d, Some(Duration::from_millis(1)))),
        );
        for (key, value, least) in durations {
            let rule = match least {
                None if value.is_zero() => "it must be more than 0".to_owned(),
                Some(least) if value < least => {
                    format!("it must be at least {}", humantime::format_duration(least))
                }
                _ => continue,
            };
            let value = humantime::format_duration(value);
            return Err((key, format!("{value} is too short; {rule}")));
        }
        if w.batch_linger > WorkerSettings::MAX_BATCH_LINGER {
            return Err((
                "worker.batch_linger",
                format!(
                    "{} is too long; it must be at most {}",
                    humantime::format_duration(w.batch_linger),
                    humantime::format_duration(WorkerSettings::MAX_BATCH_LINGER)
                ),
            ));
        }
        Ok(())
    }
}

/// Names a setting the way the operator gave it: its environment variable, or its key in
/// the file.
struct Names<'a> {
    vars: &'a HashMap<String, String>,
    file: &'a str,
}

impl Names<'_> {
    /// The name of the setting at `key` (`receiver.publish_timeout`, `retry.delays[2]`).
    fn of(&self, key: &str) -> String {
        let key = key.split('[').next().unwrap_or(key);
        if let Some((env, _)) = FLAT_ENV
            .iter()
            .find(|(env, k)| *k == key && self.vars.contains_key(*env))
        {
            return (*env).to_owned();
        }
        let env = key.replace('.', "__").to_uppercase();
        if self.vars.contains_key(&env) {
            env
        } else {
            format!("{key} (in {})", self.file)
        }
    }

    /// `error` of reading the settings, with the name of the setting it is about.
    fn error(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::At {
                error,
                key: Some(key),
                ..
            } => ConfigError::Message(format!("{}: {error}", self.of(&key))),
            ConfigError::Type {
                unexpected,
                expected,
                key: Some(key),
                ..
            } => ConfigError::Message(format!("{}: {unexpected} is not {expected}", self.of(&key))),
            other => other,
        }
    }
}

/// Durations written with a unit (`250ms`, `30s`, `10m`), alone or as a list.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Deserializer, SeqAccess, Visitor};

    /// Reads `text` as a duration; a bare number is refused, as its unit would be a guess.
    pub(super) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text.parse::<f64>().is_ok() {
            return Err(no_unit(text));
        }
        humantime::parse_duration(text)
            .map_err(|_| format!("{text:?} is not a duration (e.g. 250ms, 30s, 10m)"))
    }

    fn no_unit(number: impl fmt::Display) -> String {
        format!("{number} has no unit; add one (e.g. {number}ms or {number}s)")
    }

    /// One duration.
    pub(super) fn one<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(One)
    }

    /// A list of durations: a sequence, or a comma-separated string (one value: a list of one).
    pub(super) fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        d.deserialize_any(List)
    }

    struct One;

    impl Visitor<'_> for One {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as 250ms, 30s or 10m")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(no_unit(v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(no_unit(v)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(no_unit(v)))
        }
    }

    struct List;

    /// An element of a list.
    struct Element(Duration);

    impl<'de> de::Deserialize<'de> for Element {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            one(d).map(Element)
        }
    }

    impl<'de> Visitor<'de> for List {
        type Value = Vec<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("durations such as 1s,5s,30s")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.split(',').map(|d| parse(d).map_err(E::custom)).collect()
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(no_unit(v)))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(E::custom(no_unit(v)))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(no_unit(v)))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut delays = Vec::new();
            while let Some(Element(d)) = seq.next_element()? {
                delays.push(d);
            }
            Ok(delays)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_error(pairs: &[(&str, &str)]) -> String {
        match Settings::load_from(env(pairs)) {
            Ok(s) => panic!("loaded {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// A file holding `text`, in a directory of its own named after `name`.
    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("li-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn defaults_apply_without_environment() {
        let s = Settings::load_from(env(&[])).expect("load");
        assert_eq!(s.receiver.addr, "0.0.0.0:8080");
        assert_eq!(s.rate_limit.per_minute, 1000);
        assert_eq!(s.receiver.body_limit_bytes, 65536);
        assert_eq!(s.receiver.publish_timeout, Duration::from_secs(5));
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.database_url, defaults::DATABASE_URL);
        assert_eq!(
            s.retry.delays,
            [1_000, 5_000, 30_000, 120_000, 600_000].map(Duration::from_millis)
        );
    }

    #[test]
    fn flat_and_nested_environment_override_defaults() {
        let s = Settings::load_from(env(&[
            ("DATABASE_URL", "postgres://x@h/db"),
            ("RECEIVER_ADDR", "127.0.0.1:9999"),
            ("LOG_FORMAT", "json"),
            ("RATE_LIMIT_FAIL_MODE", "closed"),
            ("WORKER__CONCURRENCY", "3"),
            ("RETRY__DELAYS", "10ms, 20ms"),
            ("WEBHOOKS__BACKLOG_RATE", "0"),
            ("WEBHOOKS__BACKLOG_HOLD", "2m"),
            ("WEBHOOKS__RETENTION", "7d"),
        ]))
        .expect("load");
        assert_eq!(s.database_url, "postgres://x@h/db");
        assert_eq!(s.receiver.addr, "127.0.0.1:9999");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.rate_limit.fail_mode, FailMode::Closed);
        assert_eq!(s.worker.concurrency, 3);
        assert_eq!(s.retry.delays, [10, 20].map(Duration::from_millis));
        assert_eq!(s.webhooks.backlog_rate, 0);
        assert_eq!(s.webhooks.backlog_hold, Duration::from_secs(120));
        assert_eq!(
            WebhookSettings::default().backlog_hold,
            Duration::from_secs(30)
        );
        assert_eq!(s.webhooks.retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(WebhookSettings::default().backlog_rate, 200);
    }

    #[test]
    fn durations_are_read_with_their_unit() {
        let s = Settings::load_from(env(&[
            ("RECEIVER__PUBLISH_TIMEOUT", "250ms"),
            ("RECEIVER__TOKEN_STALE", "10m"),
            ("WORKER__SHUTDOWN_GRACE", "1m 30s"),
            ("WORKER__DB_MAX_LIFETIME", "2h"),
        ]))
        .expect("load");
        assert_eq!(s.receiver.publish_timeout, Duration::from_millis(250));
        assert_eq!(s.receiver.token_stale, Duration::from_secs(600));
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(90));
        assert_eq!(s.worker.db_max_lifetime, Duration::from_secs(7200));
    }

    #[test]
    fn a_lone_value_is_a_list_of_one() {
        let s = Settings::load_from(env(&[("RETRY__DELAYS", "30s")])).expect("load");
        assert_eq!(s.retry.delays, vec![Duration::from_secs(30)]);
    }

    #[test]
    fn a_bad_duration_is_an_error_naming_the_variable_and_the_value() {
        let e = load_error(&[("RECEIVER__PUBLISH_TIMEOUT", "5 parsecs")]);
        assert_eq!(
            e,
            r#"RECEIVER__PUBLISH_TIMEOUT: "5 parsecs" is not a duration (e.g. 250ms, 30s, 10m)"#
        );
        let e = load_error(&[("RETRY__DELAYS", "1s,soon")]);
        assert!(
            e.starts_with(r#"RETRY__DELAYS: "soon" is not a duration"#),
            "{e}"
        );
    }

    #[test]
    fn a_number_without_a_unit_is_an_error_asking_for_one() {
        let e = load_error(&[("RECEIVER__PUBLISH_TIMEOUT", "5000")]);
        assert!(
            e.starts_with("RECEIVER__PUBLISH_TIMEOUT: 5000 has no unit"),
            "{e}"
        );
        let e = load_error(&[("RETRY__DELAYS", "30000")]);
        assert!(e.starts_with("RETRY__DELAYS: 30000 has no unit"), "{e}");
        let e = load_error(&[("RETRY__DELAYS", "1s,30000")]);
        assert!(e.starts_with("RETRY__DELAYS: 30000 has no unit"), "{e}");
    }

    #[test]
    fn a_zero_count_is_an_error_naming_the_variable() {
        let e = load_error(&[("WORKER_CONCURRENCY", "0")]);
        assert_eq!(e, "WORKER_CONCURRENCY: 0 is too few; it must be at least 1");
        let e = load_error(&[("RECEIVER__PUBLISH_CHANNELS", "0")]);
        assert!(
            e.starts_with("RECEIVER__PUBLISH_CHANNELS: 0 is too few"),
            "{e}"
        );
        let e = load_error(&[("WORKER__BATCH_SIZE", "257")]);
        assert!(e.starts_with("WORKER__BATCH_SIZE: 257 is too many"), "{e}");
    }

    #[test]
    fn the_batch_linger_is_a_bounded_duration_and_zero_turns_it_off() {
        assert_eq!(
            Settings::default().worker.batch_linger,
            Duration::from_millis(20)
        );
        let off = Settings::load_from(env(&[("WORKER__BATCH_LINGER", "0ms")])).expect("0ms");
        assert_eq!(off.worker.batch_linger, Duration::ZERO);
        let set = Settings::load_from(env(&[("WORKER__BATCH_LINGER", "30ms")])).expect("30ms");
        assert_eq!(set.worker.batch_linger, Duration::from_millis(30));
        let e = load_error(&[("WORKER__BATCH_LINGER", "1s")]);
        assert_eq!(
            e,
            "WORKER__BATCH_LINGER: 1s is too long; it must be at most 100ms"
        );
        let e = load_error(&[("WORKER__BATCH_LINGER", "5")]);
        assert!(e.contains("has no unit"), "{e}");
    }

    /// The README's variables table and docs/performance.md ("Batches of 128") give these
    /// defaults: batches of up to 128 leads, and a prefetch twice concurrency × batch.
    #[test]
    fn the_worker_batches_up_to_128_leads_with_twice_its_batches_prefetched() {
        let w = Settings::default().worker;
        assert_eq!((w.concurrency, w.batch_size, w.prefetch), (4, 128, 1024));
        assert_eq!(usize::from(w.prefetch), 2 * w.concurrency * w.batch_size);
        let set = Settings::load_from(env(&[
            ("WORKER__BATCH_SIZE", "64"),
            ("WORKER_PREFETCH", "512"),
        ]))
        .expect("64, 512");
        assert_eq!((set.worker.batch_size, set.worker.prefetch), (64, 512));
    }

    #[test]
    fn the_worker_runs_on_one_runtime_thread_unless_told_otherwise() {
        assert_eq!(Settings::default().worker.runtime_threads, 1);
        let set = Settings::load_from(env(&[("WORKER__RUNTIME_THREADS", "3")])).expect("3");
        assert_eq!(set.worker.runtime_threads, 3);
        let e = load_error(&[("WORKER__RUNTIME_THREADS", "0")]);
        assert_eq!(
            e,
            "WORKER__RUNTIME_THREADS: 0 is too few; it must be at least 1"
        );
    }

    #[test]
    fn a_zero_duration_is_an_error_naming_the_variable() {
        let e = load_error(&[("RECEIVER__REDIS_TIMEOUT", "0s")]);
        assert_eq!(
            e,
            "RECEIVER__REDIS_TIMEOUT: 0s is too short; it must be more than 0"
        );
        let e = load_error(&[("RECEIVER__QUEUE_DEPTH_INTERVAL", "10ms")]);
        assert!(e.contains("at least 50ms"), "{e}");
        let e = load_error(&[("RETRY__DELAYS", "1s,0s")]);
        assert!(e.starts_with("RETRY__DELAYS: 0s is too short"), "{e}");
    }

    #[test]
    fn an_unreadable_value_names_the_variable() {
        let e = load_error(&[("WORKER__CONCURRENCY", "many")]);
        assert!(e.starts_with("WORKER__CONCURRENCY: "), "{e}");
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        let path = file(
            "layers",
            "redis_url = \"redis://file\"\n[worker]\nprefetch = 7\nconcurrency = 2\n\
             shutdown_grace = \"45s\"\n[retry]\ndelays = [\"1s\", \"2m\"]\n",
        );
        let s = Settings::load_from(env(&[
            ("CONFIG_FILE", path.to_str().expect("utf8")),
            ("WORKER_CONCURRENCY", "5"),
        ]))
        .expect("load");
        assert_eq!(s.redis_url, "redis://file");
        assert_eq!(s.worker.prefetch, 7);
        assert_eq!(s.worker.concurrency, 5);
        assert_eq!(s.worker.shutdown_grace, Duration::from_secs(45));
        assert_eq!(s.retry.delays, [1, 120].map(Duration::from_secs));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_bad_file_value_names_its_key_and_the_file() {
        let path = file(
            "bad",
            "[receiver]\nbody_timeout = 10000\n[worker]\nprefetch = 0\n",
        );
        let path_text = path.to_str().expect("utf8");
        let e = load_error(&[("CONFIG_FILE", path_text)]);
        assert_eq!(
            e,
            format!(
                "receiver.body_timeout (in {path_text}): 10000 has no unit; add one (e.g. 10000ms or 10000s)"
            )
        );
        std::fs::write(&path, "[worker]\nprefetch = 0\n").expect("write");
        let e = load_error(&[("CONFIG_FILE", path_text)]);
        assert_eq!(
            e,
            format!("worker.prefetch (in {path_text}): 0 is too few; it must be at least 1")
        );
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        assert!(Settings::load_from(env(&[("CONFIG_FILE", "/nonexistent/x.toml")])).is_err());
    }
}
