//! `cloudfn demo`: fills the data dir with example apps, envs and functions (the embedded
//! [`crate::demo`]), then calls one.

use super::store_config;
use crate::Cli;
use clap::Args;

/// `cloudfn demo`.
#[derive(Debug, Args)]
pub struct DemoCommand;

impl DemoCommand {
    /// `cloudfn demo`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        crate::demo::run(&cli.data_dir, store_config(cli, false)).await
    }
}
