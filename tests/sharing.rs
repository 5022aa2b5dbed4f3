//! Environment sharing end to end (protocol §1, §4, §5, §6): shares, the mandatory
//! `cloudbase_auth`, security rules over its claims, FROM_* in the function, the same pipeline
//! over `/tcb/invokecloudfunction`, `/tcb/init`, `/admin` (real node-sdk), function-to-function
//! calls and the local CLI.

use crate::common;

use crate::common::Manage;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::Options;
use cloudfn_store::{AppCredentials, FunctionConfig, SharedFunctions, StoreError};
use common::guests as paths;
use common::http::*;
use common::{Bin, World, records, wasm};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const RULES: &str = r#"{"*": {"invoke": "auth != null"},
    "users_add": {"invoke": "auth.custom.role == 'partner'"}}"#;

struct Shared {
    s: TestServer,
    /// Shares prod but is not on cloudbase_auth's allowlist.
    e: AppCredentials,
    /// Another subject.
    d: AppCredentials,
    /// Shares prod for echo and users_add only; role viewer.
    c: AppCredentials,
}

/// wxA owns prod (shared with wxB for everything, wxC for echo and users_add, wxE for
/// everything but not allowlisted) and dev (not shared).
async fn shared_with(options: Options) -> Shared {
    let s = World::new()
        .options(options)
        .app("wxC", "Acme")
        .app("wxD", "Other Inc")
        .app("wxE", "Acme")
        .env("prod", "wxA")
        .env("dev", "wxA")
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            FunctionConfig::vars([
                ("allowed_appids", "wxB,wxC"),
                ("roles", "wxB=partner,wxC=viewer"),
            ]),
        )
        .deploy("prod", "echo", paths::ECHO)
        .deploy("prod", "users_add", paths::USERS_ADD)
        .deploy("prod", "fail_panic", paths::FAIL_PANIC)
        .deploy("dev", "echo", paths::ECHO)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        .share("prod", "wxC", "echo,users_add")
        .share("prod", "wxE", "*")
        .rules("prod", RULES)
        .serve(ServeConfig::default())
        .await;
    let (c, d, e) = (
        s.world.creds("wxC").clone(),
        s.world.creds("wxD").clone(),
        s.world.creds("wxE").clone(),
    );
    Shared { s, e, d, c }
}

async fn shared() -> Shared {
    shared_with(Options::default()).await
}

async fn auth_runs(s: &TestServer) -> usize {
    records(&s.host, "prod", Some("cloudbase_auth")).await.len()
}

#[tokio::test]
async fn a_granted_app_sees_from_fields_and_others_are_denied() {
    let t = shared().await;
    let s = &t.s;
    let v = call_as(s, &s.other, Some("oB-1"), "prod", "echo", r#"{"q":1}"#).await;
    assert_eq!(errcode(&v), 0, "{v}");
    let ctx = &resp_data(&v)["context"];
    assert_eq!(ctx["FROM_APPID"], "wxB");
    assert_eq!(ctx["FROM_OPENID"], "oB-1");
    assert_eq!(ctx["FROM_UNIONID"], "u-shared");
    assert!(
        ctx.get("APPID").is_none() && ctx.get("OPENID").is_none(),
        "{ctx}"
    );
    assert_eq!(ctx["SOURCE"], "wx_http");
    // Shared but not on cloudbase_auth's allowlist: its own errCode and errMsg, unchanged.
    let v = call_as(s, &t.e, Some("oE"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -403001, "{v}");
    assert_eq!(v["errmsg"], "app wxE is not allowed to use env prod");
    // Not shared at all.
    let v = call_as(s, &t.d, None, "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -501019, "{v}");
    // Sharing is per env: dev is not shared with wxB.
    let v = call_as(s, &s.other, None, "dev", "echo", "{}").await;
    assert_eq!(errcode(&v), -501019, "{v}");
    // The owner calls its own env directly.
    let v = call_as(s, &s.owner, Some("oA"), "prod", "echo", "{}").await;
    assert_eq!(resp_data(&v)["context"]["OPENID"], "oA");
}

#[tokio::test]
async fn the_share_and_the_rules_limit_functions() {
    let t = shared().await;
    let s = &t.s;
    // Outside wxC's share.
    let v = call_as(s, &t.c, Some("oC"), "prod", "fail_panic", "{}").await;
    assert_eq!(errcode(&v), -501019, "{v}");
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .contains("does not permit invoking fail_panic")
    );
    // A rule on auth.custom: partners may add users, viewers may not.
    let v = call_as(
        s,
        &s.other,
        Some("oB"),
        "prod",
        "users_add",
        r#"{"name":"Ada"}"#,
    )
    .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = call_as(
        s,
        &t.c,
        Some("oC"),
        "prod",
        "users_add",
        r#"{"name":"Ada"}"#,
    )
    .await;
    assert_eq!(errcode(&v), -501019, "{v}");
    // The rule's text is the owner's: in its record, not in the caller's answer.
    let msg = v["errmsg"].as_str().unwrap();
    assert!(
        msg.contains("security rules") && !msg.contains("partner"),
        "{v}"
    );
    s.host.flush_records().await;
    let record = records(&s.host, "prod", Some("users_add"))
        .await
        .pop()
        .unwrap();
    let reason = record.decision.unwrap().reason;
    assert!(reason.contains("auth.custom.role == 'partner'"), "{reason}");
    // Rules changes apply to the very next call.
    s.host
        .control()
        .set_rules("prod", r#"{"*": {"invoke": true}, "users_add": {"invoke": "auth.custom.role in ['partner', 'viewer']"}}"#).await
        .unwrap();
    let v = call_as(
        s,
        &t.c,
        Some("oC"),
        "prod",
        "users_add",
        r#"{"name":"Ada"}"#,
    )
    .await;
    assert_eq!(errcode(&v), 0, "{v}");
    // A grant reused from the decision cache (the rules' verdict with it) is dropped by a
    // rules change too: wxB's partner, granted twice above, is refused now.
    for _ in 0..2 {
        let v = call_as(
            s,
            &s.other,
            Some("oB"),
            "prod",
            "users_add",
            r#"{"name":"Bo"}"#,
        )
        .await;
        assert_eq!(errcode(&v), 0, "{v}");
    }
    s.host
        .control()
        .set_rules(
            "prod",
            r#"{"*": {"invoke": true}, "users_add": {"invoke": "auth.custom.role == 'viewer'"}}"#,
        )
        .await
        .unwrap();
    let v = call_as(
        s,
        &s.other,
        Some("oB"),
        "prod",
        "users_add",
        r#"{"name":"Bo"}"#,
    )
    .await;
    assert_eq!(errcode(&v), -501019, "{v}");
    let bad = s
        .host
        .control()
        .set_rules("prod", r#"{"*": {"invoke": "auth.custom.role =="}}"#)
        .await;
    assert!(
        matches!(bad, Err(StoreError::InvalidRules(ref m)) if m.contains("<input>:1:")),
        "{bad:?}"
    );
}

#[tokio::test]
async fn a_sharee_cannot_call_cloudbase_auth_to_mint_claims() {
    let t = shared().await;
    let s = &t.s;
    // wxB's share covers `*`; asking cloudbase_auth for a victim's claims is refused all the
    // same, and nothing ran.
    let event = r#"{"fromAppid":"wxB","fromOpenid":"victim","resourceEnv":"prod"}"#;
    let v = call_as(s, &s.other, Some("oB"), "prod", "cloudbase_auth", event).await;
    assert_eq!(errcode(&v), -501019, "{v}");
    assert!(v.get("resp_data").is_none(), "{v}");
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .contains("runs only for the host's grant check"),
        "{v}"
    );
    // The owner may still call it (to test it), and wxB's ordinary calls are granted by it.
    let v = call_as(s, &s.owner, Some("oA"), "prod", "cloudbase_auth", event).await;
    assert_eq!(errcode(&v), 0, "{v}");
    let v = call_as(s, &s.other, Some("oB"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), 0, "{v}");
}

#[tokio::test]
async fn a_function_to_function_call_keeps_from_fields_and_the_source_chain() {
    let t = shared().await;
    let s = &t.s;
    let v = call_as(
        s,
        &s.other,
        Some("oB-7"),
        "prod",
        "users_add",
        r#"{"name":"Bo"}"#,
    )
    .await;
    let data = resp_data(&v);
    assert_eq!(data["added"]["createdBy"], "oB-7");
    assert_eq!(data["added"]["createdIn"], "wxB");
    let inner = &data["stored"]["context"];
    assert_eq!(inner["SOURCE"], "wx_http,scf");
    assert_eq!(inner["FROM_APPID"], "wxB");
    assert_eq!(inner["FROM_OPENID"], "oB-7");
    assert_eq!(inner["FROM_UNIONID"], "u-shared");
    assert!(inner.get("OPENID").is_none());
    // The nested call is checked too: wxC's share has no fail_panic, and viewers may call
    // users_add after this rule change, whose nested echo is within the share.
    s.host
        .control()
        .set_rules("prod", r#"{"*": {"invoke": true}}"#)
        .await
        .unwrap();
    let v = call_as(s, &t.c, Some("oC"), "prod", "users_add", r#"{"name":"Cy"}"#).await;
    assert_eq!(resp_data(&v)["stored"]["context"]["FROM_APPID"], "wxC");
}

#[tokio::test]
async fn who_may_share_what() {
    let t = shared().await;
    let svc = &t.s.host;
    let invoke = vec!["functions:invoke".to_string()];
    fn refused<T: std::fmt::Debug>(r: Result<T, StoreError>, want: &str) {
        match r {
            Err(StoreError::Refused(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("expected a refusal containing {want:?}, got {other:?}"),
        }
    }
    // A sharee cannot pass the env on.
    refused(
        svc.store()
            .add_share("prod", "wxC", &invoke, SharedFunctions::All, Some("wxB"))
            .await,
        "wxB cannot pass it on",
    );
    // Same subject only.
    refused(
        svc.store()
            .add_share("prod", "wxD", &invoke, SharedFunctions::All, None)
            .await,
        "same subject",
    );
    // No cloudbase_auth, no share.
    refused(
        svc.store()
            .add_share("dev", "wxB", &invoke, SharedFunctions::All, None)
            .await,
        "no cloudbase_auth",
    );
    // Sharing cannot be turned off while shares exist.
    refused(
        svc.store().set_sharing("wxA", false).await,
        "before turning sharing off",
    );
    // Unknown permissions are refused.
    assert!(matches!(
        svc.store()
            .add_share(
                "prod",
                "wxB",
                &["storage:write".into()],
                SharedFunctions::All,
                None
            )
            .await,
        Err(StoreError::InvalidConfig(_))
    ));
    // Only the two sides may end a share.
    refused(
        svc.store().remove_share("prod", "wxB", Some("wxC")).await,
        "not wxC",
    );
    let shares = svc.store().shares(Some("prod"), None).await.unwrap();
    assert_eq!(
        shares
            .iter()
            .map(|s| s.to_appid.as_str())
            .collect::<Vec<_>>(),
        vec!["wxB", "wxC", "wxE"]
    );
}

#[tokio::test]
async fn ending_a_share_takes_effect_on_the_very_next_call() {
    let t = shared().await;
    let s = &t.s;
    let invoke = vec!["functions:invoke".to_string()];
    for acting in ["wxB", "wxA"] {
        // A granted call caches the decision...
        assert_eq!(
            errcode(&call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await),
            0
        );
        // ...and ending the share (the sharee ends the relationship; the owner the env's
        // share) still stops the next call.
        if acting == "wxB" {
            let envs = s
                .host
                .control()
                .unbind("wxA", "wxB", Some(acting))
                .await
                .unwrap();
            assert_eq!(envs, ["prod"]);
        } else {
            s.host
                .control()
                .remove_share("prod", "wxB", Some(acting))
                .await
                .unwrap();
        }
        let v = call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await;
        assert_eq!(errcode(&v), -501019, "after {acting} ended it: {v}");
        s.host
            .store()
            .add_share("prod", "wxB", &invoke, SharedFunctions::All, None)
            .await
            .unwrap();
    }
    // With the shares of wxA gone, sharing can be turned off.
    for to in ["wxB", "wxC", "wxE"] {
        s.host.store().remove_share("prod", to, None).await.unwrap();
    }
    s.host.store().set_sharing("wxA", false).await.unwrap();
}

#[tokio::test]
async fn decisions_are_cached_per_caller_and_dropped_on_redeploy() {
    let t = shared().await;
    let s = &t.s;
    for _ in 0..3 {
        assert_eq!(
            errcode(&call_as(s, &s.other, Some("o1"), "prod", "echo", "{}").await),
            0
        );
    }
    assert_eq!(
        auth_runs(s).await,
        1,
        "one cloudbase_auth run for one caller"
    );
    call_as(s, &s.other, Some("o2"), "prod", "echo", "{}").await;
    assert_eq!(auth_runs(s).await, 2, "another user is another decision");
    // Redeploying cloudbase_auth drops cached decisions: now it denies wxB.
    s.host
        .control()
        .deploy(
            "prod",
            "cloudbase_auth",
            &wasm(paths::CLOUDBASE_AUTH),
            FunctionConfig::vars([("allowed_appids", "wxC")]),
        )
        .await
        .unwrap();
    let v = call_as(s, &s.other, Some("o1"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -403001, "{v}");
    assert_eq!(auth_runs(s).await, 3);
    // cloudbase_auth missing: function not found, naming it.
    s.host
        .store()
        .remove_function("prod", "cloudbase_auth")
        .await
        .unwrap();
    let v = call_as(s, &s.other, Some("o1"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -501009, "{v}");
    assert!(
        v["errmsg"].as_str().unwrap().contains("cloudbase_auth"),
        "{v}"
    );
}

#[tokio::test]
async fn a_zero_ttl_asks_cloudbase_auth_every_time() {
    let t = shared_with(Options {
        auth_cache_ttl: std::time::Duration::ZERO,
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        call_as(&t.s, &t.s.other, Some("o1"), "prod", "echo", "{}").await;
    }
    assert_eq!(auth_runs(&t.s).await, 3);
}

#[tokio::test]
async fn malformed_cloudbase_auth_replies_are_denials() {
    let t = shared().await;
    let s = &t.s;
    let cases = [
        (r#"{"errMsg":"hi","auth":"{}"}"#, "errCode is missing"),
        (r#"{"errCode":"0","auth":"{}"}"#, "errCode must be a number"),
        (
            r#"{"errCode":0,"auth":{"role":"x"}}"#,
            "auth must be a string",
        ),
        (r#"{"errCode":0,"auth":"role=x"}"#, "auth is not JSON"),
        (
            r#"{"errCode":0,"auth":"[1]"}"#,
            "auth must hold a JSON object",
        ),
        (r#"{"errCode":0}"#, "auth is missing"),
        ("not json at all", "not JSON"),
    ];
    for (reply, why) in cases {
        s.host
            .control()
            .deploy(
                "prod",
                "cloudbase_auth",
                &wasm(paths::AUTH_REPLY),
                FunctionConfig::vars([("reply", reply)]),
            )
            .await
            .unwrap();
        let v = call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await;
        assert_eq!(errcode(&v), -501019, "{reply}: {v}");
        // The caller learns that access is denied; the owner's record says why.
        let msg = v["errmsg"].as_str().unwrap();
        assert!(
            msg.contains("access denied") && !msg.contains(why),
            "{reply}: {msg}"
        );
        s.host.flush_records().await;
        let record = records(&s.host, "prod", Some("echo")).await.pop().unwrap();
        let reason = record.decision.unwrap().reason;
        assert!(reason.contains(why), "{reply}: {reason}");
    }
    // A well-formed denial passes through; a well-formed grant grants.
    for (reply, code) in [
        (r#"{"errCode":12345,"errMsg":"not today"}"#, 12345),
        (
            r#"{"errCode":0,"errMsg":"","auth":"{\"role\":\"partner\"}"}"#,
            0,
        ),
    ] {
        s.host
            .control()
            .deploy(
                "prod",
                "cloudbase_auth",
                &wasm(paths::AUTH_REPLY),
                FunctionConfig::vars([("reply", reply)]),
            )
            .await
            .unwrap();
        let v = call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await;
        assert_eq!(errcode(&v), code, "{reply}: {v}");
    }
}

#[tokio::test]
async fn every_decision_is_in_the_activation_records() {
    let t = shared().await;
    let s = &t.s;
    call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await;
    call_as(s, &t.c, Some("o"), "prod", "fail_panic", "{}").await;
    call_as(s, &t.e, Some("o"), "prod", "echo", "{}").await;
    call_as(s, &t.c, Some("o"), "prod", "users_add", r#"{"name":"x"}"#).await;
    let records = records(&s.host, "prod", None).await;
    let decisions: Vec<(String, bool, String, i32)> = records
        .iter()
        .filter(|r| r.function != "cloudbase_auth")
        .map(|r| {
            let d = r
                .decision
                .as_ref()
                .expect("cross-app calls carry a decision");
            (d.caller_appid.clone(), d.allowed, d.step.clone(), r.errcode)
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            ("wxB".into(), true, "rules".into(), 0),
            ("wxC".into(), false, "share".into(), -501019),
            ("wxE".into(), false, "cloudbase_auth".into(), -403001),
            ("wxC".into(), false, "rules".into(), -501019),
        ]
    );
}

/// An app the env is not shared with, or a caller naming envs that do not exist, cannot evict
/// an env's records: such refusals are counted, not recorded, and retention is per env.
#[tokio::test]
async fn refusals_anyone_can_provoke_do_not_evict_records() {
    let t = shared_with(Options {
        activation_retention: 10,
        ..Options::default()
    })
    .await;
    let s = &t.s;
    let owner = s.token(&s.owner).await;
    for _ in 0..5 {
        assert_eq!(errcode(&s.invoke(&owner, "prod", "echo", "{}").await), 0);
        assert_eq!(errcode(&s.invoke(&owner, "dev", "echo", "{}").await), 0);
    }
    // wxD (no share) and made-up envs, 30 times each; then prod floods itself with 30 calls.
    for i in 0..30 {
        let v = call_as(s, &t.d, Some("o"), "prod", "echo", "{}").await;
        assert_eq!(errcode(&v), -501019, "{v}");
        let v = call_as(s, &t.d, Some("o"), &format!("no-env-{i}"), "echo", "{}").await;
        assert_eq!(errcode(&v), -501000, "{v}");
    }
    let prod = records(&s.host, "prod", None).await;
    assert_eq!(prod.len(), 5, "only the owner's calls: {prod:?}");
    assert!(
        prod.iter()
            .all(|r| r.caller_appid.as_deref() == Some("wxA"))
    );
    for _ in 0..30 {
        s.invoke(&owner, "prod", "echo", "{}").await;
    }
    assert_eq!(
        records(&s.host, "prod", None).await.len(),
        10,
        "prod keeps its newest 10"
    );
    assert_eq!(
        records(&s.host, "dev", None).await.len(),
        5,
        "dev keeps its own, untouched by prod"
    );
    // The refusals are counted.
    let (_, metrics) = get(&format!("http://{}/metrics", s.admin)).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(metrics.contains(r#"errcode="-501019""#), "{metrics}");
}

#[tokio::test]
async fn init_runs_cloudbase_auth_for_the_caller() {
    let t = shared().await;
    let s = &t.s;
    let init = |creds: AppCredentials, openid: &'static str| async move {
        let token = s.token(&creds).await;
        let url = s.url(&format!("/tcb/init?access_token={token}&env=prod"));
        request("POST", &url, &[("X-WX-OPENID", openid)], "")
            .await
            .1
    };
    let v = init(s.other.clone(), "oB").await;
    assert_eq!(errcode(&v), 0, "{v}");
    let claims: Value = serde_json::from_str(v["auth"].as_str().unwrap()).unwrap();
    assert_eq!(claims["role"], "partner");
    assert_eq!(claims["fromOpenid"], "oB");
    let v = init(t.e.clone(), "oE").await;
    assert_eq!(
        (errcode(&v), v["errmsg"].as_str().unwrap()),
        (-403001, "app wxE is not allowed to use env prod")
    );
    assert_eq!(errcode(&init(t.d.clone(), "oD").await), -501019);
    assert_eq!(errcode(&init(s.owner.clone(), "oA").await), 0);
    // Each decision has a record of its own (no function ran), within 10 a minute per app:
    // a client calling init in a loop cannot evict the env's records.
    for _ in 0..30 {
        assert_eq!(errcode(&init(t.e.clone(), "oE").await), -403001);
    }
    s.host.flush_records().await;
    let records = crate::common::records(&s.host, "prod", Some("cloud.init")).await;
    let of = |app: &str| {
        records
            .iter()
            .filter(|r| r.caller_appid.as_deref() == Some(app))
            .collect::<Vec<_>>()
    };
    let granted = of("wxB");
    assert_eq!(granted.len(), 1, "{records:?}");
    assert!(granted[0].decision.as_ref().unwrap().allowed);
    let denied = of("wxE");
    assert_eq!(denied.len(), 10, "{records:?}");
    assert!(
        denied
            .iter()
            .all(|r| r.errcode == -403001 && r.decision.as_ref().is_some_and(|d| !d.allowed))
    );
    assert!(of("wxD").is_empty(), "no share: not recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_sdk_goes_through_the_same_pipeline() {
    let t = shared().await;
    let s = &t.s;
    let (ok, v) = node_call(
        s,
        &s.other,
        "prod",
        "users_add",
        Some(r#"{"name":"Node"}"#),
        None,
    );
    assert!(ok, "{v}");
    assert_eq!(v["result"]["added"]["createdIn"], "wxB");
    assert_eq!(v["result"]["stored"]["context"]["FROM_APPID"], "wxB");
    let (ok, v) = node_call(
        s,
        &t.c,
        "prod",
        "users_add",
        Some(r#"{"name":"Node"}"#),
        None,
    );
    assert!(!ok);
    assert_eq!(v["code"], "EXCEED_AUTHORITY", "{v}");
    let (ok, v) = node_call(s, &t.e, "prod", "echo", Some("{}"), None);
    assert!(!ok);
    assert_eq!(
        (v["code"].as_str(), v["message"].as_str()),
        (
            Some("-403001"),
            Some("app wxE is not allowed to use env prod")
        )
    );
}

/// A cloud function calling through the real server SDKs (node-sdk, wx-server-sdk) says so
/// (`X-TCB-Source: {TCB_SOURCE},scf`, signed): the callee's SOURCE chains on, as for a nested
/// call. The user the calling function served (its `WX_OPENID`) is not passed: the signature
/// proves the app, not the user. A backend server is `wx_http` as before.
#[tokio::test(flavor = "multi_thread")]
async fn in_cloud_callers_chain_their_source_through_the_server_sdks() {
    let t = shared().await;
    let s = &t.s;
    for sdk in ["@cloudbase/node-sdk", "wx-server-sdk"] {
        // What the platform sets in a cloud function (the SDK reads the keys
        // TCB_CONTEXT_KEYS and WX_CONTEXT_KEYS name).
        let in_scf = [
            ("FN_SDK", sdk),
            ("TENCENTCLOUD_RUNENV", "SCF"),
            ("TENCENTCLOUD_REGION", "ap-shanghai"),
            ("SCF_NAMESPACE", "prod"),
            ("TCB_CONTEXT_KEYS", "TCB_SOURCE"),
            ("TCB_SOURCE", "wx_client"),
            ("WX_CONTEXT_KEYS", "WX_OPENID"),
            ("WX_OPENID", "o-in-cloud"),
        ];
        // The owner's own function calling its env.
        let (ok, v) = node_call_in(s, &s.owner, "prod", "echo", Some("{}"), None, &in_scf);
        assert!(ok, "{sdk}: {v}");
        let ctx = &v["result"]["context"];
        assert_eq!(ctx["SOURCE"], "wx_client,scf", "{sdk}: {v}");
        assert_eq!(ctx["APPID"], "wxA", "{sdk}: {v}");
        assert!(ctx.get("OPENID").is_none(), "{sdk}: {v}");
        // A sharee's function: the sharing pipeline as before, FROM_APPID its app.
        let (ok, v) = node_call_in(s, &s.other, "prod", "echo", Some("{}"), None, &in_scf);
        assert!(ok, "{sdk}: {v}");
        let ctx = &v["result"]["context"];
        assert_eq!(ctx["SOURCE"], "wx_client,scf", "{sdk}: {v}");
        assert_eq!(ctx["FROM_APPID"], "wxB", "{sdk}: {v}");
        assert!(ctx.get("FROM_OPENID").is_none(), "{sdk}: {v}");
        // A function that was itself called by a function, with no SOURCE of its own.
        let nested = [
            ("FN_SDK", sdk),
            ("TENCENTCLOUD_RUNENV", "SCF"),
            ("TENCENTCLOUD_REGION", "ap-shanghai"),
            ("SCF_NAMESPACE", "prod"),
        ];
        let (ok, v) = node_call_in(s, &s.owner, "prod", "echo", Some("{}"), None, &nested);
        assert!(ok, "{sdk}: {v}");
        assert_eq!(v["result"]["context"]["SOURCE"], "scf", "{sdk}: {v}");
        // A backend server, even one that sets TCB_SOURCE.
        let backend = [
            ("FN_SDK", sdk),
            ("TCB_CONTEXT_KEYS", "TCB_SOURCE"),
            ("TCB_SOURCE", "wx_client"),
        ];
        let (ok, v) = node_call_in(s, &s.owner, "prod", "echo", Some("{}"), None, &backend);
        assert!(ok, "{sdk}: {v}");
        assert_eq!(v["result"]["context"]["SOURCE"], "wx_http", "{sdk}: {v}");
    }
}

/// Per-share permissions beyond invoke, on the admin API (`?acting=APP`) and the CLI (`--as`):
/// `functions:read` lists the covered functions and versions and the records of the sharee's
/// own calls; `functions:deploy` deploys, rolls back and removes covered functions, never
/// `cloudbase_auth`; rules and shares stay the owner's. Every change is in the audit log with
/// the acting app.
#[tokio::test(flavor = "multi_thread")]
async fn share_permissions_let_a_sharee_read_and_deploy_within_its_share() {
    let t = shared().await;
    let s = &t.s;
    let share = |perms: &[&str]| {
        json!({"env": "prod", "to": "wxC", "perms": perms, "functions": "echo,users_add"})
            .to_string()
    };
    // wxC's share grants invoke only: nothing to read.
    let (status, v) = admin(s, "GET", "/v1/envs/prod/functions?acting=wxC", "").await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("functions:read"),
        "{v}"
    );
    // An app of another company with no share at all.
    let (status, _) = admin(s, "GET", "/v1/envs/prod/functions?acting=wxD", "").await;
    assert_eq!(status, 403);

    let (status, v) = admin(
        s,
        "POST",
        "/v1/shares",
        share(&["functions:invoke", "functions:read"]),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = admin(s, "GET", "/v1/envs/prod/functions?acting=wxC", "").await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "users_add"], "only what the share covers");
    let (status, _) = admin(
        s,
        "GET",
        "/v1/envs/prod/functions/echo/versions?acting=wxC",
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(
        s,
        "GET",
        "/v1/envs/prod/functions/fail_panic/versions?acting=wxC",
        "",
    )
    .await;
    assert_eq!(status, 403);
    // The owner, acting, sees everything.
    let (_, v) = admin(s, "GET", "/v1/envs/prod/functions?acting=wxA", "").await;
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");

    // Records: a sharee reads its own calls' only.
    assert_eq!(
        errcode(&call_as(s, &t.c, Some("oC"), "prod", "echo", "{}").await),
        0
    );
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("oB"), "prod", "echo", "{}").await),
        0
    );
    s.host.flush_records().await;
    let (status, v) = admin(
        s,
        "GET",
        "/v1/envs/prod/activations?acting=wxC&limit=1000",
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let callers: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["caller_appid"].as_str().unwrap_or("-"))
        .collect();
    assert!(
        !callers.is_empty() && callers.iter().all(|c| *c == "wxC"),
        "{callers:?}"
    );
    let (_, v) = admin(s, "GET", "/v1/envs/prod/activations?limit=1000", "").await;
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|a| a["caller_appid"] == "wxB"),
        "the operator sees all"
    );

    // Deploying needs functions:deploy.
    let echo = std::fs::read(paths::ECHO).unwrap();
    let deploy_echo = "/v1/envs/prod/functions/echo?acting=wxC";
    let (status, v) = admin(s, "PUT", deploy_echo, echo.clone()).await;
    assert_eq!(status, 403, "{v}");
    let perms = ["functions:invoke", "functions:read", "functions:deploy"];
    let (status, v) = admin(s, "POST", "/v1/shares", share(&perms)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = admin(s, "PUT", deploy_echo, echo.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    let reshare =
        json!({"env": "prod", "to": "wxE", "perms": ["functions:invoke"], "acting": "wxC"});
    let rules = r#"{"*":{"invoke":"true"}}"#;
    let steps: [(&str, &str, Vec<u8>, u16); 6] = [
        (
            "POST",
            "/v1/envs/prod/functions/echo/rollback?acting=wxC",
            br#"{"to":1}"#.to_vec(),
            200,
        ),
        (
            "DELETE",
            "/v1/envs/prod/functions/users_add?acting=wxC",
            vec![],
            200,
        ),
        // Never cloudbase_auth, nothing outside the share, never the rules or the shares.
        (
            "PUT",
            "/v1/envs/prod/functions/cloudbase_auth?acting=wxC",
            echo.clone(),
            403,
        ),
        (
            "PUT",
            "/v1/envs/prod/functions/fail_panic?acting=wxC",
            echo.clone(),
            403,
        ),
        (
            "PUT",
            "/v1/envs/prod/rules?acting=wxC",
            rules.as_bytes().to_vec(),
            403,
        ),
        ("POST", "/v1/shares", reshare.to_string().into_bytes(), 409),
    ];
    for (method, path, body, want) in steps {
        let (status, v) = admin(s, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {v}");
    }
    // What was refused changed nothing: cloudbase_auth still grants wxB.
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("oB"), "prod", "echo", "{}").await),
        0
    );

    // The audit log names the acting app.
    let (status, v) = admin(s, "GET", "/v1/audit?env=prod", "").await;
    assert_eq!(status, 200, "{v}");
    let seen: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or("operator").to_string();
            (f("acting"), f("action"), f("target"))
        })
        .collect();
    for want in [
        ("operator", "share.add", "wxC"),
        ("wxC", "deploy", "echo"),
        ("wxC", "rollback", "echo"),
        ("wxC", "remove", "users_add"),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
        assert!(seen.contains(&want), "{want:?} not in {seen:?}");
    }
    assert!(
        !seen
            .iter()
            .any(|(by, _, t)| by == "wxC" && t == "cloudbase_auth"),
        "{seen:?}"
    );

    // The CLI, against the server (--server) and on the data dir: the same checks.
    let server = format!("http://{}", s.admin);
    let remote = |args: &[&str]| {
        Bin::new(s.dir())
            .command(&["--server", &server, "--admin-token", ADMIN_TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let out = remote(&["ls", "--env", "prod", "--as", "wxC"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("echo") && !text.contains("fail_panic"),
        "{text}"
    );
    for run in [
        remote(&[
            "deploy",
            "--env",
            "prod",
            "--name",
            "cloudbase_auth",
            paths::ECHO,
            "--as",
            "wxC",
        ]),
        Bin::new(s.dir())
            .command(&[
                "deploy",
                "--env",
                "prod",
                "--name",
                "cloudbase_auth",
                paths::ECHO,
                "--as",
                "wxC",
            ])
            .output()
            .unwrap(),
    ] {
        assert!(!run.status.success());
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(err.contains("only its owner decides"), "{err}");
    }
    let out = Bin::new(s.dir())
        .command(&["audit", "--env", "prod"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("wxC\tdeploy\tprod\techo"), "{text}");
}

/// What a webhook receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(hyper::HeaderMap, Vec<u8>)>>>;

/// A webhook receiver on 127.0.0.1: records each request and answers 500 to the first
/// `failures` of them, 200 after.
async fn receiver(failures: usize) -> (String, Received) {
    let got: Received = Arc::default();
    let seen = got.clone();
    let base = stand_in(move |(parts, body): Seen| {
        let seen = seen.clone();
        async move {
            let mut seen = seen.lock().unwrap();
            seen.push((parts.headers, body.to_vec()));
            let status = if seen.len() <= failures { 500 } else { 200 };
            (status, "text/plain", Vec::new())
        }
    })
    .await;
    (format!("{base}/hook"), got)
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("waited 5 s for {what}")
}

/// Unbinding as the seed describes: the share of one env is its owner's alone to end; either
/// side ends the whole relationship; the side that did not act is told by a signed webhook,
/// retried until its receiver takes it; deliveries are in the audit log.
#[tokio::test(flavor = "multi_thread")]
async fn ending_shares_tells_the_other_side_by_a_signed_webhook() {
    use hmac::Mac;
    let t = shared_with(Options {
        webhook_backoff: vec![std::time::Duration::from_millis(20); 2],
        // The receivers listen on loopback, which is refused by default.
        egress_allow: vec!["127.0.0.1/32".parse().unwrap()],
        ..Options::default()
    })
    .await;
    let s = &t.s;
    // wxB's receiver fails once, then takes it.
    let (b_url, b_got) = receiver(1).await;
    let (status, v) = admin(
        s,
        "POST",
        "/v1/apps/wxB/webhook",
        json!({"url": b_url}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let b_secret = v["secret"].as_str().unwrap().to_string();
    let (status, v) = admin(
        s,
        "POST",
        "/v1/apps/wxB/webhook",
        r#"{"url":"ftp://example.com/x"}"#,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("https://HOST"), "{v}");

    // A sharee cannot end one env's share; it is told how to end the relationship.
    let (status, v) = admin(s, "DELETE", "/v1/shares/prod/wxB?acting=wxB", "").await;
    assert_eq!(status, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("share unbind"), "{v}");
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await),
        0
    );

    // The owner ends it: the next call is refused, and wxB is told.
    let (status, v) = admin(s, "DELETE", "/v1/shares/prod/wxB?acting=wxA", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await),
        -501019
    );
    let got = wait_for("two attempts at wxB's webhook", || {
        let got = b_got.lock().unwrap();
        (got.len() >= 2).then(|| got.clone())
    })
    .await;
    let (first, second) = (&got[0], &got[1]);
    let h = |m: &hyper::HeaderMap, k: &str| m[k].to_str().unwrap().to_string();
    assert_eq!(h(&second.0, "x-cloudfn-event"), "share.ended");
    assert_eq!(
        h(&first.0, "x-cloudfn-delivery"),
        h(&second.0, "x-cloudfn-delivery"),
        "one delivery, retried"
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b_secret.as_bytes()).unwrap();
    mac.update(format!("{}.", h(&second.0, "x-cloudfn-timestamp")).as_bytes());
    mac.update(&second.1);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(h(&second.0, "x-cloudfn-signature"), want);
    let event: Value = serde_json::from_slice(&second.1).unwrap();
    assert_eq!(
        (
            &event["event"],
            &event["scope"],
            &event["owner"],
            &event["to"],
            &event["envs"],
            &event["acting"]
        ),
        (
            &json!("share.ended"),
            &json!("env"),
            &json!("wxA"),
            &json!("wxB"),
            &json!(["prod"]),
            &json!("wxA")
        ),
        "{event}"
    );

    // A sharee ends the relationship (all of wxA's envs); wxA, the other side, is told.
    let (a_url, a_got) = receiver(0).await;
    let (status, _) = admin(
        s,
        "POST",
        "/v1/apps/wxA/webhook",
        json!({"url": a_url}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let unbind = |acting: &str| json!({"owner": "wxA", "to": "wxC", "acting": acting}).to_string();
    let (status, v) = admin(s, "POST", "/v1/shares/unbind", unbind("wxE")).await;
    assert_eq!(status, 409, "a third app may not: {v}");
    let (status, v) = admin(s, "POST", "/v1/shares/unbind", unbind("wxC")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["envs"], json!(["prod"]));
    assert_eq!(
        errcode(&call_as(s, &t.c, Some("o"), "prod", "echo", "{}").await),
        -501019
    );
    let event = wait_for("wxA's webhook", || {
        let got = a_got.lock().unwrap();
        got.first()
            .map(|(_, body)| serde_json::from_slice::<Value>(body).unwrap())
    })
    .await;
    assert_eq!(
        (&event["scope"], &event["acting"], &event["to"]),
        (&json!("app"), &json!("wxC"), &json!("wxC")),
        "{event}"
    );
    let (status, _) = admin(s, "POST", "/v1/shares/unbind", unbind("wxC")).await;
    assert_eq!(status, 409, "nothing left to unbind");

    // A receiver that is down: the share still ends; the audit log says the delivery failed.
    let (status, _) = admin(
        s,
        "POST",
        "/v1/apps/wxE/webhook",
        r#"{"url":"http://127.0.0.1:9/down"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let out = Bin::new(s.dir())
        .command(&["share", "rm", "--env", "prod", "--to", "wxE", "--as", "wxE"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("share unbind --owner wxA --to wxE --as wxE")
    );
    let (status, _) = admin(s, "DELETE", "/v1/shares/prod/wxE", "").await;
    assert_eq!(status, 200);
    let mut audit = Vec::new();
    for _ in 0..500 {
        let (_, v) = admin(s, "GET", "/v1/audit?limit=1000", "").await;
        audit = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (f("action"), f("target"))
            })
            .collect::<Vec<(String, String)>>();
        if audit
            .iter()
            .any(|(a, t)| a == "webhook.failed" && t == "wxE")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for want in [
        ("share.remove", "wxB"),
        ("webhook.delivered", "wxB"),
        ("share.unbind", "wxC"),
        ("webhook.delivered", "wxA"),
        ("share.remove", "wxE"),
    ] {
        assert!(
            audit.contains(&(want.0.into(), want.1.into())),
            "{want:?} not in {audit:?}"
        );
    }
}

#[tokio::test]
async fn the_local_cli_gives_the_same_results_as_http() {
    let t = shared().await;
    let s = &t.s;
    let cases: [(&AppCredentials, &str, &str); 5] = [
        (&s.other, "echo", r#"{"k":1}"#),
        (&s.other, "users_add", r#"{"name":"Lo"}"#),
        (&t.c, "users_add", r#"{"name":"Lo"}"#),
        (&t.e, "echo", "{}"),
        (&t.d, "echo", "{}"),
    ];
    for (creds, name, event) in cases {
        let http = call_as(s, creds, Some("o-cli"), "prod", name, event).await;
        let out = Bin::new(s.dir())
            .command(&[
                "invoke", "--env", "prod", "--name", name, "--event", event, "-q",
            ])
            .args([
                "--from-appid",
                &creds.appid,
                "--from-openid",
                "o-cli",
                "--from-unionid",
                "u-shared",
            ])
            .output()
            .unwrap();
        let local: Value = serde_json::from_slice(&out.stdout).unwrap();
        let what = format!("{} {name}", creds.appid);
        if errcode(&http) == 0 {
            assert!(out.status.success(), "{what}: {local}");
            let http = resp_data(&http);
            let strip = |mut v: Value| {
                // Request ids, client ip and SOURCE differ by path; the rest must not.
                for path in ["/context", "/stored/context"] {
                    if let Some(o) = v.pointer_mut(path).and_then(Value::as_object_mut) {
                        for k in ["REQUEST_ID", "CLIENTIP", "SOURCE"] {
                            o.remove(k);
                        }
                    }
                }
                v
            };
            assert_eq!(strip(local), strip(http), "{what}");
        } else {
            assert!(!out.status.success(), "{what}");
            assert_eq!(
                local["errcode"], http["errcode"],
                "{what}: {local} vs {http}"
            );
            assert_eq!(local["errmsg"], http["errmsg"], "{what}");
        }
    }
}

#[test]
fn the_readme_seed_scenario_runs_as_printed() {
    let stdout = common::run_example("sharing.sh");
    let json_lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let [init, http, denied, node, local] = json_lines.as_slice() else {
        panic!("expected 5 JSON answers, got {stdout}");
    };
    let claims: Value = serde_json::from_str(init["auth"].as_str().unwrap()).unwrap();
    assert_eq!(
        (claims["role"].as_str(), claims["fromOpenid"].as_str()),
        (Some("partner"), Some("o-b-1"))
    );
    let http = resp_data(http);
    assert_eq!(http["added"]["createdBy"], "o-b-1");
    assert_eq!(http["stored"]["context"]["FROM_APPID"], "wxB");
    assert_eq!(http["stored"]["context"]["SOURCE"], "wx_http,scf");
    assert_eq!(errcode(denied), -403001);
    assert_eq!(
        denied["errmsg"],
        "app wxC is not allowed to use env prod-01"
    );
    assert_eq!(node["added"]["createdIn"], "wxB");
    assert_eq!(node["stored"]["context"]["FROM_APPID"], "wxB");
    assert_eq!(local["added"]["createdBy"], "o-b-1");
    assert_eq!(local["stored"]["context"]["FROM_OPENID"], "o-b-1");
    assert_eq!(local["stored"]["context"]["SOURCE"], "wx_devtools,scf");
}

#[tokio::test]
async fn changes_made_by_another_process_apply_to_the_next_call() {
    let t = shared().await;
    let s = &t.s;
    // The CLI next to a running server is another process with its own connection.
    let other = cloudfn_invoke::Host::open(s.dir()).await.unwrap();
    let users_add = r#"{"name":"Ada"}"#;
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "users_add", users_add).await),
        0
    );
    other
        .control()
        .set_rules(
            "prod",
            r#"{"*": {"invoke": true}, "users_add": {"invoke": false}}"#,
        )
        .await
        .unwrap();
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "users_add", users_add).await),
        -501019
    );
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await),
        0
    );
    other
        .control()
        .deploy(
            "prod",
            "cloudbase_auth",
            &wasm(paths::CLOUDBASE_AUTH),
            FunctionConfig::vars([("allowed_appids", "wxC")]),
        )
        .await
        .unwrap();
    assert_eq!(
        errcode(&call_as(s, &s.other, Some("o"), "prod", "echo", "{}").await),
        -403001
    );
    other
        .control()
        .unbind("wxA", "wxC", Some("wxC"))
        .await
        .unwrap();
    assert_eq!(
        errcode(&call_as(s, &t.c, Some("o"), "prod", "echo", "{}").await),
        -501019
    );
}
