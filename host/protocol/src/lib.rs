//! cloudfn-protocol: the wire formats cloudfn reads from callers it does not trust, and the
//! rules it evaluates, as pure functions apart from any runtime, store or server (so that the
//! fuzzers in `fuzz/` drive exactly the code the host runs):
//!
//! - [`tc3`]: TC3-HMAC-SHA256 signatures of `/admin` requests, and replay protection;
//! - [`admin`]: the fields of an `/admin` request;
//! - [`auth_reply`]: `cloudbase_auth`'s reply;
//! - [`rules`]: the security rules of a shared env (CEL);
//! - [`ids`]: user ids as callers name them in headers; [`names`]: function, env and app
//!   names (protocol §3).

pub mod admin;
pub mod auth_reply;
pub mod ids;
pub mod names;
pub mod rules;
pub mod tc3;

/// Whether `a` and `b` are equal, in time that depends on their length only (for comparing
/// secrets and signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
