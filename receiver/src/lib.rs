//! The lead-intake HTTP receiver: `POST /api/v1/webhook/forms` authenticates a lead's token,
//! applies the per-token rate limit, parses the lead into a typed [`shared::lead::Lead`],
//! publishes it to RabbitMQ and answers 202 only once the broker has confirmed it.
//!
//! - [`app`]: [`Application`]: builds every dependency, serves until told to stop.
//! - [`server`]: the HTTP/1 accept loop: connection cap, header timeout, graceful drain.
//! - [`routes`]: the route table and dispatch; `/healthz`, `/readyz`, `/metrics`.
//! - [`intake`]: the intake endpoint itself, and the steps every lead source shares.
//! - [`request`]: reading a lead source's request: media type, body, query string, token.
//! - [`bulk`]: the bulk endpoint: up to 1,000 leads, one result each.
//! - [`validate`]: the validate endpoint: every check, nothing published.
//! - [`google_ads`]: the Google Ads lead form webhook.
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
pub mod bulk;
pub mod error;
pub mod google_ads;
pub mod http;
pub mod infra;
pub mod intake;
pub mod openapi;
pub mod read;
pub mod request;
pub mod routes;
pub mod server;
pub mod validate;

pub use app::Application;
