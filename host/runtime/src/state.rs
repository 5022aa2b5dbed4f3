//! What one call's `Store` holds, and how a fresh one is made: the WASI context (stdio into the
//! call's log sink, the env directory cloned from the version's template, nothing else), the
//! memory limiter, what the `invoke`, `log` and `config` capabilities reach through their view
//! traits (the call's nested-call function, its log, the version's variables), the call's
//! instances of the capabilities that make state (`capabilities.rs`), `wasi:http` with the
//! outbound policy, and the epoch deadline.

use crate::http::Outbound;
use crate::limiter::{MemLimiter, MemoryBudget};
use cloudfn_calls::CallFunction;
use cloudfn_capability::{HasInstances, Instances};
use cloudfn_log::{LogPipe, LogSink};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Everything one call's `Store` holds.
pub struct CallState {
    /// WASI: stdio into the log sink, the env directory, no network.
    pub wasi: WasiCtx,
    /// WASI resources.
    pub table: ResourceTable,
    /// The memory limit.
    pub limiter: MemLimiter,
    /// The nested-call function the pipeline made for the call (the `invoke` capability's).
    pub calls: CallFunction,
    /// The call's log (the `log` capability's, and the guest's stdout and stderr).
    pub logs: Arc<Mutex<LogSink>>,
    /// The version's variables (the `config` capability's).
    pub vars: Arc<BTreeMap<String, String>>,
    /// The call's state of each capability, made when the guest first calls into one (a call
    /// that uses none makes none).
    pub instances: Instances,
    /// What the capabilities' states are made from.
    pub capabilities: CallCapabilities,
    /// When the call's time is up.
    pub deadline: Instant,
    /// `wasi:http` (HTTP functions' incoming request, and outbound requests).
    pub http: WasiHttpCtx,
    /// Where outbound requests may go.
    pub outbound: Outbound,
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// What a call's capability states are made from, kept until the guest first needs one.
pub struct CallCapabilities {
    /// The capabilities linked.
    list: crate::capabilities::List,
    /// The caller's WXContext (the guest's too: shared, not copied).
    context: Arc<crate::WxContext>,
    /// The env's owner app (empty for a file run's env).
    owner: String,
    /// What the host provides them.
    services: Arc<cloudfn_capability::Services>,
    /// Whether the states are made.
    made: bool,
}

impl CallCapabilities {
    /// The capabilities of a call, none of their states made yet.
    pub fn new(
        list: crate::capabilities::List,
        context: Arc<crate::WxContext>,
        owner: String,
        services: Arc<cloudfn_capability::Services>,
    ) -> Self {
        CallCapabilities {
            list,
            context,
            owner,
            services,
            made: false,
        }
    }
}

impl HasInstances for CallState {
    /// Makes every capability's state for the call when the guest first calls into one.
    fn instances(&mut self) -> &mut Instances {
        let caps = &mut self.capabilities;
        if !caps.made {
            caps.made = true;
            let context = &caps.context;
            let info = cloudfn_capability::CallInfo {
                env: &context.env,
                function: &context.function_name,
                owner: &caps.owner,
                appid: context.appid.as_deref(),
                from_appid: context.from_appid.as_deref(),
                deadline: self.deadline,
                services: &caps.services,
            };
            for capability in caps.list.iter() {
                if let Some(instance) = capability.instance(&info) {
                    self.instances.push(instance);
                }
            }
        }
        &mut self.instances
    }
}

impl cloudfn_log::HasLog for CallState {
    fn log_sink(&mut self) -> &Mutex<LogSink> {
        &self.logs
    }
}

impl cloudfn_config::HasVars for CallState {
    fn vars(&mut self) -> &BTreeMap<String, String> {
        &self.vars
    }
}

impl cloudfn_calls::HasCalls for CallState {
    fn calls(&mut self) -> &CallFunction {
        &self.calls
    }
}

impl crate::bindings::cloudfn::function::types::Host for CallState {}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a fresh store is made of.
pub struct StoreParts<'a> {
    /// The env directory, as the version's template.
    pub fs: &'a WasiFilesystemCtx,
    /// The version's variables.
    pub vars: Arc<BTreeMap<String, String>>,
    /// The memory limit in bytes.
    pub memory_bytes: usize,
    /// The host's memory budget, and the env whose part of it the call uses.
    pub budget: (&'a MemoryBudget, &'a str),
    /// The nested-call capability.
    pub calls: CallFunction,
    /// The call's capabilities, their states made on first use.
    pub capabilities: CallCapabilities,
    /// Where the logs go.
    pub logs: Arc<Mutex<LogSink>>,
    /// When the call's time is up.
    pub deadline: Instant,
    /// Hosts outbound HTTP may reach.
    pub outbound_hosts: Arc<[String]>,
    /// The client outbound HTTP goes through.
    pub outbound: Arc<crate::http::FunctionClient>,
    /// For an HTTP function: its variables as environment variables (a cloud function reads
    /// them through the `config` interface instead).
    pub env_vars: bool,
}

/// A fresh store for one call. The epoch callback interrupts the guest past its deadline and
/// otherwise yields, so a guest that computes without pause never holds a runtime thread.
pub fn new_store(engine: &Engine, parts: StoreParts<'_>) -> Store<CallState> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(LogPipe::new(
        parts.logs.clone(),
        cloudfn_model::LogStream::Stdout,
    ))
    .stderr(LogPipe::new(
        parts.logs.clone(),
        cloudfn_model::LogStream::Stderr,
    ));
    if parts.env_vars {
        for (k, v) in parts.vars.iter() {
            wasi.env(k, v);
        }
    }
    let mut wasi = wasi.build();
    *wasi.filesystem() = parts.fs.clone();
    let mut store = Store::new(
        engine,
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemLimiter::new(parts.memory_bytes, parts.budget.0, parts.budget.1),
            calls: parts.calls,
            logs: parts.logs.clone(),
            vars: parts.vars,
            instances: Instances::default(),
            capabilities: parts.capabilities,
            deadline: parts.deadline,
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                allowed: parts.outbound_hosts,
                client: parts.outbound,
                logs: parts.logs,
            },
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|ctx| {
        Ok(if Instant::now() >= ctx.data().deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    store
}
