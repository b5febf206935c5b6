//! The console (§12) in headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs): sign in with a token, post a lead
//! through the API, find it by its number in another format, open its timeline and see each
//! step (owner, PowerDialer, the event and its delivery), look at it at a phone's width,
//! count and replay a dead letter, see an endpoint's attempt log, create a token and revoke
//! the session's own, which signs out. Each view's screenshot is written to
//! `target/console-screenshots/` (the ones in `docs/console/` come from such a run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/helpers.rs"]
#[allow(dead_code, unused_imports)]
mod helpers;

use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use hyper_util::client::legacy::connect::HttpConnector;
use sea_orm::ConnectionTrait;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testkit::webhooks::WebhookReceiver;

/// Runs one browser step with a bound, naming it on stderr first, so a hang says where.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    eprintln!("browser: {what}");
    tokio::time::timeout(Duration::from_secs(45), f)
        .await
        .unwrap_or_else(|_| panic!("the browser step {what:?} took over 45 s"))
}

async fn go(c: &Client, url: &str) {
    within(&format!("open {url}"), c.goto(url)).await.unwrap();
}

async fn type_in(c: &Client, css: &str, text: &str) {
    within(&format!("type into {css}"), async {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap()
    })
    .await;
}

/// The WebDriver server, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                // The browser shows times in this zone: not UTC, so the conversion shows.
                .env("TZ", "America/New_York")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--lang=en-US"],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a browser session")
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = within(&format!("screenshot {name}"), c.screenshot())
        .await
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The page's text, read in one script call (a navigation under way cannot leave it
/// half-read).
async fn text(c: &Client) -> String {
    for _ in 0..50 {
        if let Ok(v) = c
            .execute(
                "return document.body ? document.body.innerText : ''",
                vec![],
            )
            .await
        {
            return v.as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never settled")
}

/// Waits until the page's text contains `want`, reloading when `reload`.
async fn until_text(c: &Client, want: &str, reload: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = text(c).await;
        if t.contains(want) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed {want:?}:\n{t}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reload {
            c.refresh().await.unwrap();
        }
    }
}

/// Clicks the element `css` finds. A page replaced between the finding and the click
/// (a navigation still landing) leaves a stale element: it is found again on the new page.
async fn click(c: &Client, css: &str) {
    within(&format!("click {css}"), async {
        loop {
            let found = c.find(Locator::Css(css)).await.unwrap();
            match found.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("click {css}: {e}"),
            }
        }
    })
    .await;
}

/// Waits until the address shown contains `want` (a submitted form has landed).
async fn until_url(c: &Client, want: &str) {
    let what = format!("an address with {want}");
    testkit::eventually(&what, Duration::from_secs(30), || async {
        c.current_url()
            .await
            .unwrap()
            .as_str()
            .contains(want)
            .then_some(())
    })
    .await;
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> String {
    db.query_one_raw(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        sql,
    ))
    .await
    .unwrap()
    .map(|r| r.try_get_by_index::<String>(0).unwrap())
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_follows_a_lead_replays_a_dead_letter_and_revokes_the_session_token() {
    let driver = Driver::start();
    let app = helpers::spawn_app_with(|s| {
        s.retry.delays = vec![Duration::from_millis(50), Duration::from_millis(50)];
        s.webhooks.allow_private = true;
        s.webhooks.retry_schedule = vec![Duration::from_secs(1)];
    })
    .await;
    let db = &app.db.conn;
    // The worker runs as a role whose INSERT on contacts a step takes away.
    let role = format!("w_{}", testkit::random_id());
    db.execute_unprepared(&format!(
        "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};"
    ))
    .await
    .unwrap();
    let mut worker_settings = app.settings.clone();
    worker_settings.database_url = format!(
        "{}/{}",
        testkit::server_url().replacen("postgres@", &format!("{role}@"), 1),
        app.db.name
    );
    worker_settings.worker.metrics_addr = "127.0.0.1:0".into();
    let worker = worker::app::Worker::build(worker_settings).await.unwrap();
    let (stop_worker, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let hooks = WebhookReceiver::start().await;
    leadctl::admin::webhooks::add(
        db,
        app.account_id,
        &hooks.url("/events"),
        vec![],
        Some("CRM"),
    )
    .await
    .unwrap();

    let c = within("start the browser", browser(&driver)).await;
    let base = format!("http://{}", app.addr);
    // Signed out: the sign-in page, nothing of the account.
    go(&c, &format!("{base}/console")).await;
    let t = text(&c).await;
    assert!(t.contains("Sign in with one of your API tokens") && !t.contains("Acme"));
    shot(&c, "sign-in").await;
    type_in(&c, "#token", &app.token).await;
    click(&c, "form button[type=submit]").await;
    until_text(&c, "Intake, last hour", false).await;

    let layout = "return [...document.querySelectorAll('.card')].map(c => Math.round(c.getBoundingClientRect().height)).join(',')";
    let before = within("measure the cards", c.execute(layout, vec![]))
        .await
        .unwrap();

    // A lead through the API, owned and queued for a call.
    let reply = app
        .post_lead(&serde_json::json!({
            "phone_number": "+1 818 555 0142", "first_name": "Ada", "last_name": "Lovelace",
            "email": "ada@example.com", "lead_source": "website", "user_id": app.user_id,
            "add_to_powerdialer": true, "timezone": "America/Los_Angeles",
            "consent": {"channels": ["call"], "text": "I agree to be called."}
        }))
        .await;
    assert_eq!(reply.status, 202, "{:?}", reply.body);
    let intake = reply.body["intake_id"].as_str().unwrap().to_owned();
    // The overview counts it without a reload.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = c
            .find(Locator::Css(r#"[data-live="intakes_last_hour"]"#))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if n == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the overview stayed at {n}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The live numbers changed without moving anything on the page.
    let after = within("measure the cards again", c.execute(layout, vec![]))
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "the cards kept their size while the numbers changed"
    );
    shot(&c, "overview").await;

    // Found by its number in another format; its timeline tells each step.
    testkit::eventually("the event delivered", Duration::from_secs(20), || async {
        (hooks.count() >= 2).then_some(())
    })
    .await;
    go(&c, &format!("{base}/console/leads")).await;
    type_in(&c, "input[name=q]", "(818) 555-0142").await;
    click(&c, "form.search button[type=submit]").await;
    // The unfiltered list may say "1 lead(s)" too: wait for the search's own page.
    until_url(&c, "q=").await;
    until_text(&c, "1 lead(s)", false).await;
    click(&c, &format!(r#"a[href="/console/leads/{intake}"]"#)).await;
    until_text(&c, "Was it called?", false).await;
    let t = until_text(&c, "Event lead.processed", true).await;
    for step in [
        "Received and accepted (202)",
        "New contact",
        "Owner: user",
        "Queued on user",
        "Consent recorded",
        "Event contact.created",
        "delivered after 1 attempt(s)",
    ] {
        assert!(t.contains(step), "the timeline shows {step:?}:\n{t}");
    }
    assert!(t.contains("Was it called?"));
    // Times in the viewer's zone, UTC on hover.
    let (shown, utc) = within("read a time", async {
        let time = c.find(Locator::Css("ol.timeline time")).await.unwrap();
        (
            time.text().await.unwrap(),
            time.attr("title").await.unwrap().unwrap(),
        )
    })
    .await;
    assert!(utc.ends_with("UTC") && shown != utc, "{shown} / {utc}");
    // The keyboard reaches the page: the first Tab lands on the first link.
    type_in(&c, "body", &Key::Tab.to_string()).await;
    let focused: serde_json::Value = c
        .execute("return document.activeElement.tagName", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "A");
    shot(&c, "timeline").await;
    // At a phone's width nothing spills sideways.
    c.set_window_size(390, 844).await.unwrap();
    let fits: serde_json::Value = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, true, "the timeline fits a phone's width");
    shot(&c, "timeline-phone").await;
    c.set_window_size(1280, 800).await.unwrap();

    // A lead the database refuses until an operator fixes it: dead-lettered, then replayed.
    db.execute_unprepared(&format!("REVOKE INSERT ON contacts FROM {role}"))
        .await
        .unwrap();
    let reply = app
        .post_lead(&serde_json::json!({"phone_number": "+1 818 555 0199", "first_name": "Grace"}))
        .await;
    let dead = reply.body["intake_id"].as_str().unwrap().to_owned();
    testkit::eventually("the dead letter", Duration::from_secs(20), || async {
        let s = scalar(
            db,
            &format!("SELECT status FROM lead_intakes WHERE id = '{dead}'"),
        )
        .await;
        (s == "dead_lettered").then_some(())
    })
    .await;
    db.execute_unprepared(&format!("GRANT INSERT ON contacts TO {role}"))
        .await
        .unwrap();
    go(&c, &format!("{base}/console/dead-letters")).await;
    until_text(&c, "permission denied", true).await;
    click(&c, r#"button[name="dry_run"]"#).await;
    until_text(&c, "Dry run: 1 dead letter(s) match", false).await;
    shot(&c, "dead-letters").await;
    click(&c, &format!(r#"input[value="{dead}"] + button"#)).await;
    until_text(&c, "Replayed 1 lead(s)", false).await;
    testkit::eventually(
        "the replayed lead processed",
        Duration::from_secs(20),
        || async {
            let s = scalar(
                db,
                &format!("SELECT status FROM lead_intakes WHERE id = '{dead}'"),
            )
            .await;
            (s == "created").then_some(())
        },
    )
    .await;
    go(&c, &format!("{base}/console/leads/{dead}")).await;
    let t = until_text(&c, "Replayed from the dead-letter queue", true).await;
    assert!(t.contains("New contact"), "{t}");

    // The endpoint's attempt log.
    go(&c, &format!("{base}/console/webhooks")).await;
    click(&c, "td a").await;
    let t = until_text(&c, "Attempts, newest first", false).await;
    assert!(t.contains("lead.processed") && t.contains("204"), "{t}");
    shot(&c, "webhooks").await;

    // A new token, shown once; then the session's own token revoked: signed out.
    go(&c, &format!("{base}/console/tokens")).await;
    type_in(&c, "input[name=label]", "browser").await;
    click(&c, r#"form.search button[type=submit]"#).await;
    until_text(&c, "shown this once", false).await;
    let shown = c
        .find(Locator::Css("#new-token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(shown.starts_with("lit_"));
    shot(&c, "tokens").await;
    click(
        &c,
        &format!(
            r#"form[action="/console/tokens/{}/revoke"] button"#,
            app.token_id
        ),
    )
    .await;
    until_text(&c, "Sign in with one of your API tokens", false).await;
    go(&c, &format!("{base}/console/leads")).await;
    until_text(&c, "Sign in with one of your API tokens", false).await;

    c.close().await.unwrap();
    let _ = stop_worker.send(());
    let _ = worker.await;
    let _ = db
        .execute_unprepared(&format!("DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}"))
        .await;
}
