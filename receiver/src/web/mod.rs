//! HTTP plumbing: how a request comes in and how its answer goes out. It knows no lead
//! source: the application gives the server what answers a request, and the route table
//! what answers each route.
//!
//! - [`server`]: the HTTP/1 accept loop: connection cap, header timeout, graceful drain.
//! - [`routes`]: which route of a table a request takes (404, 405), with per-route metrics.
//! - [`request`]: reading a lead source's request: media type, body, query string, token.
//! - [`error`]: [`error::ApiError`], every way the intake endpoints refuse a request,
//!   mapped to a status.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`respond`]: the JSON answers and headers the handlers share.
//! - [`state`]: [`state::AppState`], what every handler is given with each request.

pub(crate) mod error;
pub(crate) mod ops;
pub(crate) mod request;
pub(crate) mod respond;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod state;
