//! The receiver against the real PostgreSQL, Redis and RabbitMQ: each test gets its own
//! database, AMQP prefix, Redis prefix and port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod broker;
mod console;
mod depth;
mod helpers;
mod import;
mod intake;
mod ops;
mod plans;
mod policy;
mod process;
mod rate_limit;
mod read;
mod security;
mod server;
mod sms;
mod sources;
mod sync;
mod tokens;
mod validate;
mod validation;
