//! [`Host`]: the data plane, what a cloudfn process runs calls with. It owns the parts and
//! nothing else: the store, the runtime, the in-memory state, the limits and slots, the
//! decision cache and the observer. The call path is in the `pipeline` module; management is
//! [`crate::Control`], built on a host that knows nothing of it.

use crate::call::RequestIds;
use crate::grant::Decisions;
use crate::limits::{Limits, Slots};
use crate::metrics::Metrics;
use crate::observe::Standard;
use crate::state::{Snapshot, State};
use anyhow::Context;
use cloudfn_runtime::{EngineConfig, Runtime};
use cloudfn_store::{DEFAULT_RETENTION, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Host-wide settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The limits calls are held to.
    pub limits: Limits,
    /// Activation records kept per env.
    pub activation_retention: u64,
    /// The most the activation records may take on disk, all envs together.
    pub activation_max_bytes: u64,
    /// How long a `cloudbase_auth` decision is reused for the same caller.
    pub auth_cache_ttl: Duration,
    /// How the engine allocates instances (when the host builds its own runtime).
    pub engine: EngineConfig,
    /// Waits between webhook attempts (one attempt more than waits).
    pub webhook_backoff: Vec<Duration>,
    /// The upstream platform's API base URL for functions' cloud calls and mini-program
    /// logins; `None` refuses them.
    pub upstream: Option<String>,
    /// How long a mini-program user's session lasts unless refreshed.
    pub session_ttl: Duration,
    /// Where state lives: the data dir (default) or a PostgreSQL database shared by hosts.
    pub store: cloudfn_store::StoreConfig,
    /// This host's name among several (the `host` label of its metrics).
    pub host_id: Option<String>,
    /// Ranges tenants' outbound connections (functions' HTTP, webhooks) may reach beyond the
    /// public internet: loopback, link-local and private addresses are refused otherwise.
    pub egress_allow: Vec<ipnet::IpNet>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            activation_retention: DEFAULT_RETENTION,
            activation_max_bytes: cloudfn_store::DEFAULT_RECORDS_MAX_BYTES,
            auth_cache_ttl: Duration::from_secs(60),
            engine: EngineConfig::default(),
            webhook_backoff: [1, 10, 60, 300].map(Duration::from_secs).to_vec(),
            upstream: None,
            session_ttl: crate::session::DEFAULT_SESSION_TTL,
            store: Default::default(),
            host_id: None,
            egress_allow: Vec::new(),
        }
    }
}

/// The host (the data plane): store, runtime, state, limits, decisions, observer.
pub struct Host {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) state: State,
    pub(crate) limits: Limits,
    pub(crate) slots: Slots,
    pub(crate) disk: crate::limits::DiskUsage,
    pub(crate) decisions: Decisions,
    pub(crate) observer: Standard,
    pub(crate) ids: RequestIds,
    pub(crate) webhooks: crate::webhook::Webhooks,
    pub(crate) upstream: Arc<crate::upstream::Upstream>,
    /// What this host provides the guest capabilities.
    pub(crate) services: Arc<cloudfn_runtime::Services>,
    /// Where tenants' outbound connections may go.
    pub(crate) egress: Arc<cloudfn_runtime::egress::Egress>,
    /// The client functions' outbound HTTP goes through, held to `egress`.
    pub(crate) outbound: Arc<cloudfn_runtime::http::FunctionClient>,
    pub(crate) session_ttl: Duration,
    /// Refused logins written to the audit log, per app.
    pub(crate) refusals_audited: crate::quota::RateLimit,
    /// Refused logins not written since the last one that was, per app.
    pub(crate) refusals_skipped: dashmap::DashMap<String, u64>,
}

/// What the host provides the guest capabilities (`cloudfn_runtime::capabilities`), one line
/// per capability that needs something of the host.
fn services(
    store: &Arc<dyn Store>,
    upstream: &Arc<crate::upstream::Upstream>,
) -> cloudfn_runtime::Services {
    let mut services = cloudfn_runtime::Services::default();
    services.insert::<cloudfn_openapi::Service>(Arc::new(crate::upstream::CloudCalls {
        upstream: upstream.clone(),
        store: store.clone(),
    }));
    services
}

impl Host {
    /// Opens the data dir (SQLite store, env directories, artifact cache) with default options.
    pub async fn open(data_dir: impl AsRef<Path>) -> anyhow::Result<Arc<Host>> {
        Self::open_with(data_dir, Options::default()).await
    }

    /// Opens the data dir with `options` and a runtime of its own. With `options.store` naming
    /// a PostgreSQL database, state lives there and the data dir keeps only this host's
    /// artifact cache and env directories.
    pub async fn open_with(
        data_dir: impl AsRef<Path>,
        options: Options,
    ) -> anyhow::Result<Arc<Host>> {
        let dir = data_dir.as_ref();
        let runtime = Arc::new(Runtime::with_config(
            Some(dir.join("artifacts")),
            &options.engine,
        )?);
        Self::open_shared(dir, options, runtime).await
    }

    /// Opens the data dir with `options` on a runtime shared with other hosts of this process
    /// (so components compile once).
    pub async fn open_shared(
        data_dir: impl AsRef<Path>,
        options: Options,
        runtime: Arc<Runtime>,
    ) -> anyhow::Result<Arc<Host>> {
        let dir = data_dir.as_ref();
        let store = cloudfn_store::open(
            &options.store,
            dir,
            options.activation_retention,
            options.activation_max_bytes,
        )
        .await?;
        Self::new(store, runtime, dir.join("envs"), options).await
    }

    /// A host on any store, with env directories under `env_root`.
    pub async fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        env_root: PathBuf,
        options: Options,
    ) -> anyhow::Result<Arc<Host>> {
        std::fs::create_dir_all(&env_root)
            .with_context(|| format!("creating {}", env_root.display()))?;
        let state = State::load(store.clone(), runtime.clone(), env_root)
            .await
            .context("reading the store")?;
        let egress = Arc::new(cloudfn_runtime::egress::Egress::new(options.egress_allow));
        let upstream = Arc::new(crate::upstream::Upstream::new(options.upstream));
        Ok(Arc::new(Host {
            services: Arc::new(services(&store, &upstream)),
            outbound: Arc::new(cloudfn_runtime::egress::client(egress.clone())),
            webhooks: crate::webhook::Webhooks::new(options.webhook_backoff, egress.clone()),
            egress,
            observer: Standard::new(store.clone(), options.host_id.as_deref()),
            store,
            runtime,
            state,
            limits: options.limits,
            slots: Slots::default(),
            disk: Default::default(),
            decisions: Decisions::new(options.auth_cache_ttl),
            ids: RequestIds::default(),
            upstream,
            session_ttl: options.session_ttl,
            refusals_audited: crate::quota::RateLimit::new(
                crate::session::REFUSALS_AUDITED_PER_MINUTE,
                Duration::from_secs(60),
            ),
            refusals_skipped: Default::default(),
        }))
    }

    /// Compiles, in the background, every active version this host has no compiled form of:
    /// once at start and again whenever the store changes. A version deployed through another
    /// host, or a start on a data dir without artifacts, then costs its first call no compile
    /// (a JavaScript function's takes seconds). Ends when the host is dropped.
    pub fn spawn_warmer(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        /// How often the store's change counter is looked at (one atomic load).
        const POLL: Duration = Duration::from_millis(200);
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                let Some(h) = host.upgrade() else { return };
                let version = h.store.version();
                if seen != Some(version) {
                    seen = Some(version);
                    h.state.warm().await;
                }
                drop(h);
                tokio::time::sleep(POLL).await;
            }
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where tenants' outbound connections may go (the server adds its listeners).
    pub fn egress(&self) -> &Arc<cloudfn_runtime::egress::Egress> {
        &self.egress
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.observer.metrics
    }

    /// The metrics as `/metrics` serves them.
    pub fn metrics_text(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = &self.runtime().stats;
        self.metrics().encode(crate::metrics::Counts {
            records_dropped: self.store.records_dropped(),
            calls_inline: stats.inline_calls.load(Relaxed),
            calls_on_guest_threads: stats.guest_thread_calls.load(Relaxed),
        })
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The current state (tokens and keys for the gateways' authentication).
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, crate::InvokeError> {
        self.state.snapshot().await
    }

    /// A fresh request id (also for responses that fail before any call runs).
    pub fn new_request_id(&self) -> String {
        self.ids.next()
    }

    /// The secret `appid`'s Taobao mini-program signs with, if it has one (what the Taobao
    /// gateway checks and signs with; `Control::set_taobao_secret` sets it).
    pub async fn taobao_secret(
        &self,
        appid: &str,
    ) -> Result<Option<String>, cloudfn_store::StoreError> {
        self.store
            .sealed_setting(
                crate::control::TAOBAO_SECRET,
                &crate::control::taobao_secret_key(appid),
            )
            .await
    }

    /// Whether the host can serve: its state is loaded (always, once it exists) and its store
    /// reachable, so it hears about changes made through other hosts.
    pub fn ready(&self) -> bool {
        self.store.reachable()
    }

    /// Waits until every activation record so far is stored.
    pub async fn flush_records(&self) {
        self.store.flush().await;
    }
}
