//! The example `cloudbase_auth` deciding for a shared env on cloudfn's host in-process
//! (cloudfn-testing): apps on its allowlist are granted with the role its `roles` variable
//! gives them, the env's rules act on that role, and other apps get its errCode.
#![cfg(not(target_arch = "wasm32"))]

use cloudfn_testing::{Config, TestHost};

/// wxA owns env `prod` (echo, this cloudbase_auth) and shares it with wxB, wxC and wxD; the
/// allowlist has wxB (role partner) and wxD (no role given: member); the rules let only
/// partners call.
async fn world() -> anyhow::Result<TestHost> {
    let host = TestHost::new().await?;
    for app in ["wxA", "wxB", "wxC", "wxD"] {
        host.app(app, "Acme").await?;
    }
    host.env("prod", "wxA").await?;
    let vars = Config::vars([("allowed_appids", "wxB, wxD"), ("roles", "wxB=partner")]);
    host.deploy_crate_with("prod", "cloudbase_auth", env!("CARGO_MANIFEST_DIR"), vars)
        .await?;
    let echo = concat!(env!("CARGO_MANIFEST_DIR"), "/../echo");
    host.deploy_crate("prod", "echo", echo).await?;
    for app in ["wxB", "wxC", "wxD"] {
        host.share("prod", app, "*").await?;
    }
    host.rules(
        "prod",
        r#"{"*": {"invoke": "auth.custom.role == 'partner'"}}"#,
    )
    .await?;
    Ok(host)
}

#[tokio::test]
async fn an_allowed_app_is_granted_with_its_role() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "echo").from_app("wxB", "o-b-1").await;
    assert_eq!(out.ok()["context"]["FROM_APPID"], "wxB");
    // The decision is in the owner's records, with cloudbase_auth's own log.
    let auth = host.records("prod", Some("cloudbase_auth")).await?;
    let logs: Vec<_> = auth
        .iter()
        .flat_map(|r| &r.logs)
        .map(|l| &l.message)
        .collect();
    assert!(
        logs.iter()
            .any(|m| m.contains("granted app wxB role partner for echo")),
        "{logs:?}"
    );
    // Lines meant for people, not Rust's debug form of an Option.
    assert!(
        !logs
            .iter()
            .any(|m| m.contains("Some(") || m.contains("None")),
        "{logs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_allowed_app_without_the_role_is_refused_by_the_rules() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "echo").from_app("wxD", "o-d-1").await;
    assert_eq!(out.err().errcode, -501019, "{:?}", out.err());
    let record = out.record(&host, "prod").await?;
    let decision = record
        .decision
        .expect("a cross-app call records its decision");
    assert_eq!(decision.step, "rules");
    Ok(())
}

#[tokio::test]
async fn an_app_off_the_allowlist_gets_cloudbase_auths_errcode() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "echo").from_app("wxC", "o-c-1").await;
    assert_eq!(out.err().errcode, -403001, "{:?}", out.err());
    assert_eq!(out.version, None, "echo did not run");
    Ok(())
}
