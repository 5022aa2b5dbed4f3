//! The mini-program dialect: what `wx.cloud` in a mini-program calls, with a user session
//! instead of an app's access token.
//!
//! - `POST /auth/code2session` `{appid, code}`: `wx.login()`'s code for a session
//!   (`{errcode: 0, errmsg: "ok", session, expires_in, openid, unionid?}`, else the platform's
//!   `{errcode, errmsg}`);
//! - `POST /auth/refresh` with the session: a new one for the same login;
//! - `POST /client/init` `{resourceAppid, resourceEnv}`: a shared env's `cloud.init()`, which
//!   runs the owner's `cloudbase_auth` for the user (`{errMsg: "cloud.init:ok"}`);
//! - `POST /client/callFunction` `{env, name, data, resourceAppid?}`: a call with SOURCE
//!   `wx_client`, answered as `wx.cloud.callFunction` resolves:
//!   `{result, requestID, errMsg: "cloud.callFunction:ok"}`, or `{errCode, errMsg:
//!   "cloud.callFunction:fail …"}` (protocol §7).
//!
//! The session travels as `Authorization: Bearer SESSION`. Logins and calls are rate-limited
//! per client IP and per app ([`ClientLimits`]); past a limit the answer is errcode 45011, the
//! platform's "api minute-quota reach limit".

use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{Body, BodyError, json, read_body_within, wx_error};
use async_trait::async_trait;
use cloudfn_invoke::quota::RateLimit;
use cloudfn_invoke::session::{LoginError, Session};
use cloudfn_invoke::{AppCaller, CLIENT_SOURCE, Invocation, InvokeError, InvokeRequest};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;

/// The platform's "api minute-quota reach limit".
pub const RATE_LIMITED: i64 = 45011;
/// errCode of a function that ran and failed, as `wx.cloud` reports it (protocol §7).
const EXECUTION_ERROR: i64 = -404011;
/// Largest login or init body.
const SMALL_BODY: usize = 4 * 1024;

/// How many logins and calls a client IP, and all of one app's users, may make.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    /// Logins per minute from one IP.
    pub logins_per_ip_per_minute: u32,
    /// Logins per minute of one app's users together.
    pub logins_per_app_per_minute: u32,
    /// Client calls (calls and inits) per second from one IP.
    pub calls_per_ip_per_second: u32,
    /// Client calls per second of one app's users together.
    pub calls_per_app_per_second: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            logins_per_ip_per_minute: 60,
            logins_per_app_per_minute: 6_000,
            calls_per_ip_per_second: 50,
            calls_per_app_per_second: 2_000,
        }
    }
}

/// The mini-program dialect.
pub struct Client {
    logins_per_ip: RateLimit,
    logins_per_app: RateLimit,
    calls_per_ip: RateLimit,
    calls_per_app: RateLimit,
}

impl Client {
    /// The dialect held to `limits`.
    pub fn new(limits: ClientLimits) -> Client {
        let minute = Duration::from_secs(60);
        // A second's worth of calls may come at once (a page opening makes several).
        let per_second = |n: u32| RateLimit::per_second(f64::from(n), f64::from(n.max(1)));
        Client {
            logins_per_ip: RateLimit::new(limits.logins_per_ip_per_minute, minute),
            logins_per_app: RateLimit::new(limits.logins_per_app_per_minute, minute),
            calls_per_ip: per_second(limits.calls_per_ip_per_second),
            calls_per_app: per_second(limits.calls_per_app_per_second),
        }
    }
}

const PATHS: &[&str] = &[
    "/auth/code2session",
    "/auth/refresh",
    "/client/init",
    "/client/callFunction",
];

/// A `wx.cloud` API's failure: `{errCode, errMsg: "API:fail …"}`.
fn api_error(api: &str, errcode: i64, message: impl std::fmt::Display) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({ "errCode": errcode, "errMsg": format!("{api}:fail {message}") }),
    )
}

fn session_of(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

fn session_answer(session: Session) -> Response<Body> {
    let mut v = serde_json::to_value(&session).expect("a session serializes");
    v["errcode"] = json!(0);
    v["errmsg"] = json!("ok");
    json(StatusCode::OK, &v)
}

#[async_trait]
impl Dialect for Client {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        PATHS.contains(&req.uri().path())
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        let path = req.uri().path().to_string();
        if req.method() != Method::POST {
            return Accepted::Answer(wx_error(43002, "require POST method"));
        }
        match path.as_str() {
            "/auth/code2session" => Accepted::Answer(self.login(cx, req, peer).await),
            "/auth/refresh" => Accepted::Answer(self.refresh(cx, req, peer).await),
            "/client/init" => Accepted::Answer(self.init(cx, req, peer).await),
            _ => match self.call(cx, req, peer).await {
                Ok((caller, request)) => Accepted::Call(caller, request),
                Err(resp) => Accepted::Answer(*resp),
            },
        }
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
        const API: &str = "cloud.callFunction";
        match inv.result {
            Ok(result) => {
                // The result is the function's JSON; it goes back as JSON, not as a string.
                let result: Value = serde_json::from_str(&result).unwrap_or(Value::String(result));
                json(
                    StatusCode::OK,
                    &json!({ "result": result, "requestID": inv.request_id, "errMsg": format!("{API}:ok") }),
                )
            }
            Err(e) => {
                let code = i64::from(e.errcode());
                let errcode = match e {
                    InvokeError::Failed { .. }
                    | InvokeError::Timeout { .. }
                    | InvokeError::MemoryLimit { .. } => EXECUTION_ERROR,
                    _ => code,
                };
                api_error(
                    API,
                    errcode,
                    format!(
                        "requestID {}, cloud function service error code {code}, error message {e}",
                        inv.request_id
                    ),
                )
            }
        }
    }
}

impl Client {
    async fn login(
        &self,
        cx: &Context,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        // The caller is not known yet: the body counts against the anonymous part of the budget.
        let body = match read_body_within(&cx.bodies, "", &parts.headers, body, SMALL_BODY).await {
            Ok((b, _permit)) => b,
            Err(BodyError::Busy(e)) => return wx_error(-1, format!("system busy: {e}")),
            Err(_) => return wx_error(47001, "data format error: body unreadable or over 4 KB"),
        };
        let body: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return wx_error(47001, "data format error: the body must be a JSON object"),
        };
        let Some(appid) = body["appid"].as_str().filter(|a| !a.is_empty()) else {
            return wx_error(41002, "appid missing");
        };
        let code = body["code"].as_str().unwrap_or("");
        let ip = peer.ip().to_string();
        if !self.logins_per_ip.allow(&ip) || !self.logins_per_app.allow(appid) {
            let error = LoginError {
                errcode: RATE_LIMITED,
                errmsg: format!(
                    "api minute-quota reach limit: too many logins from {ip} or for app {appid}; \
                     retry next minute"
                ),
            };
            cx.host.refused_login(appid, &error).await;
            return wx_error(error.errcode, error.errmsg);
        }
        let (host, appid, code) = (cx.host.clone(), appid.to_string(), code.to_string());
        match cx
            .detached(async move { host.login(&appid, &code).await })
            .await
        {
            Ok(session) => session_answer(session),
            Err(e) => wx_error(e.errcode, e.errmsg),
        }
    }

    async fn refresh(
        &self,
        cx: &Context,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        if !self.logins_per_ip.allow(&peer.ip().to_string()) {
            return wx_error(
                RATE_LIMITED,
                "api minute-quota reach limit: retry next minute",
            );
        }
        match cx.host.refresh_session(session_of(&req)).await {
            Ok(session) => session_answer(session),
            Err(e) => wx_error(e.errcode(), e.to_string()),
        }
    }

    /// The session's user, within the call rate limits; else the `api` failure to answer.
    async fn user(
        &self,
        cx: &Context,
        req: &Request<Incoming>,
        peer: SocketAddr,
        api: &str,
    ) -> Result<AppCaller, Box<Response<Body>>> {
        let ip = peer.ip().to_string();
        let limited = || {
            Box::new(api_error(
                api,
                RATE_LIMITED,
                "api minute-quota reach limit: too many calls; retry later",
            ))
        };
        if !self.calls_per_ip.allow(&ip) {
            return Err(limited());
        }
        let caller = cx
            .host
            .session_caller(session_of(req), Some(ip))
            .await
            .map_err(|e| Box::new(api_error(api, e.errcode(), e)))?;
        if !self.calls_per_app.allow(&caller.appid) {
            return Err(limited());
        }
        Ok(caller)
    }

    /// `POST /client/init`: runs the owner's `cloudbase_auth` for a shared env (nothing to
    /// check for the app's own env).
    async fn init(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        const API: &str = "cloud.init";
        let caller = match self.user(cx, &req, peer, API).await {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        let (parts, body) = req.into_parts();
        let body =
            match read_body_within(&cx.bodies, &caller.appid, &parts.headers, body, SMALL_BODY)
                .await
            {
                Ok((b, _permit)) => b,
                Err(BodyError::Busy(e)) => {
                    return api_error(API, -501004, format!("system busy: {e}"));
                }
                Err(e) => return api_error(API, -501007, format!("parameter error: {e}")),
            };
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some(env) = body["resourceEnv"]
            .as_str()
            .or(body["env"].as_str())
            .filter(|e| !e.is_empty())
        else {
            return api_error(API, 40101, "missing parameter resourceEnv");
        };
        if let Err(resp) = owned_by(cx, env, body["resourceAppid"].as_str(), API).await {
            return *resp;
        }
        let (host, env) = (cx.host.clone(), env.to_string());
        match cx
            .detached(async move { host.init(&env, caller, CLIENT_SOURCE).await })
            .await
        {
            Ok(_) => json(StatusCode::OK, &json!({ "errMsg": format!("{API}:ok") })),
            Err(e) => api_error(API, i64::from(e.errcode()), e),
        }
    }

    /// `POST /client/callFunction`.
    async fn call(
        &self,
        cx: &Context,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<(AppCaller, InvokeRequest), Box<Response<Body>>> {
        const API: &str = "cloud.callFunction";
        let caller = self.user(cx, &req, peer, API).await?;
        let (parts, body) = req.into_parts();
        // The user is known: the body counts against their app's share of the budget.
        let (body, _permit) =
            match read_body_within(&cx.bodies, &caller.appid, &parts.headers, body, cx.max_body)
                .await
            {
                Ok(read) => read,
                Err(BodyError::Busy(e)) => {
                    return Err(Box::new(api_error(
                        API,
                        -501004,
                        format!("system busy: {e}"),
                    )));
                }
                Err(e) => {
                    return Err(Box::new(api_error(
                        API,
                        -501007,
                        format!("parameter error: {e}"),
                    )));
                }
            };
        let mut body: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return Err(Box::new(api_error(
                    API,
                    -501007,
                    "parameter error: the body must be a JSON object {env, name, data}",
                )));
            }
        };
        let text = |k: &str| {
            body[k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (Some(env), Some(name)) = (text("env"), text("name")) else {
            let missing = if text("env").is_none() { "env" } else { "name" };
            return Err(Box::new(api_error(
                API,
                40101,
                format!("missing parameter {missing}"),
            )));
        };
        owned_by(cx, &env, body["resourceAppid"].as_str(), API).await?;
        let event = match body["data"].take() {
            Value::Null => "{}".to_string(),
            data => data.to_string(),
        };
        Ok((
            caller,
            InvokeRequest::new(&env, &name, event, CLIENT_SOURCE),
        ))
    }
}

/// Checks that `env` belongs to `resource_appid` when the client names one (a `new
/// wx.cloud.Cloud({resourceAppid, resourceEnv})`): an env of another app is not silently used.
async fn owned_by(
    cx: &Context,
    env: &str,
    resource_appid: Option<&str>,
    api: &str,
) -> Result<(), Box<Response<Body>>> {
    let Some(resource_appid) = resource_appid.filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let snap = cx.host.snapshot().await.map_err(|e| {
        tracing::error!("reading the state for a client call: {e:#}");
        Box::new(api_error(api, -1, "system error"))
    })?;
    match snap.env(env) {
        Some(e) if e.owner_appid == resource_appid => Ok(()),
        _ => Err(Box::new(api_error(
            api,
            -501000,
            format!("env not exists: {env} is not an env of {resource_appid}"),
        ))),
    }
}
