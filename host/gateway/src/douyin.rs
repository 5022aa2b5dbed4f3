//! Douyin Cloud (protocol §9, seed 000): `ANY /{path}` with `x-tt-envid: ENV` and
//! `x-tt-serviceid: NAME` (the keys of `tt.createCloud`) reaches the HTTP function NAME of ENV.
//! The function receives `X-TT-OPENID`, `X-TT-APPID`, `X-TT-UNIONID`, `X-TT-ENV`,
//! `X-TT-SOURCE`, `X-TT-SERVICEID` and `X-Forwarded-For` for the calling app and user; when the
//! env is another app's, shared with the caller, also `X-DYC-FROM-APP` (the acting app) and
//! `X-DYC-SERVICE` (the service), which its calls to the platform carry. A client may name
//! them too: they must match the authenticated app and the service, and the share must cover
//! the service (the pipeline's share check). Every `X-TT-*` and `X-DYC-*` header a client sends
//! is removed before the function sees the request; `X-TT-ANONYMOUS-OPENID` is never set,
//! since every cloudfn session is a logged-in user's. Limits and errcodes are callContainer's;
//! errors are `{err_no, err_tips}` with an HTTP status.

use crate::container::{self, BAD_METHOD, Prepared, Spec, set_header};
use crate::dialect::{Accepted, Context, Dialect};
use crate::http::Body;
use async_trait::async_trait;
use cloudfn_invoke::{CLIENT_SOURCE, Invocation, Stamp};
use cloudfn_store::TokenPolicy;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// Douyin Cloud's wire.
const SPEC: Spec = Spec {
    keys: ("err_no", "err_tips"),
    server_source: "tt_http",
};

/// The Douyin Cloud dialect.
pub struct Douyin {
    policy: TokenPolicy,
}

impl Douyin {
    /// The dialect with token lifetimes `policy`.
    pub fn new(policy: TokenPolicy) -> Douyin {
        Douyin { policy }
    }
}

#[async_trait]
impl Dialect for Douyin {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.headers().contains_key("x-tt-serviceid")
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        container::accepted(self.request(cx, req, peer).await)
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
        SPEC.render(inv)
    }
}

impl Douyin {
    async fn request(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Prepared {
        if req.method() == Method::CONNECT || req.method() == Method::TRACE {
            let why = format!("invalid method {}", req.method());
            return Err(SPEC.refuse(StatusCode::METHOD_NOT_ALLOWED, BAD_METHOD, why));
        }
        let (parts, body) = req.into_parts();
        let who = SPEC.authenticate(cx, self.policy, &parts, peer).await?;
        let service = container::service_name(parts.headers.get("x-tt-serviceid"))
            .map_err(|msg| SPEC.refuse(StatusCode::BAD_REQUEST, 40101, msg))?;
        let Some(env) = crate::http::header(&parts.headers, "x-tt-envid").filter(|e| !e.is_empty())
        else {
            let why = "missing parameter x-tt-envid";
            return Err(SPEC.refuse(StatusCode::BAD_REQUEST, 40101, why));
        };
        // What a client says of its sharing must be what it is: the app it authenticated as,
        // the service it addresses.
        if let Some(from) = crate::http::header(&parts.headers, "x-dyc-from-app")
            && from != who.caller.appid
        {
            let why = format!(
                "X-DYC-FROM-APP names app {from}, but the request is authenticated as app {}",
                who.caller.appid
            );
            return Err(SPEC.refuse(StatusCode::FORBIDDEN, -501019, why));
        }
        if let Some(named) = crate::http::header(&parts.headers, "x-dyc-service")
            && named != service
        {
            let why =
                format!("X-DYC-SERVICE names service {named}, but the request is for {service}");
            return Err(SPEC.refuse(StatusCode::BAD_REQUEST, -501007, why));
        }
        SPEC.prepare(cx, who, parts, body, (env, service), stamp())
            .await
    }
}

/// The identity headers: Douyin names the calling app and user alike with or without
/// sharing, and marks a shared call with `X-DYC-*`.
pub(crate) fn stamp() -> Stamp {
    Arc::new(|cx, req| {
        let shared = cx.from_appid.is_some();
        let h = &mut req.headers;
        let app = cx.from_appid.as_deref().or(cx.appid.as_deref());
        set_header(h, "x-tt-appid", app);
        let openid = cx.from_openid.as_deref().or(cx.openid.as_deref());
        set_header(h, "x-tt-openid", openid);
        let unionid = cx.from_unionid.as_deref().or(cx.unionid.as_deref());
        set_header(h, "x-tt-unionid", unionid);
        set_header(h, "x-tt-env", Some(&cx.env));
        let source = if cx.source == CLIENT_SOURCE {
            "tt_client"
        } else {
            cx.source.as_str()
        };
        set_header(h, "x-tt-source", Some(source));
        set_header(h, "x-tt-serviceid", Some(&cx.function_name));
        set_header(h, "x-forwarded-for", cx.client_ip.as_deref());
        set_header(h, "x-dyc-from-app", app.filter(|_| shared));
        let service = Some(cx.function_name.as_str()).filter(|_| shared);
        set_header(h, "x-dyc-service", service);
    })
}
