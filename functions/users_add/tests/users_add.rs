//! `users_add` in the seed scenario, loaded from `examples/fixtures/seed.toml` (wxA shares
//! env `prod` with wxB, whose cloudbase_auth role is `partner`; wxC is refused), on cloudfn's
//! host in-process (cloudfn-testing).
#![cfg(not(target_arch = "wasm32"))]

use cloudfn_testing::TestHost;
use serde_json::json;

async fn seed() -> anyhow::Result<TestHost> {
    TestHost::from_fixture(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/fixtures/seed.toml"
    ))
    .await
}

#[tokio::test]
async fn the_owners_user_adds_a_user_stored_through_echo() -> anyhow::Result<()> {
    let host = seed().await?;
    let out = host
        .call("prod", "users_add")
        .user("wxA", "o-a-1")
        .event(json!({"name": " Ada ", "age": 36}))
        .await;
    let added = &out.ok()["added"];
    assert_eq!(added["name"], "Ada");
    assert_eq!(added["createdBy"], "o-a-1");
    assert_eq!(added["createdIn"], "wxA");
    // echo ran as a nested call: the SOURCE chain says so.
    let stored = &out.ok()["stored"]["context"];
    assert_eq!(stored["FUNCTION_NAME"], "echo");
    assert_eq!(stored["SOURCE"], "wx_devtools,scf");
    assert!(
        out.log_text().contains("adding user Ada"),
        "{}",
        out.log_text()
    );
    Ok(())
}

#[tokio::test]
async fn a_partner_app_adds_users_and_another_company_is_refused() -> anyhow::Result<()> {
    let host = seed().await?;
    let out = host
        .call("prod", "users_add")
        .from_app("wxB", "o-b-1")
        .event(json!({"name": "Bo"}))
        .await;
    assert_eq!(out.ok()["added"]["createdIn"], "wxB");
    assert_eq!(out.ok()["added"]["createdBy"], "o-b-1");

    // No share with wxC: refused before any function runs.
    let out = host
        .call("prod", "users_add")
        .from_app("wxC", "o-c-1")
        .event(json!({"name": "Cy"}))
        .await;
    assert_eq!(out.err().errcode, -501019, "{:?}", out.err());
    assert_eq!(out.version, None, "users_add did not run");
    Ok(())
}

#[tokio::test]
async fn an_empty_name_is_the_functions_own_error() -> anyhow::Result<()> {
    let host = seed().await?;
    let out = host
        .call("prod", "users_add")
        .user("wxA", "o-a-1")
        .event(json!({"name": "  "}))
        .await;
    assert_eq!(out.err().errcode, -504002, "{:?}", out.err());
    assert!(
        out.err().errmsg.contains("name must not be empty"),
        "{:?}",
        out.err()
    );
    let record = out.record(&host, "prod").await?;
    assert_eq!(record.errcode, -504002);
    Ok(())
}
