//! Test guest: a plain WASI command (exports `wasi:cli/run`, not the cloudfn handler).
fn main() {
    println!("I am a command, not a cloud function");
}
