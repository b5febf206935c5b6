//! What the request path stands on: the broker, Redis and the process's metrics.
//!
//! - [`publisher`]: the self-healing, publisher-confirmed RabbitMQ connection.
//! - [`redis_client`]: [`redis_client::RedisClient`], the Redis handle every Redis user goes
//!   through (timeouts, fail-fast).
//! - [`pubsub`]: the reconnecting Redis subscriptions (outcomes, token revocations).
//! - [`waiters`]: synchronous mode: requests waiting for the worker's outcome.
//! - [`prometheus`]: the receiver's Prometheus metrics: their names and the recorder.
//! - [`queue_depth`]: queue-depth gauges read from the broker.
//! - [`intake_stats`]: per-second intake answer counts in Redis, for `leadctl status`.
//!
//! Nothing here knows HTTP, a lead source or admission.

pub(crate) mod intake_stats;
pub(crate) mod prometheus;
pub(crate) mod publisher;
pub(crate) mod pubsub;
pub(crate) mod queue_depth;
pub(crate) mod redis_client;
pub(crate) mod waiters;
