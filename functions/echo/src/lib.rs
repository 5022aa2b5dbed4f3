//! `echo`: returns the event and the caller's WXContext, unchanged. The test workhorse.

use cloudfn_sdk::{Error, WxContext};
use serde_json::{Value, json};

#[cloudfn_sdk::function]
fn echo(event: Value, ctx: &WxContext) -> Result<Value, Error> {
    Ok(json!({ "event": event, "context": ctx }))
}
