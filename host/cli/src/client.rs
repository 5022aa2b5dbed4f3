//! What the CLI talks to: a data dir opened in-process, or a running server's admin API
//! (`--server URL`). Both answer with the same types, so every command works either way.

use anyhow::{Context, bail};
use bytes::Bytes;
use cloudfn_gateway::admin_api::{AdminInvocation, AdminInvoke, NewShare};
use cloudfn_invoke::{Actor, Host};
use cloudfn_store::{
    Activation, ActivationQuery, AppCredentials, AppInfo, AuditEntry, AuditQuery, EnvInfo,
    FunctionConfig, FunctionInfo, ShareInfo, SharedFunctions, VersionInfo,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;

/// A local data dir or a remote server.
pub enum Backend {
    /// In-process.
    Local(Arc<Host>),
    /// Over the admin API.
    Remote(AdminClient),
}

/// A client of the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

fn enc(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// `path` with `acting=APP` added to its query, when an app acts.
fn acting_in(path: String, acting: Option<&str>) -> String {
    match acting {
        Some(a) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}acting={}", enc(a))
        }
        None => path,
    }
}

impl AdminClient {
    /// A client of the admin API at `base` (e.g. `http://127.0.0.1:8081`) with a bearer token.
    pub fn new(base: &str, token: &str) -> anyhow::Result<AdminClient> {
        if !base.starts_with("http://") {
            bail!(
                "--server must be an http:// URL of the admin listener, e.g. http://127.0.0.1:8081"
            );
        }
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        config: Option<&FunctionConfig>,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json");
        if let Some(c) = config {
            req = req.header("cloudfn-config", serde_json::to_string(c)?);
        }
        let resp = self
            .http
            .request(req.body(Full::new(body))?)
            .await
            .with_context(|| format!("calling {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("{msg} (HTTP {status})");
        }
        serde_json::from_slice(&bytes).with_context(|| format!("reading the answer of {url}"))
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
}

impl Backend {
    /// Creates an environment.
    pub async fn create_env(&self, env: &str, owner: &str) -> anyhow::Result<EnvInfo> {
        match self {
            Backend::Local(s) => Ok(s.create_env_for_app(env, owner).await?),
            Backend::Remote(c) => {
                c.post("/v1/envs", json!({ "env": env, "owner": owner }))
                    .await
            }
        }
    }

    /// Lists environments.
    pub async fn envs(&self) -> anyhow::Result<Vec<EnvInfo>> {
        match self {
            Backend::Local(s) => Ok(s.store().envs().await?),
            Backend::Remote(c) => c.get("/v1/envs").await,
        }
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
        match self {
            Backend::Local(s) => Ok(s
                .deploy_as(&Actor::acting(acting), env, name, &wasm, config)
                .await?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}", enc(env), enc(name));
                let path = acting_in(path, acting);
                c.call(Method::PUT, &path, Bytes::from(wasm), Some(&config))
                    .await
            }
        }
    }

    /// Lists an env's functions (those `acting` may see).
    pub async fn functions(
        &self,
        env: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<FunctionInfo>> {
        match self {
            Backend::Local(s) => Ok(s.functions_as(&Actor::acting(acting), env).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions", enc(env));
                c.get(&acting_in(path, acting)).await
            }
        }
    }

    /// Lists a function's versions.
    pub async fn versions(
        &self,
        env: &str,
        name: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<VersionInfo>> {
        match self {
            Backend::Local(s) => Ok(s.versions_as(&Actor::acting(acting), env, name).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}/versions", enc(env), enc(name));
                c.get(&acting_in(path, acting)).await
            }
        }
    }

    /// Makes an earlier version active.
    pub async fn rollback(
        &self,
        env: &str,
        name: &str,
        to: u32,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.rollback_as(&Actor::acting(acting), env, name, to).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}/rollback", enc(env), enc(name));
                let path = acting_in(path, acting);
                c.post::<serde_json::Value>(&path, json!({ "to": to }))
                    .await
                    .map(drop)
            }
        }
    }

    /// Removes a function.
    pub async fn remove(
        &self,
        env: &str,
        name: &str,
        acting: Option<&str>,
        force: bool,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s
                .remove_as(&Actor::acting(acting), env, name, force)
                .await?),
            Backend::Remote(c) => {
                let mut path = format!("/v1/envs/{}/functions/{}", enc(env), enc(name));
                if force {
                    path.push_str("?force=true");
                }
                let path = acting_in(path, acting);
                c.call::<serde_json::Value>(Method::DELETE, &path, Bytes::new(), None)
                    .await
                    .map(drop)
            }
        }
    }

    /// Calls a deployed function.
    pub async fn invoke(
        &self,
        env: &str,
        name: &str,
        call: AdminInvoke,
    ) -> anyhow::Result<AdminInvocation> {
        match self {
            Backend::Local(s) => {
                let call = call.into_call(env, name).map_err(anyhow::Error::msg)?;
                Ok(s.call(call).await.into())
            }
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}/invoke", enc(env), enc(name));
                c.post(&path, serde_json::to_value(&call)?).await
            }
        }
    }

    /// Activation records (those `acting` may read).
    pub async fn activations(
        &self,
        q: &ActivationQuery,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<Activation>> {
        match self {
            Backend::Local(s) => Ok(s.activations_as(&Actor::acting(acting), q).await?),
            Backend::Remote(c) => {
                let mut path = format!("/v1/envs/{}/activations?", enc(&q.env));
                if let Some(n) = &q.name {
                    path.push_str(&format!("name={}&", enc(n)));
                }
                if let Some(a) = q.after {
                    path.push_str(&format!("after={a}&"));
                }
                if let Some(l) = q.limit {
                    path.push_str(&format!("limit={l}&"));
                }
                if let Some(a) = acting {
                    path.push_str(&format!("acting={}", enc(a)));
                }
                c.get(&path).await
            }
        }
    }

    /// Registers an app.
    pub async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> anyhow::Result<AppCredentials> {
        match self {
            Backend::Local(s) => Ok(s.create_app(appid, subject).await?),
            Backend::Remote(c) => {
                c.post("/v1/apps", json!({ "appid": appid, "subject": subject }))
                    .await
            }
        }
    }

    /// Rotates an app's credentials.
    pub async fn rotate_secret(&self, appid: &str) -> anyhow::Result<AppCredentials> {
        match self {
            Backend::Local(s) => Ok(s.rotate_secret(appid).await?),
            Backend::Remote(c) => {
                c.post(&format!("/v1/apps/{}/rotate-secret", enc(appid)), json!({}))
                    .await
            }
        }
    }

    /// Ends every session of an app's users; returns the new session generation.
    pub async fn revoke_sessions(&self, appid: &str) -> anyhow::Result<u64> {
        match self {
            Backend::Local(s) => Ok(s.revoke_sessions(appid).await?),
            Backend::Remote(c) => {
                let v: serde_json::Value = c
                    .post(
                        &format!("/v1/apps/{}/revoke-sessions", enc(appid)),
                        json!({}),
                    )
                    .await?;
                Ok(v["generation"].as_u64().unwrap_or_default())
            }
        }
    }

    /// Lists apps.
    pub async fn apps(&self) -> anyhow::Result<Vec<AppInfo>> {
        match self {
            Backend::Local(s) => Ok(s.store().apps().await?),
            Backend::Remote(c) => c.get("/v1/apps").await,
        }
    }

    /// Turns an app's sharing on or off.
    pub async fn set_sharing(&self, appid: &str, on: bool) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.set_sharing(appid, on).await?),
            Backend::Remote(c) => c
                .post::<serde_json::Value>(
                    &format!("/v1/apps/{}/sharing", enc(appid)),
                    json!({ "on": on }),
                )
                .await
                .map(drop),
        }
    }

    /// Shares an env.
    pub async fn add_share(&self, share: NewShare) -> anyhow::Result<ShareInfo> {
        match self {
            Backend::Local(s) => {
                let functions = SharedFunctions::parse(share.functions.as_deref().unwrap_or("*"))?;
                Ok(s.add_share(
                    &share.env,
                    &share.to,
                    &share.perms,
                    functions,
                    share.acting.as_deref(),
                )
                .await?)
            }
            Backend::Remote(c) => c.post("/v1/shares", serde_json::to_value(&share)?).await,
        }
    }

    /// Ends every share of `owner`'s envs with `to`; returns those envs.
    pub async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        match self {
            Backend::Local(s) => Ok(s.unbind(owner, to, acting).await?),
            Backend::Remote(c) => {
                let body = json!({ "owner": owner, "to": to, "acting": acting });
                let v: serde_json::Value = c.post("/v1/shares/unbind", body).await?;
                Ok(serde_json::from_value(v["envs"].clone())?)
            }
        }
    }

    /// Sets or removes an app's webhook; returns the new signing secret.
    pub async fn set_webhook(
        &self,
        appid: &str,
        url: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        match self {
            Backend::Local(s) => Ok(s.set_webhook(appid, url).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/apps/{}/webhook", enc(appid));
                let v: serde_json::Value = c.post(&path, json!({ "url": url })).await?;
                Ok(v["secret"].as_str().map(str::to_string))
            }
        }
    }

    /// Sets or forgets an app's Taobao signing secret.
    pub async fn set_taobao_secret(&self, appid: &str, secret: Option<&str>) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.set_taobao_secret(appid, secret).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/apps/{}/taobao-secret", enc(appid));
                c.post::<serde_json::Value>(&path, json!({ "secret": secret }))
                    .await
                    .map(drop)
            }
        }
    }

    /// Sets or forgets an app's upstream credentials.
    pub async fn set_upstream_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.set_upstream_secret(appid, secret).await?),
            Backend::Remote(c) => {
                let path = format!("/v1/apps/{}/upstream", enc(appid));
                c.post::<serde_json::Value>(&path, json!({ "secret": secret }))
                    .await
                    .map(drop)
            }
        }
    }

    /// Lists shares of an env and/or involving an app.
    pub async fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> anyhow::Result<Vec<ShareInfo>> {
        match self {
            Backend::Local(s) => Ok(s.store().shares(env, app).await?),
            Backend::Remote(c) => {
                let mut path = String::from("/v1/shares?");
                if let Some(e) = env {
                    path.push_str(&format!("env={}&", enc(e)));
                }
                if let Some(a) = app {
                    path.push_str(&format!("app={}", enc(a)));
                }
                c.get(&path).await
            }
        }
    }

    /// Ends a share.
    pub async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.remove_share(env, to, acting).await?),
            Backend::Remote(c) => {
                let mut path = format!("/v1/shares/{}/{}", enc(env), enc(to));
                if let Some(a) = acting {
                    path.push_str(&format!("?acting={}", enc(a)));
                }
                c.call::<serde_json::Value>(Method::DELETE, &path, Bytes::new(), None)
                    .await
                    .map(drop)
            }
        }
    }

    /// Sets an env's security rules.
    pub async fn set_rules(
        &self,
        env: &str,
        rules: String,
        acting: Option<&str>,
    ) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s
                .set_rules_as(&Actor::acting(acting), env, &rules)
                .await
                .map(drop)?),
            Backend::Remote(c) => {
                let path = acting_in(format!("/v1/envs/{}/rules", enc(env)), acting);
                c.call::<serde_json::Value>(Method::PUT, &path, Bytes::from(rules), None)
                    .await
                    .map(drop)
            }
        }
    }

    /// An env's security rules, as JSON text.
    pub async fn rules(&self, env: &str) -> anyhow::Result<String> {
        match self {
            Backend::Local(s) => Ok(s.rules(env).await?),
            Backend::Remote(c) => {
                let v: serde_json::Value = c.get(&format!("/v1/envs/{}/rules", enc(env))).await?;
                Ok(serde_json::to_string_pretty(&v)?)
            }
        }
    }

    /// Audit log entries.
    pub async fn audit(&self, q: &AuditQuery) -> anyhow::Result<Vec<AuditEntry>> {
        match self {
            Backend::Local(s) => Ok(s.store().audit_log(q).await?),
            Backend::Remote(c) => {
                let mut path = String::from("/v1/audit?");
                if let Some(e) = &q.env {
                    path.push_str(&format!("env={}&", enc(e)));
                }
                if let Some(a) = &q.app {
                    path.push_str(&format!("app={}&", enc(a)));
                }
                if let Some(l) = q.limit {
                    path.push_str(&format!("limit={l}"));
                }
                c.get(&path).await
            }
        }
    }
}
