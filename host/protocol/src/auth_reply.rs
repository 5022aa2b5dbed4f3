//! `cloudbase_auth`'s reply (protocol §5): `{errCode, errMsg, auth}` with `auth` a string
//! holding a JSON object (the claims, `auth.custom` in the rules). A reply that breaks the table
//! is an error here, which the host treats as a denial, never a grant.

use serde_json::Value;

/// A `cloudbase_auth` outcome worth caching.
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// errCode 0: the claims (`auth.custom`) and the raw `auth` string.
    Granted {
        /// `auth.custom`.
        custom: Value,
        /// The `auth` string as returned.
        raw: String,
    },
    /// errCode ≠ 0.
    Denied {
        /// The errCode.
        errcode: i32,
        /// The errMsg.
        errmsg: String,
    },
}

/// Checks a `cloudbase_auth` reply against the §5 table.
pub fn parse(json: &str) -> Result<AuthOutcome, String> {
    let reply: Value =
        serde_json::from_str(json).map_err(|e| format!("the reply is not JSON: {e}"))?;
    let Value::Object(reply) = reply else {
        return Err(format!("the reply must be a JSON object, got {reply}"));
    };
    let errcode = match reply.get("errCode") {
        None => return Err("errCode is missing".into()),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("errCode must be an integer, got {n}"))?,
        Some(other) => return Err(format!("errCode must be a number, got {other}")),
    };
    let errmsg = match reply.get("errMsg") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("errMsg must be a string, got {other}")),
    };
    if errcode != 0 {
        return Ok(AuthOutcome::Denied { errcode, errmsg });
    }
    let raw = match reply.get("auth") {
        None => return Err("auth is missing".into()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "auth must be a string holding a JSON object, got {other}"
            ));
        }
    };
    match serde_json::from_str::<Value>(&raw) {
        Ok(custom @ Value::Object(_)) => Ok(AuthOutcome::Granted { custom, raw }),
        Ok(other) => Err(format!("auth must hold a JSON object, got {other}")),
        Err(e) => Err(format!("auth is not JSON: {e}")),
    }
}
