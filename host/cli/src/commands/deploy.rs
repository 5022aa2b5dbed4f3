//! `cloudfn deploy`: deploys a wasm component (or a function crate or JavaScript folder, built
//! first) as a new version of a function, with its settings, and makes it active.

use super::{ConfigArgs, client, short, with_spinner};
use crate::Cli;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// `cloudfn deploy`.
#[derive(Debug, Args)]
pub struct DeployCommand {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The function's name.
    #[arg(long)]
    pub name: String,
    /// The component (.wasm built for wasm32-wasip2), or a function crate or JavaScript
    /// function folder to build first.
    pub file: PathBuf,
    /// Act as this app: its own envs, or a shared env whose share grants functions:deploy.
    #[arg(long = "as")]
    pub acting: Option<String>,
    #[command(flatten)]
    /// Settings of the new version.
    pub config: ConfigArgs,
}

impl DeployCommand {
    /// `cloudfn deploy`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let config = self.config.to_config()?;
        let file = if self.file.is_dir() {
            let dir = self.file.clone();
            tokio::task::spawn_blocking(move || cloudfn_builder::build_function(&dir))
                .await??
                .wasm
        } else {
            self.file.clone()
        };
        let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        let client = client(cli).await?;
        let msg = format!("compiling {} ({} KB)", self.name, wasm.len() / 1024);
        let deploy = client.deploy(&self.env, &self.name, wasm, config, self.acting.as_deref());
        let info = with_spinner(msg, deploy).await?;
        eprintln!(
            "deployed {}/{} version {} (sha256 {})",
            info.env,
            info.name,
            info.version,
            short(&info.sha256)
        );
        println!("{}", info.version);
        Ok(0)
    }
}
