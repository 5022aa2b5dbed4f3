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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
