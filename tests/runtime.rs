//! The runtime through its library API with real guests: deploy + invoke, WXContext, nested
//! calls, failures and their errcodes, deploy validation, versions, artifacts, env directory.

use crate::common;

use crate::common::Manage;
use cloudfn_invoke::{Call, Host, Identity, InvokeRequest};
use cloudfn_store::{FunctionConfig, StoreError};
use common::guests as paths;
use common::*;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test]
async fn deploy_and_invoke_round_trip() {
    let w = service().await;
    let svc = w.host.clone();
    let inv = call(&svc, "echo", r#"{"a":1,"b":[true,null,"x"]}"#).await;
    let out = ok_json(&inv);
    assert_eq!(out["event"], json!({"a":1,"b":[true,null,"x"]}));
    assert_eq!(inv.version, Some(1));
    assert!(inv.peak_memory > 0);
}

/// Memory of finished instances is reused in place (the pooling allocator resets only dirty
/// pages); no call may see what an earlier one left, one after another or side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_a_fresh_instance_whatever_memory_is_reused() {
    let w = service().await;
    w.deploy("leftovers", paths::LEFTOVERS, FunctionConfig::default())
        .await;
    let fresh = json!({"calls": 1, "dirty_static": 0, "dirty_heap": 0});
    for i in 0..20 {
        let inv = w.call("leftovers", "{}").await;
        assert_eq!(ok_json(&inv), fresh, "sequential call {i}");
    }
    let calls = (0..16).map(|_| {
        let host = w.host.clone();
        tokio::spawn(async move { call(&host, "leftovers", "{}").await })
    });
    for (i, inv) in futures_join(calls).await.into_iter().enumerate() {
        assert_eq!(ok_json(&inv), fresh, "concurrent call {i}");
    }
    // A trap in between leaves nothing behind either.
    w.deploy("fail_panic", paths::FAIL_PANIC, FunctionConfig::default())
        .await;
    assert!(w.call("fail_panic", "{}").await.result.is_err());
    assert_eq!(ok_json(&w.call("leftovers", "{}").await), fresh);
}

async fn futures_join(
    handles: impl Iterator<Item = tokio::task::JoinHandle<cloudfn_invoke::Invocation>>,
) -> Vec<cloudfn_invoke::Invocation> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.expect("call task"));
    }
    out
}

#[tokio::test]
async fn every_wxcontext_field_reaches_the_guest_exactly() {
    let w = service().await;
    let svc = w.host.clone();
    let req = InvokeRequest::new("prod", "echo", "{}", "wx_client");
    let identity = Identity {
        appid: Some("wxA".into()),
        openid: Some("oA-user".into()),
        unionid: Some("uU-1".into()),
        from_appid: Some("wxB".into()),
        from_openid: Some("oB-user".into()),
        from_unionid: Some("uU-2".into()),
        client_ip: Some("203.0.113.7".into()),
    };
    let inv = svc.call(Call::trusted(req, identity)).await;
    let out = ok_json(&inv);
    assert_eq!(
        out["context"],
        json!({
            "ENV": "prod",
            "SOURCE": "wx_client",
            "APPID": "wxA",
            "OPENID": "oA-user",
            "UNIONID": "uU-1",
            "FROM_APPID": "wxB",
            "FROM_OPENID": "oB-user",
            "FROM_UNIONID": "uU-2",
            "CLIENTIP": "203.0.113.7",
            "REQUEST_ID": inv.request_id,
            "FUNCTION_NAME": "echo",
        })
    );
    // Absent fields stay absent.
    let inv = call(&svc, "echo", "{}").await;
    let ctx = ok_json(&inv)["context"].clone();
    assert_eq!(
        ctx.as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["ENV", "FUNCTION_NAME", "REQUEST_ID", "SOURCE"]
    );
}

#[tokio::test]
async fn call_function_keeps_identity_and_chains_source() {
    // (Calls on behalf of another app are checked again on the nested call: tests/sharing.rs.)
    let w = service().await;
    let svc = w.host.clone();
    w.deploy("users_add", paths::USERS_ADD, FunctionConfig::default())
        .await;
    let req = InvokeRequest::new(
        "prod",
        "users_add",
        r#"{"name":" Ada ","age":36}"#,
        "wx_client",
    );
    let identity = Identity {
        appid: Some("wxA".into()),
        openid: Some("oA".into()),
        unionid: Some("uA".into()),
        client_ip: Some("198.51.100.1".into()),
        ..Identity::default()
    };
    let inv = svc.call(Call::trusted(req, identity)).await;
    let out = ok_json(&inv);
    assert_eq!(out["added"]["name"], "Ada");
    assert_eq!(out["added"]["createdBy"], "oA");
    let callee_ctx = &out["stored"]["context"];
    assert_eq!(callee_ctx["SOURCE"], "wx_client,scf");
    assert_eq!(callee_ctx["APPID"], "wxA");
    assert_eq!(callee_ctx["OPENID"], "oA");
    assert_eq!(callee_ctx["UNIONID"], "uA");
    assert_eq!(callee_ctx["CLIENTIP"], "198.51.100.1");
    assert_eq!(callee_ctx["FUNCTION_NAME"], "echo");
    assert!(callee_ctx.get("FROM_APPID").is_none());
    assert_ne!(callee_ctx["REQUEST_ID"], json!(inv.request_id));
    // The SDK's log macro reached the call's logs.
    assert!(
        inv.logs
            .iter()
            .any(|l| l.level.as_deref() == Some("info") && l.message == "adding user Ada"),
        "{:?}",
        inv.logs
    );
    // A function error from the callee path: users_add validates before calling.
    let inv = call(&svc, "users_add", r#"{"name":""}"#).await;
    let (code, msg) = err(&inv);
    assert_eq!(code, -504002);
    assert!(
        msg.contains("INVALID_USER: name must not be empty"),
        "{msg}"
    );
}

#[tokio::test]
async fn call_function_to_a_missing_function_reports_its_errcode() {
    let w = service().await;
    let svc = w.host.clone();
    w.deploy("users_add", paths::USERS_ADD, FunctionConfig::default())
        .await;
    svc.store().remove_function("prod", "echo").await.unwrap();
    let inv = call(&svc, "users_add", r#"{"name":"Ada"}"#).await;
    let (code, msg) = err(&inv);
    assert_eq!(code, -504002);
    assert!(
        msg.contains("-501009"),
        "the callee's errcode is reported: {msg}"
    );
}

#[tokio::test]
async fn each_failure_guest_gives_its_errcode_and_the_host_keeps_working() {
    let w = service().await;
    let svc = w.host.clone();
    let fast = |c: &mut FunctionConfig| c.timeout_ms = Some(300);
    w.deploy("fail_panic", paths::FAIL_PANIC, FunctionConfig::default())
        .await;
    w.deploy("fail_loop", paths::FAIL_LOOP, FunctionConfig::with(fast))
        .await;
    w.deploy("fail_sleep", paths::FAIL_SLEEP, FunctionConfig::with(fast))
        .await;
    w.deploy(
        "fail_memory",
        paths::FAIL_MEMORY,
        FunctionConfig::with(|c| c.memory_mb = 32),
    )
    .await;
    w.deploy(
        "fail_badjson",
        paths::FAIL_BADJSON,
        FunctionConfig::default(),
    )
    .await;
    w.deploy("fail_error", paths::FAIL_ERROR, FunctionConfig::default())
        .await;

    let cases: &[(&str, i32, &str)] = &[
        ("fail_panic", -504002, "deliberate panic from fail_panic"),
        ("fail_loop", -501002, "timed out after 300 ms"),
        ("fail_sleep", -501002, "timed out after 300 ms"),
        ("fail_memory", -504002, "exceeded its memory limit of 32 MB"),
        ("fail_badjson", -504002, "not JSON"),
        (
            "fail_error",
            -504002,
            "E_DELIBERATE: fail_error always fails",
        ),
    ];
    for (name, code, text) in cases {
        let inv = call(&svc, name, "{}").await;
        let (got, msg) = err(&inv);
        assert_eq!(got, *code, "{name}: {msg}");
        assert!(msg.contains(text), "{name}: {msg}");
        // The host is unaffected: the next call works.
        let inv = call(&svc, "echo", r#"{"after":"x"}"#).await;
        assert_eq!(ok_json(&inv)["event"]["after"], "x", "after {name}");
    }
    // The caller gets the panic's message, not where in the author's source it happened;
    // the call's stderr log (the author's) has both.
    let inv = call(&svc, "fail_panic", "{}").await;
    let (_, msg) = err(&inv);
    assert!(!msg.contains("src/lib.rs"), "{msg}");
    assert!(inv.logs.iter().any(|l| l.message.contains("src/lib.rs")));
    assert!(
        inv.logs
            .iter()
            .any(|l| l.message.contains("deliberate panic"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_does_not_starve_other_calls() {
    // One thread only: if the looping guest held it, echo could not finish before the loop.
    let w = service().await;
    let svc = w.host.clone();
    w.deploy(
        "fail_loop",
        paths::FAIL_LOOP,
        FunctionConfig::with(|c| c.timeout_ms = Some(2_000)),
    )
    .await;
    let looping = tokio::spawn({
        let svc = svc.clone();
        async move { call(&svc, "fail_loop", "{}").await }
    });
    tokio::task::yield_now().await;
    for i in 0..5 {
        let inv = call(&svc, "echo", &format!(r#"{{"i":{i}}}"#)).await;
        assert_eq!(ok_json(&inv)["event"]["i"], i);
    }
    assert!(
        !looping.is_finished(),
        "echo calls finished while the loop still runs"
    );
    let (code, _) = err(&looping.await.unwrap());
    assert_eq!(code, -501002);
}

#[tokio::test]
async fn invalid_requests_get_protocol_errcodes() {
    let w = service().await;
    let svc = w.host.clone();
    let cases = [
        (InvokeRequest::new("nope", "echo", "{}", "wx_http"), -501000),
        (
            InvokeRequest::new("prod", "missing", "{}", "wx_http"),
            -501009,
        ),
        (InvokeRequest::new("prod", "1bad", "{}", "wx_http"), -501007),
        (
            InvokeRequest::new("prod", "echo", "{not json", "wx_http"),
            -501007,
        ),
        (
            InvokeRequest {
                version: Some(7),
                ..InvokeRequest::new("prod", "echo", "{}", "wx_http")
            },
            -501009,
        ),
    ];
    for (req, code) in cases {
        let what = format!("{}/{} {:?}", req.env, req.name, req.event);
        let inv = svc.call(Call::trusted(req, Identity::default())).await;
        assert_eq!(err(&inv).0, code, "{what}: {:?}", inv.result);
    }
}

#[tokio::test]
async fn deploy_validation_says_what_is_wrong_and_stores_nothing() {
    let w = service().await;
    let svc = w.host.clone();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "junk",
            b"hello world, not wasm".to_vec(),
            // What to deploy instead: a folder is built, or the file `cloudfn build` makes.
            "not a WebAssembly file (no \\0asm header); deploy a function's folder (cloudfn builds \
             a Rust crate or a JavaScript function), or the .wasm that `cloudfn build`",
        ),
        (
            "core",
            b"\0asm\x01\0\0\0".to_vec(),
            "core wasm module, not a component",
        ),
        (
            "command",
            wasm(paths::WRONG_WORLD),
            "does not export `cloudfn:function/handler` (it exports: wasi:cli/run@",
        ),
        (
            "importer",
            wasm(paths::WRONG_IMPORT),
            "imports `acme:billing/charge`",
        ),
        ("1bad", wasm(paths::ECHO), "invalid function name \"1bad\""),
    ];
    for (name, bytes, want) in cases {
        let e = svc
            .control()
            .deploy("prod", name, &bytes, FunctionConfig::default())
            .await
            .expect_err(want);
        assert!(e.to_string().contains(want), "{name}: got {e}");
    }
    let e = svc
        .control()
        .deploy(
            "nope",
            "echo",
            &wasm(paths::ECHO),
            FunctionConfig::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::EnvNotFound(_)), "{e}");
    let e = svc
        .control()
        .deploy(
            "prod",
            "echo",
            &wasm(paths::ECHO),
            FunctionConfig::with(|c| c.memory_mb = 99_999),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("memory must be between"), "{e}");
    // Nothing but the original echo was stored.
    let fns = svc.store().functions("prod").await.unwrap();
    assert_eq!(fns.len(), 1);
    assert_eq!(fns[0].versions, 1);
}

#[tokio::test]
async fn versions_and_rollback() {
    let w = service().await;
    let svc = w.host.clone();
    // Version 2 is a different function under the same name.
    let v2 = w
        .deploy("echo", paths::FAIL_ERROR, FunctionConfig::default())
        .await;
    assert_eq!(v2, 2);
    assert_eq!(err(&call(&svc, "echo", "{}").await).0, -504002);
    // A qualifier selects a version without changing the active one.
    let inv = svc
        .invoke(
            InvokeRequest {
                version: Some(1),
                ..InvokeRequest::new("prod", "echo", r#"{"v":1}"#, "wx_http")
            },
            Identity::default(),
        )
        .await;
    assert_eq!(ok_json(&inv)["event"]["v"], 1);
    svc.store().rollback("prod", "echo", 1).await.unwrap();
    let inv = call(&svc, "echo", r#"{"back":true}"#).await;
    assert_eq!(ok_json(&inv)["event"]["back"], true);
    assert_eq!(inv.version, Some(1));
    let versions = svc.store().versions("prod", "echo").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.active))
            .collect::<Vec<_>>(),
        vec![(2, false), (1, true)]
    );
    assert!(matches!(
        svc.store().rollback("prod", "echo", 3).await,
        Err(StoreError::VersionNotFound { version: 3, .. })
    ));
}

#[tokio::test]
async fn variables_reach_the_guest() {
    let w = service().await;
    let svc = w.host.clone();
    let cfg = FunctionConfig::with(|c| {
        c.vars.insert("allowed_appids".into(), "wxB, wxC".into());
        c.vars.insert("roles".into(), "wxC=admin".into());
    });
    w.deploy("cloudbase_auth", paths::CLOUDBASE_AUTH, cfg).await;
    let auth = |from: &'static str| {
        let req = InvokeRequest::new(
            "prod",
            "cloudbase_auth",
            r#"{"function":"echo"}"#,
            "wx_client",
        );
        let identity = Identity {
            from_appid: Some(from.into()),
            from_openid: Some("o1".into()),
            ..Identity::default()
        };
        let svc = svc.clone();
        async move { ok_json(&svc.invoke(req, identity).await) }
    };
    let granted = auth("wxC").await;
    assert_eq!(granted["errCode"], 0);
    let claims: Value = serde_json::from_str(granted["auth"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims,
        json!({"fromAppid":"wxC","fromOpenid":"o1","fromUnionid":null,"role":"admin"})
    );
    let member = auth("wxB").await;
    let claims: Value = serde_json::from_str(member["auth"].as_str().unwrap()).unwrap();
    assert_eq!(claims["role"], "member");
    let denied = auth("wxZ").await;
    assert_ne!(denied["errCode"], 0);
    assert!(
        denied["errMsg"]
            .as_str()
            .unwrap()
            .contains("wxZ is not allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_precompiled_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let svc = Host::open(dir.path()).await.unwrap();
        svc.control().create_env("prod", "wxA").await.unwrap();
        svc.control()
            .deploy(
                "prod",
                "echo",
                &wasm(paths::ECHO),
                FunctionConfig::default(),
            )
            .await
            .unwrap();
        ok_json(&call(&svc, "echo", "{}").await);
        assert_eq!(svc.runtime().stats.compiles.load(Ordering::Relaxed), 1);
        // The same bytes deployed again (another version, another env) compile no more: only
        // the world is checked, so the wrong kind is still refused.
        svc.control().create_env("test", "wxA").await.unwrap();
        for (env, name) in [("prod", "echo"), ("test", "echo")] {
            svc.control()
                .deploy(env, name, &wasm(paths::ECHO), FunctionConfig::default())
                .await
                .unwrap();
        }
        let http = FunctionConfig::with(|c| c.kind = cloudfn_store::FunctionKind::Http);
        let e = svc
            .control()
            .deploy("test", "as_http", &wasm(paths::ECHO), http)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("wasi:http/incoming-handler"), "{e}");
        ok_json(&call(&svc, "echo", "{}").await);
        assert_eq!(svc.runtime().stats.compiles.load(Ordering::Relaxed), 1);
    }
    // Many first calls at once after the restart: one of them loads the artifact, the others
    // wait for it.
    let svc = Host::open(dir.path()).await.unwrap();
    echo_at_once(&svc, 8).await;
    ok_json(&call(&svc, "echo", "{}").await);
    assert_eq!(svc.runtime().stats.compiles.load(Ordering::Relaxed), 0);
    assert_eq!(
        svc.runtime().stats.artifact_loads.load(Ordering::Relaxed),
        1
    );
    // A damaged artifact is recompiled (once, however many calls want it) and rewritten.
    drop(svc);
    for entry in std::fs::read_dir(dir.path().join("artifacts")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let svc = Host::open(dir.path()).await.unwrap();
    echo_at_once(&svc, 8).await;
    assert_eq!(svc.runtime().stats.compiles.load(Ordering::Relaxed), 1);
    let svc2 = Host::open(dir.path()).await.unwrap();
    ok_json(&call(&svc2, "echo", "{}").await);
    assert_eq!(
        svc2.runtime().stats.artifact_loads.load(Ordering::Relaxed),
        1
    );
}

/// A call's first slice runs inline, on the calling thread, when a turn is free for it; what
/// needs more goes on on the guest threads: a guest computing past its slice, and every nested
/// call, made inside its caller's slice, which takes a turn of its own there. Every call is counted once, one way or the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_inline_or_on_the_guest_threads() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Host::open(dir.path()).await.unwrap();
    svc.control().create_env("prod", "wxA").await.unwrap();
    let short = FunctionConfig::with(|c| c.timeout_ms = Some(200));
    for (name, path, config) in [
        ("echo", paths::ECHO, FunctionConfig::default()),
        ("users_add", paths::USERS_ADD, FunctionConfig::default()),
        ("fail_loop", paths::FAIL_LOOP, short),
    ] {
        svc.control()
            .deploy("prod", name, &wasm(path), config)
            .await
            .unwrap();
    }
    let stats = &svc.runtime().stats;
    let counts = || {
        (
            stats.inline_calls.load(Ordering::Relaxed),
            stats.guest_thread_calls.load(Ordering::Relaxed),
        )
    };
    for _ in 0..2 {
        let (code, msg) = err(&call(&svc, "fail_loop", "{}").await);
        assert_eq!(code, -501002, "{msg}");
    }
    assert_eq!(counts(), (0, 2), "a loop never ends inline");
    let before = counts();
    ok_json(&call(&svc, "users_add", r#"{"name":"Ada"}"#).await);
    let after = counts();
    assert_eq!(after.0 + after.1, before.0 + before.1 + 2, "{after:?}");
    assert!(
        after.1 > before.1,
        "the nested call ran on the guest threads"
    );
    for i in 0..20 {
        ok_json(&call(&svc, "echo", &format!(r#"{{"i":{i}}}"#)).await);
    }
    let end = counts();
    assert_eq!(end.0 + end.1, after.0 + after.1 + 20, "{end:?}");
}

/// `n` calls of echo on `svc` at once, each a success.
async fn echo_at_once(svc: &std::sync::Arc<Host>, n: usize) {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { call(&svc, "echo", "{}").await })
        })
        .collect();
    for c in calls {
        ok_json(&c.await.unwrap());
    }
}

#[tokio::test]
async fn the_env_directory_is_sandboxed() {
    let w = service().await;
    let (dir, svc) = (&w.dir, w.host.clone());
    let env_dir = dir.path().join("envs").join("prod");
    std::fs::write(env_dir.join("hello.txt"), "hi from the env").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), env_dir.join("link")).unwrap();
    w.deploy("ro", paths::FS_PROBE, FunctionConfig::default())
        .await;
    w.deploy(
        "rw",
        paths::FS_PROBE,
        FunctionConfig::with(|c| c.fs_write = true),
    )
    .await;
    let probe = |name: &'static str, op: &str, path: &str| {
        let event = json!({"op": op, "path": path, "data": "written"}).to_string();
        let svc = svc.clone();
        async move { ok_json(&call(&svc, name, &event).await) }
    };
    assert_eq!(
        probe("ro", "read", "/hello.txt").await["value"],
        "hi from the env"
    );
    assert_eq!(
        probe("ro", "read", "hello.txt").await["value"],
        "hi from the env"
    );
    assert_eq!(probe("ro", "write", "/new.txt").await["ok"], false);
    assert_eq!(probe("ro", "read", "/../secret.txt").await["ok"], false);
    assert_eq!(probe("ro", "read", "../secret.txt").await["ok"], false);
    #[cfg(unix)]
    assert_eq!(probe("ro", "read", "/link").await["ok"], false);
    assert_eq!(probe("ro", "read", "/etc/passwd").await["ok"], false);
    assert!(!env_dir.join("new.txt").exists());
    assert_eq!(probe("rw", "write", "/new.txt").await["ok"], true);
    assert_eq!(
        std::fs::read_to_string(env_dir.join("new.txt")).unwrap(),
        "written"
    );
    assert_eq!(probe("rw", "write", "/../escape.txt").await["ok"], false);
    assert!(!dir.path().join("escape.txt").exists());
}

#[tokio::test]
async fn a_deploy_during_calls_switches_new_calls_only() {
    let w = service().await;
    let svc = w.host.clone();
    w.deploy(
        "slow",
        paths::FAIL_SLEEP,
        FunctionConfig::with(|c| c.timeout_ms = Some(500)),
    )
    .await;
    let inflight = tokio::spawn({
        let svc = svc.clone();
        async move { call(&svc, "slow", "{}").await }
    });
    // Deploy once the call runs its guest (its version taken) or, on a slow machine, has
    // already ended.
    within(
        Duration::from_secs(10),
        "the slow call in flight",
        || async { svc.metrics().in_flight.get() > 0 || inflight.is_finished() },
    )
    .await;
    w.deploy("slow", paths::ECHO, FunctionConfig::default())
        .await;
    let inv = call(&svc, "slow", r#"{"new":1}"#).await;
    assert_eq!(ok_json(&inv)["event"]["new"], 1);
    assert_eq!(inv.version, Some(2));
    let old = inflight.await.unwrap();
    assert_eq!(old.version, Some(1));
    assert_eq!(err(&old).0, -501002);
}

#[tokio::test]
async fn invoke_file_runs_a_component_without_deploying() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Host::open(dir.path()).await.unwrap();
    let req = InvokeRequest::new("local", "echo", r#"{"x":1}"#, "wx_devtools");
    let identity = Identity {
        from_appid: Some("wxB".into()),
        ..Identity::default()
    };
    let inv = svc
        .run_file(
            &wasm(paths::ECHO),
            FunctionConfig::default(),
            None,
            req,
            identity,
        )
        .await
        .unwrap();
    let out = ok_json(&inv);
    assert_eq!(out["context"]["FROM_APPID"], "wxB");
    assert_eq!(out["context"]["ENV"], "local");
    assert!(svc.store().envs().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_change_by_another_process_is_seen_on_the_next_call() {
    let w = service().await;
    let (dir, svc) = (&w.dir, w.host.clone());
    ok_json(&call(&svc, "echo", "{}").await);
    // A second service on the same data dir stands in for another process (e.g. the CLI).
    let other = Host::open(dir.path()).await.unwrap();
    other
        .control()
        .deploy(
            "prod",
            "echo",
            &wasm(paths::FAIL_ERROR),
            FunctionConfig::default(),
        )
        .await
        .unwrap();
    let inv = call(&svc, "echo", "{}").await;
    assert_eq!(inv.version, Some(2));
    assert_eq!(err(&inv).0, -504002);
    other.store().rollback("prod", "echo", 1).await.unwrap();
    assert_eq!(call(&svc, "echo", "{}").await.version, Some(1));
}

#[tokio::test]
async fn nested_calls_stop_at_the_depth_cap() {
    let w = service().await;
    let svc = w.host.clone();
    w.deploy("recurse", paths::RECURSE, FunctionConfig::default())
        .await;
    let out = ok_json(&call(&svc, "recurse", "{}").await);
    // Calls at depths 0..=7 ran; the one that would have been the 9th level was refused.
    assert_eq!(out["depth"], cloudfn_invoke::limits::MAX_CALL_DEPTH - 1);
    assert_eq!(out["errcode"], -504002);
    assert!(
        out["errmsg"]
            .as_str()
            .unwrap()
            .contains("call depth limit of 8"),
        "{out}"
    );
}

#[tokio::test]
async fn results_over_the_size_cap_are_refused() {
    let options = cloudfn_invoke::Options {
        limits: cloudfn_invoke::Limits {
            max_result_bytes: 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let w = World::new()
        .options(options)
        .env("prod", "wxA")
        .deploy("prod", "echo", paths::ECHO)
        .build()
        .await;
    let svc = w.host.clone();
    ok_json(&call(&svc, "echo", r#"{"small":true}"#).await);
    let big = json!({ "x": "y".repeat(2000) }).to_string();
    let (code, msg) = err(&call(&svc, "echo", &big).await);
    assert_eq!(code, -504002);
    assert!(msg.contains("over the 1024-byte limit"), "{msg}");
}

#[tokio::test]
async fn the_default_time_limit_depends_on_the_call_path() {
    let w = service().await;
    let svc = w.host.clone();
    w.deploy("sleepy", paths::SLEEPY, FunctionConfig::default())
        .await;
    // 3.5 s: past the 3 s default of a client call, within the 5 s default of an HTTP-API call.
    let nap = r#"{"ms":3500}"#;
    let (code, msg) = err(&svc
        .invoke(
            InvokeRequest::new("prod", "sleepy", nap, "wx_client"),
            Identity::default(),
        )
        .await);
    assert_eq!(code, -501002);
    assert!(msg.contains("3000 ms"), "{msg}");
    let mut http = InvokeRequest::new("prod", "sleepy", nap, "wx_http");
    http.default_timeout = cloudfn_store::DEFAULT_HTTP_TIMEOUT;
    assert_eq!(
        ok_json(&svc.invoke(http, Identity::default()).await)["slept"],
        3500
    );
}

#[tokio::test]
async fn a_version_number_reused_after_rm_runs_the_new_code() {
    let w = service().await;
    let (dir, svc) = (&w.dir, w.host.clone());
    ok_json(&call(&svc, "echo", "{}").await);
    // Another process removes echo and deploys something else under the same name: version 1
    // again, other content.
    let other = Host::open(dir.path()).await.unwrap();
    other.store().remove_function("prod", "echo").await.unwrap();
    let v = other
        .control()
        .deploy(
            "prod",
            "echo",
            &wasm(paths::FAIL_ERROR),
            FunctionConfig::default(),
        )
        .await
        .unwrap();
    assert_eq!(v.version, 1);
    let inv = call(&svc, "echo", "{}").await;
    assert_eq!(err(&inv).0, -504002, "the old echo must not answer");
}

/// The data dir holds secretKeys and the token key: other local users can neither enter it nor
/// read its databases, also when it existed before with looser modes.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_secrets_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    {
        let svc = Host::open(&dir).await.unwrap();
        svc.store().create_app("wxA", None).await.unwrap();
    }
    // An older data dir with world-readable files is tightened on the next open.
    std::fs::set_permissions(
        dir.join("cloudfn.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let _svc = Host::open(&dir).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    for file in ["cloudfn.db", "activations.db", "keys/token.key"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    for wal in ["cloudfn.db-wal", "activations.db-wal"] {
        let path = dir.join(wal);
        if path.exists() {
            assert_eq!(mode(&path) & 0o077, 0, "{wal}");
        }
    }
}

/// The capability seam with a capability of the test's own: linked beside the standard ones,
/// its interface importable, its state made from the call when the call first uses a
/// capability (and dropped with the call), none for a call that uses none, while a runtime refuses two capabilities for one interface or more than it
/// holds.
#[tokio::test]
async fn a_capability_of_its_own_is_linked_and_given_state_when_a_call_uses_one() {
    use cloudfn_runtime::capabilities::{Dyn, standard};
    use cloudfn_runtime::state::CallState;
    use cloudfn_runtime::{CallInfo, Capability, EngineConfig, Runtime};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        made: Vec<String>,
        dropped: usize,
    }
    struct Probe(&'static str, Arc<Mutex<Seen>>);
    struct ProbeState(Arc<Mutex<Seen>>);
    impl Drop for ProbeState {
        fn drop(&mut self) {
            self.0.lock().unwrap().dropped += 1;
        }
    }
    impl Capability<CallState> for Probe {
        fn interface(&self) -> &'static str {
            self.0
        }
        fn add_to_linker(
            &self,
            _: &mut wasmtime::component::Linker<CallState>,
        ) -> wasmtime::Result<()> {
            Ok(())
        }
        fn instance(&self, call: &CallInfo<'_>) -> Option<Box<dyn std::any::Any + Send>> {
            self.1.lock().unwrap().made.push(format!(
                "{}/{} owner {} appid {:?} from {:?}",
                call.env, call.function, call.owner, call.appid, call.from_appid
            ));
            Some(Box::new(ProbeState(self.1.clone())))
        }
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut list: Vec<Dyn> = standard();
    list.push(Arc::new(Probe("probe", seen.clone())));
    let runtime = Runtime::with_capabilities(None, &EngineConfig::one_shot(), list).unwrap();
    let importable = runtime.importable();
    for interface in ["invoke", "log", "config", "openapi", "probe"] {
        assert!(importable.contains(&interface), "{importable:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let host = Host::open_shared(dir.path(), Default::default(), Arc::new(runtime))
        .await
        .unwrap();
    host.control().create_env("prod", "wxA").await.unwrap();
    for (name, path) in [
        ("echo", paths::ECHO),
        ("openapi_probe", paths::OPENAPI_PROBE),
    ] {
        let wasm = std::fs::read(path).unwrap();
        host.control()
            .deploy("prod", name, &wasm, FunctionConfig::default())
            .await
            .unwrap();
    }
    let call = |name: &'static str, event: String| {
        host.call(Call::trusted(
            InvokeRequest::new("prod", name, event, "wx_devtools"),
            Identity {
                appid: Some("wxA".into()),
                ..Identity::default()
            },
        ))
    };
    // A call that uses no capability makes no capability's state.
    for i in 0..3 {
        let inv = call("echo", format!("{{\"i\":{i}}}")).await;
        assert_eq!(ok_json(&inv)["event"]["i"], i);
    }
    assert!(
        seen.lock().unwrap().made.is_empty(),
        "echo uses no capability"
    );
    // A call into one (a cloud call; no upstream here, so it is refused) makes every
    // capability's state once, from the call, and drops it with the call.
    for _ in 0..2 {
        let inv = call("openapi_probe", r#"{"path":"cgi-bin/x","times":2}"#.into()).await;
        let out = ok_json(&inv);
        assert_eq!(out["results"][1]["errcode"], -501001, "{out}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.made,
        vec!["prod/openapi_probe owner wxA appid Some(\"wxA\") from None"; 2],
        "one state per call that uses a capability, made from the call"
    );
    assert_eq!(seen.dropped, 2, "each call's state is dropped with it");

    let twice: Vec<Dyn> = vec![
        Arc::new(Probe("probe", Default::default())),
        Arc::new(Probe("probe", Default::default())),
    ];
    let e = Runtime::with_capabilities(None, &EngineConfig::one_shot(), twice)
        .err()
        .expect("two capabilities for one interface");
    assert!(
        format!("{e:#}").contains("two capabilities for the interface `probe`"),
        "{e:#}"
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let many: Vec<Dyn> = names
        .iter()
        .map(|n| Arc::new(Probe(n, Default::default())) as Dyn)
        .collect();
    let e = Runtime::with_capabilities(None, &EngineConfig::one_shot(), many)
        .err()
        .expect("more capabilities than a call holds");
    assert!(format!("{e:#}").contains("at most 8"), "{e:#}");
}
