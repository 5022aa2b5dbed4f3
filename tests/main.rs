//! The integration tests, as one test binary: each test binary links all of wasmtime, and one
//! process shares one engine, so every guest compiles once for the whole suite.

mod common;

mod authoring;
mod cli;
mod client;
mod cloud_calls;
mod console;
mod containers;
mod hostile;
mod js;
mod multihost;
mod rough_edges;
mod runtime;
mod security;
mod serve;
mod sharing;
