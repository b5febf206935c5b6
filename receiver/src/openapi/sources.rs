//! The OpenAPI part of the lead sources (§8): bulk intake, validation and the Google Ads
//! lead form webhook. Their operations are declared on their handlers in [`crate::bulk`],
//! [`crate::validate`] and [`crate::google_ads`]; here are the Google Ads body's schemas
//! and the part of the document these operations make up.

use crate::validate::{Validated, Warning};
use serde::Serialize;
use shared::answer::{BulkAnswer, BulkResult};
use utoipa::ToSchema;

/// The Google Ads lead form webhook's body, as Google documents and sends it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "lead_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
    "api_version": "1.0",
    "form_id": 40000000000_i64,
    "campaign_id": 20000000000_i64,
    "google_key": "your-key",
    "is_test": true,
    "gcl_id": "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789-AaBbCcDdEeFfGgHhIiJjKkLl",
    "adgroup_id": 20000000000_i64,
    "creative_id": 30000000000_i64,
    "user_column_data": [
        {"column_name": "Full Name", "string_value": "FirstName LastName", "column_id": "FULL_NAME"},
        {"column_name": "User Phone", "string_value": "+16505550123", "column_id": "PHONE_NUMBER"},
        {"column_name": "User Email", "string_value": "test@example.com", "column_id": "EMAIL"},
        {"column_name": "What is your budget?", "string_value": "$5,000", "column_id": "budget"}
    ]
}))]
pub struct GoogleAdsLead {
    /// Google's id of the lead: the idempotency key (a retried delivery is queued once).
    pub lead_id: String,
    /// The form's answers.
    pub user_column_data: Vec<GoogleAdsColumn>,
    /// Must equal the key set for the token (`leadctl token google-key ID KEY`), else 401.
    pub google_key: String,
    /// A test lead (the form editor's "Send test data"): tagged `test`, never distributed,
    /// added to a PowerDialer or enrolled in a sequence.
    pub is_test: Option<bool>,
    pub api_version: Option<String>,
    /// Kept in the intake's payload; not our `campaign_id` (a line).
    pub form_id: Option<i64>,
    pub campaign_id: Option<i64>,
    pub adgroup_id: Option<i64>,
    pub creative_id: Option<i64>,
    pub gcl_id: Option<String>,
}

/// One answer of a Google Ads lead form. Standard column ids fill lead fields:
/// `FULL_NAME` name, `FIRST_NAME`, `LAST_NAME`, `PHONE_NUMBER`, `WORK_PHONE` (another
/// number), `EMAIL`, `WORK_EMAIL` (email when there is no `EMAIL`), `COMPANY_NAME`,
/// `STREET_ADDRESS` address, `CITY`, `REGION` state, `POSTAL_CODE` zipcode, `COUNTRY`.
/// Other questions go through the token's field mapping (by question text, then column
/// id), else into the note as `question: answer` lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct GoogleAdsColumn {
    #[schema(example = "PHONE_NUMBER")]
    pub column_id: Option<String>,
    /// The question as the user saw it.
    #[schema(example = "User Phone")]
    pub column_name: Option<String>,
    #[schema(example = "+16505550123")]
    pub string_value: Option<String>,
}

/// The schemas these operations name.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::bulk::handle,
        crate::validate::handle,
        crate::google_ads::handle
    ),
    components(schemas(
        BulkAnswer,
        BulkResult,
        Validated,
        Warning,
        GoogleAdsLead,
        GoogleAdsColumn
    ))
)]
pub(super) struct SourcesDoc;
