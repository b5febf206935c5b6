//! `leadctl`: the operator CLI. See `leadctl::cli`.

use clap::Parser;
use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = leadctl::cli::Cli::parse();
    let json = cli.json;
    match leadctl::cli::run(cli).await {
        Ok(out) => {
            if out.json.is_null() && out.human.is_empty() {
                // Printed as it went (`status --watch`).
            } else if json {
                println!("{}", out.json);
            } else {
                println!("{}", out.human);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
