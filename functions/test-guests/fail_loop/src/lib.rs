//! Test guest: spins forever; only the host's epoch deadline stops it.
use cloudfn_sdk::{Error, WxContext};
use serde_json::Value;

#[cloudfn_sdk::function]
fn fail_loop(_event: Value, _ctx: &WxContext) -> Result<Value, Error> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
