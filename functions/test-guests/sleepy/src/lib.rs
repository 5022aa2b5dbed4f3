//! Test guest: sleeps `ms` milliseconds (a WASI sleep), then answers; for in-flight calls in
//! drain, deploy and concurrency tests.
use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Nap {
    ms: u64,
    #[serde(default)]
    tag: Value,
}

#[cloudfn_sdk::function]
fn sleepy(nap: Nap, _ctx: &WxContext) -> Result<Value, Error> {
    std::thread::sleep(std::time::Duration::from_millis(nap.ms));
    Ok(json!({ "slept": nap.ms, "tag": nap.tag, "version": 1 }))
}
