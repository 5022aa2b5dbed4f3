//! `cloudfn app`: registers apps, rotates their credentials, ends their users' sessions,
//! lists them, turns their environment sharing on or off, and sets their webhook and upstream
//! (and Taobao) secrets.

use super::{client, print_credentials, read_event};
use crate::Cli;
use clap::Subcommand;

/// App subcommands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app; prints its secret and secretId/secretKey once.
    Create {
        /// The appid.
        appid: String,
        /// The company (subject) it belongs to.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Replace an app's secret and secretId/secretKey; prints the new ones once.
    RotateSecret {
        /// The appid.
        appid: String,
    },
    /// End every session of an app's mini-program users at once; they log in again.
    RevokeSessions {
        /// The appid.
        appid: String,
    },
    /// List apps.
    Ls,
    /// Turn an app's environment sharing on or off (off is refused while shares exist).
    Sharing {
        /// The appid.
        appid: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Set an app's webhook (where it is told of changes others make to it, e.g. a share of
    /// an env ending) or its upstream credentials (for its functions' cloud calls and its
    /// mini-program users' logins).
    #[command(group(clap::ArgGroup::new("setting").required(true).multiple(true)
        .args(["webhook", "no_webhook", "upstream_secret", "no_upstream_secret",
            "taobao_secret", "no_taobao_secret"])))]
    Set {
        /// The appid.
        appid: String,
        /// An https:// (or http://) URL events are POSTed to, signed (X-Cloudfn-Signature);
        /// prints the signing secret once.
        #[arg(long, conflicts_with = "no_webhook")]
        webhook: Option<String>,
        /// Remove the app's webhook.
        #[arg(long)]
        no_webhook: bool,
        /// The app's AppSecret on the upstream platform, for cloud calls and logins (kept
        /// sealed, never shown again): the secret, @FILE to read a file, or @- to read stdin.
        #[arg(long, conflicts_with = "no_upstream_secret")]
        upstream_secret: Option<String>,
        /// Forget the app's upstream credentials.
        #[arg(long)]
        no_upstream_secret: bool,
        /// The secret the app's Taobao mini-program signs with (its appKey's secret): the
        /// Taobao gateway signs `sign` with it for the functions of the app's envs, which hold
        /// it to check (kept sealed): the secret, @FILE, or @- for stdin.
        #[arg(long, conflicts_with = "no_taobao_secret")]
        taobao_secret: Option<String>,
        /// Forget the app's Taobao signing secret.
        #[arg(long)]
        no_taobao_secret: bool,
    },
}

impl AppCommand {
    /// `cloudfn app …`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        match self {
            AppCommand::Create { appid, subject } => {
                let creds = client(cli)
                    .await?
                    .create_app(appid, subject.as_deref())
                    .await?;
                print_credentials(&creds);
            }
            AppCommand::RotateSecret { appid } => {
                let creds = client(cli).await?.rotate_secret(appid).await?;
                print_credentials(&creds);
            }
            AppCommand::RevokeSessions { appid } => {
                let generation = client(cli).await?.revoke_sessions(appid).await?;
                println!(
                    "revoked every session of {appid}'s users (session generation {generation})"
                );
            }
            AppCommand::Ls => {
                let mut out = String::from("APPID\tSUBJECT\tSECRET_ID\n");
                for a in client(cli).await?.apps().await? {
                    out.push_str(&format!(
                        "{}\t{}\t{}\n",
                        a.appid,
                        a.subject.unwrap_or_default(),
                        a.secret_id.unwrap_or_else(|| "(no credentials)".into())
                    ));
                }
                print!("{out}");
            }
            AppCommand::Sharing { appid, state } => {
                client(cli).await?.set_sharing(appid, state == "on").await?;
                println!("sharing of {appid} is {state}");
            }
            AppCommand::Set {
                appid,
                webhook,
                no_webhook,
                upstream_secret,
                no_upstream_secret,
                taobao_secret,
                no_taobao_secret,
            } => {
                let client = client(cli).await?;
                if webhook.is_some() || *no_webhook {
                    let secret = client.set_webhook(appid, webhook.as_deref()).await?;
                    match (webhook, secret) {
                        (Some(url), Some(secret)) => {
                            println!("webhook of {appid}: {url}");
                            println!("signing secret (shown once): {secret}");
                        }
                        _ => println!("{appid} has no webhook"),
                    }
                }
                if let Some(secret) = upstream_secret {
                    let secret = read_event(secret)?;
                    client
                        .set_upstream_secret(appid, Some(secret.trim()))
                        .await?;
                    println!("upstream credentials of {appid} set (sealed)");
                } else if *no_upstream_secret {
                    client.set_upstream_secret(appid, None).await?;
                    println!("{appid} has no upstream credentials");
                }
                if let Some(secret) = taobao_secret {
                    let secret = read_event(secret)?;
                    client.set_taobao_secret(appid, Some(secret.trim())).await?;
                    println!("Taobao signing secret of {appid} set (sealed)");
                } else if *no_taobao_secret {
                    client.set_taobao_secret(appid, None).await?;
                    println!("{appid} has no Taobao signing secret");
                }
            }
        }
        Ok(0)
    }
}
