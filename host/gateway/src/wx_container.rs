//! WeChat callContainer (protocol §9, seed 003): `ANY /{path}` with `X-WX-SERVICE: NAME` reaches
//! the HTTP function NAME of the env named by `X-WX-ENV` (or configured for the request's host
//! name). The caller is a mini-program user (session) or an app (access token); the function
//! receives `X-WX-OPENID`, `X-WX-APPID`, `X-WX-UNIONID`, `X-WX-ENV`, `X-WX-SOURCE`,
//! `X-WX-SERVICE` and `X-Forwarded-For`, and under sharing `X-WX-FROM-OPENID`, `X-WX-FROM-APPID`,
//! `X-WX-FROM-UNIONID` instead of the caller's own ids. Every `X-WX-*` header a client sends is
//! removed first. Limits: 100 KiB request (-606001), 1000 KiB response, 15 s (102002); a method
//! outside wx.request's (102005). Gateway errors are `{errcode, errmsg}` with an HTTP status.

use crate::container::{self, BAD_METHOD, Prepared, Spec, set_header};
use crate::dialect::{Accepted, Context, Dialect};
use crate::http::Body;
use async_trait::async_trait;
use cloudfn_invoke::{Invocation, Stamp};
use cloudfn_store::TokenPolicy;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// callContainer's wire.
const SPEC: Spec = Spec {
    keys: ("errcode", "errmsg"),
    server_source: "wx_http",
};

/// The methods `wx.request` (and so callContainer) sends.
const METHODS: &[Method] = &[
    Method::OPTIONS,
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::TRACE,
    Method::CONNECT,
];

/// The callContainer dialect.
pub struct CallContainer {
    policy: TokenPolicy,
    env_by_host: HashMap<String, String>,
}

impl CallContainer {
    /// The dialect with token lifetimes `policy` and the env of each configured host name.
    pub fn new(policy: TokenPolicy, env_by_host: HashMap<String, String>) -> CallContainer {
        CallContainer {
            policy,
            env_by_host,
        }
    }
}

#[async_trait]
impl Dialect for CallContainer {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.headers().contains_key("x-wx-service")
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        container::accepted(self.request(cx, req, peer).await)
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
        SPEC.render(inv)
    }
}

impl CallContainer {
    async fn request(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Prepared {
        if !METHODS.contains(req.method()) {
            let why = format!("invalid method {}", req.method());
            return Err(SPEC.refuse(StatusCode::METHOD_NOT_ALLOWED, BAD_METHOD, why));
        }
        let (parts, body) = req.into_parts();
        let who = SPEC.authenticate(cx, self.policy, &parts, peer).await?;
        let service = container::service_name(parts.headers.get("x-wx-service"))
            .map_err(|msg| SPEC.refuse(StatusCode::BAD_REQUEST, 40101, msg))?;
        let env = crate::http::header(&parts.headers, "x-wx-env")
            .filter(|e| !e.is_empty())
            .or_else(|| {
                let host = crate::http::header(&parts.headers, "host")?;
                let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
                self.env_by_host.get(&name.to_ascii_lowercase()).cloned()
            })
            .ok_or_else(|| {
                SPEC.refuse(
                    StatusCode::BAD_REQUEST,
                    40101,
                    "missing parameter env: send X-WX-ENV (config.env) or use a host name \
                     configured for an env",
                )
            })?;
        SPEC.prepare(cx, who, parts, body, (env, service), stamp())
            .await
    }
}

/// The identity headers, from who the pipeline says the caller is to the function.
pub(crate) fn stamp() -> Stamp {
    Arc::new(|cx, req| {
        let h = &mut req.headers;
        set_header(h, "x-wx-openid", cx.openid.as_deref());
        set_header(h, "x-wx-appid", cx.appid.as_deref());
        set_header(h, "x-wx-unionid", cx.unionid.as_deref());
        set_header(h, "x-wx-from-openid", cx.from_openid.as_deref());
        set_header(h, "x-wx-from-appid", cx.from_appid.as_deref());
        set_header(h, "x-wx-from-unionid", cx.from_unionid.as_deref());
        set_header(h, "x-wx-env", Some(&cx.env));
        set_header(h, "x-wx-source", Some(&cx.source));
        set_header(h, "x-wx-service", Some(&cx.function_name));
        set_header(h, "x-forwarded-for", cx.client_ip.as_deref());
    })
}
