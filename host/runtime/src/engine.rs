//! The wasm engine: one `wasmtime::Engine` (component model, epoch interruption, pooling
//! allocator with an on-demand fallback), the linker every function shares, the epoch ticker
//! thread, deploy-time validation against the `cloud-function` or `wasi:http/proxy` world, and
//! the compiled-component cache (in memory by content hash, and precompiled artifacts on disk).

use crate::bindings::{self, CloudFunctionPre};
use crate::state::CallState;
use anyhow::Context;
use cloudfn_model::FunctionKind;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticks. Timeouts are checked at this granularity, and a guest that
/// computes without pause yields its thread back to the async runtime once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Why a file is not a usable cloud function, in words that say what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct InvalidComponent(pub String);

/// The interface an HTTP function exports.
const HTTP_HANDLER: &str = "wasi:http/incoming-handler@0.2";

/// A component linked for instantiation, by kind.
pub(crate) enum Linked {
    /// A cloud function.
    Function(CloudFunctionPre<CallState>),
    /// An HTTP function.
    Http(crate::http::HttpPre),
}

/// Most compiled components kept in memory.
const MAX_CACHED_COMPONENTS: usize = 1024;

/// How the engine allocates instances.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances the pooling allocator holds at once (each with one linear memory and
    /// table); past that a call is refused as "host full". `None` allocates each instance on
    /// demand: no pool to reserve, for processes that make one call and exit (the CLI).
    pub pool_instances: Option<u32>,
    /// Bytes of a freed linear memory reset in place (only its dirty pages, found with
    /// Linux's `PAGEMAP_SCAN`) instead of given back with `madvise`: an `madvise` on a
    /// multi-threaded process interrupts every other core to flush its TLB, which under load
    /// cost more than the guest's own code. Memory kept resident counts in the RSS.
    pub keep_resident: usize,
    /// Bytes of linear memory all live instances may hold together; half of it is the most
    /// one env's instances may hold. Past either, growth fails and the call is refused as
    /// "host full" (-501004) rather than the host running out of memory.
    pub memory_budget: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pool_instances: Some(1000),
            keep_resident: 1 << 20,
            memory_budget: 4 << 30,
        }
    }
}

impl EngineConfig {
    /// For a process that makes a call or two and exits: no pool.
    pub fn one_shot() -> Self {
        EngineConfig {
            pool_instances: None,
            ..EngineConfig::default()
        }
    }
}

/// Counters that make the engine's caching observable (to tests and `/metrics`).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Components compiled with Cranelift.
    pub compiles: AtomicU64,
    /// Precompiled artifacts loaded from disk instead of compiling.
    pub artifact_loads: AtomicU64,
    /// Calls that ran to their end in their first slice, inline on the calling thread.
    pub inline_calls: AtomicU64,
    /// Calls that ran (or went on) on the guest threads.
    pub guest_thread_calls: AtomicU64,
}

/// The engine, the linker shared by every call, and the compiled components. One per process
/// is enough: hosts and tests in one process share it, so a component compiles once.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    /// The guest capabilities linked (`capabilities::standard()`, and a test's own).
    capabilities: crate::capabilities::List,
    /// The package's interfaces a guest may import: the runtime's own and the capabilities'.
    importable: Vec<&'static str>,
    tag: String,
    pooling: bool,
    /// Where precompiled artifacts are cached across restarts, if anywhere.
    artifacts: Option<PathBuf>,
    /// Compiled components by content hash.
    components: RwLock<HashMap<String, Component>>,
    /// Counters of compilations and artifact loads.
    pub stats: EngineStats,
    /// Turns to run guest code, shared fairly between envs.
    pub(crate) sched: crate::sched::Scheduler,
    /// The linear memory all instances may hold, shared between envs.
    pub memory: crate::limiter::MemoryBudget,
    /// The threads guest code runs on, apart from the caller's (the HTTP side's) async
    /// workers: a busy guest slows other guests (as the scheduler shares out), never the
    /// accepting and answering of requests. Taken out on drop to shut it down.
    guests: Option<tokio::runtime::Runtime>,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// The engine with the default [`EngineConfig`]; precompiled artifacts are kept in
    /// `artifacts` when given.
    pub fn new(artifacts: Option<PathBuf>) -> anyhow::Result<Runtime> {
        Self::with_config(artifacts, &EngineConfig::default())
    }

    /// Builds the engine, with the pooling allocator when `engine` asks for it, falling back
    /// to on-demand allocation where the machine cannot reserve the pool (e.g. a small
    /// address space). Precompiled artifacts are kept in `artifacts` when given.
    pub fn with_config(
        artifacts: Option<PathBuf>,
        engine: &EngineConfig,
    ) -> anyhow::Result<Runtime> {
        Self::with_capabilities(artifacts, engine, crate::capabilities::standard())
    }

    /// [`Runtime::with_config`] linking `capabilities` (a test's list: the standard ones and
    /// one of its own) instead of the standard list.
    pub fn with_capabilities(
        artifacts: Option<PathBuf>,
        engine: &EngineConfig,
        capabilities: Vec<crate::capabilities::Dyn>,
    ) -> anyhow::Result<Runtime> {
        anyhow::ensure!(
            capabilities.len() <= cloudfn_capability::MAX_CAPABILITIES,
            "{} capabilities: at most {} are linked",
            capabilities.len(),
            cloudfn_capability::MAX_CAPABILITIES
        );
        let memory_budget = engine.memory_budget;
        if let Some(dir) = &artifacts {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            cloudfn_model::fsutil::remove_stale_temp_files(dir);
        }
        let pooled = engine.pool_instances.and_then(|instances| {
            Engine::new(&config(Some((instances, engine.keep_resident))))
                .inspect_err(|e| {
                    tracing::warn!(
                        "pooling allocator unavailable ({e:#}); using on-demand allocation"
                    )
                })
                .ok()
        });
        let (engine, pooling) = match pooled {
            Some(engine) => (engine, true),
            None => (Engine::new(&config(None)).map_err(wasm_err)?, false),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(wasm_err)
            .context("linking WASI")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(wasm_err)
            .context("linking wasi:http")?;
        link_interfaces(&mut linker)
            .map_err(wasm_err)
            .context("linking the cloudfn host interfaces")?;
        let mut importable = bindings::OWN_INTERFACES.to_vec();
        for capability in &capabilities {
            let interface = capability.interface();
            anyhow::ensure!(
                !importable.contains(&interface),
                "two capabilities for the interface `{interface}`"
            );
            capability
                .add_to_linker(&mut linker)
                .map_err(wasm_err)
                .with_context(|| format!("linking the `{interface}` capability"))?;
            importable.push(interface);
        }

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let tag = format!("{:016x}", hasher.finish());

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("cloudfn-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("starting the epoch ticker")?;

        // Ends the running slices now (they yield at their next check), for a call of an env
        // that has had less than the running ones.
        let preempt: Box<dyn Fn() + Send + Sync> = {
            let weak = engine.weak();
            Box::new(move || {
                if let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                }
            })
        };
        Ok(Runtime {
            engine,
            linker,
            capabilities: capabilities.into(),
            importable,
            tag,
            pooling,
            artifacts,
            components: RwLock::default(),
            stats: EngineStats::default(),
            sched: crate::sched::Scheduler::new(sched_turns(), preempt),
            memory: crate::limiter::MemoryBudget::new(memory_budget, memory_budget / 2),
            // One thread more than turns: while every turn runs a slice, a thread is free to
            // take a new call to the scheduler, which then puts it ahead of busier envs.
            // With as many threads as turns, the threads' own run queues would decide instead.
            guests: Some(guest_threads(sched_turns() + 1)?),
            ticker_stop,
        })
    }

    /// The guest capabilities linked.
    pub fn capabilities(&self) -> &crate::capabilities::List {
        &self.capabilities
    }

    /// The interfaces of the `cloudfn:function` package a guest may import: the runtime's own
    /// and the linked capabilities'.
    pub fn importable(&self) -> &[&'static str] {
        &self.importable
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Identifies this engine's artifact format: artifacts are cached per tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Compiles and validates a component for deploy as a version of `kind`: it must be a
    /// component (not a core module) and fit that kind's world. Says exactly what is wrong
    /// when not.
    pub fn compile(&self, bytes: &[u8], kind: FunctionKind) -> Result<Component, InvalidComponent> {
        let component = self.compile_any(bytes)?;
        self.check_world(&component, kind)?;
        Ok(component)
    }

    /// Compiles a component of any world (counted), saying what is wrong when it does not.
    fn compile_any(&self, bytes: &[u8]) -> Result<Component, InvalidComponent> {
        check_header(bytes)?;
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| InvalidComponent(format!("the component does not compile: {e:#}")))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        Ok(component)
    }

    /// [`compile`](Self::compile) for bytes whose content hash is `sha256`, unless that
    /// component is compiled already (by this process, or as a precompiled artifact of this
    /// engine): then only its world is checked. A redeploy of unchanged code, a rollback's
    /// twin, or one component deployed to several envs compiles once (a JavaScript component
    /// is 12 MB of wasm: seconds of both cores).
    pub fn compile_once(
        &self,
        sha256: &str,
        bytes: &[u8],
        kind: FunctionKind,
    ) -> Result<Component, InvalidComponent> {
        match self.cached(sha256) {
            Some(component) => {
                self.check_world(&component, kind)?;
                Ok(component)
            }
            None => self.compile(bytes, kind),
        }
    }

    /// The kind of function `bytes` is, compiling them once: a component of the
    /// `cloud-function` world, or else of the `wasi:http/proxy` world; the cloud function's
    /// error when it is neither.
    pub fn kind_of(&self, bytes: &[u8]) -> Result<FunctionKind, InvalidComponent> {
        let component = self.compile_any(bytes)?;
        match self.check_world(&component, FunctionKind::Function) {
            Ok(()) => Ok(FunctionKind::Function),
            Err(e) => match self.check_world(&component, FunctionKind::Http) {
                Ok(()) => Ok(FunctionKind::Http),
                Err(_) => Err(e),
            },
        }
    }

    /// Checks a compiled component against its kind's world and links it for instantiation
    /// (imports resolved once, here, not per call).
    pub(crate) fn link(
        &self,
        component: &Component,
        kind: FunctionKind,
    ) -> Result<Linked, InvalidComponent> {
        let world = match kind {
            FunctionKind::Function => "cloud-function",
            FunctionKind::Http => "wasi:http/proxy",
        };
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            InvalidComponent(format!(
                "the component does not fit the {world} world: {e:#}"
            ))
        })?;
        match kind {
            FunctionKind::Function => CloudFunctionPre::new(pre).map(Linked::Function).map_err(|e| {
                InvalidComponent(format!(
                    "the component's export `{}/{}` does not match the cloud-function world: {e:#}",
                    bindings::PACKAGE,
                    bindings::HANDLER
                ))
            }),
            FunctionKind::Http => crate::http::HttpPre::new(pre).map(Linked::Http).map_err(|e| {
                InvalidComponent(format!(
                    "the component's export `{HTTP_HANDLER}` does not match the wasi:http/proxy \
                     world (WASI 0.2): {e:#}"
                ))
            }),
        }
    }

    fn check_world(
        &self,
        component: &Component,
        kind: FunctionKind,
    ) -> Result<(), InvalidComponent> {
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            let allowed = if let Some(rest) = name.strip_prefix(bindings::PACKAGE) {
                let iface = rest.trim_start_matches('/').split('@').next().unwrap_or("");
                self.importable.contains(&iface)
            } else {
                name.starts_with("wasi:")
            };
            if !allowed {
                return Err(InvalidComponent(format!(
                    "the component imports `{name}`, which cloudfn does not provide; a {} \
                     may import only WASI 0.2 and {}/{{{}}}",
                    match kind {
                        FunctionKind::Function => "cloud function",
                        FunctionKind::Http => "HTTP function",
                    },
                    bindings::PACKAGE,
                    self.importable
                        .iter()
                        .filter(|i| **i != "types")
                        .copied()
                        .collect::<Vec<_>>()
                        .join(",")
                )));
            }
        }
        let (handler, hint) = match kind {
            FunctionKind::Function => (
                format!("{}/{}", bindings::PACKAGE, bindings::HANDLER),
                "write the function with cloudfn-sdk's #[cloudfn_sdk::function], or deploy a \
                 wasi:http component with --kind http",
            ),
            FunctionKind::Http => (
                HTTP_HANDLER.to_string(),
                "build a wasi:http/proxy component (e.g. with the `wasi` crate's \
                 `wasi::http::proxy::export!`), or deploy a cloud function without --kind http",
            ),
        };
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        if !exports.iter().any(|e| e.starts_with(&handler)) {
            return Err(InvalidComponent(format!(
                "the component does not export `{handler}` (it exports: {}); {hint}",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            )));
        }
        self.link(component, kind).map(|_| ())
    }

    /// The compiled component with content hash `sha256`, if this process compiled it or a
    /// precompiled artifact of it fits this engine.
    pub fn cached(&self, sha256: &str) -> Option<Component> {
        if let Some(c) = self
            .components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
        {
            return Some(c.clone());
        }
        let artifact = self.artifact_path(sha256)?;
        if !artifact.exists() {
            return None;
        }
        // SAFETY: artifacts are written only by `remember` from this engine's own compilation,
        // and wasmtime checks the engine compatibility.
        match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
            Ok(component) => {
                self.stats.artifact_loads.fetch_add(1, Ordering::Relaxed);
                self.keep(sha256, &component);
                Some(component)
            }
            Err(e) => {
                tracing::warn!(
                    artifact = %artifact.display(),
                    "precompiled artifact unusable, recompiling: {e:#}"
                );
                // Gone, so the recompilation writes a good one in its place.
                let _ = std::fs::remove_file(&artifact);
                None
            }
        }
    }

    /// Whether the component with content hash `sha256` needs no compile: this process has
    /// it, or a precompiled artifact of it for this engine is on disk.
    pub fn is_compiled(&self, sha256: &str) -> bool {
        self.components
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(sha256)
            || self.artifact_path(sha256).is_some_and(|a| a.exists())
    }

    /// Compiles stored component bytes (already validated at deploy) and remembers them.
    pub fn compile_stored(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<Component> {
        let component = Component::new(&self.engine, bytes)
            .map_err(wasm_err)
            .with_context(|| format!("compiling component {sha256}"))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        self.remember(sha256, &component)?;
        Ok(component)
    }

    /// Keeps a compiled component in memory and, where there is an artifact dir, on disk so
    /// the next process loads it instead of compiling.
    pub fn remember(&self, sha256: &str, component: &Component) -> anyhow::Result<()> {
        self.keep(sha256, component);
        let Some(artifact) = self.artifact_path(sha256) else {
            return Ok(());
        };
        if artifact.exists() {
            return Ok(());
        }
        let bytes = component
            .serialize()
            .map_err(wasm_err)
            .context("serializing the compiled component")?;
        cloudfn_model::fsutil::write_atomic(&artifact, &bytes)
    }

    fn keep(&self, sha256: &str, component: &Component) {
        let mut components = self.components.write().unwrap_or_else(|e| e.into_inner());
        // Bounded: past the cap, forget everything; what is in use is reloaded from artifacts
        // (~0.1 ms each) on its next call.
        if components.len() >= MAX_CACHED_COMPONENTS {
            components.clear();
        }
        components.insert(sha256.to_string(), component.clone());
    }

    fn artifact_path(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.artifacts.as_ref()?;
        Some(dir.join(format!("{sha256}-{}.cwasm", self.tag)))
    }
}

impl Runtime {
    /// Where guest calls run.
    pub(crate) fn guest_threads(&self) -> &tokio::runtime::Handle {
        self.guests
            .as_ref()
            .expect("the guest threads live as long as the runtime")
            .handle()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        // Without waiting: a runtime may be dropped on an async worker.
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
}

/// Turns to run guest code: one per core.
fn sched_turns() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The guest threads. Their queues are checked often: a call spawned here, or woken by a
/// timer or a finished file operation, must not wait behind many slices of busy guests.
fn guest_threads(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("cloudfn-guest")
        .global_queue_interval(2)
        .event_interval(2)
        .enable_all()
        .build()
        .context("starting the guest threads")
}

/// The package's types, which every interface uses (a guest imports them as an instance of
/// their own); the interfaces are the capabilities'.
fn link_interfaces(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use bindings::cloudfn::function::types;
    use wasmtime::component::HasSelf;
    types::add_to_linker::<_, HasSelf<CallState>>(linker, |s: &mut CallState| s)
}

/// The engine's configuration; `pool` is (instances, keep-resident bytes) for the pooling
/// allocator, `None` for on-demand allocation.
fn config(pool: Option<(u32, usize)>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.concurrency_support(false);
    if let Some((instances, keep_resident)) = pool {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances)
            .total_memories(instances)
            .total_tables(instances)
            .total_stacks(instances);
        // Functions may ask for up to 2 GiB; the pool reserves address space, not memory.
        pool.max_memory_size(cloudfn_model::MAX_MEMORY_MB as usize * 1024 * 1024);
        // Reset freed memories in place rather than with madvise (see `keep_resident`).
        pool.linear_memory_keep_resident(keep_resident);
        pool.table_keep_resident(64 * 1024);
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Tells a core module or arbitrary bytes from a component before compiling, so the message
/// says what the file is.
fn check_header(bytes: &[u8]) -> Result<(), InvalidComponent> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(InvalidComponent(
            "not a WebAssembly file (no \\0asm header); deploy a function's folder (cloudfn \
             builds a Rust crate or a JavaScript function), or the .wasm that `cloudfn build` or \
             `cargo build --target wasm32-wasip2` produces"
                .into(),
        ));
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Err(InvalidComponent(
            "this is a core wasm module, not a component; build the function for \
             wasm32-wasip2 (cargo build --target wasm32-wasip2) so it is a component"
                .into(),
        )),
        [_, _, 1, 0] => Ok(()),
        other => Err(InvalidComponent(format!(
            "unsupported WebAssembly layer/version {other:?}; expected a component"
        ))),
    }
}

/// wasmtime 48 has its own error type; this carries its message (with causes) into anyhow.
pub fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
