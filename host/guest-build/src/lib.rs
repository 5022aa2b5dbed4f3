//! What the build scripts of `cloudfn-cli` (the demo's functions, embedded in the binary) and
//! `cloudfn-test-guests` (every guest, for the tests) share: compiling guests of the
//! `functions/` workspace for `wasm32-wasip2`, once, into the workspace target dir's
//! `wasm-guests`, so a host rebuild reuses them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root, from a build script's `CARGO_MANIFEST_DIR` two levels down.
pub fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("a crate under host/")
        .to_path_buf()
}

/// Builds `packages` of `functions/` in release mode for wasm32-wasip2; returns the directory
/// holding the `.wasm` files. Tells cargo to rerun when the guests, the SDK or the WIT change.
pub fn build(packages: &[&str]) -> PathBuf {
    let root = repo_root();
    for watched in ["functions", "guest-sdk", "wit"] {
        rerun_if_changed_tree(&root.join(watched));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-guests");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root.join("functions/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for p in packages {
        cmd.args(["-p", p]);
    }
    // The outer build's flags and jobserver are for the host target, not the guests.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if let Some(k) = key.to_str()
            && (k.starts_with("CARGO_FEATURE_") || k.starts_with("CARGO_CFG_"))
        {
            cmd.env_remove(k);
        }
    }
    let status = cmd.status().expect("failed to run cargo for the guests");
    if !status.success() {
        panic!(
            "building the guests in functions/ failed; is the target installed? \
             run `rustup target add wasm32-wasip2`"
        );
    }
    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    for p in packages {
        let path = wasm_dir.join(format!("{p}.wasm"));
        assert!(
            path.exists(),
            "guest {p} was not built at {}",
            path.display()
        );
    }
    wasm_dir
}

/// Writes a generated source file into `OUT_DIR`.
pub fn write_out(name: &str, contents: &str) {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(name);
    std::fs::write(out, contents).unwrap();
}

fn rerun_if_changed_tree(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
