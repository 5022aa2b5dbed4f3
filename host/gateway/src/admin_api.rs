//! The admin API, on its own listener and behind a bearer token: apps, envs, deploys
//! (wasm upload), functions, versions, rollback, removal, invocation, activation records, and
//! Prometheus `/metrics`. The CLI's `--server URL` mode speaks it. `/console` is the web console
//! ([`crate::console`]), with its own login.

use crate::http::{Body, BodyError, header, json, query_map, read_body, text};
use cloudfn_invoke::{Actor, Call, Host, Identity, Invocation, InvokeRequest};
use cloudfn_store::secrets::{constant_time_eq, hash_secret};
use cloudfn_store::{
    ActivationQuery, AuditQuery, FunctionConfig, LogLine, SharedFunctions, StoreError,
};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// Largest component a deploy may upload.
pub const MAX_WASM_BYTES: usize = 64 * 1024 * 1024;

/// The settings key holding the admin token's SHA-256.
pub const ADMIN_TOKEN_SETTING: &str = "admin_token_sha256";

/// `POST /v1/envs/{env}/functions/{name}/invoke`: a call as any caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminInvoke {
    /// The event, as JSON text. On the wire it may also be the event itself (an object,
    /// array, number…): `{"event": {"a": 1}}` and `{"event": "{\"a\":1}"}` are the same call.
    /// Absent, it is `{}`.
    #[serde(deserialize_with = "event_text", default = "empty_event")]
    pub event: String,
    /// The caller.
    #[serde(default)]
    pub identity: Identity,
    /// SOURCE (default `wx_devtools`).
    #[serde(default)]
    pub source: Option<String>,
    /// A version instead of the active one.
    #[serde(default)]
    pub version: Option<u32>,
}

fn empty_event() -> String {
    "{}".into()
}

/// A JSON string is taken as the event's JSON text (as the CLI sends it); any other JSON
/// value is the event itself.
fn event_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(text) => text,
        event => event.to_string(),
    })
}

/// What an admin invocation returns: the record and the result or error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminInvocation {
    /// The call's id.
    pub request_id: String,
    /// The version that ran.
    pub version: Option<u32>,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Peak linear memory in bytes.
    pub peak_memory: u64,
    /// The call's logs.
    pub logs: Vec<LogLine>,
    /// The JSON result, on success.
    pub result: Option<String>,
    /// `{errcode, errmsg}`, on failure.
    pub error: Option<Value>,
}

impl AdminInvoke {
    /// The pipeline call it stands for: the app the identity names goes through the same
    /// checks as over HTTP (see `Caller::named`). An identity no real caller has is refused
    /// here, for the admin API and the CLI's local runs alike ([`Identity::check`]).
    pub fn into_call(self, env: &str, name: &str) -> Result<Call, String> {
        self.identity.check()?;
        let mut request = InvokeRequest::new(
            env,
            name,
            self.event,
            self.source.as_deref().unwrap_or("wx_devtools"),
        );
        request.version = self.version;
        Ok(Call::named(request, self.identity))
    }
}

impl From<Invocation> for AdminInvocation {
    fn from(inv: Invocation) -> Self {
        let (result, error) = match inv.result {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e.to_json())),
        };
        AdminInvocation {
            request_id: inv.request_id,
            version: inv.version,
            duration_us: inv.duration.as_micros() as u64,
            peak_memory: inv.peak_memory as u64,
            logs: inv.logs,
            result,
            error,
        }
    }
}

/// The admin endpoints, and the web console under `/console`.
#[derive(Clone)]
pub struct AdminApi {
    /// The host.
    pub host: Arc<Host>,
    /// SHA-256 of the bearer token.
    pub token_sha256: String,
    /// The console (its login takes the same token).
    pub console: Arc<crate::console::Console>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &json!({ "error": message.into() }))
}

/// Whether `token` is the admin token whose SHA-256 is `sha256` (constant time): the bearer
/// token of the API and the console's login alike.
pub(crate) fn token_matches(token: &str, sha256: &str) -> bool {
    constant_time_eq(hash_secret(token.trim()).as_bytes(), sha256.as_bytes())
}

/// The HTTP status of a store error, for the API and the console alike.
pub(crate) fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::InvalidName(_) | StoreError::InvalidWasm(_) | StoreError::InvalidConfig(_) => {
            StatusCode::BAD_REQUEST
        }
        StoreError::EnvNotFound(_)
        | StoreError::AppNotFound(_)
        | StoreError::FunctionNotFound { .. }
        | StoreError::VersionNotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::EnvExists(_) | StoreError::Refused(_) => StatusCode::CONFLICT,
        StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
        StoreError::ShareNotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::InvalidRules(_) => StatusCode::BAD_REQUEST,
        StoreError::Storage(err) => {
            tracing::error!("storage error (admin API or console): {err:#}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn store_error(e: StoreError) -> Response<Body> {
    error(store_status(&e), e.to_string())
}

fn ok<T: Serialize>(value: &T) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::to_value(value).expect("admin types serialize"),
    )
}

/// A JSON body of at most 1 MB. Every admin body refuses fields it does not know (serde's
/// `deny_unknown_fields` names the field and the accepted ones): a misspelt key must not be
/// dropped silently, since its absence can widen what the request does (a share of every
/// function, a call with no caller).
async fn json_body<T: for<'de> Deserialize<'de>>(body: Incoming) -> Result<T, Response<Body>> {
    let bytes = read_body(body, 1024 * 1024)
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "the JSON body is over 1 MB"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    appid: String,
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEnv {
    env: String,
    owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    to: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharingSwitch {
    on: bool,
}

/// `POST /v1/apps/{appid}/webhook`: a URL, or null to remove it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookUrl {
    url: Option<String>,
}

/// `POST /v1/apps/{appid}/upstream` (the app's upstream AppSecret) and
/// `POST /v1/apps/{appid}/taobao-secret` (its Taobao signing secret): the secret, or null to
/// forget it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSecret {
    secret: Option<String>,
}

/// `POST /v1/shares/unbind`: end every share of `owner`'s envs with `to`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unbind {
    /// The app whose envs are shared.
    pub owner: String,
    /// The app they are shared with.
    pub to: String,
    /// The side ending it (default: the owner).
    #[serde(default)]
    pub acting: Option<String>,
}

/// `POST /v1/shares`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    /// The env to share.
    pub env: String,
    /// The app to share it with.
    pub to: String,
    /// Permissions, e.g. `["functions:invoke"]`.
    pub perms: Vec<String>,
    /// `*` (default) or `a,b`.
    pub functions: Option<String>,
    /// The app making the change (default: the env's owner).
    pub acting: Option<String>,
}

impl AdminApi {
    /// Routes one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if path == "/metrics" && req.method() == Method::GET {
            return text(
                StatusCode::OK,
                self.host.metrics_text(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            );
        }
        if path == "/console" || path.starts_with("/console/") {
            return self.console.handle(req).await;
        }
        if path == "/" && req.method() == Method::GET {
            return crate::console::redirect(false, "/console");
        }
        if path == "/healthz" {
            return json(StatusCode::OK, &json!({ "ok": true }));
        }
        if path == "/readyz" {
            // Ready once the state is loaded (the host exists) and the store is reachable: a
            // host that cannot hear about changes made elsewhere must not take calls.
            return if self.host.ready() {
                json(StatusCode::OK, &json!({ "ready": true }))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({ "ready": false, "reason": "the store is unreachable" }),
                )
            };
        }
        let bearer = header(req.headers(), "authorization");
        let authorized = bearer
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| token_matches(t, &self.token_sha256));
        if !authorized {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong admin token (Authorization: Bearer TOKEN)",
            );
        }
        let segments = crate::http::path_segments(&path);
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        let store = self.host.store();
        // `?acting=APPID`: an app acting through the operator's token, held to what it may do.
        let query = query_map(req.uri().query());
        let actor = Actor::acting(query.get("acting").map(String::as_str));
        match (method, segs.as_slice()) {
            (Method::GET, ["v1", "apps"]) => {
                store.apps().await.map_or_else(store_error, |a| ok(&a))
            }
            (Method::POST, ["v1", "apps"]) => match json_body::<NewApp>(req.into_body()).await {
                Ok(n) => self
                    .host
                    .create_app(&n.appid, n.subject.as_deref())
                    .await
                    .map_or_else(store_error, |c| ok(&c)),
                Err(r) => r,
            },
            (Method::POST, ["v1", "apps", appid, "rotate-secret"]) => self
                .host
                .rotate_secret(appid)
                .await
                .map_or_else(store_error, |c| ok(&c)),
            (Method::POST, ["v1", "apps", appid, "revoke-sessions"]) => self
                .host
                .revoke_sessions(appid)
                .await
                .map_or_else(store_error, |g| ok(&json!({ "generation": g }))),
            (Method::GET, ["v1", "envs"]) => {
                store.envs().await.map_or_else(store_error, |e| ok(&e))
            }
            (Method::POST, ["v1", "envs"]) => match json_body::<NewEnv>(req.into_body()).await {
                Ok(n) => self
                    .host
                    .create_env_for_app(&n.env, &n.owner)
                    .await
                    .map_or_else(store_error, |e| ok(&e)),
                Err(r) => r,
            },
            (Method::GET, ["v1", "envs", env, "functions"]) => self
                .host
                .functions_as(&actor, env)
                .await
                .map_or_else(store_error, |f| ok(&f)),
            (Method::PUT, ["v1", "envs", env, "functions", name]) => {
                self.deploy(&actor, env, name, req).await
            }
            (Method::DELETE, ["v1", "envs", env, "functions", name]) => self
                .host
                .remove_as(
                    &actor,
                    env,
                    name,
                    query.get("force").is_some_and(|v| v == "true"),
                )
                .await
                .map_or_else(store_error, |()| ok(&json!({ "removed": name }))),
            (Method::GET, ["v1", "envs", env, "functions", name, "versions"]) => self
                .host
                .versions_as(&actor, env, name)
                .await
                .map_or_else(store_error, |v| ok(&v)),
            (Method::POST, ["v1", "envs", env, "functions", name, "rollback"]) => {
                match json_body::<Rollback>(req.into_body()).await {
                    Ok(r) => self
                        .host
                        .rollback_as(&actor, env, name, r.to)
                        .await
                        .map_or_else(store_error, |()| ok(&json!({ "active_version": r.to }))),
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "envs", env, "functions", name, "invoke"]) => {
                match json_body::<AdminInvoke>(req.into_body()).await {
                    Ok(call) => match call.into_call(env, name) {
                        Err(why) => error(StatusCode::BAD_REQUEST, why),
                        Ok(call) => ok(&AdminInvocation::from(self.host.call(call).await)),
                    },
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "apps", appid, "sharing"]) => {
                match json_body::<SharingSwitch>(req.into_body()).await {
                    Ok(b) => self
                        .host
                        .set_sharing(appid, b.on)
                        .await
                        .map_or_else(store_error, |()| {
                            ok(&json!({ "appid": appid, "sharing": b.on }))
                        }),
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "apps", appid, "webhook"]) => {
                match json_body::<WebhookUrl>(req.into_body()).await {
                    Ok(w) => self
                        .host
                        .set_webhook(appid, w.url.as_deref())
                        .await
                        .map_or_else(store_error, |secret| {
                            ok(&json!({ "appid": appid, "url": w.url, "secret": secret }))
                        }),
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "apps", appid, "upstream"]) => {
                match json_body::<UpstreamSecret>(req.into_body()).await {
                    Ok(u) => self
                        .host
                        .set_upstream_secret(appid, u.secret.as_deref())
                        .await
                        .map_or_else(store_error, |()| {
                            ok(&json!({ "appid": appid, "upstream_secret": u.secret.is_some() }))
                        }),
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "apps", appid, "taobao-secret"]) => {
                match json_body::<UpstreamSecret>(req.into_body()).await {
                    Ok(u) => self
                        .host
                        .set_taobao_secret(appid, u.secret.as_deref())
                        .await
                        .map_or_else(store_error, |()| {
                            ok(&json!({ "appid": appid, "taobao_secret": u.secret.is_some() }))
                        }),
                    Err(r) => r,
                }
            }
            (Method::POST, ["v1", "shares", "unbind"]) => {
                match json_body::<Unbind>(req.into_body()).await {
                    Ok(u) => self
                        .host
                        .unbind(&u.owner, &u.to, u.acting.as_deref())
                        .await
                        .map_or_else(store_error, |envs| {
                            ok(&json!({ "owner": u.owner, "to": u.to, "envs": envs }))
                        }),
                    Err(r) => r,
                }
            }
            (Method::GET, ["v1", "shares"]) => store
                .shares(
                    query.get("env").map(String::as_str),
                    query.get("app").map(String::as_str),
                )
                .await
                .map_or_else(store_error, |s| ok(&s)),
            (Method::POST, ["v1", "shares"]) => {
                match json_body::<NewShare>(req.into_body()).await {
                    Ok(n) => match SharedFunctions::parse(n.functions.as_deref().unwrap_or("*")) {
                        Ok(functions) => self
                            .host
                            .add_share(&n.env, &n.to, &n.perms, functions, n.acting.as_deref())
                            .await
                            .map_or_else(store_error, |s| ok(&s)),
                        Err(e) => store_error(e.into()),
                    },
                    Err(r) => r,
                }
            }
            (Method::DELETE, ["v1", "shares", env, to]) => self
                .host
                .remove_share(env, to, query.get("acting").map(String::as_str))
                .await
                .map_or_else(store_error, |()| {
                    ok(&json!({ "removed": { "env": env, "to": to } }))
                }),
            (Method::GET, ["v1", "envs", env, "rules"]) => {
                self.host.rules(env).await.map_or_else(store_error, |r| {
                    json(
                        StatusCode::OK,
                        &serde_json::from_str(&r).unwrap_or(Value::Null),
                    )
                })
            }
            (Method::PUT, ["v1", "envs", env, "rules"]) => {
                match read_body(req.into_body(), 1024 * 1024).await {
                    Ok(body) => match std::str::from_utf8(&body) {
                        Ok(text) => self.host.set_rules_as(&actor, env, text).await.map_or_else(
                            store_error,
                            |r| {
                                json(
                                    StatusCode::OK,
                                    &serde_json::from_str(&r).unwrap_or(Value::Null),
                                )
                            },
                        ),
                        Err(_) => error(StatusCode::BAD_REQUEST, "the rules must be UTF-8 JSON"),
                    },
                    Err(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "the rules are over 1 MB"),
                }
            }
            (Method::GET, ["v1", "envs", env, "activations"]) => {
                let outcome = match query.get("outcome").map(String::as_str) {
                    None | Some("") => None,
                    Some(o) => match cloudfn_store::Outcome::parse(o) {
                        Some(o) => Some(o),
                        None => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                format!("outcome {o:?} is not one of ok, error, denied"),
                            );
                        }
                    },
                };
                let records = ActivationQuery {
                    env: env.to_string(),
                    name: query.get("name").cloned(),
                    after: query.get("after").and_then(|a| a.parse().ok()),
                    before: query.get("before").and_then(|b| b.parse().ok()),
                    limit: query.get("limit").and_then(|l| l.parse().ok()),
                    outcome,
                    since_ms: query.get("since_ms").and_then(|s| s.parse().ok()),
                    ..Default::default()
                };
                self.host
                    .activations_as(&actor, &records)
                    .await
                    .map_or_else(store_error, |a| ok(&a))
            }
            (Method::GET, ["v1", "audit"]) => {
                let q = AuditQuery {
                    env: query.get("env").cloned(),
                    app: query.get("app").cloned(),
                    after: query.get("after").and_then(|a| a.parse().ok()),
                    limit: query.get("limit").and_then(|l| l.parse().ok()),
                };
                store
                    .audit_log(&q)
                    .await
                    .map_or_else(store_error, |a| ok(&a))
            }
            _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
        }
    }

    async fn deploy(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let config: FunctionConfig = match header(&parts.headers, "cloudfn-config") {
            Some(c) => match FunctionConfig::from_client_json(&c) {
                Ok(c) => c,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("invalid cloudfn-config header: {e}"),
                    );
                }
            },
            None => FunctionConfig::default(),
        };
        let wasm = match read_body(body, MAX_WASM_BYTES).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the component is over {limit} bytes"),
                );
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        };
        self.host
            .deploy_as(actor, env, name, &wasm, config)
            .await
            .map_or_else(store_error, |v| ok(&v))
    }
}
