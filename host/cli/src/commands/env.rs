//! `cloudfn env`: creates environments, each owned by an app, and lists them.

use super::client;
use crate::Cli;
use clap::Subcommand;

/// Environment subcommands.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment owned by an app.
    Create {
        /// The env id, e.g. prod-01.
        env: String,
        /// The appid that owns it.
        #[arg(long)]
        owner: String,
    },
    /// List environments.
    Ls,
}

impl EnvCommand {
    /// `cloudfn env …`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        match self {
            EnvCommand::Create { env, owner } => {
                let info = client(cli).await?.create_env(env, owner).await?;
                println!("created env {} owned by {}", info.name, info.owner_appid);
            }
            EnvCommand::Ls => {
                let mut out = String::from("ENV\tOWNER\tFUNCTIONS\n");
                for e in client(cli).await?.envs().await? {
                    out.push_str(&format!("{}\t{}\t{}\n", e.name, e.owner_appid, e.functions));
                }
                print!("{out}");
            }
        }
        Ok(0)
    }
}
