//! The lead-intake worker pool and the `leadctl` operator CLI.
//!
//! - [`cli`]: `leadctl` commands over `shared::admin` and [`dlq`].
//! - [`dlq`]: reading, replaying and purging the dead-letter queue.

pub mod cli;
pub mod dlq;
