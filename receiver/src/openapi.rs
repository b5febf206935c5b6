//! The OpenAPI 3.1 document of every route (served at `GET /openapi.json`), built with
//! utoipa, and its Markdown rendering (`docs/api-reference.md`, written by
//! `cargo run -p receiver --example api-reference`).
//!
//! Each operation is declared (`#[utoipa::path]`) on the function that answers its route,
//! in [`crate::sources`] (single, bulk, validate, Google Ads), [`crate::read::api`],
//! [`crate::web::ops`] and here ([`response`]), and the schemas they name live next to them
//! (the request bodies in [`crate::sources::schema`]). This module only assembles the
//! document from those declarations; nothing it is built from imports it. Tests hold the
//! document's paths to the routes served (`app::endpoints::ROUTES`), its request fields to what the lead parser
//! reads, and its filters to what the contact query parser reads.

use crate::read::model::{
    ConsentView, ContactPage, ContactView, EnrollmentView, IntakeView, NoteView, PhoneView,
    PowerdialerView,
};
use crate::sources::schema::{
    ConsentInput, FlagInput, GoogleAdsColumn, GoogleAdsLead, IdInput, IntakeRequest,
    OtherPhoneNumberInput, PowerdialerPositionInput,
};
use crate::sources::single::{Accepted, Finished};
use crate::sources::validate::Validated;
use crate::web::error::{Invalid, TooMany};
use crate::web::ops::{Health, Readiness};
use crate::web::respond::{self, Body, Message};
use hyper::{Response, StatusCode, header};
use serde_json::Value;
use shared::answer::{BulkAnswer, BulkResult};
use shared::outcome::Warning;
use std::fmt::Write as _;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

const RATE_LIMIT_HEADERS: &str = "`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix seconds at which `Remaining` next grows) come with every authenticated answer.";

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer <token>`: a user's API token."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "api_token",
                "The token as `?api_token=` (the intake also reads it from the body).",
            ))),
        );
    }
}

/// A schema with a `#[serde(flatten)]` member as the single object the client sees: utoipa
/// describes one as `allOf` the flattened type and an object of the other members; here
/// their properties become one object's, the flattened ones last.
struct Flattened;

impl Modify for Flattened {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for schema in components.schemas.values_mut() {
            let RefOr::T(Schema::AllOf(all)) = schema else {
                continue;
            };
            let parts: Option<Vec<_>> = all
                .items
                .iter()
                .map(|item| match item {
                    RefOr::T(Schema::Object(o)) => Some(o),
                    _ => None,
                })
                .collect();
            let Some((own, flattened)) = parts.as_deref().and_then(<[_]>::split_last) else {
                continue;
            };
            let mut object = (*own).clone();
            for part in flattened {
                object.properties.extend(part.properties.clone());
                object.required.extend(part.required.clone());
            }
            object.title = all.title.clone();
            object.description = all.description.clone();
            #[allow(deprecated)]
            {
                object.example = all.example.clone();
            }
            object.examples = all.examples.clone();
            *schema = RefOr::T(Schema::Object(object));
        }
    }
}

/// The intake's body as it really is: optional (a lead may come entirely in the query
/// string), and, as a form, described without `other_phone_numbers`, whose bracket keys
/// (`other_phone_numbers[0][phone_number]=…`) OpenAPI cannot express: a form encoder
/// following the JSON shape would send repeated keys, which are not a list here.
struct IntakeBody;

/// The form variant of [`IntakeRequest`] in the components.
const INTAKE_FORM: &str = "IntakeForm";

impl Modify for IntakeBody {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Required, Schema};
        let Some(body) = openapi
            .paths
            .paths
            .get_mut(crate::sources::single::PATH)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
        else {
            return;
        };
        body.required = Some(Required::False);
        let Some(form) = body.content.get_mut("application/x-www-form-urlencoded") else {
            return;
        };
        form.schema = Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            INTAKE_FORM,
        )));
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(Schema::Object(json))) = components.schemas.get("IntakeRequest") {
            let mut schema = json.clone();
            schema.properties.shift_remove("other_phone_numbers");
            // The JSON example carries other numbers as a list; the form's own is on the body.
            #[allow(deprecated)]
            {
                schema.example = None;
            }
            schema.examples.clear();
            schema.description = Some(
                "The fields of a lead as a form body or query string (see `IntakeRequest`). \
                 Other numbers are sent with bracket keys: \
                 `other_phone_numbers[0][label]=work&other_phone_numbers[0][phone_number]=…`."
                    .to_owned(),
            );
            components
                .schemas
                .insert(INTAKE_FORM.to_owned(), RefOr::T(Schema::Object(schema)));
        }
    }
}

/// The bulk body's bounds, which utoipa cannot put on a request body's array: 1 to
/// [`MAX_LEADS`](crate::sources::bulk::MAX_LEADS) leads.
struct BulkBounds;

impl Modify for BulkBounds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let json = openapi
            .paths
            .paths
            .get_mut(crate::sources::bulk::PATH)
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
            .and_then(|body| body.content.get_mut("application/json"));
        if let Some(RefOr::T(Schema::Array(array))) = json.and_then(|c| c.schema.as_mut()) {
            array.min_items = Some(1);
            array.max_items = Some(crate::sources::bulk::MAX_LEADS);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lead intake API",
        description = "Web forms, ad platforms and apps submit leads; each becomes or updates a contact of the token's account. Every id is looked up in the token's account only; another account's id behaves like a missing one. Every body is JSON.",
    ),
    paths(
        crate::sources::single::handle,
        crate::read::api::get_intake,
        crate::read::api::list_contacts,
        crate::read::api::get_contact,
        crate::read::api::list_messages,
        crate::web::ops::healthz,
        crate::web::ops::readyz,
        crate::web::ops::metrics,
        response,
    ),
    components(schemas(
        IntakeRequest, OtherPhoneNumberInput, IdInput, FlagInput, PowerdialerPositionInput,
        ConsentInput, shared::lead::ConsentChannel,
        Accepted, Finished, Invalid, TooMany, Message,
        IntakeView, ContactPage, crate::read::messages::MessagePage, crate::read::messages::MessageView,
        shared::entities::message::Direction, shared::entities::message::MessageStatus, ContactView, PhoneView, NoteView, EnrollmentView, PowerdialerView, ConsentView,
        shared::outcome::Action, shared::outcome::Warning, shared::lead::PowerdialerPosition,
        Health, Readiness,
    )),
    modifiers(&Flattened, &Security, &IntakeBody),
    tags(
        (name = "intake", description = "Submitting leads."),
        (name = "read", description = "Intake statuses and the account's contacts."),
        (name = "operations", description = "Health, readiness, metrics and this document."),
    ),
)]
struct ApiDoc;

/// The schemas these operations name.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::sources::bulk::handle,
        crate::sources::validate::handle,
        crate::sources::google_ads::handle,
        crate::sources::sms_inbound::handle
    ),
    components(schemas(
        BulkAnswer,
        BulkResult,
        Validated,
        Warning,
        GoogleAdsLead,
        GoogleAdsColumn,
        crate::sources::sms_inbound::InboundSms
    ))
)]
struct SourcesDoc;

/// The document.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(SourcesDoc::openapi());
    BulkBounds.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1, JSON.", body = Object)),
)]
pub(crate) fn response() -> Response<Body> {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = JSON.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default());
    let mut response = respond::json(StatusCode::OK, &());
    *response.body_mut() = Body::from(bytes.clone());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The document as a readable Markdown reference (what `docs/api-reference.md` holds).
pub fn markdown() -> String {
    let doc = serde_json::to_value(document()).unwrap_or(Value::Null);
    let mut out = String::new();
    let info = &doc["info"];
    let _ = writeln!(
        out,
        "# {} {}\n",
        text(&info["title"]),
        text(&info["version"])
    );
    let _ = writeln!(
        out,
        "<!-- Generated from the OpenAPI document (GET /openapi.json) by `cargo run -p receiver --example api-reference > docs/api-reference.md`. Do not edit by hand. -->\n"
    );
    let _ = writeln!(out, "{}\n", text(&info["description"]));
    let _ = writeln!(out, "OpenAPI {}.\n", text(&doc["openapi"]));
    let _ = writeln!(out, "## Authentication\n");
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        for (name, scheme) in schemes {
            let _ = writeln!(out, "- `{name}`: {}", text(&scheme["description"]));
        }
    }
    let _ = writeln!(out, "\n{RATE_LIMIT_HEADERS}\n");

    let _ = writeln!(out, "## Endpoints\n");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            endpoint(&mut out, &method.to_uppercase(), path, op);
        }
    }

    let _ = writeln!(out, "## Schemas\n");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = writeln!(out, "### {name}\n");
            if let Some(description) = schema["description"].as_str() {
                let _ = writeln!(out, "{description}\n");
            }
            schema_body(&mut out, schema);
        }
    }
    out
}

fn endpoint(out: &mut String, method: &str, path: &str, op: &Value) {
    let _ = writeln!(out, "### {method} {path}\n");
    if let Some(summary) = op["summary"].as_str() {
        let _ = writeln!(out, "**{summary}.**\n");
    }
    if let Some(description) = op["description"].as_str() {
        let _ = writeln!(out, "{description}\n");
    }
    if op["security"].is_array() {
        let _ = writeln!(out, "Authentication: `bearer` or `api_token`.\n");
    }
    parameters(out, op);
    request_body(out, op);
    responses(out, op);
}

/// The operation's parameters as a table.
fn parameters(out: &mut String, op: &Value) {
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "| Parameter | In | Type | Required | Description |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                text(&p["name"]),
                text(&p["in"]),
                type_name(&p["schema"]),
                if p["required"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                cell(&p["description"]),
            );
        }
        let _ = writeln!(out);
    }
}

/// The operation's request body: each media type with its schema and example.
fn request_body(out: &mut String, op: &Value) {
    if let Some(content) = op["requestBody"]["content"].as_object() {
        let _ = writeln!(
            out,
            "Request body: {}\n",
            text(&op["requestBody"]["description"])
        );
        for (media, body) in content {
            let _ = writeln!(out, "- `{media}`: {}", type_name(&body["schema"]));
            if let Some(example) = body.get("example") {
                let _ = writeln!(out, "\n  Example: `{}`", inline(example));
            }
        }
        let _ = writeln!(out);
    }
}

/// The operation's responses as a table, then their examples.
fn responses(out: &mut String, op: &Value) {
    let Some(responses) = op["responses"].as_object() else {
        return;
    };
    let _ = writeln!(out, "| Status | Description | Body | Headers |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (status, response) in responses {
        let body = response["content"]
            .as_object()
            .and_then(|c| c.iter().next())
            .map(|(media, c)| format!("{} (`{media}`)", type_name(&c["schema"])))
            .unwrap_or_default();
        let headers = response["headers"]
            .as_object()
            .map(|h| {
                h.keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {status} | {} | {body} | {headers} |",
            cell(&response["description"])
        );
    }
    let _ = writeln!(out);
    for (status, response) in responses {
        let Some(content) = response["content"].as_object() else {
            continue;
        };
        for c in content.values() {
            if let Some(example) = c.get("example") {
                let _ = writeln!(out, "{status}:\n\n```json\n{}\n```\n", pretty(example));
            }
            if let Some(examples) = c["examples"].as_object() {
                for (name, example) in examples {
                    let _ = writeln!(
                        out,
                        "{status} ({name}):\n\n```json\n{}\n```\n",
                        pretty(&example["value"])
                    );
                }
            }
        }
    }
}

fn schema_body(out: &mut String, schema: &Value) {
    if let Some(properties) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(out, "| Field | Type | Required | Description |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (name, property) in properties {
            let _ = writeln!(
                out,
                "| `{name}` | {} | {} | {} |",
                type_name(property),
                if required.contains(&name.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                cell(&property["description"]),
            );
        }
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "{}\n", type_name(schema));
    }
    if let Some(example) = schema.get("example") {
        let _ = writeln!(out, "Example:\n\n```json\n{}\n```\n", pretty(example));
    }
}

/// A short human name for a schema: `string`, `integer | null`, [`ContactView`], …
fn type_name(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            return options
                .iter()
                .map(type_name)
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .map(|v| format!("`{}`", text(v)))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    let base = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().map(text).collect::<Vec<_>>().join(" \\| "),
        _ => "any".to_owned(),
    };
    let base = if base.starts_with("array") {
        base.replacen(
            "array",
            &format!("array of {}", type_name(&schema["items"])),
            1,
        )
    } else {
        base
    };
    match schema["format"].as_str() {
        Some(format) => format!("{base} ({format})"),
        None => base,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text fit for a table cell: one line, no stray column separators.
fn cell(v: &Value) -> String {
    text(v).replace('\n', " ").replace('|', "\\|")
}

fn inline(v: &Value) -> String {
    text(v)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::model::ContactQuery;
    use serde_json::json;
    use shared::payload::{ParseContext, RawLead};
    use shared::phone::Region;
    use std::collections::BTreeSet;

    fn doc() -> Value {
        serde_json::to_value(document()).expect("json")
    }

    #[test]
    fn the_bulk_body_holds_one_to_a_thousand_leads() {
        let body = &doc()["paths"][crate::sources::bulk::PATH]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        assert_eq!(body["type"], "array", "{body}");
        assert_eq!(body["minItems"], 1, "{body}");
        assert_eq!(body["maxItems"], crate::sources::bulk::MAX_LEADS, "{body}");
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let doc = doc();
        assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    }

    /// Every documented request field is one the lead parser reads: a value of the wrong
    /// kind under that name fails under that name (or under the field it is an alias of).
    #[test]
    fn every_documented_request_field_is_read_by_the_parser() {
        let doc = doc();
        let properties = doc["components"]["schemas"]["IntakeRequest"]["properties"]
            .as_object()
            .expect("properties")
            .clone();
        let documented: BTreeSet<&str> = properties
            .keys()
            .map(String::as_str)
            .filter(|name| *name != "api_token")
            .collect();
        let fields: BTreeSet<&str> = shared::mapping::field_names().collect();
        assert_eq!(documented, fields, "every field and alias is documented");
        for name in properties.keys() {
            if name == "api_token" || name == "phone_number" {
                continue;
            }
            let raw = RawLead::from_json(
                json!({ "phone_number": "8181234567", name.as_str(): {"not": "valid"} })
                    .to_string()
                    .as_bytes(),
            )
            .expect("object");
            let errors = raw
                .parse(&ParseContext::now(Region::US))
                .expect_err(&format!("{name}: an object is refused"));
            assert!(
                errors
                    .fields()
                    .any(|f| f == name || f.starts_with(&format!("{name}."))),
                "{name} is read by the parser: {:?}",
                errors.fields().collect::<Vec<_>>()
            );
        }
        let example = doc["components"]["schemas"]["IntakeRequest"]["example"].to_string();
        let raw = RawLead::from_json(example.as_bytes()).expect("object");
        raw.parse(&ParseContext::now(Region::US))
            .expect("the documented example is a valid lead");
    }

    /// Every link field is documented under its name and each of its aliases, which says
    /// whose alias it is.
    #[test]
    fn every_link_field_and_alias_is_documented() {
        let doc = doc();
        let properties = &doc["components"]["schemas"]["IntakeRequest"]["properties"];
        for field in shared::lead::LINKS {
            assert!(
                properties[field.name].is_object(),
                "{} documented",
                field.name
            );
            for alias in field.aliases {
                // A reference's description sits beside it, in the `oneOf` with null.
                let property = properties[alias].to_string();
                assert!(
                    property.contains(&format!("Alias of `{}`", field.name)),
                    "{alias}: {property}"
                );
            }
        }
    }

    /// Every documented contact filter changes the parsed query.
    #[test]
    fn every_documented_filter_is_read_by_the_query_parser() {
        let doc = doc();
        let params = doc["paths"]["/api/v1/contacts"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .clone();
        let plain = ContactQuery::parse([], Region::US).expect("empty");
        let cursor = crate::read::model::encode_cursor(5);
        for p in &params {
            let name = p["name"].as_str().expect("name");
            let value = match name {
                "phone_number" => "8181234567",
                "email" => "a@example.com",
                "created_after" | "created_before" => "2026-01-01",
                "cursor" => cursor.as_str(),
                "lead_source" | "source" => "web",
                _ => "7",
            };
            let q = ContactQuery::parse([(name, value)], Region::US).expect(name);
            assert_ne!(q, plain, "{name} is read by the query parser");
        }
        assert_eq!(params.len(), 11);
    }

    /// `docs/api-reference.md` is what the generator prints now.
    #[test]
    fn the_committed_api_reference_is_up_to_date() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api-reference.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == markdown(),
            "docs/api-reference.md is out of date: run `cargo run -p receiver --example api-reference > docs/api-reference.md`"
        );
    }
}
