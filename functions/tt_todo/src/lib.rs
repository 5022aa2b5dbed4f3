//! `tt_todo`: a Douyin Cloud style REST backend as a `wasi:http/proxy` component: each
//! logged-in user's todo list (`GET/POST /api/todos`), and `GET /api/whoami` showing the
//! identity headers the host adds.
//!
//! Every request gets a fresh instance, so the lists live in the function's env directory, one
//! file per user at `/todos/<appid>/<openid>.json` (writable only when deployed with write
//! access). The HTTP plumbing (body, headers, responses) comes from the workspace's `http-kit`.

use http_kit::{header, method_name, read_body, respond_json, split_target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

#[derive(Serialize, Deserialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

struct TodoApp;

wasi::http::proxy::export!(TodoApp);

impl wasi::exports::http::incoming_handler::Guest for TodoApp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let (status, body) = match route(&request) {
            Ok(data) => (200, json!({ "err_no": 0, "data": data })),
            Err((status, tips)) => (status, json!({ "err_no": status, "err_tips": tips })),
        };
        respond_json(out, status, &body);
    }
}

/// A failure: the HTTP status (also the `err_no`) and the `err_tips`.
type Failure = (u16, String);

fn route(request: &IncomingRequest) -> Result<Value, Failure> {
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, _) = split_target(&path_with_query);
    match (path, request.method()) {
        ("/api/todos", Method::Get) => {
            let todos = load(&list_file(request)?)?;
            Ok(json!(todos))
        }
        ("/api/todos", Method::Post) => {
            let file = list_file(request)?;
            let body: Value = serde_json::from_slice(&read_body(request)).unwrap_or_default();
            let title = match body["title"].as_str() {
                Some(title) if !title.trim().is_empty() => title.to_string(),
                _ => return Err((400, "title required".into())),
            };
            let mut todos = load(&file)?;
            let id = todos.iter().map(|t| t.id).max().unwrap_or(0) + 1;
            let todo = Todo {
                id,
                title,
                done: false,
            };
            let data = json!(todo);
            todos.push(todo);
            save(&file, &todos)?;
            Ok(data)
        }
        ("/api/whoami", Method::Get) => {
            let value = |name: &str| header(request, name);
            Ok(json!({
                "openid": value("x-tt-openid"),
                "appid": value("x-tt-appid"),
                "unionid": value("x-tt-unionid"),
                "anonymous_openid": value("x-tt-anonymous-openid"),
                "env": value("x-tt-env"),
                "source": value("x-tt-source"),
                "service": value("x-tt-serviceid"),
                // Only present when the call comes through resource sharing.
                "from_app": value("x-dyc-from-app"),
                "dyc_service": value("x-dyc-service"),
            }))
        }
        (_, method) => Err((404, format!("no route {} {path}", method_name(&method)))),
    }
}

/// The caller's list file. The ids become path components, so only a safe alphabet passes:
/// no `/`, no `..`.
fn list_file(request: &IncomingRequest) -> Result<String, Failure> {
    let openid = header(request, "x-tt-openid")
        .ok_or_else(|| (401, "log in first (no X-TT-OPENID)".to_string()))?;
    let appid = header(request, "x-tt-appid").unwrap_or_default();
    let safe = |id: &str| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !safe(&openid) || !safe(&appid) {
        return Err((
            400,
            "X-TT-OPENID and X-TT-APPID must be non-empty [A-Za-z0-9_-]".into(),
        ));
    }
    Ok(format!("/todos/{appid}/{openid}.json"))
}

/// The stored list; empty before the user's first todo.
fn load(file: &str) -> Result<Vec<Todo>, Failure> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| (500, format!("{file} is not a todo list: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err((500, format!("cannot read {file}: {e}"))),
    }
}

/// Rewrites the whole list. Two concurrent posts by the same user may race (WASI has no file
/// locks); a real backend would use a database.
fn save(file: &str, todos: &[Todo]) -> Result<(), Failure> {
    let dir = file.rsplit_once('/').map_or("/", |(dir, _)| dir);
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(file, json!(todos).to_string()))
        .map_err(|e| (500, format!("cannot write {file}: {e}")))
}
