//! `wx_counter`: WeChat Cloud Hosting's starter template (the "计数器" counter) as a
//! `wasi:http/proxy` component. `GET/POST /api/count` reads, increments or clears a counter;
//! `GET /api/wx_openid` shows the caller's identity from the headers the host adds.
//!
//! Every request gets a fresh instance, so the counter lives in `/counter.txt` of the
//! function's env directory (writable only when deployed with write access). The HTTP plumbing
//! (body, headers, responses) comes from the workspace's `http-kit`.

use http_kit::{header, method_name, read_body, respond_json, split_target};
use serde_json::{Value, json};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

const COUNTER_FILE: &str = "/counter.txt";

struct Counter;

wasi::http::proxy::export!(Counter);

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = route(&request);
        respond_json(out, status, &body);
    }
}

fn route(request: &IncomingRequest) -> (u16, Value) {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, _) = split_target(&path_with_query);
    let method = request.method();
    match (path, &method) {
        ("/api/count", Method::Get) => reply(read_counter()),
        ("/api/count", Method::Post) => {
            let body: Value = serde_json::from_slice(&read_body(request)).unwrap_or_default();
            match body["action"].as_str() {
                Some("inc") => reply(read_counter().and_then(|n| write_counter(n + 1))),
                Some("clear") => reply(write_counter(0)),
                _ => error(400, "action must be inc or clear"),
            }
        }
        ("/api/wx_openid", Method::Get) => {
            let value = |name: &str| header(request, name).map_or(Value::Null, Value::String);
            let either = |own: &str, shared: &str| match value(own) {
                Value::Null => value(shared),
                found => found,
            };
            // Under resource sharing the caller's identity arrives as x-wx-from-* instead.
            let answer = json!({
                "openid": either("x-wx-openid", "x-wx-from-openid"),
                "appid": either("x-wx-appid", "x-wx-from-appid"),
                "unionid": either("x-wx-unionid", "x-wx-from-unionid"),
                "env": value("x-wx-env"),
                "shared": header(request, "x-wx-from-appid").is_some(),
            });
            (200, answer)
        }
        ("/api/count" | "/api/wx_openid", _) => error(
            405,
            &format!("method {} not allowed on {path}", method_name(&method)),
        ),
        _ => error(404, &format!("no route {} {path}", method_name(&method))),
    }
}

fn reply(count: Result<u64, String>) -> (u16, Value) {
    match count {
        Ok(n) => (200, json!({ "code": 0, "data": n })),
        Err(why) => error(500, &why),
    }
}

fn error(status: u16, message: &str) -> (u16, Value) {
    (status, json!({ "code": -1, "errorMsg": message }))
}

/// The stored count; 0 before the first write.
fn read_counter() -> Result<u64, String> {
    match std::fs::read_to_string(COUNTER_FILE) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| format!("{COUNTER_FILE} holds {text:?}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {COUNTER_FILE}: {e}")),
    }
}

/// Stores `n` and returns it. Concurrent increments may race (WASI has no file locks); the
/// template's MySQL original would use a transaction.
fn write_counter(n: u64) -> Result<u64, String> {
    std::fs::write(COUNTER_FILE, n.to_string())
        .map(|()| n)
        .map_err(|e| format!("cannot write {COUNTER_FILE}: {e}"))
}
