//! The console (§12) over HTTP: what a browser gets without a session, the sign-in and its
//! cookie, CSRF and origin checks on every change, account scoping of every page, and a
//! session that ends with its token. (`tests/browser.rs` drives the pages in Chromium.)

use crate::helpers::{TestApp, spawn_app};
use hyper::{Method, StatusCode};
use leadctl::admin;
use redis::AsyncCommands;
use sea_orm::ConnectionTrait;

/// Signs in with `token`; the session cookie (`name=value`).
pub(crate) async fn sign_in(app: &TestApp, token: &str) -> String {
    let body = format!("token={token}");
    let r = app
        .request(
            Method::POST,
            "/console/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let cookie = r.header("set-cookie").expect("cookie").to_owned();
    cookie.split(';').next().expect("pair").to_owned()
}

async fn get(app: &TestApp, path: &str, cookie: &str) -> crate::helpers::Reply {
    app.request(Method::GET, path, &[("cookie", cookie)], "")
        .await
}

async fn post(app: &TestApp, path: &str, cookie: &str, form: &str) -> crate::helpers::Reply {
    let host = app.addr.to_string();
    app.request(
        Method::POST,
        path,
        &[
            ("cookie", cookie),
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", &host),
        ],
        form.to_owned(),
    )
    .await
}

/// The CSRF token of a page's forms.
fn csrf(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a form") + r#"name="csrf" value=""#.len();
    page[at..].split('"').next().expect("value").to_owned()
}

#[tokio::test]
async fn without_a_session_the_console_is_the_sign_in_page_and_nothing_of_an_account() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/console", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text.contains(r#"action="/console/sign-in""#));
    assert!(!r.text.contains("Acme") && !r.text.contains("Account "));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let r = app.request(Method::GET, "/console/leads", &[], "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/console"));
    assert_eq!(
        app.request(Method::GET, "/console/live", &[], "")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // The assets are served from the binary.
    let css = app
        .request(Method::GET, "/console/assets/console.css", &[], "")
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.text.contains(".timeline"));
}

#[tokio::test]
async fn a_token_signs_in_with_a_strict_http_only_cookie_kept_12_hours_in_redis() {
    let app = spawn_app().await;
    let bad = app
        .request(
            Method::POST,
            "/console/sign-in",
            &[("content-type", "application/x-www-form-urlencoded")],
            "token=lit_nope",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.text.contains("not valid"));
    assert!(bad.header("set-cookie").is_none());

    let r = app
        .request(
            Method::POST,
            "/console/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-forwarded-proto", "https"),
            ],
            format!("token={}", app.token),
        )
        .await;
    let cookie = r.header("set-cookie").unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
        "Secure",
    ] {
        assert!(cookie.contains(part), "{cookie} has {part}");
    }
    let plain = sign_in(&app, &app.token).await;
    let id = plain.trim_start_matches("li_console=");
    assert!(!id.contains(&app.token), "the cookie is not the token");
    // Kept in Redis under its hash, with the 12 h expiry.
    let mut redis = app.redis().await;
    let keys: Vec<String> = redis
        .keys(format!("{}console:session:*", app.settings.redis_prefix))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| !k.contains(id)));
    let ttl: i64 = redis.ttl(&keys[0]).await.unwrap();
    assert!((43_000..=43_200).contains(&ttl), "{ttl}");

    let page = get(&app, "/console", &plain).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("Overview")
            && page.text.contains(&format!("Account {}", app.account_id))
    );
    let live = get(&app, "/console/live", &plain).await;
    assert_eq!(live.status, StatusCode::OK);
    assert!(live.body["per_minute"].as_array().unwrap().len() == 30);

    // Signing out ends the session.
    let out = post(
        &app,
        "/console/sign-out",
        &plain,
        &format!("csrf={}", csrf(&page.text)),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(
        get(&app, "/console", &plain)
            .await
            .text
            .contains("/console/sign-in")
    );
}

#[tokio::test]
async fn every_change_needs_the_sessions_csrf_token_and_the_consoles_origin() {
    let app = spawn_app().await;
    let cookie = sign_in(&app, &app.token).await;
    let page = get(&app, "/console/tokens", &cookie).await;
    let token = csrf(&page.text);
    let refused = post(&app, "/console/tokens", &cookie, "label=x").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = post(&app, "/console/tokens", &cookie, "label=x&csrf=nope").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let host = app.addr.to_string();
    let cross = app
        .request(
            Method::POST,
            "/console/tokens",
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", &host),
                ("origin", "https://evil.example"),
            ],
            format!("label=x&csrf={token}"),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let made = post(
        &app,
        "/console/tokens",
        &cookie,
        &format!("label=zapier&csrf={token}"),
    )
    .await;
    assert_eq!(made.status, StatusCode::OK);
    assert!(made.text.contains("shown this once") && made.text.contains(">lit_"));
    assert_eq!(
        app.db
            .conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) AS n FROM api_tokens WHERE label = 'zapier'",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap(),
        1,
        "the CSRF-refused attempts created nothing"
    );
}

#[tokio::test]
async fn another_accounts_lead_contact_and_endpoint_are_404_in_the_console_too() {
    let app = spawn_app().await;
    let other = admin::create_account(&app.db.conn, "Other", "US", None)
        .await
        .unwrap();
    let mine = app
        .process_in(
            app.account_id,
            serde_json::json!({"phone_number": "+12125550123"}),
        )
        .await;
    let theirs = app
        .process_in(
            other.id,
            serde_json::json!({"phone_number": "+12125550123"}),
        )
        .await;
    let their_hook =
        leadctl::admin::webhooks::add(&app.db.conn, other.id, "https://x.example/h", vec![], None)
            .await
            .unwrap();
    let cookie = sign_in(&app, &app.token).await;
    for (path, status) in [
        (format!("/console/leads/{}", mine.intake_id), StatusCode::OK),
        (
            format!("/console/contacts/{}", mine.contact_id.unwrap()),
            StatusCode::OK,
        ),
        (
            format!("/console/leads/{}", theirs.intake_id),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/console/contacts/{}", theirs.contact_id.unwrap()),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/console/webhooks/{}", their_hook.endpoint.id),
            StatusCode::NOT_FOUND,
        ),
        (
            "/console/leads/not-a-uuid".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = get(&app, &path, &cookie).await;
        assert_eq!(r.status, status, "{path}");
        assert!(
            !r.text.contains("Other") || status == StatusCode::OK,
            "{path}"
        );
    }
    // The account's own lead: its timeline, found by the number in another format.
    let found = get(&app, "/console/leads?q=(212)%20555-0123", &cookie).await;
    assert!(found.text.contains(&mine.intake_id.to_string()));
    assert!(!found.text.contains(&theirs.intake_id.to_string()));
    // By status and by date, the account's newest intakes only.
    let today = chrono::Utc::now().date_naive();
    let by_status = get(
        &app,
        &format!("/console/leads?status=created&from={today}&to={today}"),
        &cookie,
    )
    .await;
    assert!(
        by_status.text.contains(&mine.intake_id.to_string()),
        "{}",
        by_status.text
    );
    assert!(!by_status.text.contains(&theirs.intake_id.to_string()));
    let none = get(&app, "/console/leads?status=merged", &cookie).await;
    assert!(none.text.contains("0 lead(s)") && none.text.contains("No lead matches."));
    let timeline = get(&app, &format!("/console/leads/{}", mine.intake_id), &cookie).await;
    for step in [
        "Received and accepted (202)",
        "New contact",
        "Was it called?",
    ] {
        assert!(timeline.text.contains(step), "{step}");
    }
}

#[tokio::test]
async fn revoking_the_token_ends_its_sessions() {
    let app = spawn_app().await;
    let cookie = sign_in(&app, &app.token).await;
    assert!(
        get(&app, "/console/leads", &cookie)
            .await
            .text
            .contains("Search")
    );
    admin::revoke_token(&app.db.conn, app.token_id)
        .await
        .unwrap();
    let r = get(&app, "/console/leads", &cookie).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "the session ended with its token"
    );

    // Revoking from the console: this session's token signs it out.
    let second = app.another_token().await;
    let cookie = sign_in(&app, &second.token).await;
    let page = get(&app, "/console/tokens", &cookie).await;
    let r = post(
        &app,
        &format!("/console/tokens/{}/revoke", second.row.id),
        &cookie,
        &format!("csrf={}", csrf(&page.text)),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(
        get(&app, "/console", &cookie)
            .await
            .text
            .contains("/console/sign-in")
    );
}
