//! How the worker sorts database errors into retry-later and give-up (§4.11), as a table
//! of real errors: each one produced by the real PostgreSQL (a deadlock between two
//! transactions, a serialization conflict, a lock and a statement timeout, a terminated
//! connection, an unreachable server, constraint and data errors), its SQLSTATE checked,
//! then classified.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, IsolationLevel,
    RuntimeErr, TransactionTrait,
};
use std::time::Duration;
use testkit::TestDb;
use worker::process::{ProcessError, classify};

/// The SQLSTATE of a database error, if it has one.
fn sqlstate(e: &DbErr) -> Option<String> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(se)) | DbErr::Query(RuntimeErr::SqlxError(se)) => se
            .as_database_error()
            .and_then(|db| db.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}

/// A pool of one connection to `url`.
async fn single(url: &str) -> DatabaseConnection {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .sqlx_logging(false);
    Database::connect(opts).await.expect("connect")
}

/// The error `sql` gives (it must give one).
async fn fails(db: &impl ConnectionTrait, sql: &str) -> DbErr {
    db.execute_unprepared(sql)
        .await
        .expect_err(&format!("{sql} must fail"))
}

/// Two transactions that each lock a row and then wait for the other's: PostgreSQL
/// breaks the deadlock by failing one of them.
async fn deadlock(db: &TestDb) -> DbErr {
    let (a, b) = (
        db.conn.begin().await.unwrap(),
        db.conn.begin().await.unwrap(),
    );
    a.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    b.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 2")
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(
        a.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 2"),
        b.execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 1"),
    );
    let error = match (ra, rb) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("exactly one side fails: {other:?}"),
    };
    let _ = a.rollback().await;
    let _ = b.rollback().await;
    error
}

/// A repeatable-read transaction that updates a row changed since its snapshot.
async fn serialization_failure(db: &TestDb) -> DbErr {
    let txn = db
        .conn
        .begin_with_config(Some(IsolationLevel::RepeatableRead), None)
        .await
        .unwrap();
    txn.execute_unprepared("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
    db.conn
        .execute_unprepared("UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    let error = fails(&txn, "UPDATE t SET v = 0 WHERE id = 1").await;
    let _ = txn.rollback().await;
    error
}

/// Waiting for a row another transaction holds, with a lock timeout.
async fn lock_timeout(db: &TestDb) -> DbErr {
    let holder = db.conn.begin().await.unwrap();
    holder
        .execute_unprepared("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let waiter = db.conn.begin().await.unwrap();
    waiter
        .execute_unprepared("SET LOCAL lock_timeout = '50ms'")
        .await
        .unwrap();
    let error = fails(&waiter, "UPDATE t SET v = 0 WHERE id = 1").await;
    let _ = waiter.rollback().await;
    let _ = holder.rollback().await;
    error
}

async fn statement_timeout(db: &TestDb) -> DbErr {
    let txn = db.conn.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL statement_timeout = '50ms'")
        .await
        .unwrap();
    let error = fails(&txn, "SELECT pg_sleep(5)").await;
    let _ = txn.rollback().await;
    error
}

/// A connection the server terminates (as a restart or failover does) in the middle of a
/// transaction, which then goes on using it.
async fn connection_lost(db: &TestDb) -> DbErr {
    let victim = single(&db.url).await;
    let txn = victim.begin().await.unwrap();
    let pid = txn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i32>("", "pid")
        .unwrap();
    db.conn
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid}, 5000)"))
        .await
        .unwrap();
    let error = fails(&txn, "SELECT 1").await;
    let _ = txn.rollback().await;
    error
}

/// A server nothing listens on.
async fn unreachable() -> DbErr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut opts = ConnectOptions::new(format!("postgres://postgres@127.0.0.1:{port}/x"));
    opts.connect_timeout(Duration::from_secs(2))
        .acquire_timeout(Duration::from_secs(2))
        .sqlx_logging(false);
    Database::connect(opts).await.expect_err("nothing listens")
}

/// An insert by a role that may only read.
async fn insufficient_privilege(db: &TestDb) -> DbErr {
    let txn = db.conn.begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL ROLE pg_read_all_data")
        .await
        .unwrap();
    let error = fails(&txn, "INSERT INTO t (id, v) VALUES (9, 1)").await;
    let _ = txn.rollback().await;
    error
}

/// A statement in a transaction that has already failed.
async fn in_failed_transaction(db: &TestDb) -> DbErr {
    let txn = db.conn.begin().await.unwrap();
    fails(&txn, "SELECT 1 / 0").await;
    let error = fails(&txn, "SELECT 1").await;
    let _ = txn.rollback().await;
    error
}

/// A write while the database is read-only (a standby, `default_transaction_read_only`).
async fn read_only(db: &TestDb) -> DbErr {
    let txn = db.conn.begin().await.unwrap();
    txn.execute_unprepared("SET TRANSACTION READ ONLY")
        .await
        .unwrap();
    let error = fails(&txn, "UPDATE t SET v = 1 WHERE id = 1").await;
    let _ = txn.rollback().await;
    error
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Permanent,
}

#[tokio::test]
async fn database_errors_are_sorted_into_transient_and_permanent() {
    let db = TestDb::new().await;
    db.conn
        .execute_unprepared(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL CHECK (v >= 0), code varchar(3));
             INSERT INTO t (id, v) VALUES (1, 0), (2, 0);
             CREATE TABLE child (id int PRIMARY KEY, t_id int NOT NULL REFERENCES t (id));",
        )
        .await
        .unwrap();
    use Kind::{Permanent, Transient};
    // (what, the error, its SQLSTATE when it has one, the expected kind)
    let table: Vec<(&str, DbErr, Option<&str>, Kind)> = vec![
        // A later attempt gets past these.
        ("deadlock", deadlock(&db).await, Some("40P01"), Transient),
        (
            "serialization failure",
            serialization_failure(&db).await,
            Some("40001"),
            Transient,
        ),
        (
            "lock timeout",
            lock_timeout(&db).await,
            Some("55P03"),
            Transient,
        ),
        (
            "statement timeout",
            statement_timeout(&db).await,
            Some("57014"),
            Transient,
        ),
        (
            "connection terminated",
            connection_lost(&db).await,
            None,
            Transient,
        ),
        ("server unreachable", unreachable().await, None, Transient),
        (
            "pool exhausted",
            DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout),
            None,
            Transient,
        ),
        // An operator restores a revoked grant; the lead then goes through.
        (
            "insufficient privilege",
            insufficient_privilege(&db).await,
            Some("42501"),
            Transient,
        ),
        // An operator makes the database writable again (or a failover ends).
        (
            "read-only transaction",
            read_only(&db).await,
            Some("25006"),
            Transient,
        ),
        // A concurrent writer outside the lock protocol, or a linked row deleted meanwhile:
        // a new attempt re-reads and re-checks the links (an id gone by then is a warning).
        (
            "unique violation",
            fails(&db.conn, "INSERT INTO t (id, v) VALUES (1, 0)").await,
            Some("23505"),
            Transient,
        ),
        (
            "foreign key violation",
            fails(&db.conn, "INSERT INTO child (id, t_id) VALUES (1, 999)").await,
            Some("23503"),
            Transient,
        ),
        (
            "statement in a failed transaction",
            in_failed_transaction(&db).await,
            Some("25P02"),
            Transient,
        ),
        // The data or the statement is wrong: retrying gives the same answer.
        (
            "check violation",
            fails(&db.conn, "UPDATE t SET v = -1 WHERE id = 1").await,
            Some("23514"),
            Permanent,
        ),
        (
            "not-null violation",
            fails(&db.conn, "UPDATE t SET v = NULL WHERE id = 1").await,
            Some("23502"),
            Permanent,
        ),
        (
            "invalid text representation",
            fails(&db.conn, "SELECT 'abc'::int").await,
            Some("22P02"),
            Permanent,
        ),
        (
            "value too long",
            fails(&db.conn, "UPDATE t SET code = 'abcd' WHERE id = 1").await,
            Some("22001"),
            Permanent,
        ),
        (
            "numeric out of range",
            fails(&db.conn, "SELECT 2147483647::int + 1").await,
            Some("22003"),
            Permanent,
        ),
        (
            "invalid date",
            fails(&db.conn, "SELECT '2026-02-30'::date").await,
            Some("22008"),
            Permanent,
        ),
        (
            "null byte in text",
            fails(&db.conn, "SELECT convert_from('\\x6100'::bytea, 'UTF8')").await,
            Some("22021"),
            Permanent,
        ),
        (
            "undefined column",
            fails(&db.conn, "SELECT nope FROM t").await,
            Some("42703"),
            Permanent,
        ),
        (
            "syntax error",
            fails(&db.conn, "SELEC 1").await,
            Some("42601"),
            Permanent,
        ),
        (
            "not an error of the database",
            DbErr::Custom("a message the worker cannot read".into()),
            None,
            Permanent,
        ),
        (
            "a value of the wrong type",
            DbErr::Type("expected i64".into()),
            None,
            Permanent,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, error, state, expected) in &table {
        let got_state = sqlstate(error);
        if *what == "connection terminated" {
            // Either the server's farewell (admin_shutdown) is read first, or the socket's end.
            assert!(
                matches!(got_state.as_deref(), None | Some("57P01")),
                "{what}: not the error meant: {error:?}"
            );
        } else {
            assert_eq!(
                got_state.as_deref(),
                *state,
                "{what}: not the error meant: {error:?}"
            );
        }
        let got = match classify(error) {
            ProcessError::Transient(_) => Transient,
            ProcessError::Permanent(_) => Permanent,
        };
        if got != *expected {
            wrong.push(format!("{what} ({error}): {got:?}, expected {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    // The reason kept with the lead is the database's own message.
    let Some((_, check, _, _)) = table.iter().find(|(what, ..)| *what == "check violation") else {
        panic!("the table has a check violation");
    };
    let ProcessError::Permanent(text) = classify(check) else {
        panic!("check violation is permanent");
    };
    assert!(text.starts_with("database error 23514:"), "{text}");
}
