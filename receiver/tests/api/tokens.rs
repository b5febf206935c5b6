//! The token cache: revocations reach every receiver at once, and a flood of unknown
//! tokens cannot push out the known ones.

use crate::helpers::{eventually, lead, spawn_app};
use hyper::StatusCode;
use leadctl::admin;
use receiver::admission::token::Authenticator;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_by_every_receiver() {
    // The default TTL (30 s): only the announcement can make the revocation this quick.
    let app = spawn_app().await;
    assert_eq!(
        app.settings.receiver.token_cache_ttl,
        Duration::from_secs(30)
    );
    let (peer, _stop_peer) = app.spawn_peer().await;
    let second = app.another_token().await;
    for addr in [app.addr, peer] {
        assert_eq!(
            app.post_lead_at(addr, &second.token, &lead()).await.status,
            StatusCode::ACCEPTED,
            "cached as valid on {addr}"
        );
    }
    // Both receivers listen for revocations.
    app.wait_for_token_listeners(2).await;

    let revoked = admin::revoke_token(&app.db.conn, second.row.id)
        .await
        .unwrap();
    leadctl::cli::announce_token_change(&app.settings, &revoked.token_hash)
        .await
        .expect("announced");
    let at = Instant::now();
    for addr in [app.addr, peer] {
        eventually(
            &format!("{addr} refusing the revoked token"),
            Duration::from_secs(5),
            || async {
                let reply = app.post_lead_at(addr, &second.token, &lead()).await;
                (reply.status == StatusCode::UNAUTHORIZED).then_some(())
            },
        )
        .await;
    }
    assert!(
        at.elapsed() < Duration::from_secs(2),
        "refused by both within {:?}, long before the 30 s TTL",
        at.elapsed()
    );
    // The app's other token is untouched.
    assert_eq!(app.post_lead(&lead()).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_flood_of_unknown_tokens_never_evicts_a_known_one() {
    let app = spawn_app().await;
    let capacity = 100;
    let auth = Authenticator::with_capacity(
        app.db.conn.clone(),
        Duration::from_secs(30),
        Duration::from_secs(60),
        capacity,
    );
    let known = auth.authenticate(&app.token).await.unwrap().expect("known");
    for i in 0..(capacity * 20) {
        let guess = format!("lit_{i:040}");
        assert_eq!(auth.authenticate(&guess).await.unwrap(), None);
    }
    // Revoked in the database without an announcement: only the cache can still answer,
    // so the token is accepted exactly when its entry survived the flood.
    admin::revoke_token(&app.db.conn, app.token_id)
        .await
        .unwrap();
    assert_eq!(
        auth.authenticate(&app.token).await.unwrap(),
        Some(known),
        "the known token is still cached after {} unknown ones",
        capacity * 20
    );
}

#[tokio::test]
async fn concurrent_first_lookups_of_one_token_agree() {
    let app = spawn_app().await;
    let auth = std::sync::Arc::new(Authenticator::new(
        app.db.conn.clone(),
        Duration::from_secs(30),
        Duration::from_secs(60),
    ));
    let lookups = (0..64).map(|_| {
        let auth = auth.clone();
        let token = app.token.clone();
        tokio::spawn(async move { auth.authenticate(&token).await })
    });
    let answers = futures_util::future::join_all(lookups).await;
    for answer in answers {
        let principal = answer.unwrap().unwrap().expect("known");
        assert_eq!(principal.token_id, app.token_id);
        assert_eq!(principal.account_id, app.account_id);
    }
}
