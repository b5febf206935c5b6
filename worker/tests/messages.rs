//! Sequences that send (§10) through the worker's send loop, against a real PostgreSQL
//! database and a Twilio-compatible provider on loopback: enrollment schedules the first
//! step in the lead's transaction; the loop judges each step by the contact policy, sends
//! it with basic auth and an idempotency key, and schedules the next; throttling is
//! retried, an unsubscribed recipient joins the do-not-contact list, a worker that dies
//! mid-send loses nothing, and disenrollment cancels what is pending.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::America::New_York;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use shared::config::SmsSettings;
use shared::entities::message::{self, MessageStatus};
use shared::lead::{ConsentChannel, Lead, LeadConsent};
use shared::outcome::Action;
use shared::policy::Reason;
use std::sync::Arc;
use support::{Ctx, Publisher, lead};
use testkit::sms::{Reply, SmsProvider};
use worker::messages::Sender;

const LINE_NUMBER: &str = "+14155550100";

struct Sequence {
    id: i64,
}

/// A sequence sent from a line with a number: a welcome SMS at once, a follow-up a day later.
async fn welcome_sequence(ctx: &Ctx) -> Sequence {
    let line = ctx.named(leadctl::admin::Catalog::Line, "Main").await;
    let id = ctx
        .named(leadctl::admin::Catalog::Sequence, "Welcome")
        .await;
    let a = ctx.account;
    for sql in [
        format!("UPDATE lines SET number = '{LINE_NUMBER}' WHERE id = {line}"),
        format!("UPDATE sequences SET line_id = {line} WHERE id = {id}"),
        format!(
            "INSERT INTO sequence_steps (account_id, sequence_id, position, body, delay_seconds) \
             VALUES ({a}, {id}, 1, 'Hi {{{{first_name|there}}}}, thanks for asking!', 0), \
                    ({a}, {id}, 2, 'Still interested, {{{{first_name}}}}?', 86400)"
        ),
    ] {
        ctx.conn().execute_unprepared(&sql).await.unwrap();
    }
    Sequence { id }
}

fn sender(ctx: &Ctx, provider: &SmsProvider) -> Sender {
    let settings = SmsSettings {
        base_url: Some(provider.base_url()),
        account_sid: provider.account_sid.clone(),
        auth_token: provider.auth_token.clone(),
        from: Some("+14155559999".into()),
        retry_delays: vec![std::time::Duration::from_secs(5)],
        ..SmsSettings::default()
    };
    Sender::from_settings(
        ctx.conn().clone(),
        Arc::new(shared::policy::table::shipped()),
        &settings,
    )
    .unwrap()
    .unwrap()
}

/// A New York lead enrolled in `seq`, with or without SMS consent.
fn enrolled(number: &str, seq: &Sequence, consent: bool) -> Lead {
    let mut l = lead(number);
    l.fields.first_name = Some("Ada".into());
    l.timezone = Some(New_York);
    l.links.sequence_id = Some(seq.id);
    if consent {
        l.evidence.consent = Some(LeadConsent {
            channels: vec![ConsentChannel::Sms],
            text: Some("I agree to receive texts.".into()),
            given_at: Some(Utc::now() - Duration::minutes(1)),
            source_url: None,
            ip: None,
            user_agent: None,
            seller: None,
        });
    }
    l
}

/// The next instant after now at `hour`:00 in New York.
fn next_ny(hour: u32) -> DateTime<Utc> {
    let now = Utc::now().with_timezone(&New_York);
    let mut day = now.date_naive();
    loop {
        let at = New_York
            .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(hour, 0, 0).unwrap()))
            .single();
        if let Some(at) = at
            && at > now
        {
            return at.with_timezone(&Utc);
        }
        day = day.succ_opt().unwrap();
    }
}

async fn messages(ctx: &Ctx) -> Vec<message::Model> {
    message::Entity::find()
        .order_by_asc(message::Column::Id)
        .all(ctx.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_welcome_step_is_sent_from_the_line_and_the_next_step_is_scheduled() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    let o = ctx
        .processor
        .try_process(&ctx.intake(enrolled("+12125550101", &seq, true)))
        .await
        .unwrap();
    let pending = messages(&ctx).await;
    assert_eq!(
        pending.len(),
        1,
        "the first step is scheduled with the enrollment"
    );
    assert_eq!(pending[0].status, MessageStatus::Scheduled);
    assert_eq!(pending[0].intake_id, Some(o.intake_id));

    let noon = next_ny(12);
    assert_eq!(sender(&ctx, &provider).send_due(noon).await.unwrap(), 1);
    let got = provider.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, "+12125550101");
    assert_eq!(got[0].from, LINE_NUMBER, "the sequence's line sends");
    assert_eq!(got[0].body, "Hi Ada, thanks for asking!");
    assert_eq!(
        got[0].path,
        format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            provider.account_sid
        )
    );
    assert_eq!(
        got[0].idempotency_key.as_deref(),
        Some(format!("message-{}", pending[0].id).as_str())
    );

    let all = messages(&ctx).await;
    assert_eq!(all.len(), 2);
    let sent = &all[0];
    assert_eq!(sent.status, MessageStatus::Sent);
    assert!(sent.provider_sid.as_deref().unwrap().starts_with("SM"));
    assert_eq!(sent.body.as_deref(), Some("Hi Ada, thanks for asking!"));
    let next = &all[1];
    assert_eq!(next.status, MessageStatus::Scheduled);
    let delay = next.due_at.unwrap() - Utc::now();
    assert!(
        delay > Duration::hours(23) && delay <= Duration::hours(24),
        "the follow-up is due a day after the send: {delay}"
    );
    // Nothing else is due: a second look sends nothing.
    assert_eq!(sender(&ctx, &provider).send_due(noon).await.unwrap(), 0);
    assert_eq!(provider.received().len(), 1);
}

#[tokio::test]
async fn a_step_without_sms_consent_is_blocked_and_its_intake_says_why() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    let o = ctx
        .processor
        .try_process(&ctx.intake(enrolled("+12125550102", &seq, false)))
        .await
        .unwrap();
    sender(&ctx, &provider).send_due(next_ny(12)).await.unwrap();
    assert!(provider.received().is_empty(), "nothing is sent");
    let all = messages(&ctx).await;
    assert_eq!(all.len(), 1, "a blocked step schedules nothing after it");
    assert_eq!(all[0].status, MessageStatus::Blocked);
    assert_eq!(all[0].policy.as_ref().unwrap()["reason"], "no_consent");
    let intake = ctx.intake_row(o.intake_id).await.unwrap();
    let actions: Vec<Action> = serde_json::from_value(intake.actions).unwrap();
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::PolicyBlocked {
                reason: Reason::NoConsent,
                channel: shared::policy::Channel::Sms,
                ..
            }
        )),
        "{actions:?}"
    );
}

#[tokio::test]
async fn outside_calling_hours_a_step_waits_for_the_window_and_is_sent_then() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    let o = ctx
        .processor
        .try_process(&ctx.intake(enrolled("+12125550103", &seq, true)))
        .await
        .unwrap();
    let late = next_ny(23);
    let s = sender(&ctx, &provider);
    s.send_due(late).await.unwrap();
    assert!(provider.received().is_empty());
    let waiting = &messages(&ctx).await[0];
    assert_eq!(waiting.status, MessageStatus::Scheduled);
    let morning = waiting.due_at.unwrap();
    assert_eq!(
        morning.with_timezone(&New_York).time(),
        NaiveTime::from_hms_opt(8, 0, 0).unwrap()
    );
    assert!(morning > late && morning - late < Duration::hours(10));
    let actions: Vec<Action> =
        serde_json::from_value(ctx.intake_row(o.intake_id).await.unwrap().actions).unwrap();
    let verdicts = actions
        .iter()
        .filter(|a| matches!(a, Action::PolicyBlocked { reason: Reason::OutsideHours, next_allowed_at: Some(t), .. } if *t == morning))
        .count();
    assert_eq!(verdicts, 1, "{actions:?}");

    // Not due before the morning; sent at it.
    assert_eq!(s.send_due(morning - Duration::minutes(1)).await.unwrap(), 0);
    assert_eq!(s.send_due(morning).await.unwrap(), 1);
    assert_eq!(provider.received().len(), 1);
    assert_eq!(messages(&ctx).await[0].status, MessageStatus::Sent);
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_and_an_unsubscribed_number_joins_the_dnc_list() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    provider.script([
        Reply::error(429, 20429, "Too Many Requests").with_header("Retry-After", "60"),
        Reply::error(400, 21610, "Attempt to send to unsubscribed recipient"),
    ]);
    ctx.processor
        .try_process(&ctx.intake(enrolled("+12125550104", &seq, true)))
        .await
        .unwrap();
    let s = sender(&ctx, &provider);
    let noon = next_ny(12);
    s.send_due(noon).await.unwrap();
    let m = &messages(&ctx).await[0];
    assert_eq!(m.status, MessageStatus::Scheduled);
    assert_eq!(m.attempts, 1);
    assert_eq!(m.error_code.as_deref(), Some("20429"));
    let wait = m.due_at.unwrap() - Utc::now();
    assert!(
        wait > Duration::seconds(55),
        "Retry-After (60 s) beats the 5 s delay: {wait}"
    );

    s.send_due(m.due_at.unwrap().max(noon)).await.unwrap();
    let m = &messages(&ctx).await[0];
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.error_code.as_deref(), Some("21610"));
    assert_eq!(
        m.error_message.as_deref(),
        Some("Attempt to send to unsubscribed recipient")
    );
    let dnc = ctx
        .count(&format!(
            "SELECT count(*) FROM do_not_contact WHERE account_id = {} \
             AND phone_number = '+12125550104' AND channel = 'sms' AND source = 'provider'",
            ctx.account
        ))
        .await;
    assert_eq!(dnc, 1);
    assert_eq!(
        provider.received().len(),
        2,
        "both attempts reached the provider"
    );
}

#[tokio::test]
async fn a_worker_dying_mid_send_loses_nothing_and_the_resend_carries_the_same_key() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    provider.hang(1);
    ctx.processor
        .try_process(&ctx.intake(enrolled("+12125550105", &seq, true)))
        .await
        .unwrap();
    let noon = next_ny(12);
    let dying = sender(&ctx, &provider);
    let task = tokio::spawn(async move { dying.send_due(noon).await });
    testkit::eventually(
        "the provider got the first request",
        std::time::Duration::from_secs(10),
        || async { (!provider.received().is_empty()).then_some(()) },
    )
    .await;
    // The worker dies after the provider took the request and before it could record it.
    task.abort();
    let _ = task.await;
    let again = sender(&ctx, &provider);
    let n = testkit::eventually(
        "the step is claimable again",
        std::time::Duration::from_secs(10),
        || async {
            let n = again.send_due(noon).await.unwrap();
            (n > 0).then_some(n)
        },
    )
    .await;
    assert_eq!(n, 1);
    let got = provider.received();
    assert_eq!(got.len(), 2, "sent again: at least once");
    assert_eq!(got[0].idempotency_key, got[1].idempotency_key);
    assert_eq!(
        provider.delivered().len(),
        1,
        "delivered once: at most once"
    );
    let all = messages(&ctx).await;
    assert_eq!(all[0].status, MessageStatus::Sent);
    assert_eq!(all.len(), 2, "one follow-up scheduled");
}

#[tokio::test]
async fn disenrollment_cancels_the_step_not_yet_sent() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    ctx.conn()
        .execute_unprepared(&format!(
            "UPDATE sequence_steps SET delay_seconds = 3600 WHERE sequence_id = {}",
            seq.id
        ))
        .await
        .unwrap();
    let other = ctx.named(leadctl::admin::Catalog::Sequence, "Other").await;
    ctx.processor
        .try_process(&ctx.intake(enrolled("+12125550106", &seq, true)))
        .await
        .unwrap();
    let mut moved = enrolled("+12125550106", &seq, true);
    moved.links.sequence_id = Some(other);
    moved.flags.force_update_sequence = true;
    ctx.processor.try_process(&ctx.intake(moved)).await.unwrap();
    let all = messages(&ctx).await;
    assert_eq!(all.len(), 1, "the other sequence has no steps");
    assert_eq!(all[0].status, MessageStatus::Cancelled);
    assert_eq!(all[0].due_at, None);
    let provider = SmsProvider::start().await;
    assert_eq!(
        sender(&ctx, &provider)
            .send_due(Utc::now() + Duration::hours(2))
            .await
            .unwrap(),
        0
    );
    assert!(provider.received().is_empty());
    let cancelled = message::Entity::find()
        .filter(message::Column::Status.eq(MessageStatus::Cancelled))
        .all(ctx.conn())
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
}

#[tokio::test]
async fn a_running_worker_sends_the_welcome_step_when_its_enrollment_commits() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    let mut settings = ctx.settings.clone();
    settings.sms = SmsSettings {
        base_url: Some(provider.base_url()),
        account_sid: provider.account_sid.clone(),
        auth_token: provider.auth_token.clone(),
        // Far longer than the test waits: only the enrollment's notification can wake the
        // loop in time.
        poll_interval: std::time::Duration::from_secs(600),
        ..SmsSettings::default()
    };
    let worker = worker::app::Worker::build(settings.clone()).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // Let the loop take its first look (nothing is due) and wait on its timer.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let mut l = enrolled("+12125550107", &seq, true);
    l.timezone = Some(testkit::zone_at(12));
    let publisher = Publisher::new(&settings).await;
    publisher.publish(&ctx.message(l)).await;
    let got = testkit::eventually(
        "the provider got the welcome SMS",
        std::time::Duration::from_secs(15),
        || async { provider.received().into_iter().next() },
    )
    .await;
    assert_eq!(got.to, "+12125550107");
    assert_eq!(got.body, "Hi Ada, thanks for asking!");
    testkit::eventually(
        "the send is recorded",
        std::time::Duration::from_secs(10),
        || async {
            messages(&ctx)
                .await
                .first()
                .filter(|m| m.status == MessageStatus::Sent)
                .map(|_| ())
        },
    )
    .await;
    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_floridian_texted_three_times_in_a_day_waits_for_the_cap_to_lift() {
    let ctx = Ctx::new().await;
    let seq = welcome_sequence(&ctx).await;
    let provider = SmsProvider::start().await;
    // A Miami number: Florida's rules (at most 3 messages per 24 hours).
    ctx.processor
        .try_process(&ctx.intake(enrolled("+13055550108", &seq, true)))
        .await
        .unwrap();
    let noon = next_ny(12);
    // Three messages sent to the number in the last three hours.
    ctx.conn()
        .execute_unprepared(&format!(
            "INSERT INTO messages (account_id, contact_id, direction, status, enrollment_id, \
                                   to_number, body, sent_at) \
             SELECT account_id, contact_id, 'outbound', 'sent', id, '+13055550108', 'earlier', \
                    '{noon}'::timestamptz - h * interval '1 hour' \
             FROM sequence_enrollments, generate_series(1, 3) AS h"
        ))
        .await
        .unwrap();
    sender(&ctx, &provider).send_due(noon).await.unwrap();
    assert!(provider.received().is_empty(), "a fourth message waits");
    let step = message::Entity::find()
        .filter(message::Column::StepId.is_not_null())
        .one(ctx.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(step.status, MessageStatus::Scheduled);
    assert_eq!(step.policy.as_ref().unwrap()["reason"], "frequency_cap");
    assert_eq!(step.policy.as_ref().unwrap()["rule"], "US-FL");
    // The oldest of the three leaves the 24-hour window at 09:00 the next day.
    assert_eq!(step.due_at, Some(noon + Duration::hours(21)));
}
