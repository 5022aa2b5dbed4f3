//! cloudfn-model: the types the runtime and the store share, apart from any database.
//!
//! - [`model`]: the data model every other crate speaks (envs, functions, versions, apps,
//!   tokens, shares, activation records, the call path's [`StateSnapshot`]).
//! - [`error`]: what the model's own checks refuse, and why a token is refused.
//! - [`fsutil`]: files written so a crash leaves the old content or the new, the clock, thread
//!   priority.
//!
//! `cloudfn-store` re-exports all of it, so most crates name these types through the store;
//! the wasm runtime depends on this crate alone and so links no database driver.

pub mod error;
pub mod fsutil;
pub mod model;
pub use cloudfn_protocol::names;

pub use error::{Invalid, TokenError};
pub use model::*;
