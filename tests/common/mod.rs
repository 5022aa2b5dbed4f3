//! Shared helpers of the integration tests: temp data dirs, the real guests, JSON parsing.
#![allow(dead_code)]

pub mod http;

use cloudfn_host::guests::paths;
use cloudfn_host::{Cloudfn, FunctionConfig, Invocation, InvokeRequest};
use serde_json::Value;
use std::sync::Arc;

/// The bytes of a guest built from `functions/`.
pub fn wasm(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading guest {path}: {e}"))
}

/// Runs an `examples/` script as the README prints it, with this build's binary and guests and
/// free ports; returns its stdout, or fails the test with its output.
pub fn run_example(script: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm_dir = std::path::Path::new(paths::ECHO).parent().unwrap();
    let out = std::process::Command::new("bash")
        .arg(root.join("examples").join(script))
        .env("CLOUDFN", env!("CARGO_BIN_EXE_cloudfn"))
        .env("WASM", wasm_dir)
        .env("PORT", "0")
        .env("ADMIN_PORT", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fresh data dir with env `prod` (owner `wxA`) and `echo` deployed.
pub fn service() -> (tempfile::TempDir, Arc<Cloudfn>) {
    let dir = tempfile::tempdir().unwrap();
    let svc = Cloudfn::open(dir.path()).unwrap();
    svc.registry().create_env("prod", "wxA").unwrap();
    svc.deploy(
        "prod",
        "echo",
        &wasm(paths::ECHO),
        FunctionConfig::default(),
    )
    .unwrap();
    (dir, svc)
}

/// Deploys guest `path` as `name` in `prod` with `config`.
pub fn deploy(svc: &Cloudfn, name: &str, path: &str, config: FunctionConfig) -> u32 {
    svc.deploy("prod", name, &wasm(path), config)
        .unwrap_or_else(|e| panic!("deploying {name}: {e}"))
        .version
}

/// Calls `prod/name` with `event` from SOURCE wx_devtools and no identity.
pub async fn call(svc: &Arc<Cloudfn>, name: &str, event: &str) -> Invocation {
    svc.invoke(InvokeRequest::new("prod", name, event, "wx_devtools"))
        .await
}

/// The JSON result of a call that must succeed.
pub fn ok_json(inv: &Invocation) -> Value {
    match &inv.result {
        Ok(json) => serde_json::from_str(json).unwrap(),
        Err(e) => panic!("call failed: {e} (logs: {:?})", inv.logs),
    }
}

/// The errcode and message of a call that must fail.
pub fn err(inv: &Invocation) -> (i32, String) {
    match &inv.result {
        Ok(json) => panic!("call succeeded with {json}, expected a failure"),
        Err(e) => (e.errcode(), e.to_string()),
    }
}
