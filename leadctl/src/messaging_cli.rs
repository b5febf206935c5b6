//! `leadctl line …` and `leadctl sequence …`: lines with their sending numbers, sequences
//! with their line and message steps (§10).

use crate::admin::messaging::{self, Sequence, Step};
use crate::admin::{self, Catalog};
use crate::cli::Output;
use clap::Subcommand;
use sea_orm::DatabaseConnection;
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum LineCmd {
    /// Create a line, optionally with the number its messages go from.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
        /// The sending number (any format; read in the account's region).
        #[arg(long)]
        number: Option<String>,
    },
    /// Change a line's sending number.
    Set {
        id: i64,
        #[arg(
            long,
            required_unless_present = "no_number",
            conflicts_with = "no_number"
        )]
        number: Option<String>,
        /// Remove the line's number.
        #[arg(long)]
        no_number: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SequenceCmd {
    /// Create a sequence, optionally sending from a line.
    Create {
        #[arg(long)]
        account: i64,
        #[arg(long)]
        name: String,
        /// The line its messages go from when the contact has none.
        #[arg(long)]
        line: Option<i64>,
    },
    /// Change the line a sequence sends from.
    Set {
        id: i64,
        #[arg(long, required_unless_present = "no_line", conflicts_with = "no_line")]
        line: Option<i64>,
        /// Send from the contact's line, else SMS__FROM.
        #[arg(long)]
        no_line: bool,
    },
    /// A sequence with its steps and what is under way.
    Show { id: i64 },
    /// The message steps of a sequence.
    #[command(subcommand)]
    Step(StepCmd),
}

#[derive(Debug, Subcommand)]
pub enum StepCmd {
    /// Append an SMS step: `--sms "Hi {{first_name|there}}, …" --delay 10m`.
    Add {
        sequence: i64,
        /// The template; placeholders are the contact's fields and phone_number, with an
        /// optional fallback after `|`.
        #[arg(long)]
        sms: String,
        /// After the previous step (the first: after enrollment): 0s, 10m, 1d …
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        delay: std::time::Duration,
    },
    /// The steps of a sequence, in order.
    List { sequence: i64 },
    /// Remove a step by its id; its pending messages are cancelled when due.
    Remove { id: i64 },
}

/// `leadctl line …`.
pub async fn line(db: &DatabaseConnection, cmd: LineCmd) -> anyhow::Result<Output> {
    let line = match cmd {
        LineCmd::Create {
            account,
            name,
            number,
        } => {
            let n = admin::create_named(db, Catalog::Line, account, &name).await?;
            match number {
                Some(number) => messaging::set_line_number(db, n.id, Some(&number)).await?,
                None => messaging::set_line_number(db, n.id, None).await?,
            }
        }
        LineCmd::Set { id, number, .. } => {
            messaging::set_line_number(db, id, number.as_deref()).await?
        }
    };
    Ok(Output {
        human: format!(
            "Line {} ({}) in account {} sends from {}",
            line.id,
            line.name,
            line.account_id,
            line.number.as_deref().unwrap_or("no number")
        ),
        json: serde_json::to_value(&line)?,
    })
}

/// `leadctl sequence …`.
pub async fn sequence(db: &DatabaseConnection, cmd: SequenceCmd) -> anyhow::Result<Output> {
    match cmd {
        SequenceCmd::Create {
            account,
            name,
            line,
        } => {
            let n = admin::create_named(db, Catalog::Sequence, account, &name).await?;
            let s = messaging::set_sequence_line(db, n.id, line).await?;
            shown(&s, "Created sequence")
        }
        SequenceCmd::Set { id, line, .. } => {
            let s = messaging::set_sequence_line(db, id, line).await?;
            shown(&s, "Sequence")
        }
        SequenceCmd::Show { id } => shown(&messaging::show_sequence(db, id).await?, "Sequence"),
        SequenceCmd::Step(StepCmd::Add {
            sequence,
            sms,
            delay,
        }) => {
            let step = messaging::add_step(db, sequence, &sms, delay).await?;
            Ok(Output {
                human: format!(
                    "Added step {} to sequence {sequence}:\n{}",
                    step.id,
                    step_line(&step)
                ),
                json: serde_json::to_value(&step)?,
            })
        }
        SequenceCmd::Step(StepCmd::List { sequence }) => {
            let steps = messaging::steps(db, sequence).await?;
            let mut human = format!("{} step(s) of sequence {sequence}", steps.len());
            for s in &steps {
                human.push('\n');
                human.push_str(&step_line(s));
            }
            Ok(Output {
                human,
                json: json!({"id": sequence, "steps": steps}),
            })
        }
        SequenceCmd::Step(StepCmd::Remove { id }) => {
            let step = messaging::remove_step(db, id).await?;
            Ok(Output {
                human: format!(
                    "Removed step {} from sequence {}",
                    step.id, step.sequence_id
                ),
                json: serde_json::to_value(&step)?,
            })
        }
    }
}

fn step_line(s: &Step) -> String {
    let delay = humantime::format_duration(std::time::Duration::from_secs(
        s.delay_seconds.max(0).unsigned_abs(),
    ));
    format!(
        "  {}. [step {}] after {delay}: {}",
        s.position, s.id, s.body
    )
}

fn shown(s: &Sequence, verb: &str) -> anyhow::Result<Output> {
    let mut human = format!(
        "{verb} {} ({}) in account {}, sending from {}; {} contact(s) enrolled, {} message(s) scheduled",
        s.id,
        s.name,
        s.account_id,
        s.line_id
            .map(|l| format!("line {l}"))
            .unwrap_or_else(|| "the contact's line or SMS__FROM".into()),
        s.active_enrollments,
        s.scheduled_messages
    );
    for step in &s.steps {
        human.push('\n');
        human.push_str(&step_line(step));
    }
    Ok(Output {
        human,
        json: serde_json::to_value(s)?,
    })
}
