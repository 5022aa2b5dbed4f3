//! The fields of a server-SDK request to `POST /admin` (protocol §11) that cloudfn acts on:
//! `functions.invokeFunction` with its env, function, event and version. Decoded after the
//! signature is verified; every refusal carries its §11 `code`.

use serde_json::{Map, Value};

/// A `functions.invokeFunction` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoke {
    /// The env: the query's `env`, else the body's `envName`.
    pub env: String,
    /// `function_name`.
    pub name: String,
    /// `request_data` (the event as JSON text), `{}` when empty.
    pub event: String,
    /// `qualifier` as a version number; `None` for the active version.
    pub version: Option<u32>,
}

/// Why a request is refused: a §11 `code` and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The §11 code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The body fields `/admin` reads, all strings in the SDK's requests.
pub const READ_AS_STRING: &[&str] = &[
    "action",
    "envName",
    "function_name",
    "request_data",
    "qualifier",
];

/// The body as the JSON object the signature covers.
pub fn body(bytes: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(refuse(
            "FUNCTION_PARAM_INVALID",
            "the body must be a JSON object",
        )),
    }
}

/// The call a verified body asks for; `query_env` is the query string's `env`.
pub fn invoke(fields: &Map<String, Value>, query_env: Option<&str>) -> Result<Invoke, Refusal> {
    // The signature covers a non-string value as its JSON text; these fields are read as
    // strings, so another type would be ignored after verifying (`"qualifier": 1` would run
    // the latest version). Such a request is refused instead.
    for field in READ_AS_STRING {
        if let Some(v) = fields.get(*field)
            && !(v.is_string() || v.is_null())
        {
            return Err(refuse(
                "FUNCTION_PARAM_INVALID",
                format!("{field} must be a string, not {v}"),
            ));
        }
    }
    let text = |field: &str| fields.get(field).and_then(Value::as_str);
    let env = query_env
        .filter(|e| !e.is_empty())
        .or_else(|| text("envName"))
        .unwrap_or_default();
    let action = text("action").unwrap_or("");
    if action != "functions.invokeFunction" {
        return Err(refuse(
            "ACTION_FORBIDDEN",
            format!("action {action:?} is not supported"),
        ));
    }
    let name = text("function_name").unwrap_or("");
    let event = match text("request_data") {
        None | Some("") => "{}",
        Some(data) => data,
    };
    let version = match text("qualifier") {
        None | Some("") | Some("$LATEST") => None,
        Some(q) => Some(q.parse::<u32>().map_err(|_| {
            refuse(
                "FUNCTION_PARAM_INVALID",
                format!("qualifier {q:?} is not a version number"),
            )
        })?),
    };
    if env.is_empty() || name.is_empty() {
        return Err(refuse(
            "FUNCTION_PARAM_INVALID",
            "env and function_name are required",
        ));
    }
    Ok(Invoke {
        env: env.to_string(),
        name: name.to_string(),
        event: event.to_string(),
        version,
    })
}

/// The SOURCE a `/admin` call runs with (protocol §4, §11). The server SDKs send
/// `X-TCB-Source: {their own SOURCE},{where they run}`; `scf` as the last part says the caller
/// is a cloud function, so the callee sees the caller's chain extended with `,scf` (`wx_client`
/// → `wx_client,scf`; `scf` alone when the caller had none). Anything else, or a header the
/// request's signature does not cover (`signed`), is an HTTP-API caller: `wx_http`. A chain
/// that is not a list of at most 8 lower-case words (`[a-z0-9_]`, 32 characters) is kept as
/// `wx_unknown,scf` rather than passed on.
pub fn caller_source(x_tcb_source: Option<&str>, signed: bool) -> String {
    const HTTP: &str = "wx_http";
    let Some(header) = x_tcb_source.filter(|_| signed) else {
        return HTTP.into();
    };
    let Some((chain, tag)) = header.rsplit_once(',') else {
        return HTTP.into();
    };
    if tag.trim() != "scf" {
        return HTTP.into();
    }
    let chain = chain.trim();
    if chain.is_empty() {
        return "scf".into();
    }
    let word = |w: &str| {
        !w.is_empty()
            && w.len() <= 32
            && w.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
    };
    let parts: Vec<&str> = chain.split(',').map(str::trim).collect();
    if parts.len() > 8 || !parts.iter().all(|p| word(p)) {
        return "wx_unknown,scf".into();
    }
    format!("{},scf", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn in_cloud_callers_chain_their_source_http_callers_are_wx_http() {
        // What @cloudbase/node-sdk 3.x sends: `${TCB_SOURCE},${runEnvTag}`.
        let s = |h: &str, signed| caller_source(Some(h), signed);
        assert_eq!(s("wx_client,scf", true), "wx_client,scf");
        assert_eq!(s("wx_client,scf,scf", true), "wx_client,scf,scf");
        assert_eq!(s(",scf", true), "scf");
        // A backend server (not in a cloud function).
        assert_eq!(s(",unknown", true), "wx_http");
        assert_eq!(s("wx_client,tencentcloud", true), "wx_http");
        assert_eq!(caller_source(None, true), "wx_http");
        // Not covered by the signature: not believed.
        assert_eq!(s("wx_client,scf", false), "wx_http");
        // Not a chain of words.
        assert_eq!(s("wx client,scf", true), "wx_unknown,scf");
        assert_eq!(s("A,scf", true), "wx_unknown,scf");
        assert_eq!(
            s(&format!("{},scf", ["x"; 9].join(",")), true),
            "wx_unknown,scf"
        );
        assert_eq!(
            s(&format!("{},scf", "x".repeat(33)), true),
            "wx_unknown,scf"
        );
        assert_eq!(s("wx_client,,scf", true), "wx_unknown,scf");
    }

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn decodes_what_the_sdk_sends_and_refuses_the_rest() {
        let ok = fields(
            json!({"action":"functions.invokeFunction","function_name":"echo",
            "request_data":"","envName":"prod","qualifier":"3","other":""}),
        );
        assert_eq!(
            invoke(&ok, Some("")),
            Ok(Invoke {
                env: "prod".into(),
                name: "echo".into(),
                event: "{}".into(),
                version: Some(3)
            })
        );
        assert_eq!(invoke(&ok, Some("dev")).unwrap().env, "dev");
        let mut wrong = ok.clone();
        wrong.insert("qualifier".into(), json!(3));
        assert_eq!(
            invoke(&wrong, None).unwrap_err().code,
            "FUNCTION_PARAM_INVALID"
        );
        wrong.insert("qualifier".into(), json!("x"));
        assert_eq!(
            invoke(&wrong, None).unwrap_err().code,
            "FUNCTION_PARAM_INVALID"
        );
        let mut other = ok.clone();
        other.insert("action".into(), json!("database.query"));
        assert_eq!(invoke(&other, None).unwrap_err().code, "ACTION_FORBIDDEN");
        assert!(body(b"[1]").is_err() && body(b"{").is_err());
    }
}
