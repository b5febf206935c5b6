//! `leadctl dnc add|remove|import|list|check`: an account's do-not-contact list (§9) over
//! [`crate::admin::dnc`].

use crate::admin::dnc::{self, Entry, Terms, import};
use crate::cli::Output;
use chrono::Utc;
use clap::Subcommand;
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::Value;
use shared::policy::DncChannel;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum DncCmd {
    /// Put a number on the list (on it already: its reason and expiry are replaced). The
    /// consent its contact gave on the channel is revoked.
    Add {
        #[arg(long)]
        account: i64,
        /// In any format a lead's number may have.
        number: String,
        #[arg(long, default_value = "all", value_parser = channel)]
        channel: DncChannel,
        /// When the entry lapses: an RFC 3339 instant or a duration (30d, 12h); default never.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Take a number off the list: its entry for one channel, or all of them.
    Remove {
        #[arg(long)]
        account: i64,
        number: String,
        #[arg(long, value_parser = channel)]
        channel: Option<DncChannel>,
    },
    /// Add the numbers of a file: one a line, or a CSV file with a header naming a
    /// `phone_number` (or `phone`, `number`) column and optionally `channel`, `reason` and
    /// `expires`. Entries already on the list are left as they are.
    Import {
        #[arg(long)]
        account: i64,
        file: PathBuf,
        /// The channel of lines that do not name one.
        #[arg(long, default_value = "all", value_parser = channel)]
        channel: DncChannel,
        /// The reason of lines that do not give one.
        #[arg(long)]
        reason: Option<String>,
        /// The expiry of lines that do not give one (an RFC 3339 instant or a duration).
        #[arg(long)]
        expires: Option<String>,
    },
    /// The account's list, oldest first.
    List {
        #[arg(long)]
        account: i64,
        /// Show at most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// Whether the list stops calls or messages to a number now (exit 0 either way).
    Check {
        #[arg(long)]
        account: i64,
        number: String,
    },
}

fn channel(text: &str) -> Result<DncChannel, String> {
    DncChannel::parse(text).ok_or_else(|| "must be call, sms or all".to_owned())
}

/// Runs a `dnc` command; `json` hides the import's progress bar.
pub async fn execute(db: &DatabaseConnection, cmd: DncCmd, json: bool) -> anyhow::Result<Output> {
    let now = Utc::now();
    match cmd {
        DncCmd::Add {
            account,
            number,
            channel,
            expires,
            reason,
        } => {
            let terms = Terms::parse(channel, reason.as_deref(), expires.as_deref(), now)?;
            let txn = db.begin().await?;
            let added = dnc::add(&txn, account, &number, terms).await?;
            txn.commit().await?;
            let verb = if added.created { "Added" } else { "Updated" };
            Ok(Output {
                human: format!(
                    "{verb} {} on the do-not-contact list of account {account}; {} consent \
                     record(s) revoked",
                    entry_line(&added.entry),
                    added.consents_revoked
                ),
                json: serde_json::to_value(&added)?,
            })
        }
        DncCmd::Remove {
            account,
            number,
            channel,
        } => {
            let removed = dnc::remove(db, account, &number, channel).await?;
            let mut human = match removed.entries.len() {
                0 => format!(
                    "{} was not on the do-not-contact list of account {account}{}",
                    removed.number,
                    channel.map_or(String::new(), |c| format!(" for {}", c.as_str()))
                ),
                n => format!(
                    "Removed {n} entr{} of {} from the do-not-contact list of account {account}",
                    if n == 1 { "y" } else { "ies" },
                    removed.number
                ),
            };
            for e in &removed.entries {
                human.push_str(&format!("\n  {}", entry_line(e)));
            }
            let mut json = serde_json::to_value(&removed)?;
            insert(&mut json, "id", Value::Null);
            insert(&mut json, "removed", removed.entries.len().into());
            Ok(Output { human, json })
        }
        DncCmd::Import {
            account,
            file,
            channel,
            reason,
            expires,
        } => {
            let defaults = Terms::parse(channel, reason.as_deref(), expires.as_deref(), now)?;
            import_file(db, account, &file, &defaults, json).await
        }
        DncCmd::List { account, limit } => {
            let listing = dnc::list(db, account, limit).await?;
            let mut human = format!(
                "Do-not-contact list of account {account}: {} entr{}",
                listing.total,
                if listing.total == 1 { "y" } else { "ies" }
            );
            if (listing.entries.len() as u64) < listing.total {
                human.push_str(&format!(
                    " (the first {} shown; --limit shows more)",
                    listing.entries.len()
                ));
            }
            for e in &listing.entries {
                human.push_str(&format!("\n  {}", entry_line(e)));
            }
            let mut json = serde_json::to_value(&listing)?;
            insert(&mut json, "id", account.into());
            Ok(Output { human, json })
        }
        DncCmd::Check { account, number } => {
            let check = dnc::check(db, account, &number).await?;
            let mut human = if check.blocked.is_empty() {
                format!(
                    "{} may be called and texted (no do-not-contact entry in force in account \
                     {account})",
                    check.number
                )
            } else {
                let channels: Vec<&str> = check.blocked.iter().map(|c| c.as_str()).collect();
                format!(
                    "{} is blocked for {} in account {account}",
                    check.number,
                    channels.join(" and ")
                )
            };
            for e in &check.entries {
                human.push_str(&format!("\n  {}", entry_line(e)));
            }
            let mut json = serde_json::to_value(&check)?;
            insert(&mut json, "id", Value::Null);
            Ok(Output { human, json })
        }
    }
}

/// `leadctl dnc import`: the file streamed in batches, a progress bar by bytes read on a
/// terminal.
async fn import_file(
    db: &DatabaseConnection,
    account: i64,
    file: &std::path::Path,
    defaults: &Terms,
    json: bool,
) -> anyhow::Result<Output> {
    let source = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("Failed to open {}: {e}", file.display()))?;
    let size = source.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if json || !std::io::stderr().is_terminal() {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(size),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "importing {bar:40} {bytes}/{total_bytes} ({elapsed} so far, {eta} left)",
        ) {
            bar.set_style(style);
        }
        bar
    };
    let started = std::time::Instant::now();
    let summary = import::import(
        db,
        account,
        std::io::BufReader::new(source),
        defaults,
        |bytes| bar.set_position(bytes),
    )
    .await;
    bar.finish_and_clear();
    let summary = summary?;
    let mut human = format!(
        "Imported {} into the do-not-contact list of account {account} ({} line(s), {} format): \
         {} added, {} already present, {} invalid; {} consent record(s) revoked in {:.1} s",
        file.display(),
        summary.lines,
        summary.format,
        summary.added,
        summary.already_present,
        summary.invalid,
        summary.consents_revoked,
        started.elapsed().as_secs_f64()
    );
    for bad in &summary.invalid_lines {
        human.push_str(&format!("\n  line {}: {}", bad.line, bad.error));
    }
    if summary.invalid > summary.invalid_lines.len() as u64 {
        human.push_str(&format!(
            "\n  … and {} more invalid line(s)",
            summary.invalid - summary.invalid_lines.len() as u64
        ));
    }
    let mut json = serde_json::to_value(&summary)?;
    insert(&mut json, "id", Value::Null);
    insert(&mut json, "file", file.display().to_string().into());
    Ok(Output { human, json })
}

fn insert(json: &mut Value, key: &str, value: Value) {
    if let Some(obj) = json.as_object_mut() {
        obj.insert(key.into(), value);
    }
}

/// One entry on one line: number, channel, reason, expiry, created.
fn entry_line(e: &Entry) -> String {
    let row = &e.row;
    let channel = match row.channel.as_str() {
        "all" => "calls and messages".to_owned(),
        "call" => "calls".to_owned(),
        "sms" => "messages".to_owned(),
        other => other.to_owned(),
    };
    let expires = match row.expires_at {
        None => "never expires".to_owned(),
        Some(t) if e.in_force => format!("expires {}", t.to_rfc3339()),
        Some(t) => format!("expired {}", t.to_rfc3339()),
    };
    format!(
        "{} ({channel}), {}, {expires}, added {} by {}",
        row.phone_number,
        row.reason
            .as_deref()
            .map_or("no reason given".to_owned(), |r| format!("reason {r:?}")),
        row.created_at.to_rfc3339(),
        row.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_on_one_line() {
        let at = |t: &str| t.parse::<chrono::DateTime<Utc>>().expect("t");
        let mut e = Entry {
            row: shared::entities::do_not_contact::Model {
                id: 1,
                account_id: 2,
                phone_number: "+18185550100".into(),
                channel: "sms".into(),
                reason: Some("texted STOP".into()),
                source: "operator".into(),
                expires_at: Some(at("2027-01-01T00:00:00Z")),
                created_at: at("2026-12-01T00:00:00Z"),
            },
            in_force: true,
        };
        assert_eq!(
            entry_line(&e),
            "+18185550100 (messages), reason \"texted STOP\", expires \
             2027-01-01T00:00:00+00:00, added 2026-12-01T00:00:00+00:00 by operator"
        );
        e.in_force = false;
        e.row.reason = None;
        e.row.channel = "all".into();
        assert!(entry_line(&e).contains("(calls and messages), no reason given, expired"));
    }
}
