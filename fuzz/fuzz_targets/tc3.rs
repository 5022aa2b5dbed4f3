//! TC3 signatures of `/admin` (protocol §11): the input is
//! `AUTHORIZATION \xff BODY \xff X-TIMESTAMP \xff QUERY`. Any authorization header and request
//! are checked without panicking; a request (with keys like the SDK's) signed by `sign` verifies (the host checks what
//! the SDK computes) and is accepted once by the replay guard, never twice.
#![no_main]

use cloudfn_protocol::tc3::{ReplayGuard, SignedRequest, parse_authorization, sign, verify_parsed};
use libfuzzer_sys::fuzz_target;

const KEY: &str = "sk_fuzz";
const NOW: i64 = 1_795_311_814;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff).map(String::from_utf8_lossy);
    let authorization = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let timestamp = parts.next().unwrap_or_default().into_owned();
    let query = parts.next().unwrap_or_default();
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(&body) else {
        let _ = parse_authorization(&authorization);
        return;
    };
    let header = |name: &str| match name {
        "host" => Some("127.0.0.1:8080".to_string()),
        "content-type" => Some("application/json".to_string()),
        "x-timestamp" => Some(timestamp.clone()),
        _ => None,
    };
    let req = SignedRequest {
        host: "127.0.0.1:8080",
        path: "/admin",
        query: &query,
        header: &header,
        body: &fields,
    };
    if let Ok(auth) = parse_authorization(&authorization) {
        let _ = verify_parsed(&req, &auth, KEY, NOW);
    }
    // What the SDK would send for this body, signed now. The header lists the signed keys
    // separated by ';' and ','; only keys like the SDK's (and distinct once lower-cased) can
    // be listed unambiguously: a body with others cannot verify, which refuses it.
    let mut keys: Vec<String> = fields.keys().map(|k| k.trim().to_lowercase()).collect();
    keys.sort();
    keys.dedup();
    if keys.len() != fields.len()
        || !fields
            .keys()
            .all(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
    {
        return;
    }
    let now_header = |name: &str| match name {
        "x-timestamp" => Some(NOW.to_string()),
        other => header(other),
    };
    let signed_req = SignedRequest {
        header: &now_header,
        ..req
    };
    let Ok(signed) = sign(&signed_req, "AKIDfuzz", KEY, NOW) else {
        return;
    };
    let auth = parse_authorization(&signed).expect("sign writes a well-formed header");
    let ts = verify_parsed(&signed_req, &auth, KEY, NOW)
        .unwrap_or_else(|e| panic!("a signed request does not verify: {e}"));
    let guard = ReplayGuard::new(16);
    guard
        .check_once(&auth.secret_id, &auth.signature, ts, NOW)
        .expect("first use");
    assert!(
        guard
            .check_once(&auth.secret_id, &auth.signature, ts, NOW)
            .is_err(),
        "a replay was accepted"
    );
});
