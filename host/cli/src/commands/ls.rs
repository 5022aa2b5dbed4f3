//! `cloudfn ls`: lists the functions of an environment (active version, versions, kind).

use super::{ActAs, client};
use crate::Cli;
use clap::Args;

/// `cloudfn ls`.
#[derive(Debug, Args)]
pub struct LsCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    #[command(flatten)]
    pub acting: ActAs,
}

impl LsCommand {
    /// `cloudfn ls`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let LsCommand { env, acting } = self;
        let mut out = String::from("NAME\tACTIVE\tVERSIONS\tKIND\n");
        for f in client(cli).await?.functions(env, acting.app()).await? {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                f.name, f.active_version, f.versions, f.kind
            ));
        }
        print!("{out}");
        Ok(0)
    }
}
