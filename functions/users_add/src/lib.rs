//! `users_add`: the seed's "add a user" function. Validates the user, stamps it with the
//! caller's identity, and hands it to `echo` (standing in for a storage function) through
//! `call_function`, so the call path shows up as SOURCE `…,scf` in the callee.

use cloudfn_sdk::{Error, WxContext};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct NewUser {
    name: String,
    #[serde(default)]
    age: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct User {
    name: String,
    age: Option<u32>,
    /// The user who added it: the env's own user, or the sharing app's user.
    created_by: Option<String>,
    created_in: Option<String>,
}

#[cloudfn_sdk::function]
fn users_add(event: NewUser, ctx: &WxContext) -> Result<Value, Error> {
    let name = event.name.trim();
    if name.is_empty() {
        return Err(Error::with_code("INVALID_USER", "name must not be empty"));
    }
    let user = User {
        name: name.to_string(),
        age: event.age,
        created_by: ctx.openid.clone().or_else(|| ctx.from_openid.clone()),
        created_in: ctx.appid.clone().or_else(|| ctx.from_appid.clone()),
    };
    cloudfn_sdk::info!("adding user {}", user.name);
    let stored: Value = cloudfn_sdk::call_function("echo", &user)?;
    Ok(serde_json::json!({ "added": user, "stored": stored }))
}
