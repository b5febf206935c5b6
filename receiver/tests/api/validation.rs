//! Validation through HTTP: the status, the Laravel-shaped body with every failing field at
//! once, and what reaches the queue. The full rule table lives next to the parser
//! (`shared::payload`); these cases cover both content types end to end.

use crate::helpers::spawn_app;
use hyper::StatusCode;
use serde_json::json;
use shared::intake::IntakeMessage;

const PATH: &str = "/api/v1/webhook/forms";

#[tokio::test]
async fn invalid_leads_get_400_with_every_failing_field() {
    let app = spawn_app().await;
    let q = format!("{PATH}?api_token={}", app.token);
    // (content type, body, failing fields in order)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("application/json", json!({}).to_string(), vec!["phone_number"]),
        ("application/json", json!({"phone_number": "123"}).to_string(), vec!["phone_number"]),
        (
            "application/json",
            json!({
                "phone_number": "phone",
                "other_phone_numbers": [{"label": "x"}],
                "email": "no",
                "date_of_birth": "02/30/1990",
                "timezone": "Mars/Base",
                "website": "ftp://x.com",
                "user_id": 0,
                "campaign_id": "x",
                "force_update": "maybe",
                "powerdialer_position": "middle",
            })
            .to_string(),
            vec![
                "phone_number",
                "other_phone_numbers.0.phone_number",
                "email",
                "website",
                "date_of_birth",
                "timezone",
                "user_id",
                "campaign_id",
                "force_update",
                "powerdialer_position",
            ],
        ),
        (
            "application/x-www-form-urlencoded",
            "phone_number=8181234567&other_phone_numbers[2][label]=Work&distribute_to_right_group=si".into(),
            vec!["other_phone_numbers.2.phone_number", "distribute_to_right_group"],
        ),
        (
            "application/x-www-form-urlencoded",
            format!("phone_number=8181234567&notes={}", "n".repeat(10_001)),
            vec!["notes"],
        ),
    ];
    for (content_type, body, fields) in cases {
        let reply = app.post_raw(&q, Some(content_type), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.body["message"], "The given data was invalid.");
        let got: Vec<&str> = reply.body["errors"]
            .as_object()
            .expect("errors object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = fields.clone();
        want.sort_unstable();
        let mut got_sorted = got.clone();
        got_sorted.sort_unstable();
        assert_eq!(got_sorted, want, "{body}");
        for messages in reply.body["errors"].as_object().unwrap().values() {
            assert!(messages.as_array().is_some_and(|m| !m.is_empty()));
        }
    }
    assert_eq!(
        app.post_raw(&q, Some("application/json"), "{}").await.body,
        json!({
            "message": "The given data was invalid.",
            "errors": {"phone_number": ["The phone number field is required."]},
        })
    );
    assert_eq!(app.queue_len().await, 0, "nothing invalid is queued");
}

#[tokio::test]
async fn the_public_example_payload_is_accepted() {
    let app = spawn_app().await;
    let body = json!({
        "api_token": app.token,
        "phone_number": "8181234567",
        "other_phone_numbers": [{"label": "mobile", "phone_number": "8181234567"}],
        "company_name": "Aloware",
        "name": "John Doe",
        "first_name": "John",
        "last_name": "Doe",
        "lead_source": "Google Ads",
        "email": "john.doe@gmail.com",
        "date_of_birth": "05/17/1990",
        "timezone": "America/Los_Angeles",
        "city": "Los Angeles",
        "state": "CA",
        "zipcode": "90045",
        "country": "US",
        "address": "1234 First Street",
        "website": "https://www.aloware.com",
        "notes": "This is a test note",
        "csf1": "Custom data",
        "csf2": "Custom data",
        "force_update": true,
        "force_update_sequence": false,
        "distribute_to_ring_group": true,
        "ring_group_id": "1234",
        "check_available_users": true,
        "add_to_powerdialer": true,
        "powerdialer_position": "bottom",
        "line_id": "1234",
        "sequence_id": "4567",
        "user_id": "1234",
        "tag_id": "1234",
        "disposition_status_id": "1234"
    });
    let reply = app
        .post_raw(PATH, Some("application/json"), &body.to_string())
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let messages = app.drain_queue().await;
    let message: IntakeMessage = serde_json::from_slice(&messages[0].delivery.data).unwrap();
    let lead = &message.lead;
    assert_eq!(lead.phone_number.as_str(), "+18181234567");
    assert_eq!(
        lead.date_of_birth.map(|d| d.to_string()).as_deref(),
        Some("1990-05-17")
    );
    assert_eq!(lead.links.sequence_id, Some(4567));
    assert_eq!(
        lead.fields.website.as_deref(),
        Some("https://www.aloware.com")
    );
    assert!(lead.flags.add_to_powerdialer);
    assert_eq!(message.payload.to_value()["company_name"], "Aloware");
}
