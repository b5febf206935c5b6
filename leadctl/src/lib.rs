//! `leadctl`, the operator CLI of the lead-intake pipeline, and the operator operations
//! behind it.
//!
//! - [`admin`]: operator operations (accounts, users, tokens, a token's lead sources, …);
//!   tests and the bench seed data through them too.
//! - [`cli`]: `leadctl` commands over [`admin`] and `dlq`.
//! - [`token_cli`]: `leadctl token map|defaults|google-key|show`.
//! - [`dnc_cli`]: `leadctl dnc add|remove|import|list|check`.
//! - [`webhook_cli`]: `leadctl webhook add|list|disable|enable|rotate-secret|remove|attempts|replay`.
//! - [`import`]: `leadctl import`: a CSV file through the receiver's bulk endpoint.
//! - `dlq`: reading, replaying and purging the dead-letter queue.
//! - `status`: `leadctl status`, one screen of queues, workers and dead letters.

pub mod admin;
pub mod cli;
pub mod dlq;
pub mod dnc_cli;
pub mod import;
pub mod messaging_cli;
pub(crate) mod status;
pub mod token_cli;
pub mod webhook_cli;
