//! `leadctl token map|defaults|google-key|show`: a token's lead sources, for form builders
//! that cannot be told our field names and ad platforms that post their own shape.
//!
//! A change is announced to the receivers the way a revocation is (they forget the token's
//! cached lookup and read it again), so it applies at once; if Redis cannot be reached, it
//! applies within the token cache's TTL.

use crate::admin::sources::{self, TokenView};
use crate::cli::{Output, announce_token_change};
use clap::{Args, Subcommand, ValueEnum};
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::{Map, Value, json};
use shared::config::Settings;
use shared::entities::api_token;
use shared::mapping::{DefaultActions, FieldMap};

#[derive(Debug, Subcommand)]
pub enum SourcesCmd {
    /// Rename a form's fields to lead fields before validation, replacing the token's
    /// mapping: `leadctl token map 7 'Your phone=phone_number' 'Full name=name'`.
    Map {
        id: i64,
        /// `Incoming name=field` pairs; the incoming name matches ignoring case.
        #[arg(required_unless_present = "clear")]
        pairs: Vec<String>,
        /// Remove the mapping.
        #[arg(long, conflicts_with = "pairs")]
        clear: bool,
    },
    /// Set the actions every lead of the token gets unless it says otherwise, replacing
    /// the token's defaults: `leadctl token defaults 7 --ring-group 3 --distribute`.
    Defaults(DefaultsArgs),
    /// Set the key the token's Google Ads lead form sends (`google_key`); creates the
    /// account's `test` tag for test leads.
    #[command(name = "google-key")]
    GoogleKey {
        id: i64,
        #[arg(required_unless_present = "clear")]
        key: Option<String>,
        /// Remove the key: the Google Ads webhook then refuses the token's leads.
        #[arg(long, conflicts_with = "key")]
        clear: bool,
    },
    /// A token with its mapping, defaults and whether a Google Ads key is set.
    Show { id: i64 },
}

/// The defaults `leadctl token defaults` sets.
#[derive(Debug, Args)]
pub struct DefaultsArgs {
    id: i64,
    /// Owner of new contacts.
    #[arg(long)]
    user: Option<i64>,
    #[arg(long)]
    ring_group: Option<i64>,
    /// Distribute to the ring group.
    #[arg(long)]
    distribute: bool,
    /// Distribute only to available members.
    #[arg(long)]
    check_available: bool,
    /// Fall back to any active member when none is available.
    #[arg(long)]
    check_available_with_fallback: bool,
    /// Add to the owner's PowerDialer, at the top or the bottom.
    #[arg(long, value_enum)]
    powerdialer: Option<Position>,
    /// Enroll in this sequence.
    #[arg(long)]
    sequence: Option<i64>,
    #[arg(long)]
    tag: Option<i64>,
    /// Line (campaign).
    #[arg(long)]
    line: Option<i64>,
    #[arg(long)]
    disposition: Option<i64>,
    /// Remove every default.
    #[arg(long)]
    clear: bool,
}

impl DefaultsArgs {
    /// The default actions these arguments give: none with `--clear`.
    fn defaults(&self) -> anyhow::Result<DefaultActions> {
        let mut fields = Map::new();
        if !self.clear {
            let ids = [
                ("user_id", self.user),
                ("ring_group_id", self.ring_group),
                ("sequence_id", self.sequence),
                ("tag_id", self.tag),
                ("line_id", self.line),
                ("disposition_status_id", self.disposition),
            ];
            for (name, id) in ids {
                if let Some(id) = id {
                    anyhow::ensure!(id > 0, "{name} must be a positive id");
                    fields.insert(name.into(), json!(id));
                }
            }
            let flags = [
                ("distribute_to_ring_group", self.distribute),
                ("check_available_users", self.check_available),
                (
                    "check_available_users_with_fallback",
                    self.check_available_with_fallback,
                ),
            ];
            for (name, on) in flags {
                if on {
                    fields.insert(name.into(), json!(true));
                }
            }
            if let Some(position) = self.powerdialer {
                fields.insert("add_to_powerdialer".into(), json!(true));
                let position = match position {
                    Position::Top => "top",
                    Position::Bottom => "bottom",
                };
                fields.insert("powerdialer_position".into(), json!(position));
            }
            anyhow::ensure!(
                !fields.is_empty(),
                "give at least one default (see --help), or --clear"
            );
        }
        Ok(DefaultActions::new(fields)?)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Position {
    Top,
    Bottom,
}

/// Runs one token-sources command.
pub async fn execute(
    db: &DatabaseConnection,
    settings: &Settings,
    cmd: SourcesCmd,
) -> anyhow::Result<Output> {
    let changes = !matches!(cmd, SourcesCmd::Show { .. });
    let (verb, view) = match cmd {
        SourcesCmd::Map { id, pairs, clear } => {
            let map = if clear {
                FieldMap::default()
            } else {
                FieldMap::parse(&pairs)?
            };
            ("Mapped", sources::set_field_map(db, id, &map).await?)
        }
        SourcesCmd::Defaults(args) => (
            "Set defaults of",
            sources::set_default_actions(db, args.id, &args.defaults()?).await?,
        ),
        SourcesCmd::GoogleKey { id, key, clear } => {
            let key = if clear { None } else { key };
            (
                "Set the Google Ads key of",
                sources::set_google_key(db, id, key.as_deref()).await?,
            )
        }
        SourcesCmd::Show { id } => ("Token", sources::show_token(db, id).await?),
    };
    let mut out = output(verb, &view);
    if changes {
        let announced = announce_change(db, settings, view.id).await;
        out.human.push_str(match &announced {
            Ok(()) => "\nReceivers apply it now.",
            Err(_) => "\nReceivers could not be told; they apply it within their token-cache TTL.",
        });
        if let Some(obj) = out.json.as_object_mut() {
            obj.insert("announced".into(), Value::Bool(announced.is_ok()));
        }
    }
    Ok(out)
}

/// Tells the receivers to read token `id` again.
async fn announce_change(
    db: &DatabaseConnection,
    settings: &Settings,
    id: i64,
) -> anyhow::Result<()> {
    let token = api_token::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("token {id} not found"))?;
    announce_token_change(settings, &token.token_hash).await
}

fn output(verb: &str, t: &TokenView) -> Output {
    let mut human = format!(
        "{verb} token {} ({}…) of user {} (account {}){}",
        t.id,
        t.prefix,
        t.user_id,
        t.account_id,
        if t.revoked_at.is_some() {
            ", revoked"
        } else {
            ""
        }
    );
    if t.field_map.is_empty() {
        human.push_str("\nmapping: none");
    }
    for (from, to) in t.field_map.pairs() {
        human.push_str(&format!("\nmap: {from:?} → {to}"));
    }
    if t.default_actions.is_empty() {
        human.push_str("\ndefaults: none");
    } else {
        human.push_str(&format!(
            "\ndefaults: {}",
            Value::Object(t.default_actions.fields().clone())
        ));
    }
    human.push_str(&format!(
        "\nGoogle Ads key: {}",
        if t.google_key_set { "set" } else { "not set" }
    ));
    Output {
        json: serde_json::to_value(t).unwrap_or(Value::Null),
        human,
    }
}
