//! Which route a request takes, with per-route metrics.
//!
//! A route table is a list of [`Route`]s, each a method on a path pattern and what answers
//! it. Paths are matched segment by segment, `{id}` matching any one segment (a trailing
//! slash is ignored); a known path with another method gets 405 naming the methods it has,
//! an unknown path 404. Metrics label requests with the route's pattern, and unknown paths
//! `unmatched`, so neither ids nor a scanner can blow up their cardinality.

use crate::infra::prometheus;
use crate::web::respond::{self, Body};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::future::Future;
use std::time::Instant;

/// One method on one path pattern, answered by `endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<E> {
    pub method: &'static str,
    /// As written in the OpenAPI document: `{name}` stands for one path segment.
    pub path: &'static str,
    pub endpoint: E,
}

impl<E> Route<E> {
    pub const fn new(method: &'static str, path: &'static str, endpoint: E) -> Self {
        Self {
            method,
            path,
            endpoint,
        }
    }
}

/// The routes of `routes` whose pattern matches `path`, each with the segment its `{…}`
/// matched.
fn matching<'p, E>(
    routes: &'static [Route<E>],
    path: &'p str,
) -> impl Iterator<Item = (&'static Route<E>, Option<&'p str>)> {
    routes.iter().filter_map(move |route| {
        // A pattern without `{…}` matches its own text only: no segments to walk.
        if !route.path.contains('{') {
            return (route.path == path).then_some((route, None));
        }
        let mut param = None;
        let mut pattern = route.path.split('/');
        let mut segments = path.split('/');
        loop {
            match (pattern.next(), segments.next()) {
                (None, None) => return Some((route, param)),
                (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                    param = Some(s);
                }
                (Some(p), Some(s)) if p == s => {}
                _ => return None,
            }
        }
    })
}

/// Answers `req` by the route of `routes` it matches: `dispatch` gets the route's endpoint,
/// the request and the segment its `{…}` matched (empty without one). Returns the route's
/// pattern (`unmatched` for an unknown path) with the answer, both already in the metrics.
/// While it runs the request counts in [`prometheus::IN_FLIGHT`].
pub async fn answer<E, F, Fut>(
    routes: &'static [Route<E>],
    req: Request<Incoming>,
    dispatch: F,
) -> (&'static str, Response<Body>)
where
    E: Copy,
    F: FnOnce(E, Request<Incoming>, String) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let started = Instant::now();
    let _in_flight = InFlight::enter();
    let method = req.method().clone();
    let path = req.uri().path();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let path = path.to_owned();
    let found: Vec<_> = matching(routes, &path).collect();
    let (route, response) = match found.first().map(|(route, _)| route.path) {
        None => ("unmatched", respond::not_found()),
        Some(pattern) => match found.iter().find(|(r, _)| r.method == method.as_str()) {
            Some((route, param)) => (
                route.path,
                dispatch(route.endpoint, req, param.unwrap_or_default().to_owned()).await,
            ),
            None => {
                let allowed: Vec<&str> = found.iter().map(|(route, _)| route.method).collect();
                (
                    pattern,
                    respond::method_not_allowed(&method, &allowed.join(", ")),
                )
            }
        },
    };
    let status = response.status();
    metrics::counter!(prometheus::HTTP_REQUESTS, "route" => route, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(prometheus::HTTP_DURATION, "route" => route)
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(%method, route, status = status.as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "Request answered");
    (route, response)
}

/// One request in [`prometheus::IN_FLIGHT`] from its dispatch until dropped (answered, or
/// abandoned by a client that went away).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!(prometheus::IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(prometheus::IN_FLIGHT).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ROUTES: &[Route<u8>] = &[
        Route::new("GET", "/api/v1/contacts", 1),
        Route::new("POST", "/api/v1/contacts", 2),
        Route::new("GET", "/api/v1/contacts/{id}", 3),
        Route::new("GET", "/api/v1/contacts/{id}/timeline", 4),
    ];

    fn matched(path: &str) -> Vec<(u8, Option<&str>)> {
        matching(ROUTES, path)
            .map(|(r, param)| (r.endpoint, param))
            .collect()
    }

    #[test]
    fn a_pattern_without_parameters_matches_its_own_text_only() {
        assert_eq!(matched("/api/v1/contacts"), vec![(1, None), (2, None)]);
        for other in [
            "/api/v1/contact",
            "/api/v1/contactsx",
            "/api/v1",
            "api/v1/contacts",
        ] {
            assert!(matched(other).is_empty(), "{other}");
        }
    }

    #[test]
    fn a_parameter_matches_one_non_empty_segment() {
        assert_eq!(matched("/api/v1/contacts/42"), vec![(3, Some("42"))]);
        assert_eq!(
            matched("/api/v1/contacts/42/timeline"),
            vec![(4, Some("42"))]
        );
        assert!(matched("/api/v1/contacts/42/other").is_empty());
        assert!(matched("/api/v1/contacts//timeline").is_empty());
    }
}
