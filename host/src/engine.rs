//! The wasm engine: one `wasmtime::Engine` (component model, epoch interruption, pooling
//! allocator with an on-demand fallback), the linker every function shares, the epoch ticker
//! thread, deploy-time validation against the `cloud-function` world, and the precompiled
//! artifact cache.

use crate::bindings::{self, CloudFunctionPre};
use crate::call::CallState;
use crate::error::RegistryError;
use anyhow::Context;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch ticks. Timeouts are checked at this granularity, and a guest that
/// computes without pause yields its thread back to the async runtime once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Counters that make the engine's caching observable (to tests and `/metrics`).
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Components compiled with Cranelift.
    pub compiles: AtomicU64,
    /// Precompiled artifacts loaded from disk instead of compiling.
    pub artifact_loads: AtomicU64,
}

/// The engine and the linker shared by every call.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<CallState>,
    tag: String,
    pooling: bool,
    /// Counters of compilations and artifact loads.
    pub stats: EngineStats,
    ticker_stop: Arc<AtomicBool>,
}

impl WasmEngine {
    /// Builds the engine, preferring the pooling allocator and falling back to on-demand
    /// allocation where the machine cannot reserve the pool (e.g. a small address space).
    pub fn new() -> anyhow::Result<WasmEngine> {
        let (engine, pooling) = match Engine::new(&config(true)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                tracing::warn!("pooling allocator unavailable ({e:#}); using on-demand allocation");
                (Engine::new(&config(false)).map_err(wasm_err)?, false)
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(wasm_err)
            .context("linking WASI")?;
        bindings::CloudFunction::add_to_linker::<CallState, wasmtime::component::HasSelf<_>>(
            &mut linker,
            |state: &mut CallState| &mut state.host,
        )
        .map_err(wasm_err)
        .context("linking the cloudfn host interfaces")?;

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

        Ok(WasmEngine {
            engine,
            linker,
            tag,
            pooling,
            stats: EngineStats::default(),
            ticker_stop,
        })
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

    /// Compiles and validates a component for deploy: it must be a component (not a core
    /// module) and fit the `cloud-function` world. Says exactly what is wrong when not.
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, RegistryError> {
        check_header(bytes)?;
        let component = Component::new(&self.engine, bytes).map_err(|e| {
            RegistryError::InvalidWasm(format!("the component does not compile: {e:#}"))
        })?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        self.check_world(&component)?;
        Ok(component)
    }

    /// Checks a compiled component against the `cloud-function` world and prepares it for
    /// instantiation (imports resolved once, here, not per call).
    pub fn prepare(
        &self,
        component: &Component,
    ) -> Result<CloudFunctionPre<CallState>, RegistryError> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            RegistryError::InvalidWasm(format!(
                "the component does not fit the cloud-function world: {e:#}"
            ))
        })?;
        CloudFunctionPre::new(pre).map_err(|e| {
            RegistryError::InvalidWasm(format!(
                "the component's export `{}/{}` does not match the cloud-function world: {e:#}",
                bindings::PACKAGE,
                bindings::HANDLER
            ))
        })
    }

    fn check_world(&self, component: &Component) -> Result<(), RegistryError> {
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
            let allowed = if let Some(rest) = name.strip_prefix(bindings::PACKAGE) {
                let iface = rest.trim_start_matches('/').split('@').next().unwrap_or("");
                bindings::IMPORTABLE.contains(&iface)
            } else {
                name.starts_with("wasi:")
            };
            if !allowed {
                return Err(RegistryError::InvalidWasm(format!(
                    "the component imports `{name}`, which cloudfn does not provide; a cloud \
                     function may import only WASI 0.2 and {}/{{invoke,log,config}}",
                    bindings::PACKAGE
                )));
            }
        }
        let handler = format!("{}/{}", bindings::PACKAGE, bindings::HANDLER);
        let exports: Vec<&str> = ty.exports(&self.engine).map(|(name, _)| name).collect();
        if !exports.iter().any(|e| e.starts_with(&handler)) {
            return Err(RegistryError::InvalidWasm(format!(
                "the component does not export `{handler}` (it exports: {}); write the function \
                 with cloudfn-sdk's #[cloudfn_sdk::function]",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            )));
        }
        self.prepare(component).map(|_| ())
    }

    /// Loads the component stored at `wasm`, from its precompiled artifact at `artifact` when
    /// one is there and fits this engine, else by compiling (and caching the artifact).
    pub fn load(&self, wasm: &Path, artifact: &Path) -> anyhow::Result<Component> {
        if artifact.exists() {
            // SAFETY: artifacts are written only by `save_artifact` from this engine's own
            // compilation into the data dir, and wasmtime checks the engine compatibility.
            match unsafe { Component::deserialize_file(&self.engine, artifact) } {
                Ok(component) => {
                    self.stats.artifact_loads.fetch_add(1, Ordering::Relaxed);
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    artifact = %artifact.display(),
                    "precompiled artifact unusable, recompiling: {e:#}"
                ),
            }
        }
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let component = Component::new(&self.engine, &bytes)
            .map_err(wasm_err)
            .with_context(|| format!("compiling {}", wasm.display()))?;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        self.save_artifact(&component, artifact)?;
        Ok(component)
    }

    /// Caches a compiled component's artifact so the next process loads it instead of
    /// compiling.
    pub fn save_artifact(&self, component: &Component, artifact: &Path) -> anyhow::Result<()> {
        let bytes = component
            .serialize()
            .map_err(wasm_err)
            .context("serializing the compiled component")?;
        crate::registry::write_atomic(artifact, &bytes)
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.concurrency_support(false);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Functions may ask for up to 2 GiB; the pool reserves address space, not memory.
        pool.max_memory_size(crate::registry::MAX_MEMORY_MB as usize * 1024 * 1024);
        // Keep the first pages of a freed slot resident: a fresh instance's first-touched
        // pages are the dominant per-call cost.
        pool.linear_memory_keep_resident(64 * 1024);
        pool.table_keep_resident(64 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Tells a core module or arbitrary bytes from a component before compiling, so the message
/// says what the file is.
fn check_header(bytes: &[u8]) -> Result<(), RegistryError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(RegistryError::InvalidWasm(
            "not a WebAssembly file (no \\0asm header); deploy the .wasm that \
             `cargo build --target wasm32-wasip2` produces"
                .into(),
        ));
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Err(RegistryError::InvalidWasm(
            "this is a core wasm module, not a component; build the function for \
             wasm32-wasip2 (cargo build --target wasm32-wasip2) so it is a component"
                .into(),
        )),
        [_, _, 1, 0] => Ok(()),
        other => Err(RegistryError::InvalidWasm(format!(
            "unsupported WebAssembly layer/version {other:?}; expected a component"
        ))),
    }
}

/// wasmtime 48 has its own error type; this carries its message (with causes) into anyhow.
pub(crate) fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
