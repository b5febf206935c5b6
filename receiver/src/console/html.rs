//! HTML of the console: escaping, the page frame, and small pieces every view uses. Pages
//! are rendered on the server; the script only turns times into the viewer's zone and keeps
//! the overview's numbers live.

use chrono::{DateTime, Utc};
use std::fmt::Write as _;

/// Text safe inside HTML elements and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time shown in the viewer's zone by the script, in UTC until then and on hover.
pub fn time(t: DateTime<Utc>) -> String {
    let utc = t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    format!(
        r#"<time datetime="{}" title="{utc}">{utc}</time>"#,
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "—".into())
}

/// A status word as a colored label.
pub fn badge(word: &str) -> String {
    let kind = match word {
        "created" | "updated" | "merged" | "delivered" | "sent" | "received" | "enabled"
        | "active" => "ok",
        "duplicate" | "queued" | "processing" | "pending" | "scheduled" | "cancelled" => "wait",
        _ => "bad",
    };
    format!(r#"<span class="badge {kind}">{}</span>"#, esc(word))
}

/// Which tab of the navigation is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Leads,
    DeadLetters,
    Webhooks,
    Tokens,
    None,
}

/// What a signed-in page's frame shows.
pub struct Frame<'a> {
    pub title: &'a str,
    pub tab: Tab,
    /// Who is signed in (the token's label), and the form token for sign-out.
    pub who: &'a str,
    pub csrf: &'a str,
    pub account_id: i64,
}

/// A whole signed-in page.
pub fn page(f: &Frame<'_>, body: &str) -> String {
    let mut nav = String::new();
    for (tab, href, label) in [
        (Tab::Overview, "/console", "Overview"),
        (Tab::Leads, "/console/leads", "Leads"),
        (Tab::DeadLetters, "/console/dead-letters", "Dead letters"),
        (Tab::Webhooks, "/console/webhooks", "Webhooks"),
        (Tab::Tokens, "/console/tokens", "Tokens"),
    ] {
        let current = if tab == f.tab {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(nav, r#"<a href="{href}"{current}>{label}</a>"#);
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Lead intake</title>
<link rel="stylesheet" href="/console/assets/console.css">
<script src="/console/assets/console.js" defer></script>
</head><body>
<header class="top"><a class="brand" href="/console">Lead intake</a>
<nav aria-label="Console">{nav}</nav>
<form class="who" method="post" action="/console/sign-out"><span>Account {account} · {who}</span>
<input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Sign out</button></form>
</header>
<main id="main"><h1>{title}</h1>
{body}
</main></body></html>"#,
        title = esc(f.title),
        account = f.account_id,
        who = esc(f.who),
        csrf = esc(f.csrf),
    )
}

/// The sign-in page (nothing of any account on it).
pub fn sign_in(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Lead intake</title>
<link rel="stylesheet" href="/console/assets/console.css">
</head><body class="signin">
<main id="main"><h1>Lead intake console</h1>
<p>Sign in with one of your API tokens. The console keeps a session for 12 hours; revoking the token ends it.</p>
{error}
<form method="post" action="/console/sign-in">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus placeholder="lit_…">
<button type="submit">Sign in</button>
</form></main></body></html>"#
    )
}

/// A hidden CSRF field for a form of the session.
pub fn csrf_field(csrf: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(csrf))
}

/// A table with a header row; `rows` are already HTML.
pub fn table(headers: &[&str], rows: &[String], empty: &str) -> String {
    if rows.is_empty() {
        return format!(r#"<p class="empty">{}</p>"#, esc(empty));
    }
    let mut out = String::from(r#"<div class="scroll"><table><thead><tr>"#);
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str(r);
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A `<pre>` of JSON, pretty-printed.
pub fn json(v: &serde_json::Value) -> String {
    format!(
        "<pre>{}</pre>",
        esc(&serde_json::to_string_pretty(v).unwrap_or_default())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }
}
