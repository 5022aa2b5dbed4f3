//! `cloudfn share`: shares an environment with another app of the same subject, lists shares,
//! and ends the share of one env or every share between two apps.

use super::client;
use crate::Cli;
use clap::Subcommand;
use cloudfn_gateway::admin_api::NewShare;

/// Share subcommands.
#[derive(Debug, Subcommand)]
pub enum ShareCommand {
    /// Share ENV with app TO (the env needs a deployed cloudbase_auth; both apps one subject).
    Add {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The app to share it with.
        #[arg(long)]
        to: String,
        /// Permissions, comma-separated: functions:invoke (call), functions:read (list
        /// functions and versions, read records of its own calls), functions:deploy (deploy,
        /// roll back, remove the covered functions except cloudbase_auth).
        #[arg(long, default_value = "functions:invoke")]
        perm: String,
        /// The functions covered: `*` or a,b,c.
        #[arg(long, default_value = "*")]
        functions: String,
        /// The app making the change (default: the env's owner); only the owner may share.
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// List shares.
    Ls {
        /// Only shares of this env.
        #[arg(long)]
        env: Option<String>,
        /// Only shares this app gives or uses.
        #[arg(long)]
        app: Option<String>,
    },
    /// End the share of one env (its owner's alone; the sharee is told by webhook).
    Rm {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The app it is shared with.
        #[arg(long)]
        to: String,
        /// The app making the change: only the env's owner may.
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// End the relationship of two apps: every share of OWNER's envs with TO (either side
    /// may; the other is told by webhook).
    Unbind {
        /// The app whose envs are shared.
        #[arg(long)]
        owner: String,
        /// The app they are shared with.
        #[arg(long)]
        to: String,
        /// The side ending it (default: the owner).
        #[arg(long = "as")]
        acting: Option<String>,
    },
}

impl ShareCommand {
    /// `cloudfn share …`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        match self {
            ShareCommand::Add {
                env,
                to,
                perm,
                functions,
                acting,
            } => {
                let share = (client(cli).await?)
                    .add_share(NewShare {
                        env: env.clone(),
                        to: to.clone(),
                        perms: perm
                            .split(',')
                            .map(|p| p.trim().to_string())
                            .filter(|p| !p.is_empty())
                            .collect(),
                        functions: Some(functions.clone()),
                        acting: acting.clone(),
                    })
                    .await?;
                println!(
                    "shared env {} of {} with {} ({})",
                    share.env,
                    share.owner_appid,
                    share.to_appid,
                    share.perms.join(",")
                );
            }
            ShareCommand::Ls { env, app } => {
                let mut out = String::from("ENV\tOWNER\tTO\tPERMS\tFUNCTIONS\n");
                for s in client(cli)
                    .await?
                    .shares(env.as_deref(), app.as_deref())
                    .await?
                {
                    let functions = s.functions.encode();
                    out.push_str(&format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        s.env,
                        s.owner_appid,
                        s.to_appid,
                        s.perms.join(","),
                        functions
                    ));
                }
                print!("{out}");
            }
            ShareCommand::Rm { env, to, acting } => {
                client(cli)
                    .await?
                    .remove_share(env, to, acting.as_deref())
                    .await?;
                println!("env {env} is no longer shared with {to}");
            }
            ShareCommand::Unbind { owner, to, acting } => {
                let envs = client(cli)
                    .await?
                    .unbind(owner, to, acting.as_deref())
                    .await?;
                println!("{owner} no longer shares {} with {to}", envs.join(", "));
            }
        }
        Ok(0)
    }
}
