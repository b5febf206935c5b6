//! What statements did to tables so far, from PostgreSQL's statistics views: the tests that
//! grow an account under the services' statements use it to see that they read by key.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::Value;
use std::collections::BTreeMap;

/// What statements did to one table so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reads {
    pub seq_scans: i64,
    /// Index entries returned by index scans.
    pub index_entries: i64,
    /// Index blocks touched, from shared buffers or disk: entries an index scan walks past
    /// and rejects are not counted as returned, but their blocks are.
    pub index_blocks: i64,
}

impl std::ops::Sub for Reads {
    type Output = Reads;

    fn sub(self, earlier: Reads) -> Reads {
        Reads {
            seq_scans: self.seq_scans - earlier.seq_scans,
            index_entries: self.index_entries - earlier.index_entries,
            index_blocks: self.index_blocks - earlier.index_blocks,
        }
    }
}

/// Per table of `tables`, what the database's sessions reported doing to it. A session
/// reports its counters when it goes idle, at most once a second: `conn`'s own are
/// reported first, other sessions must have reported theirs.
pub async fn table_reads(conn: &DatabaseConnection, tables: &[&str]) -> BTreeMap<String, Reads> {
    let query = |sql: &str| Statement::from_string(DbBackend::Postgres, sql.to_owned());
    conn.execute_raw(query("SELECT pg_stat_force_next_flush()"))
        .await
        .expect("statistics reported");
    let row = conn
        .query_one_raw(query(
            "SELECT json_object_agg(t.relname, json_build_array(t.seq_scan, \
               (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_user_indexes i \
                WHERE i.relid = t.relid), \
               (SELECT coalesce(sum(b.idx_blks_read + b.idx_blks_hit), 0) \
                FROM pg_statio_user_indexes b WHERE b.relid = t.relid))) \
             FROM pg_stat_user_tables t",
        ))
        .await
        .expect("statistics")
        .expect("a row");
    let v: Value = row.try_get_by_index(0).expect("json");
    tables
        .iter()
        .map(|t| {
            let at = |i: usize| v[*t][i].as_i64().unwrap_or(0);
            let r = Reads {
                seq_scans: at(0),
                index_entries: at(1),
                index_blocks: at(2),
            };
            ((*t).to_owned(), r)
        })
        .collect()
}
