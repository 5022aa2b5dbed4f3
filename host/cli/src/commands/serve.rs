//! `cloudfn serve`: the WeChat-compatible HTTP endpoints (and the Taobao and container
//! gateways) and the admin API with its web console, on a data dir or a shared store, until
//! Ctrl-C; `--demo` and `--fixture` fill the data dir first.

use super::{parse_var, store_config};
use crate::Cli;
use anyhow::bail;
use clap::Args;
use cloudfn_gateway::server::{ServeConfig, Server, new_admin_token};
use cloudfn_invoke::{Control, EngineConfig, Host, Limits, Options};
use cloudfn_store::DEFAULT_RETENTION;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `cloudfn serve`.
#[derive(Debug, Args)]
pub struct ServeCommand {
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

impl ServeCommand {
    /// `cloudfn serve`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        if cli.server.is_some() {
            bail!("serve runs a server on this machine's data dir; drop --server");
        }
        let options = Options {
            limits: Limits {
                env_concurrency: self.env_concurrency.max(1),
                slot_wait: Duration::from_millis(self.slot_wait_ms),
                env_disk_bytes: self.env_disk_quota_mb.saturating_mul(1 << 20),
                ..Limits::default()
            },
            activation_retention: self.retention,
            activation_max_bytes: self.records_max_mb.max(1) * 1024 * 1024,
            auth_cache_ttl: Duration::from_secs(self.auth_cache_ttl),
            engine: EngineConfig {
                pool_instances: Some(self.max_instances.max(1)),
                keep_resident: self.keep_resident_kb * 1024,
                memory_budget: self.memory_budget_mb.max(1) << 20,
            },
            upstream: self.upstream.clone(),
            session_ttl: std::time::Duration::from_secs(self.session_ttl_minutes.max(1) * 60),
            store: store_config(cli, self.migrate),
            host_id: Some(self.host_id.clone().unwrap_or_else(hostname)),
            egress_allow: cloudfn_runtime::egress::Egress::parse_allow(&self.egress_allow)
                .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?,
            ..Options::default()
        };
        let svc = Host::open_with(&cli.data_dir, options).await?;
        let _warmer = svc.spawn_warmer();
        let control = Control::new(svc.clone());
        let demo_credentials = if self.demo {
            crate::demo::populate(&control).await?;
            Some(crate::demo::rotate_credentials(&control).await?)
        } else {
            None
        };
        let fixture_credentials = match &self.fixture {
            Some(path) => {
                let fixture = cloudfn_invoke::fixture::Fixture::read(path)?;
                fixture
                    .apply(&control, &|p| Ok(cloudfn_builder::build_function(p)?.wasm))
                    .await?
            }
            None => Vec::new(),
        };
        // The demo, like its apps' credentials, gets a fresh admin token at each start and prints
        // it, so a newcomer can always sign in to the console.
        let demo_admin_token = self.demo && cli.admin_token.is_none();
        let admin_token = if demo_admin_token {
            Some(new_admin_token())
        } else {
            cli.admin_token.clone()
        };
        let config = ServeConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            admin_token: admin_token.clone(),
            max_body: self.max_body_mb.max(1) * 1024 * 1024,
            body_budget: self.body_budget_mb.max(1) * 1024 * 1024,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            max_connections_per_ip: self.max_connections_per_ip,
            client_limits: cloudfn_gateway::client::ClientLimits {
                logins_per_ip_per_minute: self.logins_per_ip,
                logins_per_app_per_minute: self.logins_per_app,
                calls_per_ip_per_second: self.client_calls_per_ip,
                calls_per_app_per_second: self.client_calls_per_app,
            },
            containers: cloudfn_gateway::container::ContainerConfig {
                env_by_host: self
                    .container_hosts
                    .iter()
                    .map(|(h, e)| (h.to_ascii_lowercase(), e.clone()))
                    .collect(),
                taobao: self
                    .demo
                    .then(crate::demo::taobao_app)
                    .into_iter()
                    .chain(self.taobao.iter().cloned())
                    .collect(),
            },
            console_session_ttl: Duration::from_secs(self.console_session_secs.max(1)),
            ..ServeConfig::default()
        };
        let server = Server::bind(svc.clone(), config).await?;
        // What a person starting the server reads (the banner, credentials, the admin token) goes
        // to stdout, in one stream, the addresses first; the host's diagnostics go to stderr.
        println!("Serving HTTP on http://{}/", server.public_addr());
        println!("Admin API on http://{}/", server.admin_addr());
        println!(
            "Web console on http://{}/console (sign in with the admin token)",
            server.admin_addr()
        );
        if let Some(token) = &server.generated_admin_token {
            println!("admin token (shown once; cloudfn keeps only its hash): {token}");
        } else if demo_admin_token {
            println!(
                "admin token (demo: a new one at each `serve --demo` start): {}",
                admin_token.as_deref().unwrap_or_default()
            );
        }
        if let Some(creds) = demo_credentials {
            crate::demo::print_credentials(&creds, server.public_addr());
        }
        for c in &fixture_credentials {
            println!(
                "app {} (from the fixture): secret {}  secretId {}  secretKey {}",
                c.appid, c.secret, c.secret_id, c.secret_key
            );
        }
        let _ = std::io::stdout().flush();
        server.run(cloudfn_gateway::server::shutdown_signal()).await;
        svc.flush_records().await;
        Ok(0)
    }
}

fn parse_taobao(s: &str) -> Result<(String, cloudfn_gateway::taobao::TaobaoApp), String> {
    let (appid, app) = s
        .split_once('=')
        .ok_or_else(|| format!("expected APPID=TEST_ENV,ONLINE_ENV,SERVICE, got {s:?}"))?;
    Ok((appid.to_string(), app.parse()?))
}

/// The machine's hostname (a pod's name in Kubernetes).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
