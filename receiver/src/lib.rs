//! The lead-intake HTTP receiver: `POST /api/v1/webhook/forms` authenticates a lead's token,
//! applies the per-token rate limit, parses the lead into a typed [`shared::lead::Lead`],
//! publishes it to RabbitMQ and answers 202 only once the broker has confirmed it.
//!
//! The folders follow a request, each importing only the ones below it:
//!
//! - [`app`]: [`Application`]: builds every dependency, serves until told to stop; the
//!   route table and which handler answers each route.
//! - [`openapi`]: the OpenAPI 3.1 document (`/openapi.json`), assembled from the handlers'
//!   declarations, and its Markdown rendering.
//! - [`sources`]: the lead sources: the single intake endpoint (and the steps every
//!   single-lead source shares), bulk, Google Ads, validate.
//! - [`console`]: the console (§12): web pages for an account's people at `/console`,
//!   signed in with an API token.
//! - [`read`]: the read API (intake statuses, the account's contacts) and the
//!   account-scoped read model behind it.
//! - [`web`]: HTTP plumbing: the accept loop, route matching, reading requests, errors, the
//!   JSON answers, the operations endpoints, and [`AppState`](web::state::AppState), what
//!   every handler is given.
//! - [`admission`]: whether a request gets in: the token cache ([`admission::token`]), one
//!   Redis script for every sliding-window limit (`admission::limits`), `Idempotency-Key`
//!   claims and the `queued` intake records ([`admission::intake_records`]).
//! - [`infra`]: the broker, Redis and Prometheus metrics: publisher, Redis client, pub/sub,
//!   synchronous-mode waiters, queue depth, intake counts.

pub mod admission;
pub(crate) mod app;
pub(crate) mod console;
pub(crate) mod infra;
pub mod openapi;
pub mod read;
pub(crate) mod sources;
pub(crate) mod web;

pub use app::Application;
