//! Settings for every binary: defaults < optional file < environment.
//!
//! The file is `CONFIG_FILE` if set, else `config/lead-intake.toml` when it exists.
//! Environment variables override both: the flat names of the contract (`DATABASE_URL`,
//! `REDIS_URL`, `AMQP_URL`, `RECEIVER_ADDR`, `LOG_FORMAT`, `RATE_LIMIT_FAIL_MODE`, …) and,
//! for any nested key, `SECTION__KEY` (e.g. `WORKER__CONCURRENCY=16`).
//!
//! A setting that moved keeps its old name as a fallback, with a warning at startup: the
//! retry delays were `WORKER__RETRY_DELAYS_MS` before they got a section of their own.

use serde::Deserialize;

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
    /// Old setting names this load found, for a warning at startup
    /// ([`Settings::warn_deprecated`]).
    #[serde(skip)]
    pub deprecated: Vec<Deprecated>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/lead_intake".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            amqp_prefix: String::new(),
            redis_prefix: "li:".into(),
            log_format: LogFormat::Pretty,
            receiver: ReceiverSettings::default(),
            rate_limit: RateLimitSettings::default(),
            worker: WorkerSettings::default(),
            retry: RetrySettings::default(),
            policy: PolicySettings::default(),
            deprecated: Vec::new(),
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
    pub header_timeout_ms: u64,
    /// Time a client has to send the whole body.
    pub body_timeout_ms: u64,
    /// Open connections at most; more wait in the accept backlog.
    pub max_connections: usize,
    /// How long to wait for the broker's publisher confirm before answering 503.
    pub publish_timeout_ms: u64,
    /// How long a token lookup is cached; bounds how late a revocation takes effect.
    pub token_cache_ttl_ms: u64,
    /// While the database cannot be reached, how long past its TTL a token's last good
    /// lookup may still be used; after that its requests get 503.
    pub token_stale_ms: u64,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace_ms: u64,
    /// How long one Redis call may take before the request goes on without it (fail-open)
    /// or gives up (fail-closed); Redis answers in well under a millisecond when healthy.
    pub redis_timeout_ms: u64,
    /// Database connections for token lookups (cache misses only).
    pub db_pool_size: u32,
    /// AMQP channels that publish leads; confirms are pipelined on each. One channel
    /// batches confirms best (measured: more channels lowered throughput on 2 cores); more
    /// only help once one channel's broker process is saturated.
    pub publish_channels: usize,
    /// Take the client address for per-IP limits from the last `X-Forwarded-For` entry
    /// (set it only behind a proxy that appends it); otherwise the TCP peer counts.
    pub trust_forwarded_for: bool,
    /// How often the queue-depth gauges are read from the broker.
    pub queue_depth_interval_ms: u64,
}

impl Default for ReceiverSettings {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8080".into(),
            body_limit_bytes: 64 * 1024,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            max_connections: 10_000,
            publish_timeout_ms: 5_000,
            token_cache_ttl_ms: 30_000,
            token_stale_ms: 300_000,
            shutdown_grace_ms: 15_000,
            redis_timeout_ms: 250,
            db_pool_size: 8,
            publish_channels: 1,
            trust_forwarded_for: false,
            queue_depth_interval_ms: 5_000,
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
    pub db_max_lifetime_ms: u64,
    /// Most leads one database transaction commits together (`WORKER__BATCH_SIZE`). Each
    /// lead's writes stay atomic and are acknowledged only after the commit; grouping them
    /// saves a disk flush per lead when a backlog builds up. 1 = a transaction per lead.
    pub batch_size: usize,
    /// How long leads received before SIGTERM may take to finish before the process exits
    /// anyway (their messages then return to the queue).
    pub shutdown_grace_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            prefetch: 512,
            metrics_addr: "0.0.0.0:9090".into(),
            db_pool_size: 16,
            db_max_lifetime_ms: 600_000,
            batch_size: 64,
            shutdown_grace_ms: 30_000,
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

/// The retry steps of a transiently failing lead. The worker waits them out; the receiver
/// and the worker both declare the delay queues that carry them (a delay queue's name holds
/// its delay), so both read this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Delays before each retry, in ms (`RETRY__DELAYS_MS=1000,5000`); after the last one
    /// the lead is dead-lettered.
    pub delays_ms: Vec<u64>,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            delays_ms: vec![1_000, 5_000, 30_000, 120_000, 600_000],
        }
    }
}

/// A setting given under a name that is going away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecated {
    /// The old key and environment variable.
    pub old: (&'static str, &'static str),
    /// The key and environment variable that replace it.
    pub new: (&'static str, &'static str),
    /// Whether the old one's value was used: false when the new one was given too.
    pub used: bool,
}

impl std::fmt::Display for Deprecated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ((old_key, old_env), (new_key, new_env)) = (self.old, self.new);
        let what = if self.used {
            "still read"
        } else {
            "ignored, as the new one is set"
        };
        write!(
            f,
            "{old_env} ({old_key}) is deprecated and {what}; set {new_env} ({new_key}) instead"
        )
    }
}

/// The retry delays' old key and variable, from when they were part of the worker's
/// section. Still read while the new ones are unset (operators have it in manifests).
const OLD_RETRY_DELAYS: (&str, &str) = ("worker.retry_delays_ms", "WORKER__RETRY_DELAYS_MS");
/// The retry delays' key and variable.
const RETRY_DELAYS: (&str, &str) = ("retry.delays_ms", "RETRY__DELAYS_MS");

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 2] = [RETRY_DELAYS.0, OLD_RETRY_DELAYS.0];

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
    /// Loads settings from the optional file and the process environment.
    pub fn load() -> Result<Self, config::ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Loads settings with `vars` standing in for the process environment.
    pub fn load_from(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, config::ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let file = vars
            .get("CONFIG_FILE")
            .cloned()
            .unwrap_or_else(|| "config/lead-intake.toml".into());
        let explicit_file = vars.contains_key("CONFIG_FILE");
        let mut environment = config::Environment::default()
            .separator("__")
            .list_separator(",")
            .try_parsing(true);
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::with_name(&file).required(explicit_file))
            .add_source(environment.source(Some(vars.clone())));
        for (env, key) in FLAT_ENV {
            if let Some(value) = vars.get(env) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        let config = builder.build()?;
        let mut settings: Self = config.clone().try_deserialize()?;
        if let Some(delays) = optional::<Vec<u64>>(&config, OLD_RETRY_DELAYS.0)? {
            let used = optional::<Vec<u64>>(&config, RETRY_DELAYS.0)?.is_none();
            if used {
                settings.retry.delays_ms = delays;
            }
            settings.deprecated.push(Deprecated {
                old: OLD_RETRY_DELAYS,
                new: RETRY_DELAYS,
                used,
            });
        }
        Ok(settings)
    }

    /// Logs a warning for each deprecated setting this load found; call once at startup,
    /// after the tracing subscriber is installed.
    pub fn warn_deprecated(&self) {
        for d in &self.deprecated {
            tracing::warn!(setting = d.old.1, replacement = d.new.1, "{d}");
        }
    }
}

/// The value at `key`, or `None` when no source sets it.
fn optional<T: serde::de::DeserializeOwned>(
    config: &config::Config,
    key: &str,
) -> Result<Option<T>, config::ConfigError> {
    match config.get(key) {
        Ok(value) => Ok(Some(value)),
        Err(config::ConfigError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
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

    #[test]
    fn defaults_apply_without_environment() {
        let s = Settings::load_from(env(&[])).expect("load");
        assert_eq!(s.receiver.addr, "0.0.0.0:8080");
        assert_eq!(s.rate_limit.per_minute, 1000);
        assert_eq!(s.receiver.body_limit_bytes, 65536);
        assert_eq!(s.log_format, LogFormat::Pretty);
    }

    #[test]
    fn flat_and_nested_environment_override_defaults() {
        let s = Settings::load_from(env(&[
            ("DATABASE_URL", "postgres://x@h/db"),
            ("RECEIVER_ADDR", "127.0.0.1:9999"),
            ("LOG_FORMAT", "json"),
            ("RATE_LIMIT_FAIL_MODE", "closed"),
            ("WORKER__CONCURRENCY", "3"),
            ("RETRY__DELAYS_MS", "10,20"),
        ]))
        .expect("load");
        assert_eq!(s.database_url, "postgres://x@h/db");
        assert_eq!(s.receiver.addr, "127.0.0.1:9999");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.rate_limit.fail_mode, FailMode::Closed);
        assert_eq!(s.worker.concurrency, 3);
        assert_eq!(s.retry.delays_ms, vec![10, 20]);
        assert!(s.deprecated.is_empty());
    }

    #[test]
    fn the_old_retry_delays_variable_is_read_while_the_new_one_is_unset() {
        let s = Settings::load_from(env(&[("WORKER__RETRY_DELAYS_MS", "10,20")])).expect("load");
        assert_eq!(s.retry.delays_ms, vec![10, 20]);
        assert_eq!(
            s.deprecated,
            vec![Deprecated {
                old: ("worker.retry_delays_ms", "WORKER__RETRY_DELAYS_MS"),
                new: ("retry.delays_ms", "RETRY__DELAYS_MS"),
                used: true,
            }]
        );
        let warning = s.deprecated[0].to_string();
        assert!(warning.contains("WORKER__RETRY_DELAYS_MS"), "{warning}");
        assert!(warning.contains("set RETRY__DELAYS_MS"), "{warning}");
    }

    #[test]
    fn the_new_retry_delays_variable_wins_over_the_old_one() {
        let s = Settings::load_from(env(&[
            ("WORKER__RETRY_DELAYS_MS", "10,20"),
            ("RETRY__DELAYS_MS", "30,40"),
        ]))
        .expect("load");
        assert_eq!(s.retry.delays_ms, vec![30, 40]);
        assert_eq!(s.deprecated.len(), 1);
        assert!(
            !s.deprecated[0].used,
            "the old value is ignored, and said so"
        );
    }

    #[test]
    fn without_either_retry_delays_variable_the_default_applies() {
        let s = Settings::load_from(env(&[])).expect("load");
        assert_eq!(s.retry.delays_ms, RetrySettings::default().delays_ms);
        assert!(s.deprecated.is_empty());
    }

    #[test]
    fn the_old_retry_delays_key_of_a_file_is_read_too() {
        let dir = std::env::temp_dir().join(format!("li-config-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(&path, "[worker]\nretry_delays_ms = [7, 8]\n").expect("write");
        let s = Settings::load_from(env(&[("CONFIG_FILE", path.to_str().expect("utf8"))]))
            .expect("load");
        assert_eq!(s.retry.delays_ms, vec![7, 8]);
        assert_eq!(s.deprecated.len(), 1);
        assert!(s.deprecated[0].used);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_unreadable_old_retry_delays_variable_is_an_error() {
        assert!(Settings::load_from(env(&[("WORKER__RETRY_DELAYS_MS", "soon")])).is_err());
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("li-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "redis_url = \"redis://file\"\n[worker]\nprefetch = 7\nconcurrency = 2\n",
        )
        .expect("write");
        let s = Settings::load_from(env(&[
            ("CONFIG_FILE", path.to_str().expect("utf8")),
            ("WORKER_CONCURRENCY", "5"),
        ]))
        .expect("load");
        assert_eq!(s.redis_url, "redis://file");
        assert_eq!(s.worker.prefetch, 7);
        assert_eq!(s.worker.concurrency, 5);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        assert!(Settings::load_from(env(&[("CONFIG_FILE", "/nonexistent/x.toml")])).is_err());
    }
}
