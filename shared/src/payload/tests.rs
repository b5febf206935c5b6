use super::*;
use crate::lead::ConsentChannel;
use proptest::prelude::*;
use serde_json::json;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
}

fn now() -> chrono::DateTime<chrono::Utc> {
    today().and_hms_opt(18, 0, 0).expect("time").and_utc()
}

fn ctx() -> ParseContext {
    ParseContext {
        region: Region::US,
        today: today(),
        now: now(),
    }
}

fn parse(fields: Value) -> Result<Lead, FieldErrors> {
    let Value::Object(fields) = fields else {
        panic!("fields must be an object");
    };
    RawLead { fields }.parse(&ctx())
}

/// `fields` plus a valid primary number, so a case only fails on what it tests.
fn with_phone(mut fields: Value) -> Value {
    if let Value::Object(map) = &mut fields {
        map.entry("phone_number").or_insert(json!("8181234567"));
    }
    fields
}

/// What a case expects.
enum Expect {
    /// Accepted, and the lead's JSON has this value under this key (`null` = absent).
    Field(&'static str, Value),
    /// Rejected with exactly these failing fields.
    Errors(&'static [&'static str]),
}
use Expect::{Errors, Field};

/// The lead as the worker sees it (its queue JSON), to compare one field at a time.
fn lead_json(lead: &Lead) -> Value {
    serde_json::to_value(lead).expect("lead serializes")
}

fn check(name: &str, fields: Value, expect: Expect) {
    let result = parse(with_phone(fields));
    match (expect, result) {
        (Field(key, want), Ok(lead)) => {
            let got = lead_json(&lead).get(key).cloned().unwrap_or(Value::Null);
            assert_eq!(got, want, "case {name}: field {key}");
        }
        (Errors(want), Err(errors)) => {
            let got: Vec<&str> = errors.fields().collect();
            assert_eq!(got, want, "case {name}: failing fields ({errors:?})");
        }
        (Field(..), Err(errors)) => panic!("case {name}: expected a lead, got {errors:?}"),
        (Errors(want), Ok(lead)) => panic!("case {name}: expected {want:?} to fail, got {lead:?}"),
    }
}

#[test]
fn every_field_rule_and_alias() {
    let long = "x".repeat(256);
    let cases: Vec<(&str, Value, Expect)> = vec![
        // phone_number
        (
            "phone missing",
            json!({"phone_number": null}),
            Errors(&["phone_number"]),
        ),
        (
            "phone empty",
            json!({"phone_number": "  "}),
            Errors(&["phone_number"]),
        ),
        (
            "phone as number",
            json!({"phone_number": 8181234567_u64}),
            Field("phone_number", json!("+18181234567")),
        ),
        (
            "phone bool",
            json!({"phone_number": true}),
            Errors(&["phone_number"]),
        ),
        (
            "phone array",
            json!({"phone_number": ["8181234567"]}),
            Errors(&["phone_number"]),
        ),
        // plain text fields
        (
            "name",
            json!({"name": "  John Doe "}),
            Field("name", json!("John Doe")),
        ),
        (
            "first_name",
            json!({"first_name": "John"}),
            Field("first_name", json!("John")),
        ),
        (
            "last_name",
            json!({"last_name": "Doe"}),
            Field("last_name", json!("Doe")),
        ),
        (
            "company_name number",
            json!({"company_name": 3}),
            Field("company_name", json!("3")),
        ),
        (
            "lead_source",
            json!({"lead_source": "Google Ads"}),
            Field("lead_source", json!("Google Ads")),
        ),
        (
            "source",
            json!({"source": "form"}),
            Field("source", json!("form")),
        ),
        (
            "address",
            json!({"address": "1234 First Street"}),
            Field("address", json!("1234 First Street")),
        ),
        (
            "city",
            json!({"city": "Los Angeles"}),
            Field("city", json!("Los Angeles")),
        ),
        ("state", json!({"state": "CA"}), Field("state", json!("CA"))),
        (
            "zipcode number",
            json!({"zipcode": 90045}),
            Field("zipcode", json!("90045")),
        ),
        (
            "country",
            json!({"country": "US"}),
            Field("country", json!("US")),
        ),
        (
            "csf1",
            json!({"csf1": "Custom data"}),
            Field("csf1", json!("Custom data")),
        ),
        (
            "csf2 float",
            json!({"csf2": 1.5}),
            Field("csf2", json!("1.5")),
        ),
        (
            "text empty is absent",
            json!({"city": ""}),
            Field("city", Value::Null),
        ),
        (
            "text 255 chars",
            json!({"name": "y".repeat(255)}),
            Field("name", json!("y".repeat(255))),
        ),
        ("text 256 chars", json!({"name": long}), Errors(&["name"])),
        (
            "text 256 multibyte",
            json!({"city": "é".repeat(256)}),
            Errors(&["city"]),
        ),
        ("text bool", json!({"state": true}), Errors(&["state"])),
        ("text object", json!({"csf1": {"a": 1}}), Errors(&["csf1"])),
        // email
        (
            "email",
            json!({"email": "John.Doe@Example.COM"}),
            Field("email", json!("John.Doe@example.com")),
        ),
        (
            "email plus",
            json!({"email": "a+tag@mail.co.uk"}),
            Field("email", json!("a+tag@mail.co.uk")),
        ),
        (
            "email no at",
            json!({"email": "john.example.com"}),
            Errors(&["email"]),
        ),
        (
            "email no tld",
            json!({"email": "john@localhost"}),
            Errors(&["email"]),
        ),
        (
            "email two at",
            json!({"email": "a@b@example.com"}),
            Errors(&["email"]),
        ),
        (
            "email space",
            json!({"email": "jo hn@example.com"}),
            Errors(&["email"]),
        ),
        (
            "email double dot",
            json!({"email": "john..doe@example.com"}),
            Errors(&["email"]),
        ),
        // date_of_birth
        (
            "dob slashes",
            json!({"date_of_birth": "05/17/1990"}),
            Field("date_of_birth", json!("1990-05-17")),
        ),
        (
            "dob dashes",
            json!({"date_of_birth": "05-17-1990"}),
            Field("date_of_birth", json!("1990-05-17")),
        ),
        (
            "dob iso",
            json!({"date_of_birth": "1990-05-17"}),
            Field("date_of_birth", json!("1990-05-17")),
        ),
        (
            "dob one digit",
            json!({"date_of_birth": "5/7/1990"}),
            Field("date_of_birth", json!("1990-05-07")),
        ),
        (
            "dob leap day",
            json!({"date_of_birth": "02/29/2000"}),
            Field("date_of_birth", json!("2000-02-29")),
        ),
        (
            "dob today",
            json!({"date_of_birth": "11/25/2026"}),
            Field("date_of_birth", json!("2026-11-25")),
        ),
        (
            "dob not leap",
            json!({"date_of_birth": "02/29/2001"}),
            Errors(&["date_of_birth"]),
        ),
        (
            "dob month 13",
            json!({"date_of_birth": "13/01/1990"}),
            Errors(&["date_of_birth"]),
        ),
        (
            "dob placeholder",
            json!({"date_of_birth": "MM/DD/YYYY"}),
            Errors(&["date_of_birth"]),
        ),
        (
            "dob future",
            json!({"date_of_birth": "11/26/2026"}),
            Errors(&["date_of_birth"]),
        ),
        (
            "dob two-digit year",
            json!({"date_of_birth": "05/17/90"}),
            Errors(&["date_of_birth"]),
        ),
        (
            "dob european order",
            json!({"date_of_birth": "17/05/1990"}),
            Errors(&["date_of_birth"]),
        ),
        // timezone
        (
            "timezone",
            json!({"timezone": "America/Los_Angeles"}),
            Field("timezone", json!("America/Los_Angeles")),
        ),
        (
            "timezone any case",
            json!({"timezone": "america/new_york"}),
            Field("timezone", json!("America/New_York")),
        ),
        (
            "timezone utc",
            json!({"timezone": "UTC"}),
            Field("timezone", json!("UTC")),
        ),
        (
            "timezone abbreviation",
            json!({"timezone": "PST8PDX"}),
            Errors(&["timezone"]),
        ),
        (
            "timezone offset",
            json!({"timezone": "+02:00"}),
            Errors(&["timezone"]),
        ),
        // website
        (
            "website",
            json!({"website": "https://www.aloware.com"}),
            Field("website", json!("https://www.aloware.com")),
        ),
        (
            "website bare domain",
            json!({"website": "example.com"}),
            Field("website", json!("https://example.com")),
        ),
        (
            "website path",
            json!({"website": "http://example.com/a?b=1"}),
            Field("website", json!("http://example.com/a?b=1")),
        ),
        (
            "website empty",
            json!({"website": ""}),
            Field("website", Value::Null),
        ),
        (
            "website ftp",
            json!({"website": "ftp://example.com"}),
            Errors(&["website"]),
        ),
        (
            "website javascript",
            json!({"website": "javascript:alert(1)"}),
            Errors(&["website"]),
        ),
        (
            "website no dot",
            json!({"website": "localhost"}),
            Errors(&["website"]),
        ),
        (
            "website space",
            json!({"website": "exa mple.com"}),
            Errors(&["website"]),
        ),
        // notes
        (
            "notes",
            json!({"notes": "I agree to be contacted."}),
            Field("notes", json!("I agree to be contacted.")),
        ),
        (
            "notes 10000",
            json!({"notes": "n".repeat(10_000)}),
            Field("notes", json!("n".repeat(10_000))),
        ),
        (
            "notes 10001",
            json!({"notes": "n".repeat(10_001)}),
            Errors(&["notes"]),
        ),
        // ids and their aliases
        (
            "user_id number",
            json!({"user_id": 12}),
            Field("user_id", json!(12)),
        ),
        (
            "user_id string",
            json!({"user_id": " 12 "}),
            Field("user_id", json!(12)),
        ),
        (
            "ring_group_id",
            json!({"ring_group_id": "1234"}),
            Field("ring_group_id", json!(1234)),
        ),
        ("line_id", json!({"line_id": 7}), Field("line_id", json!(7))),
        (
            "campaign_id alias",
            json!({"campaign_id": "7"}),
            Field("line_id", json!(7)),
        ),
        (
            "line_id wins over alias",
            json!({"line_id": 7, "campaign_id": 8}),
            Field("line_id", json!(7)),
        ),
        (
            "sequence_id",
            json!({"sequence_id": 4567}),
            Field("sequence_id", json!(4567)),
        ),
        (
            "automation_id alias",
            json!({"automation_id": "4567"}),
            Field("sequence_id", json!(4567)),
        ),
        ("tag_id", json!({"tag_id": "3"}), Field("tag_id", json!(3))),
        (
            "disposition_status_id",
            json!({"disposition_status_id": 9}),
            Field("disposition_status_id", json!(9)),
        ),
        (
            "disposition_id alias",
            json!({"disposition_id": "9"}),
            Field("disposition_status_id", json!(9)),
        ),
        ("id zero", json!({"user_id": 0}), Errors(&["user_id"])),
        ("id negative", json!({"tag_id": -3}), Errors(&["tag_id"])),
        ("id fraction", json!({"tag_id": 1.5}), Errors(&["tag_id"])),
        (
            "id string fraction",
            json!({"line_id": "1.0"}),
            Errors(&["line_id"]),
        ),
        (
            "id words",
            json!({"ring_group_id": "abc"}),
            Errors(&["ring_group_id"]),
        ),
        (
            "id too large",
            json!({"user_id": "99999999999999999999"}),
            Errors(&["user_id"]),
        ),
        (
            "alias error names the alias",
            json!({"campaign_id": "x"}),
            Errors(&["campaign_id"]),
        ),
        (
            "id bool",
            json!({"sequence_id": true}),
            Errors(&["sequence_id"]),
        ),
        // booleans, every spelling
        (
            "bool true",
            json!({"force_update": true}),
            Field("force_update", json!(true)),
        ),
        (
            "bool false",
            json!({"force_update": false}),
            Field("force_update", json!(false)),
        ),
        (
            "bool 1",
            json!({"force_update_sequence": 1}),
            Field("force_update_sequence", json!(true)),
        ),
        (
            "bool 0",
            json!({"force_update_sequence": 0}),
            Field("force_update_sequence", json!(false)),
        ),
        (
            "bool \"1\"",
            json!({"check_available_users": "1"}),
            Field("check_available_users", json!(true)),
        ),
        (
            "bool \"0\"",
            json!({"check_available_users": "0"}),
            Field("check_available_users", json!(false)),
        ),
        (
            "bool \"true\"",
            json!({"add_to_powerdialer": "true"}),
            Field("add_to_powerdialer", json!(true)),
        ),
        (
            "bool \"False\"",
            json!({"add_to_powerdialer": "False"}),
            Field("add_to_powerdialer", json!(false)),
        ),
        (
            "bool yes",
            json!({"check_available_users_with_fallback": "yes"}),
            Field("check_available_users_with_fallback", json!(true)),
        ),
        (
            "bool no",
            json!({"check_available_users_with_fallback": "no"}),
            Field("check_available_users_with_fallback", json!(false)),
        ),
        (
            "bool on",
            json!({"distribute_to_ring_group": "on"}),
            Field("distribute_to_ring_group", json!(true)),
        ),
        (
            "bool off",
            json!({"distribute_to_ring_group": "off"}),
            Field("distribute_to_ring_group", json!(false)),
        ),
        (
            "bool absent",
            json!({}),
            Field("force_update", json!(false)),
        ),
        (
            "bool right_group alias",
            json!({"distribute_to_right_group": true}),
            Field("distribute_to_ring_group", json!(true)),
        ),
        (
            "bool 2",
            json!({"force_update": 2}),
            Errors(&["force_update"]),
        ),
        (
            "bool maybe",
            json!({"force_update": "maybe"}),
            Errors(&["force_update"]),
        ),
        (
            "bool alias error",
            json!({"distribute_to_right_group": "si"}),
            Errors(&["distribute_to_right_group"]),
        ),
        // powerdialer_position
        (
            "position default",
            json!({}),
            Field("powerdialer_position", json!("top")),
        ),
        (
            "position top",
            json!({"powerdialer_position": "top"}),
            Field("powerdialer_position", json!("top")),
        ),
        (
            "position bottom",
            json!({"powerdialer_position": "Bottom"}),
            Field("powerdialer_position", json!("bottom")),
        ),
        (
            "position middle",
            json!({"powerdialer_position": "middle"}),
            Errors(&["powerdialer_position"]),
        ),
        // other_phone_numbers
        (
            "other objects",
            json!({"other_phone_numbers": [{"label": "mobile", "phone_number": "(818) 740-5020"}]}),
            Field(
                "other_phone_numbers",
                json!([{"label": "mobile", "phone_number": "+18187405020"}]),
            ),
        ),
        (
            "other pairs",
            json!({"other_phone_numbers": [["work", "+44 20 7946 0958"]]}),
            Field(
                "other_phone_numbers",
                json!([{"label": "work", "phone_number": "+442079460958"}]),
            ),
        ),
        (
            "other no label",
            json!({"other_phone_numbers": [{"phone_number": 8187405020_u64}]}),
            Field(
                "other_phone_numbers",
                json!([{"label": null, "phone_number": "+18187405020"}]),
            ),
        ),
        (
            "other form indexes",
            json!({"other_phone_numbers": {"3": {"phone_number": "8187405020"}}}),
            Field(
                "other_phone_numbers",
                json!([{"label": null, "phone_number": "+18187405020"}]),
            ),
        ),
        (
            "other missing number",
            json!({"other_phone_numbers": [{"label": "mobile"}]}),
            Errors(&["other_phone_numbers.0.phone_number"]),
        ),
        (
            "other invalid number",
            json!({"other_phone_numbers": [{"phone_number": "8187405020"}, {"phone_number": "123"}]}),
            Errors(&["other_phone_numbers.1.phone_number"]),
        ),
        (
            "other pair invalid",
            json!({"other_phone_numbers": [["home", "12"]]}),
            Errors(&["other_phone_numbers.0.1"]),
        ),
        (
            "other not array",
            json!({"other_phone_numbers": true}),
            Errors(&["other_phone_numbers"]),
        ),
        (
            "other bad item",
            json!({"other_phone_numbers": [["a", "b", "c"]]}),
            Errors(&["other_phone_numbers.0"]),
        ),
        (
            "other too many",
            json!({"other_phone_numbers": vec!["8187405020"; 21]}),
            Errors(&["other_phone_numbers"]),
        ),
        // a body can only set documented fields
        (
            "unknown fields ignored",
            json!({"account_id": 99, "status": "created", "intake_id": "x", "foo": [1]}),
            Field("phone_number", json!("+18181234567")),
        ),
    ];
    assert!(cases.len() >= 60, "{} cases", cases.len());
    for (name, fields, expect) in cases {
        check(name, fields, expect);
    }
}

#[test]
fn real_world_phone_formats() {
    let accepted = [
        ("8181234567", "+18181234567"),
        ("(818) 123-4567", "+18181234567"),
        ("818-123-4567", "+18181234567"),
        ("818.123.4567", "+18181234567"),
        ("818 123 4567", "+18181234567"),
        ("+1 818-740-5020", "+18187405020"),
        ("1.818.740.5020", "+18187405020"),
        ("1 (818) 740-5020", "+18187405020"),
        ("+18187405020", "+18187405020"),
        ("1-818-740-5020", "+18187405020"),
        ("818 740 5020 ", "+18187405020"),
        ("011 44 20 7946 0958", "+442079460958"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+44 (0) 20 7946 0958", "+442079460958"),
        ("+1 (416) 555-0199", "+14165550199"),
        ("+61 2 9374 4000", "+61293744000"),
        ("+49 30 901820", "+4930901820"),
        ("+33 1 23 45 67 89", "+33123456789"),
        ("+52 55 1234 5678", "+525512345678"),
        ("+91 98765 43210", "+919876543210"),
        ("  (212) 555-0100  ", "+12125550100"),
        ("212/555/0100", "+12125550100"),
    ];
    for (input, want) in accepted {
        let lead = parse(json!({ "phone_number": input }))
            .unwrap_or_else(|e| panic!("{input:?} should be accepted: {e:?}"));
        assert_eq!(lead.phone_number.as_str(), want, "{input:?}");
    }
    let rejected = [
        "12345",
        "818123456",
        "81812345678",
        "+1 818 123 45678",
        "phone",
        "N/A",
        "+999 123 4567",
        "0000000000000000000",
        "++",
        "-",
    ];
    for input in rejected {
        let errors = parse(json!({ "phone_number": input }))
            .expect_err(&format!("{input:?} should be rejected"));
        assert_eq!(
            errors.get("phone_number"),
            Some(&["The phone number field must be a valid phone number.".to_owned()][..]),
            "{input:?}"
        );
    }
}

#[test]
fn the_public_example_payload_is_accepted() {
    let body = br#"{
        "api_token": "31B1B33D",
        "phone_number": "8181234567",
        "other_phone_numbers": [{"label":"mobile", "phone_number": "8181234567"}],
        "company_name": "Aloware",
        "name": "John Doe",
        "first_name": "John",
        "last_name": "Doe",
        "lead_source": "Google Ads",
        "email": "john.doe@gmail.com",
        "date_of_birth": "05/17/1990",
        "timezone": "America/Los_Angeles",
        "city": "Los Angeles", "state": "CA",
        "zipcode": "90045",
        "country": "US",
        "address": "1234 First Street",
        "website": "https://www.aloware.com",
        "notes": "This is a test note",
        "csf1": "Custom data",
        "csf2": "Custom data",
        "force_update": true,
        "force_update_sequence": false,
        "distribute_to_ring_group": true,
        "ring_group_id": "1234",
        "check_available_users": true,
        "add_to_powerdialer": true,
        "powerdialer_position": "bottom",
        "line_id": "1234",
        "automation_id": "4567",
        "user_id": "1234",
        "tag_id": "1234",
        "disposition_status_id": "1234"
    }"#;
    let mut raw = RawLead::from_json(body).expect("json");
    assert_eq!(raw.take_token().as_deref(), Some("31B1B33D"));
    let lead = raw
        .parse(&ctx())
        .expect("the public example is a valid lead");
    assert_eq!(lead.phone_number.as_str(), "+18181234567");
    assert_eq!(lead.date_of_birth, NaiveDate::from_ymd_opt(1990, 5, 17));
    assert_eq!(lead.timezone, Some(chrono_tz::America::Los_Angeles));
    assert_eq!(lead.links.sequence_id, Some(4567));
    assert_eq!(lead.links.ring_group_id, Some(1234));
    assert!(lead.flags.force_update && lead.flags.distribute_to_ring_group);
    assert_eq!(lead.powerdialer_position, PowerdialerPosition::Bottom);
    assert!(raw.into_payload().get(TOKEN_FIELD).is_none());
}

#[test]
fn every_failing_field_is_reported_at_once_in_laravel_shape() {
    let errors = parse(json!({
        "email": "nope",
        "date_of_birth": "02/30/1990",
        "user_id": "x",
        "force_update": "perhaps",
        "other_phone_numbers": [{"label": "m"}],
    }))
    .expect_err("invalid");
    let body = serde_json::to_value(&errors).expect("serialize");
    assert_eq!(
        body,
        json!({
            "phone_number": ["The phone number field is required."],
            "other_phone_numbers.0.phone_number": ["The other phone numbers.0.phone number field is required."],
            "email": ["The email field must be a valid email address."],
            "date_of_birth": ["The date of birth field must be a valid date (MM/DD/YYYY, MM-DD-YYYY or YYYY-MM-DD)."],
            "user_id": ["The user id field must be an integer."],
            "force_update": ["The force update field must be true or false."],
        })
    );
}

#[test]
fn json_bodies() {
    assert_eq!(RawLead::from_json(b"").map(|r| r.fields.len()), Ok(0));
    assert_eq!(RawLead::from_json(b" \n").map(|r| r.fields.len()), Ok(0));
    assert_eq!(
        RawLead::from_json(b"{\"a\":"),
        Err(BodyError::MalformedJson)
    );
    assert_eq!(RawLead::from_json(b"[1]"), Err(BodyError::NotAnObject));
    assert_eq!(RawLead::from_json(b"\"x\""), Err(BodyError::NotAnObject));
    let errors = BodyError::MalformedJson.into_field_errors();
    assert_eq!(
        serde_json::to_value(&errors).expect("ser"),
        json!({"body": ["The body must be valid JSON."]})
    );
}

#[test]
fn form_bodies_nest_like_php() {
    let raw = RawLead::from_form(
        b"phone_number=%28818%29+123-4567&other_phone_numbers%5B0%5D%5Bphone_number%5D=818.740.5020\
          &other_phone_numbers[0][label]=Mobile&other_phone_numbers[1][]=Work\
          &other_phone_numbers[1][]=%2B44+20+7946+0958&force_update=1&tag_id=5&a[b=literal&x[]=1&x[]=2",
    );
    assert_eq!(
        raw.into_payload(),
        json!({
            "phone_number": "(818) 123-4567",
            "other_phone_numbers": {
                "0": {"phone_number": "818.740.5020", "label": "Mobile"},
                "1": ["Work", "+44 20 7946 0958"],
            },
            "force_update": "1",
            "tag_id": "5",
            "a[b": "literal",
            "x": ["1", "2"],
        })
    );
    let lead = RawLead::from_form(
        b"phone_number=8181234567&other_phone_numbers[0][phone_number]=8187405020\
          &other_phone_numbers[0][label]=Mobile&other_phone_numbers[1][]=Work\
          &other_phone_numbers[1][]=%2B442079460958&distribute_to_right_group=on&campaign_id=4",
    )
    .parse(&ctx())
    .expect("valid form");
    assert_eq!(
        lead_json(&lead)["other_phone_numbers"],
        json!([
            {"label": "Mobile", "phone_number": "+18187405020"},
            {"label": "Work", "phone_number": "+442079460958"},
        ])
    );
    assert!(lead.flags.distribute_to_ring_group);
    assert_eq!(lead.links.line_id, Some(4));
}

#[test]
fn form_errors_name_the_posted_index() {
    let errors = RawLead::from_form(b"phone_number=8181234567&other_phone_numbers[5][label]=x")
        .parse(&ctx())
        .expect_err("missing number");
    assert_eq!(
        errors.fields().collect::<Vec<_>>(),
        ["other_phone_numbers.5.phone_number"]
    );
}

#[test]
fn the_body_wins_over_the_query_and_the_token_is_taken_out() {
    let query = RawLead::from_form(b"api_token=lit_q&phone_number=2125550100&city=Query");
    let mut raw = RawLead::from_json(br#"{"phone_number":"8181234567","api_token":""}"#)
        .expect("json")
        .with_query(query);
    // A blank body field is no field: the query's value counts.
    assert_eq!(raw.take_token().as_deref(), Some("lit_q"));
    let lead = raw.parse(&ctx()).expect("valid");
    assert_eq!(lead.phone_number.as_str(), "+18181234567");
    assert_eq!(lead.fields.city.as_deref(), Some("Query"));

    let mut raw =
        RawLead::from_form(b"phone_number=1").with_query(RawLead::from_form(b"api_token=lit_q"));
    assert_eq!(raw.take_token().as_deref(), Some("lit_q"));
    assert_eq!(raw.into_payload(), json!({"phone_number": "1"}));
}

#[test]
fn the_account_region_reads_national_numbers() {
    let gb = ParseContext {
        region: Region::parse("GB").expect("GB"),
        today: today(),
        now: now(),
    };
    let lead = RawLead::from_form(b"phone_number=020+7946+0958")
        .parse(&gb)
        .expect("valid");
    assert_eq!(lead.phone_number.as_str(), "+442079460958");
}

// ---- properties ----

/// Keys the parser knows, so random bodies reach every field rule: every field of the
/// contract, the token, and the label of an additional number.
fn keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = crate::mapping::field_names().collect();
    keys.extend(["api_token", "label"]);
    keys
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        "[0-9 ()+.-]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(keys()), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn form_key() -> impl Strategy<Value = String> {
    (
        prop::sample::select(keys()),
        prop::collection::vec(
            prop_oneof![Just(String::new()), "[0-9]{1,2}", "[a-z_]{1,12}"],
            0..4,
        ),
    )
        .prop_map(|(k, path)| {
            let mut key = k.to_owned();
            for seg in path {
                key.push_str(&format!("[{seg}]"));
            }
            key
        })
}

prop_compose! {
    fn us_number()(area in 200u32..1000, exchange in 200u32..1000, line in 0u32..10_000, style in 0usize..5)
        -> (String, String) {
        let e164 = format!("+1{area}{exchange}{line:04}");
        let human = match style {
            0 => format!("({area}) {exchange}-{line:04}"),
            1 => format!("{area}.{exchange}.{line:04}"),
            2 => format!("+1 {area} {exchange} {line:04}"),
            3 => format!("1-{area}-{exchange}-{line:04}"),
            _ => format!("{area}{exchange}{line:04}"),
        };
        (human, e164)
    }
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 .,'&-]{0,30}[A-Za-z0-9]"
}

fn bool_spelling(b: bool) -> impl Strategy<Value = Value> {
    let spellings: Vec<Value> = if b {
        vec![
            json!(true),
            json!(1),
            json!("1"),
            json!("true"),
            json!("yes"),
            json!("on"),
            json!("TRUE"),
        ]
    } else {
        vec![
            json!(false),
            json!(0),
            json!("0"),
            json!("false"),
            json!("no"),
            json!("off"),
        ]
    };
    prop::sample::select(spellings)
}

/// A valid lead and a JSON body that describes it in some accepted spelling.
fn valid_lead() -> impl Strategy<Value = (Lead, Value)> {
    (
        us_number(),
        prop::collection::vec((prop::option::of(text()), us_number(), any::<bool>()), 0..3),
        prop::option::of(text()),
        prop::option::of((
            "[a-z0-9_]{1,10}",
            "[a-z]{1,10}",
            prop::sample::select(vec!["com", "org", "io"]),
        )),
        prop::option::of((1920i32..2020, 1u32..13, 1u32..29, 0usize..3)),
        prop::option::of(prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())),
        prop::option::of(("[a-z]{1,10}", any::<bool>())),
        prop::option::of("[^\\x00\\n]{1,200}".prop_filter("non-blank", |s| !s.trim().is_empty())),
        prop::collection::vec(prop::option::of((1i64..i64::MAX, any::<bool>())), 6),
        prop::collection::vec(any::<bool>(), 6),
        any::<bool>(),
        0u32..3,
    )
        .prop_flat_map(
            |(phone, others, name, email, dob, tz, site, notes, ids, flags, bottom, alias)| {
                let flag_values: Vec<_> = flags.iter().map(|b| bool_spelling(*b)).collect();
                (
                    Just((
                        phone, others, name, email, dob, tz, site, notes, ids, flags, bottom, alias,
                    )),
                    flag_values,
                )
            },
        )
        .prop_map(
            |(
                (phone, others, name, email, dob, tz, site, notes, ids, flags, bottom, alias),
                flag_values,
            )| {
                let use_alias = alias == 1;
                let mut body = serde_json::Map::new();
                body.insert("phone_number".into(), json!(phone.0));
                let mut other_numbers = Vec::new();
                let mut other_json = Vec::new();
                for (label, number, as_pair) in &others {
                    let label = label.as_ref().map(|l| l.trim().to_owned());
                    other_numbers.push(OtherPhoneNumber {
                        label: label.clone(),
                        phone_number: PhoneNumber::from_e164(number.1.clone()).expect("e164"),
                    });
                    other_json.push(match (as_pair, &label) {
                        (true, Some(l)) => json!([l, number.0]),
                        _ => json!({"label": label, "phone_number": number.0}),
                    });
                }
                if !other_json.is_empty() {
                    body.insert("other_phone_numbers".into(), Value::Array(other_json));
                }
                let mut fields = ContactText::default();
                if let Some(n) = &name {
                    body.insert("name".into(), json!(n));
                    fields.name = Some(n.clone());
                }
                if let Some((local, domain, tld)) = &email {
                    body.insert(
                        "email".into(),
                        json!(format!("{local}@{}.{tld}", domain.to_uppercase())),
                    );
                    fields.email = Some(format!("{local}@{domain}.{tld}"));
                }
                if let Some((host, bare)) = &site {
                    let url = format!("https://{host}.com/p");
                    body.insert(
                        "website".into(),
                        json!(if *bare {
                            format!("{host}.com/p")
                        } else {
                            url.clone()
                        }),
                    );
                    fields.website = Some(url);
                }
                let date_of_birth = dob.map(|(y, m, d, style)| {
                    let date = NaiveDate::from_ymd_opt(y, m, d).expect("date");
                    let text = match style {
                        0 => date.format("%m/%d/%Y").to_string(),
                        1 => date.format("%m-%d-%Y").to_string(),
                        _ => date.format("%Y-%m-%d").to_string(),
                    };
                    body.insert("date_of_birth".into(), json!(text));
                    date
                });
                if let Some(tz) = tz {
                    body.insert("timezone".into(), json!(tz.name()));
                }
                let notes = notes.map(|n| {
                    body.insert("notes".into(), json!(n));
                    n.trim().to_owned()
                });
                let names: [(&str, &str); 6] = [
                    ("user_id", "user_id"),
                    ("ring_group_id", "ring_group_id"),
                    ("line_id", "campaign_id"),
                    ("sequence_id", "automation_id"),
                    ("tag_id", "tag_id"),
                    ("disposition_status_id", "disposition_id"),
                ];
                let mut id_values = [None; 6];
                for (i, id) in ids.iter().enumerate() {
                    if let Some((id, as_string)) = id {
                        let key = if use_alias { names[i].1 } else { names[i].0 };
                        body.insert(
                            key.into(),
                            if *as_string {
                                json!(id.to_string())
                            } else {
                                json!(id)
                            },
                        );
                        id_values[i] = Some(*id);
                    }
                }
                let flag_names = [
                    "force_update",
                    "force_update_sequence",
                    if use_alias {
                        "distribute_to_right_group"
                    } else {
                        "distribute_to_ring_group"
                    },
                    "check_available_users",
                    "check_available_users_with_fallback",
                    "add_to_powerdialer",
                ];
                for (name, value) in flag_names.iter().zip(flag_values) {
                    body.insert((*name).into(), value);
                }
                let position = if bottom {
                    PowerdialerPosition::Bottom
                } else {
                    PowerdialerPosition::Top
                };
                if bottom || alias == 2 {
                    body.insert(
                        "powerdialer_position".into(),
                        json!(if bottom { "bottom" } else { "top" }),
                    );
                }
                let lead = Lead {
                    phone_number: PhoneNumber::from_e164(phone.1).expect("e164"),
                    other_phone_numbers: other_numbers,
                    fields,
                    date_of_birth,
                    timezone: tz,
                    notes,
                    links: LeadLinks {
                        user_id: id_values[0],
                        ring_group_id: id_values[1],
                        line_id: id_values[2],
                        sequence_id: id_values[3],
                        tag_id: id_values[4],
                        disposition_status_id: id_values[5],
                    },
                    flags: LeadFlags {
                        force_update: flags[0],
                        force_update_sequence: flags[1],
                        distribute_to_ring_group: flags[2],
                        check_available_users: flags[3],
                        check_available_users_with_fallback: flags[4],
                        add_to_powerdialer: flags[5],
                    },
                    powerdialer_position: position,
                    evidence: Default::default(),
                };
                (lead, Value::Object(body))
            },
        )
}

/// The same fields as a form body, with PHP-style keys.
fn to_form(body: &Value) -> String {
    fn walk(prefix: &str, value: &Value, out: &mut form_urlencoded::Serializer<'_, String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::Null => {}
            Value::Bool(b) => {
                out.append_pair(prefix, if *b { "1" } else { "0" });
            }
            Value::Number(n) => {
                out.append_pair(prefix, &n.to_string());
            }
            Value::String(s) => {
                out.append_pair(prefix, s);
            }
        }
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    walk("", body, &mut out);
    out.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(raw) = RawLead::from_json(&body) {
            let _ = raw.parse(&ctx());
        }
        let mut raw = RawLead::from_form(&body);
        let _ = raw.take_token();
        let _ = raw.parse(&ctx());
    }

    #[test]
    fn arbitrary_json_objects_never_panic(
        fields in prop::collection::vec((prop::sample::select(keys()), arb_json()), 0..12)
    ) {
        let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let body = serde_json::to_vec(&Value::Object(map)).expect("ser");
        let mut raw = RawLead::from_json(&body).expect("an object");
        let _ = raw.take_token();
        if let Err(errors) = raw.parse(&ctx()) {
            prop_assert!(!errors.is_empty());
            serde_json::to_string(&errors).expect("errors serialize");
        }
    }

    #[test]
    fn arbitrary_form_bodies_never_panic(
        pairs in prop::collection::vec((form_key(), ".{0,16}"), 0..16)
    ) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let raw = RawLead::from_form(body.as_bytes());
        let _ = raw.parse(&ctx());
    }

    #[test]
    fn valid_json_leads_round_trip((lead, body) in valid_lead()) {
        let raw = RawLead::from_json(&serde_json::to_vec(&body).expect("ser")).expect("object");
        let parsed = raw.parse(&ctx()).map_err(|e| TestCaseError::fail(format!("{e:?} for {body}")))?;
        prop_assert_eq!(&parsed, &lead);
        // …and the queue's JSON form carries it to the worker unchanged.
        let wire = serde_json::to_string(&parsed).expect("ser");
        prop_assert_eq!(serde_json::from_str::<Lead>(&wire).expect("de"), lead);
    }

    #[test]
    fn valid_form_leads_round_trip((lead, body) in valid_lead()) {
        let form = to_form(&body);
        let parsed = RawLead::from_form(form.as_bytes())
            .parse(&ctx())
            .map_err(|e| TestCaseError::fail(format!("{e:?} for {form}")))?;
        prop_assert_eq!(parsed, lead);
    }
}

mod fuzz;

#[test]
fn a_nul_character_in_text_is_refused_as_postgresql_cannot_store_it() {
    let errors =
        parse(with_phone(json!({"first_name": "Ada\0", "notes": "x\0y"}))).expect_err("refused");
    assert_eq!(
        errors.get("first_name"),
        Some(&["The first name field must not contain a NUL character.".to_owned()][..])
    );
    assert!(errors.get("notes").is_some());
}

#[test]
fn consent_is_read_with_its_evidence() {
    let lead = parse(json!({
        "phone_number": "818 123 4567",
        "consent": {
            "channels": ["sms", "call", "sms"],
            "text": "I agree to be contacted by Acme at this number.",
            "given_at": "2026-11-25T17:59:00-00:00",
            "source_url": "https://acme.example/quote",
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
            "seller": "Acme"
        },
        "trustedform_cert_url": "https://cert.trustedform.com/0123456789abcdef0123456789ABCDEF01234567",
        "leadid_token": "a1b2c3d4-e5f6-4a5b-8c7d-0e1f2a3b4c5d"
    }))
    .expect("valid");
    let c = lead.evidence.consent.expect("consent");
    assert_eq!(c.channels, vec![ConsentChannel::Sms, ConsentChannel::Call]);
    assert_eq!(
        c.given_at.map(|t| t.to_rfc3339()),
        Some("2026-11-25T17:59:00+00:00".into())
    );
    assert_eq!(c.source_url.as_deref(), Some("https://acme.example/quote"));
    assert_eq!(c.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(c.seller.as_deref(), Some("Acme"));
    assert_eq!(
        lead.evidence.trustedform_cert_url.as_deref(),
        Some("https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(
        lead.evidence.leadid_token.as_deref(),
        Some("A1B2C3D4-E5F6-4A5B-8C7D-0E1F2A3B4C5D")
    );
}

#[test]
fn consent_comes_from_a_form_post_and_from_flat_fields() {
    let form = RawLead::from_form(
        b"phone_number=8181234567&consent[channels][]=sms&consent[channels][]=call&consent[text]=Yes",
    )
    .parse(&ctx())
    .expect("form");
    let c = form.evidence.consent.expect("consent");
    assert_eq!(c.channels, vec![ConsentChannel::Sms, ConsentChannel::Call]);
    assert_eq!(c.text.as_deref(), Some("Yes"));
    assert_eq!(c.given_at, None, "the worker takes the received time");

    // A CSV column or a Google Ads field cannot nest: consent_<key>, channels as a list.
    let flat = parse(
        json!({"phone_number": "818 123 4567", "consent_channels": "sms, email",
                            "consent_ip": "2001:db8::1"}),
    )
    .expect("flat");
    let c = flat.evidence.consent.expect("consent");
    assert_eq!(c.channels, vec![ConsentChannel::Sms, ConsentChannel::Email]);
    assert_eq!(c.ip.as_deref(), Some("2001:db8::1"));
    assert!(
        parse(json!({"phone_number": "818 123 4567"}))
            .expect("none")
            .evidence
            .consent
            .is_none()
    );
}

#[test]
fn bad_consent_values_name_each_field() {
    let errors = parse(json!({
        "phone_number": "818 123 4567",
        "consent": {"channels": ["fax"], "given_at": "yesterday", "source_url": "not a url",
                    "ip": "999.1.1.1"},
        "trustedform_cert_url": "https://example.com/cert",
        "leadid_token": "12345"
    }))
    .expect_err("invalid");
    for field in [
        "consent.channels",
        "consent.given_at",
        "consent.source_url",
        "consent.ip",
        "trustedform_cert_url",
        "leadid_token",
    ] {
        assert!(errors.get(field).is_some(), "{field}: {errors:?}");
    }
    let errors = parse(json!({"phone_number": "818 123 4567", "consent": {"text": "ok"}}))
        .expect_err("no channels");
    assert_eq!(
        errors.get("consent.channels"),
        Some(&["The consent.channels field is required.".to_owned()][..])
    );
    let errors = parse(json!({"phone_number": "818 123 4567", "consent": "yes"}))
        .expect_err("not an object");
    assert!(errors.get("consent").is_some());
    let errors = parse(json!({"phone_number": "818 123 4567",
                              "consent": {"channels": "sms", "given_at": "2026-11-26T18:00:00Z"}}))
    .expect_err("a day after receipt");
    assert!(errors.get("consent.given_at").is_some());
}
