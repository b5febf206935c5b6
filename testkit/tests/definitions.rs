//! The RabbitMQ definitions generated from the topology, against the real broker: queues
//! and exchanges declared exactly as the definitions say are the ones the services declare
//! (RabbitMQ refuses a redeclaration whose arguments differ), so a broker provisioned from
//! the file accepts every process.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use serde_json::Value;
use shared::amqp::Topology;
use std::time::Duration;

fn table(arguments: &Value) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in arguments.as_object().expect("arguments object") {
        let value = match v {
            Value::String(s) => AMQPValue::LongString(s.as_str().into()),
            Value::Number(n) => AMQPValue::LongLongInt(n.as_i64().expect("integer argument")),
            other => panic!("unexpected argument {k}: {other}"),
        };
        t.insert(ShortString::from(k.as_str()), value);
    }
    t
}

#[tokio::test]
async fn the_services_accept_a_broker_provisioned_from_the_definitions() {
    let prefix = format!("test.{}.", testkit::random_id());
    let topology = Topology::new(&prefix, &[100, 200]);
    let definitions = topology.definitions("/");
    let conn = Connection::connect(&testkit::amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");

    for e in definitions["exchanges"].as_array().expect("exchanges") {
        let kind = match e["type"].as_str().expect("type") {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            other => panic!("unexpected exchange type {other}"),
        };
        channel
            .exchange_declare(
                e["name"].as_str().expect("name").into(),
                kind,
                ExchangeDeclareOptions {
                    durable: e["durable"].as_bool().expect("durable"),
                    ..ExchangeDeclareOptions::default()
                },
                table(&e["arguments"]),
            )
            .await
            .expect("declare an exchange of the definitions");
    }
    for q in definitions["queues"].as_array().expect("queues") {
        channel
            .queue_declare(
                q["name"].as_str().expect("name").into(),
                QueueDeclareOptions {
                    durable: q["durable"].as_bool().expect("durable"),
                    ..QueueDeclareOptions::default()
                },
                table(&q["arguments"]),
            )
            .await
            .expect("declare a queue of the definitions");
    }

    // What every receiver and worker does at start: equivalent, so accepted.
    let declared = topology.declare(&channel).await;

    let mut settings = shared::config::Settings {
        amqp_url: testkit::amqp_url(),
        amqp_prefix: prefix.clone(),
        ..shared::config::Settings::default()
    };
    settings.retry.delays = [100, 200].map(Duration::from_millis).to_vec();
    let _ = conn.close(0, "done".into()).await;
    testkit::delete_topology(&settings).await;
    declared.expect("the topology's declaration matches the definitions");
}
