//! The `cloudfn` command line as clap parses it: every flag's doc comment is its help.

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use cloudfn_store::{DEFAULT_MEMORY_MB, DEFAULT_RETENTION, FunctionConfig, FunctionKind};
use std::collections::BTreeMap;
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
        /// Act as this app: its own envs in full, a shared env as far as its share's
        /// permissions go (functions:read, functions:deploy).
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// List the versions of a function, newest first.
    Versions {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The function.
        #[arg(long)]
        name: String,
        /// Act as this app: its own envs in full, a shared env as far as its share's
        /// permissions go (functions:read, functions:deploy).
        #[arg(long = "as")]
        acting: Option<String>,
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
        /// Act as this app: its own envs in full, a shared env as far as its share's
        /// permissions go (functions:read, functions:deploy).
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// Remove a function and all its versions.
    Rm {
        /// The environment.
        #[arg(long)]
        env: String,
        /// The function.
        #[arg(long)]
        name: String,
        /// Act as this app: its own envs in full, a shared env as far as its share's
        /// permissions go (functions:read, functions:deploy).
        #[arg(long = "as")]
        acting: Option<String>,
        /// Remove cloudbase_auth even though the env is shared (its sharees' calls then fail).
        #[arg(long)]
        force: bool,
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
        /// Act as this app: all records of its own envs, those of its own calls in an env
        /// shared with it (with functions:read).
        #[arg(long = "as")]
        acting: Option<String>,
    },
    /// Show the audit log: who changed what (deploys, rollbacks, rules, shares, apps).
    Audit {
        /// Only entries of this env.
        #[arg(long)]
        env: Option<String>,
        /// Only entries this app made or that concern it (or its envs).
        #[arg(long)]
        app: Option<String>,
        /// How many of the latest entries to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Fill the data dir with example apps, envs and functions, then call one.
    Demo,
    /// Apply the store's schema migrations and exit (PostgreSQL: safe while other hosts run or
    /// migrate at once; a data dir migrates itself whenever it is opened).
    Migrate,
    /// Create a function crate (with a passing test) in a new directory NAME.
    New(NewArgs),
    /// Build a function crate, or a CloudBase-style Node.js function folder, into a component
    /// and check it.
    Build(BuildArgs),
    /// Serve an env locally, rebuilding and redeploying functions when their sources change.
    Dev(DevArgs),
}

/// `cloudfn new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The new crate's directory (its last component is the function's name).
    pub path: PathBuf,
    /// A `cloudbase_auth` function (decides who may use a shared env) instead of a plain one.
    #[arg(long)]
    pub auth: bool,
    /// The cloudfn source tree whose SDK and testing crate the new crate uses [default: the
    /// one this binary was built from].
    #[arg(long, env = "CLOUDFN_SOURCE")]
    pub cloudfn_source: Option<PathBuf>,
}

/// `cloudfn build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The function crate (its directory or Cargo.toml), or a JavaScript function folder
    /// (package.json and index.js exporting `main`).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Where a JavaScript function's component is written [default: FOLDER/.cloudfn/NAME.wasm].
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `cloudfn dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The env the functions are deployed into (created, owned by --owner, when missing).
    #[arg(long)]
    pub env: String,
    /// The app owning the env when it is created.
    #[arg(long, default_value = "wxdev")]
    pub owner: String,
    /// Function crates or JavaScript function folders to watch; each is deployed under its
    /// crate's (or package.json's) name.
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Address of the public endpoints.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: std::net::SocketAddr,
    /// A fixture file to load first (apps, envs, shares, rules, other functions).
    #[arg(long)]
    pub fixture: Option<PathBuf>,
}

/// `cloudfn serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public endpoints (/cgi-bin/token, /tcb/invokecloudfunction, /admin).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Address of the admin API, the web console (/console), /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: std::net::SocketAddr,
    /// This host's name in metrics (the `host` label) and logs; default the machine's
    /// hostname (a pod's name in Kubernetes).
    #[arg(long, env = "CLOUDFN_HOST_ID")]
    pub host_id: Option<String>,
    /// Apply the store's schema migrations before serving (with --store; several hosts may
    /// start at once).
    #[arg(long)]
    pub migrate: bool,
    /// Most calls running at once per env on this host (with N hosts an env may run N times as
    /// many); a call past it waits up to --slot-wait-ms for a slot (at most as many wait as
    /// the cap), then is refused with -501004.
    #[arg(long, default_value_t = 64)]
    pub env_concurrency: usize,
    /// The upstream platform's API base URL for functions' cloud calls (openapi) and
    /// mini-program logins (jscode2session), e.g. https://api.weixin.qq.com; without it both
    /// are refused (-501001).
    #[arg(long)]
    pub upstream: Option<String>,
    /// Address ranges tenants' outbound connections (functions' HTTP to their allowed hosts,
    /// apps' webhooks) may reach besides the public internet, e.g. 10.1.0.0/16 or
    /// 127.0.0.1/32; repeat or comma-separate. Loopback, link-local (169.254.0.0/16: cloud
    /// metadata), private and reserved ranges are refused otherwise, checked on the address a
    /// name resolves to; this host's own listeners always are.
    #[arg(
        long = "egress-allow",
        value_name = "CIDR",
        env = "CLOUDFN_EGRESS_ALLOW",
        value_delimiter = ','
    )]
    pub egress_allow: Vec<String>,
    /// Minutes a mini-program user's session lasts unless the client refreshes it.
    #[arg(long, default_value_t = 120)]
    pub session_ttl_minutes: u64,
    /// Mini-program logins per minute from one client IP; past it, errcode 45011.
    #[arg(long, default_value_t = 60)]
    pub logins_per_ip: u32,
    /// Mini-program logins per minute of one app's users together; past it, errcode 45011.
    #[arg(long, default_value_t = 6000)]
    pub logins_per_app: u32,
    /// Mini-program calls per second from one client IP; past it, errCode 45011.
    #[arg(long, default_value_t = 50)]
    pub client_calls_per_ip: u32,
    /// Mini-program calls per second of one app's users together; past it, errCode 45011.
    #[arg(long, default_value_t = 2000)]
    pub client_calls_per_app: u32,
    /// callContainer requests to this host name (without X-WX-ENV) go to ENV; repeat for more.
    #[arg(long = "container-host", value_name = "HOST=ENV", value_parser = parse_var)]
    pub container_hosts: Vec<(String, String)>,
    /// An app's Taobao cloud application: its `env=test` and `env=online` envs and the HTTP
    /// function requests go to; repeat for more apps.
    #[arg(long = "taobao", value_name = "APPID=TEST_ENV,ONLINE_ENV,SERVICE", value_parser = parse_taobao)]
    pub taobao: Vec<(String, cloudfn_gateway::taobao::TaobaoApp)>,
    /// Milliseconds a call may wait for a slot of its full env.
    #[arg(long, default_value_t = 100)]
    pub slot_wait_ms: u64,
    /// MB of disk each env directory may use; past it, functions deployed with write access
    /// see it read-only until files are removed.
    #[arg(long, default_value_t = 1024)]
    pub env_disk_quota_mb: u64,
    /// Largest request body, in MB.
    #[arg(long, default_value_t = 6)]
    pub max_body_mb: usize,
    /// MB of request bodies held at once across all connections (a quarter per app); past it
    /// requests are refused as busy (-501004) instead of buffered.
    #[arg(long, default_value_t = 256)]
    pub body_budget_mb: usize,
    /// Activation records to keep per env (the newest).
    #[arg(long, default_value_t = DEFAULT_RETENTION)]
    pub retention: u64,
    /// MB the activation records may take on disk, all envs together (the oldest go first).
    #[arg(long, default_value_t = 1024)]
    pub records_max_mb: u64,
    /// Seconds shutdown waits for in-flight calls.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Seconds a web-console session lasts after its login (the console is at
    /// http://ADMIN_LISTEN/console).
    #[arg(long, default_value_t = cloudfn_gateway::console::DEFAULT_SESSION_TTL.as_secs())]
    pub console_session_secs: u64,
    /// Seconds a cloudbase_auth decision is reused for the same caller (app, openid, unionid);
    /// share, rule and cloudbase_auth changes drop cached decisions at once.
    #[arg(long, default_value_t = 60)]
    pub auth_cache_ttl: u64,
    /// Most connections one client IP may hold open on each listener; more are closed at once.
    #[arg(long, default_value_t = cloudfn_gateway::server::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,
    /// Most guest instances alive at once (calls and their nested calls); the instance pool
    /// reserves address space for this many. Past it calls are refused with -501004.
    #[arg(long, default_value_t = 1000)]
    pub max_instances: u32,
    /// KB of each freed instance's memory reset in place for reuse instead of returned to the
    /// OS (faster calls; counts in the RSS).
    #[arg(long, default_value_t = 1024)]
    pub keep_resident_kb: usize,
    /// MB of linear memory all running instances may hold together (half of it per env);
    /// past it calls are refused with -501004 instead of the host running out of memory.
    #[arg(long, default_value_t = 4096)]
    pub memory_budget_mb: usize,
    /// Fill the data dir with the demo first, and print demo credentials and, unless
    /// --admin-token is given, a new admin token (both rotated each start).
    #[arg(long)]
    pub demo: bool,
    /// Load this fixture file (apps, envs, shares, rules, functions) into the data dir first;
    /// what exists stays, and the credentials of apps it creates are printed.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
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
        /// The app making the change: only the env's owner may.
        #[arg(long = "as")]
        acting: Option<String>,
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

fn parse_taobao(s: &str) -> Result<(String, cloudfn_gateway::taobao::TaobaoApp), String> {
    let (appid, app) = s
        .split_once('=')
        .ok_or_else(|| format!("expected APPID=TEST_ENV,ONLINE_ENV,SERVICE, got {s:?}"))?;
    Ok((appid.to_string(), app.parse()?))
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

/// `cloudfn invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Run this component file (or a function's folder, built first, as deploy builds it)
    /// directly instead of a deployed function (local testing).
    pub file: Option<PathBuf>,
    /// Run on a temporary data dir holding what this fixture file describes, instead of
    /// the data dir.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
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
    /// FROM_OPENID: the calling app's user (with --from-appid: a user is always some app's).
    #[arg(long, requires = "from_appid")]
    pub from_openid: Option<String>,
    /// FROM_UNIONID: the calling user's unionid (with --from-appid).
    #[arg(long, requires = "from_appid")]
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
    /// For a file or fixture run: address ranges its outbound HTTP may reach besides the
    /// public internet (as `serve --egress-allow`), e.g. 127.0.0.1/32 for a local mock.
    #[arg(long = "egress-allow", value_name = "CIDR", value_delimiter = ',')]
    pub egress_allow: Vec<String>,
    /// Do not print the function's logs on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    /// Settings for a file run.
    pub config: ConfigArgs,
}
