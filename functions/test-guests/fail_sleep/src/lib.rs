//! Test guest: blocks in a WASI sleep, which no epoch check interrupts; only the host's
//! wall-clock timeout stops it.
use cloudfn_sdk::{Error, WxContext};
use serde_json::Value;

#[cloudfn_sdk::function]
fn fail_sleep(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    std::thread::sleep(std::time::Duration::from_secs(3600));
    Ok(Value::Null)
}
