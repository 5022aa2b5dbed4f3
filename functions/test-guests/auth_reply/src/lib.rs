//! Test guest: a `cloudbase_auth` that answers whatever its `reply` variable holds, verbatim,
//! so tests can hand the host malformed replies; it counts its runs in the log.
use cloudfn_sdk::__private::{FunctionError, Guest, RawContext};

struct AuthReply;

impl Guest for AuthReply {
    fn handle(event: String, _context: RawContext) -> Result<String, FunctionError> {
        cloudfn_sdk::info!("auth_reply ran for {event}");
        Ok(cloudfn_sdk::var("reply").unwrap_or_else(|| "{}".into()))
    }
}

cloudfn_sdk::__private::export!(AuthReply with_types_in cloudfn_sdk::__private::bindings);
