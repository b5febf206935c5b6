//! The request bodies of the lead sources as the OpenAPI document describes them: a lead's
//! fields ([`IntakeRequest`], which the single, bulk and validate endpoints take) and the
//! Google Ads lead form webhook's body ([`GoogleAdsLead`]). They are never parsed: the
//! parser reads `RawLead` ([`shared::payload`]); tests hold the two together.

use serde::Serialize;
use shared::contact_fields::ContactText;
use utoipa::ToSchema;

/// The fields of a lead (§3), in a JSON body, a form body or the query string. Every field
/// but `phone_number` is optional; unknown fields are ignored. Aliases are listed as fields
/// of their own and say which field they stand for.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "phone_number": "(818) 123-4567",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "lead_source": "Website",
    "other_phone_numbers": [{"label": "work", "phone_number": "+1 818-740-5020"}],
    "tag_id": 3,
    "force_update": "yes"
}))]
pub struct IntakeRequest {
    /// The API token, when it is not sent as `Authorization: Bearer`. Never stored.
    pub api_token: Option<String>,
    /// Required. Any human format; normalized to E.164 with the account's region (US unless
    /// set). Must be a possible number for its region.
    #[schema(example = "(818) 123-4567")]
    pub phone_number: String,
    /// Additional numbers: `{"label", "phone_number"}` objects or `["label", "number"]`
    /// pairs (at most 20); `phone_number` is required in each. Form posts use
    /// `other_phone_numbers[0][phone_number]=…`.
    pub other_phone_numbers: Option<Vec<OtherPhoneNumberInput>>,
    #[serde(flatten)]
    #[schema(inline)]
    pub text: ContactText,
    /// `MM/DD/YYYY`, `MM-DD-YYYY` or `YYYY-MM-DD`; a real date, not in the future.
    #[schema(example = "04/21/1990")]
    pub date_of_birth: Option<String>,
    /// An IANA zone name; derived from the number when blank.
    #[schema(example = "America/Los_Angeles")]
    pub timezone: Option<String>,
    /// Stored as a note on the contact (consent text).
    #[schema(max_length = 10000)]
    pub notes: Option<String>,
    /// Owner: a user of the account. Positive integer or numeric string.
    pub user_id: Option<IdInput>,
    /// Ring group to distribute to (with `distribute_to_ring_group`).
    pub ring_group_id: Option<IdInput>,
    pub line_id: Option<IdInput>,
    /// Alias of `line_id`.
    pub campaign_id: Option<IdInput>,
    /// Sequence (SMS automation) to enroll in.
    pub sequence_id: Option<IdInput>,
    /// Alias of `sequence_id` (older integrations).
    pub automation_id: Option<IdInput>,
    /// Tag to add.
    pub tag_id: Option<IdInput>,
    pub disposition_status_id: Option<IdInput>,
    /// Alias of `disposition_status_id`.
    pub disposition_id: Option<IdInput>,
    /// Overwrite every field this lead provides on an existing contact.
    pub force_update: Option<FlagInput>,
    /// Move an existing contact from its active sequence to `sequence_id`.
    pub force_update_sequence: Option<FlagInput>,
    /// Owner = a random member of `ring_group_id`.
    pub distribute_to_ring_group: Option<FlagInput>,
    /// Alias of `distribute_to_ring_group`.
    pub distribute_to_right_group: Option<FlagInput>,
    /// Distribute only to active and available members.
    pub check_available_users: Option<FlagInput>,
    /// Like `check_available_users`, falling back to all active members.
    pub check_available_users_with_fallback: Option<FlagInput>,
    /// Add the contact to its owner's PowerDialer list.
    pub add_to_powerdialer: Option<FlagInput>,
    /// Where in the PowerDialer list: `top` (default) or `bottom`.
    pub powerdialer_position: Option<PowerdialerPositionInput>,
    /// The consent the form captured (§9), kept as evidence on the contact. A form
    /// post nests it: `consent[channels][]=sms&consent[text]=…`.
    pub consent: Option<ConsentInput>,
    /// `consent.channels` where a source cannot nest fields (a CSV column, a Google
    /// Ads form field): `sms,call`.
    #[schema(example = "sms,call")]
    pub consent_channels: Option<String>,
    /// `consent.text`, flat.
    #[schema(max_length = 10000)]
    pub consent_text: Option<String>,
    /// `consent.given_at`, flat.
    #[schema(format = DateTime)]
    pub consent_given_at: Option<String>,
    /// `consent.source_url`, flat.
    pub consent_source_url: Option<String>,
    /// `consent.ip`, flat.
    pub consent_ip: Option<String>,
    /// `consent.user_agent`, flat.
    pub consent_user_agent: Option<String>,
    /// `consent.seller`, flat.
    pub consent_seller: Option<String>,
    /// A TrustedForm certificate of the form session.
    #[schema(
        example = "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
        pattern = "^https://cert\\.trustedform\\.com/[0-9a-fA-F]{40}$"
    )]
    pub trustedform_cert_url: Option<String>,
    /// A Jornaya LeadiD of the form session: a 36-character GUID.
    #[schema(
        example = "A1B2C3D4-E5F6-4A5B-8C7D-0E1F2A3B4C5D",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub leadid_token: Option<String>,
}

/// The consent a lead's form captured. Each channel becomes a consent record of the
/// contact; a record is never overwritten, only added to or revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentInput {
    /// At least one of `call`, `sms`, `email` (an array, or one comma-separated string).
    #[schema(example = json!(["sms", "call"]))]
    pub channels: Vec<shared::lead::ConsentChannel>,
    /// The disclosure the person agreed to, as the form showed it.
    #[schema(max_length = 10000)]
    pub text: Option<String>,
    /// When the person agreed (RFC 3339); the lead's received time when not given. Not in
    /// the future.
    #[schema(format = DateTime)]
    pub given_at: Option<String>,
    /// The page of the form: an http(s) URL.
    pub source_url: Option<String>,
    /// The person's IP address (IPv4 or IPv6).
    pub ip: Option<String>,
    #[schema(max_length = 1024)]
    pub user_agent: Option<String>,
    /// The business the person agreed to hear from.
    #[schema(max_length = 255)]
    pub seller: Option<String>,
}

/// One additional number of a lead.
#[derive(Debug, Serialize, ToSchema)]
pub struct OtherPhoneNumberInput {
    #[schema(example = "work")]
    pub label: Option<String>,
    #[schema(example = "+1 818-740-5020")]
    pub phone_number: String,
}

/// A positive integer, or the same as a numeric string.
#[expect(
    dead_code,
    reason = "described in the OpenAPI document only: the parser reads RawLead"
)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum IdInput {
    Number(i64),
    Text(String),
}

/// A boolean, or `"true"`/`"false"`, `1`/`0`, `"1"`/`"0"`, `"yes"`/`"no"`, `"on"`/`"off"`.
#[expect(
    dead_code,
    reason = "described in the OpenAPI document only: the parser reads RawLead"
)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FlagInput {
    Bool(bool),
    Number(i64),
    Text(String),
}

#[expect(
    dead_code,
    reason = "described in the OpenAPI document only: the parser reads RawLead"
)]
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerdialerPositionInput {
    Top,
    Bottom,
}

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
