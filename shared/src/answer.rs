//! Bodies of the receiver's answers that a client of ours reads back: the receiver
//! serializes them, `leadctl import` deserializes them.

use crate::payload::FieldErrors;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The answer to a bulk request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkAnswer {
    /// Leads queued (status 202).
    pub accepted: usize,
    /// Leads not queued (status 400, 429 or 503).
    pub rejected: usize,
    /// One per lead, in input order.
    pub results: Vec<BulkResult>,
}

/// What became of one lead of a bulk request.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BulkResult {
    /// The lead's position in the request, from 0.
    pub index: usize,
    /// 202 queued, 400 invalid, 429 over the token's limit, 503 not confirmed by the broker.
    #[schema(example = 202)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/api/v1/intakes/01963b7e-8a51-7cc2-9d8e-3f0c2a4b5d6e")]
    pub status_url: Option<String>,
    /// 400: field name → messages, as the single endpoint's 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, Vec<String>>>,
        example = json!({"phone_number": ["The phone number field is required."]}))]
    pub errors: Option<FieldErrors>,
    /// 429: milliseconds until this lead would fit in the token's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// 503: what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl BulkResult {
    /// A result with `status` and nothing else yet.
    pub fn new(index: usize, status: u16) -> Self {
        Self {
            index,
            status,
            intake_id: None,
            status_url: None,
            errors: None,
            retry_after_ms: None,
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the receiver writes reads back the same, field errors in their order.
    #[test]
    fn a_bulk_answer_reads_back_as_written() {
        let mut errors = FieldErrors::default();
        errors.add("phone_number", "The phone number field is required.");
        errors.add("email", "The email must be a valid email address.");
        let id = Uuid::now_v7();
        let written = BulkAnswer {
            accepted: 1,
            rejected: 3,
            results: vec![
                BulkResult {
                    intake_id: Some(id),
                    status_url: Some(format!("/api/v1/intakes/{id}")),
                    ..BulkResult::new(0, 202)
                },
                BulkResult {
                    errors: Some(errors.clone()),
                    ..BulkResult::new(1, 400)
                },
                BulkResult {
                    retry_after_ms: Some(41_234),
                    ..BulkResult::new(2, 429)
                },
                BulkResult {
                    message: Some("Retry it later.".into()),
                    ..BulkResult::new(3, 503)
                },
            ],
        };
        let text = serde_json::to_string(&written).expect("encode");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).expect("json"),
            json!({"accepted": 1, "rejected": 3, "results": [
                {"index": 0, "status": 202, "intake_id": id, "status_url": format!("/api/v1/intakes/{id}")},
                {"index": 1, "status": 400, "errors": {
                    "phone_number": ["The phone number field is required."],
                    "email": ["The email must be a valid email address."]}},
                {"index": 2, "status": 429, "retry_after_ms": 41234},
                {"index": 3, "status": 503, "message": "Retry it later."}
            ]})
        );
        let read: BulkAnswer = serde_json::from_str(&text).expect("decode");
        assert_eq!((read.accepted, read.rejected), (1, 3));
        assert_eq!(read.results[0].intake_id, Some(id));
        assert_eq!(read.results[1].errors.as_ref(), Some(&errors));
        assert_eq!(
            read.results[1]
                .errors
                .iter()
                .flat_map(FieldErrors::fields)
                .collect::<Vec<_>>(),
            ["phone_number", "email"]
        );
        assert_eq!(read.results[2].retry_after_ms, Some(41_234));
        assert_eq!(read.results[3].message.as_deref(), Some("Retry it later."));
    }
}
