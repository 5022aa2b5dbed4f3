//! Running one call of a prepared function: instantiate in a fresh store, call the handler
//! within the time limit, and classify what happened (result, timeout, out of memory, trap,
//! host full). What the call is allowed to do and who it is for were settled by the pipeline.

use crate::bindings::WxContext;
use crate::engine::{Linked, Runtime};
use crate::http::{HttpRequest, HttpResponse};
use crate::log::LogSink;
use crate::state::{CallCapabilities, CallState, StoreParts, new_store};
use anyhow::Context;
use cloudfn_calls::CallFunction;
use cloudfn_model::{FunctionConfig, LogLine};
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{Store, Trap};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Longest error message of a function kept (it goes into responses, records and logs).
const MAX_ERROR_MESSAGE: usize = 4096;

/// A function version ready to run: linked, with its filesystem template and variables.
pub struct Prepared {
    pre: Linked,
    fs: WasiFilesystemCtx,
    /// For a version that may write: the env directory read-only, for calls made while the
    /// env is over its disk quota.
    fs_read_only: Option<WasiFilesystemCtx>,
    vars: Arc<BTreeMap<String, String>>,
    outbound_hosts: Arc<[String]>,
    /// The version's configuration.
    pub config: FunctionConfig,
}

/// One call of a prepared function.
pub struct GuestCall {
    /// The event, JSON text (already checked).
    pub event: String,
    /// The caller's WXContext.
    pub context: WxContext,
    /// The call's time limit (for the message when it is hit).
    pub timeout: Duration,
    /// When the call's time is up.
    pub deadline: Instant,
    /// Where the guest's `call-function` goes.
    pub calls: CallFunction,
    /// The env's owner app (empty for a file run's env), for the capabilities.
    pub owner: String,
    /// What the host provides the capabilities (`cloudfn_capability::Services`).
    pub services: Arc<cloudfn_capability::Services>,
    /// Largest result accepted.
    pub max_result_bytes: usize,
    /// Whether a version that may write sees its env directory read-only this time (the env
    /// is over its disk quota).
    pub read_only: bool,
    /// For an HTTP function: the request (the event is unused).
    pub http: Option<Box<HttpRequest>>,
    /// The client its outbound HTTP goes through (held to the host's egress policy).
    pub outbound: Arc<crate::http::FunctionClient>,
}

/// Why a guest call produced no result.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// Past its time limit.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// It tried to grow its memory past its limit.
    #[error("exceeded its memory limit of {0} MB")]
    MemoryLimit(u32),
    /// A trap, a panic, an error it returned, or a result that is not JSON or too large.
    #[error("{0}")]
    Failed(String),
    /// No room for another instance right now.
    #[error("{0}")]
    Overloaded(String),
    /// The host failed.
    #[error("{0:#}")]
    System(anyhow::Error),
}

/// What a guest call did.
pub struct Outcome {
    /// The JSON result, or why there is none.
    pub result: Result<String, GuestError>,
    /// The most linear memory the guest used, in bytes.
    pub peak_memory: usize,
    /// stdout, stderr and log lines, in order.
    pub logs: Vec<LogLine>,
    /// An HTTP function's response (its `result` is then empty).
    pub response: Option<Box<HttpResponse>>,
}

impl Runtime {
    /// Links a compiled component and opens its env directory (`dir`, read-only unless the
    /// config allows writes) once, so each call only clones the template.
    pub fn prepare(
        &self,
        component: &Component,
        dir: Option<&Path>,
        config: FunctionConfig,
    ) -> anyhow::Result<Prepared> {
        let pre = self
            .link(component, config.kind)
            .map_err(anyhow::Error::new)?;
        Ok(Prepared {
            fs: fs_template(dir, config.fs_write)?,
            fs_read_only: match config.fs_write {
                true => Some(fs_template(dir, false)?),
                false => None,
            },
            vars: Arc::new(config.vars.clone()),
            outbound_hosts: config.outbound_hosts.clone().into(),
            config,
            pre,
        })
    }

    /// Runs one call in a fresh instance: its first slice here when a turn is free for it
    /// (see [`crate::sched`]), the rest on the guest threads. A short call of an env within
    /// its share thus costs no thread hand-off.
    pub async fn run(self: &Arc<Self>, prepared: &Arc<Prepared>, call: GuestCall) -> Outcome {
        let mut work = {
            let (runtime, prepared) = (self.clone(), prepared.clone());
            Box::pin(async move { runtime.run_here(&prepared, call).await })
        };
        // Never inside a slice (a nested call takes a turn of its own, on the guest threads).
        // Guest code holds this thread for one slice at most (an epoch tick, 1 ms), and an env
        // ahead of its share gets no inline slice: a tenant's looping calls soon run only on
        // the guest threads while others are active.
        if !crate::sched::in_turn() {
            let first = std::future::poll_fn(|cx| {
                Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| {
                    crate::sched::inline(|| work.as_mut().poll(cx))
                })))
            })
            .await;
            match first {
                Ok(Poll::Ready(outcome)) => {
                    self.stats.inline_calls.fetch_add(1, Ordering::Relaxed);
                    return outcome;
                }
                Ok(Poll::Pending) => {}
                Err(panic) => return failed_task(&panic_message(&panic)),
            }
        }
        self.stats
            .guest_thread_calls
            .fetch_add(1, Ordering::Relaxed);
        match self.guest_threads().spawn(work).await {
            Ok(outcome) => outcome,
            Err(e) => failed_task(&e.to_string()),
        }
    }

    /// Runs one call in a fresh instance, here.
    async fn run_here(&self, prepared: &Prepared, call: GuestCall) -> Outcome {
        let logs = Arc::new(Mutex::new(LogSink::default()));
        // Shared by the guest's handler and the capabilities, whose states are made from it
        // only if the guest calls into one.
        let context = Arc::new(call.context);
        let mut store = new_store(
            self.engine(),
            StoreParts {
                fs: match (&prepared.fs_read_only, call.read_only) {
                    (Some(read_only), true) => read_only,
                    _ => &prepared.fs,
                },
                vars: prepared.vars.clone(),
                memory_bytes: prepared.config.memory_mb as usize * 1024 * 1024,
                budget: (&self.memory, &context.env),
                calls: call.calls,
                capabilities: CallCapabilities::new(
                    self.capabilities().clone(),
                    context.clone(),
                    call.owner,
                    call.services,
                ),
                logs: logs.clone(),
                deadline: call.deadline,
                outbound_hosts: prepared.outbound_hosts.clone(),
                outbound: call.outbound.clone(),
                env_vars: matches!(prepared.pre, Linked::Http(_)),
            },
        );
        let env: &str = &context.env;
        // Waiting for a turn counts against the call's time like running does.
        let mut response = None;
        let outcome = tokio::time::timeout(
            call.timeout,
            self.sched.run(env, async {
                let instantiated = match &prepared.pre {
                    Linked::Function(pre) => pre
                        .instantiate_async(&mut store)
                        .await
                        .map(Instance::Function),
                    Linked::Http(pre) => {
                        pre.instantiate_async(&mut store).await.map(Instance::Http)
                    }
                };
                let instance = match instantiated {
                    Ok(instance) => instance,
                    // No trap and no refused growth: the pooling allocator (or the OS) has no room
                    // for another instance. The host is full; the function did nothing wrong.
                    Err(e)
                        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                            .is_some() =>
                    {
                        return Ok(Err(GuestError::Overloaded(format!("{e:#}"))));
                    }
                    Err(e) => return Err(e),
                };
                match (instance, &call.http) {
                    (Instance::Function(instance), _) => instance
                        .cloudfn_function_handler()
                        .call_handle(&mut store, &call.event, &context)
                        .await
                        .map(Ok),
                    // Boxed: the HTTP branch's futures would otherwise make every call's
                    // future larger, and every cloud function's call copy them around.
                    (Instance::Http(proxy), Some(request)) => {
                        match Box::pin(crate::http::handle(&mut store, proxy, request)).await? {
                            Ok(r) => {
                                response = Some(Box::new(r));
                                Ok(Ok(Ok(String::new())))
                            }
                            Err(failure) => Ok(Err(GuestError::Failed(failure.to_string()))),
                        }
                    }
                    (Instance::Http(_), None) => Ok(Err(GuestError::Failed(
                        "an HTTP function is called with an HTTP request, not an event".into(),
                    ))),
                }
            }),
        )
        .await;
        // What follows costs the env too (checking a large result, handing back the memory
        // the guest dirtied): in the turn of the slice that ended the call, or, when its time
        // ran out, in a turn of its own, so a tenant's heavy teardown waits its turn like its
        // code does.
        let (outcome, _turn) = match outcome {
            Ok((outcome, turn)) => (Ok(outcome), turn),
            Err(elapsed) => (Err(elapsed), self.sched.run(env, async {}).await.1),
        };
        let result = match outcome {
            Err(_elapsed) => Err(GuestError::Timeout(call.timeout)),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Ok(Ok(Ok(json)))) if response.is_some() => Ok(json),
            Ok(Ok(Ok(Ok(json)))) => check_result(json, call.max_result_bytes),
            Ok(Ok(Ok(Err(fe)))) => Err(GuestError::Failed(truncate(
                match fe.code {
                    Some(code) => format!("{code}: {}", fe.message),
                    None => fe.message,
                },
                MAX_ERROR_MESSAGE,
            ))),
            Ok(Err(trap)) => Err(classify(&store, &logs, call.timeout, &trap)),
        };
        let peak_memory = store.data().limiter.peak;
        drop(store);
        let logs = logs.lock().unwrap_or_else(|e| e.into_inner()).finish();
        Outcome {
            result,
            peak_memory,
            logs,
            response,
        }
    }
}

/// The outcome of a call whose task failed (a panic in host code).
fn failed_task(why: &str) -> Outcome {
    Outcome {
        result: Err(GuestError::System(anyhow::anyhow!(
            "the guest task failed: {why}"
        ))),
        peak_memory: 0,
        logs: Vec::new(),
        response: None,
    }
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => format!("panicked: {s}"),
        (_, Some(s)) => format!("panicked: {s}"),
        _ => "panicked".into(),
    }
}

/// An instance of either kind.
enum Instance {
    Function(crate::bindings::CloudFunction),
    Http(wasmtime_wasi_http::p2::bindings::Proxy),
}

/// A result is JSON and within the size limit, or the call failed.
fn check_result(json: String, max: usize) -> Result<String, GuestError> {
    if json.len() > max {
        return Err(GuestError::Failed(format!(
            "its result is {} bytes, over the {max}-byte limit",
            json.len()
        )));
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
        Ok(_) => Ok(json),
        Err(e) => Err(GuestError::Failed(format!(
            "it returned a result that is not JSON: {e}"
        ))),
    }
}

/// What a trap means: the deadline, the memory limit, or the guest's own failure (with its
/// last words on stderr).
fn classify(
    store: &Store<CallState>,
    logs: &Mutex<LogSink>,
    timeout: Duration,
    err: &wasmtime::Error,
) -> GuestError {
    if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return GuestError::Timeout(timeout);
    }
    let limiter = &store.data().limiter;
    if limiter.host_full {
        return GuestError::Overloaded(
            "the host's memory budget for instances is in use; try again".into(),
        );
    }
    if limiter.hit {
        return GuestError::MemoryLimit((limiter.limit() / (1024 * 1024)) as u32);
    }
    let trap = match err.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => format!("{err:#}"),
    };
    let summary = logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .stderr_summary();
    GuestError::Failed(match summary {
        Some(line) => truncate(format!("{trap}; stderr: {line}"), MAX_ERROR_MESSAGE),
        None => truncate(trap, MAX_ERROR_MESSAGE),
    })
}

/// `s` cut to at most `max` bytes on a character boundary, marked when cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(s.floor_char_boundary(max));
        s.push_str("… [truncated]");
    }
    s
}

/// The env directory as a WASI filesystem, opened once per prepared version and cloned per
/// call (cloning is ~0.1 µs; opening per call would cost ~6 µs).
fn fs_template(dir: Option<&Path>, writable: bool) -> anyhow::Result<WasiFilesystemCtx> {
    let mut builder = WasiCtxBuilder::new();
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
