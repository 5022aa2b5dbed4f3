//! Builds every guest in `functions/` (examples and test-only ones) once per build and hands
//! their paths to the tests as constants.

/// Every guest crate in `functions/`.
const GUESTS: &[&str] = &[
    "cloudbase_auth",
    "echo",
    "users_add",
    "fail_panic",
    "fail_loop",
    "fail_sleep",
    "fail_memory",
    "fail_badjson",
    "fail_error",
    "fs_probe",
    "sleepy",
    "recurse",
    "auth_reply",
    "wrong_import",
    "wrong_world",
    "leftovers",
    "chatty",
    "hostile",
    "openapi_probe",
    "http_probe",
    "wx_counter",
    "tt_todo",
    "tb_app",
];

fn main() {
    let wasm_dir = cloudfn_guest_build::build(GUESTS);
    let mut out = format!(
        "/// The directory holding every built guest.\npub const WASM_DIR: &str = {:?};\n",
        wasm_dir.display().to_string()
    );
    for name in GUESTS {
        let path = wasm_dir.join(format!("{name}.wasm"));
        out.push_str(&format!(
            "/// `functions/…/{name}`, built.\npub const {}: &str = {:?};\n",
            name.to_uppercase(),
            path.display().to_string()
        ));
    }
    cloudfn_guest_build::write_out("guests.rs", &out);
}
