//! cloudfn-builder: building functions into components, for the `cloudfn` binary (`build`,
//! `deploy FOLDER`, `dev`, fixtures naming a `crate`) and for `cloudfn-testing`
//! (`TestHost::deploy_crate`), so the shipped binary does not depend on the testing crate.
//!
//! This module builds a Rust function crate into a `wasm32-wasip2` component: the target added when missing,
//! `cargo build --release` (its progress and errors shown as cargo prints them, or kept and
//! shown only on failure), and the result checked against the `cloud-function` world.

use anyhow::{Context, bail};
use cloudfn_model::FunctionKind;

pub mod js;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target function components are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Where cargo puts its output (default: the crate's own target dir).
    pub target_dir: Option<PathBuf>,
    /// `target_dir` is shared by crates of several workspaces built at once (their common
    /// dependencies compile once for all): each product is copied out, in its build's turn,
    /// to `cloudfn-built/PACKAGE-HASH.wasm`, one file per crate, where another crate of
    /// the same name cannot replace it before it is read.
    pub shared: bool,
    /// Keep cargo's output and show it only if the build fails (for tests).
    pub quiet: bool,
    /// Leave the check against the function worlds to the deploy: a test host checks there,
    /// against its own runtime (which may link a capability the standard list lacks), and
    /// the component is not compiled a second time for the check.
    pub skip_check: bool,
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// The crate's package name.
    pub package: String,
}

/// Builds the function crate at `path` (its directory or its `Cargo.toml`) and checks the
/// component fits the `cloud-function` world.
pub fn build_crate(path: &Path, options: &BuildOptions) -> anyhow::Result<Built> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_path_buf()
    };
    if !manifest.exists() {
        bail!(
            "{} is not a function folder: a Rust function has a Cargo.toml, a JavaScript one a \
             package.json (and its index.js); create one with `cloudfn new NAME`",
            path.display()
        );
    }
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("reading {}", manifest.display()))?;
    let meta = package_of(&manifest)?;
    let package = meta.package;
    ensure_target()?;
    let target_dir = options.target_dir.clone().unwrap_or(meta.target_dir);
    // Builds into one target dir take turns (cargo would serialise them anyway): a crate's
    // name is claimed, built and its product read within one turn.
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("creating {}", target_dir.display()))?;
    let lock_path = target_dir.join(".cloudfn-build.lock");
    let turn = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    turn.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let file_name = format!("{}.wasm", package.replace('-', "_"));
    let out_dir = target_dir.join(TARGET).join("release");
    claim_name(&out_dir, &file_name, &manifest)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "-p", &package])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build (a `cargo test` around us) are not for the guest.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let ok = if options.quiet {
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("running cargo")?;
        if !out.status.success() {
            bail!(
                "cargo build of {} failed:\n{}{}",
                manifest.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        true
    } else {
        cmd.status().context("running cargo")?.success()
    };
    if !ok {
        bail!("cargo build of {} failed (see above)", manifest.display());
    }
    let wasm = out_dir.join(&file_name);
    let size = std::fs::metadata(&wasm)
        .with_context(|| {
            format!(
                "cargo built no {}: is the crate's lib `crate-type = [\"cdylib\"]`?",
                wasm.display()
            )
        })?
        .len();
    let wasm = if options.shared {
        let hash = &cloudfn_store::secrets::sha256_hex(manifest.to_string_lossy().as_bytes())[..12];
        let out = target_dir.join("cloudfn-built");
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let copy = out.join(format!("{}-{hash}.wasm", package.replace('-', "_")));
        // Through a temporary name: a test process may be reading the previous copy.
        let partial = copy.with_extension("wasm.partial");
        std::fs::copy(&wasm, &partial)
            .and_then(|_| std::fs::rename(&partial, &copy))
            .with_context(|| format!("copying {} to {}", wasm.display(), copy.display()))?;
        copy
    } else {
        wasm
    };
    if !options.skip_check {
        check_component(&std::fs::read(&wasm)?).with_context(|| {
            format!(
                "checking {} against the cloud-function world (or wasi:http/proxy, for an HTTP function)",
                wasm.display()
            )
        })?;
    }
    drop(turn);
    Ok(Built {
        wasm,
        size,
        package,
    })
}

/// Cargo names a cdylib by its bare crate name, in `deps/` too: crates of two workspaces with
/// one name, built into one target dir (a `CARGO_TARGET_DIR` several crates share), write one
/// file, and cargo then takes the other crate's product for its own, up to date. So the last
/// crate to build each name into `out_dir` is noted beside it, and another crate's turn removes
/// the product first, which makes cargo build it again (its dependencies stay built).
fn claim_name(out_dir: &Path, file_name: &str, manifest: &Path) -> anyhow::Result<()> {
    let owners = out_dir.join(".cloudfn-owners");
    std::fs::create_dir_all(&owners).with_context(|| format!("creating {}", owners.display()))?;
    let owner_file = owners.join(file_name);
    let ours = manifest.to_string_lossy();
    if std::fs::read_to_string(&owner_file).ok().as_deref() == Some(&*ours) {
        return Ok(());
    }
    for product in [
        out_dir.join(file_name),
        out_dir.join("deps").join(file_name),
    ] {
        match std::fs::remove_file(&product) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", product.display()));
            }
            _ => {}
        }
    }
    std::fs::write(&owner_file, ours.as_bytes())
        .with_context(|| format!("writing {}", owner_file.display()))
}

/// Checks that `bytes` is a component of the `cloud-function` world or of the
/// `wasi:http/proxy` world (what a deploy checks); says which.
pub fn check_component(bytes: &[u8]) -> anyhow::Result<FunctionKind> {
    let runtime =
        cloudfn_runtime::Runtime::with_config(None, &cloudfn_runtime::EngineConfig::one_shot())?;
    runtime
        .kind_of(bytes)
        .map_err(|e| anyhow::anyhow!("{}", e.0))
}

/// The package of `manifest` and the target dir cargo would use for it.
/// What `cargo metadata` says of a crate.
struct Metadata {
    package: String,
    target_dir: PathBuf,
}

fn package_of(manifest: &Path) -> anyhow::Result<Metadata> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed for {}", manifest.display());
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .and_then(|p| p["name"].as_str())
        .with_context(|| {
            format!(
                "{} is a workspace manifest, not a function crate; name the crate's own directory",
                manifest.display()
            )
        })?
        .to_string();
    let dir = |key: &str| {
        meta[key]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("cargo metadata gave no {key}"))
    };
    Ok(Metadata {
        package,
        target_dir: dir("target_directory")?,
    })
}

/// Adds the `wasm32-wasip2` target through rustup when the toolchain lacks it.
pub fn ensure_target() -> anyhow::Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc (is Rust installed?)")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return Ok(());
    }
    eprintln!("adding the {TARGET} target (rustup target add {TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .context("running rustup; install the target with `rustup target add wasm32-wasip2`")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed");
    }
    Ok(())
}

/// The target dir of the `cargo` build (or test) running this process, found from the
/// executable's path (cargo marks its target dirs with `CACHEDIR.TAG`).
pub fn enclosing_target_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
}

/// The user's cache dir for cloudfn: `$CLOUDFN_CACHE_DIR`, else `$XDG_CACHE_HOME/cloudfn`, else
/// `~/.cache/cloudfn` (compiled artifacts of file runs, the JavaScript toolchain).
pub fn user_cache_dir() -> Option<PathBuf> {
    let set = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("CLOUDFN_CACHE_DIR").or_else(|| {
        set("XDG_CACHE_HOME")
            .or_else(|| set("HOME").map(|h| h.join(".cache")))
            .map(|c| c.join("cloudfn"))
    })
}

/// Builds what `path` is (a function crate, or a JavaScript function folder) to deploy or run
/// it: what fixtures naming a `crate`, `cloudfn deploy DIR`, `cloudfn invoke DIR` and
/// `cloudfn dev` use. Each then deploys or runs the component, which checks it against the
/// function worlds with the runtime that runs it (and compiles it once, into its artifact
/// cache): a crate is not compiled a second time here for the check `cloudfn build` makes.
pub fn build_function(path: &Path) -> anyhow::Result<Built> {
    if crate::js::is_js_function(path) {
        return Ok(crate::js::build_js(path, None)?.0);
    }
    let options = BuildOptions {
        skip_check: true,
        ..BuildOptions::default()
    };
    build_crate(path, &options)
}
