//! The lead-intake worker pool and the `leadctl` operator CLI.
//!
//! - [`cli`]: `leadctl` commands over `shared::admin`.

pub mod cli;
