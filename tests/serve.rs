//! `cloudfn serve` over real HTTP on 127.0.0.1: tokens (§2), `/tcb/invokecloudfunction` (§3),
//! `/admin` driven by the real `@cloudbase/node-sdk` (§11), the admin API and the CLI's
//! `--server` mode, limits, activation records, metrics, restarts, graceful drain.

use crate::common;

use common::guests as paths;
use common::http::*;
use common::{Bin, Built, World, poll_within, records, wasm, within};

use crate::common::Manage;
use bytes::Bytes;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::{Host, Limits, Options};
use cloudfn_store::{AppCredentials, FunctionConfig, TokenPolicy};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Apps wxA and wxB (subject Acme); env `prod` (wxA) with echo, users_add, fail_panic,
/// fail_loop (300 ms) and sleepy (10 s); env `bprod` (wxB) with echo; served with `config`.
async fn start(options: Options, config: ServeConfig) -> TestServer {
    World::new()
        .options(options)
        .env("prod", "wxA")
        .env("bprod", "wxB")
        .deploy("prod", "echo", paths::ECHO)
        .deploy("prod", "users_add", paths::USERS_ADD)
        .deploy("prod", "fail_panic", paths::FAIL_PANIC)
        .deploy_with(
            "prod",
            "fail_loop",
            paths::FAIL_LOOP,
            FunctionConfig::with(|c| c.timeout_ms = Some(300)),
        )
        .deploy_with(
            "prod",
            "sleepy",
            paths::SLEEPY,
            FunctionConfig::with(|c| c.timeout_ms = Some(10_000)),
        )
        .deploy("bprod", "echo", paths::ECHO)
        .serve(config)
        .await
}

/// `cloudfn_instances_in_flight` in the text of a server's `/metrics`.
fn instances_in_flight(metrics: &str) -> i64 {
    metrics
        .lines()
        .find(|l| l.starts_with("cloudfn_instances_in_flight"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no cloudfn_instances_in_flight in {metrics}"))
}

async fn standard() -> TestServer {
    start(Options::default(), ServeConfig::default()).await
}

#[tokio::test]
async fn token_endpoint_produces_every_protocol_errcode() {
    let s = standard().await;
    let a = &s.owner;
    let token_url = |q: &str| s.url(&format!("/cgi-bin/token?{q}"));
    let cases = [
        (
            format!("grant_type=password&appid={}&secret={}", a.appid, a.secret),
            40002,
        ),
        (format!("appid={}&secret={}", a.appid, a.secret), 40002),
        (
            format!("grant_type=client_credential&secret={}", a.secret),
            41002,
        ),
        (
            format!("grant_type=client_credential&appid={}", a.appid),
            41004,
        ),
        (
            format!(
                "grant_type=client_credential&appid=wxNope&secret={}",
                a.secret
            ),
            40013,
        ),
        (
            format!("grant_type=client_credential&appid={}&secret=0123", a.appid),
            40125,
        ),
    ];
    for (q, code) in cases {
        let (status, v) = get(&token_url(&q)).await;
        assert_eq!((status, errcode(&v)), (200, code), "{q}: {v}");
        assert!(v["errmsg"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, v) = get(&token_url(&format!(
        "grant_type=client_credential&appid={}&secret={}",
        a.appid, a.secret
    )))
    .await;
    assert_eq!(v["expires_in"], 7200);
    let token = v["access_token"].as_str().unwrap();
    assert!(token.len() >= 32 && token.len() <= 512, "{token}");
    assert!(v.get("errcode").is_none());

    // -1: the token store fails underneath (its table is gone).
    let db = rusqlite::Connection::open(s.dir().join("cloudfn.db")).unwrap();
    db.execute_batch("DROP TABLE tokens").unwrap();
    let (_, v) = get(&token_url(&format!(
        "grant_type=client_credential&appid={}&secret={}",
        a.appid, a.secret
    )))
    .await;
    assert_eq!(errcode(&v), -1, "{v}");
}

#[tokio::test]
async fn stable_token_returns_the_current_token_unless_forced() {
    let s = standard().await;
    let a = &s.owner;
    let url = s.url("/cgi-bin/stable_token");
    let body = |force: bool| {
        json!({"grant_type":"client_credential","appid":a.appid,"secret":a.secret,"force_refresh":force})
            .to_string()
    };
    let (_, first) = request("POST", &url, &[], body(false)).await;
    let (_, again) = request("POST", &url, &[], body(false)).await;
    assert_eq!(first["access_token"], again["access_token"]);
    assert!(again["expires_in"].as_u64().unwrap() <= 7200);
    let (_, forced) = request("POST", &url, &[], body(true)).await;
    assert_ne!(first["access_token"], forced["access_token"]);
    assert_eq!(forced["expires_in"], 7200);
    // The replaced token keeps working during the 5-minute overlap; the new one works too.
    for t in [&first, &forced] {
        let v = s
            .invoke(t["access_token"].as_str().unwrap(), "prod", "echo", "{}")
            .await;
        assert_eq!(errcode(&v), 0, "{v}");
    }
    // Errors in the same shape.
    let bad = [
        (
            json!({"grant_type":"x","appid":a.appid,"secret":a.secret}),
            40002,
        ),
        (
            json!({"grant_type":"client_credential","secret":a.secret}),
            41002,
        ),
        (
            json!({"grant_type":"client_credential","appid":a.appid}),
            41004,
        ),
        (
            json!({"grant_type":"client_credential","appid":"wxNo","secret":"x"}),
            40013,
        ),
        (
            json!({"grant_type":"client_credential","appid":a.appid,"secret":"x"}),
            40125,
        ),
    ];
    for (b, code) in bad {
        let (_, v) = request("POST", &url, &[], b.to_string()).await;
        assert_eq!(errcode(&v), code, "{b}: {v}");
    }
}

#[tokio::test]
async fn superseded_and_expired_tokens_are_refused() {
    // No overlap: a replaced token is "not the latest" at once. The lifetime is long enough that
    // the replaced token cannot also expire meanwhile (an expired token is forgotten when the
    // next one is issued, and then refused as unknown, 40014, instead).
    let superseding = ServeConfig {
        token_policy: TokenPolicy {
            ttl: Duration::from_secs(600),
            overlap: Duration::ZERO,
        },
        ..ServeConfig::default()
    };
    let s = start(Options::default(), superseding).await;
    let old = s.token(&s.owner).await;
    let new = s.token(&s.owner).await;
    assert_eq!(errcode(&s.invoke(&old, "prod", "echo", "{}").await), 40001);
    assert_eq!(errcode(&s.invoke(&new, "prod", "echo", "{}").await), 0);

    // A 1 s lifetime: served until it ends (if the machine is quick enough to see it served),
    // then refused as expired.
    let expiring = ServeConfig {
        token_policy: TokenPolicy {
            ttl: Duration::from_secs(1),
            overlap: Duration::ZERO,
        },
        ..ServeConfig::default()
    };
    let s = World::new()
        .env("prod", "wxA")
        .deploy("prod", "echo", paths::ECHO)
        .serve(expiring)
        .await;
    let token = s.token(&s.owner).await;
    poll_within(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "the token's expiry",
        || async {
            let v = s.invoke(&token, "prod", "echo", "{}").await;
            match errcode(&v) {
                42001 => Some(()),
                0 => None,
                _ => panic!("the token before it expires: {v}"),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn invoke_produces_every_protocol_errcode() {
    let config = ServeConfig {
        max_body: 64 * 1024,
        ..ServeConfig::default()
    };
    let s = start(Options::default(), config).await;
    let t = s.token(&s.owner).await;
    let inv = |q: String| s.url(&format!("/tcb/invokecloudfunction?{q}"));
    let big = format!("{{\"x\":\"{}\"}}", "a".repeat(70 * 1024));
    let cases: Vec<(&str, String, String, i64)> = vec![
        (
            "GET",
            inv(format!("access_token={t}&env=prod&name=echo")),
            "{}".into(),
            43002,
        ),
        ("POST", inv("env=prod&name=echo".into()), "{}".into(), 41001),
        (
            "POST",
            inv("access_token=bogus&env=prod&name=echo".into()),
            "{}".into(),
            40014,
        ),
        (
            "POST",
            inv(format!("access_token={t}&name=echo")),
            "{}".into(),
            40101,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod")),
            "{}".into(),
            40101,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=echo")),
            "".into(),
            44002,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=echo")),
            "{oops".into(),
            -501007,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=1bad")),
            "{}".into(),
            -501007,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=echo")),
            big,
            -501007,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=nope&name=echo")),
            "{}".into(),
            -501000,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=bprod&name=echo")),
            "{}".into(),
            -501019,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=missing")),
            "{}".into(),
            -501009,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=fail_loop")),
            "{}".into(),
            -501002,
        ),
        (
            "POST",
            inv(format!("access_token={t}&env=prod&name=fail_panic")),
            "{}".into(),
            -504002,
        ),
    ];
    for (method, url, body, code) in cases {
        let (status, v) = request(method, &url, &[], body).await;
        assert_eq!((status, errcode(&v)), (200, code), "{method} {url}: {v}");
        assert!(v["errmsg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // Success: resp_data is the function's return value as a JSON string; the token's app is
    // the caller, SOURCE wx_http, and the calling server may name its user.
    let url = inv(format!("access_token={t}&env=prod&name=echo"));
    let (_, v) = request(
        "POST",
        &url,
        &[("X-WX-OPENID", "o-user-1"), ("X-WX-UNIONID", "u-1")],
        r#"{"a":1}"#,
    )
    .await;
    assert_eq!(v["errcode"], 0);
    assert_eq!(v["errmsg"], "ok");
    let data: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["event"], json!({"a":1}));
    let ctx = &data["context"];
    assert_eq!(ctx["APPID"], "wxA");
    assert_eq!(ctx["OPENID"], "o-user-1");
    assert_eq!(ctx["UNIONID"], "u-1");
    assert_eq!(ctx["SOURCE"], "wx_http");
    assert_eq!(ctx["CLIENTIP"], "127.0.0.1");
    // User ids are plain and bounded.
    let (_, v) = request("POST", &url, &[("X-WX-OPENID", "o 1; DROP")], "{}").await;
    assert_eq!(errcode(&v), -501007, "{v}");
    // Not visible ASCII: refused too, not taken as "no user" (an anonymous call).
    let (_, v) = request("POST", &url, &[("X-WX-OPENID", "用户1")], "{}").await;
    assert_eq!(errcode(&v), -501007, "{v}");
    let long = "o".repeat(200);
    let (_, v) = request("POST", &url, &[("X-WX-UNIONID", long.as_str())], "{}").await;
    assert_eq!(errcode(&v), -501007, "{v}");
    // Without user headers the call carries no user.
    let (_, v) = request("POST", &url, &[], "{}").await;
    let data: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
    assert!(data["context"].get("OPENID").is_none());
    // A nested call chains SOURCE.
    let v = s.invoke(&t, "prod", "users_add", r#"{"name":"Ada"}"#).await;
    let data: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["stored"]["context"]["SOURCE"], "wx_http,scf");
}

#[tokio::test]
async fn the_env_concurrency_cap_refuses_extra_calls() {
    let options = Options {
        limits: Limits {
            env_concurrency: 1,
            ..Limits::default()
        },
        ..Options::default()
    };
    let s = Arc::new(start(options, ServeConfig::default()).await);
    let t = s.token(&s.owner).await;
    let slow = tokio::spawn({
        let (s, t) = (s.clone(), t.clone());
        async move { s.invoke(&t, "prod", "sleepy", r#"{"ms":800}"#).await }
    });
    // Wait until the slow call holds the env's only slot.
    within(
        Duration::from_secs(10),
        "the slow call holding the env's slot",
        || async { s.host.metrics().in_flight.get() > 0 },
    )
    .await;
    let v = s.invoke(&t, "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -501004, "{v}");
    assert_eq!(errcode(&slow.await.unwrap()), 0);
    assert_eq!(errcode(&s.invoke(&t, "prod", "echo", "{}").await), 0);
}

#[tokio::test]
async fn concurrent_calls_and_a_deploy_during_in_flight_calls() {
    let s = Arc::new(standard().await);
    let t = s.token(&s.owner).await;
    // 40 concurrent calls, each gets its own event back.
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                (
                    i,
                    s.invoke(&t, "prod", "echo", &format!(r#"{{"i":{i}}}"#))
                        .await,
                )
            })
        })
        .collect();
    for c in calls {
        let (i, v) = c.await.unwrap();
        let data: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
        assert_eq!(data["event"]["i"], i);
    }
    // In-flight calls of version 1 finish normally while version 2 is deployed over the admin
    // API; calls after the deploy see version 2.
    let in_flight: Vec<_> = (0..5)
        .map(|i| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                s.invoke(&t, "prod", "sleepy", &format!(r#"{{"ms":600,"tag":{i}}}"#))
                    .await
            })
        })
        .collect();
    // Deploy once every one of them runs its guest (its version taken) or has ended.
    s.calls_under_way(&in_flight).await;
    let (status, v) = request(
        "PUT",
        &format!("http://{}/v1/envs/prod/functions/sleepy", s.admin),
        &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
        wasm(paths::ECHO),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 2);
    let after = s.invoke(&t, "prod", "sleepy", r#"{"ms":1}"#).await;
    let data: Value = serde_json::from_str(after["resp_data"].as_str().unwrap()).unwrap();
    assert_eq!(
        data["event"]["ms"], 1,
        "the new version (echo) answered: {data}"
    );
    for c in in_flight {
        let v = c.await.unwrap();
        assert_eq!(errcode(&v), 0, "{v}");
        let data: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
        assert_eq!(data["version"], 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_node_sdk_calls_functions_through_admin() {
    let s = standard().await;
    let (ok, v) = node_call(
        &s,
        &s.owner,
        "prod",
        "echo",
        Some(r#"{"a":1,"s":"中文 ok"}"#),
        None,
    );
    assert!(ok, "{v}");
    assert_eq!(v["result"]["event"], json!({"a":1,"s":"中文 ok"}));
    assert_eq!(v["result"]["context"]["APPID"], "wxA");
    assert!(v["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    // No data: the event is {}.
    let (ok, v) = node_call(&s, &s.owner, "prod", "echo", None, None);
    assert!(ok, "{v}");
    assert_eq!(v["result"]["event"], json!({}));
    // qualifier selects a version.
    s.host
        .control()
        .deploy(
            "prod",
            "echo",
            &wasm(paths::FAIL_ERROR),
            FunctionConfig::default(),
        )
        .await
        .unwrap();
    let (ok, v) = node_call(&s, &s.owner, "prod", "echo", Some("{}"), Some("1"));
    assert!(ok, "{v}");
    let failing = [
        (
            s.owner.clone(),
            "prod",
            "echo",
            "FUNCTION_INVOCATION_FAILED",
        ),
        (s.owner.clone(), "prod", "missing", "FUNCTION_NOT_FOUND"),
        (
            s.owner.clone(),
            "prod",
            "fail_loop",
            "FUNCTION_TIME_LIMIT_EXCEEDED",
        ),
        (s.owner.clone(), "bprod", "echo", "EXCEED_AUTHORITY"),
        (s.owner.clone(), "nope", "echo", "INVALID_ENV"),
        (
            AppCredentials {
                secret_key: "wrong".into(),
                ..s.owner.clone()
            },
            "prod",
            "echo",
            "SIGN_PARAM_INVALID",
        ),
        (
            AppCredentials {
                secret_id: "AKIDunknown".into(),
                ..s.owner.clone()
            },
            "prod",
            "echo",
            "SECRETID_NOT_FOUND",
        ),
    ];
    for (creds, env, name, code) in failing {
        let (ok, v) = node_call(&s, &creds, env, name, Some("{}"), None);
        assert!(!ok, "{env}/{name}: {v}");
        assert_eq!(v["code"], code, "{env}/{name}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(
            v["requestId"].as_str().is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
}

#[tokio::test]
async fn admin_refuses_a_stale_timestamp_in_the_section_11_shape() {
    let s = standard().await;
    let body = json!({"action":"functions.invokeFunction","function_name":"echo","request_data":"{\"t\":1}","envName":"prod"});
    let host = s.public.to_string();
    let payload = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(
            "&action=functions.invokeFunction\r\n&envname=prod\r\n&function_name=echo\r\n&request_data={\"t\":1}\r\n",
        ))
    };
    let canonical = format!(
        "post\n//{host}/admin\nenv=prod&seqId=1\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{payload}"
    );
    let signed_at = |ts: i64| {
        let sig = cloudfn_gateway::tc3::signature(&s.owner.secret_key, ts, &canonical);
        let auth = format!(
            "TC3-HMAC-SHA256 Credential={}/{}/tcb/tc3_request, SignedParams=action;envname;function_name;request_data, SignedHeaders=content-type;host, Signature={sig}",
            s.owner.secret_id,
            cloudfn_gateway::tc3::utc_date(ts)
        );
        let url = s.url("/admin?env=prod&seqId=1");
        let body = body.to_string();
        async move {
            let ts = ts.to_string();
            let headers = [
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
                ("x-timestamp", ts.as_str()),
                ("x-signature-expires", "600"),
            ];
            request("POST", &url, &headers, body).await
        }
    };
    let now = cloudfn_store::fsutil::now();
    let (status, v) = signed_at(now - 3600).await;
    assert_eq!(status, 200);
    assert_eq!(v["code"], "SIGN_EXPIRED", "{v}");
    assert!(v["requestId"].as_str().is_some(), "{v}");
    // The same request signed now is accepted.
    let (status, v) = signed_at(now).await;
    assert_eq!(status, 200);
    let data: Value = serde_json::from_str(v["data"]["response_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["event"], json!({"t":1}), "{v}");
    // Sent again (a replay of a captured request), it is refused and does not run.
    let (status, v) = signed_at(now).await;
    assert_eq!(status, 200);
    assert_eq!(v["code"], "SIGN_PARAM_INVALID", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("used already"),
        "{v}"
    );
    s.host.flush_records().await;
    assert_eq!(records(&s.host, "prod", Some("echo")).await.len(), 1);
}

/// The signature covers a number as its text, but `/admin` reads these fields as strings: a
/// signed `"qualifier": 1` must not quietly run the latest version.
#[tokio::test]
async fn admin_refuses_signed_fields_of_the_wrong_type() {
    let s = standard().await;
    let host = s.public.to_string();
    // A fresh seqId per request, as the SDK sends: the same signature twice is a replay.
    let seq = std::sync::atomic::AtomicU32::new(0);
    let send = |body: Value| {
        let fields = body.as_object().unwrap().clone();
        let ts = cloudfn_store::fsutil::now();
        let query = format!(
            "env=prod&seqId={}",
            seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let headers = |name: &str| match name {
            "host" => Some(host.clone()),
            "content-type" => Some("application/json".to_string()),
            _ => None,
        };
        let signed = cloudfn_gateway::tc3::SignedRequest {
            host: &host,
            path: "/admin",
            query: &query,
            header: &headers,
            body: &fields,
        };
        let auth = cloudfn_gateway::tc3::sign(&signed, &s.owner.secret_id, &s.owner.secret_key, ts)
            .unwrap();
        let url = s.url(&format!("/admin?{query}"));
        async move {
            let ts = ts.to_string();
            let headers = [
                ("content-type", "application/json"),
                ("authorization", auth.as_str()),
                ("x-timestamp", ts.as_str()),
            ];
            request("POST", &url, &headers, body.to_string()).await.1
        }
    };
    let call = |qualifier: Value| {
        json!({"action":"functions.invokeFunction","function_name":"echo",
               "request_data":"{}","envName":"prod","qualifier":qualifier})
    };
    // As a string the pinned version runs (and the signing is right).
    let v = send(call(json!("1"))).await;
    assert!(v["data"]["response_data"].is_string(), "{v}");
    for wrong in [json!(1), json!(true), json!({"v": 1})] {
        let v = send(call(wrong.clone())).await;
        assert_eq!(v["code"], "FUNCTION_PARAM_INVALID", "{wrong}: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("qualifier must be a string"),
            "{v}"
        );
    }
    let v = send(
        json!({"action":"functions.invokeFunction","function_name":"echo",
                        "request_data":{"a":1},"envName":"prod"}),
    )
    .await;
    assert_eq!(v["code"], "FUNCTION_PARAM_INVALID", "{v}");
}

#[tokio::test]
async fn activation_records_logs_and_metrics() {
    let options = Options {
        activation_retention: 10,
        ..Options::default()
    };
    let s = start(options, ServeConfig::default()).await;
    let t = s.token(&s.owner).await;
    for i in 0..30 {
        s.invoke(&t, "prod", "echo", &format!(r#"{{"i":{i}}}"#))
            .await;
    }
    s.invoke(&t, "prod", "users_add", r#"{"name":"Ada"}"#).await;
    s.invoke(&t, "prod", "fail_panic", "{}").await;
    s.host.flush_records().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let (status, records) = request(
        "GET",
        &format!("http://{}/v1/envs/prod/activations?limit=100", s.admin),
        &headers,
        Bytes::new(),
    )
    .await;
    assert_eq!(status, 200, "{records}");
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 10, "retention keeps the last 10");
    let last = records.last().unwrap();
    assert_eq!(last["function"], "fail_panic");
    assert_eq!(last["errcode"], -504002);
    assert_eq!(last["caller_appid"], "wxA");
    assert!(
        last["logs"].to_string().contains("deliberate panic"),
        "{last}"
    );
    let users_add = records
        .iter()
        .find(|r| r["function"] == "users_add")
        .unwrap();
    assert_eq!(users_add["errcode"], 0);
    assert_eq!(users_add["version"], 1);
    assert!(users_add["peak_memory"].as_i64().unwrap() > 0);
    assert!(users_add["logs"].to_string().contains("adding user Ada"));
    // The admin API wants its token.
    let (status, _) = get(&format!("http://{}/v1/envs", s.admin)).await;
    assert_eq!(status, 401);
    // Metrics: calls by errcode, latency, in flight.
    let (status, metrics) = get(&format!("http://{}/metrics", s.admin)).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(r#"cloudfn_calls_total{errcode="0"} 32"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cloudfn_calls_total{errcode="-504002"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("cloudfn_call_duration_seconds_count 33"),
        "{text}"
    );
    // No record was dropped (the writer kept up), and the count is served.
    assert!(
        text.contains("cloudfn_activation_records_dropped_total 0"),
        "{text}"
    );
    assert!(text.contains("cloudfn_instances_in_flight 0"), "{text}");
    // One exposition: a single end marker, at the end.
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[tokio::test]
async fn tokens_and_data_survive_a_restart() {
    let mut s = standard().await;
    let t = s.token(&s.owner).await;
    assert_eq!(errcode(&s.invoke(&t, "prod", "echo", "{}").await), 0);
    s.shutdown().await;
    let TestServer { world, .. } = s;
    let Built { dir, creds, .. } = world;
    let host = Host::open(dir.path()).await.unwrap();
    let s = TestServer::serve(Built { dir, host, creds }, ServeConfig::default()).await;
    assert_eq!(errcode(&s.invoke(&t, "prod", "echo", "{}").await), 0);
    // stable_token hands back the same token after the restart.
    let (_, v) = request(
        "POST",
        &s.url("/cgi-bin/stable_token"),
        &[],
        json!({"grant_type":"client_credential","appid":"wxA","secret":s.owner.secret}).to_string(),
    )
    .await;
    assert_eq!(v["access_token"], t);
    let _ = &s.other;
}

#[tokio::test]
async fn a_foundation_data_dir_keeps_working() {
    // A data dir at schema 1 (before apps, tokens and activation records existed).
    let dir = tempfile::tempdir().unwrap();
    {
        let db = rusqlite::Connection::open(dir.path().join("cloudfn.db")).unwrap();
        db.execute_batch(
            "CREATE TABLE envs (name TEXT PRIMARY KEY, owner_appid TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE functions (env TEXT NOT NULL REFERENCES envs(name), name TEXT NOT NULL,
                active_version INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                PRIMARY KEY (env, name));
             CREATE TABLE versions (env TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
                sha256 TEXT NOT NULL, size INTEGER NOT NULL, config TEXT NOT NULL, created_at INTEGER NOT NULL,
                PRIMARY KEY (env, name, version),
                FOREIGN KEY (env, name) REFERENCES functions(env, name) ON DELETE CASCADE);
             INSERT INTO envs VALUES ('prod', 'wxOld', 1700000000);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let host = Host::open(dir.path()).await.unwrap();
    let store = host.store();
    let apps = store.apps().await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].appid, "wxOld");
    assert!(!apps[0].has_secret);
    let creds = store.create_app("wxOld", None).await.unwrap();
    store.check_secret("wxOld", &creds.secret).await.unwrap();
    assert_eq!(store.env("prod").await.unwrap().owner_appid, "wxOld");
}

/// The binary: `serve` prints its address once ready, the CLI manages it with `--server`, and
/// SIGTERM lets an in-flight call finish before the process exits.
#[test]
fn serve_binary_remote_cli_and_graceful_drain() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::new(dir.path());
    let mut child = bin
        .serve(&["--log-format", "json"])
        .env("CLOUDFN_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let (public, admin) = common::served_urls(&mut child);
    let cli = |args: &[&str]| {
        let out = bin
            .command(&["--server", admin.as_str(), "--admin-token", ADMIN_TOKEN])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = cli(args);
        assert!(ok, "{args:?}: {out}\n{err}");
        out
    };
    let creds = ok(&["app", "create", "wxR", "--subject", "Remote Co"]);
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .unwrap()
        .trim()
        .to_string();
    ok(&["env", "create", "rprod", "--owner", "wxR"]);
    assert_eq!(
        ok(&["deploy", "--env", "rprod", "--name", "echo", paths::ECHO]).trim(),
        "1"
    );
    assert_eq!(
        ok(&[
            "deploy",
            "--env",
            "rprod",
            "--name",
            "slow",
            paths::SLEEPY,
            "--timeout",
            "10"
        ])
        .trim(),
        "1"
    );
    assert_eq!(
        ok(&[
            "deploy",
            "--env",
            "rprod",
            "--name",
            "echo",
            paths::FAIL_ERROR
        ])
        .trim(),
        "2"
    );
    // Settings beyond ASCII cross the network as they were written.
    let reply = r#"{"msg":"héllo 你好 🎉"}"#;
    let var = format!("reply={reply}");
    ok(&[
        "deploy",
        "--env",
        "rprod",
        "--name",
        "say",
        paths::AUTH_REPLY,
        "--var",
        &var,
    ]);
    let said = ok(&[
        "invoke", "--env", "rprod", "--name", "say", "--appid", "wxR",
    ]);
    assert_eq!(said.trim(), reply);
    ok(&["rollback", "--env", "rprod", "--name", "echo", "--to", "1"]);
    let versions = ok(&["versions", "--env", "rprod", "--name", "echo"]);
    assert!(
        versions.lines().nth(2).unwrap().starts_with("1\t*"),
        "{versions}"
    );
    let out = ok(&[
        "invoke",
        "--env",
        "rprod",
        "--name",
        "echo",
        "--appid",
        "wxR",
        "--openid",
        "o1",
        "--event",
        r#"{"r":1}"#,
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["context"]["APPID"], "wxR");
    assert_eq!(v["context"]["OPENID"], "o1");
    // Calling as another app goes through the sharing checks on the server too.
    let (ok_, out, _) = cli(&[
        "invoke",
        "--env",
        "rprod",
        "--name",
        "echo",
        "--from-appid",
        "wxB",
    ]);
    assert!(!ok_);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["errcode"],
        -501019
    );
    let (ok_, out, _) = cli(&["invoke", "--env", "rprod", "--name", "nope"]);
    assert!(!ok_);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["errcode"],
        -501009
    );
    let logs = ok(&["logs", "--env", "rprod"]);
    assert!(
        logs.contains("rprod/echo@1") && logs.contains("errcode -501009"),
        "{logs}"
    );
    // How fresh the list is goes to stderr, the listing stays one line per call.
    let (_, _, fresh) = cli(&["logs", "--env", "rprod"]);
    assert!(
        fresh.contains("call(s) of rprod, oldest first, as recorded at ")
            && fresh.contains("about 0.1 s after it ends"),
        "{fresh}"
    );
    assert!(ok(&["app", "ls"]).contains("wxR\tRemote Co\tAKID"));
    assert!(ok(&["ls", "--env", "rprod"]).contains("echo\t1\t2"));
    ok(&["rm", "--env", "rprod", "--name", "echo"]);
    let (ok_, _, err) = bin
        .command(&[
            "--server",
            admin.as_str(),
            "--admin-token",
            "wrong-token-wrong-token",
            "env",
            "ls",
        ])
        .output()
        .map(|o| {
            (
                o.status.success(),
                (),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert!(!ok_ && err.contains("admin token"), "{err}");

    // Drain: a call in flight when SIGTERM arrives still gets its answer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (_, v) = get(&format!(
            "{public}/cgi-bin/token?grant_type=client_credential&appid=wxR&secret={secret}"
        ))
        .await;
        let token = v["access_token"].as_str().unwrap().to_string();
        let url =
            format!("{public}/tcb/invokecloudfunction?access_token={token}&env=rprod&name=slow");
        let call = tokio::spawn(async move { request("POST", &url, &[], r#"{"ms":700}"#).await });
        // SIGTERM once the call runs its guest, as the server's metrics say.
        within(
            Duration::from_secs(20),
            "the slow call in flight",
            || async {
                let (_, metrics) = get(&format!("{admin}/metrics")).await;
                instances_in_flight(metrics.as_str().unwrap_or_default()) > 0
            },
        )
        .await;
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let (status, v) = call.await.unwrap();
        assert_eq!((status, errcode(&v)), (200, 0), "{v}");
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    // --log-format json: one JSON object per diagnostic line, the grant and drain logs included.
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("draining"))),
        "{log}"
    );
}

#[tokio::test]
async fn a_call_whose_client_went_away_still_finishes_and_is_recorded() {
    let s = standard().await;
    let t = s.token(&s.owner).await;
    let gave_up = tokio::time::timeout(
        Duration::from_millis(150),
        s.invoke(&t, "prod", "sleepy", r#"{"ms":400,"tag":"abandoned"}"#),
    )
    .await;
    assert!(gave_up.is_err(), "the client gave up before the answer");
    // The call goes on without its client; wait (bounded) for its record rather than a fixed
    // time, which a loaded machine may overrun.
    let start = std::time::Instant::now();
    let records = loop {
        let records = records(&s.host, "prod", Some("sleepy")).await;
        if !records.is_empty() || start.elapsed() > Duration::from_secs(20) {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].errcode, 0);
    assert!(records[0].duration_us >= 400_000);
}

/// One client IP cannot take every connection: past its cap its new connections are closed
/// unanswered, another client (another loopback address) is still served, and closing its
/// connections frees its share again.
#[tokio::test]
async fn one_client_ip_cannot_lock_the_others_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpSocket, TcpStream};
    let s = start(
        Options::default(),
        ServeConfig {
            max_connections_per_ip: 4,
            ..ServeConfig::default()
        },
    )
    .await;
    async fn ask(mut conn: TcpStream) -> String {
        let _ = conn
            .write_all(b"GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf));
        let _ = read
            .await
            .expect("the server answers or closes within 10 s");
        String::from_utf8_lossy(&buf).into_owned()
    }
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(s.public).await.unwrap());
    }
    let fifth = ask(TcpStream::connect(s.public).await.unwrap()).await;
    assert_eq!(
        fifth, "",
        "a fifth connection from 127.0.0.1 is closed unanswered"
    );
    let from = |ip: &str| {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(s.public)
    };
    let other = ask(from("127.0.0.2").await.unwrap()).await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    drop(idle);
    let mut answer = String::new();
    for _ in 0..100 {
        answer = ask(TcpStream::connect(s.public).await.unwrap()).await;
        if !answer.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
}

/// Records are bounded on disk as a whole, not only by count per env: a function that logs a
/// lot cannot grow `activations.db` past `--records-max-mb`; the oldest records go first.
#[tokio::test]
async fn activation_records_stay_within_their_byte_budget() {
    let budget: u64 = 1 << 20;
    let s = start(
        Options {
            activation_max_bytes: budget,
            ..Options::default()
        },
        ServeConfig::default(),
    )
    .await;
    s.world
        .deploy("chatty", paths::CHATTY, FunctionConfig::default())
        .await;
    let t = s.token(&s.owner).await;
    for _ in 0..12 {
        let v = s.invoke(&t, "prod", "chatty", r#"{"kb":256}"#).await;
        assert_eq!(v["errcode"], 0, "{v}");
        s.host.flush_records().await;
    }
    let records = records(&s.host, "prod", Some("chatty")).await;
    assert!(
        !records.is_empty() && records.len() < 12,
        "{} of 12 records kept",
        records.len()
    );
    let db = rusqlite::Connection::open(s.dir().join("activations.db")).unwrap();
    let used: i64 = db
        .query_row(
            "SELECT ((SELECT page_count FROM pragma_page_count()) -
                     (SELECT freelist_count FROM pragma_freelist_count())) *
                    (SELECT page_size FROM pragma_page_size())",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(used as u64 <= budget, "records take {used} bytes");
}

/// The admin API's router: every `/v1` route, and any path that is no route, refuses a
/// missing or wrong token before anything else (so its shape shows to nobody without one);
/// with the token, no such route (or not with that method) is a 404 in the API's shape, a bad
/// path or body a 400 in that shape, and the unauthenticated routes stay open.
#[tokio::test]
async fn the_admin_router_asks_for_the_token_first_and_answers_in_its_own_shape() {
    let s = standard().await;
    let base = format!("http://{}", s.admin);
    let wrong = [("authorization", "Bearer not-the-admin-token-at-all")];
    for (method, path) in [
        ("GET", "/v1/apps"),
        ("POST", "/v1/envs"),
        ("DELETE", "/v1/shares/prod/wxB"),
        ("GET", "/v1/no-such-thing"),
        ("PATCH", "/v1/apps"),
    ] {
        for headers in [&[][..], &wrong[..]] {
            let (status, body) = request(method, &format!("{base}{path}"), headers, "").await;
            assert_eq!(status, 401, "{method} {path}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("admin token"),
                "{body}"
            );
        }
    }
    // Nor do its headers: axum's `Allow` would name a route's methods.
    for path in ["/v1/apps", "/v1/envs/prod/functions/echo"] {
        let (status, headers, _) = exchange("PATCH", &format!("{base}{path}"), &[], "").await;
        assert_eq!(status, 401);
        assert!(headers.get("allow").is_none(), "{path}: {headers:?}");
    }
    // The console likewise sends anyone without a session to its login, whatever the path.
    for (method, path) in [
        ("GET", "/console/envs/%FF"),
        ("DELETE", "/console/envs/prod"),
    ] {
        let (status, headers, _) = exchange(method, &format!("{base}{path}"), &[], "").await;
        assert_eq!(status, 303, "{method} {path}");
        assert_eq!(headers["location"], "/console/login", "{method} {path}");
        assert!(
            headers.get("allow").is_none(),
            "{method} {path}: {headers:?}"
        );
    }
    let (status, body) = admin(&s, "GET", "/v1/envs/%FF/functions", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some(),
        "a path that does not decode: {body}"
    );
    let (status, body) = admin(&s, "GET", "/v1/no-such-thing", "").await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "no admin endpoint /v1/no-such-thing"}))
    );
    let (status, body) = admin(&s, "PATCH", "/v1/apps", "").await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "no admin endpoint /v1/apps"}))
    );
    let (status, body) = admin(&s, "POST", "/v1/envs", r#"{"env":"x","ownr":"wxA"}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `ownr`"),
        "{body}"
    );
    let (status, body) = admin(&s, "GET", "/v1/envs/prod/functions", "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["name"], "echo", "{body}");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let (status, body) = request("GET", &format!("{base}{path}"), &[], "").await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
