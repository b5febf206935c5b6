//! The lead-intake worker pool. (The operator CLI `leadctl` is its own crate.)
//!
//! - [`app`]: the worker process: [`app::Worker::build`], `run_until_stopped`, consume loop.
//! - [`db`]: the database pool and its session settings.
//! - [`backlog`]: whether the intake has leads waiting (deliveries yield to it).
//! - [`process`]: what one lead does to the database (§4): dedupe, upsert, actions, record.
//! - [`decode`]: deliveries → intakes, or the reason they are poison.
//! - [`settle`]: what becomes of a delivery (ack, retry, dead letter), decided and done.
//! - [`broker`]: the RabbitMQ session, confirmed retries and dead letters.
//! - [`dead_records`]: the `dead_lettered` record of every dead letter, whoever sent it.
//! - [`announce`]: outcome announcements on Redis (synchronous mode).
//! - [`ops_server`]: `/healthz` and `/metrics`.
//! - [`messages`]: the send loop of message steps (§10).
//! - [`deliveries`]: the delivery loop of outbound events (§11).
//! - [`heartbeat`]: each worker process's heartbeat in Redis (`leadctl status`).

pub mod acks;
pub mod announce;
pub mod app;
pub mod backlog;
pub mod broker;
pub mod db;
pub mod dead_records;
pub mod decode;
pub mod deliveries;
pub mod heartbeat;
pub mod messages;
pub mod ops_server;
pub mod process;
pub mod settle;
