//! Test guest: a `wasi:http/proxy` component whose path picks a behaviour for the host's HTTP
//! tests: report the request it got (the default), answer a large body, a chosen status, sleep,
//! spin, fetch an outgoing URL, panic, or never answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_kit::{CHUNK, method_name, parse_query, read_body, respond, respond_with, split_target};
use serde_json::{Map, Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingRequest, ResponseOutparam, Scheme,
};

struct Probe;

wasi::http::proxy::export!(Probe);

impl wasi::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = split_target(&path_with_query);
        // In order, so a lookup from the end lets later duplicates win.
        let params: Vec<(String, String)> = parse_query(query);
        let param = |name: &str| params.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        let number = |name: &str| param(name).and_then(|v| v.parse::<u64>().ok());

        match path {
            "/big" => {
                let bytes = number("bytes").unwrap_or(0);
                respond_with(out, 200, "text/plain", |stream| {
                    let chunk = [b'x'; CHUNK];
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(CHUNK as u64) as usize;
                        stream.blocking_write_and_flush(&chunk[..n])?;
                        left -= n as u64;
                    }
                    Ok(())
                });
            }
            "/sleep" => {
                std::thread::sleep(Duration::from_millis(number("ms").unwrap_or(0)));
                respond(out, 200, "text/plain", b"slept");
            }
            "/spin" => {
                // black_box keeps the optimiser from proving the loop useless.
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/status" => {
                let code = param("code").map_or(Some(200), |c| c.parse::<u16>().ok());
                let content_type = param("type").map_or("application/json", |t| t);
                let body = param("body").map_or("", |b| b);
                // Only what the host accepts as a status and a header value; anything else is
                // the test's mistake, told as a 400 rather than a trap.
                let valid_type = !content_type
                    .bytes()
                    .any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
                match code.filter(|c| (100..=999).contains(c) && valid_type) {
                    Some(code) => respond(out, code, content_type, body.as_bytes()),
                    None => respond(out, 400, "text/plain", b"invalid code or type"),
                }
            }
            "/fetch" => {
                let answer = match param("url") {
                    Some(url) => match fetch(url) {
                        Ok(status) => json!({ "status": status }),
                        Err(error) => json!({ "error": error }),
                    },
                    None => json!({ "error": "url required" }),
                };
                respond(out, 200, "application/json", answer.to_string().as_bytes());
            }
            // Dropping the outparam unset is what the host must turn into an error response.
            "/noreply" => {}
            "/panic" => panic!("http_probe: /panic asked for it"),
            // Anything else, and `/envelope`: what the function received.
            _ => {
                let report = json!({
                    "method": method_name(&request.method()),
                    "path": path_with_query,
                    "headers": headers(&request),
                    // Collected in order, so a later duplicate overwrites an earlier one.
                    "query": params
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect::<Map<_, _>>(),
                    "body": String::from_utf8_lossy(&read_body(&request)),
                    "vars": std::env::vars().collect::<std::collections::BTreeMap<_, _>>(),
                    "now_ns": SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64),
                });
                // `/envelope`: the report as the Taobao gateway's envelope, with a field the
                // gateway must drop.
                let body = if path == "/envelope" {
                    json!({ "success": true, "data": report, "extra": "dropped" })
                } else {
                    report
                };
                respond(out, 200, "application/json", body.to_string().as_bytes());
            }
        }
    }
}

/// A GET of `url` through the host's outgoing handler: the upstream status, or why it failed.
fn fetch(url: &str) -> Result<u16, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("unsupported url {url:?}"));
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_string(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_string(),
    };

    // A request without a body() call goes out with an empty body.
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(&path)))
        .map_err(|()| format!("invalid url {url:?}"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future.get();
    match response {
        Some(Ok(Ok(response))) => Ok(response.status()),
        Some(Ok(Err(code))) => Err(format!("{code:?}")),
        Some(Err(())) => Err("response already taken".into()),
        None => Err("response not ready after block".into()),
    }
}

/// The request's headers, a repeated one's values joined with ", " as HTTP allows.
fn headers(request: &IncomingRequest) -> Map<String, Value> {
    let mut joined = Map::new();
    for (name, value) in request.headers().entries() {
        let value = String::from_utf8_lossy(&value).into_owned();
        match joined.get_mut(&name) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                joined.insert(name, Value::String(value));
            }
        }
    }
    joined
}
