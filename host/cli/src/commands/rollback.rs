//! `cloudfn rollback`: makes an earlier version of a function active again.

use super::client;
use crate::Cli;
use clap::Args;

/// `cloudfn rollback`.
#[derive(Debug, Args)]
pub struct RollbackCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The function.
    #[arg(long)]
    pub name: String,
    /// The version to make active.
    #[arg(long)]
    pub to: u32,
    /// Act as this app: its own envs in full, a shared env as far as its share's
    /// permissions go (functions:read, functions:deploy).
    #[arg(long = "as")]
    pub acting: Option<String>,
}

impl RollbackCommand {
    /// `cloudfn rollback`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let RollbackCommand {
            env,
            name,
            to,
            acting,
        } = self;
        client(cli)
            .await?
            .rollback(env, name, *to, acting.as_deref())
            .await?;
        println!("{env}/{name} now runs version {to}");
        Ok(0)
    }
}
