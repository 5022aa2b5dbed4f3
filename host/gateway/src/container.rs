//! What the container-style gateways share (protocol §9, §10): a client reaches an HTTP
//! function as plain HTTP, and the gateway vouches for the caller in headers (or query
//! parameters) of its own. Owns: authenticating the caller (a mini-program user's session, or
//! an app's access token), reading the request within the dialect's limit, removing every
//! header a client could use to pose as someone (and hop-by-hop ones), passing the function's
//! response back, and mapping a failed call to an HTTP status; [`Spec`] is the rest of what
//! callContainer and Douyin share (their errcodes, with their own error keys). The dialects
//! ([`crate::wx_container`], [`crate::douyin`], [`crate::taobao`]) add their routing and
//! identity headers.

use crate::dialect::Context;
use crate::http::{Body, BodyError, read_body_within};
use bytes::Bytes;
use cloudfn_invoke::{
    AppCaller, CLIENT_SOURCE, HttpCall, HttpRequest, Invocation, InvokeError, InvokeRequest, Stamp,
};
use cloudfn_store::TokenPolicy;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Sizes and time a container gateway allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body.
    pub max_request: usize,
    /// Largest response body.
    pub max_response: usize,
    /// The call's time limit (a function's own shorter limit still applies).
    pub timeout: Duration,
}

/// WeChat callContainer's limits (protocol §8): 100 KiB request, 1000 KiB response, 15 s.
/// Douyin Cloud's gateway is held to the same.
pub const CONTAINER_LIMITS: Limits = Limits {
    max_request: 100 * 1024,
    max_response: 1000 * 1024,
    timeout: Duration::from_secs(15),
};

/// Which env and service a request goes to when it does not say: the operator's settings.
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    /// callContainer requests without `X-WX-ENV`: the env by the request's host name (a
    /// custom domain per env).
    pub env_by_host: HashMap<String, String>,
    /// The Taobao gateway: per calling app, its cloud application.
    pub taobao: HashMap<String, crate::taobao::TaobaoApp>,
}

/// An authenticated caller of a container gateway.
pub struct Authenticated {
    /// The app, and the user when a session named one.
    pub caller: AppCaller,
    /// Whether a mini-program user's session authenticated it (else an app's access token).
    pub user: bool,
}

/// Why a request is not authenticated: the errcode (protocol §2 and the session codes) and
/// the message.
pub type Refusal = (i64, String);

/// Authenticates a request: `Authorization: Bearer SESSION` (a mini-program user's session)
/// or `Bearer ACCESS_TOKEN`, or the access token in the query where the dialect takes it there.
pub async fn authenticate(
    cx: &Context,
    policy: TokenPolicy,
    headers: &HeaderMap,
    query_token: Option<&str>,
    peer: SocketAddr,
) -> Result<Authenticated, Refusal> {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ip = peer.ip().to_string();
    match bearer.or(query_token).filter(|t| !t.is_empty()) {
        None => Err((
            41001,
            "access_token missing: send `Authorization: Bearer` with a user session or an access \
             token"
                .into(),
        )),
        Some(session) if session.starts_with(cloudfn_invoke::session::SESSION_PREFIX) => cx
            .host
            .session_caller(Some(session), Some(ip))
            .await
            .map(|caller| Authenticated { caller, user: true })
            .map_err(|e| (e.errcode(), e.to_string())),
        Some(token) => {
            let snapshot = cx.host.snapshot().await.map_err(|e| {
                tracing::error!("verifying an access token: {e:#}");
                (-1, "system error".to_string())
            })?;
            let appid = snapshot
                .token_app(token, policy)
                .map_err(|e| (i64::from(e.errcode()), e.to_string()))?;
            Ok(Authenticated {
                caller: AppCaller {
                    appid: appid.to_string(),
                    openid: None,
                    unionid: None,
                    client_ip: Some(ip),
                },
                user: false,
            })
        }
    }
}

/// Reads a request body of at most `limit` bytes within the caller's part of the body budget.
pub async fn read_request(
    cx: &Context,
    appid: &str,
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, BodyError> {
    read_body_within(&cx.bodies, appid, headers, body, limit)
        .await
        .map(|(bytes, _permit)| bytes)
}

/// Headers that belong to one connection, not to the request or response passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Prefixes of every identity header any dialect sets (callContainer `X-WX-*`, Douyin
/// `X-TT-*` and `X-DYC-*`, Taobao `X-TB-*`) and of cloudfn's own (`X-Cloudfn-*`). Every one is
/// removed from every client request, whichever gateway it came through, before the dialect
/// sets its own from the checked caller: a function of one platform must not trust another
/// platform's identity header sent by the client. A new dialect adds its family here (the
/// test `every_stamped_header_is_an_identity_header` fails otherwise).
pub const IDENTITY_PREFIXES: &[&str] = &["x-wx-", "x-tt-", "x-dyc-", "x-tb-", "x-cloudfn-"];

/// Headers naming the client's address, which only the gateway sets (`X-Forwarded-For`).
const CLIENT_ADDRESS: &[&str] = &["x-forwarded-for", "x-real-ip", "forwarded"];

/// Whether a client's header is one only a gateway may set: an identity header of any
/// dialect, or the client's address.
pub fn is_identity_header(name: &str) -> bool {
    // `x_wx_openid` is `X-WX-OPENID` to a framework that maps headers to CGI-style variables
    // (`HTTP_X_WX_OPENID`): the same header, so the same rule.
    let dashed;
    let name = if name.contains('_') {
        dashed = name.replace('_', "-");
        dashed.as_str()
    } else {
        name
    };
    CLIENT_ADDRESS.contains(&name) || IDENTITY_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The client's headers a function may see: without hop-by-hop headers, the caller's
/// credential, the operator's console cookies, and every identity header of every dialect
/// ([`is_identity_header`]).
pub fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        let drop = HOP_BY_HOP.contains(&n)
            || n == "authorization"
            || n == "content-length"
            || is_identity_header(n);
        if drop {
            continue;
        }
        if n == "cookie" {
            // The web console's cookies are the operator's: a browser sends them to every port
            // of the host (cookies are not port-bound), so they must never reach tenant code.
            if let Some(kept) = without_console_cookies(value) {
                out.append(name.clone(), kept);
            }
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The web console's cookie names: the operator's, never a tenant's to see or set.
const CONSOLE_COOKIES: [&str; 2] = [
    crate::console::session::SESSION_COOKIE,
    crate::console::session::LOGIN_COOKIE,
];

/// Whether a function's `Set-Cookie` would set one of the console's cookies (on any path it
/// could shadow the operator's session and lock them out), or cannot be read to tell.
fn sets_console_cookie(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return true;
    };
    let name = text.split_once('=').map_or(text, |(k, _)| k).trim();
    CONSOLE_COOKIES.contains(&name)
}

/// A `Cookie` header without the console's cookies; `None` when nothing else is left.
fn without_console_cookies(value: &HeaderValue) -> Option<HeaderValue> {
    // A header that is not text cannot be checked for the console's cookies: dropped whole.
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            !pair.is_empty() && !CONSOLE_COOKIES.contains(&name.trim())
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// Sets header `name` to `value` when there is one (ids are plain text: checked when they
/// were issued), removes it otherwise.
pub fn set_header(headers: &mut HeaderMap, name: &'static str, value: Option<&str>) {
    let name = HeaderName::from_static(name);
    match value.and_then(|v| HeaderValue::from_str(v).ok()) {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// The function's response as the gateway's: its status, headers (less hop-by-hop ones) and
/// body, with the call's request id.
pub fn respond(resp: cloudfn_invoke::HttpResponse, request_id: &str) -> Response<Body> {
    let mut out = Response::new(Full::new(resp.body));
    *out.status_mut() = resp.status;
    for (name, value) in &resp.headers {
        let pass = !HOP_BY_HOP.contains(&name.as_str())
            && name != hyper::header::CONTENT_LENGTH
            && !(name == hyper::header::SET_COOKIE && sets_console_cookie(value));
        if pass {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    if let Ok(id) = HeaderValue::from_str(request_id) {
        out.headers_mut().insert(REQUEST_ID, id);
    }
    out
}

/// The header carrying a call's request id (also on errors), for finding its record.
pub const REQUEST_ID: &str = "x-cloudfn-request-id";

/// The HTTP status of a failed call.
pub fn status_of(e: &InvokeError) -> StatusCode {
    match e {
        InvokeError::InvalidParam(_) => StatusCode::BAD_REQUEST,
        InvokeError::EnvNotFound(_)
        | InvokeError::FunctionNotFound { .. }
        | InvokeError::WrongKind { .. } => StatusCode::NOT_FOUND,
        InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::MemoryLimit { .. }
        | InvokeError::Failed { .. }
        | InvokeError::DepthExceeded(_) => StatusCode::BAD_GATEWAY,
        InvokeError::Unauthorized(_)
        | InvokeError::NotShared { .. }
        | InvokeError::Denied { .. } => StatusCode::FORBIDDEN,
        InvokeError::TooBusy { .. } | InvokeError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::System(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status of an authentication refusal.
pub fn refusal_status(errcode: i64) -> StatusCode {
    match errcode {
        -1 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// Marks an answer of the gateway itself (not of the function), so a client tells a gateway
/// error from a function's own 4xx/5xx.
pub const GATEWAY_ERROR: &str = "x-cloudfn-error";

/// A JSON error response of the gateway with `status`, and the request id when there is one.
pub fn error_response(
    status: StatusCode,
    body: &serde_json::Value,
    request_id: Option<&str>,
) -> Response<Body> {
    let mut resp = crate::http::json(status, body);
    resp.headers_mut()
        .insert(GATEWAY_ERROR, HeaderValue::from_static("1"));
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert(REQUEST_ID, id);
    }
    resp
}

/// A query string without the parameters named in `remove`.
pub fn query_without(query: Option<&str>, remove: &[&str]) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .filter(|(k, _)| !remove.contains(&k.as_str()))
        .collect()
}

/// `path` with `params` as its query.
pub fn path_with_query(path: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{path}?{query}")
}

/// The name a container request addresses a service by, checked like a function name.
pub fn service_name(value: Option<&HeaderValue>) -> Result<String, String> {
    let name = value
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    cloudfn_store::validate_function_name(name)
        .map(|()| name.to_string())
        .map_err(|e| format!("invalid service name: {e}"))
}

/// What distinguishes the callContainer-style dialects (WeChat, Douyin): their error body's
/// keys, the headers only the gateway sets, and the SOURCE of an app's server.
pub struct Spec {
    /// The error body's code and message keys (`errcode`/`errmsg`, `err_no`/`err_tips`).
    pub keys: (&'static str, &'static str),
    /// SOURCE of a call with an app's access token (a user's is `wx_client`).
    pub server_source: &'static str,
}

/// A container request ready for the pipeline, or the answer refusing it.
pub type Prepared = Result<(AppCaller, InvokeRequest, Arc<HttpCall>), Box<Response<Body>>>;

/// The callContainer timeout errcode (protocol §9).
pub const TIMEOUT: i64 = 102002;
/// The callContainer errcode for a method `wx.request` does not send.
pub const BAD_METHOD: i64 = 102005;
/// The callContainer errcode for a request body over 100 KiB.
pub const TOO_LARGE: i64 = -606001;

impl Spec {
    /// A gateway error in the dialect's shape.
    pub fn error(
        &self,
        status: StatusCode,
        code: i64,
        message: impl Into<String>,
    ) -> Response<Body> {
        let body = serde_json::json!({ self.keys.0: code, self.keys.1: message.into() });
        error_response(status, &body, None)
    }

    /// [`Spec::error`], boxed as a refusal.
    pub fn refuse(
        &self,
        status: StatusCode,
        code: i64,
        message: impl Into<String>,
    ) -> Box<Response<Body>> {
        Box::new(self.error(status, code, message))
    }

    /// The caller: a session or access token (`Authorization: Bearer`, or `?access_token=`).
    pub async fn authenticate(
        &self,
        cx: &Context,
        policy: TokenPolicy,
        parts: &hyper::http::request::Parts,
        peer: SocketAddr,
    ) -> Result<Authenticated, Box<Response<Body>>> {
        let query = crate::http::query_map(parts.uri.query());
        let token = query.get("access_token").map(String::as_str);
        authenticate(cx, policy, &parts.headers, token, peer)
            .await
            .map_err(|(code, msg)| self.refuse(refusal_status(code), code, msg))
    }

    /// Reads the body within callContainer's limit and makes the call of `service` in `env`
    /// for `who`, its identity headers set by `stamp`.
    pub async fn prepare(
        &self,
        cx: &Context,
        who: Authenticated,
        parts: hyper::http::request::Parts,
        body: Incoming,
        (env, service): (String, String),
        stamp: Stamp,
    ) -> Prepared {
        let limit = CONTAINER_LIMITS.max_request;
        let body = read_request(cx, &who.caller.appid, &parts.headers, body, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(limit) => self.refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    TOO_LARGE,
                    format!("request body over the {limit}-byte limit"),
                ),
                BodyError::Busy(e) => self.refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -501004,
                    format!("system busy: {e}"),
                ),
                BodyError::Io(e) => self.refuse(StatusCode::BAD_REQUEST, -501007, e),
            })?;
        let params = query_without(parts.uri.query(), &["access_token"]);
        let uri = path_with_query(parts.uri.path(), &params)
            .parse()
            .map_err(|e| self.refuse(StatusCode::BAD_REQUEST, -501007, format!("bad path: {e}")))?;
        let source = if who.user {
            CLIENT_SOURCE
        } else {
            self.server_source
        };
        let request = InvokeRequest {
            default_timeout: CONTAINER_LIMITS.timeout,
            ..InvokeRequest::new(&env, &service, String::new(), source)
        };
        let http = HttpCall {
            request: HttpRequest {
                method: parts.method,
                uri,
                headers: forwardable(&parts.headers),
                body,
                max_response_bytes: CONTAINER_LIMITS.max_response,
            },
            stamp,
        };
        Ok((who.caller, request, Arc::new(http)))
    }

    /// A call's outcome: the function's response, or the error in the dialect's shape.
    pub fn render(&self, inv: Invocation) -> Response<Body> {
        match (inv.result, inv.response) {
            (Ok(_), Some(resp)) => respond(*resp, &inv.request_id),
            (Ok(_), None) => {
                self.error(StatusCode::BAD_GATEWAY, -1, "the function gave no response")
            }
            (Err(e), _) => {
                let code = match e {
                    InvokeError::Timeout { .. } => TIMEOUT,
                    ref e => i64::from(e.errcode()),
                };
                let body = serde_json::json!({ self.keys.0: code, self.keys.1: e.to_string() });
                error_response(status_of(&e), &body, Some(&inv.request_id))
            }
        }
    }
}

/// A prepared request as the dialect's answer to the router.
pub fn accepted(prepared: Prepared) -> crate::dialect::Accepted {
    match prepared {
        Ok((caller, request, http)) => crate::dialect::Accepted::Http(caller, request, http),
        Err(resp) => crate::dialect::Accepted::Answer(*resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consoles_cookies_never_reach_a_function() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            "a=1; cloudfn_console=secret; b=2".parse().unwrap(),
        );
        h.append("cookie", "cloudfn_login=x".parse().unwrap());
        h.append("authorization", "Bearer t".parse().unwrap());
        h.append("x-app", "kept".parse().unwrap());
        let out = forwardable(&h);
        let cookies: Vec<_> = out.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
        assert!(out.get("authorization").is_none());
        assert_eq!(out["x-app"], "kept");
    }

    /// Every header a dialect's stamp sets is one `forwardable` removes from clients: a new
    /// identity header outside [`IDENTITY_PREFIXES`] fails here.
    #[test]
    fn every_stamped_header_is_an_identity_header() {
        let some = |s: &str| Some(s.to_string());
        let context = cloudfn_invoke::WxContext {
            env: "e".into(),
            source: "wx_client".into(),
            appid: some("a"),
            openid: some("o"),
            unionid: some("u"),
            from_appid: some("fa"),
            from_openid: some("fo"),
            from_unionid: some("fu"),
            client_ip: some("127.0.0.1"),
            request_id: "r".into(),
            function_name: "f".into(),
        };
        let stamps = [crate::wx_container::stamp(), crate::douyin::stamp()];
        for stamp in stamps {
            let mut req = HttpRequest {
                method: hyper::Method::GET,
                uri: hyper::Uri::from_static("/"),
                headers: HeaderMap::new(),
                body: Bytes::new(),
                max_response_bytes: 0,
            };
            stamp(&context, &mut req);
            assert!(!req.headers.is_empty());
            for name in req.headers.keys() {
                assert!(
                    is_identity_header(name.as_str()),
                    "{name} is not removed from clients"
                );
            }
        }
    }

    #[test]
    fn every_dialects_identity_headers_are_removed_and_unreadable_cookies_dropped() {
        let mut h = HeaderMap::new();
        for name in [
            "x-wx-openid",
            "x_wx_openid",
            "x-wx-from-appid",
            "x-tt-openid",
            "x-tt-appid",
            "x-dyc-from-app",
            "x-tb-open-id",
            "x-cloudfn-anything",
            "x-forwarded-for",
            "x-real-ip",
            "forwarded",
        ] {
            h.append(HeaderName::from_static(name), "victim".parse().unwrap());
        }
        h.append(
            "cookie",
            HeaderValue::from_bytes(b"cloudfn_console=secret; a=\xe9").unwrap(),
        );
        h.append("x-app", "kept".parse().unwrap());
        let out = forwardable(&h);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["x-app"], "kept");
    }

    #[test]
    fn a_function_cannot_set_the_consoles_cookies() {
        let mut headers = HeaderMap::new();
        for v in [
            "cloudfn_console=x; Path=/console/apps",
            " cloudfn_login=y",
            "theme=dark; Path=/",
        ] {
            headers.append("set-cookie", v.parse().unwrap());
        }
        headers.append("set-cookie", HeaderValue::from_bytes(b"a=\xe9").unwrap());
        let resp = cloudfn_invoke::HttpResponse {
            status: StatusCode::OK,
            headers,
            body: Bytes::new(),
        };
        let out = respond(resp, "r");
        let set: Vec<_> = out.headers().get_all("set-cookie").iter().collect();
        assert_eq!(set, ["theme=dark; Path=/"]);
    }
}
