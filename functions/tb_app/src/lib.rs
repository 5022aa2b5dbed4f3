//! `tb_app`: a Taobao cloud-application backend as a `wasi:http/proxy` component. The host
//! passes the caller's identity as query parameters (`open_id`, `app_key`, …); every answer is
//! the gateway envelope `{"success", "data" | "errorCode" + "errorMessage"}`.
//!
//! - `GET /miniapp/test`: the caller's identity and the non-system query parameters.
//! - `POST /miniapp/order`: accepts a JSON order only when its `sign` matches (`APP_SECRET`).
//! - `GET /miniapp/time`: the current time, to see whether responses are cached.
//!
//! The HTTP plumbing (body, query, responses) comes from the workspace's `http-kit`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use http_kit::{method_name, parse_query, read_body, respond_json, split_target};
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

/// The parameters the platform adds; whatever else is in the query is the caller's own.
const SYSTEM_PARAMS: [&str; 10] = [
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

struct TaobaoApp;

wasi::http::proxy::export!(TaobaoApp);

impl wasi::exports::http::incoming_handler::Guest for TaobaoApp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, envelope) = match route(&request) {
            Ok(data) => (200, json!({ "success": true, "data": data })),
            Err(failure) => (
                failure.status,
                json!({
                    "success": false,
                    "errorCode": failure.code,
                    "errorMessage": failure.message,
                }),
            ),
        };
        respond_json(out, status, &envelope);
    }
}

struct Failure {
    status: u16,
    code: &'static str,
    message: String,
}

fn fail(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

fn route(request: &IncomingRequest) -> Result<Value, Failure> {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, query) = split_target(&path_with_query);
    // Sorted by key for the sign; a later duplicate wins.
    let params: BTreeMap<String, String> = parse_query(query);
    let param = |name: &str| params.get(name).map_or(Value::Null, |v| json!(v));

    match (path, request.method()) {
        ("/miniapp/test", Method::Get) => {
            let own: Map<String, Value> = params
                .iter()
                .filter(|(k, _)| !SYSTEM_PARAMS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            Ok(json!({
                "open_id": param("open_id"),
                "app_key": param("app_key"),
                "env": param("env"),
                "mini_app_id": param("mini_app_id"),
                "source_app_id": param("source_app_id"),
                "params": own,
            }))
        }
        ("/miniapp/order", Method::Post) => {
            let secret = std::env::var("APP_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| fail(500, "NO_SECRET", "APP_SECRET is not configured"))?;
            let body = read_body(request);
            if params.get("sign") != Some(&sign(&secret, &params, &body)) {
                return Err(fail(403, "SIGN_INVALID", "sign does not match"));
            }
            let order: Value = serde_json::from_slice(&body)
                .map_err(|e| fail(400, "INVALID_BODY", format!("body is not JSON: {e}")))?;
            Ok(json!({ "order": order, "open_id": param("open_id"), "signValid": true }))
        }
        ("/miniapp/time", Method::Get) => {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Ok(json!({ "now_ms": now_ms }))
        }
        (_, method) => Err(fail(
            404,
            "NOT_FOUND",
            format!("no route {} {path}", method_name(&method)),
        )),
    }
}

/// Taobao's signature: upper-case hex MD5 of `secret + k1v1k2v2… + body + secret`, over the
/// query parameters but `sign` in key order, leaving out empty values.
fn sign(secret: &str, params: &BTreeMap<String, String>, body: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(secret);
    for (k, v) in params {
        if k != "sign" && !v.is_empty() {
            md5.update(k);
            md5.update(v);
        }
    }
    md5.update(body);
    md5.update(secret);
    md5.finalize().iter().map(|b| format!("{b:02X}")).collect()
}
