//! The console's pages besides the timeline: sign-in, the live overview, lead search, a
//! contact, dead letters with replay, webhook endpoints with their attempt log and replay,
//! and the signed-in user's tokens.

use super::html::{self, Tab, badge, esc, opt_time, time};
use super::{Ctx, Input, session};
use crate::web::respond::Body;
use crate::web::state::AppState;
use chrono::{DateTime, NaiveDate, Utc};
use hyper::{Response, StatusCode};
use leadctl::admin::webhooks::{self, Replay};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use shared::intake::IntakeStatus;
use shared::phone::{PhoneNumber, Region};
use shared::policy::Reason;
use std::fmt::Write as _;
use std::net::SocketAddr;
use uuid::Uuid;

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

async fn rows(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(stmt(sql, values)).await
}

/// `POST /console/sign-in`: a token for a session.
pub(super) async fn sign_in(state: &AppState, input: &Input, peer: SocketAddr) -> Response<Body> {
    if !session::same_origin(&input.headers) {
        return super::page_error(
            StatusCode::FORBIDDEN,
            "Sign in from the console's own page.",
        );
    }
    let token = input.form("token").map(str::to_owned);
    let principal =
        match crate::web::request::authenticate(state, token, &input.headers, peer).await {
            Ok(p) => p,
            Err(crate::web::error::ApiError::RateLimited(_)) => {
                return super::html(
                    StatusCode::TOO_MANY_REQUESTS,
                    html::sign_in(Some(
                        "Too many failed sign-ins from this address; wait a minute and try again.",
                    )),
                );
            }
            Err(crate::web::error::ApiError::Unavailable(_)) => {
                return super::page_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The token store is unavailable; try again shortly.",
                );
            }
            Err(_) => {
                return super::html(
                    StatusCode::UNAUTHORIZED,
                    html::sign_in(Some("That token is not valid (or it was revoked).")),
                );
            }
        };
    let label = rows(
        &state.db,
        "SELECT coalesce(label, token_prefix || '…') AS label FROM api_tokens WHERE id = $1",
        vec![principal.token_id.into()],
    )
    .await
    .ok()
    .and_then(|r| {
        r.first()
            .and_then(|r| r.try_get::<String>("", "label").ok())
    })
    .unwrap_or_else(|| format!("token {}", principal.token_id));
    match session::create(
        state,
        principal.account_id,
        principal.user_id,
        principal.token_id,
        label,
    )
    .await
    {
        Ok(id) => super::redirect(
            "/console",
            Some(session::set_cookie(
                Some(&id),
                session::behind_tls(&input.headers),
            )),
        ),
        Err(_) => super::page_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The session store (Redis) is unavailable; try again shortly.",
        ),
    }
}

/// How many of an account's newest intakes the overview reads at most: its cost stays
/// bounded however many leads the last hour brought; past it the figures say so.
const OVERVIEW_WINDOW: i64 = 5_000;

/// The overview's figures for `account`, as the live endpoint serves them, in one statement
/// over the account's newest intakes of the last hour (at most [`OVERVIEW_WINDOW`], read
/// newest first along `lead_intakes (account_id, received_at)`).
const FIGURES: &str = "
WITH recent AS (
    SELECT status::text AS status, received_at, processed_at, actions
    FROM lead_intakes
    WHERE account_id = $1 AND received_at > now() - interval '1 hour'
    ORDER BY received_at DESC
    LIMIT $2
)
SELECT
  (SELECT count(*) FROM recent) AS hour,
  (SELECT coalesce(json_object_agg(status, n), '{}') FROM
     (SELECT status, count(*) AS n FROM recent GROUP BY 1) s) AS by_status,
  (SELECT coalesce(json_object_agg(ago, n), '{}') FROM
     (SELECT (extract(epoch FROM date_trunc('minute', now()) - date_trunc('minute', received_at)) / 60)::int AS ago,
             count(*) AS n
      FROM recent WHERE received_at > date_trunc('minute', now()) - interval '29 minutes' GROUP BY 1) m) AS per_minute,
  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
     FROM recent WHERE received_at > now() - interval '5 minutes' AND processed_at IS NOT NULL) AS p50,
  (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at))
     FROM recent WHERE received_at > now() - interval '5 minutes' AND processed_at IS NOT NULL) AS p99,
  (SELECT count(*) FROM recent WHERE status IN ('queued', 'processing')) AS waiting,
  (SELECT coalesce(json_object_agg(reason, n), '{}') FROM
     (SELECT a->>'reason' AS reason, count(*) AS n FROM recent, jsonb_array_elements(recent.actions) a
      WHERE a->>'type' = 'policy_blocked' GROUP BY 1) b) AS blocked,
  (SELECT count(*) FROM lead_intakes WHERE status = 'dead_lettered' AND account_id = $1) AS dead,
  (SELECT count(*) FROM lead_intakes WHERE status = 'dead_lettered' AND account_id = $1
     AND received_at > now() - interval '1 day') AS dead_day";

/// The overview's figures for `account`, as the live endpoint serves them.
async fn figures(db: &impl ConnectionTrait, account: i64) -> Result<serde_json::Value, DbErr> {
    let r = rows(db, FIGURES, vec![account.into(), OVERVIEW_WINDOW.into()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::Custom("the overview's figures were not read".into()))?;
    let hour: i64 = r.try_get("", "hour")?;
    let by_minute: serde_json::Value = r.try_get("", "per_minute")?;
    let mut per_minute = [0i64; 30];
    for (ago, n) in by_minute.as_object().into_iter().flatten() {
        if let Ok(i) = ago.parse::<usize>()
            && i < 30
        {
            per_minute[29 - i] = n.as_i64().unwrap_or(0);
        }
    }
    Ok(serde_json::json!({
        "intakes_last_hour": hour,
        // The window was full: the last hour had at least this many.
        "capped": hour >= OVERVIEW_WINDOW,
        "by_status": r.try_get::<serde_json::Value>("", "by_status")?,
        "per_minute": per_minute,
        "lag_p50_s": r.try_get::<Option<f64>>("", "p50")?,
        "lag_p99_s": r.try_get::<Option<f64>>("", "p99")?,
        "waiting": r.try_get::<i64>("", "waiting")?,
        "dead_letters": r.try_get::<i64>("", "dead")?,
        "dead_letters_day": r.try_get::<i64>("", "dead_day")?,
        "blocked": r.try_get::<serde_json::Value>("", "blocked")?,
        "window": OVERVIEW_WINDOW,
        "at": Utc::now(),
    }))
}

/// `GET /console/live`: the overview's figures, polled by its script.
pub(super) async fn live(ctx: &Ctx<'_>) -> Response<Body> {
    match figures(&ctx.state.db, ctx.account()).await {
        Ok(f) => super::json(&f),
        Err(e) => ctx.failed(&e),
    }
}

fn seconds(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|s| {
            if s < 1.0 {
                format!("{:.0} ms", s * 1000.0)
            } else {
                format!("{s:.1} s")
            }
        })
        .unwrap_or_else(|| "—".into())
}

/// `GET /console`: the live overview.
pub(super) async fn overview(ctx: &Ctx<'_>) -> Response<Body> {
    let f = match figures(&ctx.state.db, ctx.account()).await {
        Ok(f) => f,
        Err(e) => return ctx.failed(&e),
    };
    let mut outcome = String::new();
    for s in SHOWN_STATUSES.map(|s| s.as_str()) {
        let n = f["by_status"][s].as_i64().unwrap_or(0);
        let _ = write!(
            outcome,
            r#"<li><span>{}</span><b data-live="by_status.{s}">{n}</b></li>"#,
            badge(s)
        );
    }
    let mut blocked = String::new();
    for r in Reason::ALL.map(Reason::as_str) {
        let n = f["blocked"][r].as_i64().unwrap_or(0);
        let _ = write!(
            blocked,
            r#"<li><span>{}</span><b data-live="blocked.{r}">{n}</b></li>"#,
            esc(&r.replace('_', " "))
        );
    }
    let bars: String = (0..30)
        .map(|i| {
            let n = f["per_minute"][i].as_i64().unwrap_or(0);
            format!(
                r#"<span class="bar" data-live-bar="{i}" data-n="{n}" title="{n} leads"></span>"#
            )
        })
        .collect();
    let recent = match recent_leads(ctx, 10).await {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let body = format!(
        r#"<p class="live-note" aria-live="polite">Live: updated <span data-live-at>now</span> (every 5 s).</p>
<section class="cards" data-live-src="/console/live">
<article class="card"><h2>Intake, last hour</h2><p class="big" data-live="intakes_last_hour">{hour}{capped}</p>
<p class="note">The figures read the newest {window} leads of the hour at most.</p>
<div class="bars" role="img" aria-label="Leads per minute, last 30 minutes">{bars}</div>
<ul class="kv">{outcome}</ul></article>
<article class="card"><h2>Processing lag, last 5 min</h2>
<ul class="kv"><li><span>p50</span><b data-live="lag_p50_s" data-format="seconds">{p50}</b></li>
<li><span>p99</span><b data-live="lag_p99_s" data-format="seconds">{p99}</b></li>
<li><span>waiting</span><b data-live="waiting">{waiting}</b></li></ul></article>
<article class="card"><h2>Dead letters</h2><p class="big" data-live="dead_letters">{dead}</p>
<ul class="kv"><li><span>last 24 h</span><b data-live="dead_letters_day">{dead_day}</b></li></ul>
<p><a href="/console/dead-letters">Review and replay</a></p></article>
<article class="card"><h2>Blocked by the contact policy, last hour</h2><ul class="kv">{blocked}</ul></article>
</section>
<h2>Latest leads <span class="note">(as the page loaded)</span></h2>{recent}"#,
        hour = f["intakes_last_hour"],
        capped = if f["capped"] == true { "+" } else { "" },
        window = OVERVIEW_WINDOW,
        p50 = seconds(&f["lag_p50_s"]),
        p99 = seconds(&f["lag_p99_s"]),
        waiting = f["waiting"],
        dead = f["dead_letters"],
        dead_day = f["dead_letters_day"],
    );
    ctx.page("Overview", Tab::Overview, &body)
}

/// One row of a leads table.
fn lead_row(r: &QueryResult) -> Result<String, DbErr> {
    let id: Uuid = r.try_get("", "id")?;
    let status: String = r.try_get("", "status")?;
    let received: DateTime<Utc> = r.try_get("", "received_at")?;
    let contact: Option<i64> = r.try_get("", "contact_id")?;
    let phone: Option<String> = r.try_get("", "phone")?;
    let source: Option<String> = r.try_get("", "source")?;
    let token: Option<String> = r.try_get("", "token")?;
    let blocked: Option<String> = r.try_get("", "blocked")?;
    let contact = contact
        .map(|c| format!(r#"<a href="/console/contacts/{c}">#{c}</a>"#))
        .unwrap_or_else(|| "—".into());
    Ok(format!(
        r#"<tr><td>{}</td><td><a href="/console/leads/{id}">{}</a></td><td>{}</td><td>{contact}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
        time(received),
        esc(phone.as_deref().unwrap_or("(no number)")),
        badge(&status),
        esc(source.as_deref().unwrap_or("—")),
        esc(token.as_deref().unwrap_or("—")),
        esc(blocked.as_deref().unwrap_or("")),
    ))
}

const LEAD_COLUMNS: &str = "i.id, i.status::text AS status, i.received_at, i.contact_id, \
     i.payload->>'phone_number' AS phone, i.payload->>'lead_source' AS source, \
     coalesce(t.label, t.token_prefix || '…') AS token, \
     (SELECT string_agg(DISTINCT a->>'reason', ', ') FROM jsonb_array_elements(i.actions) a \
      WHERE a->>'type' = 'policy_blocked') AS blocked";

/// The intake statuses the overview and the search show, outcomes first.
const SHOWN_STATUSES: [IntakeStatus; 7] = [
    IntakeStatus::Created,
    IntakeStatus::Updated,
    IntakeStatus::Merged,
    IntakeStatus::Duplicate,
    IntakeStatus::Queued,
    IntakeStatus::Processing,
    IntakeStatus::DeadLettered,
];

/// How many of the account's newest intakes a search without a number or an email reads.
const SEARCH_WINDOW: i64 = 20_000;

const LEAD_HEADERS: [&str; 7] = [
    "Received", "Lead", "Status", "Contact", "Source", "Token", "Blocked",
];

async fn recent_leads(ctx: &Ctx<'_>, limit: i64) -> Result<String, DbErr> {
    let list = rows(
        &ctx.state.db,
        &format!(
            "SELECT {LEAD_COLUMNS} FROM lead_intakes i LEFT JOIN api_tokens t ON t.id = i.token_id \
             WHERE i.account_id = $1 ORDER BY i.received_at DESC LIMIT $2"
        ),
        vec![ctx.account().into(), limit.into()],
    )
    .await?;
    let rows_html = list.iter().map(lead_row).collect::<Result<Vec<_>, _>>()?;
    Ok(html::table(&LEAD_HEADERS, &rows_html, "No leads yet."))
}

/// The account's region for reading numbers in any format.
async fn region(ctx: &Ctx<'_>) -> Region {
    rows(
        &ctx.state.db,
        "SELECT default_region FROM accounts WHERE id = $1",
        vec![ctx.account().into()],
    )
    .await
    .ok()
    .and_then(|r| {
        r.first()
            .and_then(|r| r.try_get::<String>("", "default_region").ok())
    })
    .and_then(|r| Region::parse(&r))
    .unwrap_or_default()
}

/// `GET /console/leads`: search by phone (any format) or email, source, status, verdict,
/// date.
pub(super) async fn leads(ctx: &Ctx<'_>) -> Response<Body> {
    let i = ctx.input;
    let text = i.query("q").unwrap_or_default();
    let status = i.query("status");
    let source = i.query("source");
    let verdict = i.query("verdict");
    let from = i
        .query("from")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let to = i
        .query("to")
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let mut note = String::new();
    let mut values: Vec<Value> = vec![ctx.account().into()];
    let mut cond = vec!["i.account_id = $1".to_owned()];
    let arg = |v: Value, values: &mut Vec<Value>| {
        values.push(v);
        format!("${}", values.len())
    };
    if !text.is_empty() {
        if text.contains('@') {
            let p = arg(text.to_lowercase().into(), &mut values);
            let a = arg(ctx.account().into(), &mut values);
            cond.push(format!(
                "i.contact_id IN (SELECT id FROM contacts WHERE account_id = {a} AND lower(email) = {p})"
            ));
        } else {
            match PhoneNumber::parse(text, region(ctx).await) {
                Ok(n) => {
                    let p = arg(n.as_str().to_owned().into(), &mut values);
                    let a = arg(ctx.account().into(), &mut values);
                    cond.push(format!(
                        "i.contact_id IN (SELECT contact_id FROM contact_phone_numbers \
                         WHERE account_id = {a} AND phone_number = {p})"
                    ));
                    let _ = write!(note, "Number read as {}. ", n.as_str());
                }
                Err(_) => {
                    let _ = write!(
                        note,
                        "“{}” is neither a phone number nor an email address. ",
                        esc(text)
                    );
                    cond.push("false".into());
                }
            }
        }
    }
    if let Some(s) = status {
        let p = arg(s.to_owned().into(), &mut values);
        cond.push(format!("i.status = {p}"));
    }
    if let Some(s) = source {
        let p = arg(s.to_owned().into(), &mut values);
        cond.push(format!("i.payload->>'lead_source' = {p}"));
    }
    if let Some(v) = verdict {
        let p = arg(
            serde_json::json!([{"type": "policy_blocked", "reason": v}]).into(),
            &mut values,
        );
        cond.push(format!("i.actions @> {p}::jsonb"));
    }
    if let Some(d) = from {
        let p = arg(
            d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).into(),
            &mut values,
        );
        cond.push(format!("i.received_at >= {p}"));
    }
    if let Some(d) = to {
        let p = arg(
            d.succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .into(),
            &mut values,
        );
        cond.push(format!("i.received_at < {p}"));
    }
    // Without a number or an address the search reads the account's newest intakes (of the
    // dates asked for) along its (account_id, received_at) index, at most SEARCH_WINDOW of
    // them, so a rare status or source costs a bounded read however many leads there are.
    let source_rows = if text.is_empty() {
        format!(
            "(SELECT * FROM lead_intakes WHERE account_id = $1{}{} ORDER BY received_at DESC LIMIT {SEARCH_WINDOW})",
            cond.iter()
                .find(|c| c.starts_with("i.received_at >="))
                .map(|c| format!(" AND {}", c.trim_start_matches("i.")))
                .unwrap_or_default(),
            cond.iter()
                .find(|c| c.starts_with("i.received_at <"))
                .filter(|c| !c.starts_with("i.received_at >="))
                .map(|c| format!(" AND {}", c.trim_start_matches("i.")))
                .unwrap_or_default(),
        )
    } else {
        "lead_intakes".to_owned()
    };
    let windowed = text.is_empty();
    let sql = format!(
        "SELECT {LEAD_COLUMNS} FROM {source_rows} i LEFT JOIN api_tokens t ON t.id = i.token_id \
         WHERE {} ORDER BY i.received_at DESC LIMIT 100",
        cond.join(" AND ")
    );
    let found = match rows(&ctx.state.db, &sql, values).await {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let rows_html = match found.iter().map(lead_row).collect::<Result<Vec<_>, _>>() {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let option = |value: &str, label: &str, current: Option<&str>| {
        let selected = if current == Some(value) {
            " selected"
        } else {
            ""
        };
        format!(
            r#"<option value="{}"{selected}>{}</option>"#,
            esc(value),
            esc(label)
        )
    };
    let mut statuses = option("", "any status", status);
    for s in SHOWN_STATUSES.map(|s| s.as_str()) {
        statuses.push_str(&option(s, s, status));
    }
    let mut verdicts = option("", "any verdict", verdict);
    for v in Reason::ALL.map(Reason::as_str) {
        verdicts.push_str(&option(
            v,
            &format!("blocked: {}", v.replace('_', " ")),
            verdict,
        ));
    }
    let date = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let body = format!(
        r#"<form class="search" method="get" action="/console/leads" role="search">
<label>Phone or email <input name="q" value="{text}" placeholder="(818) 123-4567 or ada@example.com"></label>
<label>Status <select name="status">{statuses}</select></label>
<label>Verdict <select name="verdict">{verdicts}</select></label>
<label>Source <input name="source" value="{source}" placeholder="website"></label>
<label>From <input type="date" name="from" value="{from}"></label>
<label>To <input type="date" name="to" value="{to}"></label>
<button type="submit">Search</button></form>
<p class="note">{note}{n} lead(s), newest first{more}.{window}</p>{table}"#,
        window = if windowed {
            format!(
                " Without a number or an email the search reads the newest {SEARCH_WINDOW} leads (of the dates chosen)."
            )
        } else {
            String::new()
        },
        text = esc(text),
        source = esc(source.unwrap_or_default()),
        from = date(from),
        to = date(to),
        n = rows_html.len(),
        more = if rows_html.len() == 100 {
            " (the first 100)"
        } else {
            ""
        },
        table = html::table(&LEAD_HEADERS, &rows_html, "No lead matches."),
    );
    ctx.page("Leads", Tab::Leads, &body)
}

/// `GET /console/contacts/{id}`: the contact as the read API shows it, its leads and
/// messages.
pub(super) async fn contact(ctx: &Ctx<'_>, param: &str) -> Response<Body> {
    let Ok(id) = param.parse::<i64>() else {
        return ctx.not_found("contact");
    };
    let view = match shared::read::contact(&ctx.state.db, ctx.account(), id).await {
        Ok(Some(v)) => v,
        Ok(None) => return ctx.not_found("contact"),
        Err(e) => return ctx.failed(&e),
    };
    let leads = match rows(
        &ctx.state.db,
        &format!(
            "SELECT {LEAD_COLUMNS} FROM lead_intakes i LEFT JOIN api_tokens t ON t.id = i.token_id \
             WHERE i.contact_id = $1 AND i.account_id = $2 ORDER BY i.received_at DESC LIMIT 100"
        ),
        vec![id.into(), ctx.account().into()],
    )
    .await
    .and_then(|r| r.iter().map(lead_row).collect::<Result<Vec<_>, _>>())
    {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let messages = match rows(
        &ctx.state.db,
        "SELECT direction, status, from_number, to_number, body, error_code, error_message, \
                coalesce(sent_at, created_at) AS at FROM messages \
         WHERE contact_id = $1 AND account_id = $2 ORDER BY id DESC LIMIT 50",
        vec![id.into(), ctx.account().into()],
    )
    .await
    {
        Ok(r) => r
            .iter()
            .map(|m| {
                let get = |c: &str| m.try_get::<Option<String>>("", c).ok().flatten().unwrap_or_default();
                let at: DateTime<Utc> = m.try_get("", "at").unwrap_or_else(|_| Utc::now());
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
                    time(at),
                    esc(&get("direction")),
                    badge(&get("status")),
                    esc(&get("from_number")),
                    esc(&get("to_number")),
                    esc(&get("body")),
                    esc([get("error_code"), get("error_message")].join(" ").trim()),
                )
            })
            .collect::<Vec<_>>(),
        Err(e) => return ctx.failed(&e),
    };
    let name = [view.text.first_name.clone(), view.text.last_name.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let title = format!(
        "Contact #{id}{}",
        if name.is_empty() {
            String::new()
        } else {
            format!(" · {name}")
        }
    );
    let json = serde_json::to_value(&view).unwrap_or_default();
    let body = format!(
        r#"<dl class="facts"><dt>Phone</dt><dd>{phone}</dd><dt>Email</dt><dd>{email}</dd>
<dt>Owner</dt><dd>{owner}</dd><dt>Do not contact</dt><dd>{dnc}</dd><dt>Created</dt><dd>{created}</dd><dt>Updated</dt><dd>{updated}</dd></dl>
<h2>Leads</h2>{leads}<h2>Messages</h2>{messages}
<details><summary>The contact as the read API returns it</summary>{json}</details>"#,
        phone = esc(&view.phone_number),
        email = esc(view.text.email.as_deref().unwrap_or("—")),
        owner = view
            .user_id
            .map(|u| format!("user {u}"))
            .unwrap_or_else(|| "—".into()),
        dnc = if view.do_not_contact.is_empty() {
            "—".into()
        } else {
            esc(&view.do_not_contact.join(", "))
        },
        created = time(view.created_at),
        updated = time(view.updated_at),
        leads = html::table(&LEAD_HEADERS, &leads, "No leads."),
        messages = html::table(
            &["When", "Direction", "Status", "From → to", "Body", "Error"],
            &messages,
            "No messages."
        ),
        json = html::json(&json),
    );
    ctx.page(&title, Tab::Leads, &body)
}

/// `GET /console/dead-letters`: the account's dead-lettered leads, with replay.
pub(super) async fn dead_letters(ctx: &Ctx<'_>, outcome: Option<String>) -> Response<Body> {
    let reason = ctx.input.query("reason").or(ctx.input.form("reason"));
    let list = match rows(
        &ctx.state.db,
        "SELECT i.id, i.received_at, i.attempts, i.last_error, i.replay_count, i.payload->>'phone_number' AS phone \
         FROM lead_intakes i WHERE i.status = 'dead_lettered' AND i.account_id = $1 \
           AND ($2::text IS NULL OR i.last_error ILIKE '%' || $2 || '%') \
         ORDER BY i.received_at DESC LIMIT 200",
        vec![ctx.account().into(), reason.map(str::to_owned).into()],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let csrf = html::csrf_field(&ctx.session.csrf);
    let mut table_rows = Vec::new();
    for r in &list {
        let id: Uuid = r.try_get("", "id").unwrap_or_default();
        let received: DateTime<Utc> = r.try_get("", "received_at").unwrap_or_else(|_| Utc::now());
        let attempts: i32 = r.try_get("", "attempts").unwrap_or(0);
        let replays: i32 = r.try_get("", "replay_count").unwrap_or(0);
        let why: Option<String> = r.try_get("", "last_error").unwrap_or(None);
        let phone: Option<String> = r.try_get("", "phone").unwrap_or(None);
        table_rows.push(format!(
            r#"<tr><td>{}</td><td><a href="/console/leads/{id}">{}</a></td><td>{}</td><td>{attempts}</td><td>{replays}</td>
<td><form method="post" action="/console/dead-letters/replay">{csrf}<input type="hidden" name="id" value="{id}"><button type="submit" class="small">Replay</button></form></td></tr>"#,
            time(received),
            esc(phone.as_deref().unwrap_or("(no number)")),
            esc(why.as_deref().unwrap_or("—")),
        ));
    }
    let outcome = outcome
        .map(|o| format!(r#"<p class="outcome" role="status">{}</p>"#, esc(&o)))
        .unwrap_or_default();
    let body = format!(
        r#"{outcome}<form class="search" method="post" action="/console/dead-letters/replay">{csrf}
<label>Reason contains <input name="reason" value="{reason}" placeholder="retries exhausted"></label>
<button type="submit" name="dry_run" value="1">Count (dry run)</button>
<button type="submit" name="confirm" value="1" class="danger">Replay all that match</button></form>
<p class="note">A replay sends the lead back to the workers with its intake id; one that already became a contact is not processed twice.</p>
{table}"#,
        reason = esc(reason.unwrap_or_default()),
        table = html::table(
            &["Received", "Lead", "Why", "Attempts", "Replays", ""],
            &table_rows,
            "No dead letters."
        ),
    );
    ctx.page("Dead letters", Tab::DeadLetters, &body)
}

/// `POST /console/dead-letters/replay`: one lead (`id`), or every dead letter of the
/// account whose reason contains `reason` (`dry_run` counts them first).
pub(super) async fn replay_dead_letters(ctx: &Ctx<'_>) -> Response<Body> {
    let ids: Vec<Uuid> = ctx
        .input
        .form_all("id")
        .into_iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let filter = leadctl::dlq::Filter {
        ids: ids.clone(),
        account_id: Some(ctx.account()),
        reason: ctx.input.form("reason").map(str::to_owned),
    };
    if ids.is_empty() && ctx.input.form("dry_run").is_none() && ctx.input.form("confirm").is_none()
    {
        return dead_letters(
            ctx,
            Some("Nothing was replayed: choose a lead or press a button.".into()),
        )
        .await;
    }
    let dry_run = ctx.input.form("dry_run").is_some();
    let who = format!("console:{}", ctx.session.token_label);
    let outcome = async {
        let mut dlq = leadctl::dlq::Dlq::open(&ctx.state.settings).await?;
        let letters = dlq.scan(&ctx.state.db, 10_000).await?;
        let matched = letters.iter().filter(|d| filter.matches(d)).count();
        let done = if dry_run {
            0
        } else {
            dlq.replay(&ctx.state.db, &filter, &who, || {}).await?.len()
        };
        dlq.release().await?;
        dlq.close().await;
        Ok::<_, anyhow::Error>((matched, done))
    };
    let text = match outcome.await {
        Ok((matched, _)) if dry_run => format!(
            "Dry run: {matched} dead letter(s) match; nothing was sent. Press “Replay all that match” to send them."
        ),
        Ok((_, done)) => format!("Replayed {done} lead(s): they are queued for the workers again."),
        Err(e) => {
            tracing::warn!(error = %e, "Console replay failed");
            "The replay failed: the broker or the database did not answer. Nothing was lost; try again.".into()
        }
    };
    dead_letters(ctx, Some(text)).await
}

/// `GET /console/webhooks`: the account's endpoints.
pub(super) async fn webhooks(ctx: &Ctx<'_>) -> Response<Body> {
    let list = match webhooks::list(&ctx.state.db, Some(ctx.account())).await {
        Ok(l) => l,
        Err(e) => return ctx.failed(&e),
    };
    let table_rows: Vec<String> = list
        .iter()
        .map(|e| {
            let events = if e.events.is_empty() { "all".to_owned() } else { e.events.join(", ") };
            let state = if e.enabled {
                badge("enabled")
            } else {
                format!("{} {}", badge("disabled"), esc(e.disabled_reason.as_deref().unwrap_or("")))
            };
            format!(
                r#"<tr><td><a href="/console/webhooks/{}">{}</a></td><td>{}</td><td>{state}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                e.id,
                esc(&e.url),
                esc(&events),
                e.pending,
                e.delivered,
                e.failed
            )
        })
        .collect();
    let body = format!(
        r#"<p class="note">Endpoints receive the account's events signed per the Standard Webhooks specification. Add one with <code>leadctl webhook add --account {a} --url … --events all</code>.</p>{}"#,
        html::table(
            &[
                "Endpoint",
                "Events",
                "State",
                "Pending",
                "Delivered",
                "Failed"
            ],
            &table_rows,
            "No endpoints."
        ),
        a = ctx.account()
    );
    ctx.page("Webhooks", Tab::Webhooks, &body)
}

/// `GET /console/webhooks/{id}`: an endpoint's attempt log, with replay.
pub(super) async fn webhook(ctx: &Ctx<'_>, param: &str, outcome: Option<String>) -> Response<Body> {
    let Ok(id) = param.parse::<i64>() else {
        return ctx.not_found("endpoint");
    };
    let e = match webhooks::get(&ctx.state.db, id).await {
        Ok(e) if e.account_id == ctx.account() => e,
        Ok(_) | Err(leadctl::admin::AdminError::NotFound(..)) => return ctx.not_found("endpoint"),
        Err(e) => return ctx.failed(&e),
    };
    let log = match webhooks::attempts(&ctx.state.db, id, None, 100).await {
        Ok(l) => l,
        Err(e) => return ctx.failed(&e),
    };
    let table_rows: Vec<String> = log
        .iter()
        .map(|a| {
            let answer = match (a.status_code, &a.error) {
                (Some(s), _) => s.to_string(),
                (None, Some(e)) => format!("no answer: {e}"),
                (None, None) => "no answer".into(),
            };
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td><td><code>{}</code></td></tr>",
                time(a.attempted_at),
                esc(&a.webhook_id()),
                esc(&a.event_type),
                esc(&answer),
                a.latency_ms,
                badge(&a.delivery_status),
                esc(a.response_body.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let csrf = html::csrf_field(&ctx.session.csrf);
    let outcome = outcome
        .map(|o| format!(r#"<p class="outcome" role="status">{}</p>"#, esc(&o)))
        .unwrap_or_default();
    let body = format!(
        r#"{outcome}<dl class="facts"><dt>URL</dt><dd>{url}</dd><dt>Events</dt><dd>{events}</dd><dt>State</dt><dd>{state}</dd>
<dt>Pending</dt><dd>{pending}</dd><dt>Delivered</dt><dd>{delivered}</dd><dt>Failed</dt><dd>{failed}</dd></dl>
<form class="search" method="post" action="/console/webhooks/{id}/replay">{csrf}
<label>Since <select name="since"><option value="1h">1 hour</option><option value="1d" selected>1 day</option><option value="7d">7 days</option><option value="all">all time</option></select></label>
<label class="check"><input type="checkbox" name="failed_only" value="1" checked> failed only</label>
<button type="submit" name="dry_run" value="1">Count (dry run)</button>
<button type="submit" name="confirm" value="1" class="danger">Replay</button></form>
<h2>Attempts, newest first</h2>{table}"#,
        url = esc(&e.url),
        events = esc(&if e.events.is_empty() {
            "all".to_owned()
        } else {
            e.events.join(", ")
        }),
        state = if e.enabled {
            badge("enabled")
        } else {
            format!(
                "{} {}",
                badge("disabled"),
                esc(e.disabled_reason.as_deref().unwrap_or(""))
            )
        },
        pending = e.pending,
        delivered = e.delivered,
        failed = e.failed,
        table = html::table(
            &[
                "When",
                "webhook-id",
                "Event",
                "Answer",
                "Latency",
                "Delivery",
                "Answer body (1 KB)"
            ],
            &table_rows,
            "No attempts yet."
        ),
    );
    ctx.page(&format!("Endpoint {id}"), Tab::Webhooks, &body)
}

/// `POST /console/webhooks/{id}/replay`.
pub(super) async fn replay_webhook(ctx: &Ctx<'_>, param: &str) -> Response<Body> {
    let Ok(id) = param.parse::<i64>() else {
        return ctx.not_found("endpoint");
    };
    match webhooks::get(&ctx.state.db, id).await {
        Ok(e) if e.account_id == ctx.account() => {}
        Ok(_) | Err(leadctl::admin::AdminError::NotFound(..)) => return ctx.not_found("endpoint"),
        Err(e) => return ctx.failed(&e),
    }
    let since = match ctx.input.form("since") {
        Some("1h") => Some(Utc::now() - chrono::Duration::hours(1)),
        Some("7d") => Some(Utc::now() - chrono::Duration::days(7)),
        Some("all") => None,
        _ => Some(Utc::now() - chrono::Duration::days(1)),
    };
    let r = Replay {
        since,
        failed_only: ctx.input.form("failed_only").is_some(),
        ..Replay::default()
    };
    let dry_run = ctx.input.form("confirm").is_none();
    let text = if dry_run {
        match webhooks::replay_count(&ctx.state.db, id, &r).await {
            Ok(n) => format!("Dry run: {n} delivery(ies) match; nothing was sent."),
            Err(e) => return ctx.failed(&e),
        }
    } else {
        match webhooks::replay(&ctx.state.db, id, &r).await {
            Ok(n) => format!("Replaying {n} delivery(ies), each with its webhook-id and bytes."),
            Err(e) => return ctx.failed(&e),
        }
    };
    webhook(ctx, param, Some(text)).await
}

/// `GET /console/tokens`: the signed-in user's tokens; a new one is shown once.
pub(super) async fn tokens(ctx: &Ctx<'_>, new: Option<(String, String)>) -> Response<Body> {
    let list = match rows(
        &ctx.state.db,
        "SELECT id, label, token_prefix, created_at, last_used_at, revoked_at FROM api_tokens \
         WHERE user_id = $1 AND account_id = $2 ORDER BY id",
        vec![ctx.session.user_id.into(), ctx.account().into()],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return ctx.failed(&e),
    };
    let csrf = html::csrf_field(&ctx.session.csrf);
    let table_rows: Vec<String> = list
        .iter()
        .map(|r| {
            let id: i64 = r.try_get("", "id").unwrap_or_default();
            let label: Option<String> = r.try_get("", "label").unwrap_or(None);
            let prefix: String = r.try_get("", "token_prefix").unwrap_or_default();
            let created: DateTime<Utc> = r.try_get("", "created_at").unwrap_or_else(|_| Utc::now());
            let used: Option<DateTime<Utc>> = r.try_get("", "last_used_at").unwrap_or(None);
            let revoked: Option<DateTime<Utc>> = r.try_get("", "revoked_at").unwrap_or(None);
            let this = if id == ctx.session.token_id { " (this session)" } else { "" };
            let action = match revoked {
                Some(t) => format!("revoked {}", time(t)),
                None => format!(
                    r#"<form method="post" action="/console/tokens/{id}/revoke">{csrf}<button type="submit" class="small danger" aria-label="Revoke token {id}">Revoke</button></form>"#
                ),
            };
            format!(
                "<tr><td>{}{this}</td><td><code>{}…</code></td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                esc(label.as_deref().unwrap_or("(no label)")),
                esc(&prefix),
                time(created),
                opt_time(used),
            )
        })
        .collect();
    let shown = new
        .map(|(label, token)| {
            format!(
                r#"<div class="secret" role="status"><p>New token “{}”. Copy it now: it is shown this once and never stored.</p><code id="new-token">{}</code></div>"#,
                esc(&label),
                esc(&token)
            )
        })
        .unwrap_or_default();
    let body = format!(
        r#"{shown}<form class="search" method="post" action="/console/tokens">{csrf}
<label>Label <input name="label" maxlength="100" placeholder="zapier"></label><button type="submit">Create a token</button></form>
{}<p class="note">Revoking the token of this session signs you out.</p>"#,
        html::table(
            &["Label", "Prefix", "Created", "Last used", ""],
            &table_rows,
            "No tokens."
        ),
    );
    ctx.page("Your tokens", Tab::Tokens, &body)
}

/// `POST /console/tokens`: a new token of the signed-in user.
pub(super) async fn create_token(ctx: &Ctx<'_>) -> Response<Body> {
    let label = ctx
        .input
        .form("label")
        .map(|l| l.chars().take(100).collect::<String>());
    match leadctl::admin::create_token(&ctx.state.db, ctx.session.user_id, label.as_deref()).await {
        Ok(t) => {
            tokens(
                ctx,
                Some((label.unwrap_or_else(|| "(no label)".into()), t.token)),
            )
            .await
        }
        Err(e) => ctx.failed(&e),
    }
}

/// `POST /console/tokens/{id}/revoke`: one of the user's own tokens; this session's ends.
pub(super) async fn revoke_token(ctx: &Ctx<'_>, param: &str) -> Response<Body> {
    let Ok(id) = param.parse::<i64>() else {
        return ctx.not_found("token");
    };
    let mine = rows(
        &ctx.state.db,
        "SELECT 1 AS ok FROM api_tokens WHERE id = $1 AND user_id = $2 AND account_id = $3",
        vec![id.into(), ctx.session.user_id.into(), ctx.account().into()],
    )
    .await;
    match mine {
        Ok(r) if !r.is_empty() => {}
        Ok(_) => return ctx.not_found("token"),
        Err(e) => return ctx.failed(&e),
    }
    if let Err(e) = leadctl::admin::revoke_token(&ctx.state.db, id).await {
        return ctx.failed(&e);
    }
    if id == ctx.session.token_id {
        session::delete(ctx.state, &ctx.input.headers).await;
        return super::redirect(
            "/console",
            Some(session::set_cookie(
                None,
                session::behind_tls(&ctx.input.headers),
            )),
        );
    }
    super::redirect("/console/tokens", None)
}
