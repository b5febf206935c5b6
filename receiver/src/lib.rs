//! The lead-intake HTTP receiver: `POST /api/v1/webhook/forms` authenticates a lead's token,
//! applies the per-token rate limit, parses the lead into a typed [`shared::lead::Lead`],
//! publishes it to RabbitMQ and answers 202 only once the broker has confirmed it.
//!
//! - [`app`]: [`Application`]: builds every dependency, serves until told to stop.
//! - [`web`]: HTTP plumbing: the accept loop, the route table, reading requests, errors
//!   and the JSON answers.
//! - [`sources`]: the lead sources: the single intake endpoint and the steps every lead
//!   source shares, bulk, Google Ads, validate.
//! - [`admission`]: one Redis call per intake: key lookup, rate limit, record and claim;
//!   the token cache ([`admission::token`]), sliding-window limits ([`admission::limits`]),
//!   `Idempotency-Key` claims and the `queued` intake records ([`admission::intake_records`]).
//! - [`read`]: the read API (intake statuses, the account's contacts) and the
//!   account-scoped read model behind it.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`) and its Markdown rendering.
//! - [`infra`]: the broker, Redis and Prometheus metrics: publisher, Redis client, pub/sub,
//!   synchronous-mode waiters, queue depth, intake counts.

pub mod admission;
pub(crate) mod app;
pub(crate) mod infra;
pub mod openapi;
pub mod read;
pub(crate) mod sources;
pub(crate) mod web;

pub use app::Application;
