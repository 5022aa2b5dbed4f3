//! Builds the example `cloudbase_auth` and `echo` of `functions/` and embeds them, so a test of
//! any function can share an env (which needs a `cloudbase_auth`) or have something to call.

const EXAMPLES: &[&str] = &["cloudbase_auth", "echo"];

fn main() {
    let wasm_dir = cloudfn_guest_build::build(EXAMPLES);
    let mut out = String::new();
    for name in EXAMPLES {
        let path = wasm_dir.join(format!("{name}.wasm"));
        out.push_str(&format!(
            "/// `functions/{name}`, built.\npub const {}: &[u8] = include_bytes!({:?});\n",
            name.to_uppercase(),
            path.display().to_string()
        ));
    }
    cloudfn_guest_build::write_out("examples.rs", &out);
}
