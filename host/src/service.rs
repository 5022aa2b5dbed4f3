//! The cloudfn service: the registry plus the engine, and the one invocation path every entry
//! point (CLI, function-to-function calls, and later HTTP) goes through. Prepared functions
//! (compiled, linked, with their WASI filesystem template) are cached per version, so a call
//! only builds a fresh `Store` and instantiates.

use crate::activations::{Activation, Recorder};
use crate::bindings::{CallError, CloudFunctionPre, WxContext};
use crate::call::{
    CallFunction, CallState, FnHost, LogLine, LogPipe, LogSink, LogStream, MemLimiter,
};
use crate::engine::WasmEngine;
use crate::error::{InvokeError, RegistryError};
use crate::grant::{Decision, SharingCache};
use crate::metrics::{CallLabels, Metrics};
use crate::registry::{FunctionConfig, Registry, VersionInfo, validate_function_name};
use crate::sharing::{ShareInfo, SharedFunctions};
use anyhow::Context;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// How deep function-to-function calls may nest.
pub const MAX_CALL_DEPTH: u32 = 8;
/// Longest error message of a function kept (it goes into responses, records and logs).
const MAX_ERROR_MESSAGE: usize = 4096;

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("… [truncated]");
    }
    s
}

/// Largest result a function may return (protocol §8: 6 MB sync responses).
pub const MAX_RESULT_BYTES: usize = 6 * 1024 * 1024;

/// Service-wide limits and settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most calls running at once in one env (nested calls count too); more get -501004.
    pub env_concurrency: usize,
    /// Largest result a function may return.
    pub max_result_bytes: usize,
    /// Activation records kept.
    pub activation_retention: u64,
    /// How long a `cloudbase_auth` decision is reused for the same caller.
    pub auth_cache_ttl: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            env_concurrency: 64,
            max_result_bytes: MAX_RESULT_BYTES,
            activation_retention: crate::activations::DEFAULT_RETENTION,
            auth_cache_ttl: Duration::from_secs(60),
        }
    }
}

/// Who is calling (protocol §4). Empty fields are absent from the function's WXContext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Identity {
    /// The caller's app, when it is the env's own app.
    pub appid: Option<String>,
    /// The end user inside `appid`.
    pub openid: Option<String>,
    /// The end user's unionid.
    pub unionid: Option<String>,
    /// The calling app, when the call crosses apps through a share.
    pub from_appid: Option<String>,
    /// The calling app's user.
    pub from_openid: Option<String>,
    /// The calling user's unionid.
    pub from_unionid: Option<String>,
    /// The end client's address.
    pub client_ip: Option<String>,
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The environment.
    pub env: String,
    /// The function.
    pub name: String,
    /// The event, JSON text.
    pub event: String,
    /// The caller.
    pub identity: Identity,
    /// SOURCE: how the call arrived (`wx_http`, `wx_client`, `wx_devtools`, …).
    pub source: String,
    /// A specific version instead of the active one.
    pub version: Option<u32>,
    /// The time limit when the function sets none (3 s; HTTP-API calls 5 s, protocol §3).
    pub default_timeout: Duration,
    /// A cap on the time limit: a nested call gets at most its caller's remaining time.
    pub timeout_cap: Option<Duration>,
}

impl InvokeRequest {
    /// A call of `env/name` with `event` from SOURCE `source` and no identity.
    pub fn new(env: &str, name: &str, event: impl Into<String>, source: &str) -> Self {
        InvokeRequest {
            env: env.to_string(),
            name: name.to_string(),
            event: event.into(),
            identity: Identity::default(),
            source: source.to_string(),
            version: None,
            default_timeout: crate::registry::DEFAULT_TIMEOUT,
            timeout_cap: None,
        }
    }
}

/// What a call did: its result and its record.
#[derive(Debug)]
pub struct Invocation {
    /// The call's id.
    pub request_id: String,
    /// The version that ran, when one was found.
    pub version: Option<u32>,
    /// Wall-clock time of the call.
    pub duration: Duration,
    /// The most linear memory the guest used, in bytes.
    pub peak_memory: usize,
    /// stdout, stderr and log lines, in order.
    pub logs: Vec<LogLine>,
    /// The function's JSON result, or why there is none.
    pub result: Result<String, InvokeError>,
    /// The grant decision, for a call across apps.
    pub decision: Option<Decision>,
}

impl Invocation {
    /// A call that failed before any guest code ran.
    fn failed(request_id: String, error: InvokeError, decision: Option<Decision>) -> Self {
        Invocation {
            request_id,
            version: None,
            duration: Duration::ZERO,
            peak_memory: 0,
            logs: Vec::new(),
            result: Err(error),
            decision,
        }
    }
}

/// A function version ready to run: compiled, linked, with its filesystem template.
pub(crate) struct Prepared {
    info: VersionInfo,
    pre: CloudFunctionPre<CallState>,
    fs: WasiFilesystemCtx,
    vars: Arc<BTreeMap<String, String>>,
}

/// The service: registry, engine and caches.
pub struct Cloudfn {
    registry: Registry,
    engine: WasmEngine,
    options: Options,
    recorder: Recorder,
    metrics: Metrics,
    env_slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    sharing: Mutex<SharingCache>,
    /// Prepared versions by (env, name, version).
    prepared: RwLock<HashMap<(String, String, u32), Arc<Prepared>>>,
    /// The active version of each function, as last resolved.
    active: RwLock<HashMap<(String, String), Arc<Prepared>>>,
    /// Environments, as last read.
    envs: RwLock<HashMap<String, crate::registry::EnvInfo>>,
    /// SQLite's data_version when `active` was last valid: another process's commit changes it.
    active_data_version: AtomicU64,
    /// Bumped (under `active`'s lock) whenever `active` entries are dropped.
    active_epoch: AtomicU64,
    request_prefix: String,
    request_seq: AtomicU64,
}

impl Cloudfn {
    /// Opens the data dir and builds the engine, with default options.
    pub fn open(data_dir: impl Into<PathBuf>) -> anyhow::Result<Arc<Cloudfn>> {
        Self::open_with(data_dir, Options::default())
    }

    /// Opens the data dir and builds the engine.
    pub fn open_with(
        data_dir: impl Into<PathBuf>,
        options: Options,
    ) -> anyhow::Result<Arc<Cloudfn>> {
        let registry = Registry::open(data_dir)?;
        let recorder = Recorder::start(
            &registry.root().join("activations.db"),
            options.activation_retention,
        )?;
        let engine = WasmEngine::new()?;
        let data_version = registry.data_version()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        Ok(Arc::new(Cloudfn {
            registry,
            engine,
            options,
            recorder,
            metrics: Metrics::default(),
            env_slots: Mutex::default(),
            sharing: Mutex::default(),
            prepared: RwLock::default(),
            active: RwLock::default(),
            envs: RwLock::default(),
            active_data_version: AtomicU64::new(data_version),
            active_epoch: AtomicU64::new(0),
            request_prefix: format!(
                "{:x}{:04x}",
                nanos & 0xffff_ffff_ffff,
                std::process::id() & 0xffff
            ),
            request_seq: AtomicU64::new(0),
        }))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The engine.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The service options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    pub(crate) fn sharing_cache(&self) -> std::sync::MutexGuard<'_, SharingCache> {
        self.sharing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shares an env (see [`Registry::add_share`]); cached decisions of the env are dropped.
    pub fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, RegistryError> {
        let share = self.registry.add_share(env, to, perms, functions, acting)?;
        self.sharing_cache().forget_env(env);
        Ok(share)
    }

    /// Ends a share (see [`Registry::remove_share`]); the next call sees it gone.
    pub fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.registry.remove_share(env, to, acting)?;
        self.sharing_cache().forget_env(env);
        Ok(())
    }

    /// Sets an env's security rules; the next call is checked against them.
    pub fn set_rules(&self, env: &str, json: &str) -> Result<String, RegistryError> {
        let stored = self.registry.set_rules(env, json)?;
        self.sharing_cache().forget_env(env);
        Ok(stored)
    }

    /// Activation records matching `q`, oldest first.
    pub fn activations(
        &self,
        q: &crate::activations::ActivationQuery,
    ) -> Result<Vec<Activation>, RegistryError> {
        self.recorder.query(q)
    }

    /// Waits until every activation record so far is stored.
    pub fn flush_records(&self) {
        self.recorder.flush();
    }

    fn record(&self, req: &InvokeRequest, inv: &Invocation, started_at_ms: i64) {
        let (errcode, errmsg) = match &inv.result {
            Ok(_) => (0, "ok".to_string()),
            Err(e) => (e.errcode(), e.to_string()),
        };
        let label = match &inv.result {
            Err(InvokeError::Denied { .. }) => "denied".to_string(),
            _ => errcode.to_string(),
        };
        self.metrics
            .calls
            .get_or_create(&CallLabels { errcode: label })
            .inc();
        self.metrics.latency.observe(inv.duration.as_secs_f64());
        self.recorder.record(Activation {
            seq: 0,
            request_id: inv.request_id.clone(),
            env: req.env.clone(),
            function: req.name.clone(),
            version: inv.version,
            caller_appid: req
                .identity
                .from_appid
                .clone()
                .or_else(|| req.identity.appid.clone()),
            source: req.source.clone(),
            started_at_ms,
            duration_us: inv.duration.as_micros() as i64,
            errcode,
            errmsg,
            peak_memory: inv.peak_memory as i64,
            logs: inv.logs.clone(),
            decision: inv.decision.clone(),
        });
    }

    /// Takes a slot of the env's concurrency cap, or says it is full.
    fn env_slot(&self, env: &str) -> Result<tokio::sync::OwnedSemaphorePermit, InvokeError> {
        let sem = {
            let mut slots = self.env_slots.lock().unwrap_or_else(|e| e.into_inner());
            match slots.get(env) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(tokio::sync::Semaphore::new(self.options.env_concurrency));
                    slots.insert(env.to_string(), s.clone());
                    s
                }
            }
        };
        sem.try_acquire_owned().map_err(|_| InvokeError::TooBusy {
            env: env.to_string(),
            limit: self.options.env_concurrency,
        })
    }

    /// Validates and stores a new version of `env/name` and makes it active. Returns the
    /// version.
    pub fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> Result<VersionInfo, RegistryError> {
        validate_function_name(name)?;
        config.validate()?;
        self.registry.env(env)?;
        let component = self.engine.compile(wasm)?;
        let sha256 = self.registry.put_blob(wasm)?;
        crate::registry::crash_point("deploy-after-blob");
        self.engine.save_artifact(
            &component,
            &self.registry.artifact_path(&sha256, self.engine.tag()),
        )?;
        crate::registry::crash_point("deploy-after-artifact");
        let version = self
            .registry
            .add_version(env, name, &sha256, wasm.len() as u64, &config)?;
        self.forget_active(env, name);
        self.registry.resolve(env, name, Some(version))
    }

    /// Makes an earlier version active again.
    pub fn rollback(&self, env: &str, name: &str, version: u32) -> Result<(), RegistryError> {
        self.registry.rollback(env, name, version)?;
        self.forget_active(env, name);
        Ok(())
    }

    /// Removes a function and its versions.
    pub fn remove(&self, env: &str, name: &str) -> Result<(), RegistryError> {
        self.registry.remove_function(env, name)?;
        self.forget_active(env, name);
        Ok(())
    }

    fn forget_active(&self, env: &str, name: &str) {
        if name == crate::grant::AUTH_FUNCTION {
            self.sharing_cache().forget_env(env);
        }
        let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
        // Under the lock, so a lookup that read the registry before this change cannot put
        // what it read back afterwards.
        self.active_epoch.fetch_add(1, Ordering::AcqRel);
        active.remove(&(env.to_string(), name.to_string()));
        drop(active);
        // Versions no longer active are reloaded from their artifacts (~0.2 ms) if called again:
        // the cache holds what is in use, not every version ever deployed.
        self.prepared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(e, n, _), _| !(e == env && n == name));
    }

    /// Runs one call through the whole pipeline and returns its record.
    pub async fn invoke(self: &Arc<Self>, req: InvokeRequest) -> Invocation {
        self.invoke_raw(req, 0, None).await
    }

    /// Runs a component file directly, without deploying it: local testing. Function-to-
    /// function calls resolve in `req.env` of this data dir.
    pub async fn invoke_file(
        self: &Arc<Self>,
        wasm: &[u8],
        config: FunctionConfig,
        dir: Option<&Path>,
        req: InvokeRequest,
    ) -> Result<Invocation, RegistryError> {
        config.validate()?;
        let component = self.engine.compile(wasm)?;
        let pre = self.engine.prepare(&component)?;
        let info = VersionInfo {
            env: req.env.clone(),
            name: req.name.clone(),
            version: 0,
            sha256: String::new(),
            size: wasm.len() as u64,
            config,
            created_at: 0,
            active: true,
        };
        let prepared = Arc::new(Prepared {
            fs: fs_template(dir, info.config.fs_write)?,
            vars: Arc::new(info.config.vars.clone()),
            info,
            pre,
        });
        let started_at_ms = unix_ms();
        let inv = self.run(prepared, &req, 0).await;
        self.record(&req, &inv, started_at_ms);
        Ok(inv)
    }

    /// Runs a call with the identity it carries, no grant checks (those happened before);
    /// `decision` is the grant decision that let it through, for the record.
    pub(crate) fn invoke_raw(
        self: &Arc<Self>,
        req: InvokeRequest,
        depth: u32,
        decision: Option<Decision>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Invocation> + Send + '_>> {
        Box::pin(async move {
            let started_at_ms = unix_ms();
            let ready = self
                .lookup(&req)
                .and_then(|prepared| Ok((prepared, self.env_slot(&req.env)?)));
            let inv = match ready {
                Ok((prepared, _slot)) => self.run(prepared, &req, depth).await,
                Err(e) => Invocation::failed(self.new_request_id(), e, None),
            };
            let inv = Invocation { decision, ..inv };
            self.record(&req, &inv, started_at_ms);
            inv
        })
    }

    /// A call refused before anything ran (no env, or the grant pipeline said no): recorded
    /// like any other.
    pub(crate) fn refused(
        &self,
        req: &InvokeRequest,
        error: InvokeError,
        decision: Option<Decision>,
    ) -> Invocation {
        let inv = Invocation::failed(self.new_request_id(), error, decision);
        self.record(req, &inv, unix_ms());
        inv
    }

    /// An environment, from a cache that another process's change invalidates.
    pub fn env(&self, env: &str) -> Result<crate::registry::EnvInfo, InvokeError> {
        self.refresh_caches()?;
        if let Some(info) = self.envs.read().unwrap_or_else(|e| e.into_inner()).get(env) {
            return Ok(info.clone());
        }
        let info = self.registry.env(env)?;
        self.envs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(env.to_string(), info.clone());
        Ok(info)
    }

    /// Drops cached registry state when another process changed the registry.
    fn refresh_caches(&self) -> Result<(), InvokeError> {
        let data_version = self.registry.data_version()?;
        if self
            .active_data_version
            .swap(data_version, Ordering::AcqRel)
            != data_version
        {
            let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
            self.active_epoch.fetch_add(1, Ordering::AcqRel);
            active.clear();
            drop(active);
            self.prepared
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            self.envs.write().unwrap_or_else(|e| e.into_inner()).clear();
            self.sharing_cache().clear();
        }
        Ok(())
    }

    /// A fresh request id (also for responses that fail before any call runs).
    pub fn new_request_id(&self) -> String {
        let seq = self.request_seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq:08x}", self.request_prefix)
    }

    /// Finds the prepared version a request runs, loading it on first use.
    fn lookup(&self, req: &InvokeRequest) -> Result<Arc<Prepared>, InvokeError> {
        if validate_function_name(&req.name).is_err() {
            return Err(InvokeError::InvalidParam(format!(
                "invalid function name {:?}",
                req.name
            )));
        }
        if req.version.is_none() {
            self.refresh_caches()?;
            if let Some(p) = self
                .active
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(req.env.clone(), req.name.clone()))
            {
                return Ok(p.clone());
            }
        }
        let epoch = self.active_epoch.load(Ordering::Acquire);
        let info = self.registry.resolve(&req.env, &req.name, req.version)?;
        let key = (info.env.clone(), info.name.clone(), info.version);
        // A version number comes back after `rm` and a new deploy: only the same content and
        // config is the same prepared function.
        let cached = self
            .prepared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .filter(|p| p.info.sha256 == info.sha256 && p.info.config == info.config)
            .cloned();
        let prepared = match cached {
            Some(p) => p,
            None => {
                // Loading may compile (no artifact yet, or a new engine): keep that off the
                // async workers where the runtime allows it.
                let load = || self.load(info);
                let loaded = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor())
                {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                        tokio::task::block_in_place(load)
                    }
                    _ => load(),
                };
                let p = Arc::new(loaded.map_err(InvokeError::System)?);
                self.prepared
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, p.clone());
                p
            }
        };
        if req.version.is_none() {
            let mut active = self.active.write().unwrap_or_else(|e| e.into_inner());
            if self.active_epoch.load(Ordering::Acquire) == epoch {
                active.insert((req.env.clone(), req.name.clone()), prepared.clone());
            }
        }
        Ok(prepared)
    }

    fn load(&self, info: VersionInfo) -> anyhow::Result<Prepared> {
        let component = self.engine.load(
            &self.registry.blob_path(&info.sha256),
            &self.registry.artifact_path(&info.sha256, self.engine.tag()),
        )?;
        let pre = self.engine.prepare(&component)?;
        let dir = self.registry.env_dir(&info.env);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Prepared {
            fs: fs_template(Some(&dir), info.config.fs_write)?,
            vars: Arc::new(info.config.vars.clone()),
            info,
            pre,
        })
    }

    async fn run(
        self: &Arc<Self>,
        prepared: Arc<Prepared>,
        req: &InvokeRequest,
        depth: u32,
    ) -> Invocation {
        let started = Instant::now();
        let request_id = self.new_request_id();
        let cfg = &prepared.info.config;
        let mut timeout = cfg
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(req.default_timeout);
        if let Some(cap) = req.timeout_cap {
            timeout = timeout.min(cap);
        }
        let deadline = started + timeout;

        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&req.event) {
            let e = InvokeError::InvalidParam(format!("the event is not JSON: {e}"));
            return Invocation {
                version: Some(prepared.info.version),
                ..Invocation::failed(request_id, e, None)
            };
        }

        let sink = Arc::new(Mutex::new(LogSink::default()));
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogPipe::new(sink.clone(), LogStream::Stdout))
            .stderr(LogPipe::new(sink.clone(), LogStream::Stderr));
        let mut wasi = wasi.build();
        *wasi.filesystem() = prepared.fs.clone();

        let context = WxContext {
            env: req.env.clone(),
            source: req.source.clone(),
            appid: req.identity.appid.clone(),
            openid: req.identity.openid.clone(),
            unionid: req.identity.unionid.clone(),
            from_appid: req.identity.from_appid.clone(),
            from_openid: req.identity.from_openid.clone(),
            from_unionid: req.identity.from_unionid.clone(),
            client_ip: req.identity.client_ip.clone(),
            request_id: request_id.clone(),
            function_name: req.name.clone(),
        };
        let call = self.nested_caller(req, depth, deadline);
        let mut store = Store::new(
            self.engine.engine(),
            CallState {
                wasi,
                table: ResourceTable::new(),
                limiter: MemLimiter::new(cfg.memory_mb as usize * 1024 * 1024),
                host: FnHost {
                    vars: prepared.vars.clone(),
                    logs: sink.clone(),
                    call,
                },
                deadline,
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                // Yield so a guest that computes without pause never holds a runtime thread.
                UpdateDeadline::Yield(1)
            })
        });

        // A guard, so a call dropped mid-way (its client went away) still counts down.
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let outcome = tokio::time::timeout(timeout, async {
            let instance = match prepared.pre.instantiate_async(&mut store).await {
                Ok(instance) => instance,
                // No trap and no refused growth: the pooling allocator (or the OS) has no room
                // for another instance. The host is full; the function did nothing wrong.
                Err(e)
                    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                        .is_some() =>
                {
                    return Ok(Err(InvokeError::Overloaded(format!("{e:#}"))));
                }
                Err(e) => return Err(e),
            };
            instance
                .cloudfn_function_handler()
                .call_handle(&mut store, &req.event, &context)
                .await
                .map(Ok)
        })
        .await;

        let name = &req.name;
        let result = match outcome {
            Err(_elapsed) => Err(InvokeError::Timeout {
                name: name.clone(),
                limit: timeout,
            }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(Ok(json)))) if json.len() > self.options.max_result_bytes => {
                Err(InvokeError::Failed {
                    name: name.clone(),
                    message: format!(
                        "its result is {} bytes, over the {}-byte limit",
                        json.len(),
                        self.options.max_result_bytes
                    ),
                })
            }
            Ok(Ok(Ok(Ok(json)))) => match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                Ok(_) => Ok(json),
                Err(e) => Err(InvokeError::Failed {
                    name: name.clone(),
                    message: format!("it returned a result that is not JSON: {e}"),
                }),
            },
            Ok(Ok(Ok(Err(fe)))) => Err(InvokeError::Failed {
                name: name.clone(),
                message: truncate(
                    match fe.code {
                        Some(code) => format!("{code}: {}", fe.message),
                        None => fe.message,
                    },
                    MAX_ERROR_MESSAGE,
                ),
            }),
            Ok(Err(trap)) => Err(self.classify_trap(&store, &sink, name, timeout, &trap)),
        };
        let peak_memory = store.data().limiter.peak;
        drop(store);
        let logs = sink.lock().unwrap_or_else(|e| e.into_inner()).finish();
        Invocation {
            request_id,
            version: Some(prepared.info.version),
            duration: started.elapsed(),
            peak_memory,
            logs,
            result,
            decision: None,
        }
    }

    fn classify_trap(
        &self,
        store: &Store<CallState>,
        sink: &Mutex<LogSink>,
        name: &str,
        timeout: Duration,
        err: &wasmtime::Error,
    ) -> InvokeError {
        if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return InvokeError::Timeout {
                name: name.to_string(),
                limit: timeout,
            };
        }
        let limiter = &store.data().limiter;
        if limiter.hit {
            return InvokeError::MemoryLimit {
                name: name.to_string(),
                limit_mb: (limiter_limit_mb(limiter)),
            };
        }
        let trap = match err.downcast_ref::<Trap>() {
            Some(t) => t.to_string(),
            None => format!("{err:#}"),
        };
        let message = match sink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stderr_summary()
        {
            Some(line) => truncate(format!("{trap}; stderr: {line}"), MAX_ERROR_MESSAGE),
            None => truncate(trap, MAX_ERROR_MESSAGE),
        };
        InvokeError::Failed {
            name: name.to_string(),
            message,
        }
    }

    /// The `call-function` capability of a call: the callee runs in the same env with the
    /// caller's identity, SOURCE extended with `,scf`, within the caller's remaining time.
    fn nested_caller(
        self: &Arc<Self>,
        req: &InvokeRequest,
        depth: u32,
        deadline: Instant,
    ) -> CallFunction {
        let svc = Arc::downgrade(self);
        let env = req.env.clone();
        let identity = req.identity.clone();
        // Only a sharee's call is checked again: the owner's own identity needs no grant.
        let caller = match identity.from_appid {
            Some(_) => identity.caller(),
            None => None,
        };
        let source = format!("{},scf", req.source);
        Arc::new(move |name: String, event: String| {
            let svc = svc.clone();
            let caller = caller.clone();
            let req = InvokeRequest {
                env: env.clone(),
                name,
                event,
                identity: identity.clone(),
                source: source.clone(),
                version: None,
                default_timeout: crate::registry::DEFAULT_TIMEOUT,
                timeout_cap: Some(deadline.saturating_duration_since(Instant::now())),
            };
            Box::pin(async move {
                if req.event.len() > MAX_RESULT_BYTES {
                    return Err(CallError {
                        errcode: -501007,
                        errmsg: format!(
                            "parameter error: the event is {} bytes, over the {MAX_RESULT_BYTES}-byte limit",
                            req.event.len()
                        ),
                    });
                }
                let Some(svc) = svc.upgrade() else {
                    return Err(CallError {
                        errcode: -1,
                        errmsg: "cloudfn is shutting down".into(),
                    });
                };
                if depth + 1 >= MAX_CALL_DEPTH {
                    let e = InvokeError::DepthExceeded(MAX_CALL_DEPTH);
                    return Err(CallError {
                        errcode: e.errcode(),
                        errmsg: e.to_string(),
                    });
                }
                // A call made on behalf of another app goes through the same grant checks.
                let inv = match caller.clone() {
                    Some(caller) => svc.invoke_as_at_depth(caller, req, depth + 1).await,
                    None => svc.invoke_raw(req, depth + 1, None).await,
                };
                inv.result.map_err(|e| CallError {
                    errcode: e.errcode(),
                    errmsg: format!("requestID {}, {e}", inv.request_id),
                })
            })
        })
    }
}

struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn limiter_limit_mb(limiter: &MemLimiter) -> u32 {
    (limiter.limit() / (1024 * 1024)) as u32
}

/// The env directory as a WASI filesystem, opened once per prepared version and cloned per
/// call (cloning is ~0.1 µs; opening per call would cost ~6 µs).
fn fs_template(dir: Option<&Path>, writable: bool) -> anyhow::Result<WasiFilesystemCtx> {
    let mut builder = WasiCtxBuilder::new();
    if let Some(dir) = dir {
        let perms = if writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(dir, "/", perms)
            .map_err(crate::engine::wasm_err)
            .with_context(|| format!("opening {}", dir.display()))?;
    }
    Ok(builder.build().filesystem().clone())
}
