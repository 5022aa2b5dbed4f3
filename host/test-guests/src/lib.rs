//! Paths of every guest in `functions/`, built for `wasm32-wasip2` by this crate's build script:
//! a dev-dependency of the tests, never of the `cloudfn` binary.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The bytes of the guest at `path` (one of this crate's constants).
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading guest {path}: {e}"))
}
