//! `cloudfn ls`: lists the functions of an environment (active version, versions, kind).

use super::client;
use crate::Cli;
use clap::Args;

/// `cloudfn ls`.
#[derive(Debug, Args)]
pub struct LsCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// Act as this app: its own envs in full, a shared env as far as its share's
    /// permissions go (functions:read, functions:deploy).
    #[arg(long = "as")]
    pub acting: Option<String>,
}

impl LsCommand {
    /// `cloudfn ls`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let LsCommand { env, acting } = self;
        let mut out = String::from("NAME\tACTIVE\tVERSIONS\tKIND\n");
        for f in client(cli).await?.functions(env, acting.as_deref()).await? {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                f.name, f.active_version, f.versions, f.kind
            ));
        }
        print!("{out}");
        Ok(0)
    }
}
