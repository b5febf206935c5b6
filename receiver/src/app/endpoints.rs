//! What the receiver serves: [`ROUTES`], the one list of its routes, and the handler that
//! answers each. Dispatch reads the list, and a test holds the OpenAPI document to it in
//! both directions.

use crate::infra::intake_stats;
use crate::openapi;
use crate::read;
use crate::sources::{bulk, google_ads, single, sms_inbound, validate};
use crate::web::respond::Body;
use crate::web::routes::{self, Route};
use crate::web::{ops, state::AppState};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::net::SocketAddr;

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Intake,
    Bulk,
    Validate,
    GoogleAds,
    SmsInbound,
    IntakeStatus,
    Contacts,
    Contact,
    Messages,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

/// Everything the receiver serves.
pub static ROUTES: &[Route<Endpoint>] = &[
    Route::new("POST", single::PATH, Endpoint::Intake),
    Route::new("POST", bulk::PATH, Endpoint::Bulk),
    Route::new("POST", validate::PATH, Endpoint::Validate),
    Route::new("POST", google_ads::PATH, Endpoint::GoogleAds),
    Route::new("POST", sms_inbound::PATH, Endpoint::SmsInbound),
    Route::new("GET", "/api/v1/intakes/{id}", Endpoint::IntakeStatus),
    Route::new("GET", "/api/v1/contacts", Endpoint::Contacts),
    Route::new("GET", "/api/v1/contacts/{id}", Endpoint::Contact),
    Route::new("GET", "/api/v1/contacts/{id}/messages", Endpoint::Messages),
    Route::new("GET", "/healthz", Endpoint::Healthz),
    Route::new("GET", "/readyz", Endpoint::Readyz),
    Route::new("GET", "/metrics", Endpoint::Metrics),
    Route::new("GET", "/openapi.json", Endpoint::OpenApi),
];

/// Answers `req` from `peer`.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if crate::console::owns(req.uri().path()) {
        return crate::console::handle(state, req, peer).await;
    }
    let (route, response) = routes::answer(ROUTES, req, |endpoint, req, param| {
        dispatch(state, req, peer, endpoint, param)
    })
    .await;
    // The intake rate of `leadctl status` and the dashboard: one count per lead answered
    // (a bulk request's leads are counted one by one where it answers them with its 207).
    let status = response.status();
    let source = match route {
        single::PATH => Some("form"),
        google_ads::PATH => Some("google_ads"),
        bulk::PATH if status != hyper::StatusCode::MULTI_STATUS => Some("bulk"),
        _ => None,
    };
    if let Some(source) = source {
        intake_stats::record(source, status.as_u16());
    }
    response
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    endpoint: Endpoint,
    param: String,
) -> Response<Body> {
    match endpoint {
        Endpoint::Intake => single::handle(state, req, peer).await,
        Endpoint::Bulk => bulk::handle(state, req, peer).await,
        Endpoint::Validate => validate::handle(state, req, peer).await,
        Endpoint::GoogleAds => google_ads::handle(state, req, peer).await,
        Endpoint::SmsInbound => sms_inbound::handle(state, req, peer).await,
        Endpoint::IntakeStatus => read::api::get_intake(state, req, peer, &param).await,
        Endpoint::Contacts => read::api::list_contacts(state, req, peer).await,
        Endpoint::Contact => read::api::get_contact(state, req, peer, &param).await,
        Endpoint::Messages => read::api::list_messages(state, req, peer, &param).await,
        Endpoint::Healthz => ops::healthz(),
        Endpoint::Readyz => ops::readyz(state).await,
        Endpoint::Metrics => ops::metrics(state),
        Endpoint::OpenApi => openapi::response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document describes exactly what the router serves: every route is documented and
    /// every documented operation is routed.
    #[test]
    fn the_document_and_the_routes_agree() {
        let doc = serde_json::to_value(openapi::document()).expect("json");
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .expect("path item")
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        documented.sort();
        routed.sort();
        let undocumented: Vec<_> = routed.iter().filter(|r| !documented.contains(r)).collect();
        let unrouted: Vec<_> = documented.iter().filter(|d| !routed.contains(d)).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the document: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn the_markdown_names_every_operation_and_schema() {
        let md = openapi::markdown();
        for route in ROUTES {
            assert!(md.contains(&format!("### {} {}", route.method, route.path)));
        }
        assert!(md.contains("### ContactView"));
    }
}
