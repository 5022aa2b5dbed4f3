//! What the CLI talks to: a data dir opened in-process, or a running server's admin API
//! (`--server URL`). Both answer with the same types, so every command works either way.

use crate::activations::{Activation, ActivationQuery};
use crate::admin_api::{AdminInvocation, AdminInvoke};
use crate::credentials::{AppCredentials, AppInfo};
use crate::registry::{EnvInfo, FunctionConfig, FunctionInfo, VersionInfo};
use crate::service::{Cloudfn, InvokeRequest};
use anyhow::{Context, bail};
use bytes::Bytes;
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
    Local(Arc<Cloudfn>),
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
            Backend::Local(s) => Ok(s.registry().create_env(env, owner)?),
            Backend::Remote(c) => {
                c.post("/v1/envs", json!({ "env": env, "owner": owner }))
                    .await
            }
        }
    }

    /// Lists environments.
    pub async fn envs(&self) -> anyhow::Result<Vec<EnvInfo>> {
        match self {
            Backend::Local(s) => Ok(s.registry().envs()?),
            Backend::Remote(c) => c.get("/v1/envs").await,
        }
    }

    /// Deploys a new version.
    pub async fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: Vec<u8>,
        config: FunctionConfig,
    ) -> anyhow::Result<VersionInfo> {
        match self {
            Backend::Local(s) => Ok(s.deploy(env, name, &wasm, config)?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}", enc(env), enc(name));
                c.call(Method::PUT, &path, Bytes::from(wasm), Some(&config))
                    .await
            }
        }
    }

    /// Lists an env's functions.
    pub async fn functions(&self, env: &str) -> anyhow::Result<Vec<FunctionInfo>> {
        match self {
            Backend::Local(s) => Ok(s.registry().functions(env)?),
            Backend::Remote(c) => c.get(&format!("/v1/envs/{}/functions", enc(env))).await,
        }
    }

    /// Lists a function's versions.
    pub async fn versions(&self, env: &str, name: &str) -> anyhow::Result<Vec<VersionInfo>> {
        match self {
            Backend::Local(s) => Ok(s.registry().versions(env, name)?),
            Backend::Remote(c) => {
                c.get(&format!(
                    "/v1/envs/{}/functions/{}/versions",
                    enc(env),
                    enc(name)
                ))
                .await
            }
        }
    }

    /// Makes an earlier version active.
    pub async fn rollback(&self, env: &str, name: &str, to: u32) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.rollback(env, name, to)?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}/rollback", enc(env), enc(name));
                c.post::<serde_json::Value>(&path, json!({ "to": to }))
                    .await
                    .map(drop)
            }
        }
    }

    /// Removes a function.
    pub async fn remove(&self, env: &str, name: &str) -> anyhow::Result<()> {
        match self {
            Backend::Local(s) => Ok(s.remove(env, name)?),
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}", enc(env), enc(name));
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
                let source = call.source.as_deref().unwrap_or("wx_devtools");
                let mut req = InvokeRequest::new(env, name, call.event.clone(), source);
                req.identity = call.identity;
                req.version = call.version;
                Ok(s.invoke(req).await.into())
            }
            Backend::Remote(c) => {
                let path = format!("/v1/envs/{}/functions/{}/invoke", enc(env), enc(name));
                c.post(&path, serde_json::to_value(&call)?).await
            }
        }
    }

    /// Activation records.
    pub async fn activations(&self, q: &ActivationQuery) -> anyhow::Result<Vec<Activation>> {
        match self {
            Backend::Local(s) => Ok(s.registry().activations(q)?),
            Backend::Remote(c) => {
                let mut path = format!("/v1/envs/{}/activations?", enc(&q.env));
                if let Some(n) = &q.name {
                    path.push_str(&format!("name={}&", enc(n)));
                }
                if let Some(a) = q.after {
                    path.push_str(&format!("after={a}&"));
                }
                if let Some(l) = q.limit {
                    path.push_str(&format!("limit={l}"));
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
            Backend::Local(s) => Ok(s.registry().create_app(appid, subject)?),
            Backend::Remote(c) => {
                c.post("/v1/apps", json!({ "appid": appid, "subject": subject }))
                    .await
            }
        }
    }

    /// Rotates an app's credentials.
    pub async fn rotate_secret(&self, appid: &str) -> anyhow::Result<AppCredentials> {
        match self {
            Backend::Local(s) => Ok(s.registry().rotate_secret(appid)?),
            Backend::Remote(c) => {
                c.post(&format!("/v1/apps/{}/rotate-secret", enc(appid)), json!({}))
                    .await
            }
        }
    }

    /// Lists apps.
    pub async fn apps(&self) -> anyhow::Result<Vec<AppInfo>> {
        match self {
            Backend::Local(s) => Ok(s.registry().apps()?),
            Backend::Remote(c) => c.get("/v1/apps").await,
        }
    }
}
