//! cloudfn-invoke: the invocation pipeline, from an authenticated caller to a guest's result.
//!
//! - [`call`]: the vocabulary ([`Call`], [`Caller`], [`Origin`], [`Invocation`]).
//! - [`host`]: [`Host`], the data plane, which owns the parts; [`pipeline`]: [`Host::call`],
//!   the one entry every caller uses; [`control`]: [`Control`], the control plane (management
//!   over the same store, and who may manage what);
//!   [`fixture`]: a whole setup (apps, envs, shares, functions) from one TOML file.
//! - [`state`]: the in-memory snapshot of the store, refreshed from its change feed, and the
//!   prepared versions; [`grant`] and [`rules`]: who may call what in a shared env;
//!   [`limits`]: every limit in one place; [`quota`]: per-key rate limits; [`observe`] and [`metrics`]: what every call
//!   leaves behind.
//!
//! It speaks to state only through `cloudfn-store`'s traits and to wasm only through
//! `cloudfn-runtime`; the HTTP dialects in `cloudfn-gateway` and the CLI sit on top of it.

pub mod call;
pub mod control;
pub mod error;
pub mod fixture;
pub mod grant;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod outbound;
pub mod pipeline;
pub mod quota;
pub mod session;
pub use cloudfn_protocol::rules;
pub mod state;
pub mod upstream;
pub mod webhook;

pub use call::{
    AppCaller, CLIENT_SOURCE, Call, Caller, HttpCall, Identity, Invocation, InvokeRequest, Origin,
    Stamp,
};
pub use cloudfn_runtime::EngineConfig;
pub use cloudfn_runtime::{HttpRequest, HttpResponse, WxContext};
pub use control::{Actor, Control};
pub use error::InvokeError;
pub use host::{Host, Options};
pub use limits::Limits;
