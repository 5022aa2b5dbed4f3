//! Security rules (protocol §6): the input is `RULES \xff AUTH \xff FUNCTION`. Any rules text
//! is parsed without panicking; rules that parse are evaluated over any `auth` without
//! panicking, and an evaluation that fails never allows.
#![no_main]

use cloudfn_protocol::rules::Rules;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xff).map(String::from_utf8_lossy);
    let (rules, auth, function) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let Ok(rules) = Rules::parse(&rules) else {
        return;
    };
    let auth = serde_json::from_str(&auth).unwrap_or(serde_json::Value::Null);
    let verdict = rules.check(&function, &auth);
    assert!(
        !(verdict.allowed && verdict.error.is_some()),
        "an evaluation error allowed the call: {verdict:?}"
    );
});
