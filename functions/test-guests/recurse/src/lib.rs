//! Test guest: calls itself until the host's call-depth cap stops the chain, then reports how
//! deep it got and the error the deepest call saw.
use cloudfn_sdk::{Error, WxContext};
use serde_json::{Value, json};

#[cloudfn_sdk::function]
fn recurse(event: Value, ctx: &WxContext) -> Result<Value, Error> {
    let depth = event["depth"].as_u64().unwrap_or(0);
    match cloudfn_sdk::call_function::<Value>(&ctx.function_name, &json!({ "depth": depth + 1 })) {
        Ok(inner) => Ok(inner),
        Err(e) => Ok(json!({ "depth": depth, "errcode": e.errcode, "errmsg": e.errmsg })),
    }
}
