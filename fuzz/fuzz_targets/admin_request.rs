//! Request decoding: the input is `BODY \xff QUERY-ENV \xff HEADER-ID`. An `/admin` body and
//! query decode without panicking, and a decoded call only ever comes from fields of the
//! types the host reads; a caller's id header is accepted only as a plain bounded id.
#![no_main]

use cloudfn_protocol::admin::{READ_AS_STRING, body, invoke};
use cloudfn_protocol::ids::{MAX_ID_LEN, user_id};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff);
    let (raw_body, query_env, id) = (parts.next(), parts.next(), parts.next());
    if let Ok(Some(id)) = user_id(id) {
        assert!(!id.is_empty() && id.len() <= MAX_ID_LEN);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        );
    }
    let Ok(fields) = body(raw_body.unwrap_or_default()) else {
        return;
    };
    let query_env = query_env.map(String::from_utf8_lossy);
    if let Ok(call) = invoke(&fields, query_env.as_deref()) {
        for field in READ_AS_STRING {
            let v = fields.get(*field);
            assert!(
                v.is_none_or(|v| v.is_string() || v.is_null()),
                "{field}: {v:?}"
            );
        }
        assert!(!call.env.is_empty() && !call.name.is_empty());
        serde_json::from_str::<serde_json::Value>(&call.event).ok();
    }
});
