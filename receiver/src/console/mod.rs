//! The console (§12): web pages for an account's people, served by the receiver under
//! `/console`, assets inside the binary. Pages are rendered on the server (a little script
//! shows times in the viewer's zone and keeps the overview live), so the console needs no
//! build step and no other server.
//!
//! - [`session`]: sign-in with an API token, the session cookie, CSRF.
//! - [`views`]: the overview, lead search, dead letters, webhooks and tokens pages.
//! - [`timeline`]: one lead's journey, every step in time order with its reason.
//! - [`html`]: escaping and the page frame.
//!
//! Every page reads only the signed-in token's account: another account's intake, contact
//! or endpoint is a 404, exactly as in the read API (§2).

pub mod html;
pub mod session;
mod timeline;
mod views;

use crate::web::respond::Body;
use crate::web::routes::{self, Route};
use crate::web::state::AppState;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use session::Session;
use std::net::SocketAddr;

/// The path every console page is under.
pub const PREFIX: &str = "/console";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
/// Largest form a console page posts.
const MAX_FORM_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Home,
    SignIn,
    SignOut,
    Live,
    Leads,
    Lead,
    Contact,
    DeadLetters,
    DeadLetterReplay,
    Webhooks,
    Webhook,
    WebhookReplay,
    Tokens,
    TokenCreate,
    TokenRevoke,
    Css,
    Js,
}

static ROUTES: &[Route<Page>] = &[
    Route::new("GET", "/console", Page::Home),
    Route::new("POST", "/console/sign-in", Page::SignIn),
    Route::new("POST", "/console/sign-out", Page::SignOut),
    Route::new("GET", "/console/live", Page::Live),
    Route::new("GET", "/console/leads", Page::Leads),
    Route::new("GET", "/console/leads/{id}", Page::Lead),
    Route::new("GET", "/console/contacts/{id}", Page::Contact),
    Route::new("GET", "/console/dead-letters", Page::DeadLetters),
    Route::new(
        "POST",
        "/console/dead-letters/replay",
        Page::DeadLetterReplay,
    ),
    Route::new("GET", "/console/webhooks", Page::Webhooks),
    Route::new("GET", "/console/webhooks/{id}", Page::Webhook),
    Route::new("POST", "/console/webhooks/{id}/replay", Page::WebhookReplay),
    Route::new("GET", "/console/tokens", Page::Tokens),
    Route::new("POST", "/console/tokens", Page::TokenCreate),
    Route::new("POST", "/console/tokens/{id}/revoke", Page::TokenRevoke),
    Route::new("GET", "/console/assets/console.css", Page::Css),
    Route::new("GET", "/console/assets/console.js", Page::Js),
];

/// Whether `path` is the console's.
pub fn owns(path: &str) -> bool {
    path == PREFIX || path.starts_with("/console/")
}

/// Answers a console request.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let (_, response) = routes::answer(ROUTES, req, |page, req, param| {
        dispatch(state, req, peer, page, param)
    })
    .await;
    response
}

/// A request's parts a page reads: its query and, for a POST, its form.
pub(crate) struct Input {
    pub headers: hyper::HeaderMap,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl Input {
    pub fn query(&self, name: &str) -> Option<&str> {
        first(&self.query, name)
    }

    pub fn form(&self, name: &str) -> Option<&str> {
        first(&self.form, name)
    }

    pub fn form_all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

async fn read(req: Request<Incoming>) -> Result<Input, Response<Body>> {
    let (parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let form = if parts.method == hyper::Method::POST {
        let bytes = Limited::new(body, MAX_FORM_BYTES)
            .collect()
            .await
            .map_err(|_| page_error(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?
            .to_bytes();
        form_urlencoded::parse(&bytes).into_owned().collect()
    } else {
        Vec::new()
    };
    Ok(Input {
        headers: parts.headers,
        query,
        form,
    })
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    peer: SocketAddr,
    page: Page,
    param: String,
) -> Response<Body> {
    match page {
        Page::Css => return asset(CSS, "text/css; charset=utf-8"),
        Page::Js => return asset(JS, "text/javascript; charset=utf-8"),
        _ => {}
    }
    let input = match read(req).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if page == Page::SignIn {
        return views::sign_in(state, &input, peer).await;
    }
    let session = match session::load(state, &input.headers).await {
        Ok(s) => s,
        Err(_) => {
            return page_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store (Redis) is unavailable; try again shortly.",
            );
        }
    };
    let Some(session) = session else {
        return match page {
            Page::Home => html(StatusCode::OK, html::sign_in(None)),
            Page::Live => page_error(StatusCode::UNAUTHORIZED, "Not signed in."),
            _ => redirect("/console", None),
        };
    };
    let posts = matches!(
        page,
        Page::SignOut
            | Page::DeadLetterReplay
            | Page::WebhookReplay
            | Page::TokenCreate
            | Page::TokenRevoke
    );
    if posts
        && !(session::same_origin(&input.headers) && session::csrf_ok(&session, input.form("csrf")))
    {
        return page_error(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from the console; reload the page and try again.",
        );
    }
    let ctx = Ctx {
        state,
        session: &session,
        input: &input,
    };
    match page {
        Page::Home => views::overview(&ctx).await,
        Page::SignOut => {
            session::delete(state, &input.headers).await;
            redirect(
                "/console",
                Some(session::set_cookie(
                    None,
                    session::behind_tls(&input.headers),
                )),
            )
        }
        Page::Live => views::live(&ctx).await,
        Page::Leads => views::leads(&ctx).await,
        Page::Lead => timeline::page(&ctx, &param).await,
        Page::Contact => views::contact(&ctx, &param).await,
        Page::DeadLetters => views::dead_letters(&ctx, None).await,
        Page::DeadLetterReplay => views::replay_dead_letters(&ctx).await,
        Page::Webhooks => views::webhooks(&ctx).await,
        Page::Webhook => views::webhook(&ctx, &param, None).await,
        Page::WebhookReplay => views::replay_webhook(&ctx, &param).await,
        Page::Tokens => views::tokens(&ctx, None).await,
        Page::TokenCreate => views::create_token(&ctx).await,
        Page::TokenRevoke => views::revoke_token(&ctx, &param).await,
        Page::SignIn | Page::Css | Page::Js => page_error(StatusCode::NOT_FOUND, "Not found."),
    }
}

/// What a signed-in page works with.
pub(crate) struct Ctx<'a> {
    pub state: &'a AppState,
    pub session: &'a Session,
    pub input: &'a Input,
}

impl Ctx<'_> {
    pub fn account(&self) -> i64 {
        self.session.account_id
    }

    /// A whole page of the session.
    pub fn page(&self, title: &str, tab: html::Tab, body: &str) -> Response<Body> {
        html(
            StatusCode::OK,
            html::page(
                &html::Frame {
                    title,
                    tab,
                    who: &self.session.token_label,
                    csrf: &self.session.csrf,
                    account_id: self.session.account_id,
                },
                body,
            ),
        )
    }

    /// The session's 404: missing and another account's look the same.
    pub fn not_found(&self, what: &str) -> Response<Body> {
        let body = format!(
            r#"<p>No {} here. It may belong to another account, or the link is wrong.</p><p><a href="/console/leads">Search leads</a></p>"#,
            html::esc(what)
        );
        let mut r = self.page("Not found", html::Tab::None, &body);
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }

    /// A database failure, said plainly (logged with its cause).
    pub fn failed(&self, e: &dyn std::fmt::Display) -> Response<Body> {
        tracing::warn!(error = %e, "Console page failed");
        let mut r = self.page(
            "Unavailable",
            html::Tab::None,
            "<p>The database did not answer. Try again shortly.</p>",
        );
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r
    }
}

/// Headers of every console answer: no caching of account data, no framing, scripts and
/// styles from the console only.
fn secured(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    r
}

pub(crate) fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secured(r)
}

pub(crate) fn json(body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    secured(r)
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        "x-content-type-options",
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// 303 to `location`, setting `cookie` when given.
pub(crate) fn redirect(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = header::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    secured(r)
}

/// A page that says what went wrong (without the account frame).
pub(crate) fn page_error(status: StatusCode, text: &str) -> Response<Body> {
    html(
        status,
        format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · Lead intake</title><link rel="stylesheet" href="/console/assets/console.css"></head><body class="signin"><main id="main"><h1>{}</h1><p>{}</p><p><a href="/console">Back to the console</a></p></main></body></html>"#,
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            html::esc(text)
        ),
    )
}
