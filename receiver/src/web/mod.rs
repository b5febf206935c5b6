//! HTTP plumbing: how a request comes in and how its answer goes out.
//!
//! - [`server`]: the HTTP/1 accept loop: connection cap, header timeout, graceful drain.
//! - [`routes`]: the route table and dispatch; `/healthz`, `/readyz`, `/metrics`.
//! - [`request`]: reading a lead source's request: media type, body, query string, token.
//! - [`error`]: [`error::ApiError`], every way the intake endpoints refuse a request,
//!   mapped to a status.
//! - [`respond`]: the JSON answers and headers the handlers share.
//! - [`state`]: [`state::AppState`], what every handler is given with each request.

pub mod error;
pub mod request;
pub mod respond;
pub mod routes;
pub mod server;
pub mod state;
