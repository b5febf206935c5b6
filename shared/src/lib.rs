//! Everything the lead-intake binaries share.
//!
//! - [`answer`]: bodies of the receiver's answers a client reads back (the bulk answer).
//! - [`config`]: settings, defaults < optional file < environment.
//! - [`contact_fields`]: the contact's text fields ([`contact_fields::ContactText`]) and their names.
//! - [`db`]: PostgreSQL session settings of every service.
//! - [`telemetry`]: tracing subscriber (`LOG_FORMAT=json|pretty`, `RUST_LOG`).
//! - [`phone`]: [`phone::PhoneNumber`], a number normalized to E.164.
//! - [`geo`]: country, state, city and timezone a number points to (shipped NANP table).
//! - [`policy`]: the contact policy (§9): may this contact be called or texted now, and why not.
//! - [`lead`]: the typed [`lead::Lead`] the receiver parses and the worker consumes.
//! - [`mapping`]: per-token field mappings and default actions of lead sources.
//! - [`payload`]: request fields (JSON, form, query) → [`lead::Lead`], or every failing field.
//! - [`intake`]: the queue message contract and intake statuses.
//! - [`amqp`]: the RabbitMQ topology, declared in one place.
//! - [`token`]: API token generation and hashing.
//! - [`keys`]: Redis key names shared by receiver and worker.
//! - [`outcome`]: what the worker did with a lead, and the outcome it announces.
//! - [`runtime`]: shutdown signal and reconnect backoff of every process.
//! - [`read`]: the account-scoped read model (§5): contacts and intake records as clients
//!   see them, for the read API and the event bodies (§11).
//! - [`rules`]: the §4 rules as pure functions, run by the worker and the validate endpoint.
//! - [`snapshot`]: what the §4 rules read about leads and their contacts, for the worker and
//!   the validate endpoint.
//! - [`sources`]: what the receiver reads of a token's lead sources; the account id check.
//! - [`entities`]: SeaORM entities for every table.
//! - [`events`]: outbound events (§11): types, bodies, Standard Webhooks signatures, the outbox.
//! - [`status`]: intake counts and worker heartbeats in Redis, behind `leadctl status`.

pub mod amqp;
pub mod answer;
pub mod config;
pub mod contact_fields;
pub mod db;
pub mod entities;
pub mod events;
pub mod geo;
pub mod intake;
pub mod keys;
pub mod lead;
pub mod mapping;
pub mod outcome;
pub mod payload;
pub mod phone;
pub mod policy;
pub mod read;
pub mod rfc3339;
pub mod rules;
pub mod runtime;
pub mod snapshot;
pub mod sources;
pub mod status;
pub mod telemetry;
pub mod template;
pub mod token;
