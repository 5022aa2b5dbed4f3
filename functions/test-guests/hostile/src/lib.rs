//! Attacks a tenant could make from inside a function, chosen by the event's `op`: `stack`
//! (unbounded recursion), `output` (a result of `mb` megabytes), `fill` (write `kb` KiB into
//! the env directory as `file`), `remove` (delete `file`).

use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Attack {
    op: String,
    #[serde(default)]
    mb: usize,
    #[serde(default)]
    kb: usize,
    #[serde(default)]
    file: String,
}

/// Recurses until the stack runs out (the `depth` check only keeps the compiler from
/// proving that it never returns).
#[inline(never)]
fn dive(depth: u64, pad: &mut [u8; 256]) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    pad[(depth % 256) as usize] = depth as u8;
    let mut next = *pad;
    std::hint::black_box(&mut next);
    dive(depth + 1, &mut next) + u64::from(next[0])
}

#[cloudfn_sdk::function]
fn hostile(attack: Attack, _ctx: &WxContext) -> Result<Value, Error> {
    match attack.op.as_str() {
        "stack" => Ok(json!(dive(0, &mut [0; 256]))),
        "output" => Ok(Value::String("x".repeat(attack.mb << 20))),
        "fill" => {
            let chunk = vec![b'x'; 1024];
            let mut written = 0;
            let mut file =
                std::fs::File::create(&attack.file).map_err(|e| Error::new(e.to_string()))?;
            for _ in 0..attack.kb {
                match std::io::Write::write_all(&mut file, &chunk) {
                    Ok(()) => written += 1,
                    Err(e) => return Ok(json!({ "written_kb": written, "error": e.to_string() })),
                }
            }
            match file.sync_all() {
                Ok(()) => Ok(json!({ "written_kb": written })),
                Err(e) => Ok(json!({ "written_kb": written, "error": e.to_string() })),
            }
        }
        "remove" => Ok(json!(std::fs::remove_file(&attack.file).is_ok())),
        other => Err(Error::new(format!("unknown op {other}"))),
    }
}
