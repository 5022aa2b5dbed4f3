//! `cloudfn logs`: activation records (one per call) with the functions' log lines, oldest
//! first, and with `-f` new ones as they arrive.

use super::{client, format_time};
use crate::Cli;
use crate::client::AdminClient;
use clap::Args;
use cloudfn_store::ActivationQuery;
use std::io::Write;
use std::time::Duration;

/// `cloudfn logs`.
#[derive(Debug, Args)]
pub struct LogsCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// Only this function.
    #[arg(long)]
    pub name: Option<String>,
    /// How many of the latest records to show.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Keep printing new records as they arrive.
    #[arg(long, short)]
    pub follow: bool,
    /// Act as this app: all records of its own envs, those of its own calls in an env
    /// shared with it (with functions:read).
    #[arg(long = "as")]
    pub acting: Option<String>,
}

impl LogsCommand {
    /// `cloudfn logs`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let LogsCommand {
            env,
            name,
            limit,
            follow,
            acting,
        } = self;
        let query = ActivationQuery {
            env: env.to_string(),
            name: name.clone(),
            limit: Some(*limit),
            ..Default::default()
        };
        logs(&client(cli).await?, query, acting.as_deref(), *follow).await?;
        Ok(0)
    }
}

async fn logs(
    client: &AdminClient,
    mut query: ActivationQuery,
    acting: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let mut first = true;
    loop {
        let records = client.activations(&query, acting).await?;
        let mut out = std::io::stdout().lock();
        for a in &records {
            writeln!(
                out,
                "{} {} {}/{}@{} {} {:.2}ms {}",
                format_time(a.started_at_ms),
                a.request_id,
                a.env,
                a.function,
                a.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.caller_appid.as_deref().unwrap_or("-"),
                a.duration_us as f64 / 1000.0,
                if a.errcode == 0 {
                    "ok".to_string()
                } else {
                    format!("errcode {} {}", a.errcode, a.errmsg)
                }
            )?;
            // A shared env's grant: who was let in or refused, at which step, and why.
            if let Some(d) = &a.decision {
                writeln!(
                    out,
                    "    [grant] {} app {} at {}{}: {}",
                    if d.allowed { "allowed" } else { "denied" },
                    d.caller_appid,
                    d.step,
                    if d.cached { " (cached decision)" } else { "" },
                    d.reason
                )?;
            }
            for line in &a.logs {
                let tag = line.tag();
                writeln!(out, "    [{tag}] {}", line.message)?;
            }
        }
        out.flush()?;
        drop(out);
        if first {
            // How fresh the list is, on stderr so the listing stays one line per call.
            let now = format_time(cloudfn_store::fsutil::now_ms());
            let shown = records.len();
            eprintln!(
                "{shown} call(s) of {}, oldest first, as recorded at {now}; a call is listed \
                 once its record is written, about 0.1 s after it ends{}",
                query.env,
                if follow {
                    "; following: new calls appear within half a second (Ctrl-C stops)"
                } else {
                    " (-f follows)"
                }
            );
            first = false;
        }
        if !follow {
            return Ok(());
        }
        if let Some(last) = records.last() {
            query.after = Some(last.seq);
        } else if query.after.is_none() {
            query.after = Some(0);
        }
        query.limit = Some(1000);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
