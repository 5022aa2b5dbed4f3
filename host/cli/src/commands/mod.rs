//! The `cloudfn` subcommands, one module each (its clap arguments and its `execute`): serving,
//! apps, environments, shares, rules, deploys, versions, invocation (local, from a file, or
//! against a server), activation and audit logs, the demo, migrations and the function
//! author's loop (`new`, `build`, `dev`), printed for people (tables, logs on stderr, results
//! on stdout). Here too: the helpers several share, and [`ConfigArgs`], the per-function
//! settings of `deploy` and `invoke FILE.wasm`.

pub mod app;
pub mod audit;
pub mod build;
pub mod demo;
pub mod deploy;
pub mod dev;
pub mod env;
pub mod invoke;
pub mod logs;
pub mod ls;
pub mod migrate;
pub mod new;
pub mod rm;
pub mod rollback;
pub mod rules;
pub mod serve;
pub mod share;
pub mod versions;

pub use app::AppCommand;
pub use audit::AuditCommand;
pub use build::BuildCommand;
pub use demo::DemoCommand;
pub use deploy::DeployCommand;
pub use dev::DevCommand;
pub use env::EnvCommand;
pub use invoke::InvokeCommand;
pub use logs::LogsCommand;
pub use ls::LsCommand;
pub use migrate::MigrateCommand;
pub use new::NewCommand;
pub use rm::RmCommand;
pub use rollback::RollbackCommand;
pub use rules::RulesCommand;
pub use serve::ServeCommand;
pub use share::ShareCommand;
pub use versions::VersionsCommand;

use crate::client::AdminClient;
use crate::{Cli, Command};
use anyhow::{Context, bail};
use clap::Args;
use cloudfn_invoke::{EngineConfig, Host, Options};
use cloudfn_store::{AppCredentials, DEFAULT_MEMORY_MB, FunctionConfig, FunctionKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `--as APP` on the commands that read or change a function: an app acting within what it
/// may do, the way `?acting=` does on the admin API.
#[derive(Debug, Args)]
pub struct ActAs {
    /// Act as this app: its own envs in full, a shared env as far as its share's
    /// permissions go (functions:read, functions:deploy).
    #[arg(long = "as")]
    pub acting: Option<String>,
}

impl ActAs {
    /// The app acting, if any.
    pub fn app(&self) -> Option<&str> {
        self.acting.as_deref()
    }
}

/// Per-function settings, for `deploy` and for `invoke FILE.wasm`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Time limit of one call, in seconds (up to 900) [default: 3, or 5 for HTTP-API calls].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Memory limit of one call, in MB (up to 2048) [default: 128].
    #[arg(long, value_name = "MB")]
    pub memory: Option<u32>,
    /// A variable the function reads with var(K); repeat for more.
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Let the function write to its env directory (read-only by default).
    #[arg(long)]
    pub fs_write: bool,
    /// What the component is: `function` (a cloud function, called with a JSON event) or
    /// `http` (a wasi:http/proxy component served behind the container gateways) [default:
    /// function].
    #[arg(long, value_name = "KIND")]
    pub kind: Option<FunctionKind>,
    /// A host the function may send HTTP requests to (`host` or `host:port`; an HTTP
    /// function's outgoing requests, a JavaScript function's `fetch`); repeat for more.
    /// Outbound HTTP to any other host is refused.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
}

impl ConfigArgs {
    pub fn to_config(&self) -> anyhow::Result<FunctionConfig> {
        if let Some(t) = self.timeout
            && !(t.is_finite() && t > 0.0)
        {
            bail!("--timeout must be a positive number of seconds");
        }
        let config = FunctionConfig {
            timeout_ms: self.timeout.map(|t| (t * 1000.0).round() as u64),
            memory_mb: self.memory.unwrap_or(DEFAULT_MEMORY_MB),
            vars: self.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
            fs_write: self.fs_write,
            kind: self.kind.unwrap_or_default(),
            outbound_hosts: self.allow_hosts.clone(),
        };
        config.validate()?;
        Ok(config)
    }

    /// The first of these flags given, if any: they describe a version, so they apply to a
    /// deploy or a file run, never to a call of a deployed version.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            (self.timeout.is_some(), "--timeout"),
            (self.memory.is_some(), "--memory"),
            (!self.vars.is_empty(), "--var"),
            (self.fs_write, "--fs-write"),
            (self.kind.is_some(), "--kind"),
            (!self.allow_hosts.is_empty(), "--allow-host"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected K=V, got {s:?}"))
}

/// Whether a command only reads state: on a data dir that is not there, it has nothing to
/// read, and must not make one.
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Ls(_)
            | Command::Versions(_)
            | Command::Logs(_)
            | Command::Audit(_)
            | Command::Invoke(_)
            | Command::App(AppCommand::Ls)
            | Command::Env(EnvCommand::Ls)
            | Command::Share(ShareCommand::Ls { .. })
            | Command::Rules(RulesCommand::Get { .. })
    )
}

/// The first 12 characters of a hash, for display.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

async fn client(cli: &Cli) -> anyhow::Result<AdminClient> {
    match &cli.server {
        Some(url) => {
            let token = cli
                .admin_token
                .as_deref()
                .context("--server needs --admin-token (or CLOUDFN_ADMIN_TOKEN)")?;
            AdminClient::remote(url, token)
        }
        None => {
            if cli.store.is_none()
                && reads_only(&cli.command)
                && !cli.data_dir.join("cloudfn.db").exists()
            {
                bail!(
                    "no cloudfn data dir at {} (no cloudfn.db there): name yours with --data-dir \
                     (or CLOUDFN_DATA_DIR), a running server with --server, or start one with \
                     `cloudfn app create` or `cloudfn demo`",
                    cli.data_dir.display()
                );
            }
            Ok(AdminClient::local(open(cli).await?))
        }
    }
}

fn print_credentials(c: &AppCredentials) {
    println!("appid:      {}", c.appid);
    println!("secret:     {}", c.secret);
    println!("secretId:   {}", c.secret_id);
    println!("secretKey:  {}", c.secret_key);
    eprintln!("These are shown once: cloudfn keeps only what it needs to check them.");
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix milliseconds.
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        cloudfn_gateway::tc3::utc_date(secs),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}

/// The store for a command that makes a change or a call or two and exits: no instance pool
/// to set up and tear down.
async fn open(cli: &Cli) -> anyhow::Result<Arc<Host>> {
    open_dir(&cli.data_dir, store_config(cli, false)).await
}

/// [`open`] for a data dir of its own (`store` the default) or the command line's store.
async fn open_dir(data_dir: &Path, store: cloudfn_store::StoreConfig) -> anyhow::Result<Arc<Host>> {
    let options = Options {
        engine: EngineConfig::one_shot(),
        store,
        ..Options::default()
    };
    Host::open_with(data_dir, options).await
}

/// Where the command's state lives: --store and --token-key, else the data dir.
fn store_config(cli: &Cli, migrate: bool) -> cloudfn_store::StoreConfig {
    cloudfn_store::StoreConfig {
        url: cli.store.clone(),
        token_key: cli.token_key.clone(),
        migrate,
    }
}

async fn with_spinner<T>(msg: String, f: impl Future<Output = T>) -> T {
    let bar = indicatif::ProgressBar::new_spinner().with_message(msg);
    bar.enable_steady_tick(Duration::from_millis(80));
    let out = f.await;
    bar.finish_and_clear();
    out
}

fn read_event(event: &str) -> anyhow::Result<String> {
    Ok(match event.strip_prefix('@') {
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("reading the event from stdin")?
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the event from {path}"))?,
        None => event.to_string(),
    })
}

/// Where file runs keep compiled components: `artifacts` in the user's cache dir
/// ([`cloudfn_builder::user_cache_dir`]).
fn artifact_cache() -> Option<PathBuf> {
    Some(cloudfn_builder::user_cache_dir()?.join("artifacts"))
}

/// A temporary data dir for file runs, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "cloudfn-local-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
