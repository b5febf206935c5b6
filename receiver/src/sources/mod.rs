//! The lead sources: every endpoint that takes leads, each going the same way (token,
//! limits, queue) as a single lead.
//!
//! - [`single`]: `POST /api/v1/webhook/forms`, one lead, and the steps every single-lead
//!   source shares (admit, publish, answer).
//! - [`bulk`]: `POST /api/v1/webhook/forms/bulk`: up to 1,000 leads, one result each.
//! - [`google_ads`]: the Google Ads lead form webhook.
//! - [`validate`]: `POST /api/v1/webhook/forms/validate`: every check, nothing published.
//! - [`sms_inbound`]: the SMS provider's webhook of messages contacts send (§10).
//! - [`schema`]: the request bodies as the OpenAPI document describes them.

pub(crate) mod bulk;
pub(crate) mod google_ads;
pub(crate) mod schema;
pub(crate) mod single;
pub(crate) mod sms_inbound;
pub(crate) mod validate;
