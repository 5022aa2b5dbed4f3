//! `cloudfn rollback`: makes an earlier version of a function active again.

use super::{ActAs, client};
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
    #[command(flatten)]
    pub acting: ActAs,
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
            .rollback(env, name, *to, acting.app())
            .await?;
        println!("{env}/{name} now runs version {to}");
        Ok(0)
    }
}
