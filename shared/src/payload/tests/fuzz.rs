//! A fuzz target for the payload parser, as property tests: arbitrary bytes (random, and
//! JSON or form bodies mangled byte by byte) and arbitrary JSON values go through every
//! entry point the receiver calls, in the receiver's order. Whatever arrives, the parser
//! never panics, answers within a bounded time, and gives either a lead that obeys the
//! contract or errors keyed by the fields the client sent.
//!
//! In the test suite each property runs [`SUITE_CASES`] cases. `scripts/fuzz [SECONDS]`
//! runs them in a release build with `PROPTEST_CASES` raised and `FUZZ_SECONDS` set: each
//! property then runs batches of cases until the cases or the seconds are used up.

use super::{arb_json, ctx, keys};
use crate::lead::Lead;
use crate::payload::{BodyError, FieldErrors};
use crate::payload::{MAX_NOTES_CHARS, MAX_OTHER_PHONE_NUMBERS, MAX_TEXT_CHARS, RawLead};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

/// Cases per property in the test suite (kept small so the suite stays fast).
const SUITE_CASES: u32 = 64;
/// Cases per batch when running against the clock.
const BATCH_CASES: u32 = 256;
/// Most CPU time any one input may take to parse. Far above what a parse costs (well under
/// a millisecond): it only catches work that grows out of proportion with the input.
const CASE_TIME_LIMIT: Duration = Duration::from_secs(2);

/// CPU time this thread has run, so a loaded machine does not count against a case
/// (`/proc/thread-self/schedstat`; wall time where that is missing).
fn thread_time(wall: Instant) -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(|| wall.elapsed(), Duration::from_nanos)
}

/// Runs `test` over `strategy` for `PROPTEST_CASES` cases (default [`SUITE_CASES`]), or,
/// with `FUZZ_SECONDS`, in batches until those seconds pass or the cases are used up.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let env = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("PROPTEST_CASES").map_or(u64::from(SUITE_CASES), |n| n.max(1));
    let deadline = env("FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let batch = match deadline {
        Some(_) => u64::from(BATCH_CASES).min(cases),
        None => cases,
    };
    let config = Config {
        cases: u32::try_from(batch).unwrap_or(u32::MAX),
        failure_persistence: None,
        ..Config::default()
    };
    let started = Instant::now();
    let mut done = 0u64;
    while done < cases {
        // A runner counts its successes for good: each batch gets a new one (a new seed).
        match TestRunner::new(config.clone()).run(&strategy, &test) {
            Ok(()) => {}
            Err(TestError::Fail(reason, input)) => {
                panic!("{name}: {reason}\nminimal failing input: {input:#?}")
            }
            Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
        }
        done += batch;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    if deadline.is_some() {
        println!(
            "{name}: {done} cases in {:.1} s, no failure",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Names a field error may carry: a field of the contract (or an alias the client used),
/// an item of `other_phone_numbers`, or `body` when the body is not a JSON object.
fn field_known(field: &str) -> bool {
    field == "body"
        || crate::mapping::is_field(field)
        || field.starts_with("other_phone_numbers.")
        || field
            .strip_prefix("consent.")
            .is_some_and(|k| super::super::consent::CONSENT_KEYS.contains(&k))
}

/// What every answer of the parser must be: a lead obeying the contract's limits, or a
/// non-empty list of errors keyed by known fields, each with at least one message.
fn check_answer(answer: &Result<Lead, FieldErrors>) -> Result<(), TestCaseError> {
    match answer {
        Ok(lead) => {
            prop_assert!(lead.phone_number.as_str().starts_with('+'));
            prop_assert!(lead.other_phone_numbers.len() <= MAX_OTHER_PHONE_NUMBERS);
            let f = &lead.fields;
            for (_, text) in f.given() {
                prop_assert!(!text.is_empty() && text.trim() == text);
                prop_assert!(text.chars().count() <= MAX_TEXT_CHARS);
            }
            if let Some(notes) = &lead.notes {
                prop_assert!(notes.chars().count() <= MAX_NOTES_CHARS);
            }
            let l = &lead.links;
            for id in [
                l.user_id,
                l.ring_group_id,
                l.line_id,
                l.sequence_id,
                l.tag_id,
                l.disposition_status_id,
            ]
            .into_iter()
            .flatten()
            {
                prop_assert!(id >= 1);
            }
            // The worker reads exactly what the receiver queued.
            let wire = serde_json::to_vec(lead).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Lead =
                serde_json::from_slice(&wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&back, lead);
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an error without a field");
            for field in errors.fields() {
                prop_assert!(field_known(field), "unknown error field {field:?}");
                let messages = errors.get(field).unwrap_or_default();
                prop_assert!(!messages.is_empty() && messages.iter().all(|m| !m.is_empty()));
            }
            let body =
                serde_json::to_value(errors).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(body.is_object());
        }
    }
    Ok(())
}

/// The receiver's path for one request: the body read as JSON or as a form, the query
/// string merged in, the token taken out, the lead parsed. Checks every answer and the
/// time it took.
fn receive(body: &[u8], query: &[u8]) -> Result<(), TestCaseError> {
    let wall = Instant::now();
    let started = thread_time(wall);
    let query = RawLead::from_form(query);
    for as_json in [true, false] {
        let read = if as_json {
            RawLead::from_json(body)
        } else {
            Ok(RawLead::from_form(body))
        };
        let answer = match read {
            Ok(raw) => {
                let mut raw = raw.with_query(query.clone());
                let _ = raw.take_token();
                let answer = raw.parse(&ctx());
                // The stored payload never keeps the token.
                let payload = raw.into_payload();
                prop_assert!(payload.get("api_token").is_none());
                answer
            }
            Err(error) => {
                prop_assert!(matches!(
                    error,
                    BodyError::MalformedJson | BodyError::NotAnObject
                ));
                Err(error.into_field_errors())
            }
        };
        check_answer(&answer)?;
    }
    let elapsed = thread_time(wall).saturating_sub(started);
    prop_assert!(
        elapsed < CASE_TIME_LIMIT,
        "{} body bytes took {elapsed:?}",
        body.len()
    );
    Ok(())
}

/// Any JSON value, with any keys: the field names the parser knows (so random values reach
/// every rule) and arbitrary text.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[0-9 ()+.-]{0,24}".prop_map(Value::String),
        "[ \t]{0,3}(true|false|yes|no|on|off|1|0|top|bottom|-?[0-9]{1,20})[ \t]{0,3}"
            .prop_map(Value::String),
    ];
    let key = prop_oneof![
        3 => prop::sample::select(keys()).prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[0-9]{1,3}",
    ];
    leaf.prop_recursive(5, 128, 24, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..24).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..24)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Bytes that are nearly a body: a JSON or form body with bytes replaced, inserted,
/// removed, or cut short, so the readers see every kind of almost-valid input.
fn mangled() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        prop::collection::vec((prop::sample::select(keys()), "[^&]{0,12}"), 0..8).prop_map(
            |pairs| {
                let mut form = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs {
                    form.append_pair(&format!("{k}[0][phone_number]"), &v);
                    form.append_pair(k, &v);
                }
                form.finish().into_bytes()
            }
        ),
    ];
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0u8..4);
    (body, prop::collection::vec(edit, 0..8)).prop_map(|(mut bytes, edits)| {
        for (at, byte, kind) in edits {
            let len = bytes.len();
            match kind {
                0 if len > 0 => bytes[at.index(len)] = byte,
                1 => bytes.insert(at.index(len + 1), byte),
                2 if len > 0 => {
                    bytes.remove(at.index(len));
                }
                3 => bytes.truncate(at.index(len + 1)),
                _ => {}
            }
        }
        bytes
    })
}

#[test]
fn arbitrary_bytes_get_a_lead_or_field_errors() {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4096),
        // Only the bytes that matter to JSON and form syntax, densely.
        prop::collection::vec(
            prop::sample::select(b"{}[]\":,&=%+ 0123456789abcdeftrun\\".to_vec()),
            0..2048
        ),
        mangled(),
    ];
    let query = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..256),
        mangled(),
    ];
    fuzz("arbitrary bytes", (bytes, query), |(body, query)| {
        receive(&body, &query)
    });
}

#[test]
fn arbitrary_json_values_get_a_lead_or_field_errors() {
    fuzz("arbitrary JSON", any_json(), |value| {
        let body = serde_json::to_vec(&value).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if !value.is_object() {
            prop_assert_eq!(RawLead::from_json(&body), Err(BodyError::NotAnObject));
        }
        receive(&body, b"")
    });
}

#[test]
fn arbitrary_objects_of_known_fields_get_a_lead_or_field_errors() {
    // Every key a field of the contract, every value anything: the rules themselves.
    let fields = prop::collection::vec((prop::sample::select(keys()), any_json()), 0..16);
    fuzz("arbitrary fields", fields, |fields| {
        let map: Map<String, Value> = fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let body = serde_json::to_vec(&Value::Object(map))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        receive(&body, b"")
    });
}

#[test]
fn pathological_bodies_are_answered_at_once() {
    let deep_array = "[".repeat(100_000);
    let deep_object = r#"{"a":"#.repeat(50_000);
    let deep_form = format!("other_phone_numbers{}=1", "[0]".repeat(10_000));
    let many_numbers = serde_json::json!({
        "phone_number": "8181234567",
        "other_phone_numbers": vec!["8181234567"; 10_000],
    })
    .to_string();
    let long_text = serde_json::json!({
        "phone_number": "8181234567",
        "notes": "x".repeat(60_000),
        "name": "é".repeat(30_000),
    })
    .to_string();
    let long_number = serde_json::json!({ "phone_number": "8".repeat(60_000) }).to_string();
    let invalid_utf8: Vec<u8> =
        [&b"{\"phone_number\":\"818"[..], &[0xff, 0xfe, 0xc0], b"\"}"].concat();
    for (name, body) in [
        ("100,000 [", deep_array.as_bytes()),
        ("50,000 nested objects", deep_object.as_bytes()),
        ("a form key 10,000 levels deep", deep_form.as_bytes()),
        ("10,000 other numbers", many_numbers.as_bytes()),
        ("long text", long_text.as_bytes()),
        ("a 60,000-digit number", long_number.as_bytes()),
        ("invalid UTF-8", invalid_utf8.as_slice()),
    ] {
        let result = receive(body, b"");
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert_eq!(
        RawLead::from_json(deep_array.as_bytes()),
        Err(BodyError::MalformedJson)
    );
    assert_eq!(
        RawLead::from_json(&invalid_utf8),
        Err(BodyError::MalformedJson)
    );
    let errors = RawLead::from_json(many_numbers.as_bytes())
        .expect("an object")
        .parse(&ctx())
        .expect_err("too many numbers");
    assert_eq!(errors.fields().collect::<Vec<_>>(), ["other_phone_numbers"]);
}
