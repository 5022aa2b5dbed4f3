//! `cloudbase_auth`: decides who may use this (shared) environment (protocol §5).
//!
//! Grants callers whose FROM_APPID is in the comma-separated variable `allowed_appids`; the
//! optional variable `roles` (`wxB=admin,wxC=viewer`) sets the `role` claim per app (default
//! `member`). Claims go back in `auth`, a JSON object serialised to a string, and become
//! `auth.custom` in the env's security rules.

use cloudfn_sdk::{Error, WxContext};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The §5 event the host passes in.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AuthEvent {
    from_appid: Option<String>,
    from_openid: Option<String>,
    from_unionid: Option<String>,
    resource_env: Option<String>,
    function: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthReply {
    err_code: i64,
    err_msg: String,
    auth: String,
}

/// Denial code for an app that is not on the allowlist.
const NOT_ALLOWED: i64 = -403001;

#[cloudfn_sdk::function]
fn cloudbase_auth(event: AuthEvent, ctx: &WxContext) -> Result<AuthReply, Error> {
    // The host sets FROM_* in the context; the event repeats them for callers that test locally.
    let from_appid = ctx
        .from_appid
        .clone()
        .or(event.from_appid)
        .unwrap_or_default();
    let from_openid = ctx.from_openid.clone().or(event.from_openid);
    let from_unionid = ctx.from_unionid.clone().or(event.from_unionid);
    let env = event.resource_env.unwrap_or_else(|| ctx.env.clone());

    let allowed = cloudfn_sdk::var("allowed_appids").unwrap_or_default();
    if from_appid.is_empty() || !allowed.split(',').any(|a| a.trim() == from_appid) {
        cloudfn_sdk::warn!("denied app {from_appid} for env {env}");
        return Ok(AuthReply {
            err_code: NOT_ALLOWED,
            err_msg: format!("app {from_appid} is not allowed to use env {env}"),
            auth: String::new(),
        });
    }
    let role = cloudfn_sdk::var("roles")
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(app, _)| app.trim() == from_appid)
        .map(|(_, role)| role.trim().to_string())
        .unwrap_or_else(|| "member".into());
    // `function` is absent for `init` (the env as a whole).
    let what = event.function.as_deref().unwrap_or("init");
    cloudfn_sdk::info!("granted app {from_appid} role {role} for {what}");
    let claims = json!({
        "fromAppid": from_appid,
        "fromOpenid": from_openid,
        "fromUnionid": from_unionid,
        "role": role,
    });
    Ok(AuthReply {
        err_code: 0,
        err_msg: String::new(),
        auth: claims.to_string(),
    })
}
