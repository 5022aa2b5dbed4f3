//! `cloudbase_auth` replies (protocol §5): any text is parsed without panicking, and a grant
//! always carries claims that are a JSON object and are what its raw `auth` string holds.
#![no_main]

use cloudfn_protocol::auth_reply::{AuthOutcome, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(AuthOutcome::Granted { custom, raw }) = parse(text) {
        assert!(custom.is_object(), "claims must be an object: {custom}");
        let reparsed: serde_json::Value = serde_json::from_str(&raw).expect("raw auth is JSON");
        assert_eq!(reparsed, custom);
    }
});
