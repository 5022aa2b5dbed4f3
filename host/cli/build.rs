//! Builds the example functions the demo deploys and embeds them (as bytes, not paths) in the
//! `cloudfn` binary. Test-only guests are built by `cloudfn-test-guests`, for tests only.

/// The example functions in `functions/` the demo deploys.
const DEMO: &[&str] = &[
    "cloudbase_auth",
    "echo",
    "users_add",
    "wx_counter",
    "tt_todo",
    "tb_app",
];

fn main() {
    let wasm_dir = cloudfn_guest_build::build(DEMO);
    let mut out = String::from(
        "/// The example functions the demo deploys: (name, component bytes).\n\
         pub const DEMO_FUNCTIONS: &[(&str, &[u8])] = &[\n",
    );
    for name in DEMO {
        let path = wasm_dir.join(format!("{name}.wasm"));
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    cloudfn_guest_build::write_out("demo_functions.rs", &out);
}
