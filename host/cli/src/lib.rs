//! cloudfn-cli: the `cloudfn` command line.
//!
//! - [`Cli`]: the command line as clap parses it (the global options, and [`Command`], one
//!   variant per subcommand): every flag's doc comment is its help.
//! - [`run`]: runs the parsed command line.
//! - [`commands`]: each subcommand, one module each (its arguments and what it does), printed
//!   for people.
//! - [`client`]: what commands talk to: a data dir in-process, or a server's admin API.
//! - [`demo`]: the embedded example data dir.

pub mod client;
pub mod commands;
pub mod demo;

use clap::{Parser, Subcommand};
use cloudfn_store::StoreError;
use std::path::PathBuf;

/// cloudfn: a WebAssembly cloud-function host for mini-program backends.
#[derive(Debug, Parser)]
#[command(name = "cloudfn", version)]
pub struct Cli {
    /// The data dir: registry database, function components, env directories.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "CLOUDFN_DATA_DIR",
        default_value = "./cloudfn-data"
    )]
    pub data_dir: PathBuf,

    /// Keep state in this PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB), shared
    /// by several hosts, instead of the data dir's SQLite files; the data dir then holds only
    /// this host's compiled-artifact cache and env directories.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "CLOUDFN_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,

    /// The key that signs access tokens and sessions and seals stored secrets, as 64 hex
    /// digits (`openssl rand -hex 32`): required with --store, the same on every host.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "CLOUDFN_TOKEN_KEY",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub token_key: Option<String>,

    /// Manage a running server through its admin API (e.g. http://127.0.0.1:8081) instead
    /// of opening the data dir.
    #[arg(long, global = true, help_heading = GLOBAL, env = "CLOUDFN_SERVER")]
    pub server: Option<String>,

    /// The admin API's bearer token (for --server, and for `serve` to set it; at least 16
    /// characters; `serve` generates one when none is given).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "CLOUDFN_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Log format of the host's own diagnostics on stderr.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

/// The heading global options are listed under, apart from each subcommand's own.
const GLOBAL: &str = "Global options";

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands, each its own module under [`commands`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the WeChat-compatible HTTP endpoints and the admin API.
    Serve(commands::ServeCommand),
    /// Register apps and manage their credentials.
    #[command(subcommand)]
    App(commands::AppCommand),
    /// Create and list environments.
    #[command(subcommand)]
    Env(commands::EnvCommand),
    /// Share an environment with another app of the same subject, list and end shares.
    #[command(subcommand)]
    Share(commands::ShareCommand),
    /// Set and show an environment's security rules for functions.
    #[command(subcommand)]
    Rules(commands::RulesCommand),
    /// Deploy a wasm component as a new version of a function and make it active.
    Deploy(commands::DeployCommand),
    /// List the functions of an environment.
    Ls(commands::LsCommand),
    /// List the versions of a function, newest first.
    Versions(commands::VersionsCommand),
    /// Make an earlier version of a function active again.
    Rollback(commands::RollbackCommand),
    /// Remove a function and all its versions.
    Rm(commands::RmCommand),
    /// Call a function, deployed or straight from a .wasm file, as any caller.
    Invoke(Box<commands::InvokeCommand>),
    /// Show activation records (one per call) with the functions' log lines.
    Logs(commands::LogsCommand),
    /// Show the audit log: who changed what (deploys, rollbacks, rules, shares, apps).
    Audit(commands::AuditCommand),
    /// Fill the data dir with example apps, envs and functions, then call one.
    Demo(commands::DemoCommand),
    /// Apply the store's schema migrations and exit (PostgreSQL: safe while other hosts run or
    /// migrate at once; a data dir migrates itself whenever it is opened).
    Migrate(commands::MigrateCommand),
    /// Create a function crate (with a passing test) in a new directory NAME.
    New(commands::NewCommand),
    /// Build a function crate, or a CloudBase-style Node.js function folder, into a component
    /// and check it.
    Build(commands::BuildCommand),
    /// Serve an env locally, rebuilding and redeploying functions when their sources change.
    Dev(commands::DevCommand),
}

/// Runs the CLI; returns the process exit code. On a data dir, an error about something that
/// is not there names the data dir it looked in (a forgotten --data-dir is the usual cause).
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let local = cli.server.is_none() && cli.store.is_none();
    run_command(&cli).await.map_err(|e| {
        let missing = matches!(
            e.downcast_ref::<StoreError>(),
            Some(
                StoreError::EnvNotFound(_)
                    | StoreError::AppNotFound(_)
                    | StoreError::FunctionNotFound { .. }
            )
        ) || e
            .downcast_ref::<client::Refused>()
            .is_some_and(|r| r.status == hyper::StatusCode::NOT_FOUND);
        if local && missing {
            e.context(format!(
                "in data dir {} (--data-dir, CLOUDFN_DATA_DIR)",
                cli.data_dir.display()
            ))
        } else {
            e
        }
    })
}

/// Runs the subcommand: each is its own module under [`commands`]. `new` and `build` work on
/// a crate alone, with none of the global options.
async fn run_command(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Serve(c) => c.execute(cli).await,
        Command::App(c) => c.execute(cli).await,
        Command::Env(c) => c.execute(cli).await,
        Command::Share(c) => c.execute(cli).await,
        Command::Rules(c) => c.execute(cli).await,
        Command::Deploy(c) => c.execute(cli).await,
        Command::Ls(c) => c.execute(cli).await,
        Command::Versions(c) => c.execute(cli).await,
        Command::Rollback(c) => c.execute(cli).await,
        Command::Rm(c) => c.execute(cli).await,
        Command::Invoke(c) => c.execute(cli).await,
        Command::Logs(c) => c.execute(cli).await,
        Command::Audit(c) => c.execute(cli).await,
        Command::Demo(c) => c.execute(cli).await,
        Command::Migrate(c) => c.execute(cli).await,
        Command::New(c) => c.execute(),
        Command::Build(c) => c.execute(),
        Command::Dev(c) => c.execute(cli).await,
    }
}
