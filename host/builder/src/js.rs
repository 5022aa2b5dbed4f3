//! Building a CloudBase-style Node.js function folder (`package.json`, `index.js` with
//! `exports.main = async (event, context) => …`) into a component of the `cloud-function`
//! world, for `cloudfn build`, `cloudfn deploy FOLDER` and tests:
//!
//! 1. the pinned toolchain (`host/builder/js/package-lock.json`: esbuild, componentize-js) is
//!    installed once into the user's cache dir, keyed by the lock file's hash;
//! 2. the function's production dependencies are installed into `.cloudfn/deps`, without the
//!    SDKs cloudfn replaces (`wx-server-sdk`, `@cloudbase/node-sdk`);
//! 3. esbuild bundles a generated adapter (the world's `handler` around `main`) with the
//!    function, the SDKs swapped for cloudfn's shims (`host/builder/js/*.cjs`), Node built-ins
//!    refused with a clear error;
//! 4. componentize-js (StarlingMonkey) makes the component, running the module's top level
//!    once (so a module without `main` fails here);
//! 5. the component's imports are checked: only cloudfn's interfaces and WASI 0.2.
//!
//! The component is not compiled here (that takes seconds for a 12 MB engine); deploy compiles
//! it once per content hash and engine configuration.

use crate::Built;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The SDKs a JavaScript function's `require` gets cloudfn's shim for, never installed.
pub const SHIMMED: &[(&str, &str)] = &[
    ("wx-server-sdk", "wx-server-sdk.cjs"),
    ("@cloudbase/node-sdk", "node-sdk.cjs"),
];

/// The toolchain's manifest and lock file: what `npm ci` installs into the cache.
const TOOLCHAIN_PACKAGE: &str = include_str!("../js/package.json");
const TOOLCHAIN_LOCK: &str = include_str!("../js/package-lock.json");
/// What every function's bundle holds beside its own code.
const SUPPORT: &[(&str, &str)] = &[
    ("runtime.mjs", include_str!("../js/runtime.mjs")),
    ("wx-server-sdk.cjs", include_str!("../js/wx-server-sdk.cjs")),
    ("node-sdk.cjs", include_str!("../js/node-sdk.cjs")),
];
const ADAPTER: &str = include_str!("../js/adapter.mjs");
/// The world the component targets: the WIT package's files joined into one (build.rs).
const WIT: &str = include_str!(concat!(env!("OUT_DIR"), "/cloudfn.wit"));

/// Node.js's own modules: a bundle cannot resolve them and a component cannot run them.
const NODE_BUILTINS: &[&str] = &[
    "assert",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "console",
    "crypto",
    "dgram",
    "diagnostics_channel",
    "dns",
    "events",
    "fs",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "perf_hooks",
    "process",
    "querystring",
    "readline",
    "repl",
    "stream",
    "string_decoder",
    "timers",
    "tls",
    "tty",
    "url",
    "util",
    "v8",
    "vm",
    "worker_threads",
    "zlib",
];

/// Whether `path` is a JavaScript function folder (a `package.json`, no `Cargo.toml`).
pub fn is_js_function(path: &Path) -> bool {
    path.is_dir() && path.join("package.json").exists() && !path.join("Cargo.toml").exists()
}

/// How long each step of a build took, for `cloudfn build` to report.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Installing the function's production dependencies (zero when it has none).
    pub deps_ms: u128,
    /// esbuild.
    pub bundle_ms: u128,
    /// componentize-js.
    pub componentize_ms: u128,
}

/// Builds the function folder `folder` into `out` (default `FOLDER/.cloudfn/NAME.wasm`).
pub fn build_js(folder: &Path, out: Option<&Path>) -> anyhow::Result<(Built, Timings)> {
    let folder = folder
        .canonicalize()
        .with_context(|| format!("reading {}", folder.display()))?;
    let manifest_path = folder.join("package.json");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", manifest_path.display()))?;
    let name = manifest["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        .or_else(|| folder.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "function".into());
    let entry_name = manifest["main"].as_str().unwrap_or("index.js").to_string();
    let entry = folder.join(&entry_name);
    if !entry.is_file() {
        bail!(
            "{}: no such file; a CloudBase function folder has index.js (or the file \
             package.json's \"main\" names) exporting `main`",
            entry.display()
        );
    }
    let work = folder.join(".cloudfn");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // One build of a folder at a time, across processes (parallel test processes, a `dev`
    // beside a `deploy`): they share its work dir; the second then finds the first's component.
    let lock_path = work.join("build.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let tools = toolchain()?;
    let mut timings = Timings::default();

    let started = Instant::now();
    let deps = install_deps(&folder, &manifest, &work)?;
    timings.deps_ms = started.elapsed().as_millis();

    let support = work.join("support");
    std::fs::create_dir_all(&support)?;
    for (file, text) in SUPPORT {
        write_if_changed(&support.join(file), text)?;
    }
    let adapter = work.join("adapter.mjs");
    let quote = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("a string");
    write_if_changed(
        &adapter,
        &ADAPTER
            .replace("'__RUNTIME__'", &quote(&support.join("runtime.mjs")))
            .replace("'__ENTRY__'", &quote(&entry))
            .replace("__ENTRY_NAME__", &entry_name.replace('\'', "\\'")),
    )?;
    let bundle = work.join("bundle.js");
    let started = Instant::now();
    let mut esbuild = node_tool(&tools, "esbuild");
    esbuild
        .current_dir(&folder)
        .arg(&adapter)
        .args([
            "--bundle",
            "--format=esm",
            "--platform=neutral",
            "--main-fields=main,module",
            "--log-level=error",
            "--color=false",
            "--external:cloudfn:*",
        ])
        .arg(format!("--outfile={}", bundle.display()));
    for (sdk, shim) in SHIMMED {
        esbuild.arg(format!("--alias:{sdk}={}", support.join(shim).display()));
    }
    if let Some(deps) = &deps {
        // esbuild's CLI resolves bare imports from NODE_PATH after the folder's own node_modules.
        esbuild.env("NODE_PATH", deps);
    }
    let out_esbuild = run(&mut esbuild, "esbuild")?;
    if !out_esbuild.status.success() {
        bail!(
            "bundling {} failed:\n{}",
            folder.display(),
            explain_esbuild(&String::from_utf8_lossy(&out_esbuild.stderr))
        );
    }
    timings.bundle_ms = started.elapsed().as_millis();

    let wit = work.join("cloudfn.wit");
    write_if_changed(&wit, WIT)?;
    // Absolute: componentize-js runs in the work dir, not in the caller's.
    let wasm = match out {
        Some(out) => {
            std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?
        }
        None => work.join(format!("{name}.wasm")),
    };
    // The same bundle made into a component before: that component (`cloudfn deploy FOLDER`
    // right after `cloudfn build`, or a `dev` save that changed no code). The stamp is the
    // bundle's hash, then the component's path.
    let stamp_path = work.join("component.stamp");
    let hash = cloudfn_store::secrets::sha256_hex(
        format!(
            "{}{WIT}{}",
            std::fs::read_to_string(&bundle)?,
            tools.display()
        )
        .as_bytes(),
    );
    let stamp = format!("{hash}\n{}", wasm.display());
    let previous = std::fs::read_to_string(&stamp_path)
        .ok()
        .and_then(|s| s.strip_prefix(&format!("{hash}\n")).map(PathBuf::from))
        .filter(|p| p.is_file());
    if let Some(dir) = wasm.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match previous {
        Some(previous) if previous == wasm => {}
        Some(previous) => {
            std::fs::copy(&previous, &wasm)
                .with_context(|| format!("copying {} to {}", previous.display(), wasm.display()))?;
        }
        None => {
            let _ = std::fs::remove_file(&stamp_path);
            let started = Instant::now();
            let mut componentize = node_tool(&tools, "componentize-js");
            componentize
                .current_dir(&work)
                .arg(&bundle)
                .arg("--wit")
                .arg(&wit)
                .args(["-n", "cloud-function", "-o"])
                .arg(&wasm);
            let done = run(&mut componentize, "componentize-js")?;
            if !done.status.success() {
                bail!(
                    "making a component of {} failed:\n{}",
                    folder.display(),
                    explain_componentize(&String::from_utf8_lossy(&done.stderr), &entry_name)
                );
            }
            timings.componentize_ms = started.elapsed().as_millis();
        }
    }
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    check_imports(&bytes).with_context(|| format!("checking {}", wasm.display()))?;
    std::fs::write(&stamp_path, &stamp)?;
    Ok((
        Built {
            wasm,
            size: bytes.len() as u64,
            package: name,
        },
        timings,
    ))
}

/// Checks that a component imports only cloudfn's interfaces and WASI 0.2, and exports the
/// cloud-function world's handler; without compiling it.
pub fn check_imports(bytes: &[u8]) -> anyhow::Result<()> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("not a valid WebAssembly component")? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let name = import?.name.name;
                    if !import_allowed(name) {
                        bail!(
                            "the component imports `{name}`, which cloudfn does not provide; a \
                             cloud function may import only cloudfn:function/* and wasi:*@0.2.x"
                        );
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if !exports
        .iter()
        .any(|e| e.starts_with("cloudfn:function/handler@0.1"))
    {
        bail!(
            "the component does not export cloudfn:function/handler (it exports: {})",
            exports.join(", ")
        );
    }
    Ok(())
}

fn import_allowed(name: &str) -> bool {
    let Some((package, version)) = name.split_once('@') else {
        return false;
    };
    (package.starts_with("cloudfn:function/") && version.starts_with("0.1."))
        || (package.starts_with("wasi:") && version.starts_with("0.2."))
}

/// Installs the function's production dependencies, less the shimmed SDKs, into
/// `work/deps`; returns its `node_modules`, or `None` when there is nothing to install.
fn install_deps(
    folder: &Path,
    manifest: &serde_json::Value,
    work: &Path,
) -> anyhow::Result<Option<PathBuf>> {
    let mut deps = manifest["dependencies"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    deps.retain(|name, _| !SHIMMED.iter().any(|(sdk, _)| sdk == name));
    if deps.is_empty() {
        return Ok(None);
    }
    // Local packages (`file:../lib`) are relative to the function's folder, not to `deps/`.
    for spec in deps.values_mut() {
        if let Some(path) = spec.as_str().and_then(|s| s.strip_prefix("file:"))
            && Path::new(path).is_relative()
        {
            *spec = format!("file:{}", folder.join(path).display()).into();
        }
    }
    let dir = work.join("deps");
    std::fs::create_dir_all(&dir)?;
    let package = serde_json::json!({
        "name": "cloudfn-function-deps",
        "private": true,
        "dependencies": deps,
    });
    let package = serde_json::to_string_pretty(&package)?;
    let node_modules = dir.join("node_modules");
    // Unchanged dependencies are not installed again.
    let stamp = dir.join(".installed");
    if node_modules.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&package) {
        return Ok(Some(node_modules));
    }
    std::fs::write(dir.join("package.json"), &package)?;
    if let Ok(lock) = std::fs::read(folder.join("package-lock.json")) {
        std::fs::write(dir.join("package-lock.json"), lock)?;
    }
    eprintln!(
        "installing the production dependencies of {} ({})",
        folder.display(),
        deps.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let mut npm = Command::new("npm");
    npm.current_dir(&dir).args([
        "install",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]);
    let out = run(&mut npm, "npm")?;
    if !out.status.success() {
        bail!(
            "npm install of {}'s dependencies failed:\n{}",
            folder.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(&stamp, &package)?;
    Ok(Some(node_modules))
}

/// The toolchain's directory (with `node_modules`), installed on first use.
pub fn toolchain() -> anyhow::Result<PathBuf> {
    let hash = cloudfn_store::secrets::sha256_hex(
        format!("{TOOLCHAIN_PACKAGE}{TOOLCHAIN_LOCK}").as_bytes(),
    );
    let cache = crate::user_cache_dir()
        .context("no cache dir for the JavaScript toolchain: set HOME or CLOUDFN_CACHE_DIR")?;
    let dir = cache.join(format!("js-toolchain-{}", &hash[..12]));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    check_node()?;
    // Installed aside and renamed into place, so a build never sees half a toolchain and two
    // builds at once both end with a whole one.
    let tmp = cache.join(format!(
        ".js-toolchain-{}.{}",
        &hash[..12],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::fs::write(tmp.join("package.json"), TOOLCHAIN_PACKAGE)?;
    std::fs::write(tmp.join("package-lock.json"), TOOLCHAIN_LOCK)?;
    eprintln!(
        "installing cloudfn's JavaScript toolchain (esbuild, componentize-js; once) into {}",
        dir.display()
    );
    let mut npm = Command::new("npm");
    npm.current_dir(&tmp)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    let out = run(&mut npm, "npm")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        bail!(
            "installing the JavaScript toolchain failed (npm ci):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(tmp.join(".complete"), "")?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another build installed it first.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").exists() {
            bail!("could not move the toolchain into {}", dir.display());
        }
    }
    Ok(dir)
}

/// Node.js 18 or newer, and npm, are what the toolchain runs on.
fn check_node() -> anyhow::Result<()> {
    const NEED: &str = "building a JavaScript function needs Node.js 18 or newer and npm \
                        (e.g. `apt-get install nodejs npm`)";
    let out = Command::new("node")
        .arg("--version")
        .output()
        .with_context(|| format!("running node: {NEED}"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        bail!("node {} is too old: {NEED}", version.trim());
    }
    Command::new("npm")
        .arg("--version")
        .output()
        .with_context(|| format!("running npm: {NEED}"))?;
    Ok(())
}

/// A tool of the toolchain, run with node.
fn node_tool(tools: &Path, name: &str) -> Command {
    let mut cmd = Command::new(tools.join("node_modules/.bin").join(name));
    // Flags for the node running a test around us are not for the toolchain.
    cmd.env_remove("NODE_OPTIONS");
    cmd
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {what}"))
}

fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// esbuild's errors, with a Node built-in named as what it is (esbuild's own hint, to bundle
/// for Node, does not apply).
fn explain_esbuild(stderr: &str) -> String {
    let mut out = String::new();
    let mut builtins = Vec::new();
    for line in stderr.lines() {
        if line.contains("Are you trying to bundle for node?") {
            continue;
        }
        if let Some(rest) = line.split("Could not resolve \"").nth(1)
            && let Some(module) = rest.split('"').next()
        {
            let bare = module.trim_start_matches("node:");
            let root = bare.split('/').next().unwrap_or(bare);
            if module.starts_with("node:") || NODE_BUILTINS.contains(&root) {
                builtins.push(module.to_string());
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    for module in builtins {
        out.push_str(&format!(
            "  \"{module}\" is a Node.js built-in module: a cloudfn function runs as a \
             WebAssembly component, without Node.js, and cannot use it. Use the cloud SDK \
             (wx-server-sdk) for what the host provides, or a pure-JavaScript package.\n"
        ));
    }
    out.trim_end().to_string()
}

/// componentize-js's failure, cut to the error from the module's top level when that is
/// what failed (e.g. no `main`), else as it printed it.
fn explain_componentize(stderr: &str, entry: &str) -> String {
    if let Some(at) = stderr.find("Exception while evaluating top-level script") {
        let rest = &stderr[at..];
        let cause: Vec<&str> = rest
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("Additionally,") && !l.trim().is_empty())
            .collect();
        // The location is in the generated bundle, which the author never saw.
        let cause = cause.join("\n");
        let cause = match cause.split_once(' ') {
            Some((at, rest)) if at.starts_with("bundle.js:") => rest.to_string(),
            _ => cause,
        };
        return format!("loading {entry} threw (its top level runs once at build time): {cause}");
    }
    stderr.trim().to_string()
}
