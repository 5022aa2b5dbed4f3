//! Test guest: bypasses the SDK's serialization to return text that is not JSON.
use cloudfn_sdk::__private::{FunctionError, Guest, RawContext};

struct BadJson;

impl Guest for BadJson {
    fn handle(_event: String, _context: RawContext) -> Result<String, FunctionError> {
        Ok("{this is not json".to_string())
    }
}

cloudfn_sdk::__private::export!(BadJson with_types_in cloudfn_sdk::__private::bindings);
