//! `cloudfn rm`: removes a function and all its versions.

use super::{ActAs, client};
use crate::Cli;
use clap::Args;

/// `cloudfn rm`.
#[derive(Debug, Args)]
pub struct RmCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The function.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub acting: ActAs,
    /// Remove cloudbase_auth even though the env is shared (its sharees' calls then fail).
    #[arg(long)]
    pub force: bool,
}

impl RmCommand {
    /// `cloudfn rm`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let RmCommand {
            env,
            name,
            acting,
            force,
        } = self;
        client(cli)
            .await?
            .remove(env, name, acting.app(), *force)
            .await?;
        println!("removed {env}/{name}");
        Ok(0)
    }
}
