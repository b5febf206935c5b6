//! `leadctl`, the operator CLI. Human output by default; `--json` (before or after the
//! subcommand) prints exactly one JSON object with the `id` of what was created or changed.
//! Errors go to stderr with a non-zero exit.

use crate::admin::{self, Catalog};
use crate::dlq::{DeadLetter, Dlq, Filter};
use clap::{Args, Parser, Subcommand};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde_json::{Value, json};
use shared::config::Settings;
use std::io::IsTerminal;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "leadctl", version, about = "Operate the lead-intake pipeline")]
pub struct Cli {
    /// Print one JSON object instead of human-readable text.
    #[arg(long, global = true)]
    pub json: bool,
    /// PostgreSQL URL (default: DATABASE_URL or the configured one).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accounts (tenants).
    #[command(subcommand)]
    Account(AccountCmd),
    /// Users of an account.
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens (per user).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Ring groups (lead distribution).
    #[command(subcommand, name = "ring-group")]
    RingGroup(RingGroupCmd),
    /// Lines (also called campaigns) and their sending numbers.
    #[command(subcommand)]
    Line(crate::messaging_cli::LineCmd),
    /// Tags.
    #[command(subcommand)]
    Tag(NamedCmd),
    /// Disposition statuses.
    #[command(subcommand)]
    Disposition(NamedCmd),
    /// Sequences (SMS automations) and their message steps.
    #[command(subcommand)]
    Sequence(crate::messaging_cli::SequenceCmd),
    /// PowerDialer lists.
    #[command(subcommand)]
    Powerdialer(PowerdialerCmd),
    /// An account's do-not-contact list.
    #[command(subcommand)]
    Dnc(crate::dnc_cli::DncCmd),
    /// Endpoints that receive the account's events (Standard Webhooks).
    #[command(subcommand)]
    Webhook(crate::webhook_cli::WebhookCmd),
    /// Demo data.
    #[command(subcommand)]
    Demo(DemoCmd),
    /// The dead-letter queue: leads that could not be processed.
    #[command(subcommand)]
    Dlq(DlqCmd),
    /// One screen of the pipeline: intake rate, queues, workers' heartbeats, dead letters.
    Status {
        /// Refresh every SECONDS (default 2) until Ctrl-C; with --json, one object a line.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
    /// The RabbitMQ topology.
    #[command(subcommand)]
    Topology(TopologyCmd),
    /// Import a CSV file of leads through the receiver's bulk endpoint.
    Import(crate::import::ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum TopologyCmd {
    /// RabbitMQ definitions (exchanges, queues, bindings, the delivery-limit policy) of the
    /// configured topology (`AMQP_PREFIX`, retry delays), for `load_definitions`.
    Definitions {
        /// The virtual host the definitions are for.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCmd {
    /// Dead letters with reason, attempts and age, oldest first.
    List {
        /// Read at most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// One dead letter with its payload (API token removed).
    Show { intake_id: Uuid },
    /// Republish dead letters to the intake queue (same intake id, attempts reset).
    Replay(ReplayArgs),
    /// Delete every dead letter.
    Purge {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters `leadctl dlq replay` republishes, and who does it.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Intake ids to replay.
    intake_ids: Vec<Uuid>,
    /// Replay every dead letter.
    #[arg(long, conflicts_with = "intake_ids")]
    all: bool,
    /// Only this account's.
    #[arg(long)]
    account: Option<i64>,
    /// Only those whose reason contains this text.
    #[arg(long)]
    reason: Option<String>,
    /// Show what would be replayed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Who replays (recorded on the intake; default: $USER).
    #[arg(long, env = "USER", default_value = "operator")]
    by: String,
    /// Read at most this many dead letters.
    #[arg(long, default_value_t = 100_000)]
    limit: usize,
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account.
    Create {
        #[arg(long)]
        name: String,
        /// Default region (ISO 3166-1 alpha-2) for numbers without a country code.
        #[arg(long, default_value = "US")]
        region: String,
        /// Intake requests per rolling minute per token (default: the configured limit).
        #[arg(long)]
        rate_limit: Option<i32>,
    },
    /// Change an account's settings.
    Set {
        id: i64,
        /// Channels that need the contact's consent before the product reaches it:
        /// `call,sms`, `sms` (the default of a new account), `call`, or `none`.
        #[arg(long, value_name = "CHANNELS")]
        require_consent: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Create the user inactive (receives no leads).
        #[arg(long)]
        inactive: bool,
        /// Create the user unavailable.
        #[arg(long)]
        unavailable: bool,
    },
    /// Change a user's active/available flags.
    Set {
        id: i64,
        #[command(flatten)]
        flags: UserFlags,
    },
}

#[derive(Debug, Args)]
pub struct UserFlags {
    #[arg(long, conflicts_with = "unavailable")]
    available: bool,
    #[arg(long)]
    unavailable: bool,
    #[arg(long, conflicts_with = "inactive")]
    active: bool,
    #[arg(long)]
    inactive: bool,
}

fn tri(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for a user; the token is shown only this once.
    Create {
        #[arg(long)]
        user: i64,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke a token: receivers are told on Redis and refuse it at once (within their
    /// token-cache TTL, 30 s, if Redis cannot be reached).
    Revoke { id: i64 },
    #[command(flatten)]
    Sources(crate::token_cli::SourcesCmd),
}

#[derive(Debug, Subcommand)]
pub enum RingGroupCmd {
    /// Create a ring group with members.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
        /// Comma-separated user ids of the same account.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        members: Vec<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NamedCmd {
    /// Create one.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PowerdialerCmd {
    /// A user's queued PowerDialer entries, top first.
    List {
        #[arg(long)]
        user: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Create (or complete) a demo account with users, ring group, sequence, tag, line,
    /// disposition and a new token.
    Seed,
}

/// What a command produced: the JSON object and its human rendering.
pub struct Output {
    pub json: Value,
    pub human: String,
}

/// Runs `cli`; returns the output to print or an error message for stderr.
pub async fn run(cli: Cli) -> anyhow::Result<Output> {
    // An import talks to the receiver only.
    if let Command::Import(args) = &cli.command {
        return crate::import::command(args, cli.json).await;
    }
    let mut settings = Settings::load()?;
    if let Some(u) = &cli.database_url {
        settings.database_url = u.clone();
    }
    if let Command::Topology(TopologyCmd::Definitions { vhost }) = &cli.command {
        return Ok(definitions(&settings, vhost));
    }
    let mut opts = ConnectOptions::new(settings.database_url.clone());
    opts.max_connections(2)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    let db = Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to connect to the database: {e}"))?;
    let out = execute(&db, &settings, cli.command, cli.json).await;
    db.close().await.ok();
    out
}

fn definitions(settings: &Settings, vhost: &str) -> Output {
    let topology = shared::amqp::Topology::from_settings(settings);
    Output {
        human: shared::amqp::definitions_text(&topology, vhost)
            .trim_end()
            .to_owned(),
        json: json!({"id": null, "vhost": vhost, "definitions": topology.definitions(vhost)}),
    }
}

fn status_json(s: &crate::status::Status) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), Value::Null);
    }
    v
}

/// `leadctl status [--watch [SECONDS]]`. Watching prints each refresh itself (the screen
/// redrawn on a terminal, one JSON object a line with `--json`) until Ctrl-C, and returns
/// an empty output.
async fn status(
    db: &DatabaseConnection,
    settings: &Settings,
    watch: Option<u64>,
    json_lines: bool,
) -> anyhow::Result<Output> {
    let Some(every) = watch else {
        let s = crate::status::collect(db, settings).await;
        return Ok(Output {
            human: crate::status::render(&s),
            json: status_json(&s),
        });
    };
    let every = std::time::Duration::from_secs(every.max(1));
    let terminal = std::io::stdout().is_terminal();
    loop {
        let s = crate::status::collect(db, settings).await;
        if json_lines {
            println!("{}", status_json(&s));
        } else if terminal {
            // Clear the screen and home the cursor, then draw.
            print!(
                "\x1b[2J\x1b[H{}\n\n(refreshing every {} s; Ctrl-C to stop)\n",
                crate::status::render(&s),
                every.as_secs()
            );
        } else {
            println!("{}\n", crate::status::render(&s));
        }
        use std::io::Write;
        std::io::stdout().flush().ok();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(Output {
        human: String::new(),
        json: Value::Null,
    })
}

fn dead_letter_json(d: &DeadLetter) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("id".into(), json!(d.intake_id));
        obj.insert("age_seconds".into(), json!(d.age_seconds()));
    }
    v
}

fn dead_letter_line(d: &DeadLetter) -> String {
    format!(
        "{}  account {:<6} attempts {:<3} age {:>8}  {}",
        d.intake_id
            .map(|i| i.to_string())
            .unwrap_or_else(|| "(no intake id)".into()),
        d.account_id
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".into()),
        d.attempts,
        d.age_seconds().map(human_age).unwrap_or_else(|| "?".into()),
        d.reason
    )
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Replays of more than this many letters show a progress bar (on a terminal).
const PROGRESS_FROM: usize = 200;

/// A progress bar on stderr for a replay of `count` letters when stderr is a terminal and
/// the replay is long enough to wait for; hidden otherwise.
fn replay_progress(count: usize) -> indicatif::ProgressBar {
    if count <= PROGRESS_FROM || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(count as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "replaying {bar:40} {pos}/{len} dead letters ({elapsed} so far, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn dlq(db: &DatabaseConnection, settings: &Settings, cmd: DlqCmd) -> anyhow::Result<Output> {
    let mut q = Dlq::open(settings).await?;
    let out = match cmd {
        DlqCmd::List { limit } => dlq_list(db, &mut q, limit).await,
        DlqCmd::Show { intake_id } => dlq_show(db, &mut q, intake_id).await,
        DlqCmd::Replay(args) => dlq_replay(db, &mut q, args).await,
        DlqCmd::Purge { yes } => dlq_purge(db, &mut q, yes).await,
    };
    q.close().await;
    out
}

/// `leadctl dlq list`.
async fn dlq_list(db: &DatabaseConnection, q: &mut Dlq, limit: usize) -> anyhow::Result<Output> {
    let letters = q.scan(db, limit).await?;
    let mut human = format!("{} dead letter(s)", letters.len());
    for d in letters {
        human.push('\n');
        human.push_str(&dead_letter_line(d));
    }
    Ok(Output {
        human,
        json: json!({"id": null, "count": letters.len(),
                     "items": letters.iter().map(dead_letter_json).collect::<Vec<_>>()}),
    })
}

/// `leadctl dlq show`.
async fn dlq_show(db: &DatabaseConnection, q: &mut Dlq, intake_id: Uuid) -> anyhow::Result<Output> {
    let letters = q.scan(db, usize::MAX).await?;
    let d = letters
        .iter()
        .find(|d| d.intake_id == Some(intake_id))
        .ok_or_else(|| anyhow::anyhow!("no dead letter with intake id {intake_id}"))?;
    Ok(Output {
        human: format!(
            "{}\nreceived: {}\npayload: {}",
            dead_letter_line(d),
            d.received_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "?".into()),
            serde_json::to_string_pretty(&d.payload)?
        ),
        json: dead_letter_json(d),
    })
}

/// `leadctl dlq replay`: the letters the arguments select, or what would be, with `--dry-run`.
async fn dlq_replay(
    db: &DatabaseConnection,
    q: &mut Dlq,
    args: ReplayArgs,
) -> anyhow::Result<Output> {
    let ReplayArgs {
        intake_ids,
        all,
        account,
        reason,
        dry_run,
        by,
        limit,
    } = args;
    if intake_ids.is_empty() && !all && account.is_none() && reason.is_none() {
        anyhow::bail!("say what to replay: intake ids, a filter (--account, --reason) or --all");
    }
    let filter = Filter {
        ids: intake_ids.clone(),
        account_id: account,
        reason,
    };
    let letters = q.scan(db, limit).await?;
    let missing: Vec<String> = intake_ids
        .iter()
        .filter(|id| !letters.iter().any(|d| d.intake_id == Some(**id)))
        .map(|id| id.to_string())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!("no dead letter with intake id {}", missing.join(", "));
    }
    let chosen: Vec<DeadLetter> = if dry_run {
        letters
            .iter()
            .filter(|d| filter.matches(d))
            .cloned()
            .collect()
    } else {
        let count = letters.iter().filter(|d| filter.matches(d)).count();
        let bar = replay_progress(count);
        let done = q.replay(db, &filter, &by, || bar.inc(1)).await;
        bar.finish_and_clear();
        done?
    };
    let verb = if dry_run { "Would replay" } else { "Replayed" };
    let mut human = format!("{verb} {} dead letter(s)", chosen.len());
    for d in &chosen {
        human.push('\n');
        human.push_str(&dead_letter_line(d));
    }
    Ok(Output {
        human,
        json: json!({"id": null, "dry_run": dry_run, "replayed": chosen.len(),
                     "intake_ids": chosen.iter().map(|d| d.intake_id).collect::<Vec<_>>(),
                     "replayed_by": by}),
    })
}

/// `leadctl dlq purge`: without `--yes`, only after the operator typed "yes" on a terminal.
async fn dlq_purge(db: &DatabaseConnection, q: &mut Dlq, yes: bool) -> anyhow::Result<Output> {
    if !yes {
        let count = q.scan(db, usize::MAX).await?.len();
        if count == 0 {
            return Ok(Output {
                human: "The dead-letter queue is empty".into(),
                json: json!({"id": null, "purged": 0}),
            });
        }
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("refusing to purge {count} dead letter(s) without --yes");
        }
        eprint!("Delete {count} dead letter(s) for good? Type 'yes' to confirm: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            anyhow::bail!("purge cancelled");
        }
        // Scanned messages are unacknowledged; purge removes only ready ones, so
        // hand them back first.
        q.release().await?;
    }
    let purged = q.purge().await?;
    Ok(Output {
        human: format!("Purged {purged} dead letter(s)"),
        json: json!({"id": null, "purged": purged}),
    })
}

/// Runs `command` on the open database: one function per command group. (`run` answers
/// `import` and `topology` before it connects; they need no database.)
async fn execute(
    db: &DatabaseConnection,
    settings: &Settings,
    command: Command,
    json: bool,
) -> anyhow::Result<Output> {
    match command {
        Command::Account(cmd) => account(db, cmd).await,
        Command::User(cmd) => user(db, cmd).await,
        Command::Token(cmd) => token(db, settings, cmd).await,
        Command::RingGroup(cmd) => ring_group(db, cmd).await,
        Command::Line(cmd) => crate::messaging_cli::line(db, cmd).await,
        Command::Tag(cmd) => named(db, Catalog::Tag, cmd).await,
        Command::Disposition(cmd) => named(db, Catalog::Disposition, cmd).await,
        Command::Sequence(cmd) => crate::messaging_cli::sequence(db, cmd).await,
        Command::Powerdialer(cmd) => powerdialer(db, cmd).await,
        Command::Dnc(cmd) => crate::dnc_cli::execute(db, cmd, json).await,
        Command::Webhook(cmd) => crate::webhook_cli::execute(db, cmd).await,
        Command::Demo(cmd) => demo(db, cmd).await,
        Command::Dlq(cmd) => dlq(db, settings, cmd).await,
        Command::Status { watch } => status(db, settings, watch, json).await,
        Command::Topology(TopologyCmd::Definitions { vhost }) => Ok(definitions(settings, &vhost)),
        Command::Import(args) => crate::import::command(&args, json).await,
    }
}

/// `leadctl account …`.
async fn account(db: &DatabaseConnection, cmd: AccountCmd) -> anyhow::Result<Output> {
    let (verb, a) = match cmd {
        AccountCmd::Create {
            name,
            region,
            rate_limit,
        } => (
            "Created",
            admin::create_account(db, &name, &region, rate_limit).await?,
        ),
        AccountCmd::Set {
            id,
            require_consent,
        } => {
            let channels = admin::parse_consent_channels(&require_consent)?;
            (
                "Updated",
                admin::set_require_consent(db, id, &channels).await?,
            )
        }
    };
    let consent = if a.require_consent.is_empty() {
        "nothing".to_owned()
    } else {
        a.require_consent.join(", ")
    };
    Ok(Output {
        human: format!(
            "{verb} account {} ({}), default region {}, consent required for {consent}",
            a.id, a.name, a.default_region
        ),
        json: json!({"id": a.id, "name": a.name, "default_region": a.default_region,
                     "rate_limit_per_minute": a.rate_limit_per_minute,
                     "require_consent": a.require_consent}),
    })
}

/// `leadctl user …`.
async fn user(db: &DatabaseConnection, cmd: UserCmd) -> anyhow::Result<Output> {
    Ok(match cmd {
        UserCmd::Create {
            account,
            name,
            email,
            inactive,
            unavailable,
        } => {
            let u = admin::create_user(
                db,
                account,
                &name,
                email.as_deref(),
                !inactive,
                !unavailable,
            )
            .await?;
            user_output("Created", &u)
        }
        UserCmd::Set { id, flags } => {
            let u = admin::set_user(
                db,
                id,
                tri(flags.active, flags.inactive),
                tri(flags.available, flags.unavailable),
            )
            .await?;
            user_output("Updated", &u)
        }
    })
}

fn user_output(verb: &str, u: &shared::entities::user::Model) -> Output {
    Output {
        human: format!(
            "{verb} user {} ({}) of account {}: {}, {}",
            u.id,
            u.name,
            u.account_id,
            if u.active { "active" } else { "inactive" },
            if u.available {
                "available"
            } else {
                "unavailable"
            }
        ),
        json: json!({"id": u.id, "account_id": u.account_id, "name": u.name, "email": u.email,
                     "active": u.active, "available": u.available}),
    }
}

/// `leadctl token …`.
async fn token(
    db: &DatabaseConnection,
    settings: &Settings,
    cmd: TokenCmd,
) -> anyhow::Result<Output> {
    match cmd {
        TokenCmd::Create { user, label } => {
            let t = admin::create_token(db, user, label.as_deref()).await?;
            Ok(Output {
                human: format!(
                    "Created token {} for user {} (account {}).\nToken (shown only this once): {}",
                    t.row.id, t.row.user_id, t.row.account_id, t.token
                ),
                json: json!({"id": t.row.id, "token": t.token, "user_id": t.row.user_id,
                             "account_id": t.row.account_id, "label": t.row.label,
                             "prefix": t.row.token_prefix}),
            })
        }
        TokenCmd::Revoke { id } => revoke_token(db, settings, id).await,
        TokenCmd::Sources(cmd) => crate::token_cli::execute(db, settings, cmd).await,
    }
}

/// `leadctl token revoke`: revoked in the database, then announced to the receivers.
async fn revoke_token(
    db: &DatabaseConnection,
    settings: &Settings,
    id: i64,
) -> anyhow::Result<Output> {
    let t = admin::revoke_token(db, id).await?;
    let announced = announce_token_change(settings, &t.token_hash).await;
    let effect = match &announced {
        Ok(()) => "receivers refuse it now".to_owned(),
        Err(e) => format!(
            "receivers could not be told ({e:#}); they refuse it within {} s",
            shared::config::ReceiverSettings::default()
                .token_cache_ttl
                .as_secs()
        ),
    };
    Ok(Output {
        human: format!("Revoked token {} ({}…); {effect}", t.id, t.token_prefix),
        json: json!({"id": t.id, "user_id": t.user_id, "account_id": t.account_id,
                     "revoked_at": t.revoked_at, "announced": announced.is_ok()}),
    })
}

/// `leadctl ring-group …`.
async fn ring_group(db: &DatabaseConnection, cmd: RingGroupCmd) -> anyhow::Result<Output> {
    let RingGroupCmd::Create {
        account,
        name,
        members,
    } = cmd;
    let g = admin::create_ring_group(db, account, &name, &members).await?;
    Ok(Output {
        human: format!(
            "Created ring group {} ({}) with members {:?}",
            g.id, g.name, g.members
        ),
        json: serde_json::to_value(&g)?,
    })
}

/// `leadctl tag|disposition …`: the catalog entries with only a name.
async fn named(db: &DatabaseConnection, kind: Catalog, cmd: NamedCmd) -> anyhow::Result<Output> {
    let NamedCmd::Create { account, name } = cmd;
    let n = admin::create_named(db, kind, account, &name).await?;
    Ok(Output {
        human: format!(
            "Created {} {} ({}) in account {}",
            kind.noun(),
            n.id,
            n.name,
            n.account_id
        ),
        json: serde_json::to_value(&n)?,
    })
}

/// `leadctl powerdialer …`.
async fn powerdialer(db: &DatabaseConnection, cmd: PowerdialerCmd) -> anyhow::Result<Output> {
    let PowerdialerCmd::List { user } = cmd;
    let items = admin::powerdialer_list(db, user).await?;
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({"id": i.id, "contact_id": i.contact_id, "position": i.position,
                        "not_before": i.not_before, "created_at": i.created_at})
        })
        .collect();
    let mut human = format!("PowerDialer of user {user}: {} queued", items.len());
    for (n, i) in items.iter().enumerate() {
        human.push_str(&format!(
            "\n{:>4}. contact {} (entry {}, position {})",
            n + 1,
            i.contact_id,
            i.id,
            i.position
        ));
        // Queued outside the contact's calling window (§9).
        if let Some(t) = i.not_before {
            human.push_str(&format!(", not before {}", t.to_rfc3339()));
        }
    }
    Ok(Output {
        human,
        json: json!({"id": user, "user_id": user, "items": rows}),
    })
}

/// `leadctl demo …`.
async fn demo(db: &DatabaseConnection, cmd: DemoCmd) -> anyhow::Result<Output> {
    let DemoCmd::Seed = cmd;
    let d = admin::demo_seed(db).await?;
    let mut json = serde_json::to_value(&d)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("id".into(), json!(d.account_id));
    }
    Ok(Output {
        human: format!(
            "Demo account {}: users {:?}, ring group {}, sequence {}, tag {}, line {}, \
             disposition {}.\nToken {} (shown only this once): {}",
            d.account_id,
            d.user_ids,
            d.ring_group_id,
            d.sequence_id,
            d.tag_id,
            d.line_id,
            d.disposition_status_id,
            d.token_id,
            d.token
        ),
        json,
    })
}

/// Tells every receiver, on Redis, to forget the token with `token_hash` now.
pub async fn announce_token_change(settings: &Settings, token_hash: &str) -> anyhow::Result<()> {
    let channel = shared::keys::token_changes_channel(&settings.redis_prefix);
    let announce = async {
        let client = redis::Client::open(settings.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(token_hash)
            .query_async::<i64>(&mut conn)
            .await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), announce).await {
        Ok(result) => result.map(drop).map_err(Into::into),
        Err(_) => anyhow::bail!("Redis did not answer within 3 s"),
    }
}
