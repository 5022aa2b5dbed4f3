//! cloudfn-host: runs per-environment WebAssembly cloud functions for mini-program backends.
//!
//! - [`registry`]: environments, functions, versions, in a data dir (SQLite + content-addressed
//!   wasm and artifacts).
//! - [`engine`]: the wasmtime engine, linker, epoch ticker, deploy validation, artifact cache.
//! - [`call`]: what one call's `Store` holds and the host side of the WIT interfaces.
//! - [`service`]: [`Cloudfn`], the invocation path every entry point shares.
//! - [`cli`]: the `cloudfn` command line; [`demo`]: the embedded example data dir.

pub mod activations;
pub mod admin_api;
mod bindings;
pub mod call;
pub mod cli;
pub mod client;
pub mod credentials;
pub mod demo;
pub mod engine;
pub mod error;
pub mod gateway;
pub mod grant;
mod http;
pub mod metrics;
pub mod registry;
pub mod rules;
pub mod server;
pub mod service;
pub mod sharing;
pub mod tc3;

pub use error::{InvokeError, RegistryError};
pub use registry::{FunctionConfig, Registry};
pub use service::{Cloudfn, Identity, Invocation, InvokeRequest};

/// Guests built from `functions/` by the build script.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}
