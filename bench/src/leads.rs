//! The leads a run sends: number ranges that never collide by accident, the human formats a
//! repeat arrives in, the request bodies of each section, and their conversion to the
//! [`IntakeMessage`] the receiver would publish (through the same `RawLead` parsing).
//!
//! Numbers are NANP `+1 AAA EEE LLLL`. Pre-seeded contacts use exchanges 500–999, fresh
//! leads exchanges 200–499 split into namespaces, so a repeat of a pre-seeded contact is
//! always deliberate.

use anyhow::{Context, anyhow};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use shared::intake::{IntakeMessage, MESSAGE_VERSION};
use shared::payload::{ParseContext, RawLead};
use shared::phone::Region;
use uuid::Uuid;

/// Area codes in turn (416 is Canadian, so geo derivation sees two countries).
pub const AREA_CODES: [u32; 7] = [212, 310, 415, 416, 512, 617, 818];
/// Exchanges of pre-seeded contacts start here (see [`seeded_sql_expr`]).
const SEEDED_EXCHANGE: u64 = 500;
/// Exchanges of fresh leads: 60 per namespace, namespaces 0–4 from 200 up (below the
/// seeded range), the next ones from 999 down (above any seeded range the bench makes).
const FRESH_EXCHANGE: u64 = 200;
const NAMESPACE_EXCHANGES: u64 = 60;
/// Namespaces: 0–4 below the seeded exchanges, 5–11 above them (940–999 down to 580–639;
/// [`MAX_CONTACTS`] seeded contacts reach exchange 571).
pub const NAMESPACES: u64 = 12;
/// Most pre-seeded contacts a run may ask for (`--contacts`).
pub const MAX_CONTACTS: u64 = 5_000_000;

// Every namespace's exchanges lie inside 200–999, apart from the other namespaces' and from
// the seeded contacts' (checked when the bench is built).
const _: () = {
    let seeded_top = SEEDED_EXCHANGE + (MAX_CONTACTS - 1) / 7 / 10_000;
    let mut ns = 0;
    while ns < NAMESPACES {
        let lo = fresh_exchange(ns);
        let hi = lo + NAMESPACE_EXCHANGES - 1;
        assert!(lo >= FRESH_EXCHANGE && hi <= 999);
        assert!(hi < SEEDED_EXCHANGE || lo > seeded_top);
        let mut other = 0;
        while other < ns {
            let o = fresh_exchange(other);
            assert!(hi < o || lo > o + NAMESPACE_EXCHANGES - 1);
            other += 1;
        }
        ns += 1;
    }
};
/// Most fresh numbers one namespace holds.
pub const MAX_FRESH: u64 = 7 * 10_000 * NAMESPACE_EXCHANGES;

/// The ten national digits of pre-seeded contact `j`.
pub fn seeded_national(j: u64) -> String {
    let k = j / 7;
    format!(
        "{}{:03}{:04}",
        AREA_CODES[(j % 7) as usize],
        SEEDED_EXCHANGE + k / 10_000,
        k % 10_000
    )
}

/// [`seeded_national`] as a SQL expression over the bigint column `j`, in E.164.
pub fn seeded_sql_expr(j: &str) -> String {
    let codes = AREA_CODES.map(|c| c.to_string()).join(",");
    format!(
        "'+1' || (ARRAY[{codes}])[{j} % 7 + 1] || lpad(({SEEDED_EXCHANGE} + ({j} / 7) / 10000)::text, 3, '0') \
         || lpad((({j} / 7) % 10000)::text, 4, '0')"
    )
}

/// The ten national digits of fresh number `u` of namespace `ns` (one per backlog that may
/// share a database).
pub fn fresh_national(ns: u64, u: u64) -> String {
    let k = u / 7;
    format!(
        "{}{:03}{:04}",
        AREA_CODES[(u % 7) as usize],
        fresh_exchange(ns) + k / 10_000,
        k % 10_000
    )
}

/// The first exchange of namespace `ns` (see [`NAMESPACES`]).
const fn fresh_exchange(ns: u64) -> u64 {
    let below = (SEEDED_EXCHANGE - FRESH_EXCHANGE) / NAMESPACE_EXCHANGES;
    if ns < below {
        FRESH_EXCHANGE + ns * NAMESPACE_EXCHANGES
    } else {
        1000 - (ns - below + 1) * NAMESPACE_EXCHANGES
    }
}

/// A fixed-offset zone (`Etc/GMT±N`) where it is between 12:00 and 13:00 at `now`: inside
/// every calling window of the contact policy (§9) for the hours a run takes.
pub fn zone_at_noon(now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    let mut offset = (12 - i64::from(now.hour())).rem_euclid(24);
    if offset > 12 {
        offset -= 24;
    }
    // The IANA `Etc/GMT` names count the other way: Etc/GMT-5 is UTC+5.
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Formats in which people type a number; a repeat uses another one than its first
/// occurrence, so dedupe has to normalize.
const STYLES: usize = 5;

pub fn styled(national: &str, style: usize) -> String {
    let (a, e, l) = (&national[..3], &national[3..6], &national[6..]);
    match style % STYLES {
        0 => format!("{a}{e}{l}"),
        1 => format!("({a}) {e}-{l}"),
        2 => format!("+1 {a}-{e}-{l}"),
        3 => format!("1.{a}.{e}.{l}"),
        _ => format!("+1{a}{e}{l}"),
    }
}

/// Ids of one account's catalogs, which leads with actions name.
#[derive(Debug, Clone)]
pub struct Catalogs {
    pub account: i64,
    /// Users 0, 1, 3, 4 are available, user 2 is not.
    pub users: Vec<i64>,
    pub ring_group: i64,
    /// Members of the ring group: users 0, 1, 2.
    pub ring_members: Vec<i64>,
    pub tag: i64,
    pub line: i64,
    pub sequence: i64,
    pub token_id: i64,
    pub token: String,
}

/// How a list of leads is drawn.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Fresh-number namespace (backlogs sharing a database need different ones).
    pub namespace: u64,
    /// Pre-seeded contacts of the account that repeats may hit (0: none).
    pub seeded: u64,
    /// A third of the leads carry owner, tag, note and one of distribution, PowerDialer,
    /// sequence or line.
    pub actions: bool,
    pub rng_seed: u64,
}

/// One lead's request fields (without the token).
#[derive(Debug, Clone)]
pub struct LeadBody {
    pub fields: Map<String, Value>,
}

/// `n` leads: 80% new numbers, 20% repeats in another format (a quarter of those repeat a
/// pre-seeded contact when there are any, the rest an earlier lead of the list).
pub fn draw(n: usize, mix: Mix, c: &Catalogs) -> anyhow::Result<Vec<LeadBody>> {
    if n as u64 > MAX_FRESH {
        return Err(anyhow!("at most {MAX_FRESH} leads per backlog"));
    }
    if mix.namespace >= NAMESPACES {
        return Err(anyhow!("at most {NAMESPACES} fresh-number namespaces"));
    }
    let mut rng = StdRng::seed_from_u64(mix.rng_seed);
    // (national digits, style of the first occurrence)
    let mut fresh: Vec<(String, usize)> = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let repeat = i > 0 && rng.random_bool(0.2);
        let phone = if repeat {
            let other = 1 + rng.random_range(0..STYLES - 1);
            if mix.seeded > 0 && rng.random_bool(0.25) {
                // Pre-seeded contacts are stored in E.164 (style 4).
                styled(&seeded_national(rng.random_range(0..mix.seeded)), 4 + other)
            } else {
                let (national, style) = &fresh[rng.random_range(0..fresh.len())];
                styled(national, style + other)
            }
        } else {
            let national = fresh_national(mix.namespace, fresh.len() as u64);
            let style = i % STYLES;
            let s = styled(&national, style);
            fresh.push((national, style));
            s
        };
        let mut f = Map::new();
        f.insert("phone_number".into(), json!(phone));
        f.insert("first_name".into(), json!(format!("First{i}")));
        f.insert("last_name".into(), json!("Bench"));
        f.insert("email".into(), json!(format!("lead{i}@example.com")));
        f.insert("lead_source".into(), json!("benchmark"));
        if mix.actions && i % 3 == 0 {
            f.insert("user_id".into(), json!(c.users[i % c.users.len()]));
            f.insert("tag_id".into(), json!(c.tag));
            f.insert("notes".into(), json!("Agreed to be contacted."));
            match (i / 3) % 4 {
                0 => {
                    f.insert("ring_group_id".into(), json!(c.ring_group));
                    f.insert("distribute_to_ring_group".into(), json!(true));
                    f.insert("check_available_users".into(), json!(true));
                }
                1 => {
                    f.insert("add_to_powerdialer".into(), json!(true));
                }
                2 => {
                    f.insert("sequence_id".into(), json!(c.sequence));
                }
                _ => {
                    f.insert("line_id".into(), json!(c.line));
                }
            }
        }
        out.push(LeadBody { fields: f });
    }
    Ok(out)
}

/// The message the receiver would publish for `fields` sent with `c`'s token: parsed by the
/// same `RawLead` code, payload without the token.
pub fn to_message(fields: &Map<String, Value>, c: &Catalogs) -> anyhow::Result<IntakeMessage> {
    let bytes = serde_json::to_vec(fields).context("Failed to serialize a lead body")?;
    let mut raw = RawLead::from_json(&bytes).map_err(|e| anyhow!("Failed to read a lead: {e}"))?;
    let _token = raw.take_token();
    let lead = raw.parse(&ParseContext::now(Region::US)).map_err(|e| {
        anyhow!(
            "Failed to parse a generated lead: {}",
            serde_json::to_string(&e).unwrap_or_default()
        )
    })?;
    Ok(IntakeMessage {
        version: MESSAGE_VERSION,
        intake_id: Uuid::now_v7(),
        account_id: c.account,
        user_id: c.users[0],
        token_id: c.token_id,
        received_at: chrono::Utc::now(),
        lead,
        payload: raw.into_payload().into(),
    })
}

/// Pre-seeded numbers (E.164) that `bodies` repeat, without duplicates.
pub fn seeded_hits(bodies: &[IntakeMessage]) -> Vec<String> {
    let mut hits: Vec<String> = bodies
        .iter()
        .map(|m| m.lead.phone_number.as_str().to_owned())
        .filter(|e164| {
            e164.get(5..8)
                .and_then(|ex| ex.parse::<u64>().ok())
                .is_some_and(|ex| ex >= SEEDED_EXCHANGE)
        })
        .collect();
    hits.sort();
    hits.dedup();
    hits
}

/// The receiver section's request mix, as (content type, body, bearer token, expected
/// status): JSON and form-encoded, some with other numbers, the token in the body or in the
/// Authorization header, and about 10% invalid leads that must get 400.
pub struct MixedRequest {
    pub form: bool,
    pub body: Vec<u8>,
    pub bearer: bool,
    pub expect: u16,
}

pub fn receiver_mix(n: usize, c: &Catalogs, rng_seed: u64) -> Vec<MixedRequest> {
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let national = fresh_national(2, i as u64);
        let mut fields: Vec<(String, Value)> = vec![
            (
                "phone_number".into(),
                json!(styled(&national, rng.random_range(0..STYLES))),
            ),
            ("first_name".into(), json!(format!("Ada{i}"))),
            ("last_name".into(), json!("Lovelace")),
            ("email".into(), json!(format!("ada{i}@example.com"))),
            ("lead_source".into(), json!("bench")),
        ];
        let invalid = rng.random_bool(0.1);
        if invalid {
            match i % 3 {
                0 => fields.retain(|(k, _)| k != "phone_number"),
                1 => fields[0].1 = json!("12"),
                _ => fields[3].1 = json!("not-an-email"),
            }
        }
        let others = rng.random_bool(0.3);
        let bearer = rng.random_bool(0.25);
        let form = rng.random_bool(0.4);
        let other = styled(&fresh_national(2, (i + n) as u64), 1);
        let body = if form {
            let mut s = form_urlencoded::Serializer::new(String::new());
            if !bearer {
                s.append_pair("api_token", &c.token);
            }
            for (k, v) in &fields {
                s.append_pair(k, v.as_str().unwrap_or_default());
            }
            if others {
                s.append_pair("other_phone_numbers[0][label]", "work");
                s.append_pair("other_phone_numbers[0][phone_number]", &other);
            }
            s.finish().into_bytes()
        } else {
            let mut m: Map<String, Value> = fields.into_iter().collect();
            if !bearer {
                m.insert("api_token".into(), json!(c.token));
            }
            if others {
                m.insert(
                    "other_phone_numbers".into(),
                    json!([{"label": "work", "phone_number": other}]),
                );
            }
            serde_json::to_vec(&m).unwrap_or_default()
        };
        out.push(MixedRequest {
            form,
            body,
            bearer,
            expect: if invalid { 400 } else { 202 },
        });
    }
    out
}
