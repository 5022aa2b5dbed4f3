//! What the CLI talks to: the admin API, of a running server (`--server URL`) or of a data
//! dir opened in-process (the same routes, `AdminApi::without_console`, called without a
//! socket). Every command is one request, written once, and answers the same either way.

use anyhow::{Context, bail};
use bytes::Bytes;
use cloudfn_gateway::admin_api::{AdminApi, AdminInvocation, AdminInvoke, NewShare};
use cloudfn_invoke::Host;
use cloudfn_store::{
    Activation, ActivationQuery, AppCredentials, AppInfo, AuditEntry, AuditQuery, EnvInfo,
    FunctionConfig, FunctionInfo, ShareInfo, VersionInfo,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;

/// A client of the admin API, remote or in-process.
pub struct AdminClient {
    transport: Transport,
    /// The bearer token (in-process, one made for this run).
    token: String,
}

enum Transport {
    /// A server's admin listener, at this base URL.
    Remote {
        base: String,
        http: Client<HttpConnector, Full<Bytes>>,
    },
    /// A data dir's host, in this process.
    Local(AdminApi),
}

/// A refusal of the admin API (`{"error": ...}` with its status), which `cloudfn_cli::run`
/// matches on to name the data dir when something is not found there.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", if *.remote { format!(" (HTTP {})", .status) } else { String::new() })]
pub struct Refused {
    /// The API's status.
    pub status: hyper::StatusCode,
    /// The API's message: in-process, the store's own, as the command printed it before it
    /// went through the API.
    pub message: String,
    /// Over the network, the status is said too: it helps find why.
    remote: bool,
}

/// `segment` percent-encoded for a path (form encoding's `+` for a space means a space only in
/// a query; every `+` it writes stands for a space, a `+` itself being `%2B`).
fn enc(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// JSON text with every character beyond ASCII escaped (`\uXXXX`): what a header may carry
/// through any proxy, and the same JSON.
fn ascii_json(value: &impl serde::Serialize) -> anyhow::Result<String> {
    let text = serde_json::to_string(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // Outside a string JSON has no such character: each is in one, where an escape
            // is the character.
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    Ok(out)
}

/// `path` with the query parameters that have a value (`acting=APP`, `limit=N`, ...).
fn with_query(path: String, params: &[(&str, Option<String>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in params {
        if let Some(v) = value {
            query.append_pair(key, v);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// `path` with `acting=APP` added to its query, when an app acts.
fn acting_in(path: String, acting: Option<&str>) -> String {
    with_query(path, &[("acting", acting.map(str::to_string))])
}

impl AdminClient {
    /// A client of the admin API at `base` (e.g. `http://127.0.0.1:8081`) with a bearer token.
    pub fn remote(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        if !base.starts_with("http://") {
            bail!(
                "--server must be an http:// URL of the admin listener, e.g. http://127.0.0.1:8081"
            );
        }
        Ok(AdminClient {
            transport: Transport::Remote {
                base: base.trim_end_matches('/').to_string(),
                http: Client::builder(TokioExecutor::new()).build_http(),
            },
            token: token.to_string(),
        })
    }

    /// The admin API of `host`, called in-process (a data dir the CLI opened), with a token
    /// made for this run.
    pub fn local(host: Arc<Host>) -> AdminClient {
        let token = cloudfn_store::secrets::random_hex(16);
        let api = AdminApi::without_console(host, cloudfn_store::secrets::hash_secret(&token));
        AdminClient {
            transport: Transport::Local(api),
            token,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        config: Option<&FunctionConfig>,
    ) -> anyhow::Result<T> {
        let uri = match &self.transport {
            Transport::Remote { base, .. } => format!("{base}{path}"),
            Transport::Local(_) => path.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        if let Some(c) = config {
            req = req.header("cloudfn-config", ascii_json(c)?);
        }
        let req = req.body(Full::new(body))?;
        let (status, bytes) = match &self.transport {
            Transport::Remote { http, .. } => {
                let resp = http
                    .request(req)
                    .await
                    .with_context(|| format!("calling {uri}"))?;
                let status = resp.status();
                (status, resp.into_body().collect().await?.to_bytes())
            }
            Transport::Local(api) => {
                let resp = api.handle(req).await;
                let status = resp.status();
                (status, resp.into_body().collect().await?.to_bytes())
            }
        };
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            return Err(Refused {
                status,
                message,
                remote: matches!(self.transport, Transport::Remote { .. }),
            }
            .into());
        }
        serde_json::from_slice(&bytes).with_context(|| format!("reading the answer of {uri}"))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.call(Method::GET, path, Bytes::new(), None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<T> {
        self.call(Method::POST, path, Bytes::from(body.to_string()), None)
            .await
    }

    /// Creates an environment.
    pub async fn create_env(&self, env: &str, owner: &str) -> anyhow::Result<EnvInfo> {
        self.post("/v1/envs", json!({ "env": env, "owner": owner }))
            .await
    }

    /// Lists environments.
    pub async fn envs(&self) -> anyhow::Result<Vec<EnvInfo>> {
        self.get("/v1/envs").await
    }

    /// Deploys a new version, as `acting` if given.
    pub async fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: Vec<u8>,
        config: FunctionConfig,
        acting: Option<&str>,
    ) -> anyhow::Result<VersionInfo> {
        let path = format!("/v1/envs/{}/functions/{}", enc(env), enc(name));
        let path = acting_in(path, acting);
        self.call(Method::PUT, &path, Bytes::from(wasm), Some(&config))
            .await
    }

    /// Lists an env's functions (those `acting` may see).
    pub async fn functions(
        &self,
        env: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<FunctionInfo>> {
        let path = format!("/v1/envs/{}/functions", enc(env));
        self.get(&acting_in(path, acting)).await
    }

    /// Lists a function's versions.
    pub async fn versions(
        &self,
        env: &str,
        name: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<VersionInfo>> {
        let path = format!("/v1/envs/{}/functions/{}/versions", enc(env), enc(name));
        self.get(&acting_in(path, acting)).await
    }

    /// Makes an earlier version active.
    pub async fn rollback(
        &self,
        env: &str,
        name: &str,
        to: u32,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        let path = format!("/v1/envs/{}/functions/{}/rollback", enc(env), enc(name));
        let path = acting_in(path, acting);
        self.post::<serde_json::Value>(&path, json!({ "to": to }))
            .await
            .map(drop)
    }

    /// Removes a function.
    pub async fn remove(
        &self,
        env: &str,
        name: &str,
        acting: Option<&str>,
        force: bool,
    ) -> anyhow::Result<()> {
        let path = with_query(
            format!("/v1/envs/{}/functions/{}", enc(env), enc(name)),
            &[
                ("force", force.then(|| "true".to_string())),
                ("acting", acting.map(str::to_string)),
            ],
        );
        self.call::<serde_json::Value>(Method::DELETE, &path, Bytes::new(), None)
            .await
            .map(drop)
    }

    /// Calls a deployed function.
    pub async fn invoke(
        &self,
        env: &str,
        name: &str,
        call: AdminInvoke,
    ) -> anyhow::Result<AdminInvocation> {
        let path = format!("/v1/envs/{}/functions/{}/invoke", enc(env), enc(name));
        self.post(&path, serde_json::to_value(&call)?).await
    }

    /// Activation records (those `acting` may read).
    pub async fn activations(
        &self,
        q: &ActivationQuery,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<Activation>> {
        let path = with_query(
            format!("/v1/envs/{}/activations", enc(&q.env)),
            &[
                ("name", q.name.clone()),
                ("after", q.after.map(|a| a.to_string())),
                ("before", q.before.map(|b| b.to_string())),
                ("limit", q.limit.map(|l| l.to_string())),
                ("outcome", q.outcome.map(|o| o.as_str().to_string())),
                ("since_ms", q.since_ms.map(|s| s.to_string())),
                ("acting", acting.map(str::to_string)),
            ],
        );
        self.get(&path).await
    }

    /// Registers an app.
    pub async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> anyhow::Result<AppCredentials> {
        self.post("/v1/apps", json!({ "appid": appid, "subject": subject }))
            .await
    }

    /// Rotates an app's credentials.
    pub async fn rotate_secret(&self, appid: &str) -> anyhow::Result<AppCredentials> {
        self.post(&format!("/v1/apps/{}/rotate-secret", enc(appid)), json!({}))
            .await
    }

    /// Ends every session of an app's users; returns the new session generation.
    pub async fn revoke_sessions(&self, appid: &str) -> anyhow::Result<u64> {
        let v: serde_json::Value = self
            .post(
                &format!("/v1/apps/{}/revoke-sessions", enc(appid)),
                json!({}),
            )
            .await?;
        Ok(v["generation"].as_u64().unwrap_or_default())
    }

    /// Lists apps.
    pub async fn apps(&self) -> anyhow::Result<Vec<AppInfo>> {
        self.get("/v1/apps").await
    }

    /// Turns an app's sharing on or off.
    pub async fn set_sharing(&self, appid: &str, on: bool) -> anyhow::Result<()> {
        self.post::<serde_json::Value>(
            &format!("/v1/apps/{}/sharing", enc(appid)),
            json!({ "on": on }),
        )
        .await
        .map(drop)
    }

    /// Shares an env.
    pub async fn add_share(&self, share: NewShare) -> anyhow::Result<ShareInfo> {
        self.post("/v1/shares", serde_json::to_value(&share)?).await
    }

    /// Ends every share of `owner`'s envs with `to`; returns those envs.
    pub async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let body = json!({ "owner": owner, "to": to, "acting": acting });
        let v: serde_json::Value = self.post("/v1/shares/unbind", body).await?;
        Ok(serde_json::from_value(v["envs"].clone())?)
    }

    /// Sets or removes an app's webhook; returns the new signing secret.
    pub async fn set_webhook(
        &self,
        appid: &str,
        url: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        let path = format!("/v1/apps/{}/webhook", enc(appid));
        let v: serde_json::Value = self.post(&path, json!({ "url": url })).await?;
        Ok(v["secret"].as_str().map(str::to_string))
    }

    /// Sets or forgets an app's Taobao signing secret.
    pub async fn set_taobao_secret(&self, appid: &str, secret: Option<&str>) -> anyhow::Result<()> {
        let path = format!("/v1/apps/{}/taobao-secret", enc(appid));
        self.post::<serde_json::Value>(&path, json!({ "secret": secret }))
            .await
            .map(drop)
    }

    /// Sets or forgets an app's upstream credentials.
    pub async fn set_upstream_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> anyhow::Result<()> {
        let path = format!("/v1/apps/{}/upstream", enc(appid));
        self.post::<serde_json::Value>(&path, json!({ "secret": secret }))
            .await
            .map(drop)
    }

    /// Lists shares of an env and/or involving an app.
    pub async fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> anyhow::Result<Vec<ShareInfo>> {
        let path = with_query(
            "/v1/shares".into(),
            &[
                ("env", env.map(str::to_string)),
                ("app", app.map(str::to_string)),
            ],
        );
        self.get(&path).await
    }

    /// Ends a share.
    pub async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        let path = acting_in(format!("/v1/shares/{}/{}", enc(env), enc(to)), acting);
        self.call::<serde_json::Value>(Method::DELETE, &path, Bytes::new(), None)
            .await
            .map(drop)
    }

    /// Sets an env's security rules.
    pub async fn set_rules(
        &self,
        env: &str,
        rules: String,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        let path = acting_in(format!("/v1/envs/{}/rules", enc(env)), acting);
        self.call::<serde_json::Value>(Method::PUT, &path, Bytes::from(rules), None)
            .await
            .map(drop)
    }

    /// An env's security rules, as JSON text.
    pub async fn rules(&self, env: &str) -> anyhow::Result<String> {
        let v: serde_json::Value = self.get(&format!("/v1/envs/{}/rules", enc(env))).await?;
        Ok(serde_json::to_string_pretty(&v)?)
    }

    /// Audit log entries.
    pub async fn audit(&self, q: &AuditQuery) -> anyhow::Result<Vec<AuditEntry>> {
        let path = with_query(
            "/v1/audit".into(),
            &[
                ("env", q.env.clone()),
                ("app", q.app.clone()),
                ("after", q.after.map(|a| a.to_string())),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        );
        self.get(&path).await
    }
}
