//! `cloudfn migrate`: applies the store's schema migrations (a PostgreSQL store's, or the data
//! dir's) and exits.

use super::open;
use crate::Cli;
use anyhow::Context;
use clap::Args;

/// `cloudfn migrate`.
#[derive(Debug, Args)]
pub struct MigrateCommand;

impl MigrateCommand {
    /// `cloudfn migrate`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        match &cli.store {
            Some(url) => {
                let (before, after) =
                    cloudfn_store::postgres::migrate(url)
                        .await
                        .with_context(|| {
                            format!("migrating {}", cloudfn_store::postgres::describe(url))
                        })?;
                if before == after {
                    println!("schema version {after}: up to date");
                } else {
                    println!("schema version {before} -> {after}");
                }
            }
            None => {
                // Opening a data dir migrates it.
                open(cli).await?;
                println!("data dir {}: up to date", cli.data_dir.display());
            }
        }
        Ok(0)
    }
}
