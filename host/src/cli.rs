//! The `cloudfn` command line: serving, apps, environments, deploys, versions, invocation
//! (local, from a file, or against a server), and activation logs.

use crate::activations::ActivationQuery;
use crate::admin_api::{AdminInvocation, AdminInvoke, NewShare};
use crate::client::{AdminClient, Backend};
use crate::credentials::AppCredentials;
use crate::registry::{DEFAULT_MEMORY_MB, FunctionConfig};
use crate::server::{ServeConfig, Server};
use crate::service::{Cloudfn, Identity, InvokeRequest, Options};
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

    /// Manage a running server through its admin API (e.g. http://127.0.0.1:8081) instead
    /// of opening the data dir.
    #[arg(long, global = true, env = "CLOUDFN_SERVER")]
    pub server: Option<String>,

    /// The admin API's bearer token (for --server, and for `serve` to set it).
    #[arg(
        long,
        global = true,
        env = "CLOUDFN_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// Log format of the host's own diagnostics on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    /// What to do.
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the WeChat-compatible HTTP endpoints and the admin API.
    Serve(ServeArgs),
    /// Register apps and manage their credentials.
    #[command(subcommand)]
    App(AppCommand),
    /// Create and list environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Share an environment with another app of the same subject, list and end shares.
    #[command(subcommand)]
    Share(ShareCommand),
    /// Set and show an environment's security rules for functions.
    #[command(subcommand)]
    Rules(RulesCommand),
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
    /// Show activation records (one per call) with the functions' log lines.
    Logs {
        /// The environment.
        #[arg(long)]
        env: String,
        /// Only this function.
        #[arg(long)]
        name: Option<String>,
        /// How many of the latest records to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Keep printing new records as they arrive.
        #[arg(long, short)]
        follow: bool,
    },
    /// Fill the data dir with example apps, envs and functions, then call one.
    Demo,
}

/// `cloudfn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public endpoints (/cgi-bin/token, /tcb/invokecloudfunction, /admin).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Address of the admin API and /metrics.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: std::net::SocketAddr,
    /// Most calls running at once per env; more are refused with -501004.
    #[arg(long, default_value_t = 64)]
    pub env_concurrency: usize,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 6)]
    pub max_body_mb: usize,
    /// Activation records to keep.
    #[arg(long, default_value_t = crate::activations::DEFAULT_RETENTION)]
    pub retention: u64,
    /// Seconds shutdown waits for in-flight calls.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Seconds a cloudbase_auth decision is reused for the same caller (app, openid, unionid);
    /// share, rule and cloudbase_auth changes drop cached decisions at once.
    #[arg(long, default_value_t = 60)]
    pub auth_cache_ttl: u64,
    /// Fill the data dir with the demo first, and print demo credentials (rotated each start).
    #[arg(long)]
    pub demo: bool,
}

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
}

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
        /// Permissions, comma-separated (functions:invoke).
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
    /// End a share (either side may).
    Rm {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The app it is shared with.
        #[arg(long)]
        to: String,
        /// The app making the change (the owner or the sharee; default: the owner).
        #[arg(long = "as")]
        acting: Option<String>,
    },
}

/// Rules subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate and set ENV's rules from a JSON file: {"*": {"invoke": RULE}, "fn": {…}}.
    Set {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The rules file.
        file: PathBuf,
    },
    /// Print ENV's rules.
    Get {
        /// The environment.
        #[arg(long)]
        env: String,
    },
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
    /// Time limit of one call, in seconds (up to 900) [default: 3, or 5 for HTTP-API calls].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
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
        if let Some(t) = self.timeout
            && !(t.is_finite() && t > 0.0)
        {
            bail!("--timeout must be a positive number of seconds");
        }
        let config = FunctionConfig {
            timeout_ms: self.timeout.map(|t| (t * 1000.0).round() as u64),
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
    let backend = || backend(&cli);
    match &cli.command {
        Command::Serve(args) => return serve(&cli, args).await,
        Command::Invoke(args) if args.file.is_some() => {
            return invoke_file(&cli.data_dir, args).await;
        }
        Command::Invoke(args) => return invoke(&backend()?, args).await,
        Command::Demo => return crate::demo::run(&cli.data_dir).await,
        Command::App(AppCommand::Create { appid, subject }) => {
            let creds = backend()?.create_app(appid, subject.as_deref()).await?;
            print_credentials(&creds);
        }
        Command::App(AppCommand::RotateSecret { appid }) => {
            let creds = backend()?.rotate_secret(appid).await?;
            print_credentials(&creds);
        }
        Command::App(AppCommand::Ls) => {
            let mut out = String::from("APPID\tSUBJECT\tSECRET_ID\n");
            for a in backend()?.apps().await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    a.appid,
                    a.subject.unwrap_or_default(),
                    a.secret_id.unwrap_or_else(|| "(no credentials)".into())
                ));
            }
            print!("{out}");
        }
        Command::App(AppCommand::Sharing { appid, state }) => {
            backend()?.set_sharing(appid, state == "on").await?;
            println!("sharing of {appid} is {state}");
        }
        Command::Share(ShareCommand::Add {
            env,
            to,
            perm,
            functions,
            acting,
        }) => {
            let share = backend()?
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
        Command::Share(ShareCommand::Ls { env, app }) => {
            let mut out = String::from("ENV\tOWNER\tTO\tPERMS\tFUNCTIONS\n");
            for s in backend()?.shares(env.as_deref(), app.as_deref()).await? {
                let functions = match &s.functions {
                    crate::sharing::SharedFunctions::All => "*".to_string(),
                    crate::sharing::SharedFunctions::Only(f) => f.join(","),
                };
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
        Command::Share(ShareCommand::Rm { env, to, acting }) => {
            backend()?.remove_share(env, to, acting.as_deref()).await?;
            println!("env {env} is no longer shared with {to}");
        }
        Command::Rules(RulesCommand::Set { env, file }) => {
            let rules = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            backend()?.set_rules(env, rules).await?;
            println!("rules of env {env} set");
        }
        Command::Rules(RulesCommand::Get { env }) => println!("{}", backend()?.rules(env).await?),
        Command::Env(EnvCommand::Create { env, owner }) => {
            let info = backend()?.create_env(env, owner).await?;
            println!("created env {} owned by {}", info.name, info.owner_appid);
        }
        Command::Env(EnvCommand::Ls) => {
            let mut out = String::from("ENV\tOWNER\tFUNCTIONS\n");
            for e in backend()?.envs().await? {
                out.push_str(&format!("{}\t{}\t{}\n", e.name, e.owner_appid, e.functions));
            }
            print!("{out}");
        }
        Command::Deploy(args) => {
            let config = args.config.to_config()?;
            let wasm = std::fs::read(&args.file)
                .with_context(|| format!("reading {}", args.file.display()))?;
            let backend = backend()?;
            let msg = format!("compiling {} ({} KB)", args.name, wasm.len() / 1024);
            let info =
                with_spinner(msg, backend.deploy(&args.env, &args.name, wasm, config)).await?;
            eprintln!(
                "deployed {}/{} version {} (sha256 {})",
                info.env,
                info.name,
                info.version,
                short(&info.sha256)
            );
            println!("{}", info.version);
        }
        Command::Ls { env } => {
            let mut out = String::from("NAME\tACTIVE\tVERSIONS\n");
            for f in backend()?.functions(env).await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    f.name, f.active_version, f.versions
                ));
            }
            print!("{out}");
        }
        Command::Versions { env, name } => {
            let mut out = String::from("VERSION\tACTIVE\tSHA256\tSIZE\tTIMEOUT\tMEMORY\n");
            for v in backend()?.versions(env, name).await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}MB\n",
                    v.version,
                    if v.active { "*" } else { "" },
                    short(&v.sha256),
                    v.size,
                    v.config
                        .timeout_ms
                        .map(|ms| format!("{}s", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "default".into()),
                    v.config.memory_mb
                ));
            }
            print!("{out}");
        }
        Command::Rollback { env, name, to } => {
            backend()?.rollback(env, name, *to).await?;
            println!("{env}/{name} now runs version {to}");
        }
        Command::Rm { env, name } => {
            backend()?.remove(env, name).await?;
            println!("removed {env}/{name}");
        }
        Command::Logs {
            env,
            name,
            limit,
            follow,
        } => logs(&backend()?, env, name.clone(), *limit, *follow).await?,
    }
    Ok(0)
}

/// The first 12 characters of a hash, for display.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn backend(cli: &Cli) -> anyhow::Result<Backend> {
    match &cli.server {
        Some(url) => {
            let token = cli
                .admin_token
                .as_deref()
                .context("--server needs --admin-token (or CLOUDFN_ADMIN_TOKEN)")?;
            Ok(Backend::Remote(AdminClient::new(url, token)?))
        }
        None => Ok(Backend::Local(open(&cli.data_dir)?)),
    }
}

fn print_credentials(c: &AppCredentials) {
    println!("appid:      {}", c.appid);
    println!("secret:     {}", c.secret);
    println!("secretId:   {}", c.secret_id);
    println!("secretKey:  {}", c.secret_key);
    eprintln!("These are shown once: cloudfn keeps only what it needs to check them.");
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    if cli.server.is_some() {
        bail!("serve runs a server on this machine's data dir; drop --server");
    }
    let options = Options {
        env_concurrency: args.env_concurrency.max(1),
        activation_retention: args.retention,
        auth_cache_ttl: Duration::from_secs(args.auth_cache_ttl),
        ..Options::default()
    };
    let svc = Cloudfn::open_with(&cli.data_dir, options)
        .with_context(|| format!("opening data dir {}", cli.data_dir.display()))?;
    let demo_credentials = if args.demo {
        crate::demo::populate(&svc)?;
        Some(crate::demo::rotate_credentials(&svc)?)
    } else {
        None
    };
    let config = ServeConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        admin_token: cli.admin_token.clone(),
        max_body: args.max_body_mb.max(1) * 1024 * 1024,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        ..ServeConfig::default()
    };
    let server = Server::bind(svc.clone(), config).await?;
    if let Some(token) = &server.generated_admin_token {
        eprintln!("admin token (shown once; cloudfn keeps only its hash): {token}");
    }
    if let Some(creds) = demo_credentials {
        crate::demo::print_credentials(&creds, server.public_addr());
    }
    println!("Serving HTTP on http://{}/", server.public_addr());
    println!("Admin API on http://{}/", server.admin_addr());
    let _ = std::io::stdout().flush();
    server.run(crate::server::shutdown_signal()).await;
    svc.flush_records();
    Ok(0)
}

async fn logs(
    backend: &Backend,
    env: &str,
    name: Option<String>,
    limit: u32,
    follow: bool,
) -> anyhow::Result<()> {
    let mut query = ActivationQuery {
        env: env.to_string(),
        name,
        after: None,
        limit: Some(limit),
    };
    loop {
        let records = backend.activations(&query).await?;
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
            for line in &a.logs {
                let tag = line.tag();
                writeln!(out, "    [{tag}] {}", line.message)?;
            }
        }
        out.flush()?;
        drop(out);
        if !follow {
            return Ok(());
        }
        if let Some(last) = records.last() {
            query.after = Some(last.seq);
        } else if query.after.is_none() {
            query.after = Some(0);
        }
        query.limit = Some(1000);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix milliseconds.
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        crate::tc3::utc_date(secs),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}

fn open(data_dir: &Path) -> anyhow::Result<std::sync::Arc<Cloudfn>> {
    Cloudfn::open(data_dir).with_context(|| format!("opening data dir {}", data_dir.display()))
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

impl InvokeArgs {
    fn identity(&self) -> Identity {
        Identity {
            appid: self.appid.clone(),
            openid: self.openid.clone(),
            unionid: self.unionid.clone(),
            from_appid: self.from_appid.clone(),
            from_openid: self.from_openid.clone(),
            from_unionid: self.from_unionid.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

async fn invoke(backend: &Backend, args: &InvokeArgs) -> anyhow::Result<i32> {
    let (Some(env), Some(name)) = (&args.env, &args.name) else {
        bail!("invoke needs --env and --name, or a .wasm file to run directly");
    };
    let call = AdminInvoke {
        event: read_event(&args.event)?,
        identity: args.identity(),
        source: Some(args.source.clone()),
        version: args.version,
    };
    let inv = backend.invoke(env, name, call).await?;
    Ok(print_invocation(&inv, args.quiet))
}

async fn invoke_file(data_dir: &Path, args: &InvokeArgs) -> anyhow::Result<i32> {
    let file = args.file.as_ref().expect("checked by the caller");
    let event = read_event(&args.event)?;
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "main".into()),
    };
    let env = args.env.clone().unwrap_or_else(|| "local".into());
    // A file run needs no data dir; use one only if it is already there.
    let (svc, _tmp) = if data_dir.join("cloudfn.db").exists() {
        (open(data_dir)?, None)
    } else {
        let tmp = tempdir()?;
        (open(&tmp)?, Some(TempDir(tmp)))
    };
    let mut req = InvokeRequest::new(&env, &name, event, &args.source);
    req.identity = args.identity();
    let config = args.config.to_config()?;
    let inv = svc
        .invoke_file(&wasm, config, args.dir.as_deref(), req)
        .await?;
    Ok(print_invocation(&inv.into(), args.quiet))
}

/// Prints logs on stderr and the result (or the protocol error) on stdout; returns the exit code.
fn print_invocation(inv: &AdminInvocation, quiet: bool) -> i32 {
    if !quiet {
        let mut err = std::io::stderr().lock();
        for line in &inv.logs {
            let tag = line.tag();
            let _ = writeln!(err, "[{tag}] {}", line.message);
        }
        let _ = writeln!(
            err,
            "[cloudfn] request {} version {} in {:.1} ms, peak memory {} KB",
            inv.request_id,
            inv.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            inv.duration_us as f64 / 1000.0,
            inv.peak_memory / 1024
        );
    }
    match (&inv.result, &inv.error) {
        (Some(json), _) => {
            println!("{json}");
            0
        }
        (None, error) => {
            println!("{}", error.clone().unwrap_or_default());
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
