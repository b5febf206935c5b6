//! PostgreSQL session settings every service's connections share.

/// Plan every execution of a prepared statement with its real parameters.
///
/// Each pooled connection prepares a statement once, and PostgreSQL would switch it to a
/// generic plan after five executions. A generic plan made while a table was nearly empty
/// is a sequential scan, and it stays one as the table grows to millions of rows
/// (docs/performance.md). The receiver's read API and console plan their searches with
/// their real filters this way (`receiver/tests/api/plans.rs` grows an account under
/// them); the worker, whose inserts run a foreign-key check per row, keeps generic plans
/// and turns sequential scans off instead (`worker::db`).
pub const CUSTOM_PLANS: (&str, &str) = ("plan_cache_mode", "force_custom_plan");
