//! Test guest: returns a function error on purpose.
use cloudfn_sdk::{Error, WxContext};
use serde_json::Value;

#[cloudfn_sdk::function]
fn fail_error(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    Err(Error::with_code("E_DELIBERATE", "fail_error always fails"))
}
