//! The read model on a real database: filters, stable cursor pagination under inserts, and
//! account scoping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use leadctl::admin::{self, Catalog};
use receiver::read::model::{self as read, ContactQuery};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use shared::phone::Region;
use std::collections::HashSet;
use testkit::TestDb;

async fn insert_contact(db: &DatabaseConnection, account: i64, phone: &str, extra: &str) -> i64 {
    let sql = format!(
        "WITH c AS (INSERT INTO contacts (account_id, phone_number, lead_source, email) \
         VALUES ({account}, '{phone}', {extra}) RETURNING id), \
         p AS (INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, is_primary) \
               SELECT {account}, id, '{phone}', true FROM c) SELECT id FROM c"
    );
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await
        .expect("insert")
        .expect("row");
    row.try_get::<i64>("", "id").expect("id")
}

fn query(pairs: &[(&str, &str)]) -> ContactQuery {
    ContactQuery::parse(pairs.iter().copied(), Region::US).expect("valid query")
}

#[tokio::test]
async fn pages_never_skip_or_repeat_while_contacts_arrive() {
    let db = TestDb::new().await;
    let a = admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .expect("a")
        .id;
    for n in 0..7 {
        insert_contact(&db.conn, a, &format!("+1818555{n:04}"), "'web', NULL").await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut pairs = vec![("limit", "3")];
        if let Some(c) = &cursor {
            pairs.push(("cursor", c.as_str()));
        }
        let page = read::contacts(&db.conn, a, &query(&pairs))
            .await
            .expect("page");
        pages += 1;
        seen.extend(page.data.iter().map(|c| c.id));
        // New contacts arrive between page reads.
        if pages <= 2 {
            insert_contact(&db.conn, a, &format!("+1310555{pages:04}"), "'web', NULL").await;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
        assert!(pages < 10, "pagination terminates");
    }
    assert!(pages > 2);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no contact repeated: {seen:?}");
    assert_eq!(
        seen.len(),
        9,
        "every contact, including those added meanwhile"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

#[tokio::test]
async fn filters_select_and_accounts_stay_apart() {
    let db = TestDb::new().await;
    let a = admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .expect("a")
        .id;
    let b = admin::create_account(&db.conn, "Other", "US", None)
        .await
        .expect("b")
        .id;
    let tag = admin::create_named(&db.conn, Catalog::Tag, a, "hot")
        .await
        .expect("tag")
        .id;
    let x = insert_contact(&db.conn, a, "+18181234567", "'facebook', 'Ann@Example.com'").await;
    let y = insert_contact(&db.conn, a, "+13105550100", "'web', NULL").await;
    let z = insert_contact(&db.conn, b, "+18181234567", "'facebook', NULL").await;
    db.conn
        .execute_unprepared(&format!(
            "INSERT INTO contact_tags (account_id, contact_id, tag_id) VALUES ({a}, {y}, {tag});
             INSERT INTO contact_phone_numbers (account_id, contact_id, phone_number, label) VALUES ({a}, {y}, '+12125550100', 'work')"
        ))
        .await
        .expect("tag + number");

    let ids =
        |p: receiver::read::model::ContactPage| p.data.iter().map(|c| c.id).collect::<Vec<_>>();
    let by_phone = read::contacts(&db.conn, a, &query(&[("phone_number", "(818) 123-4567")]))
        .await
        .expect("q");
    assert_eq!(ids(by_phone), vec![x]);
    let by_other = read::contacts(&db.conn, a, &query(&[("phone_number", "212.555.0100")]))
        .await
        .expect("q");
    assert_eq!(ids(by_other), vec![y], "other numbers match too");
    let by_email = read::contacts(&db.conn, a, &query(&[("email", "ann@EXAMPLE.com")]))
        .await
        .expect("q");
    assert_eq!(ids(by_email), vec![x]);
    let by_tag = read::contacts(&db.conn, a, &query(&[("tag_id", &tag.to_string())]))
        .await
        .expect("q");
    assert_eq!(ids(by_tag), vec![y]);
    let by_source = read::contacts(&db.conn, a, &query(&[("lead_source", "facebook")]))
        .await
        .expect("q");
    assert_eq!(ids(by_source), vec![x]);
    let future = read::contacts(&db.conn, a, &query(&[("created_after", "2999-01-01")]))
        .await
        .expect("q");
    assert!(future.data.is_empty());

    // Another account's contact is as good as missing.
    assert!(read::contact(&db.conn, a, z).await.expect("q").is_none());
    let view = read::contact(&db.conn, a, y)
        .await
        .expect("q")
        .expect("own contact");
    assert_eq!(view.tag_ids, vec![tag]);
    assert_eq!(view.other_phone_numbers.len(), 1);
    assert_eq!(view.other_phone_numbers[0].phone_number, "+12125550100");
    assert_eq!(view.phone_number, "+13105550100");
    assert!(view.powerdialer.is_none() && view.notes.is_empty());
    let json = serde_json::to_value(&view).expect("json");
    for key in [
        "date_of_birth",
        "user_id",
        "sequence_enrollments",
        "powerdialer",
        "created_at",
    ] {
        assert!(json.get(key).is_some(), "{key} present");
    }
}

#[tokio::test]
async fn a_contact_shows_its_consent_records_and_the_channels_it_may_not_be_reached_on() {
    let db = TestDb::new().await;
    let a = admin::create_account(&db.conn, "Acme", "US", None)
        .await
        .expect("a")
        .id;
    let id = insert_contact(&db.conn, a, "+18185550142", "'web', NULL").await;
    db.conn
        .execute_unprepared(&format!(
            "INSERT INTO contact_consents (account_id, contact_id, channel, given_at, source_url, revoked_at) \
             VALUES ({a}, {id}, 'sms', '2026-11-01T10:00:00Z', 'https://acme.example/f', NULL), \
                    ({a}, {id}, 'call', '2026-11-01T10:00:00Z', NULL, '2026-11-20T10:00:00Z'); \
             INSERT INTO do_not_contact (account_id, phone_number, channel, expires_at) \
             VALUES ({a}, '+18185550142', 'call', NULL), \
                    ({a}, '+18185550142', 'sms', '2020-01-01T00:00:00Z')"
        ))
        .await
        .expect("records");
    let view = read::contact(&db.conn, a, id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(view.consent.len(), 2);
    assert_eq!(view.consent[0].channel, "sms");
    assert_eq!(
        view.consent[0].source_url.as_deref(),
        Some("https://acme.example/f")
    );
    assert!(
        view.consent[1].revoked_at.is_some(),
        "a revocation is shown"
    );
    assert_eq!(
        view.do_not_contact,
        vec!["call".to_owned()],
        "the expired entry is not"
    );
}
