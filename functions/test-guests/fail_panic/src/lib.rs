//! Test guest: panics (a trap in the host's eyes).
use cloudfn_sdk::{Error, WxContext};
use serde_json::Value;

#[cloudfn_sdk::function]
fn fail_panic(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    panic!("deliberate panic from fail_panic")
}
