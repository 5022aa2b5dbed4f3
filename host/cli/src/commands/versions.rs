//! `cloudfn versions`: lists the versions of a function, newest first, with their hashes,
//! sizes and settings.

use super::{ActAs, client, short};
use crate::Cli;
use clap::Args;

/// `cloudfn versions`.
#[derive(Debug, Args)]
pub struct VersionsCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The function.
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub acting: ActAs,
}

impl VersionsCommand {
    /// `cloudfn versions`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let VersionsCommand { env, name, acting } = self;
        let mut out = String::from("VERSION\tACTIVE\tSHA256\tSIZE\tTIMEOUT\tMEMORY\tKIND\n");
        for v in client(cli).await?.versions(env, name, acting.app()).await? {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}MB\t{}\n",
                v.version,
                if v.active { "*" } else { "" },
                short(&v.sha256),
                v.size,
                v.config
                    .timeout_ms
                    .map(|ms| format!("{}s", ms as f64 / 1000.0))
                    .unwrap_or_else(|| "default".into()),
                v.config.memory_mb,
                v.config.kind
            ));
        }
        print!("{out}");
        Ok(0)
    }
}
