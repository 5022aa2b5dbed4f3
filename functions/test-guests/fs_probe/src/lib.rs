//! Test guest: exercises the env directory (preopened at `/`): read, write, list, and
//! escape attempts through `..` and symlinks, reporting what the sandbox allowed.
use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Probe {
    op: String,
    path: String,
    #[serde(default)]
    data: String,
}

#[cloudfn_sdk::function]
fn fs_probe(probe: Probe, _ctx: &WxContext) -> Result<Value, Error> {
    let outcome = match probe.op.as_str() {
        "read" => std::fs::read_to_string(&probe.path).map(Value::String),
        "write" => std::fs::write(&probe.path, probe.data.as_bytes()).map(|_| Value::Null),
        "list" => std::fs::read_dir(&probe.path).map(|entries| {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            json!(names)
        }),
        other => return Err(Error::new(format!("unknown op {other}"))),
    };
    Ok(match outcome {
        Ok(value) => json!({ "ok": true, "value": value }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    })
}
