//! The schema against a real PostgreSQL: migrations apply, roll back and re-apply, and the
//! invariants the product relies on are enforced by the database itself.

use leadctl::admin::{self, Catalog};
use migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use testkit::TestDb;

const TABLES: [&str; 26] = [
    "accounts",
    "users",
    "api_tokens",
    "ring_groups",
    "ring_group_members",
    "lines",
    "tags",
    "disposition_statuses",
    "sequences",
    "contacts",
    "contact_phone_numbers",
    "contact_notes",
    "contact_tags",
    "sequence_enrollments",
    "powerdialer_items",
    "lead_intakes",
    "contact_consents",
    "do_not_contact",
    "sequence_steps",
    "messages",
    "webhook_endpoints",
    "events",
    "event_deliveries",
    "delivery_attempts",
    "event_batches",
    "webhook_endpoint_totals",
];

async fn tables(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT table_name::text AS t FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name <> 'seaql_migrations' ORDER BY 1",
    ))
    .await
    .expect("list tables")
    .iter()
    .map(|r| r.try_get::<String>("", "t").expect("t"))
    .collect()
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let db = TestDb::empty().await;
    Migrator::up(&db.conn, None).await.expect("up");
    let mut want: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(tables(&db.conn).await, want);

    Migrator::down(&db.conn, None).await.expect("down");
    assert!(tables(&db.conn).await.is_empty(), "down leaves no table");

    Migrator::up(&db.conn, None).await.expect("up again");
    assert_eq!(tables(&db.conn).await, want);
    let status = Migrator::get_pending_migrations(&db.conn)
        .await
        .expect("pending");
    assert!(status.is_empty());
}

/// Every array of an outbox row is compressed with lz4, not with the server's default
/// (pglz, which cost the database about five times what lz4 did for every body).
#[tokio::test]
async fn the_outbox_arrays_are_compressed_with_lz4() {
    let db = TestDb::empty().await;
    Migrator::up(&db.conn, None).await.expect("up");
    let rows = db
        .conn
        .query_all_raw(Statement::from_string(
            db.conn.get_database_backend(),
            "SELECT attname::text AS name, attcompression::text AS method FROM pg_attribute \
             WHERE attrelid = 'event_batches'::regclass AND attnum > 0 AND NOT attisdropped \
               AND attndims > 0 ORDER BY attnum",
        ))
        .await
        .expect("columns");
    let methods: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "name").expect("name"),
                r.try_get::<String>("", "method").expect("method"),
            )
        })
        .collect();
    let names: Vec<&str> = methods.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ids",
            "account_ids",
            "types",
            "intake_ids",
            "contact_ids",
            "bodies"
        ]
    );
    for (name, method) in &methods {
        assert_eq!(
            method, "l",
            "{name} is compressed with {method:?}, not lz4 (l)"
        );
    }
}

/// Runs `sql` and returns the SQLSTATE of its failure, if it failed.
async fn sqlstate(db: &DatabaseConnection, sql: &str) -> Option<String> {
    match db.execute_unprepared(sql).await {
        Ok(_) => None,
        Err(e) => Some(code_of(&e)),
    }
}

fn code_of(e: &DbErr) -> String {
    match e.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => "23505".into(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_)) => "23503".into(),
        _ => format!("{e}"),
    }
}

struct Seeded {
    account: i64,
    other_account: i64,
    user: i64,
    other_user: i64,
}

async fn seed(db: &DatabaseConnection) -> Seeded {
    let a = admin::create_account(db, "Acme", "US", None)
        .await
        .expect("account");
    let b = admin::create_account(db, "Globex", "US", None)
        .await
        .expect("account");
    let u = admin::create_user(db, a.id, "Ann", None, true, true)
        .await
        .expect("user");
    let v = admin::create_user(db, b.id, "Vic", None, true, true)
        .await
        .expect("user");
    Seeded {
        account: a.id,
        other_account: b.id,
        user: u.id,
        other_user: v.id,
    }
}

async fn contact(db: &DatabaseConnection, account: i64, phone: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "WITH c AS (INSERT INTO contacts (account_id, phone_number) VALUES ({account}, '{phone}') RETURNING id), \
                 p AS (INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
                       SELECT {account}, id, '{phone}', true FROM c) SELECT id FROM c"
            ),
        ))
        .await
        .expect("insert contact")
        .expect("row");
    row.try_get::<i64>("", "id").expect("id")
}

#[tokio::test]
async fn a_number_belongs_to_one_contact_per_account() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let first = contact(&db.conn, s.account, "+18181234567").await;
    let second = contact(&db.conn, s.account, "+13105550100").await;

    // The same number again in the same account, on another contact: rejected.
    let dup = format!(
        "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number) \
         VALUES ({}, {second}, '+18181234567')",
        s.account
    );
    assert_eq!(sqlstate(&db.conn, &dup).await.as_deref(), Some("23505"));
    // …and on the same contact too.
    let dup_same = dup.replace(&format!("{second},"), &format!("{first},"));
    assert_eq!(
        sqlstate(&db.conn, &dup_same).await.as_deref(),
        Some("23505")
    );

    // The same number in another account is fine.
    contact(&db.conn, s.other_account, "+18181234567").await;

    // A second primary number for one contact is rejected.
    let second_primary = format!(
        "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
         VALUES ({}, {first}, '+18187405020', true)",
        s.account
    );
    assert_eq!(
        sqlstate(&db.conn, &second_primary).await.as_deref(),
        Some("23505")
    );

    // A number that is not E.164 is rejected.
    let bad = format!(
        "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number) \
         VALUES ({}, {first}, '818-123-4567')",
        s.account
    );
    assert!(
        sqlstate(&db.conn, &bad)
            .await
            .is_some_and(|c| c.contains("check"))
    );
}

#[tokio::test]
async fn a_contact_is_queued_once_in_the_accounts_powerdialer() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let other = admin::create_user(&db.conn, s.account, "Bob", None, true, true)
        .await
        .expect("user");
    let c = contact(&db.conn, s.account, "+18181234567").await;
    let insert = |user: i64, position: i64| {
        format!(
            "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) \
             VALUES ({}, {user}, {c}, {position})",
            s.account
        )
    };
    assert_eq!(sqlstate(&db.conn, &insert(s.user, 0)).await, None);
    // Queued again, on the same list or on another user's: rejected.
    assert_eq!(
        sqlstate(&db.conn, &insert(s.user, -1)).await.as_deref(),
        Some("23505")
    );
    assert_eq!(
        sqlstate(&db.conn, &insert(other.id, 0)).await.as_deref(),
        Some("23505")
    );
    // Once dialed, the contact may be queued again.
    db.conn
        .execute_unprepared("UPDATE powerdialer_items SET status = 'dialed'")
        .await
        .expect("dial");
    assert_eq!(sqlstate(&db.conn, &insert(other.id, 0)).await, None);
    // Two queued entries of one user cannot share a position.
    let c2 = contact(&db.conn, s.account, "+13105550100").await;
    let clash = format!(
        "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) \
         VALUES ({}, {}, {c2}, 0)",
        s.account, other.id
    );
    assert_eq!(sqlstate(&db.conn, &clash).await.as_deref(), Some("23505"));
}

#[tokio::test]
async fn a_contact_has_at_most_one_active_enrollment() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let s1 = admin::create_named(&db.conn, Catalog::Sequence, s.account, "One")
        .await
        .expect("seq");
    let s2 = admin::create_named(&db.conn, Catalog::Sequence, s.account, "Two")
        .await
        .expect("seq");
    let c = contact(&db.conn, s.account, "+18181234567").await;
    let enroll = |seq: i64| {
        format!(
            "INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id) \
             VALUES ({}, {c}, {seq})",
            s.account
        )
    };
    assert_eq!(sqlstate(&db.conn, &enroll(s1.id)).await, None);
    assert_eq!(
        sqlstate(&db.conn, &enroll(s2.id)).await.as_deref(),
        Some("23505")
    );
    assert_eq!(
        sqlstate(&db.conn, &enroll(s1.id)).await.as_deref(),
        Some("23505")
    );
    db.conn
        .execute_unprepared(
            "UPDATE sequence_enrollments SET status = 'disenrolled', disenrolled_at = now()",
        )
        .await
        .expect("disenroll");
    assert_eq!(sqlstate(&db.conn, &enroll(s2.id)).await, None);
}

#[tokio::test]
async fn links_to_another_accounts_rows_are_impossible() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let foreign_tag = admin::create_named(&db.conn, Catalog::Tag, s.other_account, "x")
        .await
        .expect("tag");
    let foreign_seq = admin::create_named(&db.conn, Catalog::Sequence, s.other_account, "x")
        .await
        .expect("seq");
    let c = contact(&db.conn, s.account, "+18181234567").await;
    let a = s.account;
    for sql in [
        format!(
            "UPDATE contacts SET owner_id = {} WHERE id = {c}",
            s.other_user
        ),
        format!(
            "INSERT INTO contact_tags (account_id, contact_id, tag_id) VALUES ({a}, {c}, {})",
            foreign_tag.id
        ),
        format!(
            "INSERT INTO sequence_enrollments (account_id, contact_id, sequence_id) VALUES ({a}, {c}, {})",
            foreign_seq.id
        ),
        format!(
            "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) VALUES ({a}, {}, {c}, 0)",
            s.other_user
        ),
        format!(
            "INSERT INTO ring_group_members (account_id, ring_group_id, user_id) \
             SELECT {a}, id, {} FROM ring_groups LIMIT 1",
            s.other_user
        ),
    ] {
        // The ring-group insert has no row to insert without a group; create one first.
        if sql.contains("ring_group_members") {
            admin::create_ring_group(&db.conn, a, "Sales", &[s.user])
                .await
                .expect("group");
        }
        assert_eq!(
            sqlstate(&db.conn, &sql).await.as_deref(),
            Some("23503"),
            "{sql}"
        );
    }
    // Same-account links are fine.
    let ok = format!("UPDATE contacts SET owner_id = {} WHERE id = {c}", s.user);
    assert_eq!(sqlstate(&db.conn, &ok).await, None);
    // Admin refuses a ring group member from another account with a clear message.
    let err = admin::create_ring_group(&db.conn, a, "Mixed", &[s.user, s.other_user])
        .await
        .expect_err("cross-account member");
    assert!(err.to_string().contains("not a user of account"), "{err}");
}

#[tokio::test]
async fn tokens_are_stored_hashed_only() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let t = admin::create_token(&db.conn, s.user, Some("zapier"))
        .await
        .expect("token");
    let stored: Vec<String> = db
        .conn
        .query_all_raw(Statement::from_string(
            db.conn.get_database_backend(),
            "SELECT row_to_json(t)::text AS j FROM api_tokens t",
        ))
        .await
        .expect("rows")
        .iter()
        .map(|r| r.try_get::<String>("", "j").expect("j"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert!(
        !stored[0].contains(&t.token),
        "the token itself is never stored"
    );
    assert!(stored[0].contains(&shared::token::hash(&t.token)));
    // Same hash twice is impossible.
    let dup = format!(
        "INSERT INTO api_tokens (account_id, user_id, token_hash, token_prefix) VALUES ({}, {}, '{}', 'x')",
        s.account,
        s.user,
        shared::token::hash(&t.token)
    );
    assert_eq!(sqlstate(&db.conn, &dup).await.as_deref(), Some("23505"));
}

/// How many intake records `filter` selects.
async fn intakes(db: &DatabaseConnection, filter: &str) -> i64 {
    rows(db, "lead_intakes", filter).await
}

/// How many rows of `table` `filter` selects.
async fn rows(db: &DatabaseConnection, table: &str, filter: &str) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        format!("SELECT count(*) AS n FROM {table} WHERE {filter}"),
    ))
    .await
    .expect("count")
    .expect("row")
    .try_get::<i64>("", "n")
    .expect("n")
}

#[tokio::test]
async fn an_intake_record_refers_to_its_account_and_token_and_goes_with_them() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let t = admin::create_token(&db.conn, s.user, None)
        .await
        .expect("token");
    let (a, b, token) = (s.account, s.other_account, t.row.id);
    let record = |account: i64, token: &str| {
        format!(
            "INSERT INTO lead_intakes (id, account_id, token_id, status, payload, received_at) \
             VALUES (gen_random_uuid(), {account}, {token}, 'queued', '{{}}', now())"
        )
    };
    // Checked for a whole statement at once, the first bad row named.
    for (sql, missing) in [
        (record(999_999, "NULL"), "account 999999"),
        (record(a, "999999"), "api token 999999"),
        (
            format!(
                "{}, (gen_random_uuid(), 999998, NULL, 'queued', '{{}}', now())",
                record(a, &token.to_string())
            ),
            "account 999998",
        ),
    ] {
        let err = db.conn.execute_unprepared(&sql).await.expect_err(&sql);
        assert_eq!(code_of(&err), "23503", "{sql}: {err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
    assert_eq!(
        intakes(&db.conn, "true").await,
        0,
        "nothing of a failed statement"
    );
    for sql in [
        record(a, &token.to_string()),
        record(a, "NULL"),
        record(b, "NULL"),
    ] {
        assert_eq!(sqlstate(&db.conn, &sql).await, None, "{sql}");
    }
    let update = format!("UPDATE lead_intakes SET token_id = 999999 WHERE token_id = {token}");
    assert_eq!(sqlstate(&db.conn, &update).await.as_deref(), Some("23503"));

    // Removing the token clears it from its records; removing the account removes them.
    db.conn
        .execute_unprepared(&format!("DELETE FROM api_tokens WHERE id = {token}"))
        .await
        .expect("remove token");
    assert_eq!(intakes(&db.conn, &format!("account_id = {a}")).await, 2);
    assert_eq!(intakes(&db.conn, "token_id IS NOT NULL").await, 0);
    db.conn
        .execute_unprepared(&format!("DELETE FROM accounts WHERE id = {a}"))
        .await
        .expect("remove account");
    assert_eq!(intakes(&db.conn, &format!("account_id = {a}")).await, 0);
    assert_eq!(
        intakes(&db.conn, &format!("account_id = {b}")).await,
        1,
        "others stay"
    );
}

#[tokio::test]
async fn a_contacts_rows_refer_to_it_in_its_account_and_go_with_it() {
    let db = TestDb::new().await;
    let s = seed(&db.conn).await;
    let (a, b) = (s.account, s.other_account);
    let c = contact(&db.conn, a, "+18181234567").await;
    let d = contact(&db.conn, b, "+18181234567").await;
    let number = |account: i64, contact: i64, phone: &str| {
        format!(
            "INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number) \
             VALUES ({account}, {contact}, '{phone}')"
        )
    };
    let consent = |account: i64, contact: i64| {
        format!(
            "INSERT INTO contact_consents (account_id, contact_id, channel, given_at) \
             VALUES ({account}, {contact}, 'sms', now())"
        )
    };
    let record = |account: i64, contact: i64| {
        format!(
            "INSERT INTO lead_intakes (id, account_id, status, payload, received_at, contact_id) \
             VALUES (gen_random_uuid(), {account}, 'created', '{{}}', now(), {contact})"
        )
    };
    // Rows of account b that the updates below try to move onto account a's contact.
    for sql in [consent(b, d), record(b, d)] {
        db.conn.execute_unprepared(&sql).await.expect(&sql);
    }
    // Refused like a foreign key, for a whole statement at once, the missing row named.
    for (sql, missing) in [
        (
            "INSERT INTO contacts (account_id, phone_number) VALUES (999999, '+18181230000')"
                .to_string(),
            "account 999999",
        ),
        (number(a, d, "+18181230001"), "contact"),
        (
            format!(
                "{}, ({b}, {c}, '+18181230003')",
                number(a, c, "+18181230002")
            ),
            &format!("contact {c}"),
        ),
        (consent(b, c), &format!("contact {c}")),
        (record(b, c), &format!("contact {c} of account {b}")),
        (record(a, 999_999), "contact 999999"),
        (
            format!("UPDATE contact_consents SET contact_id = {c} WHERE account_id = {b}"),
            &format!("contact {c}"),
        ),
        (
            format!("UPDATE lead_intakes SET contact_id = {c} WHERE account_id = {b}"),
            &format!("contact {c} of account {b}"),
        ),
        (
            format!(
                "UPDATE contact_phone_numbers SET contact_id = {c}, is_primary = false WHERE account_id = {b}"
            ),
            &format!("contact {c}"),
        ),
    ] {
        let err = db.conn.execute_unprepared(&sql).await.expect_err(&sql);
        assert_eq!(code_of(&err), "23503", "{sql}: {err}");
        assert!(err.to_string().contains(missing), "{sql}: {err}");
    }
    assert_eq!(rows(&db.conn, "contact_phone_numbers", "true").await, 2);
    assert_eq!(rows(&db.conn, "contacts", "true").await, 2);

    // Rows of the contact's own account, and updates that leave the references alone.
    for sql in [
        number(a, c, "+18181230004"),
        consent(a, c),
        record(a, c),
        format!(
            "UPDATE contacts SET first_name = 'Ann', owner_id = {} WHERE id = {c}",
            s.user
        ),
        "UPDATE lead_intakes SET status = 'updated'".to_string(),
        "UPDATE contact_consents SET text = 'yes'".to_string(),
    ] {
        assert_eq!(sqlstate(&db.conn, &sql).await, None, "{sql}");
    }

    // Removing a contact removes its numbers and consents and clears it from its records.
    db.conn
        .execute_unprepared(&format!("DELETE FROM contacts WHERE id = {d}"))
        .await
        .expect("remove contact");
    for table in ["contact_phone_numbers", "contact_consents"] {
        assert_eq!(
            rows(&db.conn, table, &format!("contact_id = {d}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(intakes(&db.conn, &format!("account_id = {b}")).await, 1);
    assert_eq!(intakes(&db.conn, &format!("contact_id = {d}")).await, 0);

    // Removing the account removes its contacts and everything of theirs, whatever order the
    // removals run in (its users' removal clears the contacts' owner first).
    db.conn
        .execute_unprepared(&format!("DELETE FROM accounts WHERE id = {a}"))
        .await
        .expect("remove account");
    for table in [
        "contacts",
        "contact_phone_numbers",
        "contact_consents",
        "lead_intakes",
    ] {
        assert_eq!(
            rows(&db.conn, table, &format!("account_id = {a}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        intakes(&db.conn, &format!("account_id = {b}")).await,
        1,
        "others stay"
    );
}
