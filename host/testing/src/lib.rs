//! cloudfn-testing: test cloud functions from your own `cargo test`, with no server, no cloud
//! account and no secrets.
//!
//! [`TestHost`] is cloudfn's host in-process on a temporary data dir: create apps and envs,
//! deploy built components or function crates (built on demand), set shares, rules and
//! variables, or load all of it from a [`fixture`] file; then call functions as any caller: a
//! user of the env's own app, a user of another app (through the share, `cloudbase_auth` and
//! the env's rules, exactly as the server decides), or an HTTP caller with an access token
//! through a real gateway on 127.0.0.1. Each call gives its result or the protocol error as a
//! typed value, its logs, and its activation record.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! use cloudfn_testing::TestHost;
//! use serde_json::json;
//!
//! let host = TestHost::new().await?;
//! host.app("wxA", "Acme").await?;
//! host.env("prod", "wxA").await?;
//! host.deploy_crate("prod", "hello", env!("CARGO_MANIFEST_DIR")).await?;
//! let out = host.call("prod", "hello").user("wxA", "o-user").event(json!({"name": "Ada"})).await;
//! assert_eq!(out.ok()["greeting"], "hello, Ada");
//! # Ok(()) }
//! ```
//!
//! [`build`] is what `cloudfn build` runs; [`fixture`] is what `cloudfn serve --fixture` loads.

// Building functions lives in cloudfn-builder and fixtures in cloudfn-invoke (the `cloudfn`
// binary uses both without this crate); their paths here stay as function authors know them.
pub use cloudfn_builder as build;
pub use cloudfn_builder::js;
pub use cloudfn_invoke::fixture;

/// The example functions of `functions/`, built, for tests that need a `cloudbase_auth` or a
/// function to call.
pub mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

use anyhow::Context;
use cloudfn_invoke::{Call, Control, Host, Identity, InvokeRequest, Options};
use cloudfn_store::SharedFunctions;
use cloudfn_store::{Activation, ActivationQuery, AppCredentials, FunctionConfig, LogLine};
pub use fixture::Fixture;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

pub use cloudfn_invoke;
pub use cloudfn_store::FunctionConfig as Config;

/// cloudfn's host, in-process, on a temporary data dir removed on drop.
pub struct TestHost {
    /// The host's control plane, and through it the host.
    control: Control,
    creds: Mutex<HashMap<String, AppCredentials>>,
    gateway: tokio::sync::OnceCell<Gateway>,
    // Dropped last: the host's files live here.
    dir: tempfile::TempDir,
}

/// A runtime for one [`TestHost`] (its CPU turns and memory budget its own, as a server's),
/// its precompiled artifacts in the enclosing cargo target dir (`cwasm-cache`, where the host's
/// own tests keep theirs) or else the user's cache dir, `dir` if neither: a component (the
/// examples' `cloudbase_auth` and `echo` above all) compiles once per machine, not per test.
fn runtime(
    dir: &Path,
    capabilities: Vec<cloudfn_runtime::capabilities::Dyn>,
) -> anyhow::Result<Arc<cloudfn_runtime::Runtime>> {
    let artifacts = cloudfn_builder::enclosing_target_dir()
        .map(|d| d.join("cwasm-cache"))
        .or_else(|| cloudfn_builder::user_cache_dir().map(|d| d.join("artifacts")))
        .filter(|d| std::fs::create_dir_all(d).is_ok())
        .unwrap_or_else(|| dir.join("artifacts"));
    let runtime = cloudfn_runtime::Runtime::with_capabilities(
        Some(artifacts),
        &cloudfn_invoke::EngineConfig::one_shot(),
        capabilities,
    )?;
    Ok(Arc::new(runtime))
}

struct Gateway {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestHost {
    /// A host on a fresh temporary data dir, with nothing in it. Its functions reach public
    /// addresses only, as on a server; [`TestHost::allowing`] lets a local mock be reached.
    pub async fn new() -> anyhow::Result<TestHost> {
        TestHost::allowing(&[]).await
    }

    /// [`TestHost::new`] whose functions may also reach `ranges` (CIDR, as `serve
    /// --egress-allow`), e.g. `["127.0.0.1/32"]` for a mock server on this machine.
    pub async fn allowing(ranges: &[&str]) -> anyhow::Result<TestHost> {
        TestHost::open(ranges, cloudfn_runtime::capabilities::standard()).await
    }

    /// [`TestHost::new`] whose runtime links `capabilities` instead of the standard list: a
    /// capability crate's own tests, with `cloudfn_runtime::capabilities::standard()` and the
    /// capability under test (docs/architecture.md, "A new capability").
    pub async fn with_capabilities(
        capabilities: Vec<cloudfn_runtime::capabilities::Dyn>,
    ) -> anyhow::Result<TestHost> {
        TestHost::open(&[], capabilities).await
    }

    async fn open(
        ranges: &[&str],
        capabilities: Vec<cloudfn_runtime::capabilities::Dyn>,
    ) -> anyhow::Result<TestHost> {
        show_host_logs();
        let ranges: Vec<String> = ranges.iter().map(|r| r.to_string()).collect();
        let egress_allow = cloudfn_runtime::egress::Egress::parse_allow(&ranges)
            .map_err(|e| anyhow::anyhow!("egress range: {e}"))?;
        let dir = tempfile::Builder::new()
            .prefix("cloudfn-test-")
            .tempdir()
            .context("creating a temporary data dir")?;
        let options = Options {
            engine: cloudfn_invoke::EngineConfig::one_shot(),
            egress_allow,
            ..Options::default()
        };
        let runtime = runtime(dir.path(), capabilities)?;
        let host = Host::open_shared(dir.path(), options, runtime).await?;
        Ok(TestHost {
            control: Control::new(host),
            creds: Mutex::default(),
            gateway: tokio::sync::OnceCell::new(),
            dir,
        })
    }

    /// A host with everything `path` (a [`fixture`] file) describes; function crates it
    /// names are built first.
    pub async fn from_fixture(path: impl AsRef<Path>) -> anyhow::Result<TestHost> {
        let host = TestHost::new().await?;
        host.load(&Fixture::read(path)?).await?;
        Ok(host)
    }

    /// Applies a fixture.
    pub async fn load(&self, fixture: &Fixture) -> anyhow::Result<()> {
        let created = fixture
            .apply(&self.control, &|p| build_for_tests(p))
            .await?;
        let mut creds = self.creds.lock().unwrap();
        for c in created {
            creds.insert(c.appid.clone(), c);
        }
        Ok(())
    }

    /// The host itself, for what this API does not cover.
    pub fn host(&self) -> &Arc<Host> {
        self.control.host()
    }

    /// The host's control plane (management), for what this API does not cover.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The data dir (envs' files live under it).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates app `appid` of company `subject`, with sharing on; returns its credentials.
    pub async fn app(&self, appid: &str, subject: &str) -> anyhow::Result<AppCredentials> {
        let creds = self.control.create_app(appid, Some(subject)).await?;
        self.control.set_sharing(appid, true).await?;
        self.creds
            .lock()
            .unwrap()
            .insert(appid.to_string(), creds.clone());
        Ok(creds)
    }

    /// The credentials of an app this host created.
    pub fn credentials(&self, appid: &str) -> Option<AppCredentials> {
        self.creds.lock().unwrap().get(appid).cloned()
    }

    /// Creates env `env` owned by `owner`.
    pub async fn env(&self, env: &str, owner: &str) -> anyhow::Result<()> {
        self.control.create_env(env, owner).await?;
        Ok(())
    }

    /// Deploys the component at `wasm` as `env/name`; returns the version.
    pub async fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: impl AsRef<Path>,
    ) -> anyhow::Result<u32> {
        self.deploy_with(env, name, wasm, FunctionConfig::default())
            .await
    }

    /// Deploys the component at `wasm` as `env/name` with `config` (time and memory limits,
    /// variables); returns the version.
    pub async fn deploy_with(
        &self,
        env: &str,
        name: &str,
        wasm: impl AsRef<Path>,
        config: FunctionConfig,
    ) -> anyhow::Result<u32> {
        let wasm = wasm.as_ref();
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        self.deploy_bytes(env, name, &bytes, config).await
    }

    /// Deploys component bytes as `env/name` with `config`; returns the version.
    pub async fn deploy_bytes(
        &self,
        env: &str,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> anyhow::Result<u32> {
        let info = self
            .control
            .deploy(env, name, wasm, config)
            .await
            .with_context(|| format!("deploying {env}/{name}"))?;
        Ok(info.version)
    }

    /// Deploys the example `cloudbase_auth` into `env`: it grants the apps in
    /// `allowed_appids` (comma-separated) with claim `role` from `roles` (`wxB=partner,…`,
    /// default `member`) and denies every other app.
    pub async fn deploy_example_auth(
        &self,
        env: &str,
        allowed_appids: &str,
        roles: &str,
    ) -> anyhow::Result<u32> {
        let config = FunctionConfig::vars([("allowed_appids", allowed_appids), ("roles", roles)]);
        self.deploy_bytes(env, "cloudbase_auth", examples::CLOUDBASE_AUTH, config)
            .await
    }

    /// Builds the function crate at `path` (once per test process) and deploys it as
    /// `env/name`; returns the version.
    pub async fn deploy_crate(
        &self,
        env: &str,
        name: &str,
        path: impl AsRef<Path>,
    ) -> anyhow::Result<u32> {
        self.deploy_crate_with(env, name, path, FunctionConfig::default())
            .await
    }

    /// [`TestHost::deploy_crate`] with `config`.
    pub async fn deploy_crate_with(
        &self,
        env: &str,
        name: &str,
        path: impl AsRef<Path>,
        config: FunctionConfig,
    ) -> anyhow::Result<u32> {
        let path = path.as_ref().to_path_buf();
        let wasm = tokio::task::spawn_blocking(move || build_for_tests(&path)).await??;
        self.deploy_with(env, name, wasm, config).await
    }

    /// Shares `env` with app `to` for `functions` (`*` or `a,b`). The owner must have a
    /// `cloudbase_auth` deployed in `env`, and `to` must be of the same company.
    pub async fn share(&self, env: &str, to: &str, functions: &str) -> anyhow::Result<()> {
        let functions = SharedFunctions::parse(functions)?;
        self.control
            .add_share(env, to, &["functions:invoke".to_string()], functions, None)
            .await?;
        Ok(())
    }

    /// Sets `env`'s security rules (JSON).
    pub async fn rules(&self, env: &str, rules: &str) -> anyhow::Result<()> {
        self.control.set_rules(env, rules).await?;
        Ok(())
    }

    /// A call of `env/name`: set who calls and with what, then `.await` it.
    pub fn call<'a>(&'a self, env: &str, name: &str) -> CallBuilder<'a> {
        CallBuilder {
            host: self,
            env: env.to_string(),
            name: name.to_string(),
            event: "{}".into(),
            identity: Identity::default(),
            source: "wx_devtools".into(),
            http: false,
        }
    }

    /// The activation records of `env` (of function `name` only, when given), oldest first.
    pub async fn records(&self, env: &str, name: Option<&str>) -> anyhow::Result<Vec<Activation>> {
        self.control.host().flush_records().await;
        Ok(self
            .control
            .host()
            .store()
            .activations(&ActivationQuery {
                env: env.into(),
                name: name.map(str::to_string),
                after: None,
                limit: Some(1000),
                ..Default::default()
            })
            .await?)
    }

    /// Serves this host's HTTP endpoints on 127.0.0.1 (once); returns the base URL.
    pub async fn serve(&self) -> anyhow::Result<String> {
        let gw = self
            .gateway
            .get_or_try_init(|| async {
                use cloudfn_gateway::server::{ServeConfig, Server};
                let config = ServeConfig {
                    listen: "127.0.0.1:0".parse()?,
                    admin_listen: "127.0.0.1:0".parse()?,
                    ..ServeConfig::default()
                };
                let server = Server::bind(self.control.host().clone(), config).await?;
                let base = format!("http://{}", server.public_addr());
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(server.run(async move {
                    let _ = stopped.await;
                }));
                anyhow::Ok(Gateway { base, _stop: stop })
            })
            .await?;
        Ok(gw.base.clone())
    }
}

/// Builds a crate for a test: into `wasm-test-builds` under the enclosing build's target dir
/// (apart from the test build's own lock and from the `wasm-guests` a build script may keep
/// there), shared by every workspace's crates built this way so their dependencies compile
/// once; once per crate per process, cargo's output shown only on failure.
fn build_for_tests(path: &Path) -> anyhow::Result<PathBuf> {
    static BUILT: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());
    let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, wasm)) = built.iter().find(|(p, _)| *p == key) {
        return Ok(wasm.clone());
    }
    let options = build::BuildOptions {
        target_dir: build::enclosing_target_dir().map(|t| t.join("wasm-test-builds")),
        shared: true,
        quiet: true,
        skip_check: true,
    };
    let out = build::build_crate(&key, &options)?;
    built.push((key, out.wasm.clone()));
    Ok(out.wasm)
}

/// One call being set up. `.await` runs it.
#[must_use = "a call runs when awaited"]
pub struct CallBuilder<'a> {
    host: &'a TestHost,
    env: String,
    name: String,
    event: String,
    identity: Identity,
    source: String,
    http: bool,
}

impl<'a> CallBuilder<'a> {
    /// The event, any serializable value (default `{}`).
    pub fn event(mut self, event: impl Serialize) -> Self {
        self.event = serde_json::to_string(&event).expect("an event serializes to JSON");
        self
    }

    /// The event as JSON text, passed as it is (for testing malformed input).
    pub fn raw_event(mut self, json: &str) -> Self {
        self.event = json.to_string();
        self
    }

    /// A user `openid` of app `appid` (APPID/OPENID): the env's own app, or another app,
    /// which then goes through the share, `cloudbase_auth` and rules as on the server.
    pub fn user(mut self, appid: &str, openid: &str) -> Self {
        self.identity.appid = Some(appid.into());
        self.identity.openid = Some(openid.into());
        self
    }

    /// A user `openid` of app `from_appid` calling across apps (FROM_APPID/FROM_OPENID).
    pub fn from_app(mut self, from_appid: &str, from_openid: &str) -> Self {
        self.identity.from_appid = Some(from_appid.into());
        self.identity.from_openid = Some(from_openid.into());
        self
    }

    /// The user's UNIONID (of whichever app calls).
    pub fn unionid(mut self, unionid: &str) -> Self {
        if self.identity.from_appid.is_some() {
            self.identity.from_unionid = Some(unionid.into());
        } else {
            self.identity.unionid = Some(unionid.into());
        }
        self
    }

    /// The SOURCE the function sees (default `wx_devtools`).
    pub fn source(mut self, source: &str) -> Self {
        self.source = source.into();
        self
    }

    /// Makes the call over HTTP as the calling app's server would: an access token from
    /// `/cgi-bin/token` with the app's secret, then `POST /tcb/invokecloudfunction` with the
    /// user in `X-WX-OPENID`, through a real gateway on 127.0.0.1.
    pub fn over_http(mut self) -> Self {
        self.http = true;
        self
    }

    async fn run(self) -> Outcome {
        if self.http {
            return match self.run_http().await {
                Ok(o) => o,
                Err(e) => panic!("HTTP call of {}/{} failed: {e:#}", self.env, self.name),
            };
        }
        let request = InvokeRequest::new(&self.env, &self.name, self.event, &self.source);
        let inv = self
            .host
            .host()
            .call(Call::named(request, self.identity))
            .await;
        Outcome {
            request_id: inv.request_id,
            version: inv.version,
            logs: inv.logs,
            result: match inv.result {
                Ok(json) => Ok(serde_json::from_str(&json).unwrap_or(Value::String(json))),
                Err(e) => Err(CallError {
                    errcode: e.errcode(),
                    errmsg: e.to_string(),
                }),
            },
        }
    }

    async fn run_http(&self) -> anyhow::Result<Outcome> {
        let (appid, openid) = match (&self.identity.from_appid, &self.identity.appid) {
            (Some(a), _) => (a, &self.identity.from_openid),
            (None, Some(a)) => (a, &self.identity.openid),
            (None, None) => {
                anyhow::bail!("an HTTP call needs a calling app: .user() or .from_app()")
            }
        };
        let creds = self
            .host
            .credentials(appid)
            .with_context(|| format!("app {appid} was not created by this host"))?;
        let base = self.host.serve().await?;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let token_url = format!(
            "{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={}",
            creds.secret
        );
        let token: Value = send(&client, hyper::Request::get(token_url), String::new()).await?;
        let token = token["access_token"]
            .as_str()
            .with_context(|| format!("no access token: {token}"))?;
        let mut req = hyper::Request::post(format!(
            "{base}/tcb/invokecloudfunction?access_token={token}&env={}&name={}",
            self.env, self.name
        ));
        if let Some(o) = openid {
            req = req.header("X-WX-OPENID", o);
        }
        let v: Value = send(&client, req, self.event.clone()).await?;
        let errcode = v["errcode"].as_i64().unwrap_or(-1) as i32;
        let result = if errcode == 0 {
            let data = v["resp_data"].as_str().unwrap_or("null");
            Ok(serde_json::from_str(data).unwrap_or(Value::String(data.into())))
        } else {
            Err(CallError {
                errcode,
                errmsg: v["errmsg"].as_str().unwrap_or_default().to_string(),
            })
        };
        // The gateway answers with the result only; the logs are in the call's record.
        let records = self.host.records(&self.env, Some(&self.name)).await?;
        let record = records.last();
        Ok(Outcome {
            request_id: record.map(|r| r.request_id.clone()).unwrap_or_default(),
            version: record.and_then(|r| r.version),
            logs: record.map(|r| r.logs.clone()).unwrap_or_default(),
            result,
        })
    }
}

async fn send(
    client: &hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
    req: hyper::http::request::Builder,
    body: String,
) -> anyhow::Result<Value> {
    use http_body_util::BodyExt;
    let resp = client
        .request(req.body(http_body_util::Full::new(bytes::Bytes::from(body)))?)
        .await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the gateway answered with something other than JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

impl<'a> IntoFuture for CallBuilder<'a> {
    type Output = Outcome;
    type IntoFuture = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// What a call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The call's id (its activation record's).
    pub request_id: String,
    /// The version that ran, if one did.
    pub version: Option<u32>,
    /// What the function wrote to stdout/stderr and logged, in order.
    pub logs: Vec<LogLine>,
    /// The function's result, or the protocol error the caller gets.
    pub result: Result<Value, CallError>,
}

/// A protocol error (`errcode`/`errmsg`, `../shared/docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("errcode {errcode}: {errmsg}")]
pub struct CallError {
    pub errcode: i32,
    pub errmsg: String,
}

impl Outcome {
    /// The result of a call that must have succeeded; panics with the error and the logs.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        match &self.result {
            Ok(v) => v,
            Err(e) => panic!("the call failed: {e}\nlogs:\n{}", self.log_text()),
        }
    }

    /// The error of a call that must have failed; panics with the result.
    #[track_caller]
    pub fn err(&self) -> &CallError {
        match &self.result {
            Ok(v) => panic!("the call succeeded with {v}, expected an error"),
            Err(e) => e,
        }
    }

    /// The logs, one line each as `[tag] message`.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| format!("[{}] {}\n", l.tag(), l.message))
            .collect()
    }

    /// The activation record of this call on `host`.
    pub async fn record(&self, host: &TestHost, env: &str) -> anyhow::Result<Activation> {
        host.records(env, None)
            .await?
            .into_iter()
            .rev()
            .find(|r| r.request_id == self.request_id)
            .with_context(|| format!("no record of call {}", self.request_id))
    }
}

/// With `RUST_LOG` set (e.g. `RUST_LOG=cloudfn=debug cargo test`), the host's own log lines
/// (grants, limits, compilations) are printed with the test's output, as `cloudfn serve` prints
/// them; without it, a test prints only what its functions log.
fn show_host_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            // Another subscriber (the test's own) wins: this one is then not installed.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}
