//! The `cloudfn` command line: environments, deploys, versions, and local invocation.

use crate::registry::{DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, FunctionConfig};
use crate::service::{Cloudfn, Identity, Invocation, InvokeRequest};
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// cloudfn: a WebAssembly cloud-function host for mini-program backends.
#[derive(Debug, Parser)]
#[command(name = "cloudfn", version)]
pub struct Cli {
    /// The data dir: registry database, function components, env directories.
    #[arg(
        long,
        global = true,
        env = "CLOUDFN_DATA_DIR",
        default_value = "./cloudfn-data"
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and list environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Deploy a wasm component as a new version of a function and make it active.
    Deploy(DeployArgs),
    /// List the functions of an environment.
    Ls {
        /// The environment.
        #[arg(long)]
        env: String,
    },
    /// List the versions of a function, newest first.
    Versions {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The function.
        #[arg(long)]
        name: String,
    },
    /// Make an earlier version of a function active again.
    Rollback {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The function.
        #[arg(long)]
        name: String,
        /// The version to make active.
        #[arg(long)]
        to: u32,
    },
    /// Remove a function and all its versions.
    Rm {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The function.
        #[arg(long)]
        name: String,
    },
    /// Call a function, deployed or straight from a .wasm file, as any caller.
    Invoke(Box<InvokeArgs>),
    /// Fill the data dir with example apps, envs and functions, then call one.
    Demo,
}

/// Environment subcommands.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment owned by an app.
    Create {
        /// The env id, e.g. prod-01.
        env: String,
        /// The appid that owns it.
        #[arg(long)]
        owner: String,
    },
    /// List environments.
    Ls,
}

/// Per-function settings, for `deploy` and for `invoke FILE.wasm`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Time limit of one call, in seconds (up to 900).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_MS as f64 / 1000.0)]
    pub timeout: f64,
    /// Memory limit of one call, in MB (up to 2048).
    #[arg(long, value_name = "MB", default_value_t = DEFAULT_MEMORY_MB)]
    pub memory: u32,
    /// A variable the function reads with var(K); repeat for more.
    #[arg(long = "var", value_name = "K=V", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Let the function write to its env directory (read-only by default).
    #[arg(long)]
    pub fs_write: bool,
}

impl ConfigArgs {
    fn to_config(&self) -> anyhow::Result<FunctionConfig> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!("--timeout must be a positive number of seconds");
        }
        let config = FunctionConfig {
            timeout_ms: (self.timeout * 1000.0).round() as u64,
            memory_mb: self.memory,
            vars: self.vars.iter().cloned().collect::<BTreeMap<_, _>>(),
            fs_write: self.fs_write,
        };
        config.validate()?;
        Ok(config)
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected K=V, got {s:?}"))
}

/// `cloudfn deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The environment.
    #[arg(long)]
    pub env: String,
    /// The function's name.
    #[arg(long)]
    pub name: String,
    /// The component (.wasm built for wasm32-wasip2).
    pub file: PathBuf,
    #[command(flatten)]
    /// Settings of the new version.
    pub config: ConfigArgs,
}

/// `cloudfn invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Run this component file directly instead of a deployed function (local testing).
    pub file: Option<PathBuf>,
    /// The environment (for a file: where its call_function calls go; default `local`).
    #[arg(long)]
    pub env: Option<String>,
    /// The function (for a file: defaults to the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Run this version instead of the active one.
    #[arg(long)]
    pub version: Option<u32>,
    /// The event: JSON text, @FILE to read a file, or @- to read stdin.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// APPID of the caller (a user of the env's own app).
    #[arg(long)]
    pub appid: Option<String>,
    /// OPENID of the caller.
    #[arg(long)]
    pub openid: Option<String>,
    /// UNIONID of the caller.
    #[arg(long)]
    pub unionid: Option<String>,
    /// FROM_APPID: the calling app, for a call through a share.
    #[arg(long)]
    pub from_appid: Option<String>,
    /// FROM_OPENID: the calling app's user.
    #[arg(long)]
    pub from_openid: Option<String>,
    /// FROM_UNIONID: the calling user's unionid.
    #[arg(long)]
    pub from_unionid: Option<String>,
    /// CLIENTIP of the caller.
    #[arg(long)]
    pub client_ip: Option<String>,
    /// SOURCE of the call (wx_client, wx_http, wx_devtools, wx_trigger, …).
    #[arg(long, default_value = "wx_devtools")]
    pub source: String,
    /// Directory to preopen as `/` for a file run (deployed functions get their env's).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Do not print the function's logs on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    /// Settings for a file run.
    pub config: ConfigArgs,
}

/// Runs the CLI; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Env(EnvCommand::Create { env, owner }) => {
            let svc = open(&cli.data_dir)?;
            let info = svc.registry().create_env(&env, &owner)?;
            println!("created env {} owned by {}", info.name, info.owner_appid);
        }
        Command::Env(EnvCommand::Ls) => {
            let svc = open(&cli.data_dir)?;
            let envs = svc.registry().envs()?;
            let mut out = String::from("ENV\tOWNER\tFUNCTIONS\n");
            for e in envs {
                out.push_str(&format!("{}\t{}\t{}\n", e.name, e.owner_appid, e.functions));
            }
            print!("{out}");
        }
        Command::Deploy(args) => {
            let config = args.config.to_config()?;
            let wasm = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let svc = open(&cli.data_dir)?;
            let info = with_spinner(
                format!("compiling {} ({} KB)", args.name, wasm.len() / 1024),
                || svc.deploy(&args.env, &args.name, &wasm, config),
            )?;
            eprintln!(
                "deployed {}/{} version {} (sha256 {})",
                info.env,
                info.name,
                info.version,
                &info.sha256[..12]
            );
            println!("{}", info.version);
        }
        Command::Ls { env } => {
            let svc = open(&cli.data_dir)?;
            let mut out = String::from("NAME\tACTIVE\tVERSIONS\n");
            for f in svc.registry().functions(&env)? {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    f.name, f.active_version, f.versions
                ));
            }
            print!("{out}");
        }
        Command::Versions { env, name } => {
            let svc = open(&cli.data_dir)?;
            let mut out = String::from("VERSION\tACTIVE\tSHA256\tSIZE\tTIMEOUT\tMEMORY\n");
            for v in svc.registry().versions(&env, &name)? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}s\t{}MB\n",
                    v.version,
                    if v.active { "*" } else { "" },
                    &v.sha256[..12],
                    v.size,
                    v.config.timeout_ms as f64 / 1000.0,
                    v.config.memory_mb
                ));
            }
            print!("{out}");
        }
        Command::Rollback { env, name, to } => {
            let svc = open(&cli.data_dir)?;
            svc.rollback(&env, &name, to)?;
            println!("{env}/{name} now runs version {to}");
        }
        Command::Rm { env, name } => {
            let svc = open(&cli.data_dir)?;
            svc.remove(&env, &name)?;
            println!("removed {env}/{name}");
        }
        Command::Invoke(args) => return invoke(&cli.data_dir, *args).await,
        Command::Demo => return crate::demo::run(&cli.data_dir).await,
    }
    Ok(0)
}

fn open(data_dir: &Path) -> anyhow::Result<std::sync::Arc<Cloudfn>> {
    Cloudfn::open(data_dir).with_context(|| format!("opening data dir {}", data_dir.display()))
}

fn with_spinner<T>(msg: String, f: impl FnOnce() -> T) -> T {
    let bar = indicatif::ProgressBar::new_spinner().with_message(msg);
    bar.enable_steady_tick(Duration::from_millis(80));
    let out = f();
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

async fn invoke(data_dir: &Path, args: InvokeArgs) -> anyhow::Result<i32> {
    let event = read_event(&args.event)?;
    let identity = Identity {
        appid: args.appid,
        openid: args.openid,
        unionid: args.unionid,
        from_appid: args.from_appid,
        from_openid: args.from_openid,
        from_unionid: args.from_unionid,
        client_ip: args.client_ip,
    };
    let inv = match &args.file {
        Some(file) => {
            let wasm =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let name = match args.name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "main".into()),
            };
            let env = args.env.unwrap_or_else(|| "local".into());
            // A file run needs no data dir; use one only if it is already there.
            let (svc, _tmp) = if data_dir.join("cloudfn.db").exists() {
                (open(data_dir)?, None)
            } else {
                let tmp = tempdir()?;
                (open(&tmp)?, Some(TempDir(tmp)))
            };
            let mut req = InvokeRequest::new(&env, &name, event, &args.source);
            req.identity = identity;
            let config = args.config.to_config()?;
            svc.invoke_file(&wasm, config, args.dir.as_deref(), req)
                .await?
        }
        None => {
            let (Some(env), Some(name)) = (args.env, args.name) else {
                bail!("invoke needs --env and --name, or a .wasm file to run directly");
            };
            let svc = open(data_dir)?;
            let mut req = InvokeRequest::new(&env, &name, event, &args.source);
            req.identity = identity;
            req.version = args.version;
            svc.invoke(req).await
        }
    };
    Ok(print_invocation(&inv, args.quiet))
}

/// Prints logs on stderr and the result (or the protocol error) on stdout; returns the exit code.
fn print_invocation(inv: &Invocation, quiet: bool) -> i32 {
    if !quiet {
        let mut err = std::io::stderr().lock();
        for line in &inv.logs {
            let tag = line.level.unwrap_or(match line.stream {
                crate::call::LogStream::Stdout => "stdout",
                crate::call::LogStream::Stderr => "stderr",
                crate::call::LogStream::Log => "log",
            });
            let _ = writeln!(err, "[{tag}] {}", line.message);
        }
        let _ = writeln!(
            err,
            "[cloudfn] request {} version {} in {:.1} ms, peak memory {} KB",
            inv.request_id,
            inv.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            inv.duration.as_secs_f64() * 1000.0,
            inv.peak_memory / 1024
        );
    }
    match &inv.result {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            println!("{}", e.to_json());
            1
        }
    }
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
