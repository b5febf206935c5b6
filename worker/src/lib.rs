//! The lead-intake worker pool and the `leadctl` operator CLI.
//!
//! - [`admin`]: operator operations (accounts, users, tokens, a token's lead sources, …);
//!   tests and the bench seed data through them too.
//! - [`cli`]: `leadctl` commands over [`admin`] and [`dlq`].
//! - [`token_cli`]: `leadctl token map|defaults|google-key|show`.
//! - [`import`]: `leadctl import`: a CSV file through the receiver's bulk endpoint.
//! - [`dlq`]: reading, replaying and purging the dead-letter queue.
//! - [`status`]: `leadctl status`, one screen of queues, workers and dead letters.
//! - [`app`]: the worker process: [`app::Worker::build`], `run_until_stopped`, consume loop.
//! - [`db`]: the database pool and its session settings.
//! - [`process`]: what one lead does to the database (§4): dedupe, upsert, actions, record.
//! - [`decode`]: deliveries → intakes, or the reason they are poison.
//! - [`settle`]: what becomes of a delivery (ack, retry, dead letter), decided and done.
//! - [`broker`]: the RabbitMQ session, confirmed retries and dead letters.
//! - [`dead_records`]: the `dead_lettered` record of every dead letter, whoever sent it.
//! - [`announce`]: outcome announcements on Redis (synchronous mode).
//! - [`observe`]: `/healthz` and `/metrics`.
//! - [`heartbeat`]: each worker process's heartbeat in Redis (`leadctl status`).

pub mod admin;
pub mod announce;
pub mod app;
pub mod broker;
pub mod cli;
pub mod db;
pub mod dead_records;
pub mod decode;
pub mod dlq;
pub mod heartbeat;
pub mod import;
pub mod observe;
pub mod process;
pub mod settle;
pub mod status;
pub mod token_cli;
