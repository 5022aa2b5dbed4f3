//! cloudfn-cli: the `cloudfn` command line.
//!
//! - [`args`]: the command line as clap parses it.
//! - [`commands`]: each command, printed for people.
//! - [`client`]: what commands talk to: a data dir in-process, or a server's admin API.
//! - [`demo`]: the embedded example data dir.

pub mod args;
pub mod author;
pub mod client;
pub mod commands;
pub mod demo;
