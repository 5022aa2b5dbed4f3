//! The CloudBase server-SDK dialect: `POST /admin` as `@cloudbase/node-sdk` sends it (protocol
//! §11), authenticated by a TC3-HMAC-SHA256 signature with the app's secretId/secretKey.
//! Errors come back as `{code, message, requestId}` with the §11 codes.

use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{Body, BodyError, header, json, query_map, read_body_within};
use crate::tc3;
use async_trait::async_trait;
use cloudfn_invoke::{AppCaller, Invocation, InvokeError, InvokeRequest};
use cloudfn_protocol::admin;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;

/// The CloudBase dialect.
#[derive(Default)]
pub struct CloudBase {
    /// Signatures accepted already.
    pub replays: tc3::ReplayGuard,
}

fn fail(cx: &Context, code: &str, message: String) -> Accepted {
    let request_id = cx.host.new_request_id();
    Accepted::Answer(json(
        StatusCode::OK,
        &json!({ "code": code, "message": message, "requestId": request_id }),
    ))
}

#[async_trait]
impl Dialect for CloudBase {
    fn claims(&self, req: &Request<Incoming>) -> bool {
        req.uri().path() == "/admin"
    }

    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted {
        if req.method() != Method::POST {
            return fail(cx, "INVALID_REQUEST", "require POST method".into());
        }
        let (parts, body) = req.into_parts();
        // What can be checked without the body is checked first, so an unknown caller cannot
        // make the host buffer megabytes; the header is parsed and the key found once.
        let snapshot = match cx.host.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                if let cloudfn_invoke::InvokeError::System(err) = &e {
                    tracing::error!("reading the state for /admin: {err:#}");
                }
                return fail(cx, "SYS_ERR", e.to_string());
            }
        };
        let auth = match header(&parts.headers, "authorization")
            .ok_or_else(|| tc3::Tc3Error::Invalid("no authorization header".into()))
            .and_then(|h| tc3::parse_authorization(&h))
        {
            Ok(auth) => auth,
            Err(e) => return fail(cx, e.code(), e.to_string()),
        };
        let Some((appid, secret_key)) = snapshot.secret_key(&auth.secret_id) else {
            let e = tc3::Tc3Error::UnknownSecretId(auth.secret_id);
            return fail(cx, e.code(), e.to_string());
        };
        let (appid, secret_key) = (appid.to_string(), secret_key.to_string());
        drop(snapshot);
        // The signature covers the body, so a known secretId is as far as the check goes
        // before reading it; the body counts against that app's share of the budget.
        let (body, _permit) =
            match read_body_within(&cx.bodies, &appid, &parts.headers, body, cx.max_body).await {
                Ok(read) => read,
                Err(e @ BodyError::Busy(_)) => {
                    return fail(cx, "FUNCTION_CONCURRENCY_LIMIT_EXCEEDED", e.to_string());
                }
                Err(e) => return fail(cx, "FUNCTION_PARAM_INVALID", e.to_string()),
            };
        let fields = match admin::body(&body) {
            Ok(fields) => fields,
            Err(refused) => return fail(cx, refused.code, refused.message),
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
        let now = cloudfn_store::fsutil::now();
        if let Err(e) = tc3::verify_parsed(&signed, &auth, &secret_key, now).and_then(|ts| {
            self.replays
                .check_once(&auth.secret_id, &auth.signature, ts, now)
        }) {
            return fail(cx, e.code(), e.to_string());
        }

        let call = match admin::invoke(
            &fields,
            query_map(parts.uri.query()).get("env").map(String::as_str),
        ) {
            Ok(call) => call,
            Err(refused) => return fail(cx, refused.code, refused.message),
        };
        let caller = AppCaller {
            appid,
            client_ip: Some(peer.ip().to_string()),
            ..AppCaller::default()
        };
        // A cloud function calling through the SDK says so in a signed header: its SOURCE
        // chain goes on (`…,scf`). Its user is not passed: the signature proves the app, not
        // which of its users the calling function served.
        let signed_source = auth.signed_headers.iter().any(|h| h == "x-tcb-source");
        let source = admin::caller_source(headers("x-tcb-source").as_deref(), signed_source);
        let request = InvokeRequest {
            version: call.version,
            default_timeout: cloudfn_store::DEFAULT_HTTP_TIMEOUT,
            ..InvokeRequest::new(&call.env, &call.name, call.event, &source)
        };
        Accepted::Call(caller, request)
    }

    fn render(&self, inv: Invocation) -> Response<Body> {
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

/// The §11 `code` of an invocation error; a `cloudbase_auth` denial passes its errCode on.
pub fn admin_code(e: &InvokeError) -> std::borrow::Cow<'static, str> {
    let code = match e {
        InvokeError::Denied { errcode, .. } => return errcode.to_string().into(),
        InvokeError::InvalidParam(_) => "FUNCTION_PARAM_INVALID",
        InvokeError::EnvNotFound(_) => "INVALID_ENV",
        InvokeError::FunctionNotFound { .. } | InvokeError::WrongKind { .. } => {
            "FUNCTION_NOT_FOUND"
        }
        InvokeError::Timeout { .. } => "FUNCTION_TIME_LIMIT_EXCEEDED",
        InvokeError::MemoryLimit { .. } => "FUNCTION_MEMORY_LIMIT_EXCEEDED",
        InvokeError::Failed { .. } | InvokeError::DepthExceeded(_) => "FUNCTION_INVOCATION_FAILED",
        InvokeError::Unauthorized(_) | InvokeError::NotShared { .. } => "EXCEED_AUTHORITY",
        InvokeError::TooBusy { .. } | InvokeError::Overloaded(_) => {
            "FUNCTION_CONCURRENCY_LIMIT_EXCEEDED"
        }
        InvokeError::System(_) => "SYS_ERR",
    };
    code.into()
}
