//! The contact policy (§9) before every PowerDialer insertion, through
//! `Processor::try_process` on a real PostgreSQL database: a number on the do-not-contact
//! list is never queued, a lead whose local time is 22:00 is queued for 08:00 the next
//! morning, the intake says why, and consent records are kept.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde_json::json;
use shared::entities::{contact_consent, powerdialer_item};
use shared::lead::{ConsentChannel, Lead, LeadConsent};
use shared::outcome::Action;
use shared::policy::{Channel, Reason};
use support::{Ctx, lead};
use worker::process::Outcome;

async fn run(ctx: &Ctx, l: Lead) -> Outcome {
    ctx.processor
        .try_process(&ctx.intake(l))
        .await
        .expect("processed")
}

/// A lead of `number` for the context's user's PowerDialer list.
fn dial(ctx: &Ctx, number: &str) -> Lead {
    let mut l = lead(number);
    l.links.user_id = Some(ctx.user);
    l.flags.add_to_powerdialer = true;
    l
}

fn blocked(o: &Outcome) -> Option<(Channel, Reason, String, Option<DateTime<Utc>>)> {
    o.actions.iter().find_map(|a| match a {
        Action::PolicyBlocked {
            channel,
            reason,
            rule,
            next_allowed_at,
        } => Some((*channel, *reason, rule.clone(), *next_allowed_at)),
        _ => None,
    })
}

async fn entries(ctx: &Ctx, contact_id: i64) -> Vec<powerdialer_item::Model> {
    powerdialer_item::Entity::find()
        .filter(powerdialer_item::Column::ContactId.eq(contact_id))
        .all(ctx.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_number_on_the_do_not_contact_list_is_never_queued_for_a_call() {
    let ctx = Ctx::new().await;
    ctx.conn()
        .execute_unprepared(&format!(
            "INSERT INTO do_not_contact (account_id, phone_number, channel, reason) \
             VALUES ({}, '+12125550100', 'call', 'asked not to be called')",
            ctx.account
        ))
        .await
        .unwrap();
    // Given in another format than the list's E.164.
    let o = run(&ctx, dial(&ctx, "(212) 555-0100")).await;
    let (channel, reason, rule, next) = blocked(&o).expect("a policy verdict");
    assert_eq!(
        (channel, reason, rule.as_str(), next),
        (Channel::Call, Reason::Dnc, "do-not-contact", None)
    );
    let contact_id = o.contact_id.expect("the contact is still saved");
    assert!(entries(&ctx, contact_id).await.is_empty());
    assert!(
        !o.actions
            .iter()
            .any(|a| matches!(a, Action::PowerdialerAdded { .. }))
    );
    assert!(
        o.warnings
            .iter()
            .any(|w| w.field == "add_to_powerdialer" && w.message.contains("do-not-contact"))
    );
    // An entry for messages only does not stop a call.
    let o = run(&ctx, dial(&ctx, "(212) 555-0101")).await;
    assert!(blocked(&o).is_none_or(|b| b.1 != Reason::Dnc));
}

#[tokio::test]
async fn a_lead_at_22_00_its_time_is_queued_for_08_00_the_next_morning() {
    let ctx = Ctx::new().await;
    let tz = testkit::zone_at(22);
    let mut l = dial(&ctx, "212 555 0102");
    l.timezone = Some(tz);
    let o = run(&ctx, l).await;
    let local = Utc::now().with_timezone(&tz);
    let expected = tz
        .from_local_datetime(
            &(local.date_naive() + Duration::days(1)).and_time(NaiveTime::MIN + Duration::hours(8)),
        )
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let (channel, reason, rule, next) = blocked(&o).expect("a policy verdict");
    assert_eq!(
        (channel, reason, rule.as_str(), next),
        (
            Channel::Call,
            Reason::OutsideHours,
            "US-federal",
            Some(expected)
        ),
        "in {tz}"
    );
    let queued = entries(&ctx, o.contact_id.unwrap()).await;
    assert_eq!(queued.len(), 1, "queued, to wait for its window");
    assert_eq!(queued[0].not_before, Some(expected));
    assert!(o.actions.iter().any(|a| matches!(
        a,
        Action::PowerdialerAdded { not_before: Some(t), .. } if *t == expected
    )));
}

#[tokio::test]
async fn an_account_that_requires_consent_for_calls_queues_only_consented_contacts() {
    let ctx = Ctx::new().await;
    ctx.conn()
        .execute_unprepared(&format!(
            "UPDATE accounts SET require_consent = '{{call,sms}}' WHERE id = {}",
            ctx.account
        ))
        .await
        .unwrap();
    let o = run(&ctx, dial(&ctx, "212 555 0103")).await;
    assert_eq!(blocked(&o).map(|b| b.1), Some(Reason::NoConsent));
    assert!(entries(&ctx, o.contact_id.unwrap()).await.is_empty());

    let mut l = dial(&ctx, "212 555 0104");
    l.evidence.consent = Some(LeadConsent {
        channels: vec![ConsentChannel::Call],
        text: Some("You may call me.".into()),
        given_at: None,
        source_url: Some("https://acme.example/form".into()),
        ip: Some("203.0.113.9".into()),
        user_agent: None,
        seller: Some("Acme".into()),
    });
    let o = run(&ctx, l).await;
    assert_ne!(blocked(&o).map(|b| b.1), Some(Reason::NoConsent));
    assert_eq!(entries(&ctx, o.contact_id.unwrap()).await.len(), 1);
}

#[tokio::test]
async fn consent_is_kept_as_records_of_the_contact_once_per_intake() {
    let ctx = Ctx::new().await;
    let mut l = lead("818 555 0105");
    l.evidence.consent = Some(LeadConsent {
        channels: vec![ConsentChannel::Sms, ConsentChannel::Call],
        text: Some("I agree to texts and calls from Acme.".into()),
        given_at: None,
        source_url: None,
        ip: None,
        user_agent: None,
        seller: None,
    });
    l.evidence.trustedform_cert_url =
        Some("https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567".into());
    let intake = ctx.intake(l);
    let o = ctx.processor.try_process(&intake).await.unwrap();
    assert!(o.actions.contains(&Action::ConsentRecorded {
        channels: vec![ConsentChannel::Sms, ConsentChannel::Call]
    }));
    let records = contact_consent::Entity::find()
        .filter(contact_consent::Column::ContactId.eq(o.contact_id.unwrap()))
        .all(ctx.conn())
        .await
        .unwrap();
    let mut channels: Vec<&str> = records.iter().map(|r| r.channel.as_str()).collect();
    channels.sort_unstable();
    assert_eq!(channels, ["call", "sms"]);
    for r in &records {
        // The received time, as PostgreSQL keeps it (microseconds).
        let received = intake.message.received_at;
        assert!(
            (r.given_at - received).num_microseconds().unwrap().abs() < 1,
            "{received}"
        );
        assert_eq!(r.intake_id, Some(intake.message.intake_id));
        assert!(r.trustedform_cert_url.is_some() && r.text.is_some());
    }
    // A redelivery adds nothing.
    ctx.processor.try_process(&intake).await.unwrap();
    let n = ctx
        .count(&format!(
            "SELECT count(*) FROM contact_consents WHERE contact_id = {}",
            o.contact_id.unwrap()
        ))
        .await;
    assert_eq!(n, 2, "{}", json!(channels));
}
