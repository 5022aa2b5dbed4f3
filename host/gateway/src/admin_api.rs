//! The admin API, on its own listener and behind a bearer token: apps, envs, deploys
//! (wasm upload), functions, versions, rollback, removal, invocation, activation records, and
//! Prometheus `/metrics`. The CLI speaks it, over the network (`--server URL`) or in-process on a
//! data dir ([`AdminApi::without_console`]). Its routes are declared once,
//! with axum ([`routes`]: `Router`, `State`, typed extractors, store errors turned into replies
//! by `IntoResponse`). `/console` is the web console ([`crate::console`]), with its own login
//! and its own router.

use crate::http::{Body, BodyError, QueryMap, header, json, query_param, read_body, text};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post, put};
use cloudfn_invoke::{Actor, Call, Control, Host, Identity, Invocation, InvokeRequest};
use cloudfn_store::secrets::{constant_time_eq, hash_secret};
use cloudfn_store::{
    ActivationQuery, AuditQuery, FunctionConfig, LogLine, SharedFunctions, StoreError,
};
use http_body_util::{BodyExt, Full};
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use tower_service::Service;

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
    /// The console's routes (its login takes the same token); none for the API alone.
    console: Option<Router>,
    /// The API's routes, declared once ([`routes`]).
    router: Router,
}

/// What the handlers share.
struct Api {
    /// Management (every change and the reads an actor is held to), and through it the host
    /// (calls, metrics, readiness, plain reads of the store).
    control: Control,
    /// SHA-256 of the bearer token.
    token_sha256: String,
}

type ApiState = State<Arc<Api>>;

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

/// A store error in the API's shape; a storage failure with its whole chain of causes (the
/// operator's to read, as the CLI printed it before it went through the API).
fn store_error(e: StoreError) -> Response<Body> {
    error(store_status(&e), format!("{e:#}"))
}

fn ok<T: Serialize>(value: &T) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::to_value(value).expect("admin types serialize"),
    )
}

/// A refusal in the API's shape (`{"error": ...}` with its status): a store error (its status
/// from [`store_status`]) or the API's own.
enum ApiError {
    Store(StoreError),
    Status(StatusCode, String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        match self {
            ApiError::Store(e) => store_error(e),
            ApiError::Status(status, message) => error(status, message),
        }
        .into_response()
    }
}

/// What a handler answers: its reply, or a refusal in the API's shape.
type Reply = Result<Response<Body>, ApiError>;

/// A JSON body of at most `MAX_MB` MB (1 unless a route says otherwise). Every admin body
/// refuses fields it does not know (serde's `deny_unknown_fields` names the field and the
/// accepted ones): a misspelt key must not be dropped silently, since its absence can widen
/// what the request does (a share of every function, a call with no caller).
struct JsonBody<T, const MAX_MB: usize = 1>(T);

/// What `POST …/invoke` may carry: an event within the host's limit (6 MB by default), as a JSON
/// string, whose escapes make it longer.
const INVOKE_BODY_MB: usize = 32;

impl<S: Send + Sync, T: for<'de> Deserialize<'de>, const MAX_MB: usize> FromRequest<S>
    for JsonBody<T, MAX_MB>
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req.into_body(), MAX_MB * 1024 * 1024)
            .await
            .map_err(|_| {
                ApiError::Status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the JSON body is over {MAX_MB} MB"),
                )
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::Status(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
        })
    }
}

/// A route's path parameters; one that does not decode (not UTF-8) is refused in the API's
/// shape, like any other bad request.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Params(t))
            .map_err(|e| ApiError::Status(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// `?acting=APPID`: an app acting through the operator's token, held to what it may do.
struct Acting(Actor);

impl<S: Send + Sync> FromRequestParts<S> for Acting {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let acting = query_param(parts.uri.query(), "acting");
        Ok(Acting(Actor::acting(acting.as_deref())))
    }
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
    /// The admin API of `host`, whose operator token has SHA-256 `token_sha256`, and the console.
    pub fn new(host: Arc<Host>, token_sha256: String, console: crate::console::Console) -> Self {
        AdminApi {
            console: Some(crate::console::router(console)),
            ..AdminApi::without_console(host, token_sha256)
        }
    }

    /// The API of `host` alone, without the console: what the CLI calls in-process on a data
    /// dir, so a command is the same request whether it goes to a server or not.
    pub fn without_console(host: Arc<Host>, token_sha256: String) -> Self {
        let api = Api {
            control: Control::new(host),
            token_sha256,
        };
        AdminApi {
            console: None,
            router: routes(Arc::new(api)),
        }
    }

    /// Serves one request: the console's routes under `/console`, the API's elsewhere. The
    /// body is the listener's (`Incoming`) or, in-process, the CLI's.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let path = req.uri().path();
        let router = match &self.console {
            Some(console) if path == "/console" || path.starts_with("/console/") => console,
            _ => &self.router,
        };
        let Ok(response) = router.clone().call(req).await;
        let (mut parts, body) = response.into_parts();
        // axum names a path's methods (`Allow`) on any answer to another method, a refusal
        // too: that would show which routes exist to a caller without the token or a session.
        if parts.status != StatusCode::METHOD_NOT_ALLOWED {
            parts.headers.remove(hyper::header::ALLOW);
        }
        // The handlers' bodies are whole already (`Full`): taking them back costs a copy of
        // a small JSON reply on the admin listener.
        match body.collect().await {
            Ok(bytes) => Response::from_parts(parts, Full::new(bytes.to_bytes())),
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("writing the response: {e}"),
            ),
        }
    }
}

/// Every admin route, declared once: `/v1/...` behind the bearer token (a wrong or missing
/// token is refused before anything is read, on a route that does not exist too), then the
/// unauthenticated `/metrics`, `/healthz`, `/readyz` and `/`.
fn routes(api: Arc<Api>) -> Router {
    let v1 = Router::new()
        .route("/v1/apps", get(apps).post(create_app))
        .route("/v1/apps/{appid}/rotate-secret", post(rotate_secret))
        .route("/v1/apps/{appid}/revoke-sessions", post(revoke_sessions))
        .route("/v1/apps/{appid}/sharing", post(set_sharing))
        .route("/v1/apps/{appid}/webhook", post(set_webhook))
        .route("/v1/apps/{appid}/upstream", post(set_upstream_secret))
        .route("/v1/apps/{appid}/taobao-secret", post(set_taobao_secret))
        .route("/v1/envs", get(envs).post(create_env))
        .route("/v1/envs/{env}/functions", get(functions))
        .route(
            "/v1/envs/{env}/functions/{name}",
            put(deploy).delete(remove),
        )
        .route("/v1/envs/{env}/functions/{name}/versions", get(versions))
        .route("/v1/envs/{env}/functions/{name}/rollback", post(rollback))
        .route("/v1/envs/{env}/functions/{name}/invoke", post(invoke))
        .route("/v1/envs/{env}/rules", get(rules).put(set_rules))
        .route("/v1/envs/{env}/activations", get(activations))
        .route("/v1/shares", get(shares).post(add_share))
        .route("/v1/shares/unbind", post(unbind))
        .route("/v1/shares/{env}/{to}", delete(remove_share))
        .route("/v1/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(api.clone(), bearer));
    Router::new()
        .merge(v1)
        .route("/metrics", get(metrics))
        .route("/healthz", any(healthz))
        .route("/readyz", any(readyz))
        .route(
            "/",
            get(|| async { crate::console::redirect(false, "/console") }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(api)
}

/// The bearer token the `/v1` routes need.
async fn bearer(
    State(api): ApiState,
    req: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    if !authorized(&api, req.headers()) {
        return unauthorized().into_response();
    }
    next.run(req).await
}

fn authorized(api: &Api, headers: &hyper::HeaderMap) -> bool {
    header(headers, "authorization")
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| token_matches(t, &api.token_sha256))
}

fn unauthorized() -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token (Authorization: Bearer TOKEN)",
    )
}

/// No such endpoint (or not with this method): said only to a caller with the token, so the
/// API's shape is not shown to anyone else.
async fn not_found(State(api): ApiState, uri: Uri, headers: hyper::HeaderMap) -> Response<Body> {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    error(
        StatusCode::NOT_FOUND,
        format!("no admin endpoint {}", uri.path()),
    )
}

async fn metrics(State(api): ApiState) -> Response<Body> {
    text(
        StatusCode::OK,
        api.control.host().metrics_text(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
}

async fn healthz() -> Response<Body> {
    json(StatusCode::OK, &json!({ "ok": true }))
}

/// Ready once the state is loaded (the host exists) and the store is reachable: a host that
/// cannot hear about changes made elsewhere must not take calls.
async fn readyz(State(api): ApiState) -> Response<Body> {
    if api.control.host().ready() {
        json(StatusCode::OK, &json!({ "ready": true }))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "reason": "the store is unreachable" }),
        )
    }
}

async fn apps(State(api): ApiState) -> Reply {
    Ok(ok(&api.control.host().store().apps().await?))
}

async fn create_app(State(api): ApiState, JsonBody(n): JsonBody<NewApp>) -> Reply {
    Ok(ok(&api
        .control
        .create_app(&n.appid, n.subject.as_deref())
        .await?))
}

async fn rotate_secret(State(api): ApiState, Params(appid): Params<String>) -> Reply {
    Ok(ok(&api.control.rotate_secret(&appid).await?))
}

async fn revoke_sessions(State(api): ApiState, Params(appid): Params<String>) -> Reply {
    let generation = api.control.revoke_sessions(&appid).await?;
    Ok(ok(&json!({ "generation": generation })))
}

async fn set_sharing(
    State(api): ApiState,
    Params(appid): Params<String>,
    JsonBody(b): JsonBody<SharingSwitch>,
) -> Reply {
    api.control.set_sharing(&appid, b.on).await?;
    Ok(ok(&json!({ "appid": appid, "sharing": b.on })))
}

async fn set_webhook(
    State(api): ApiState,
    Params(appid): Params<String>,
    JsonBody(w): JsonBody<WebhookUrl>,
) -> Reply {
    let secret = api.control.set_webhook(&appid, w.url.as_deref()).await?;
    Ok(ok(
        &json!({ "appid": appid, "url": w.url, "secret": secret }),
    ))
}

async fn set_upstream_secret(
    State(api): ApiState,
    Params(appid): Params<String>,
    JsonBody(u): JsonBody<UpstreamSecret>,
) -> Reply {
    api.control
        .set_upstream_secret(&appid, u.secret.as_deref())
        .await?;
    Ok(ok(
        &json!({ "appid": appid, "upstream_secret": u.secret.is_some() }),
    ))
}

async fn set_taobao_secret(
    State(api): ApiState,
    Params(appid): Params<String>,
    JsonBody(u): JsonBody<UpstreamSecret>,
) -> Reply {
    api.control
        .set_taobao_secret(&appid, u.secret.as_deref())
        .await?;
    Ok(ok(
        &json!({ "appid": appid, "taobao_secret": u.secret.is_some() }),
    ))
}

async fn envs(State(api): ApiState) -> Reply {
    Ok(ok(&api.control.host().store().envs().await?))
}

async fn create_env(State(api): ApiState, JsonBody(n): JsonBody<NewEnv>) -> Reply {
    Ok(ok(&api
        .control
        .create_env_for_app(&n.env, &n.owner)
        .await?))
}

async fn functions(
    State(api): ApiState,
    Acting(actor): Acting,
    Params(env): Params<String>,
) -> Reply {
    Ok(ok(&api.control.functions_as(&actor, &env).await?))
}

async fn deploy(
    State(api): ApiState,
    Acting(actor): Acting,
    Params((env, name)): Params<(String, String)>,
    headers: hyper::HeaderMap,
    body: axum::body::Body,
) -> Reply {
    // Read as UTF-8, not as visible ASCII alone: a variable's value may be any text, and a
    // header that cannot be read must refuse the deploy, not deploy with the defaults.
    let config = match headers.get("cloudfn-config") {
        Some(c) => std::str::from_utf8(c.as_bytes())
            .map_err(|_| "the header is not UTF-8".to_string())
            .and_then(FunctionConfig::from_client_json)
            .map_err(|e| {
                ApiError::Status(
                    StatusCode::BAD_REQUEST,
                    format!("invalid cloudfn-config header: {e}"),
                )
            })?,
        None => FunctionConfig::default(),
    };
    let wasm = read_body(body, MAX_WASM_BYTES).await.map_err(|e| match e {
        BodyError::TooLarge(limit) => ApiError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the component is over {limit} bytes"),
        ),
        e => ApiError::Status(StatusCode::BAD_REQUEST, e.to_string()),
    })?;
    Ok(ok(&api
        .control
        .deploy_as(&actor, &env, &name, &wasm, config)
        .await?))
}

async fn remove(
    State(api): ApiState,
    Acting(actor): Acting,
    Params((env, name)): Params<(String, String)>,
    QueryMap(query): QueryMap,
) -> Reply {
    let force = query.get("force").is_some_and(|v| v == "true");
    api.control.remove_as(&actor, &env, &name, force).await?;
    Ok(ok(&json!({ "removed": name })))
}

async fn versions(
    State(api): ApiState,
    Acting(actor): Acting,
    Params((env, name)): Params<(String, String)>,
) -> Reply {
    Ok(ok(&api.control.versions_as(&actor, &env, &name).await?))
}

async fn rollback(
    State(api): ApiState,
    Acting(actor): Acting,
    Params((env, name)): Params<(String, String)>,
    JsonBody(r): JsonBody<Rollback>,
) -> Reply {
    api.control.rollback_as(&actor, &env, &name, r.to).await?;
    Ok(ok(&json!({ "active_version": r.to })))
}

async fn invoke(
    State(api): ApiState,
    Params((env, name)): Params<(String, String)>,
    JsonBody(call): JsonBody<AdminInvoke, INVOKE_BODY_MB>,
) -> Reply {
    let call = call
        .into_call(&env, &name)
        .map_err(|why| ApiError::Status(StatusCode::BAD_REQUEST, why))?;
    Ok(ok(&AdminInvocation::from(
        api.control.host().call(call).await,
    )))
}

/// Rules are JSON text; the reply is the rules as JSON.
fn rules_reply(rules: &str) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::from_str(rules).unwrap_or(Value::Null),
    )
}

async fn rules(State(api): ApiState, Params(env): Params<String>) -> Reply {
    Ok(rules_reply(&api.control.rules(&env).await?))
}

async fn set_rules(
    State(api): ApiState,
    Acting(actor): Acting,
    Params(env): Params<String>,
    body: axum::body::Body,
) -> Reply {
    let body = read_body(body, 1024 * 1024).await.map_err(|_| {
        ApiError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the rules are over 1 MB".into(),
        )
    })?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::Status(
            StatusCode::BAD_REQUEST,
            "the rules must be UTF-8 JSON".into(),
        )
    })?;
    Ok(rules_reply(
        &api.control.set_rules_as(&actor, &env, text).await?,
    ))
}

async fn activations(
    State(api): ApiState,
    Acting(actor): Acting,
    Params(env): Params<String>,
    QueryMap(query): QueryMap,
) -> Reply {
    let outcome = match query.get("outcome").map(String::as_str) {
        None | Some("") => None,
        Some(o) => Some(cloudfn_store::Outcome::parse(o).ok_or_else(|| {
            ApiError::Status(
                StatusCode::BAD_REQUEST,
                format!("outcome {o:?} is not one of ok, error, denied"),
            )
        })?),
    };
    let records = ActivationQuery {
        env,
        name: query.get("name").cloned(),
        after: query.get("after").and_then(|a| a.parse().ok()),
        before: query.get("before").and_then(|b| b.parse().ok()),
        limit: query.get("limit").and_then(|l| l.parse().ok()),
        outcome,
        since_ms: query.get("since_ms").and_then(|s| s.parse().ok()),
        ..Default::default()
    };
    Ok(ok(&api.control.activations_as(&actor, &records).await?))
}

async fn shares(State(api): ApiState, QueryMap(query): QueryMap) -> Reply {
    let shares = api
        .control
        .host()
        .store()
        .shares(
            query.get("env").map(String::as_str),
            query.get("app").map(String::as_str),
        )
        .await?;
    Ok(ok(&shares))
}

async fn add_share(State(api): ApiState, JsonBody(n): JsonBody<NewShare>) -> Reply {
    let functions = SharedFunctions::parse(n.functions.as_deref().unwrap_or("*"))
        .map_err(|e| ApiError::Store(e.into()))?;
    let share = api
        .control
        .add_share(&n.env, &n.to, &n.perms, functions, n.acting.as_deref())
        .await?;
    Ok(ok(&share))
}

async fn unbind(State(api): ApiState, JsonBody(u): JsonBody<Unbind>) -> Reply {
    let envs = api
        .control
        .unbind(&u.owner, &u.to, u.acting.as_deref())
        .await?;
    Ok(ok(&json!({ "owner": u.owner, "to": u.to, "envs": envs })))
}

async fn remove_share(
    State(api): ApiState,
    Params((env, to)): Params<(String, String)>,
    QueryMap(query): QueryMap,
) -> Reply {
    api.control
        .remove_share(&env, &to, query.get("acting").map(String::as_str))
        .await?;
    Ok(ok(&json!({ "removed": { "env": env, "to": to } })))
}

async fn audit(State(api): ApiState, QueryMap(query): QueryMap) -> Reply {
    let q = AuditQuery {
        env: query.get("env").cloned(),
        app: query.get("app").cloned(),
        after: query.get("after").and_then(|a| a.parse().ok()),
        limit: query.get("limit").and_then(|l| l.parse().ok()),
    };
    Ok(ok(&api.control.host().store().audit_log(&q).await?))
}
