//! `cloudfn rules`: validates and sets an environment's security rules for functions from a
//! JSON file, and prints them.

use super::client;
use crate::Cli;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

/// Rules subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate and set ENV's rules from a JSON file: {"*": {"invoke": RULE}, "fn": {…}}.
    Set {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The rules file.
        file: PathBuf,
        /// The app making the change: only the env's owner may.
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// Print ENV's rules.
    Get {
        /// The environment.
        #[arg(long)]
        env: String,
    },
}

impl RulesCommand {
    /// `cloudfn rules …`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        match self {
            RulesCommand::Set { env, file, acting } => {
                let rules = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                client(cli)
                    .await?
                    .set_rules(env, rules, acting.as_deref())
                    .await?;
                println!("rules of env {env} set");
            }
            RulesCommand::Get { env } => {
                println!("{}", client(cli).await?.rules(env).await?)
            }
        }
        Ok(0)
    }
}
