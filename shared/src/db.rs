//! PostgreSQL session settings every service's connections share.

/// Plan every execution of a prepared statement with its real parameters.
///
/// Each pooled connection prepares a statement once, and PostgreSQL would switch it to a
/// generic plan after five executions. A generic plan made while a table was nearly empty
/// is a sequential scan, and it stays one as the table grows to millions of rows (seen as
/// a worker slowing from 700 to 60 leads/s). Planning with the real parameters costs well
/// under a millisecond and keeps every lookup an index descent per key.
pub const CUSTOM_PLANS: (&str, &str) = ("plan_cache_mode", "force_custom_plan");
