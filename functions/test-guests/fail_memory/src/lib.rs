//! Test guest: allocates until the host's memory limit stops it.
use cloudfn_sdk::{Error, WxContext};
use serde_json::Value;

#[cloudfn_sdk::function]
fn fail_memory(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really committed.
        hoard.push(vec![1u8; 8 << 20]);
        std::hint::black_box(&hoard);
    }
}
