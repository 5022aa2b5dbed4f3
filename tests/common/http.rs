//! A world served in-process on 127.0.0.1 (`cloudfn serve`'s server, real sockets), and HTTP
//! helpers for the tests that talk to it.
#![allow(dead_code)]

use super::{Built, World};
use bytes::Bytes;
use cloudfn_gateway::server::{ServeConfig, Server};
use cloudfn_invoke::Host;
use cloudfn_store::AppCredentials;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestServer {
    pub world: Built,
    pub host: Arc<Host>,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// wxA's credentials.
    pub owner: AppCredentials,
    /// wxB's credentials.
    pub other: AppCredentials,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl World {
    /// The world with apps wxA and wxB (subject "Acme") first, built and served.
    pub async fn serve(mut self, config: ServeConfig) -> TestServer {
        let later = std::mem::take(&mut self.fixture.apps);
        let mut world = self.app("wxA", "Acme").app("wxB", "Acme");
        world.fixture.apps.extend(later);
        TestServer::serve(world.build().await, config).await
    }
}

impl TestServer {
    /// Waits until every one of `calls` has reached its guest (its version taken, a slot of
    /// its env held) or ended: the host's instances in flight and the calls answered add up to
    /// all of them. Nothing else may call the host meanwhile.
    pub async fn calls_under_way<T>(&self, calls: &[tokio::task::JoinHandle<T>]) {
        super::within(
            std::time::Duration::from_secs(20),
            "the calls under way",
            || async {
                let ended = calls.iter().filter(|c| c.is_finished()).count() as i64;
                self.host.metrics().in_flight.get() + ended >= calls.len() as i64
            },
        )
        .await;
    }

    /// Serves a built world (which must have apps wxA and wxB).
    pub async fn serve(world: Built, config: ServeConfig) -> TestServer {
        let config = ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Some(ADMIN_TOKEN.into()),
            ..config
        };
        let host = world.host.clone();
        let server = Server::bind(host.clone(), config).await.unwrap();
        let (public, admin) = (server.public_addr(), server.admin_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            owner: world.creds("wxA").clone(),
            other: world.creds("wxB").clone(),
            world,
            host,
            public,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops serving and waits for the drain.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        self.world.dir.path()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.public)
    }

    pub async fn token(&self, creds: &AppCredentials) -> String {
        let (_, v) = get(&self.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            creds.appid, creds.secret
        )))
        .await;
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .to_string()
    }

    pub async fn invoke(&self, token: &str, env: &str, name: &str, body: &str) -> Value {
        let url = self.url(&format!(
            "/tcb/invokecloudfunction?access_token={token}&env={env}&name={name}"
        ));
        request("POST", &url, &[], body.to_string()).await.1
    }
}

pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, Value) {
    let (status, _, value) = exchange(method, url, headers, body).await;
    (status, value)
}

/// A request and the whole answer: status, headers, and the body as JSON (or a JSON string of
/// the text).
pub async fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, hyper::HeaderMap, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, value)
}

/// A request to the admin API of `s` with the admin token.
pub async fn admin(
    s: &TestServer,
    method: &str,
    path_and_query: &str,
    body: impl Into<Bytes>,
) -> (u16, Value) {
    let url = format!("http://{}{path_and_query}", s.admin);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    request(method, &url, &[("authorization", &auth)], body).await
}

/// A request as a little test server sees it: its parts and its whole body.
pub type Seen = (hyper::http::request::Parts, Bytes);

/// A little HTTP server on 127.0.0.1 standing in for another party (an upstream platform, a
/// webhook receiver): each request, body read, goes to `answer`, which gives the status,
/// content type and body. Returns the base URL (`http://127.0.0.1:PORT`).
pub async fn stand_in<F, Fut>(answer: F) -> String
where
    F: Fn(Seen) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (u16, &'static str, Vec<u8>)> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let (status, content_type, bytes) = answer((parts, body)).await;
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", content_type)
                                .body(Full::new(Bytes::from(bytes)))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    base
}

pub async fn get(url: &str) -> (u16, Value) {
    request("GET", url, &[], Bytes::new()).await
}

pub fn errcode(v: &Value) -> i64 {
    v["errcode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errcode in {v}"))
}

pub fn node_call(
    s: &TestServer,
    creds: &AppCredentials,
    env: &str,
    name: &str,
    data: Option<&str>,
    qualifier: Option<&str>,
) -> (bool, Value) {
    node_call_in(s, creds, env, name, data, qualifier, &[])
}

/// [`node_call`] with more of the SDK's environment (e.g. what a cloud function runs with:
/// `TENCENTCLOUD_RUNENV=SCF`, `TCB_SOURCE`, `WX_OPENID`).
pub fn node_call_in(
    s: &TestServer,
    creds: &AppCredentials,
    env: &str,
    name: &str,
    data: Option<&str>,
    qualifier: Option<&str>,
    sdk_env: &[(&str, &str)],
) -> (bool, Value) {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
    assert!(
        node_dir.join("node_modules/@cloudbase/node-sdk").exists(),
        "run `npm ci --prefix tests/node` first (scripts/test.sh does)"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&node_dir)
        .args(["-r", "./guard.js", "call.js"])
        .env("CLOUDFN_URL", format!("http://{}/admin", s.public))
        .env("CLOUDFN_ENV", env)
        .env("SECRET_ID", &creds.secret_id)
        .env("SECRET_KEY", &creds.secret_key)
        .env("FN_NAME", name)
        // Skips the SDK's lookup of Tencent's metadata host (guard.js blocks it anyway).
        .env("TENCENTCLOUD", "true");
    if let Some(d) = data {
        cmd.env("FN_DATA", d);
    }
    if let Some(q) = qualifier {
        cmd.env("FN_QUALIFIER", q);
    }
    cmd.envs(sdk_env.iter().copied());
    let out = cmd.output().expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "node printed {stdout:?}, stderr {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

/// `node SCRIPT` in tests/node/miniprogram: mini-program code with the cloudfn `wx.cloud` SDK
/// against `s`, as `appid`'s user `openid`; `own_env` is the app's own env, if any, and
/// wxA's `prod` the shared one.
pub fn mini_program_command(
    s: &TestServer,
    script: &str,
    appid: &str,
    openid: &str,
    own_env: Option<&str>,
) -> Command {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node/miniprogram");
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg(script)
        .env("CLOUDFN_BASE", format!("http://{}", s.public))
        .env("WX_APPID", appid)
        .env("WX_OPENID", openid)
        .env("RESOURCE_APPID", "wxA")
        .env("RESOURCE_ENV", "prod");
    if let Some(env) = own_env {
        cmd.env("OWN_ENV", env);
    }
    cmd
}

/// Runs [`mini_program_command`]; the JSON of its last line.
pub fn node_mini_program(
    s: &TestServer,
    script: &str,
    appid: &str,
    openid: &str,
    own_env: Option<&str>,
) -> Value {
    let out = mini_program_command(s, script, appid, openid, own_env)
        .output()
        .expect("running node");
    parse_node(&out.stdout, &out.stderr)
}

/// The JSON a mini-program script prints last.
pub fn parse_node(stdout: &[u8], stderr: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "node printed {text:?}, stderr {}",
            String::from_utf8_lossy(stderr)
        )
    })
}

/// Calls `env/name` over HTTP as `creds`' app with its user `openid` (unionid `u-shared`).
pub async fn call_as(
    s: &TestServer,
    creds: &AppCredentials,
    openid: Option<&str>,
    env: &str,
    name: &str,
    body: &str,
) -> Value {
    let token = s.token(creds).await;
    let url = s.url(&format!(
        "/tcb/invokecloudfunction?access_token={token}&env={env}&name={name}"
    ));
    let mut headers = vec![("X-WX-UNIONID", "u-shared")];
    if let Some(o) = openid {
        headers.push(("X-WX-OPENID", o));
    }
    request("POST", &url, &headers, body.to_string()).await.1
}

/// The function's result in a `/tcb/invokecloudfunction` answer.
pub fn resp_data(v: &Value) -> Value {
    serde_json::from_str(
        v["resp_data"]
            .as_str()
            .unwrap_or_else(|| panic!("no resp_data: {v}")),
    )
    .unwrap()
}
