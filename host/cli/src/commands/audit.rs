//! `cloudfn audit`: the audit log: who changed what (deploys, rollbacks, rules, shares, apps).

use super::{client, format_time};
use crate::Cli;
use clap::Args;
use cloudfn_store::AuditQuery;

/// `cloudfn audit`.
#[derive(Debug, Args)]
pub struct AuditCommand {
    /// Only entries of this env.
    #[arg(long)]
    pub env: Option<String>,
    /// Only entries this app made or that concern it (or its envs).
    #[arg(long)]
    pub app: Option<String>,
    /// How many of the latest entries to show.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

impl AuditCommand {
    /// `cloudfn audit`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let AuditCommand { env, app, limit } = self;
        let q = AuditQuery {
            env: env.clone(),
            app: app.clone(),
            limit: Some(*limit),
            ..Default::default()
        };
        let mut out = String::from("SEQ\tTIME\tBY\tACTION\tENV\tTARGET\tDETAIL\n");
        for e in client(cli).await?.audit(&q).await? {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                e.seq,
                format_time(e.at * 1000),
                e.acting.as_deref().unwrap_or("operator"),
                e.action,
                e.env.as_deref().unwrap_or("-"),
                e.target.as_deref().unwrap_or("-"),
                e.detail
            ));
        }
        print!("{out}");
        Ok(0)
    }
}
