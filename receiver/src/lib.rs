//! The lead-intake HTTP receiver: `POST /api/v1/webhook/forms` authenticates a lead's token,
//! applies the per-token rate limit, parses the lead into a typed [`shared::lead::Lead`],
//! publishes it to RabbitMQ and answers 202 only once the broker has confirmed it.
//!
//! - [`app`]: [`Application`]: builds every dependency, serves until told to stop.
//! - [`server`]: the HTTP/1 accept loop: connection cap, header timeout, graceful drain.
//! - [`routes`]: the route table and dispatch; `/healthz`, `/readyz`, `/metrics`.
//! - [`sources`]: the lead sources: the single intake endpoint and the steps every lead
//!   source shares, bulk, Google Ads, validate.
//! - [`request`]: reading a lead source's request: media type, body, query string, token.
//! - [`error`]: [`error::ApiError`], every way the intake endpoints refuse a request, mapped to a status.
//! - [`admission`]: one Redis call per intake: key lookup, rate limit, record and claim;
//!   the token cache ([`admission::token`]), sliding-window limits ([`admission::limits`]),
//!   `Idempotency-Key` claims and the `queued` intake records ([`admission::intake_records`]).
//! - [`read`]: the read API (intake statuses, the account's contacts) and the
//!   account-scoped read model behind it.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`) and its Markdown rendering.
//! - [`http`]: response helpers shared by the handlers.
//! - [`infra`]: the broker, Redis and Prometheus metrics: publisher, Redis client, pub/sub,
//!   synchronous-mode waiters, queue depth, intake counts.

pub mod admission;
pub mod app;
pub mod error;
pub mod http;
pub mod infra;
pub mod openapi;
pub mod read;
pub mod request;
pub mod routes;
pub mod server;
pub mod sources;

pub use app::Application;
