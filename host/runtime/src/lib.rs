//! cloudfn-runtime: runs WebAssembly cloud functions, one fresh instance per call.
//!
//! - [`engine`]: the one wasmtime [`Runtime`] (engine, linker, epoch ticker), deploy-time
//!   validation against the `cloud-function` world, and compiled components cached by content
//!   hash (in memory and as precompiled artifacts).
//! - [`state`]: what a call's `Store` holds and [`state::new_store`].
//! - [`http`]: HTTP functions (`wasi:http/proxy`): the request and response a gateway hands
//!   over, and the outbound policy (only the hosts a version's config names).
//! - [`run`]: [`Runtime::prepare`] a version once, [`Runtime::run`] a call, and the
//!   classification of its outcome.
//! - [`limiter`]: the call's memory limit and the host's memory budget.
//! - [`capabilities`]: the assembly line of guest capabilities, every interface a guest imports
//!   (crates implementing `cloudfn_capability::Capability`: `invoke`, `log`, `config`,
//!   `openapi`), linked once; `CallState` holds what the view-style ones reach (the call's
//!   nested-call function, log and variables) and the state the others make per call.
//! - [`sched`]: the fair scheduler: guest code runs on the runtime's own threads, in slices,
//!   with CPU shared between envs.
//!
//! Nothing here knows about apps or grants: that is the pipeline's (`cloudfn-invoke`). An env
//! is only a name here, the unit CPU and memory are shared out by.

mod bindings;
pub mod capabilities;
pub mod egress;
pub mod engine;
pub mod http;
pub mod limiter;
pub mod run;
pub mod sched;
pub mod state;

pub use bindings::WxContext;
pub use cloudfn_calls::{CallError, CallFunction};
pub use cloudfn_capability::{CallInfo, Capability, Services};
/// The call's log (the `log` capability's crate).
pub use cloudfn_log as log;
pub use engine::{EPOCH_TICK, EngineConfig, InvalidComponent, Runtime};
pub use http::{HttpRequest, HttpResponse};
pub use run::{GuestCall, GuestError, Outcome, Prepared};
pub use wasmtime::component::Component;
