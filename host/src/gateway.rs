//! The public, WeChat-compatible HTTP endpoints: `/cgi-bin/token`, `/cgi-bin/stable_token`
//! (protocol §2), `/tcb/invokecloudfunction` (§3), and the server SDK's `/admin` (§11). Every
//! error comes back in the endpoint's own shape with the protocol's codes.

use crate::credentials::{IssueError, TokenPolicy};
use crate::error::InvokeError;
use crate::grant::Caller;
use crate::http::{Body, BodyError, header, json, query_map, read_body};
use crate::registry::DEFAULT_HTTP_TIMEOUT;
use crate::service::{Cloudfn, InvokeRequest};
use crate::tc3;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest request body (protocol §8: 6 MB sync events).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// The public endpoints.
#[derive(Clone)]
pub struct Gateway {
    /// The service.
    pub svc: Arc<Cloudfn>,
    /// Token lifetimes.
    pub policy: TokenPolicy,
    /// Largest request body.
    pub max_body: usize,
    /// The calls running on behalf of requests; shutdown waits for them.
    pub calls: tokio_util::task::TaskTracker,
}

/// A request past the token check.
struct Authenticated {
    parts: hyper::http::request::Parts,
    body: Incoming,
    query: std::collections::HashMap<String, String>,
    appid: String,
}

fn wx_error(errcode: i32, errmsg: impl Into<String>) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({ "errcode": errcode, "errmsg": errmsg.into() }),
    )
}

impl Gateway {
    /// Routes one request.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        match req.uri().path() {
            "/cgi-bin/token" => self.token(req).await,
            "/cgi-bin/stable_token" => self.stable_token(req).await,
            "/tcb/invokecloudfunction" => self.invoke(req, peer).await,
            "/tcb/init" => self.init(req, peer).await,
            "/admin" => self.admin(req, peer).await,
            path => json(
                StatusCode::NOT_FOUND,
                &json!({ "errcode": 404, "errmsg": format!("no endpoint {path}") }),
            ),
        }
    }

    async fn token(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::POST {
            return wx_error(43001, "require GET method");
        }
        let q = query_map(req.uri().query());
        self.issue(
            q.get("grant_type").map(String::as_str),
            q.get("appid").map(String::as_str),
            q.get("secret").map(String::as_str),
            None,
        )
    }

    async fn stable_token(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return wx_error(43002, "require POST method");
        }
        let body = match read_body(req.into_body(), 64 * 1024).await {
            Ok(b) => b,
            Err(_) => return wx_error(47001, "data format error: body unreadable or over 64 KB"),
        };
        let body: Value = match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => return wx_error(47001, "data format error: the body must be a JSON object"),
        };
        let force_refresh = body["force_refresh"].as_bool().unwrap_or(false);
        self.issue(
            body["grant_type"].as_str(),
            body["appid"].as_str(),
            body["secret"].as_str(),
            Some(force_refresh),
        )
    }

    /// Shared by both token endpoints; `stable` is `Some(force_refresh)` for stable_token.
    fn issue(
        &self,
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
        let registry = self.svc.registry();
        let issued = registry
            .check_secret(appid, secret)
            .and_then(|()| match stable {
                Some(force_refresh) => registry.stable_token(appid, force_refresh, self.policy),
                None => registry.issue_token(appid, self.policy),
            });
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
    /// Returns the request, its query and the token's app, or the protocol error response.
    fn post_with_token(
        &self,
        req: Request<Incoming>,
    ) -> Result<Authenticated, Box<Response<Body>>> {
        if req.method() != Method::POST {
            return Err(Box::new(wx_error(43002, "require POST method")));
        }
        let (parts, body) = req.into_parts();
        let query = query_map(parts.uri.query());
        let appid = self.token_app(&query)?;
        Ok(Authenticated {
            parts,
            body,
            query,
            appid,
        })
    }

    async fn invoke(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Authenticated {
            parts,
            body,
            query: q,
            appid,
        } = match self.post_with_token(req) {
            Ok(a) => a,
            Err(resp) => return *resp,
        };
        let (Some(env), Some(name)) = (
            q.get("env").filter(|s| !s.is_empty()),
            q.get("name").filter(|s| !s.is_empty()),
        ) else {
            let missing = if q.get("env").is_none_or(|s| s.is_empty()) {
                "env"
            } else {
                "name"
            };
            return wx_error(40101, format!("missing parameter {missing}"));
        };
        let body = match read_body(body, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => {
                return wx_error(
                    -501007,
                    format!("parameter error: the body is over {limit} bytes"),
                );
            }
            Err(BodyError::Io(e)) => return wx_error(-501007, format!("parameter error: {e}")),
        };
        if body.is_empty() {
            return wx_error(44002, "empty post data");
        }
        let Ok(event) = String::from_utf8(Vec::from(body)) else {
            return wx_error(-501007, "parameter error: the body is not UTF-8 JSON");
        };
        let caller = match user_caller(appid, &parts.headers, peer) {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        let inv = self
            .http_call(caller, InvokeRequest::new(env, name, event, "wx_http"))
            .await;
        match inv.result {
            Ok(result) => json(
                StatusCode::OK,
                &json!({ "errcode": 0, "errmsg": "ok", "resp_data": result }),
            ),
            Err(e) => wx_error(e.errcode(), e.to_string()),
        }
    }

    /// `POST /tcb/init?access_token=…&env=…`: a shared env's `cloud.init()`. Runs the share
    /// check and `cloudbase_auth` for the token's app and the user named in the headers, and
    /// answers `cloudbase_auth`'s result: `{"errcode":0,"errmsg":"ok","auth":"…"}` on a grant,
    /// its errCode/errMsg unchanged on a denial.
    async fn init(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Authenticated {
            parts,
            query: q,
            appid,
            ..
        } = match self.post_with_token(req) {
            Ok(a) => a,
            Err(resp) => return *resp,
        };
        let Some(env) = q.get("env").filter(|s| !s.is_empty()) else {
            return wx_error(40101, "missing parameter env");
        };
        let caller = match user_caller(appid, &parts.headers, peer) {
            Ok(c) => c,
            Err(resp) => return *resp,
        };
        let (svc, env) = (self.svc.clone(), env.clone());
        match self
            .detached(async move { svc.init(&env, caller).await })
            .await
        {
            Ok(auth) => json(
                StatusCode::OK,
                &json!({ "errcode": 0, "errmsg": "ok", "auth": auth }),
            ),
            Err(e) => wx_error(e.errcode(), e.to_string()),
        }
    }

    /// The app behind `access_token`, or the §3 error response.
    fn token_app(
        &self,
        q: &std::collections::HashMap<String, String>,
    ) -> Result<String, Box<Response<Body>>> {
        let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
            return Err(Box::new(wx_error(41001, "access_token missing")));
        };
        match self.svc.registry().verify_token(token, self.policy) {
            Ok(Ok(appid)) => Ok(appid),
            Ok(Err(e)) => Err(Box::new(wx_error(e.errcode(), e.to_string()))),
            Err(e) => {
                tracing::error!("verifying an access token: {e:#}");
                Err(Box::new(wx_error(-1, "system error")))
            }
        }
    }

    async fn admin(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let fail = |code: &str, message: String| {
            let request_id = self.svc.new_request_id();
            json(
                StatusCode::OK,
                &json!({ "code": code, "message": message, "requestId": request_id }),
            )
        };
        if req.method() != Method::POST {
            return fail("INVALID_REQUEST", "require POST method".into());
        }
        let (parts, body) = req.into_parts();
        // What can be checked without the body is checked first, so an unknown caller cannot
        // make the host buffer megabytes.
        let precheck = header(&parts.headers, "authorization")
            .ok_or_else(|| tc3::Tc3Error::Invalid("no authorization header".into()))
            .and_then(|h| tc3::parse_authorization(&h))
            .and_then(
                |auth| match self.svc.registry().secret_key(&auth.secret_id) {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(tc3::Tc3Error::UnknownSecretId(auth.secret_id)),
                    Err(e) => Err(tc3::Tc3Error::Invalid(format!("system error: {e}"))),
                },
            );
        if let Err(e) = precheck {
            return fail(e.code(), e.to_string());
        }
        let body = match read_body(body, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge(limit)) => {
                return fail(
                    "FUNCTION_PARAM_INVALID",
                    format!("the body is over {limit} bytes"),
                );
            }
            Err(BodyError::Io(e)) => return fail("FUNCTION_PARAM_INVALID", e),
        };
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
            return fail(
                "FUNCTION_PARAM_INVALID",
                "the body must be a JSON object".into(),
            );
        };
        let headers = |name: &str| header(&parts.headers, name);
        let host = headers("host").unwrap_or_default();
        let signed = tc3::SignedRequest {
            host: &host,
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            header: &headers,
            body: &fields,
        };
        let registry = self.svc.registry();
        let mut app = None;
        let verified = tc3::verify(&signed, crate::registry::now(), |id| {
            let found = registry.secret_key(id).ok().flatten()?;
            app = Some(found.0);
            Some(found.1)
        });
        if let Err(e) = verified {
            return fail(e.code(), e.to_string());
        }
        let appid = app.expect("verified implies a key was found");

        let q = query_map(parts.uri.query());
        let env = q
            .get("env")
            .cloned()
            .filter(|e| !e.is_empty())
            .or_else(|| {
                fields
                    .get("envName")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let action = fields.get("action").and_then(Value::as_str).unwrap_or("");
        if action != "functions.invokeFunction" {
            return fail(
                "ACTION_FORBIDDEN",
                format!("action {action:?} is not supported"),
            );
        }
        let name = fields
            .get("function_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let event = match fields.get("request_data").and_then(Value::as_str) {
            None | Some("") => "{}".to_string(),
            Some(data) => data.to_string(),
        };
        let version = match fields.get("qualifier").and_then(Value::as_str) {
            None | Some("") | Some("$LATEST") => None,
            Some(q) => match q.parse::<u32>() {
                Ok(v) => Some(v),
                Err(_) => {
                    return fail(
                        "FUNCTION_PARAM_INVALID",
                        format!("qualifier {q:?} is not a version number"),
                    );
                }
            },
        };
        if env.is_empty() || name.is_empty() {
            return fail(
                "FUNCTION_PARAM_INVALID",
                "env and function_name are required".into(),
            );
        }
        let caller = Caller {
            appid,
            client_ip: Some(peer.ip().to_string()),
            ..Caller::default()
        };
        let call = InvokeRequest {
            version,
            ..InvokeRequest::new(&env, name, event, "wx_http")
        };
        let inv = self.http_call(caller, call).await;
        match inv.result {
            Ok(result) => json(
                StatusCode::OK,
                &json!({ "requestId": inv.request_id, "data": { "response_data": result } }),
            ),
            Err(e) => json(
                StatusCode::OK,
                &json!({ "code": admin_code(&e), "message": e.to_string(), "requestId": inv.request_id }),
            ),
        }
    }
}

impl Gateway {
    /// An HTTP-API call (default time limit 5 s, protocol §3) as `caller`, detached.
    async fn http_call(
        &self,
        caller: Caller,
        mut call: InvokeRequest,
    ) -> crate::service::Invocation {
        call.default_timeout = DEFAULT_HTTP_TIMEOUT;
        let svc = self.svc.clone();
        self.detached(async move { svc.invoke_as(caller, call).await })
            .await
    }

    /// Runs a call in its own task: if the client goes away, the function still finishes (no
    /// half-done side effects) and its activation record is still written. The server's
    /// shutdown waits for these tasks too.
    async fn detached<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> T {
        self.calls
            .spawn(call)
            .await
            .expect("the call task does not panic")
    }
}

/// The caller of a §3-style request: the token's app and the user its server names (header
/// values are ids: bounded and plain, since they key caches and land in records).
fn user_caller(
    appid: String,
    headers: &hyper::HeaderMap,
    peer: SocketAddr,
) -> Result<Caller, Box<Response<Body>>> {
    let id = |name: &str| -> Result<Option<String>, Box<Response<Body>>> {
        match header(headers, name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(v)
                if v.len() <= 128
                    && v.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') =>
            {
                Ok(Some(v))
            }
            Some(_) => Err(Box::new(wx_error(
                -501007,
                format!(
                    "parameter error: {} must be at most 128 letters, digits, '-' or '_'",
                    name.to_uppercase()
                ),
            ))),
        }
    };
    Ok(Caller {
        appid,
        openid: id("x-wx-openid")?,
        unionid: id("x-wx-unionid")?,
        client_ip: Some(peer.ip().to_string()),
    })
}

/// The §11 `code` of an invocation error; a `cloudbase_auth` denial passes its errCode on.
pub fn admin_code(e: &InvokeError) -> std::borrow::Cow<'static, str> {
    let code = match e {
        InvokeError::Denied { errcode, .. } => return errcode.to_string().into(),
        InvokeError::InvalidParam(_) => "FUNCTION_PARAM_INVALID",
        InvokeError::EnvNotFound(_) => "INVALID_ENV",
        InvokeError::FunctionNotFound { .. } => "FUNCTION_NOT_FOUND",
        InvokeError::Timeout { .. } => "FUNCTION_TIME_LIMIT_EXCEEDED",
        InvokeError::MemoryLimit { .. } => "FUNCTION_MEMORY_LIMIT_EXCEEDED",
        InvokeError::Failed { .. } | InvokeError::DepthExceeded(_) => "FUNCTION_INVOCATION_FAILED",
        InvokeError::Unauthorized(_) => "EXCEED_AUTHORITY",
        InvokeError::TooBusy { .. } | InvokeError::Overloaded(_) => {
            "FUNCTION_CONCURRENCY_LIMIT_EXCEEDED"
        }
        InvokeError::System(_) => "SYS_ERR",
    };
    code.into()
}
