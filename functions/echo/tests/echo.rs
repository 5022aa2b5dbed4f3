//! `echo` on cloudfn's host in-process (cloudfn-testing): it answers with the event and the
//! WXContext, as each kind of caller sees it.
#![cfg(not(target_arch = "wasm32"))]

use cloudfn_testing::{Config, TestHost};
use serde_json::json;

/// wxA owns env `prod` with echo and shares echo with wxB, whose users its cloudbase_auth
/// (the example next door) grants.
async fn world() -> anyhow::Result<TestHost> {
    let host = TestHost::new().await?;
    host.app("wxA", "Acme").await?;
    host.app("wxB", "Acme").await?;
    host.env("prod", "wxA").await?;
    host.deploy_crate("prod", "echo", env!("CARGO_MANIFEST_DIR"))
        .await?;
    let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/../cloudbase_auth");
    host.deploy_crate_with(
        "prod",
        "cloudbase_auth",
        auth,
        Config::vars([("allowed_appids", "wxB")]),
    )
    .await?;
    host.share("prod", "wxB", "echo").await?;
    Ok(host)
}

#[tokio::test]
async fn a_user_of_the_envs_own_app_is_appid_and_openid() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "echo")
        .user("wxA", "o-a-1")
        .unionid("u-1")
        .event(json!({"a": 1}))
        .await;
    let ctx = &out.ok()["context"];
    assert_eq!(out.ok()["event"], json!({"a": 1}));
    assert_eq!(ctx["APPID"], "wxA");
    assert_eq!(ctx["OPENID"], "o-a-1");
    assert_eq!(ctx["UNIONID"], "u-1");
    assert_eq!(ctx["ENV"], "prod");
    assert_eq!(ctx["FUNCTION_NAME"], "echo");
    assert_eq!(ctx["SOURCE"], "wx_devtools");
    assert!(ctx.get("FROM_APPID").is_none(), "{ctx}");
    Ok(())
}

#[tokio::test]
async fn a_user_of_a_sharing_app_is_from_appid_and_from_openid() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "echo").from_app("wxB", "o-b-1").await;
    let ctx = &out.ok()["context"];
    assert_eq!(ctx["FROM_APPID"], "wxB");
    assert_eq!(ctx["FROM_OPENID"], "o-b-1");
    // The env owner's identity is not the caller's: APPID/OPENID are absent.
    assert!(ctx.get("APPID").is_none(), "{ctx}");
    assert!(ctx.get("OPENID").is_none(), "{ctx}");
    let record = out.record(&host, "prod").await?;
    assert_eq!(record.caller_appid.as_deref(), Some("wxB"));
    Ok(())
}

#[tokio::test]
async fn an_http_caller_with_an_access_token_is_wx_http() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "echo")
        .user("wxA", "o-a-2")
        .event(json!({"via": "http"}))
        .over_http()
        .await;
    let ctx = &out.ok()["context"];
    assert_eq!(ctx["SOURCE"], "wx_http");
    assert_eq!(ctx["OPENID"], "o-a-2");
    assert_eq!(out.ok()["event"]["via"], "http");
    Ok(())
}
