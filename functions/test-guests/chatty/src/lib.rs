//! Test guest: prints `kb` kilobytes to stdout (in 1 KB lines), for tests of how much of a
//! function's logs the host keeps.
use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Chat {
    kb: usize,
}

#[cloudfn_sdk::function]
fn chatty(chat: Chat, _ctx: &WxContext) -> Result<Value, Error> {
    let line = "x".repeat(1023);
    for _ in 0..chat.kb {
        println!("{line}");
    }
    Ok(json!({ "printed_kb": chat.kb }))
}
