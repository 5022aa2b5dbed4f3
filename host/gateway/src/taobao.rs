//! The Taobao cloud-application gateway (protocol §10, seed 002): what `cloud.application.
//! httpRequest` reaches. `GET`/`POST /{path}` (POST only `application/json`) with `X-TB-ENV:
//! test|online` (`cloud.init({env})`) goes to the calling app's cloud application: its test or
//! online env and its HTTP function (or the one `X-TB-CLOUD-APP-ID` names, `exts.cloudAppId`).
//! cloudfn sets the gateway's system query parameters, overwriting a client's of the same
//! names, and `sign` (§10) with the env owner's Taobao signing secret (`cloudfn app set APPID
//! --taobao-secret`, sealed; never a cloudfn credential), so the function can verify them.
//! The function must answer the `{success, data, errorCode, errorMessage}` envelope; other
//! fields are dropped and anything else is a gateway error. `X-TB-TIMEOUT` (ms, default 3000,
//! max 10000), `X-TB-CACHE-TYPE` (0–3) and `X-TB-CACHE-TIME` (s, default 300, max 3600) are
//! `exts.timeout`, `exts.cacheType` and `exts.cacheTime`; requests are at most 128 KB. Errors
//! are the envelope with `success: false`.

use crate::container::{self, set_header};
use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{Body, BodyError};
use async_trait::async_trait;
use bytes::Bytes;
use cloudfn_invoke::{
    AppCaller, CLIENT_SOURCE, Call, Caller, HttpCall, HttpRequest, Invocation, InvokeError,
    InvokeRequest, Stamp,
};
use cloudfn_store::TokenPolicy;
use dashmap::DashMap;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest request body (protocol §8).
pub const MAX_REQUEST: usize = 128 * 1024;
/// Largest response body taken from a function.
pub const MAX_RESPONSE: usize = 1024 * 1024;
/// Time limit when the request sets none, and the most it may set (protocol §8).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);
/// The most a request may set.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(10_000);
/// How long a cached response lives when the request does not say, and at most.
pub const DEFAULT_CACHE_TIME: u64 = 300;
/// The longest a request may ask a response to be cached.
pub const MAX_CACHE_TIME: u64 = 3600;
/// The bytes of responses the cache holds; past it the cache starts over.
const CACHE_BYTES: usize = 64 << 20;

/// The query parameters only the gateway sets (protocol §10).
pub const SYSTEM_PARAMS: &[&str] = &[
    "app_key",
    "user_nick",
    "open_id",
    "env",
    "mini_app_id",
    "access_token",
    "sign",
    "mix_nick",
    "source_app_id",
    "app_owner_open_id",
];

/// The header telling whether a response came from the cache (`hit`) or the function (`miss`).
pub const CACHE_HEADER: &str = "x-cloudfn-cache";

/// An app's cloud application: its two envs and its (default) HTTP function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaobaoApp {
    /// The env of `env=test`.
    pub test: String,
    /// The env of `env=online`.
    pub online: String,
    /// The HTTP function requests go to unless they name another.
    pub service: String,
}

impl std::str::FromStr for TaobaoApp {
    type Err = String;
    /// `TEST_ENV,ONLINE_ENV,SERVICE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [test, online, service] if !test.is_empty() && !online.is_empty() => {
                cloudfn_store::validate_function_name(service).map_err(|e| e.to_string())?;
                Ok(TaobaoApp {
                    test: test.to_string(),
                    online: online.to_string(),
                    service: service.to_string(),
                })
            }
            _ => Err(format!("expected TEST_ENV,ONLINE_ENV,SERVICE, got {s:?}")),
        }
    }
}

/// The sign of protocol §10: parameters other than `sign`, sorted by key, empty values
/// skipped, joined as `k1v1k2v2…`; MD5 of `secret + joined + body + secret`, upper-case hex.
pub fn sign(secret: &str, params: &[(String, String)], body: &[u8]) -> String {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| k != "sign" && !v.is_empty())
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut md5 = Md5::new();
    md5.update(secret.as_bytes());
    for (k, v) in sorted {
        md5.update(k.as_bytes());
        md5.update(v.as_bytes());
    }
    md5.update(body);
    md5.update(secret.as_bytes());
    hex::encode_upper(md5.finalize())
}

/// The Taobao dialect.
pub struct Taobao {
    policy: TokenPolicy,
    apps: HashMap<String, TaobaoApp>,
    cache: Cache,
}

impl Taobao {
    /// The dialect with token lifetimes `policy` and each app's cloud application.
    pub fn new(policy: TokenPolicy, apps: HashMap<String, TaobaoApp>) -> Taobao {
        Taobao {
            policy,
            apps,
            cache: Cache::default(),
        }
    }
}

/// A gateway error: the envelope with `success: false`.
fn error(status: StatusCode, code: impl ToString, message: impl Into<String>) -> Response<Body> {
    let body = json!({
        "success": false,
        "errorCode": code.to_string(),
        "errorMessage": message.into(),
    });
    container::error_response(status, &body, None)
}

/// A failed call as the envelope.
fn call_error(e: &InvokeError, request_id: &str) -> Response<Body> {
    let code = match e {
        InvokeError::Timeout { .. } => "GATEWAY_TIMEOUT".to_string(),
        e => e.errcode().to_string(),
    };
    let body = json!({ "success": false, "errorCode": code, "errorMessage": e.to_string() });
    container::error_response(container::status_of(e), &body, Some(request_id))
}

/// A request past every check, ready to call or to answer from the cache.
struct Checked {
    caller: AppCaller,
    request: InvokeRequest,
    http: Arc<HttpCall>,
    timeout: Duration,
    /// The cache key and lifetime, when the request asks for caching.
    cache: Option<(String, Duration)>,
}

#[async_trait]
impl Dialect for Taobao {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.headers().contains_key("x-tb-env")
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        let a = match self.request(cx, req, peer).await {
            Ok(a) => a,
            Err(resp) => return Accepted::Answer(*resp),
        };
        let call = Call {
            deadline: Some(Instant::now() + a.timeout),
            http: Some(a.http),
            ..Call::new(a.request, Caller::App(a.caller))
        };
        if let Some((key, _)) = &a.cache
            && let Some(hit) = self.cache.get(key)
        {
            // Cached for whoever may call the function now: a share ended or a rule changed
            // since counts at once.
            return Accepted::Answer(match cx.host.check_access(&call).await {
                Ok(()) => cached(hit),
                Err(e) => call_error(&e, &cx.host.new_request_id()),
            });
        }
        let host = cx.host.clone();
        let inv = cx.detached(async move { host.call(call).await }).await;
        let request_id = inv.request_id.clone();
        let (status, body) = match outcome(inv) {
            Ok(answer) => answer,
            Err(resp) => return Accepted::Answer(*resp),
        };
        let caching = a.cache.is_some();
        if let Some((key, ttl)) = a.cache
            && status.is_success()
            && serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["success"] == json!(true))
        {
            let entry = Entry {
                status,
                body: body.clone(),
                expires: Instant::now() + ttl,
            };
            self.cache.put(key, entry);
        }
        let mut resp = answer(status, body, &request_id);
        if caching {
            resp.headers_mut()
                .insert(CACHE_HEADER, HeaderValue::from_static("miss"));
        }
        Accepted::Answer(resp)
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
        let request_id = inv.request_id.clone();
        match outcome(inv) {
            Ok((status, body)) => answer(status, body, &request_id),
            Err(resp) => *resp,
        }
    }
}

/// A call's envelope (status and body), or the error response.
fn outcome(inv: Invocation) -> Result<(StatusCode, Bytes), Box<Response<Body>>> {
    match (inv.result, inv.response) {
        (Ok(_), Some(resp)) => envelope(*resp, &inv.request_id),
        (Ok(_), None) => Err(Box::new(error(
            StatusCode::BAD_GATEWAY,
            "INVALID_RESPONSE",
            "no response",
        ))),
        (Err(e), _) => Err(Box::new(call_error(&e, &inv.request_id))),
    }
}

/// The envelope as a response.
fn answer(status: StatusCode, body: Bytes, request_id: &str) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(container::REQUEST_ID, id);
    }
    resp
}

/// The function's response reduced to the envelope, or a gateway error saying why it is not
/// one.
fn envelope(
    resp: cloudfn_invoke::HttpResponse,
    request_id: &str,
) -> Result<(StatusCode, Bytes), Box<Response<Body>>> {
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(&resp.body).ok();
    let Some(mut fields) = parsed.filter(|m| m.get("success").is_some_and(Value::is_boolean))
    else {
        let body = json!({
            "success": false,
            "errorCode": "INVALID_RESPONSE",
            "errorMessage": format!(
                "the function's response (HTTP {}) is not the {{success, data, errorCode, \
                 errorMessage}} envelope: a JSON object with a boolean success",
                resp.status.as_u16()
            ),
        });
        return Err(Box::new(container::error_response(
            StatusCode::BAD_GATEWAY,
            &body,
            Some(request_id),
        )));
    };
    let mut kept = serde_json::Map::new();
    for key in ["success", "data", "errorCode", "errorMessage"] {
        if let Some(v) = fields.remove(key) {
            kept.insert(key.to_string(), v);
        }
    }
    let body = serde_json::to_vec(&Value::Object(kept)).expect("JSON values serialize");
    Ok((resp.status, Bytes::from(body)))
}

impl Taobao {
    async fn request(
        &self,
        cx: &Context,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Checked, Box<Response<Body>>> {
        let fail = |status, code: &str, msg: String| Box::new(error(status, code, msg));
        let method = req.method().clone();
        if method != Method::GET && method != Method::POST {
            return Err(fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("only GET and POST, not {method}"),
            ));
        }
        let (parts, body) = req.into_parts();
        if method == Method::POST {
            let ct = crate::http::header(&parts.headers, "content-type").unwrap_or_default();
            if !ct.to_ascii_lowercase().starts_with("application/json") {
                return Err(fail(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_CONTENT_TYPE",
                    format!("a POST must be application/json, not {ct:?}"),
                ));
            }
        }
        // The access_token parameter is the gateway's to set: credentials come in the header.
        let who = container::authenticate(cx, self.policy, &parts.headers, None, peer)
            .await
            .map_err(|(code, msg)| Box::new(error(container::refusal_status(code), code, msg)))?;
        let appid = who.caller.appid.clone();
        let Some(app) = self.apps.get(&appid) else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                "NO_CLOUD_APP",
                format!(
                    "app {appid} has no cloud application (serve --taobao {appid}=TEST_ENV,ONLINE_ENV,SERVICE)"
                ),
            ));
        };
        let tb_env = crate::http::header(&parts.headers, "x-tb-env").unwrap_or_default();
        let env = match tb_env.as_str() {
            "test" => app.test.clone(),
            "online" => app.online.clone(),
            other => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ENV",
                    format!("env must be test or online, not {other:?}"),
                ));
            }
        };
        let service = match parts.headers.get("x-tb-cloud-app-id") {
            Some(v) => container::service_name(Some(v))
                .map_err(|m| fail(StatusCode::BAD_REQUEST, "INVALID_CLOUD_APP", m))?,
            None => app.service.clone(),
        };
        let number = |name: &str| -> Result<Option<u64>, Box<Response<Body>>> {
            match crate::http::header(&parts.headers, name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    fail(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER",
                        format!("{name} must be a number, not {v:?}"),
                    )
                }),
            }
        };
        let timeout = match number("x-tb-timeout")? {
            None => DEFAULT_TIMEOUT,
            Some(ms) if (1..=MAX_TIMEOUT.as_millis() as u64).contains(&ms) => {
                Duration::from_millis(ms)
            }
            Some(ms) => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER",
                    format!("timeout {ms} ms is not within 1..=10000 ms"),
                ));
            }
        };
        let cache_type = number("x-tb-cache-type")?;
        let cache_time = number("x-tb-cache-time")?.unwrap_or(DEFAULT_CACHE_TIME);
        if cache_type.is_some_and(|t| t > 3) || !(1..=MAX_CACHE_TIME).contains(&cache_time) {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER",
                format!(
                    "cacheType must be 0-3 and cacheTime 1-{MAX_CACHE_TIME} s, got {} and \
                     {cache_time}",
                    cache_type.map_or("none".to_string(), |t| t.to_string())
                ),
            ));
        }
        let body = container::read_request(cx, &appid, &parts.headers, body, MAX_REQUEST)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(limit) => fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "REQUEST_TOO_LARGE",
                    format!("request body over the {limit}-byte limit"),
                ),
                BodyError::Busy(e) => fail(StatusCode::SERVICE_UNAVAILABLE, "-501004", e),
                BodyError::Io(e) => fail(StatusCode::BAD_REQUEST, "-501007", e),
            })?;
        let snapshot = cx.host.snapshot().await.map_err(|e| {
            tracing::error!("taobao gateway: {e:#}");
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "-1",
                "system error".into(),
            )
        })?;
        // The env's owner signs, with its Taobao mini-program's own secret (the seed: "使用当前
        // 小程序appkey和secret加签"), kept sealed and set for this alone: never a cloudfn
        // credential nor the upstream AppSecret, since the function that checks `sign` holds
        // it. A missing env is the pipeline's to report.
        let owner = snapshot.env(&env).map(|e| e.owner_appid.clone());
        let secret = match &owner {
            Some(owner) => match cx.host.taobao_secret(owner).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    return Err(fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "NO_APP_SECRET",
                        format!(
                            "app {owner} has no Taobao signing secret: set its mini-program's \
                             secret with `cloudfn app set {owner} --taobao-secret @FILE`"
                        ),
                    ));
                }
                Err(e) => {
                    tracing::error!("taobao gateway: the signing secret of {owner}: {e:#}");
                    return Err(fail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "-1",
                        "system error".into(),
                    ));
                }
            },
            None => String::new(),
        };
        let user_params = container::query_without(parts.uri.query(), SYSTEM_PARAMS);
        let cache = cache_type.map(|kind| {
            let key = cache_key(
                kind,
                &who.caller,
                &env,
                &service,
                &method,
                parts.uri.path(),
                &user_params,
                &body,
            );
            (key, Duration::from_secs(cache_time))
        });
        let source = if who.user { CLIENT_SOURCE } else { "tb_http" };
        let request = InvokeRequest {
            default_timeout: timeout,
            ..InvokeRequest::new(&env, &service, String::new(), source)
        };
        let path = parts.uri.path().to_string();
        let http = HttpCall {
            request: HttpRequest {
                method,
                uri: hyper::Uri::from_static("/"),
                headers: container::forwardable(&parts.headers),
                body,
                max_response_bytes: MAX_RESPONSE,
            },
            stamp: stamp(Params {
                path,
                user: user_params,
                tb_env,
                owner: owner.unwrap_or_default(),
                secret,
            }),
        };
        Ok(Checked {
            caller: who.caller,
            request,
            http: Arc::new(http),
            timeout,
            cache,
        })
    }
}

/// What the stamp needs besides the caller: the client's own parameters and the signer.
struct Params {
    path: String,
    user: Vec<(String, String)>,
    tb_env: String,
    owner: String,
    secret: String,
}

/// Sets the system parameters (protocol §10) after the client's, and `sign` over all of them
/// and the body.
fn stamp(p: Params) -> Stamp {
    Arc::new(move |cx, req| {
        let caller_app = cx.from_appid.as_deref().or(cx.appid.as_deref());
        let openid = cx.from_openid.as_deref().or(cx.openid.as_deref());
        let mut params = p.user.clone();
        for (k, v) in [
            ("app_key", p.owner.as_str()),
            ("user_nick", ""),
            ("open_id", openid.unwrap_or("")),
            ("env", p.tb_env.as_str()),
            ("mini_app_id", p.owner.as_str()),
            // A user's credential is never handed to a function.
            ("access_token", ""),
            ("mix_nick", ""),
            ("source_app_id", caller_app.unwrap_or("")),
            ("app_owner_open_id", ""),
        ] {
            params.push((k.to_string(), v.to_string()));
        }
        let signature = sign(&p.secret, &params, &req.body);
        params.push(("sign".into(), signature));
        match container::path_with_query(&p.path, &params).parse() {
            Ok(uri) => req.uri = uri,
            Err(e) => tracing::warn!("taobao gateway: unusable path {}: {e}", p.path),
        }
        set_header(&mut req.headers, "x-forwarded-for", cx.client_ip.as_deref());
    })
}

/// The cache key of a request: the request itself (method, env, service, path, the client's
/// parameters sorted, the body) and, by `kind`, the app (0, 1) and the user (0, 2).
#[allow(clippy::too_many_arguments)]
fn cache_key(
    kind: u64,
    caller: &AppCaller,
    env: &str,
    service: &str,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let app = matches!(kind, 0 | 1).then_some(caller.appid.as_str());
    let user = matches!(kind, 0 | 2).then(|| caller.openid.as_deref().unwrap_or(""));
    let text = serde_json::to_vec(&json!([
        kind,
        app,
        user,
        env,
        service,
        method.as_str(),
        path,
        sorted
    ]))
    .expect("plain values serialize");
    let mut keyed = text;
    keyed.push(0);
    keyed.extend_from_slice(body);
    cloudfn_store::secrets::sha256_hex(&keyed)
}

/// A cached answer.
#[derive(Clone)]
struct Entry {
    status: StatusCode,
    body: Bytes,
    expires: Instant,
}

/// The response cache: entries by key until they expire, within [`CACHE_BYTES`] (past it,
/// the expired entries go, and if that is not enough, all of them).
#[derive(Default)]
struct Cache {
    entries: DashMap<String, Entry>,
    bytes: AtomicUsize,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Entry> {
        let entry = self.entries.get(key)?.clone();
        if entry.expires > Instant::now() {
            return Some(entry);
        }
        if let Some((_, gone)) = self.entries.remove(key) {
            self.bytes.fetch_sub(gone.body.len(), Ordering::Relaxed);
        }
        None
    }

    fn put(&self, key: String, entry: Entry) {
        let size = entry.body.len();
        if self.bytes.load(Ordering::Relaxed) + size > CACHE_BYTES {
            let now = Instant::now();
            self.entries.retain(|_, e| e.expires > now);
            if self.entries.iter().map(|e| e.body.len()).sum::<usize>() + size > CACHE_BYTES {
                self.entries.clear();
            }
            let held = self.entries.iter().map(|e| e.body.len()).sum();
            self.bytes.store(held, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes.fetch_sub(old.body.len(), Ordering::Relaxed);
        }
    }
}

/// A cached answer as a response.
fn cached(entry: Entry) -> Response<Body> {
    let mut resp = Response::new(http_body_util::Full::new(entry.body));
    *resp.status_mut() = entry.status;
    let headers = resp.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(CACHE_HEADER, HeaderValue::from_static("hit"));
    resp
}
