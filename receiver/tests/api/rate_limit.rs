use crate::helpers::{closed_port, eventually, lead, spawn_app_with, spawn_app_with_limit};
use hyper::{Method, StatusCode};
use serde_json::json;
use shared::config::FailMode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use testkit::proxy::proxied;

const PATH: &str = "/api/v1/webhook/forms";
const FAIL_OPEN: &str = "receiver_rate_limit_fail_open_total";

#[tokio::test]
async fn the_limit_admits_exactly_its_count_then_429_with_the_exact_wait() {
    let app = spawn_app_with_limit(5, |_| {}).await;
    // Open the database and broker connections and load the script with another token, so
    // the timed requests below spend their time where the limiter counts them.
    let warm_up = app.another_token().await;
    assert_eq!(
        app.post_lead_as(&warm_up.token, &lead()).await.status,
        StatusCode::ACCEPTED
    );

    // When the first admitted request was counted: somewhere between its send and answer.
    let mut first: Option<(Instant, Instant)> = None;
    for i in 0..5u64 {
        let sent = Instant::now();
        let reply = app.post_lead(&lead()).await;
        first.get_or_insert((sent, Instant::now()));
        assert_eq!(reply.status, StatusCode::ACCEPTED, "request {i}");
        assert_eq!(reply.header_u64("x-ratelimit-limit"), Some(5));
        assert_eq!(reply.header_u64("x-ratelimit-remaining"), Some(4 - i));
        assert!(reply.header("retry-after").is_none());
    }
    let (first_sent, first_done) = first.unwrap();

    let sent = Instant::now();
    let refused = app.post_lead(&lead()).await;
    let done = Instant::now();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["message"], "Too Many Attempts.");
    let retry_after_ms = refused.body["retry_after_ms"]
        .as_u64()
        .expect("retry_after_ms") as i64;
    // The exact wait is 60 s after the first admitted request, counted from the refused one.
    // The client only knows each moment to within its request's round trip, so the true
    // value lies in [earliest, latest]; the limiter must be within ±50 ms of that range.
    let window = Duration::from_secs(60);
    let earliest = (first_sent + window)
        .saturating_duration_since(done)
        .as_millis() as i64;
    let latest = (first_done + window)
        .saturating_duration_since(sent)
        .as_millis() as i64;
    assert!(
        retry_after_ms >= earliest - 50 && retry_after_ms <= latest + 50,
        "retry_after_ms {retry_after_ms} outside [{earliest}, {latest}] ± 50 ms"
    );
    let retry_after_ms = retry_after_ms as u64;
    assert_eq!(
        refused.header_u64("retry-after"),
        Some(retry_after_ms.div_ceil(1000)),
        "Retry-After is whole seconds, rounded up"
    );
    assert_eq!(refused.header_u64("x-ratelimit-limit"), Some(5));
    assert_eq!(refused.header_u64("x-ratelimit-remaining"), Some(0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset = refused.header_u64("x-ratelimit-reset").expect("reset");
    assert!(
        reset >= now + retry_after_ms / 1000 && reset <= now + retry_after_ms / 1000 + 2,
        "reset {reset} is when the wait ends (now {now})"
    );

    // Refused requests do not count: still refused, with a shorter wait.
    let again = app.post_lead(&lead()).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(again.body["retry_after_ms"].as_u64().unwrap() <= retry_after_ms);

    // The limit is per token: another token of the same account is unaffected.
    let second = app.another_token().await;
    let other = app.post_lead_as(&second.token, &lead()).await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_eq!(other.header_u64("x-ratelimit-remaining"), Some(4));

    assert_eq!(app.queue_len().await, 7, "only admitted leads are queued");
}

#[tokio::test]
async fn a_burst_straddling_a_minute_boundary_never_exceeds_the_limit() {
    const LIMIT: usize = 10;
    let app = spawn_app_with_limit(LIMIT as i32, |_| {}).await;
    let warm_up = app.another_token().await;
    assert_eq!(
        app.post_lead_as(&warm_up.token, &lead()).await.status,
        StatusCode::ACCEPTED
    );
    let unix_now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // Use the whole limit in the seconds before a wall-clock minute boundary (Redis and this
    // test share the clock), then try again right after it: a fixed per-minute window would
    // start counting afresh there and admit another full limit.
    let now = unix_now();
    let mut boundary = Duration::from_secs((now.as_secs() / 60 + 1) * 60);
    if boundary - now < Duration::from_secs(5) {
        boundary += Duration::from_secs(60);
    }
    let start = boundary - Duration::from_secs(4);
    // Waiting for the clock to near the boundary is the behaviour under test.
    if start > now {
        tokio::time::sleep(start - now).await;
    }

    let mut before = 0;
    for _ in 0..LIMIT {
        if app.post_lead(&lead()).await.status == StatusCode::ACCEPTED {
            before += 1;
        }
    }
    assert!(
        unix_now() < boundary,
        "the limit was used before the boundary"
    );
    assert_eq!(
        before, LIMIT,
        "the whole limit is admitted before the boundary"
    );

    // Past the boundary, on purpose.
    tokio::time::sleep(boundary.saturating_sub(unix_now()) + Duration::from_millis(50)).await;
    let mut after = 0;
    for _ in 0..LIMIT {
        match app.post_lead(&lead()).await.status {
            StatusCode::ACCEPTED => after += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        after, 0,
        "a fixed per-minute window would have admitted {LIMIT} more after the boundary"
    );
    assert_eq!(app.queue_len().await as usize, LIMIT + 1);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_ip_but_never_refuse_a_valid_token() {
    let app = spawn_app_with(|s| {
        s.rate_limit.auth_failures_per_minute = 3;
        s.receiver.trust_forwarded_for = true;
    })
    .await;
    let post = |ip: &'static str, token: String| {
        let app = &app;
        async move {
            let auth = format!("Bearer {token}");
            app.request(
                Method::POST,
                PATH,
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                    ("x-forwarded-for", ip),
                ],
                lead().to_string(),
            )
            .await
        }
    };
    for i in 0..3 {
        let reply = post("203.0.113.7", format!("lit_guess{i}")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let blocked = post("203.0.113.7", "lit_guess3".into()).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(blocked.body["retry_after_ms"].as_u64().unwrap() > 50_000);
    assert!(blocked.header_u64("retry-after").is_some());
    // The block refuses unknown tokens only: a valid token from the same address (another
    // client behind the same NAT or proxy) is never refused because of others' failures.
    let valid = post("203.0.113.7", app.token.clone()).await;
    assert_eq!(valid.status, StatusCode::ACCEPTED, "{:?}", valid.body);
    let still_blocked = post("203.0.113.7", "lit_guess4".into()).await;
    assert_eq!(still_blocked.status, StatusCode::TOO_MANY_REQUESTS);
    // Other clients are not affected.
    let other = post("198.51.100.1", app.token.clone()).await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_eq!(app.queue_len().await, 2);
}

#[tokio::test]
async fn redis_unreachable_fails_open_and_counts_it() {
    let dead = closed_port();
    let app = spawn_app_with(|s| s.redis_url = format!("redis://{dead}")).await;
    for _ in 0..3 {
        let reply = app.post_lead(&lead()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        assert!(
            reply.header("x-ratelimit-remaining").is_none(),
            "no verdict to report"
        );
    }
    assert!(app.metric(FAIL_OPEN).await >= 3.0);
    assert_eq!(app.queue_len().await, 3);
    let ready = app.request(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["checks"]["redis"], "unreachable");
    assert_eq!(ready.body["checks"]["broker"], "ok");
}

#[tokio::test]
async fn redis_unreachable_with_fail_mode_closed_answers_503() {
    let dead = closed_port();
    let app = spawn_app_with(|s| {
        s.redis_url = format!("redis://{dead}");
        s.rate_limit.fail_mode = FailMode::Closed;
    })
    .await;
    let reply = app.post_lead(&lead()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.header_u64("retry-after").is_some());
    assert_eq!(app.metric(FAIL_OPEN).await, 0.0);
    assert_eq!(app.queue_len().await, 0);
}

#[tokio::test]
async fn redis_stopping_mid_run_fails_open_and_recovers() {
    let (proxy, via) = proxied(&testkit::redis_url()).await;
    let app = spawn_app_with(|s| s.redis_url = via).await;

    let before = app.post_lead(&lead()).await;
    assert_eq!(before.status, StatusCode::ACCEPTED);
    assert_eq!(before.header_u64("x-ratelimit-remaining"), Some(999));

    proxy.down();
    let during = app.post_lead(&json!({"phone_number": "2125550100"})).await;
    assert_eq!(
        during.status,
        StatusCode::ACCEPTED,
        "leads are still accepted"
    );
    assert!(during.header("x-ratelimit-remaining").is_none());
    assert!(app.metric(FAIL_OPEN).await >= 1.0);

    proxy.up();
    let recovered = eventually(
        "the limiter is back once Redis is",
        Duration::from_secs(10),
        || async {
            let reply = app.post_lead(&lead()).await;
            reply.header_u64("x-ratelimit-remaining")
        },
    )
    .await;
    assert!(recovered < 999);
}
