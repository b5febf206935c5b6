//! Shared by the worker's integration tests (and leadctl's dead-letter replay test, which
//! runs a worker): a seeded account on a fresh database, leads and
//! intake messages, a confirmed publisher, `testkit::eventually` for waiting, a role whose privileges a test
//! can take away, and a TCP proxy whose connections a test can cut.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder,
};
use serde_json::json;
use shared::amqp::{INTAKE_ROUTING_KEY, Topology};
use shared::config::Settings;
use shared::entities::{contact, contact_phone_number, lead_intake};
use shared::intake::{IntakeMessage, MESSAGE_VERSION, headers};
use shared::lead::{Lead, OtherPhoneNumber};
use shared::phone::{PhoneNumber, Region};
use std::net::SocketAddr;
use testkit::TestDb;
use tokio::net::TcpStream;
use uuid::Uuid;
use worker::process::{Attempt, Processor};

/// A fresh database with one account, two users and a token.
pub struct Ctx {
    pub db: TestDb,
    pub settings: Settings,
    pub processor: Processor,
    pub account: i64,
    pub user: i64,
    pub token: i64,
}

impl Ctx {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let settings = testkit::settings(&db);
        let account = leadctl::admin::create_account(&db.conn, "Acme", "US", None)
            .await
            .unwrap()
            .id;
        let user = leadctl::admin::create_user(&db.conn, account, "Ada", None, true, true)
            .await
            .unwrap()
            .id;
        let token = leadctl::admin::create_token(&db.conn, user, None)
            .await
            .unwrap()
            .row
            .id;
        let processor = Processor::new(db.conn.clone());
        Self {
            db,
            settings,
            processor,
            account,
            user,
            token,
        }
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.db.conn
    }

    /// An intake message of this account carrying `lead`.
    pub fn message(&self, lead: Lead) -> IntakeMessage {
        message_for(self.account, self.user, self.token, lead)
    }

    pub fn intake(&self, lead: Lead) -> Attempt {
        Attempt {
            message: self.message(lead),
            previous_attempts: 0,
        }
    }

    pub async fn user(&self, name: &str, active: bool, available: bool) -> i64 {
        leadctl::admin::create_user(self.conn(), self.account, name, None, active, available)
            .await
            .unwrap()
            .id
    }

    pub async fn named(&self, kind: leadctl::admin::Catalog, name: &str) -> i64 {
        leadctl::admin::create_named(self.conn(), kind, self.account, name)
            .await
            .unwrap()
            .id
    }

    pub async fn contacts(&self) -> Vec<contact::Model> {
        contact::Entity::find()
            .filter(contact::Column::AccountId.eq(self.account))
            .order_by_asc(contact::Column::Id)
            .all(self.conn())
            .await
            .unwrap()
    }

    pub async fn contact(&self, id: i64) -> contact::Model {
        contact::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn numbers(&self, contact_id: i64) -> Vec<contact_phone_number::Model> {
        contact_phone_number::Entity::find()
            .filter(contact_phone_number::Column::ContactId.eq(contact_id))
            .order_by_asc(contact_phone_number::Column::Id)
            .all(self.conn())
            .await
            .unwrap()
    }

    pub async fn intake_row(&self, id: Uuid) -> Option<lead_intake::Model> {
        lead_intake::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        count(self.conn(), sql).await
    }

    /// Turns the outbox's rows into events and deliveries, as a delivery loop does first.
    pub async fn expand_events(&self) -> u64 {
        shared::events::expand_all(self.conn()).await.unwrap()
    }
}

pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

pub fn message_for(account: i64, user: i64, token: i64, lead: Lead) -> IntakeMessage {
    let payload = json!({ "phone_number": lead.phone_number.as_str() });
    IntakeMessage {
        version: MESSAGE_VERSION,
        intake_id: Uuid::now_v7(),
        account_id: account,
        user_id: user,
        token_id: token,
        received_at: Utc::now(),
        lead,
        payload: payload.into(),
    }
}

pub fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s, Region::US).unwrap()
}

/// A lead with only a phone number.
pub fn lead(number: &str) -> Lead {
    Lead::of_number(phone(number))
}

pub fn other(label: &str, number: &str) -> OtherPhoneNumber {
    OtherPhoneNumber {
        label: Some(label.to_owned()),
        phone_number: phone(number),
    }
}

/// Publishes intake messages the way the receiver does: persistent, confirmed.
pub struct Publisher {
    pub conn: Connection,
    pub channel: Channel,
    pub topology: Topology,
}

impl Publisher {
    pub async fn new(settings: &Settings) -> Self {
        let conn = Connection::connect(&testkit::amqp_url(), ConnectionProperties::default())
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let topology = Topology::from_settings(settings);
        topology.declare(&channel).await.unwrap();
        Self {
            conn,
            channel,
            topology,
        }
    }

    pub async fn publish(&self, m: &IntakeMessage) {
        self.publish_many(std::slice::from_ref(m)).await;
    }

    /// Publishes all, then waits for every confirm.
    pub async fn publish_many(&self, messages: &[IntakeMessage]) {
        for m in messages {
            let body = serde_json::to_vec(m).unwrap();
            self.publish_raw(&m.intake_id.to_string(), &body).await;
        }
        let returned = self.channel.wait_for_confirms().await.unwrap();
        assert!(returned.is_empty(), "unroutable messages");
    }

    /// Publishes any body (poison tests) without waiting for its confirm.
    pub async fn publish_raw(&self, message_id: &str, body: &[u8]) {
        self.publish_with(message_id, body, FieldTable::default())
            .await;
    }

    /// Publishes `m` with the W3C `traceparent` the receiver would have sent with it.
    pub async fn publish_traced(&self, m: &IntakeMessage, traceparent: &str) {
        let mut h = FieldTable::default();
        h.insert(
            headers::TRACEPARENT.into(),
            AMQPValue::LongString(traceparent.into()),
        );
        let body = serde_json::to_vec(m).unwrap();
        self.publish_with(&m.intake_id.to_string(), &body, h).await;
        let returned = self.channel.wait_for_confirms().await.unwrap();
        assert!(returned.is_empty(), "unroutable message");
    }

    async fn publish_with(&self, message_id: &str, body: &[u8], mut h: FieldTable) {
        h.insert(headers::ATTEMPTS.into(), AMQPValue::LongLongInt(0));
        let props = BasicProperties::default()
            .with_message_id(message_id.into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_headers(h);
        self.channel
            .basic_publish(
                self.topology.exchange().into(),
                INTAKE_ROUTING_KEY.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                props,
            )
            .await
            .unwrap();
    }

    /// Messages ready in `queue`.
    pub async fn depth(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }
}

/// A login role on the test's database with the privileges the worker needs; a test takes
/// some away to make the database fail for the worker only.
pub struct WorkerRole {
    pub name: String,
    pub url: String,
}

impl WorkerRole {
    pub async fn create(db: &TestDb) -> Self {
        let name = format!("w_{}", testkit::random_id());
        db.conn
            .execute_unprepared(&format!(
                "CREATE ROLE {name} LOGIN; \
                 GRANT USAGE ON SCHEMA public TO {name}; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}; \
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name};"
            ))
            .await
            .unwrap();
        let url = format!(
            "{}/{}",
            testkit::server_url().replacen("postgres@", &format!("{name}@"), 1),
            db.name
        );
        Self { name, url }
    }

    pub async fn revoke(&self, db: &TestDb, sql_privilege_on: &str) {
        db.conn
            .execute_unprepared(&format!("REVOKE {sql_privilege_on} FROM {}", self.name))
            .await
            .unwrap();
    }

    pub async fn grant(&self, db: &TestDb, sql_privilege_on: &str) {
        db.conn
            .execute_unprepared(&format!("GRANT {sql_privilege_on} TO {}", self.name))
            .await
            .unwrap();
    }

    /// Drops the role (its privileges on the test database first).
    pub async fn drop(self, db: &TestDb) {
        let _ = db
            .conn
            .execute_unprepared(&format!("DROP OWNED BY {}", self.name))
            .await;
        let _ = db
            .conn
            .execute_unprepared(&format!("DROP ROLE IF EXISTS {}", self.name))
            .await;
    }
}

#[allow(unused_imports)]
pub use testkit::proxy::Proxy;

/// Rows of `lead_intakes` whose status is an outcome.
pub async fn finished_intakes(db: &DatabaseConnection) -> u64 {
    lead_intake::Entity::find()
        .filter(lead_intake::Column::Status.is_in(["created", "updated", "merged", "duplicate"]))
        .count(db)
        .await
        .unwrap()
}

/// An HTTP GET on loopback; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[allow(unused_imports)]
pub use testkit::eventually;
#[allow(unused_imports)]
pub use testkit::metric_sum as metric;
