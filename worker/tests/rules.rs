//! Every rule of §4, one test each at least, through `Processor::try_process` (and
//! `try_process_batch`) on a real PostgreSQL database.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::NaiveDate;
use leadctl::admin::Catalog;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::json;
use shared::entities::sequence_enrollment::EnrollmentStatus;
use shared::entities::{contact_note, contact_tag, powerdialer_item, sequence_enrollment};
use shared::intake::IntakeStatus;
use shared::lead::PowerdialerPosition;
use shared::outcome::{Action, Warning};
use support::{Ctx, lead, other, phone};
use worker::process::{Outcome, ProcessError};

async fn run(ctx: &Ctx, l: shared::lead::Lead) -> Outcome {
    ctx.processor
        .try_process(&ctx.intake(l))
        .await
        .expect("processed")
}

fn has_warning(o: &Outcome, field: &str) -> bool {
    o.warnings.iter().any(|w| w.field == field)
}

fn warning<'a>(o: &'a Outcome, field: &str) -> &'a Warning {
    o.warnings
        .iter()
        .find(|w| w.field == field)
        .unwrap_or_else(|| panic!("no warning on {field}: {:?}", o.warnings))
}

#[tokio::test]
async fn a_new_number_creates_a_contact_with_every_field_and_records_the_intake() {
    let ctx = Ctx::new().await;
    let mut l = lead("(818) 123-4567");
    l.other_phone_numbers = vec![other("work", "+1 212 555 0100")];
    l.fields.first_name = Some("Ada".into());
    l.fields.last_name = Some("Lovelace".into());
    l.fields.email = Some("ada@example.com".into());
    l.fields.company_name = Some("Analytical Engines".into());
    l.fields.lead_source = Some("website".into());
    l.fields.zipcode = Some("91601".into());
    l.fields.website = Some("https://example.com".into());
    l.date_of_birth = NaiveDate::from_ymd_opt(1990, 12, 10);
    l.notes = Some("Agreed to be contacted.".into());
    let intake = ctx.intake(l);
    let o = ctx.processor.try_process(&intake).await.expect("processed");

    assert_eq!(o.status, IntakeStatus::Created);
    let id = o.contact_id.expect("contact");
    assert_eq!(o.actions[0], Action::ContactCreated { contact_id: id });
    assert!(o.actions.contains(&Action::NoteAdded));
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    let c = ctx.contact(id).await;
    assert_eq!(c.phone_number, "+18181234567");
    assert_eq!(c.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(c.email.as_deref(), Some("ada@example.com"));
    assert_eq!(c.company_name.as_deref(), Some("Analytical Engines"));
    assert_eq!(c.zipcode.as_deref(), Some("91601"));
    assert_eq!(c.date_of_birth, NaiveDate::from_ymd_opt(1990, 12, 10));
    assert_eq!(c.owner_id, None, "no user_id: unowned");
    let numbers = ctx.numbers(id).await;
    assert_eq!(numbers.len(), 2);
    assert!(numbers[0].is_primary && numbers[0].phone_number == "+18181234567");
    assert_eq!(numbers[0].label, None, "no label is NULL, not an empty one");
    assert_eq!(numbers[1].label.as_deref(), Some("work"));
    assert!(!numbers[1].is_primary);
    let notes = ctx
        .count(&format!(
            "SELECT count(*) FROM contact_notes WHERE contact_id = {id}"
        ))
        .await;
    assert_eq!(notes, 1);

    let row = ctx
        .intake_row(intake.message.intake_id)
        .await
        .expect("record");
    assert_eq!(row.status, IntakeStatus::Created);
    assert_eq!(row.contact_id, Some(id));
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error, None);
    assert!(row.processed_at.is_some());
    assert_eq!(row.payload, intake.message.payload.to_value());
    assert_eq!(
        row.actions[0],
        json!({"type": "contact_created", "contact_id": id})
    );
    assert_eq!(row.warnings, json!([]));
    assert_eq!(row.account_id, ctx.account);
    assert_eq!(row.token_id, Some(ctx.token));
}

#[tokio::test]
async fn any_number_of_the_lead_matches_an_existing_contact() {
    let ctx = Ctx::new().await;
    let mut first = lead("818 123 4567");
    first.other_phone_numbers = vec![other("home", "212 555 0100")];
    let created = run(&ctx, first).await;

    // Another format of the *other* number, as the primary of a new lead.
    let again = run(&ctx, lead("+1 (212) 555-0100")).await;
    assert_eq!(again.contact_id, created.contact_id);
    assert_eq!(again.status, IntakeStatus::Duplicate);
    assert_eq!(ctx.contacts().await.len(), 1);
}

#[tokio::test]
async fn a_merge_fills_blanks_adds_numbers_appends_the_note_and_keeps_values() {
    let ctx = Ctx::new().await;
    let mut first = lead("818 123 4567");
    first.fields.email = Some("first@example.com".into());
    first.notes = Some("First note".into());
    first.links.user_id = Some(ctx.user);
    let created = run(&ctx, first).await;
    let id = created.contact_id.expect("contact");

    let other_user = ctx.user("Bo", true, true).await;
    let mut second = lead("8181234567");
    second.fields.email = Some("second@example.com".into());
    second.fields.company_name = Some("Acme".into());
    second.other_phone_numbers = vec![other("cell", "310 555 0101")];
    second.notes = Some("Second note".into());
    second.links.user_id = Some(other_user);
    let o = run(&ctx, second).await;

    assert_eq!(o.status, IntakeStatus::Merged);
    assert!(o.actions.contains(&Action::PhoneNumberAdded {
        phone_number: "+13105550101".into()
    }));
    assert!(o.actions.contains(&Action::NoteAdded));
    assert!(o.actions.iter().any(|a| matches!(a, Action::ContactMerged { fields, .. } if fields == &vec!["company_name".to_string()])));
    let c = ctx.contact(id).await;
    assert_eq!(c.email.as_deref(), Some("first@example.com"), "kept");
    assert_eq!(c.company_name.as_deref(), Some("Acme"), "filled");
    assert_eq!(
        c.owner_id,
        Some(ctx.user),
        "owner kept without force_update"
    );
    assert!(has_warning(&o, "user_id"));
    assert_eq!(ctx.numbers(id).await.len(), 2);
    let notes: Vec<String> = contact_note::Entity::find()
        .filter(contact_note::Column::ContactId.eq(id))
        .order_by_asc(contact_note::Column::Id)
        .all(ctx.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.body)
        .collect();
    assert_eq!(notes, vec!["First note", "Second note"]);
}

#[tokio::test]
async fn nothing_new_is_a_duplicate() {
    let ctx = Ctx::new().await;
    let mut l = lead("818 123 4567");
    l.fields.email = Some("a@example.com".into());
    run(&ctx, l.clone()).await;
    let o = run(&ctx, l).await;
    assert_eq!(o.status, IntakeStatus::Duplicate);
    assert!(o.actions.is_empty(), "{:?}", o.actions);
}

#[tokio::test]
async fn force_update_overwrites_the_provided_fields_only() {
    let ctx = Ctx::new().await;
    let mut first = lead("818 123 4567");
    first.fields.email = Some("old@example.com".into());
    first.fields.company_name = Some("Old Co".into());
    first.fields.city = Some("Burbank".into());
    let id = run(&ctx, first).await.contact_id.expect("contact");

    let mut second = lead("818 123 4567");
    second.fields.email = Some("new@example.com".into());
    second.flags.force_update = true;
    let o = run(&ctx, second).await;
    assert_eq!(o.status, IntakeStatus::Updated);
    assert!(o.actions.contains(&Action::ContactUpdated {
        contact_id: id,
        fields: vec!["email".into()]
    }));
    let c = ctx.contact(id).await;
    assert_eq!(c.email.as_deref(), Some("new@example.com"));
    assert_eq!(
        c.company_name.as_deref(),
        Some("Old Co"),
        "not provided: left alone"
    );
    assert_eq!(
        c.city.as_deref(),
        Some("Burbank"),
        "derived values never overwrite"
    );
}

#[tokio::test]
async fn name_and_place_are_derived_when_blank() {
    let ctx = Ctx::new().await;
    let mut l = lead("(818) 123-4567");
    l.fields.name = Some("Grace Brewster Hopper".into());
    let c = ctx.contact(run(&ctx, l).await.contact_id.expect("c")).await;
    assert_eq!(c.first_name.as_deref(), Some("Grace Brewster"));
    assert_eq!(c.last_name.as_deref(), Some("Hopper"));
    assert_eq!(c.country.as_deref(), Some("US"));
    assert_eq!(c.state.as_deref(), Some("CA"));
    assert_eq!(c.timezone.as_deref(), Some("America/Los_Angeles"));

    let mut l = lead("212 555 0199");
    l.fields.first_name = Some("Ada".into());
    l.fields.last_name = Some("Lovelace".into());
    let c = ctx.contact(run(&ctx, l).await.contact_id.expect("c")).await;
    assert_eq!(c.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        (c.state.as_deref(), c.city.as_deref()),
        (Some("NY"), Some("New York"))
    );
    assert_eq!(c.timezone.as_deref(), Some("America/New_York"));

    let c = ctx
        .contact(
            run(&ctx, lead("+1 416 555 0199"))
                .await
                .contact_id
                .expect("c"),
        )
        .await;
    assert_eq!(c.country.as_deref(), Some("CA"));
    assert_eq!(c.state.as_deref(), Some("ON"));
    assert_eq!(c.timezone.as_deref(), Some("America/Toronto"));

    // Given values win over what the number says; a foreign number gives its country.
    let mut l = lead("+44 20 7946 0958");
    l.timezone = Some(chrono_tz::Tz::Europe__London);
    l.fields.city = Some("London".into());
    let c = ctx.contact(run(&ctx, l).await.contact_id.expect("c")).await;
    assert_eq!(c.country.as_deref(), Some("GB"));
    assert_eq!(c.city.as_deref(), Some("London"));
    assert_eq!(c.state, None);
    assert_eq!(c.timezone.as_deref(), Some("Europe/London"));
}

#[tokio::test]
async fn user_id_sets_the_owner_and_only_force_update_changes_it() {
    let ctx = Ctx::new().await;
    let mut l = lead("818 123 4567");
    l.links.user_id = Some(ctx.user);
    let o = run(&ctx, l).await;
    assert!(
        o.actions
            .contains(&Action::OwnerAssigned { user_id: ctx.user })
    );
    let id = o.contact_id.expect("c");
    assert_eq!(ctx.contact(id).await.owner_id, Some(ctx.user));

    let bo = ctx.user("Bo", true, true).await;
    let mut l = lead("818 123 4567");
    l.links.user_id = Some(bo);
    let o = run(&ctx, l.clone()).await;
    assert_eq!(ctx.contact(id).await.owner_id, Some(ctx.user));
    assert_eq!(o.status, IntakeStatus::Duplicate);
    assert!(warning(&o, "user_id").message.contains("kept"));

    l.flags.force_update = true;
    let o = run(&ctx, l).await;
    assert!(o.actions.contains(&Action::OwnerAssigned { user_id: bo }));
    assert_eq!(ctx.contact(id).await.owner_id, Some(bo));

    // An unowned existing contact takes the owner without force_update (a blank filled).
    let unowned = run(&ctx, lead("310 555 0101")).await.contact_id.expect("c");
    let mut l = lead("310 555 0101");
    l.links.user_id = Some(bo);
    assert_eq!(run(&ctx, l).await.status, IntakeStatus::Merged);
    assert_eq!(ctx.contact(unowned).await.owner_id, Some(bo));
}

#[tokio::test]
async fn ring_group_distribution_is_uniform_among_active_members_and_overrides_user_id() {
    let ctx = Ctx::new().await;
    let a = ctx.user("A", true, true).await;
    let b = ctx.user("B", true, false).await;
    let c = ctx.user("C", true, true).await;
    let inactive = ctx.user("Off", false, true).await;
    let group =
        leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "Sales", &[a, b, c, inactive])
            .await
            .unwrap()
            .id;
    let mut picks = std::collections::HashMap::new();
    for i in 0..60 {
        let mut l = lead(&format!("818 555 {:04}", 1000 + i));
        l.links.ring_group_id = Some(group);
        l.links.user_id = Some(ctx.user);
        l.flags.distribute_to_ring_group = true;
        let o = run(&ctx, l).await;
        let owner = ctx
            .contact(o.contact_id.expect("c"))
            .await
            .owner_id
            .expect("owner");
        assert!(o.actions.contains(&Action::RingGroupDistributed {
            ring_group_id: group,
            user_id: owner
        }));
        *picks.entry(owner).or_insert(0) += 1;
    }
    assert!(
        !picks.contains_key(&inactive),
        "inactive users never receive leads"
    );
    assert!(
        !picks.contains_key(&ctx.user),
        "distribution overrides user_id"
    );
    // 60 draws over 3 members: each gets some (all-miss chance ≈ 3·(2/3)^60 ≈ 1e-10).
    for m in [a, b, c] {
        assert!(picks.get(&m).copied().unwrap_or(0) >= 5, "{picks:?}");
    }
}

#[tokio::test]
async fn check_available_users_picks_only_available_members_or_skips_with_a_warning() {
    let ctx = Ctx::new().await;
    let busy = ctx.user("Busy", true, false).await;
    let free = ctx.user("Free", true, true).await;
    let off = ctx.user("Off", false, true).await;
    let mixed =
        leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "Mixed", &[busy, free, off])
            .await
            .unwrap()
            .id;
    let all_busy = leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "Busy", &[busy, off])
        .await
        .unwrap()
        .id;
    for i in 0..10 {
        let mut l = lead(&format!("818 555 {:04}", 2000 + i));
        l.links.ring_group_id = Some(mixed);
        l.flags.distribute_to_ring_group = true;
        l.flags.check_available_users = true;
        let o = run(&ctx, l).await;
        assert_eq!(
            ctx.contact(o.contact_id.expect("c")).await.owner_id,
            Some(free)
        );
    }

    // Nobody available: skipped with a warning, the owner comes from user_id.
    let mut l = lead("818 555 3000");
    l.links.ring_group_id = Some(all_busy);
    l.links.user_id = Some(ctx.user);
    l.flags.distribute_to_ring_group = true;
    l.flags.check_available_users = true;
    let o = run(&ctx, l.clone()).await;
    assert!(
        warning(&o, "check_available_users")
            .message
            .contains("distribution skipped")
    );
    assert_eq!(
        ctx.contact(o.contact_id.expect("c")).await.owner_id,
        Some(ctx.user)
    );

    // With the fallback: any active member (the inactive one never).
    l.phone_number = phone("818 555 3001");
    l.flags.check_available_users_with_fallback = true;
    let o = run(&ctx, l).await;
    assert!(o.warnings.is_empty(), "{:?}", o.warnings);
    assert_eq!(
        ctx.contact(o.contact_id.expect("c")).await.owner_id,
        Some(busy)
    );
}

#[tokio::test]
async fn ring_group_warnings_and_an_owned_contact_is_not_redistributed_without_force() {
    let ctx = Ctx::new().await;
    let member = ctx.user("M", true, true).await;
    let group = leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "G", &[member])
        .await
        .unwrap()
        .id;
    let empty = leadctl::admin::create_ring_group(ctx.conn(), ctx.account, "Empty", &[])
        .await
        .unwrap()
        .id;

    let mut l = lead("818 555 4000");
    l.flags.distribute_to_ring_group = true;
    let o = run(&ctx, l).await;
    assert!(
        warning(&o, "ring_group_id")
            .message
            .contains("no ring_group_id")
    );

    let mut l = lead("818 555 4001");
    l.flags.distribute_to_ring_group = true;
    l.links.ring_group_id = Some(empty);
    let o = run(&ctx, l).await;
    assert!(
        warning(&o, "ring_group_id")
            .message
            .contains("no active member")
    );

    let mut l = lead("818 555 4002");
    l.links.user_id = Some(ctx.user);
    let id = run(&ctx, l.clone()).await.contact_id.expect("c");
    l.flags.distribute_to_ring_group = true;
    l.links.ring_group_id = Some(group);
    let o = run(&ctx, l.clone()).await;
    assert!(has_warning(&o, "distribute_to_ring_group"));
    assert_eq!(ctx.contact(id).await.owner_id, Some(ctx.user));
    l.flags.force_update = true;
    let o = run(&ctx, l).await;
    assert!(o.actions.contains(&Action::RingGroupDistributed {
        ring_group_id: group,
        user_id: member
    }));
    assert_eq!(ctx.contact(id).await.owner_id, Some(member));
}

#[tokio::test]
async fn powerdialer_adds_at_the_top_or_bottom_of_the_owners_list() {
    let ctx = Ctx::new().await;
    let mut ids = Vec::new();
    for (i, pos) in [
        PowerdialerPosition::Top,
        PowerdialerPosition::Top,
        PowerdialerPosition::Bottom,
        PowerdialerPosition::Top,
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = lead(&format!("818 555 {:04}", 5000 + i));
        l.links.user_id = Some(ctx.user);
        l.flags.add_to_powerdialer = true;
        l.powerdialer_position = pos;
        let o = run(&ctx, l).await;
        // Added whatever the hour: outside the contact's window it waits (`not_before`).
        assert!(o.actions.iter().any(|a| matches!(
            a,
            Action::PowerdialerAdded { user_id, position, .. }
                if *user_id == ctx.user && *position == pos
        )));
        ids.push(o.contact_id.expect("c"));
    }
    let list: Vec<i64> = leadctl::admin::powerdialer_list(ctx.conn(), ctx.user)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.contact_id)
        .collect();
    // Each "top" lands above everything before it; "bottom" below.
    assert_eq!(list, vec![ids[3], ids[1], ids[0], ids[2]]);
}

#[tokio::test]
async fn a_placement_does_not_wait_for_another_transactions_entry_on_the_same_list() {
    let ctx = Ctx::new().await;
    // Another transaction has put a contact on the user's (empty) list and not committed.
    let first = run(&ctx, lead("818 555 5100")).await.contact_id.expect("c");
    let open = ctx.conn().begin().await.unwrap();
    open.execute_unprepared(&format!(
        "INSERT INTO powerdialer_items (account_id, user_id, contact_id, position) \
         VALUES ({}, {}, {first}, 0)",
        ctx.account, ctx.user
    ))
    .await
    .unwrap();

    let mut l = lead("818 555 5101");
    l.links.user_id = Some(ctx.user);
    l.flags.add_to_powerdialer = true;
    let o = tokio::time::timeout(std::time::Duration::from_secs(10), run(&ctx, l))
        .await
        .expect("placed without waiting for the other transaction's commit");
    assert!(
        o.actions
            .iter()
            .any(|a| matches!(a, Action::PowerdialerAdded { .. }))
    );
    open.commit().await.unwrap();
    let list: Vec<i64> = leadctl::admin::powerdialer_list(ctx.conn(), ctx.user)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.contact_id)
        .collect();
    // "top" (the default): above the entry already there.
    assert_eq!(list, vec![o.contact_id.expect("c"), first]);
}

#[tokio::test]
async fn powerdialer_is_skipped_without_an_owner_or_when_already_queued() {
    let ctx = Ctx::new().await;
    let mut l = lead("818 555 6000");
    l.flags.add_to_powerdialer = true;
    let o = run(&ctx, l.clone()).await;
    assert!(
        warning(&o, "add_to_powerdialer")
            .message
            .contains("no owner")
    );

    // Queued on one user's list: another lead (even for another owner) does not add it again.
    l.links.user_id = Some(ctx.user);
    let o = run(&ctx, l.clone()).await;
    assert!(
        o.actions
            .iter()
            .any(|a| matches!(a, Action::PowerdialerAdded { .. }))
    );
    let bo = ctx.user("Bo", true, true).await;
    l.links.user_id = Some(bo);
    l.flags.force_update = true;
    let o = run(&ctx, l).await;
    assert!(
        warning(&o, "add_to_powerdialer")
            .message
            .contains("already queued")
    );
    let queued = powerdialer_item::Entity::find()
        .filter(powerdialer_item::Column::ContactId.eq(o.contact_id.expect("c")))
        .all(ctx.conn())
        .await
        .unwrap();
    assert_eq!(queued.len(), 1);
}

#[tokio::test]
async fn sequences_enroll_once_and_switch_only_with_force_update_sequence() {
    let ctx = Ctx::new().await;
    let s1 = ctx.named(Catalog::Sequence, "Welcome").await;
    let s2 = ctx.named(Catalog::Sequence, "Nurture").await;
    let mut l = lead("818 555 7000");
    l.links.sequence_id = Some(s1);
    let o = run(&ctx, l.clone()).await;
    let id = o.contact_id.expect("c");
    assert!(
        o.actions
            .contains(&Action::SequenceEnrolled { sequence_id: s1 })
    );

    // The same sequence again: nothing.
    let o = run(&ctx, l.clone()).await;
    assert_eq!(o.status, IntakeStatus::Duplicate);

    // Another one without the flag: warning, still in s1.
    l.links.sequence_id = Some(s2);
    let o = run(&ctx, l.clone()).await;
    assert!(
        warning(&o, "sequence_id")
            .message
            .contains("force_update_sequence")
    );

    // With the flag: out of s1, into s2.
    l.flags.force_update_sequence = true;
    let o = run(&ctx, l).await;
    assert!(
        o.actions
            .contains(&Action::SequenceDisenrolled { sequence_id: s1 })
    );
    assert!(
        o.actions
            .contains(&Action::SequenceEnrolled { sequence_id: s2 })
    );
    let rows = sequence_enrollment::Entity::find()
        .filter(sequence_enrollment::Column::ContactId.eq(id))
        .order_by_asc(sequence_enrollment::Column::Id)
        .all(ctx.conn())
        .await
        .unwrap();
    let states: Vec<(i64, EnrollmentStatus)> =
        rows.iter().map(|r| (r.sequence_id, r.status)).collect();
    assert_eq!(
        states,
        vec![
            (s1, EnrollmentStatus::Disenrolled),
            (s2, EnrollmentStatus::Active)
        ]
    );
}

#[tokio::test]
async fn tag_line_and_disposition_follow_the_create_blank_force_rules() {
    let ctx = Ctx::new().await;
    let tag = ctx.named(Catalog::Tag, "webhook").await;
    let line1 = ctx.named(Catalog::Line, "Main").await;
    let line2 = ctx.named(Catalog::Line, "Second").await;
    let d1 = ctx.named(Catalog::Disposition, "New").await;
    let d2 = ctx.named(Catalog::Disposition, "Hot").await;

    let mut l = lead("818 555 8000");
    l.links.tag_id = Some(tag);
    l.links.line_id = Some(line1);
    l.links.disposition_status_id = Some(d1);
    let o = run(&ctx, l.clone()).await;
    let id = o.contact_id.expect("c");
    for a in [
        Action::TagAdded { tag_id: tag },
        Action::LineSet { line_id: line1 },
        Action::DispositionSet {
            disposition_status_id: d1,
        },
    ] {
        assert!(o.actions.contains(&a), "{a:?} in {:?}", o.actions);
    }

    // Set already: kept without force_update, the tag is not added twice.
    l.links.line_id = Some(line2);
    l.links.disposition_status_id = Some(d2);
    let o = run(&ctx, l.clone()).await;
    assert_eq!(o.status, IntakeStatus::Duplicate);
    let c = ctx.contact(id).await;
    assert_eq!(
        (c.line_id, c.disposition_status_id),
        (Some(line1), Some(d1))
    );
    let tags = contact_tag::Entity::find()
        .filter(contact_tag::Column::ContactId.eq(id))
        .all(ctx.conn())
        .await
        .unwrap();
    assert_eq!(tags.len(), 1);

    l.flags.force_update = true;
    run(&ctx, l).await;
    let c = ctx.contact(id).await;
    assert_eq!(
        (c.line_id, c.disposition_status_id),
        (Some(line2), Some(d2))
    );

    // Blank on an existing contact: set without force_update.
    let bare = run(&ctx, lead("818 555 8001")).await.contact_id.expect("c");
    let mut l = lead("818 555 8001");
    l.links.line_id = Some(line1);
    let o = run(&ctx, l).await;
    assert_eq!(o.status, IntakeStatus::Merged);
    assert_eq!(ctx.contact(bare).await.line_id, Some(line1));
}

#[tokio::test]
async fn ids_of_another_account_are_warnings_never_links() {
    let ctx = Ctx::new().await;
    let other = leadctl::admin::create_account(ctx.conn(), "Other", "US", None)
        .await
        .unwrap()
        .id;
    let their_user = leadctl::admin::create_user(ctx.conn(), other, "Eve", None, true, true)
        .await
        .unwrap()
        .id;
    let mut theirs = Vec::new();
    for kind in [
        Catalog::Tag,
        Catalog::Line,
        Catalog::Disposition,
        Catalog::Sequence,
    ] {
        theirs.push(
            leadctl::admin::create_named(ctx.conn(), kind, other, "theirs")
                .await
                .unwrap()
                .id,
        );
    }
    let (tag, line, disp, seq) = (theirs[0], theirs[1], theirs[2], theirs[3]);
    let group = leadctl::admin::create_ring_group(ctx.conn(), other, "Theirs", &[their_user])
        .await
        .unwrap()
        .id;
    let mut l = lead("818 555 9000");
    l.links.user_id = Some(their_user);
    l.links.ring_group_id = Some(group);
    l.links.line_id = Some(line);
    l.links.tag_id = Some(tag);
    l.links.disposition_status_id = Some(disp);
    l.links.sequence_id = Some(seq);
    l.flags.distribute_to_ring_group = true;
    l.flags.add_to_powerdialer = true;
    let o = run(&ctx, l).await;

    assert_eq!(o.status, IntakeStatus::Created, "the lead is still saved");
    for field in [
        "user_id",
        "ring_group_id",
        "line_id",
        "tag_id",
        "disposition_status_id",
        "sequence_id",
    ] {
        assert!(
            warning(&o, field)
                .message
                .contains("not found in this account"),
            "{field}"
        );
    }
    assert!(
        has_warning(&o, "add_to_powerdialer"),
        "no owner, so no PowerDialer"
    );
    let c = ctx.contact(o.contact_id.expect("c")).await;
    assert_eq!(
        (c.owner_id, c.line_id, c.disposition_status_id),
        (None, None, None)
    );
    let id = c.id;
    for table in ["contact_tags", "sequence_enrollments", "powerdialer_items"] {
        assert_eq!(
            ctx.count(&format!(
                "SELECT count(*) FROM {table} WHERE contact_id = {id}"
            ))
            .await,
            0,
            "{table}"
        );
    }
    // A missing id is treated the same.
    let mut l = lead("818 555 9001");
    l.links.tag_id = Some(999_999);
    let o = run(&ctx, l).await;
    assert_eq!(
        warning(&o, "tag_id").message,
        "Tag 999999 not found in this account; tag not added."
    );
}

#[tokio::test]
async fn numbers_of_two_contacts_resolve_to_the_primarys_contact() {
    let ctx = Ctx::new().await;
    let a = run(&ctx, lead("818 555 1111")).await.contact_id.expect("a");
    let b = run(&ctx, lead("818 555 2222")).await.contact_id.expect("b");
    let mut l = lead("818 555 2222");
    l.other_phone_numbers = vec![other("old", "818 555 1111"), other("new", "818 555 3333")];
    let o = run(&ctx, l).await;
    assert_eq!(o.contact_id, Some(b), "the primary number's contact");
    assert!(
        warning(&o, "other_phone_numbers")
            .message
            .contains(&format!("contact {a}"))
    );
    let numbers: Vec<String> = ctx
        .numbers(b)
        .await
        .into_iter()
        .map(|n| n.phone_number)
        .collect();
    assert_eq!(numbers, vec!["+18185552222", "+18185553333"]);
    assert_eq!(ctx.numbers(a).await.len(), 1);

    // No primary match: the oldest matching contact.
    let mut l = lead("818 555 4444");
    l.other_phone_numbers = vec![other("x", "818 555 3333"), other("y", "818 555 1111")];
    let o = run(&ctx, l).await;
    assert_eq!(o.contact_id, Some(a));
}

#[tokio::test]
async fn a_finished_intake_is_not_processed_twice() {
    let ctx = Ctx::new().await;
    let tag = ctx.named(Catalog::Tag, "t").await;
    let mut l = lead("818 555 1234");
    l.notes = Some("consent".into());
    l.links.tag_id = Some(tag);
    l.links.user_id = Some(ctx.user);
    l.flags.add_to_powerdialer = true;
    let intake = ctx.intake(l);
    let first = ctx.processor.try_process(&intake).await.expect("first");
    let second = ctx.processor.try_process(&intake).await.expect("second");
    assert!(!first.already_done);
    assert!(second.already_done);
    assert_eq!(second.status, IntakeStatus::Created);
    assert_eq!(second.contact_id, first.contact_id);
    assert_eq!(second.actions, first.actions, "the record's actions");
    for table in [
        "contacts",
        "contact_notes",
        "contact_tags",
        "powerdialer_items",
        "lead_intakes",
    ] {
        assert_eq!(
            ctx.count(&format!("SELECT count(*) FROM {table}")).await,
            1,
            "{table}"
        );
    }
}

#[tokio::test]
async fn a_dead_lettered_intake_that_comes_back_is_processed() {
    let ctx = Ctx::new().await;
    let intake = ctx.intake(lead("818 555 1234"));
    let m = &intake.message;
    ctx.processor
        .record_dead_letter(&worker::process::DeadRecord {
            intake_id: m.intake_id,
            account_id: m.account_id,
            user_id: Some(m.user_id),
            token_id: Some(m.token_id),
            payload: m.payload.to_value(),
            received_at: Some(m.received_at),
            attempts: 4,
            reason: "gave up".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        ctx.intake_row(m.intake_id).await.unwrap().status,
        IntakeStatus::DeadLettered
    );
    let o = ctx.processor.try_process(&intake).await.expect("processed");
    assert_eq!(o.status, IntakeStatus::Created);
    let row = ctx.intake_row(m.intake_id).await.unwrap();
    assert_eq!((row.status.as_str(), row.last_error), ("created", None));

    // And a finished intake is never downgraded to dead_lettered.
    ctx.processor
        .record_dead_letter(&worker::process::DeadRecord {
            intake_id: m.intake_id,
            account_id: m.account_id,
            user_id: None,
            token_id: None,
            payload: json!({}),
            received_at: None,
            attempts: 9,
            reason: "late".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        ctx.intake_row(m.intake_id).await.unwrap().status,
        IntakeStatus::Created
    );
}

#[tokio::test]
async fn an_unknown_account_is_a_permanent_failure() {
    let ctx = Ctx::new().await;
    let m = support::message_for(987_654, 1, 1, lead("818 555 1234"));
    let err = ctx
        .processor
        .try_process(&worker::process::Attempt {
            message: m,
            previous_attempts: 0,
        })
        .await
        .expect_err("unknown account");
    assert_eq!(
        err,
        ProcessError::Permanent("unknown account 987654".into())
    );
}

#[tokio::test]
async fn a_batch_commits_many_leads_with_sequential_semantics() {
    let ctx = Ctx::new().await;
    let mut intakes = Vec::new();
    for i in 0..20 {
        // Ten numbers, each twice: the second lead of a number merges into the first.
        let mut l = lead(&format!("818 555 {:04}", i % 10));
        l.notes = Some(format!("note {i}"));
        intakes.push(ctx.intake(l));
    }
    intakes.push(intakes[0].clone()); // the same intake twice in one batch
    let results = ctx.processor.try_process_batch(&intakes).await;
    let outcomes: Vec<Outcome> = results.into_iter().map(|r| r.expect("ok")).collect();
    let statuses: Vec<IntakeStatus> = outcomes.iter().map(|o| o.status).collect();
    assert_eq!(statuses[..10], [IntakeStatus::Created; 10]);
    assert_eq!(statuses[10..20], [IntakeStatus::Merged; 10]);
    assert!(outcomes[20].already_done);
    assert_eq!(ctx.contacts().await.len(), 10);
    assert_eq!(ctx.count("SELECT count(*) FROM contact_notes").await, 20);
    assert_eq!(ctx.count("SELECT count(*) FROM lead_intakes").await, 20);
}

/// A transient error the database gives one lead's row fails that lead only: its
/// batch-mates are tried on their own and commit, instead of sharing its retries.
#[tokio::test]
async fn a_transient_error_of_one_leads_row_fails_that_lead_only() {
    let ctx = Ctx::new().await;
    ctx.conn()
        .execute_unprepared(
            "CREATE FUNCTION refuse_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.body LIKE '%refused%' THEN \
                 RAISE EXCEPTION 'permission denied for table contact_notes' USING ERRCODE = '42501'; \
               END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_note BEFORE INSERT ON contact_notes \
               FOR EACH ROW EXECUTE FUNCTION refuse_note();",
        )
        .await
        .unwrap();
    let mut intakes = Vec::new();
    for i in 0..3 {
        let mut l = lead(&format!("818 555 {:04}", 100 + i));
        l.notes = Some(if i == 1 {
            "refused".into()
        } else {
            format!("note {i}")
        });
        intakes.push(ctx.intake(l));
    }
    let results = ctx.processor.try_process_batch(&intakes).await;
    assert!(
        matches!(&results[1], Err(ProcessError::Transient(e)) if e.contains("42501")),
        "{:?}",
        results[1]
    );
    for i in [0, 2] {
        assert_eq!(
            results[i].as_ref().expect("committed").status,
            IntakeStatus::Created
        );
    }
    assert_eq!(ctx.contacts().await.len(), 2);
}

#[tokio::test]
async fn a_batch_leaves_leads_whose_locks_are_busy_to_a_second_transaction() {
    let ctx = Ctx::new().await;
    let mut l = lead("818 555 0001");
    l.other_phone_numbers = vec![other("alt", "818 555 0002")];
    let id = run(&ctx, l).await.contact_id.expect("c");

    // Another transaction holds the contact (as a lead arriving by its other number would)
    // and a number no contact has yet (as a lead creating it would).
    let holder = ctx.conn().begin().await.unwrap();
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_xact_lock(hashtextextended('lead-contact:{id}', 0)), \
                    pg_advisory_xact_lock(hashtextextended('lead-number:{}:+18185550200', 0))",
            ctx.account
        ))
        .await
        .unwrap();
    let mut busy_contact = lead("818 555 0001");
    busy_contact.fields.email = Some("later@example.com".into());
    let batch = vec![
        ctx.intake(busy_contact),
        ctx.intake(lead("818 555 0200")),
        ctx.intake(lead("818 555 0100")),
    ];
    let processor = ctx.processor.clone();
    let task = tokio::spawn(async move { processor.try_process_batch(&batch).await });

    // The free lead commits while the busy ones wait for the holder.
    support::eventually(
        "the free lead",
        std::time::Duration::from_secs(30),
        || async { (ctx.contacts().await.len() == 2).then_some(()) },
    )
    .await;
    assert_eq!(ctx.contact(id).await.email, None);
    assert!(!task.is_finished());
    holder.commit().await.unwrap();
    let results = task.await.unwrap();
    let statuses: Vec<IntakeStatus> = results
        .iter()
        .map(|r| r.as_ref().expect("ok").status)
        .collect();
    assert_eq!(
        statuses,
        vec![
            IntakeStatus::Merged,
            IntakeStatus::Created,
            IntakeStatus::Created
        ]
    );
    assert_eq!(
        ctx.contact(id).await.email.as_deref(),
        Some("later@example.com")
    );
    assert_eq!(ctx.contacts().await.len(), 3);
}

/// Outcomes without ids, to compare runs on different databases.
fn shape(o: &Outcome) -> (IntakeStatus, Vec<String>, Vec<String>) {
    let actions = o
        .actions
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).unwrap();
            if let Some(obj) = v.as_object_mut() {
                obj.remove("contact_id");
            }
            v.to_string()
        })
        .collect();
    let warnings = o.warnings.iter().map(|w| w.field.clone()).collect();
    (o.status, actions, warnings)
}

#[tokio::test]
async fn a_batch_gives_the_same_outcomes_as_one_lead_at_a_time() {
    // Several leads for the same contact with every kind of action, in one batch and one by
    // one: the batch must see each earlier lead's effects exactly as separate transactions do.
    let mut runs = Vec::new();
    for batched in [false, true] {
        let ctx = Ctx::new().await;
        let s1 = ctx.named(Catalog::Sequence, "s1").await;
        let s2 = ctx.named(Catalog::Sequence, "s2").await;
        let tag = ctx.named(Catalog::Tag, "t").await;
        let line = ctx.named(Catalog::Line, "l").await;
        let mut leads = Vec::new();
        let mut l = lead("818 555 0001");
        l.links.user_id = Some(ctx.user);
        l.links.sequence_id = Some(s1);
        l.links.tag_id = Some(tag);
        l.flags.add_to_powerdialer = true;
        leads.push(l.clone());
        l.links.sequence_id = Some(s2);
        l.flags.force_update_sequence = true;
        l.other_phone_numbers = vec![other("alt", "818 555 0002")];
        l.fields.email = Some("x@example.com".into());
        leads.push(l.clone());
        let mut by_other = lead("818 555 0002");
        by_other.links.line_id = Some(line);
        by_other.notes = Some("n".into());
        by_other.links.sequence_id = Some(s1);
        leads.push(by_other);
        leads.push(lead("818 555 0002"));
        let mut forced = lead("818 555 0001");
        forced.fields.email = Some("y@example.com".into());
        forced.flags.force_update = true;
        leads.push(forced);
        let intakes: Vec<_> = leads.into_iter().map(|l| ctx.intake(l)).collect();
        let outcomes: Vec<Outcome> = if batched {
            ctx.processor
                .try_process_batch(&intakes)
                .await
                .into_iter()
                .map(|r| r.expect("ok"))
                .collect()
        } else {
            let mut v = Vec::new();
            for i in &intakes {
                v.push(ctx.processor.try_process(i).await.expect("ok"));
            }
            v
        };
        let shapes: Vec<_> = outcomes.iter().map(shape).collect();
        let c = &ctx.contacts().await[0];
        let enrollments: Vec<(EnrollmentStatus, bool)> = sequence_enrollment::Entity::find()
            .order_by_asc(sequence_enrollment::Column::Id)
            .all(ctx.conn())
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.status, e.disenrolled_at.is_some()))
            .collect();
        let state = (
            ctx.contacts().await.len(),
            c.email.clone(),
            c.line_id.is_some(),
            ctx.numbers(c.id).await.len(),
            enrollments,
            ctx.count("SELECT count(*) FROM contact_tags").await,
            ctx.count("SELECT count(*) FROM powerdialer_items").await,
            ctx.count("SELECT count(*) FROM contact_notes").await,
        );
        runs.push((shapes, state));
    }
    assert_eq!(runs[0], runs[1]);
    let (shapes, state) = &runs[0];
    assert_eq!(shapes[0].0, IntakeStatus::Created);
    assert_eq!(shapes[1].0, IntakeStatus::Merged);
    assert_eq!(shapes[3].0, IntakeStatus::Duplicate);
    assert_eq!(shapes[4].0, IntakeStatus::Updated);
    assert_eq!(state.1.as_deref(), Some("y@example.com"));
    assert_eq!(
        state.4,
        vec![
            (EnrollmentStatus::Disenrolled, true),
            (EnrollmentStatus::Active, false)
        ]
    );
}

/// Every column of a contact lands in its own place, on creation and on a forced update,
/// and a blank stays NULL (the contacts' statement binds nulls through a mask, since an
/// array parameter cannot hold one): each text field gets a value of its own name.
#[tokio::test]
async fn each_column_of_a_contact_is_written_in_its_place_and_blanks_stay_null() {
    use shared::contact_fields::{ContactText, TextField};
    let ctx = Ctx::new().await;
    let owner = ctx.user("Bo", true, true).await;
    let line = ctx.named(Catalog::Line, "Main").await;
    let disposition = ctx.named(Catalog::Disposition, "New").await;
    let text = |round: &str| {
        ContactText::read(|field| {
            Some(match field {
                TextField::Email => format!("{round}@example.com"),
                TextField::Website => format!("https://example.com/{round}"),
                TextField::Name => format!("{round} Name"),
                TextField::FirstName => round.to_owned(),
                TextField::LastName => "Name".to_owned(),
                TextField::State => "CA".to_owned(),
                TextField::Country => "US".to_owned(),
                f => format!("{round} {f}"),
            })
        })
    };
    // Only the number: every optional column NULL but what the number gives.
    let id = run(&ctx, lead("818 123 4567"))
        .await
        .contact_id
        .expect("contact");
    let c = ctx.contact(id).await;
    let given = ContactText::read(|field| c.text(field));
    let derived = [TextField::City, TextField::State, TextField::Country];
    for (field, value) in given.given() {
        assert!(
            derived.contains(&field),
            "{field} = {value:?} on a bare lead"
        );
    }
    assert_eq!(
        (
            c.date_of_birth,
            c.owner_id,
            c.line_id,
            c.disposition_status_id
        ),
        (None, None, None, None)
    );

    for (round, date, zone) in [
        ("first", (1990, 12, 10), chrono_tz::America::Los_Angeles),
        ("second", (1985, 1, 31), chrono_tz::Europe::Paris),
    ] {
        let mut l = lead("818 123 4567");
        l.fields = text(round);
        l.date_of_birth = NaiveDate::from_ymd_opt(date.0, date.1, date.2);
        l.timezone = Some(zone);
        l.links.user_id = Some(owner);
        l.links.line_id = Some(line);
        l.links.disposition_status_id = Some(disposition);
        l.flags.force_update = true;
        assert_eq!(run(&ctx, l).await.contact_id, Some(id));
        let c = ctx.contact(id).await;
        assert_eq!(
            ContactText::read(|field| c.text(field)),
            text(round),
            "{round}"
        );
        assert_eq!(
            c.date_of_birth,
            NaiveDate::from_ymd_opt(date.0, date.1, date.2)
        );
        assert_eq!(c.timezone.as_deref(), Some(zone.name()), "{round}");
        assert_eq!(
            (c.owner_id, c.line_id, c.disposition_status_id),
            (Some(owner), Some(line), Some(disposition)),
            "{round}"
        );
        assert_eq!(
            (c.account_id, c.phone_number.as_str()),
            (ctx.account, "+18181234567")
        );
    }
}
