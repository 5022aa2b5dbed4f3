//! The one test world every integration test builds on: [`World`] (a builder of apps, envs,
//! deploys, shares and rules on a fresh data dir, optionally served on 127.0.0.1), the real
//! guests from `cloudfn-test-guests`, one shared wasmtime runtime per test process (so each
//! guest compiles once), one way to run the `cloudfn` binary ([`Bin`]), and result helpers.
#![allow(dead_code)]

pub mod http;

use cloudfn_invoke::fixture::{self, Fixture};
use cloudfn_invoke::{Call, Control, Host, Identity, Invocation, InvokeRequest, Options};
use cloudfn_runtime::Runtime;
use cloudfn_store::{Activation, ActivationQuery, AppCredentials, FunctionConfig, SharedFunctions};
pub use cloudfn_test_guests as guests;
pub use cloudfn_test_guests::wasm;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

/// The runtime shared by every host a test process builds: a component compiles once per
/// process, and its precompiled artifact (by content hash, in `target/cwasm-cache`) serves every
/// later test process and run, as a host's artifact dir serves its restarts.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            Arc::new(Runtime::new(Some(artifact_cache())).expect("building the test runtime"))
        })
        .clone()
}

/// `target/cwasm-cache`: precompiled artifacts by content hash and engine, shared by every test
/// process (each test is a process of its own under cargo-nextest) and kept across runs.
pub fn artifact_cache() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("cwasm-cache")
}

/// The JavaScript function folder `functions/FOLDER` (e.g. `js/users_add`), built with
/// `cloudfn build`'s code once per test process; the component's path. Builds run one at a time
/// (componentize-js takes most of a core each).
pub fn js_guest(folder: &str) -> String {
    static BUILT: std::sync::Mutex<Option<HashMap<String, String>>> = std::sync::Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(folder) {
        return path.clone();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../functions")
        .join(folder);
    let (out, _) = cloudfn_testing::js::build_js(&dir, None)
        .unwrap_or_else(|e| panic!("building functions/{folder}: {e:#}"));
    let path = out.wasm.display().to_string();
    built.insert(folder.to_string(), path.clone());
    path
}

/// The control plane of a host a test opened itself (`host.control().deploy(...)`).
pub trait Manage {
    fn control(&self) -> Control;
}

impl Manage for Arc<Host> {
    fn control(&self) -> Control {
        Control::new(self.clone())
    }
}

/// What a test world is made of, declared before it is built: a [`Fixture`] (the one
/// declarative builder of apps, envs, functions, shares and rules, which `cloudfn_testing`
/// and `cloudfn invoke --fixture` load too), applied through the host's control plane.
#[derive(Default)]
pub struct World {
    options: Options,
    pub(crate) fixture: Fixture,
    /// Apps whose sharing is turned on (apps `serve` adds come first, so resolved at build).
    sharing: Vec<String>,
    runtime: Option<Arc<Runtime>>,
}

/// A built test world: its data dir, host, and the credentials of its apps.
pub struct Built {
    pub dir: tempfile::TempDir,
    pub host: Arc<Host>,
    pub creds: HashMap<String, AppCredentials>,
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    /// Host options.
    pub fn options(mut self, options: Options) -> World {
        self.options = options;
        self
    }

    /// Runs the world on `runtime` instead of the shared one (for engine settings of its own).
    pub fn runtime(mut self, runtime: Arc<Runtime>) -> World {
        self.runtime = Some(runtime);
        self
    }

    /// An app with credentials, of company `subject`.
    pub fn app(mut self, appid: &str, subject: &str) -> World {
        self.fixture.apps.push(fixture::App {
            appid: appid.into(),
            subject: Some(subject.into()),
            sharing: false,
        });
        self
    }

    /// An env owned by `owner`.
    pub fn env(mut self, env: &str, owner: &str) -> World {
        self.fixture.envs.push(fixture::Env {
            name: env.into(),
            owner: owner.into(),
            rules: None,
            rules_file: None,
        });
        self
    }

    /// Guest `path` deployed as `env/name`.
    pub fn deploy(self, env: &str, name: &str, path: &str) -> World {
        self.deploy_with(env, name, path, FunctionConfig::default())
    }

    /// Guest `path` deployed as `env/name` with `config`.
    pub fn deploy_with(
        mut self,
        env: &str,
        name: &str,
        path: &str,
        config: FunctionConfig,
    ) -> World {
        self.fixture
            .functions
            .push(fixture::Function::wasm(env, name, path, &config));
        self
    }

    /// Turns on sharing for `appid`.
    pub fn sharing(mut self, appid: &str) -> World {
        self.sharing.push(appid.into());
        self
    }

    /// Shares `env` with `to` for `functions` (`*` or `a,b`).
    pub fn share(mut self, env: &str, to: &str, functions: &str) -> World {
        SharedFunctions::parse(functions).unwrap();
        self.fixture.shares.push(fixture::Share {
            env: env.into(),
            to: to.into(),
            functions: functions.into(),
            perms: vec!["functions:invoke".into()],
        });
        self
    }

    /// Sets `env`'s rules (an env of this world).
    pub fn rules(mut self, env: &str, json: &str) -> World {
        let e = self.fixture.envs.iter_mut().find(|e| e.name == env);
        e.unwrap_or_else(|| panic!("rules for env {env}, which this world does not create"))
            .rules = Some(json.into());
        self
    }

    /// Builds it on a fresh data dir.
    pub async fn build(mut self) -> Built {
        let dir = tempfile::tempdir().unwrap();
        let runtime = self.runtime.unwrap_or_else(runtime);
        let host = Host::open_shared(dir.path(), self.options, runtime)
            .await
            .unwrap();
        let control = Control::new(host.clone());
        for appid in &self.sharing {
            let app = self.fixture.apps.iter_mut().find(|a| a.appid == *appid);
            app.unwrap_or_else(|| {
                panic!("sharing for app {appid}, which this world does not create")
            })
            .sharing = true;
        }
        let created = self
            .fixture
            .apply(&control, &|p| {
                anyhow::bail!("no crate to build here: {}", p.display())
            })
            .await
            .unwrap_or_else(|e| panic!("building the test world: {e:#}"));
        let creds = created.into_iter().map(|c| (c.appid.clone(), c)).collect();
        Built { dir, host, creds }
    }
}

impl Built {
    /// The credentials of app `appid`.
    pub fn creds(&self, appid: &str) -> &AppCredentials {
        &self.creds[appid]
    }

    /// Deploys guest `path` as `prod/name` with `config`; returns the version.
    pub async fn deploy(&self, name: &str, path: &str, config: FunctionConfig) -> u32 {
        self.host
            .control()
            .deploy("prod", name, &wasm(path), config)
            .await
            .unwrap_or_else(|e| panic!("deploying {name}: {e}"))
            .version
    }

    /// Calls `prod/name` with `event` from SOURCE wx_devtools and no identity.
    pub async fn call(&self, name: &str, event: &str) -> Invocation {
        call(&self.host, name, event).await
    }
}

/// A world with env `prod` (owner `wxA`) and `echo` deployed.
pub async fn service() -> Built {
    World::new()
        .env("prod", "wxA")
        .deploy("prod", "echo", guests::ECHO)
        .build()
        .await
}

/// The activation records of `env` (of function `name` only, when given), oldest first,
/// including those still queued.
pub async fn records(host: &Arc<Host>, env: &str, name: Option<&str>) -> Vec<Activation> {
    host.store()
        .activations(&ActivationQuery {
            env: env.into(),
            name: name.map(str::to_string),
            after: None,
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Calls `prod/name` on `host` with `event` from SOURCE wx_devtools and no identity.
pub async fn call(host: &Arc<Host>, name: &str, event: &str) -> Invocation {
    host.call(Call::trusted(
        InvokeRequest::new("prod", name, event, "wx_devtools"),
        Identity::default(),
    ))
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

/// The `cloudfn` binary of this build, on a data dir.
pub struct Bin<'a> {
    data_dir: &'a Path,
}

impl<'a> Bin<'a> {
    pub fn new(data_dir: &'a Path) -> Bin<'a> {
        Bin { data_dir }
    }

    /// The command, ready for more arguments or environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudfn"));
        cmd.arg("--data-dir")
            .arg(self.data_dir)
            .args(args)
            .env_remove("CLOUDFN_CRASH_AT")
            .env_remove("CLOUDFN_SERVER")
            .env_remove("CLOUDFN_ADMIN_TOKEN");
        cmd
    }

    /// `cloudfn serve` on ephemeral loopback ports (both listeners), with `more` arguments.
    pub fn serve(&self, more: &[&str]) -> Command {
        let mut cmd = self.command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        cmd.args(more);
        cmd
    }

    /// Runs it to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running cloudfn")
    }
}

/// The public and admin base URLs (`http://127.0.0.1:PORT`) a spawned `cloudfn serve` (stdout
/// piped) prints first.
pub fn served_urls(child: &mut std::process::Child) -> (String, String) {
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = |prefix: &str| {
        let mut l = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut l).unwrap();
        let addr = l
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}"))
            .trim_end_matches('/');
        format!("http://{addr}")
    };
    let public = line("Serving HTTP on http://");
    let admin = line("Admin API on http://");
    // The pipe stays open (and drained) for whatever the server prints later.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (public, admin)
}

/// The stdout of a run that must succeed.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cloudfn failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The stdout and stderr of a run that must fail.
pub fn failed(out: &Output) -> (String, String) {
    assert!(!out.status.success(), "expected failure: {out:?}");
    (
        String::from_utf8(out.stdout.clone()).unwrap(),
        String::from_utf8(out.stderr.clone()).unwrap(),
    )
}

/// Runs an `examples/` script as the README prints it, with this build's binary and guests and
/// free ports; returns its stdout, or fails the test with its output. The script must stop
/// everything it started: no process may still name its temp dir afterwards.
pub fn run_example(script: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root.join("examples").join(script))
        .env("CLOUDFN", env!("CARGO_BIN_EXE_cloudfn"))
        .env("WASM", guests::WASM_DIR)
        .env("PORT", "0")
        .env("ADMIN_PORT", "0")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = processes_naming(tmp.path());
    assert!(left.is_empty(), "{script} left processes running: {left:?}");
    stdout
}

/// Command lines of running processes that mention `path`.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Polls `check` every 10 ms until it holds; returns how long that took, or fails the test,
/// naming `what`, once `limit` has passed. The tests wait on something observable (a record, a
/// counter, an answer), never for a fixed time: a loaded machine only makes a wait longer.
pub async fn within<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    mut check: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Polls `check` every `every` until it gives a value, and returns that; fails the test, naming
/// `what`, once `limit` has passed. For checks that cost something (a guest call, a request
/// under a rate limit), spaced as the caller needs.
pub async fn poll_within<T, F, Fut>(
    limit: std::time::Duration,
    every: std::time::Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(every).await;
    }
}

/// [`within`] for a test without an async runtime.
pub fn within_blocking(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Lets `span` of wall-clock time pass. Not a wait for an event: only for a test in which the
/// passing of time is itself what is tested (e.g. a session refreshed later expires later).
pub async fn let_time_pass(span: std::time::Duration) {
    tokio::time::sleep(span).await;
}
