//! The WeChat dialect: `/cgi-bin/token`, `/cgi-bin/stable_token` (protocol §2),
//! `/tcb/invokecloudfunction` (§3) and `/tcb/init` (a shared env's `cloud.init()`). Callers are
//! apps authenticated by access token, with the user their server names in `X-WX-*` headers;
//! every error comes back as `{errcode, errmsg}` with the protocol's codes.

use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{
    Body, BodyError, json, query_map, query_param, query_params, read_body_within, wx_error,
};
use async_trait::async_trait;
use cloudfn_invoke::quota::RateLimit;
use cloudfn_invoke::{AppCaller, Invocation, InvokeRequest};
use cloudfn_store::{IssueError, TokenPolicy};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// The WeChat dialect.
pub struct WeChat {
    /// Token lifetimes.
    pub policy: TokenPolicy,
    /// New tokens per app.
    pub issues: RateLimit,
}

/// New tokens one app may have issued per minute (the platform allows 2,000 a day).
pub const TOKENS_PER_MINUTE: u32 = 60;

impl WeChat {
    /// The dialect with token lifetimes `policy` and the default token quota.
    pub fn new(policy: TokenPolicy) -> WeChat {
        WeChat {
            policy,
            issues: RateLimit::new(TOKENS_PER_MINUTE, std::time::Duration::from_secs(60)),
        }
    }
}

const PATHS: &[&str] = &[
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/tcb/invokecloudfunction",
    "/tcb/init",
];

/// A §3 response, or a boxed one where it is the error of a `Result`.
type Answer = Box<Response<Body>>;

/// A §3 success.
#[derive(serde::Serialize)]
struct Success<'a> {
    errcode: i32,
    errmsg: &'a str,
    resp_data: &'a str,
}

/// A request past the token check.
struct Authenticated {
    parts: hyper::http::request::Parts,
    body: Incoming,
    appid: String,
}

#[async_trait]
impl Dialect for WeChat {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        PATHS.contains(&req.uri().path())
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        match req.uri().path() {
            "/cgi-bin/token" => Accepted::Answer(self.token(cx, req).await),
            "/cgi-bin/stable_token" => Accepted::Answer(self.stable_token(cx, req).await),
            "/tcb/init" => Accepted::Answer(self.init(cx, req, peer).await),
            _ => match self.invoke(cx, req, peer).await {
                Ok((caller, request)) => Accepted::Call(caller, request),
                Err(resp) => Accepted::Answer(*resp),
            },
        }
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
        match inv.result {
            // A struct, not a `json!` value: the result is copied once, into the body.
            Ok(result) => json(
                StatusCode::OK,
                &Success {
                    errcode: 0,
                    errmsg: "ok",
                    resp_data: &result,
                },
            ),
            Err(e) => wx_error(e.errcode(), e.to_string()),
        }
    }
}

impl WeChat {
    async fn token(&self, cx: &Context, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::POST {
            return wx_error(43001, "require GET method");
        }
        let q = query_map(req.uri().query());
        self.issue(
            cx,
            q.get("grant_type").map(String::as_str),
            q.get("appid").map(String::as_str),
            q.get("secret").map(String::as_str),
            None,
        )
        .await
    }

    async fn stable_token(&self, cx: &Context, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return wx_error(43002, "require POST method");
        }
        let (parts, body) = req.into_parts();
        // The caller is not known yet: every such body shares the anonymous part of the budget.
        let body = match read_body_within(&cx.bodies, "", &parts.headers, body, 64 * 1024).await {
            Ok((b, _permit)) => b,
            Err(BodyError::Busy(e)) => return wx_error(-1, format!("system busy: {e}")),
            Err(_) => return wx_error(47001, "data format error: body unreadable or over 64 KB"),
        };
        let body: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return wx_error(47001, "data format error: the body must be a JSON object"),
        };
        let force_refresh = body["force_refresh"].as_bool().unwrap_or(false);
        self.issue(
            cx,
            body["grant_type"].as_str(),
            body["appid"].as_str(),
            body["secret"].as_str(),
            Some(force_refresh),
        )
        .await
    }

    /// Shared by both token endpoints; `stable` is `Some(force_refresh)` for stable_token.
    async fn issue(
        &self,
        cx: &Context,
        grant_type: Option<&str>,
        appid: Option<&str>,
        secret: Option<&str>,
        stable: Option<bool>,
    ) -> Response<Body> {
        if grant_type != Some("client_credential") {
            return wx_error(40002, "invalid grant_type: must be client_credential");
        }
        let Some(appid) = appid.filter(|a| !a.is_empty()) else {
            return wx_error(41002, "appid missing");
        };
        let Some(secret) = secret.filter(|s| !s.is_empty()) else {
            return wx_error(41004, "appsecret missing");
        };
        let store = cx.host.store();
        let (appid, secret, policy) = (appid.to_string(), secret.to_string(), self.policy);
        // The checks and the token row are synchronous database work (a write and an fsync
        // for a new token): off the async workers, which serve every tenant's calls.
        let runtime = tokio::runtime::Handle::current();
        let check = {
            let (store, appid) = (store.clone(), appid.clone());
            let runtime = runtime.clone();
            tokio::task::spawn_blocking(move || {
                runtime.block_on(store.check_secret(&appid, &secret))
            })
        };
        let issued = match check.await {
            Ok(Ok(())) if stable != Some(false) && !self.issues.allow(&appid) => {
                return wx_error(
                    45009,
                    format!(
                        "reach max api minute quota limit: at most {TOKENS_PER_MINUTE} new tokens \
                         per minute per app; reuse the current token (stable_token)"
                    ),
                );
            }
            Ok(Ok(())) => {
                let (store, appid) = (store.clone(), appid.clone());
                tokio::task::spawn_blocking(move || {
                    runtime.block_on(async {
                        match stable {
                            Some(force_refresh) => {
                                store.stable_token(&appid, force_refresh, policy).await
                            }
                            None => store.issue_token(&appid, policy).await,
                        }
                    })
                })
                .await
                .unwrap_or_else(|e| Err(IssueError::System(anyhow::anyhow!("token task: {e}"))))
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(IssueError::System(anyhow::anyhow!("token task: {e}"))),
        };
        let appid = appid.as_str();
        match issued {
            Ok((token, expires_in)) => json(
                StatusCode::OK,
                &json!({ "access_token": token, "expires_in": expires_in }),
            ),
            Err(e) => {
                if let IssueError::System(err) = &e {
                    tracing::error!("issuing a token for {appid}: {err:#}");
                }
                wx_error(e.errcode(), e.to_string())
            }
        }
    }

    /// The §3 preamble of the token-authenticated endpoints: POST only, then the token.
    async fn post_with_token(
        &self,
        cx: &Context,
        req: Request<Incoming>,
    ) -> Result<Authenticated, Answer> {
        if req.method() != Method::POST {
            return Err(Box::new(wx_error(43002, "require POST method")));
        }
        let (parts, body) = req.into_parts();
        let token = query_param(parts.uri.query(), "access_token");
        let Some(token) = token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(Box::new(wx_error(41001, "access_token missing")));
        };
        let snapshot = match cx.host.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("verifying an access token: {e:#}");
                return Err(Box::new(wx_error(-1, "system error")));
            }
        };
        let appid = match snapshot.token_app(token, self.policy) {
            Ok(appid) => appid.to_string(),
            Err(e) => return Err(Box::new(wx_error(e.errcode(), e.to_string()))),
        };
        Ok(Authenticated { parts, body, appid })
    }

    /// `POST /tcb/invokecloudfunction?access_token=…&env=…&name=…` with the event as body.
    async fn invoke(
        &self,
        cx: &Context,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<(AppCaller, InvokeRequest), Answer> {
        let Authenticated { parts, body, appid } = self.post_with_token(cx, req).await?;
        let [env, name] =
            query_params(parts.uri.query(), ["env", "name"]).map(|v| v.filter(|s| !s.is_empty()));
        let (Some(env), Some(name)) = (&env, &name) else {
            let missing = if env.is_none() { "env" } else { "name" };
            return Err(Box::new(wx_error(
                40101,
                format!("missing parameter {missing}"),
            )));
        };
        // The token is checked, so the app is known: its body counts against its share.
        let (body, _permit) =
            match read_body_within(&cx.bodies, &appid, &parts.headers, body, cx.max_body).await {
                Ok(read) => read,
                Err(BodyError::Busy(e)) => {
                    return Err(Box::new(wx_error(-501004, format!("system busy: {e}"))));
                }
                Err(e) => {
                    return Err(Box::new(wx_error(-501007, format!("parameter error: {e}"))));
                }
            };
        if body.is_empty() {
            return Err(Box::new(wx_error(44002, "empty post data")));
        }
        let Ok(event) = String::from_utf8(Vec::from(body)) else {
            return Err(Box::new(wx_error(
                -501007,
                "parameter error: the body is not UTF-8 JSON",
            )));
        };
        let caller = user_caller(appid, &parts.headers, peer)?;
        let request = InvokeRequest {
            default_timeout: cloudfn_store::DEFAULT_HTTP_TIMEOUT,
            ..InvokeRequest::new(env, name, event, "wx_http")
        };
        Ok((caller, request))
    }

    /// `POST /tcb/init?access_token=…&env=…`: a shared env's `cloud.init()`. Runs the share
    /// check and `cloudbase_auth` for the token's app and the user named in the headers, and
    /// answers `cloudbase_auth`'s result: `{"errcode":0,"errmsg":"ok","auth":"…"}` on a grant,
    /// its errCode/errMsg unchanged on a denial.
    async fn init(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Authenticated { parts, appid, .. } = match self.post_with_token(cx, req).await {
            Ok(a) => a,
            Err(resp) => return *resp,
        };
        let Some(env) = query_param(parts.uri.query(), "env").filter(|s| !s.is_empty()) else {
            return wx_error(40101, "missing parameter env");
        };
        let caller = match user_caller(appid, &parts.headers, peer) {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        let (host, env) = (cx.host.clone(), env.into_owned());
        match cx
            .detached(async move { host.init(&env, caller, "wx_http").await })
            .await
        {
            Ok(auth) => json(
                StatusCode::OK,
                &json!({ "errcode": 0, "errmsg": "ok", "auth": auth }),
            ),
            Err(e) => wx_error(e.errcode(), e.to_string()),
        }
    }
}

/// The caller of a §3-style request: the token's app and the user its server names (header
/// values are ids: bounded and plain, since they key caches and land in records).
fn user_caller(
    appid: String,
    headers: &hyper::HeaderMap,
    peer: SocketAddr,
) -> Result<AppCaller, Answer> {
    let id = |name: &str| -> Result<Option<String>, Answer> {
        cloudfn_protocol::ids::user_id(headers.get(name).map(|v| v.as_bytes())).map_err(|why| {
            Box::new(wx_error(
                -501007,
                format!("parameter error: {} {why}", name.to_uppercase()),
            ))
        })
    };
    Ok(AppCaller {
        appid,
        openid: id("x-wx-openid")?,
        unionid: id("x-wx-unionid")?,
        client_ip: Some(peer.ip().to_string()),
    })
}
