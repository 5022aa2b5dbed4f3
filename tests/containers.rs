//! HTTP functions behind the container-style gateways, end to end on 127.0.0.1: the real
//! `http_probe` guest (a wasi:http component reporting what it received) deployed as an HTTP
//! function; WeChat callContainer, Douyin Cloud and Taobao requests from mini-program users
//! (sessions from a fake platform's `jscode2session`) and apps (access tokens). Each identity
//! header rule (spoofed ones replaced), each limit and errcode, sharing through the pipeline,
//! outbound HTTP only to named hosts, Taobao's system parameters, `sign` (computed here from
//! §10), the envelope, and the response cache's four key kinds and expiry.

use crate::common::Manage;
use crate::common::http::*;
use crate::common::{Bin, World, failed, guests as paths, ok, poll_within};
use bytes::Bytes;
use cloudfn_gateway::container::ContainerConfig;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_gateway::taobao::TaobaoApp;
use cloudfn_invoke::Options;
use cloudfn_store::{FunctionConfig, FunctionKind};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use std::time::Duration;

/// An HTTP function's configuration with `vars`.
fn http(vars: &[(&str, &str)]) -> FunctionConfig {
    FunctionConfig::with(|c| {
        c.kind = FunctionKind::Http;
        c.vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    })
}

/// A fake platform: code `ok-OPENID-N` is user OPENID (unionid `u-OPENID`), for any app.
async fn platform() -> String {
    stand_in(|(parts, _): Seen| async move {
        let q: std::collections::HashMap<String, String> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let code = q.get("js_code").cloned().unwrap_or_default();
        let openid = code.split('-').nth(1).unwrap_or("nobody").to_string();
        let v = json!({"openid": openid, "unionid": format!("u-{openid}"), "session_key": "k"});
        (200, "application/json", v.to_string().into_bytes())
    })
    .await
}

/// wxA owns `prod` and `test`; `prod` is shared with wxB (granted by `cloudbase_auth`) and
/// wxC (denied), `limited` with wxB for `echo` only. `probe` is http_probe everywhere (a 500 ms
/// limit in `prod`), `echo` a cloud function. Taobao: wxA's test/online are `test`/`prod`,
/// wxB's and wxC's both `prod`. callContainer host `api.example.test` is `prod`.
pub(crate) async fn world() -> TestServer {
    let auth = FunctionConfig::vars([("allowed_appids", "wxB"), ("roles", "wxB=partner")]);
    let counter = FunctionConfig {
        fs_write: true,
        ..http(&[])
    };
    let mut probe = http(&[("WHICH", "online")]);
    probe.timeout_ms = Some(500);
    let taobao = |test: &str, online: &str| TaobaoApp {
        test: test.into(),
        online: online.into(),
        service: "probe".into(),
    };
    let config = ServeConfig {
        containers: ContainerConfig {
            env_by_host: [("api.example.test".to_string(), "prod".to_string())].into(),
            taobao: [
                ("wxA".to_string(), taobao("test", "prod")),
                ("wxB".to_string(), taobao("prod", "prod")),
                ("wxC".to_string(), taobao("prod", "prod")),
            ]
            .into(),
        },
        ..ServeConfig::default()
    };
    let s = World::new()
        .options(Options {
            upstream: Some(platform().await),
            // The outbound test's stand-in listens on loopback, which is refused by default.
            egress_allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..Options::default()
        })
        .app("wxC", "Acme")
        .app("wxD", "Other")
        .env("prod", "wxA")
        .env("test", "wxA")
        .env("limited", "wxA")
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            auth.clone(),
        )
        .deploy_with("limited", "cloudbase_auth", paths::CLOUDBASE_AUTH, auth)
        .deploy_with("prod", "probe", paths::HTTP_PROBE, probe)
        .deploy_with(
            "test",
            "probe",
            paths::HTTP_PROBE,
            http(&[("WHICH", "test")]),
        )
        .deploy_with("limited", "probe", paths::HTTP_PROBE, http(&[]))
        .deploy_with("prod", "wx_counter", paths::WX_COUNTER, counter)
        .deploy("prod", "echo", paths::ECHO)
        .deploy("limited", "echo", paths::ECHO)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        .share("prod", "wxC", "*")
        .share("limited", "wxB", "echo")
        .serve(config)
        .await;
    for app in ["wxA", "wxB", "wxC", "wxD"] {
        s.host
            .store()
            .set_upstream_secret(app, Some("platform-secret"))
            .await
            .unwrap();
    }
    // What wxA's Taobao mini-program signs with (its envs' functions check `sign` with it).
    s.host
        .control()
        .set_taobao_secret("wxA", Some("taobao-secret"))
        .await
        .unwrap();
    s
}

/// A mini-program user's session.
pub(crate) async fn session(s: &TestServer, appid: &str, openid: &str) -> String {
    let code = format!("ok-{openid}-{}", rand_suffix());
    let body = json!({ "appid": appid, "code": code }).to_string();
    let (_, v) = request("POST", &s.url("/auth/code2session"), &[], body).await;
    v["session"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A response: status, headers, body as JSON (or a JSON string of the text).
pub(crate) struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The status and a Taobao envelope's `errorCode`.
    fn tb_error(&self) -> (u16, Option<&str>) {
        (self.status, self.body["errorCode"].as_str())
    }
}

pub(crate) async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let (status, headers, body) = exchange(method, url, headers, body).await;
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn bearer(session: &str) -> String {
    format!("Bearer {session}")
}

/// Asserts the function saw each header with its value.
fn saw(headers: &Value, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(headers[*name], *value, "{name} in {headers}");
    }
}

/// A callContainer request's headers: `service` of `env`, authenticated by `auth`.
fn wx<'a>(service: &'a str, env: &'a str, auth: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-wx-service", service),
        ("x-wx-env", env),
        ("authorization", auth),
    ]
}

#[tokio::test]
async fn http_functions_deploy_list_version_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::new(dir.path());
    ok(&bin.run(&["app", "create", "wxA", "--subject", "Acme"]));
    ok(&bin.run(&["env", "create", "prod", "--owner", "wxA"]));
    let deploy = |name: &str, flags: &[&str], wasm: &str| {
        let mut args = vec!["deploy", "--env", "prod", "--name", name];
        args.extend_from_slice(flags);
        args.push(wasm);
        bin.run(&args)
    };
    let http = ["--kind", "http"];
    // Each kind is checked against its own world, with a hint at the other.
    let (_, err) = failed(&deploy("svc", &[], paths::HTTP_PROBE));
    assert!(err.contains("--kind http"), "{err}");
    let (_, err) = failed(&deploy("svc", &http, paths::ECHO));
    assert!(err.contains("wasi:http/incoming-handler"), "{err}");
    let bad_host = ["--kind", "http", "--allow-host", "https://x"];
    let (_, err) = failed(&deploy("svc", &bad_host, paths::HTTP_PROBE));
    assert!(err.contains("outbound host"), "{err}");
    // `cloudbase_auth` decides grants with a JSON result: never an HTTP function.
    let (_, err) = failed(&deploy("cloudbase_auth", &http, paths::HTTP_PROBE));
    assert!(err.contains("must be a cloud function"), "{err}");
    for _ in 0..2 {
        ok(&deploy("svc", &http, paths::HTTP_PROBE));
    }
    ok(&deploy("echo", &[], paths::ECHO));
    let ls = ok(&bin.run(&["ls", "--env", "prod"]));
    assert!(ls.contains("echo\t1\t1\tfunction"), "{ls}");
    assert!(ls.contains("svc\t2\t2\thttp"), "{ls}");
    ok(&bin.run(&["rollback", "--env", "prod", "--name", "svc", "--to", "1"]));
    let versions = ok(&bin.run(&["versions", "--env", "prod", "--name", "svc"]));
    assert!(
        versions
            .lines()
            .any(|l| l.starts_with("1\t*") && l.ends_with("http")),
        "{versions}"
    );
    // An HTTP function is not called with an event.
    let (out, err) =
        failed(&bin.run(&["invoke", "--env", "prod", "--name", "svc", "--event", "{}"]));
    assert!(
        format!("{out}{err}").contains("is an HTTP function"),
        "{out}{err}"
    );
}

#[tokio::test]
async fn call_container_sets_identity_headers_and_replaces_spoofed_ones() {
    let s = world().await;
    let a1 = session(&s, "wxA", "oA1").await;
    let spoof = [
        ("x-wx-service", "probe"),
        ("x-wx-env", "prod"),
        ("x-wx-openid", "evil"),
        ("x-wx-from-appid", "evil"),
        ("x-wx-source", "evil"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-custom", "kept"),
    ];
    let auth = bearer(&a1);
    let mut headers = spoof.to_vec();
    headers.push(("authorization", &auth));
    let r = send("POST", &s.url("/api/x?q=1"), &headers, "hello").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.headers.contains_key("x-cloudfn-request-id"));
    let h = &r.body["headers"];
    saw(
        h,
        &[
            ("x-wx-openid", "oA1"),
            ("x-wx-appid", "wxA"),
            ("x-wx-unionid", "u-oA1"),
            ("x-wx-env", "prod"),
            ("x-wx-source", "wx_client"),
            ("x-wx-service", "probe"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-custom", "kept"),
        ],
    );
    assert!(
        h.get("x-wx-from-appid").is_none() && h.get("authorization").is_none(),
        "{h}"
    );
    assert_eq!(r.body["method"], "POST");
    assert_eq!(r.body["path"], "/api/x?q=1");
    assert_eq!(r.body["body"], "hello");
    assert_eq!(r.body["vars"]["WHICH"], "online");

    // An app's server with an access token: no user; the token is not passed on.
    let token = s.token(&s.owner).await;
    let url = s.url(&format!("/api/y?access_token={token}&z=2"));
    let r = send(
        "GET",
        &url,
        &[("x-wx-service", "probe"), ("x-wx-env", "prod")],
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["path"], "/api/y?z=2");
    assert_eq!(r.body["headers"]["x-wx-appid"], "wxA");
    assert_eq!(r.body["headers"]["x-wx-source"], "wx_http");
    assert!(r.body["headers"].get("x-wx-openid").is_none());

    // The env by host name, without X-WX-ENV.
    let by_host = [
        wx("probe", "", &auth)[0],
        ("host", "api.example.test:80"),
        ("authorization", &auth),
    ];
    let r = send("GET", &s.url("/"), &by_host, "").await;
    assert_eq!(r.body["headers"]["x-wx-env"], "prod", "{}", r.body);

    // Under sharing: FROM_* and no X-WX-OPENID, after the share and cloudbase_auth.
    let b1 = session(&s, "wxB", "oB1").await;
    let auth_b = bearer(&b1);
    let mut headers = spoof.to_vec();
    headers.push(("authorization", &auth_b));
    let r = send("GET", &s.url("/"), &headers, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.body["headers"];
    let from = [
        ("x-wx-from-openid", "oB1"),
        ("x-wx-from-appid", "wxB"),
        ("x-wx-from-unionid", "u-oB1"),
    ];
    saw(h, &from);
    assert!(
        h.get("x-wx-openid").is_none() && h.get("x-wx-appid").is_none(),
        "{h}"
    );

    // wxC is shared but denied by cloudbase_auth; wxD has no share.
    for (app, status) in [("wxC", 403), ("wxD", 403)] {
        let user = session(&s, app, "o1").await;
        let auth = bearer(&user);
        let r = send("GET", &s.url("/"), &wx("probe", "prod", &auth), "").await;
        assert_eq!(r.status, status, "{app}: {}", r.body);
        assert_ne!(r.body["errcode"], 0, "{}", r.body);
    }
}

#[tokio::test]
async fn call_container_limits_and_errcodes() {
    let s = world().await;
    let user = session(&s, "wxA", "oA2").await;
    let auth = bearer(&user);
    let h = wx("probe", "prod", &auth);
    let call = |method: &'static str, path: &'static str, body: Vec<u8>| {
        let url = s.url(path);
        async move { send(method, &url, &h, body).await }
    };
    // Every path is the function's, even one another dialect serves.
    for path in ["/admin", "/auth/code2session", "/tcb/invokecloudfunction"] {
        let r = send("POST", &s.url(path), &h, "{}").await;
        let got = (r.status, r.body["path"].as_str());
        assert_eq!(got, (200, Some(path)), "{}", r.body);
    }
    // 100 KiB requests, 1000 KiB responses.
    assert_eq!(call("POST", "/", vec![b'a'; 100 * 1024]).await.status, 200);
    let r = call("POST", "/", vec![b'a'; 100 * 1024 + 1]).await;
    assert_eq!((r.status, errcode(&r.body)), (413, -606001), "{}", r.body);
    let r = call("GET", "/big?bytes=1024000", vec![]).await;
    assert_eq!(
        (r.status, r.body.as_str().map(str::len)),
        (200, Some(1024000))
    );
    let r = call("GET", "/big?bytes=1024001", vec![]).await;
    assert_eq!(r.status, 502);
    assert!(
        r.body["errmsg"]
            .as_str()
            .unwrap()
            .contains("1024000-byte limit"),
        "{}",
        r.body
    );
    // Time: the function's 500 ms (callContainer's 15 s is the most), sleeping or spinning.
    for path in ["/sleep?ms=3000", "/spin"] {
        let r = call("GET", path, vec![]).await;
        assert_eq!(
            (r.status, errcode(&r.body)),
            (504, 102002),
            "{path}: {}",
            r.body
        );
    }
    let r = call("PATCH", "/", vec![]).await;
    assert_eq!((r.status, errcode(&r.body)), (405, 102005));
    // A guest that fails or never answers.
    for path in ["/panic", "/noreply"] {
        let r = call("GET", path, vec![]).await;
        assert_eq!(
            (r.status, errcode(&r.body)),
            (502, -504002),
            "{path}: {}",
            r.body
        );
    }
    // Credentials, env, service.
    let url = s.url("/");
    let r = send("GET", &url, &h[..2], "").await;
    assert_eq!((r.status, errcode(&r.body)), (401, 41001));
    let r = send(
        "GET",
        &url,
        &[h[0], h[1], ("authorization", "Bearer not-a-token")],
        "",
    )
    .await;
    assert_eq!((r.status, errcode(&r.body)), (401, 40014));
    let r = send("GET", &url, &[h[0], h[2]], "").await;
    assert_eq!((r.status, errcode(&r.body)), (400, 40101));
    let r = send("GET", &url, &[("x-wx-service", "nope"), h[1], h[2]], "").await;
    assert_eq!((r.status, errcode(&r.body)), (404, -501009));
    let r = send("GET", &url, &[("x-wx-service", "echo"), h[1], h[2]], "").await;
    assert_eq!((r.status, errcode(&r.body)), (404, -501009));
    assert!(
        r.body["errmsg"]
            .as_str()
            .unwrap()
            .contains("cloud function"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn outbound_http_reaches_only_named_hosts() {
    let s = world().await;
    let upstream = stand_in(|_| async { (204, "text/plain", Vec::new()) }).await;
    let authority = upstream.trim_start_matches("http://").to_string();
    let allowed = FunctionConfig {
        outbound_hosts: vec![authority.clone()],
        ..http(&[])
    };
    s.world.deploy("fetcher", paths::HTTP_PROBE, allowed).await;
    let token = s.token(&s.owner).await;
    let auth = bearer(&token);
    let fetch = |service: &'static str, url: String| {
        let (auth, u) = (auth.clone(), s.url(&format!("/fetch?url={url}")));
        async move { send("GET", &u, &wx(service, "prod", &auth), "").await.body }
    };
    let denied = |v: Value| {
        let error = v["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("HttpRequestDenied"), "{v}");
    };
    denied(fetch("probe", format!("{upstream}/")).await);
    assert_eq!(
        fetch("fetcher", format!("{upstream}/")).await,
        json!({"status": 204})
    );
    denied(fetch("fetcher", "http://127.0.0.1:1/".into()).await);
}

#[tokio::test]
async fn douyin_headers_sharing_and_the_share_check() {
    let s = world().await;
    let a = session(&s, "wxA", "oA3").await;
    let auth = bearer(&a);
    let spoofed = [
        ("x-tt-serviceid", "probe"),
        ("x-tt-envid", "prod"),
        ("x-tt-openid", "evil"),
        ("x-tt-anonymous-openid", "evil"),
        ("x-dyc-from-app", "wxA"),
        ("x-forwarded-for", "6.6.6.6"),
        ("authorization", auth.as_str()),
    ];
    let r = send("GET", &s.url("/api/todos"), &spoofed, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.body["headers"];
    saw(
        h,
        &[
            ("x-tt-openid", "oA3"),
            ("x-tt-appid", "wxA"),
            ("x-tt-unionid", "u-oA3"),
            ("x-tt-env", "prod"),
            ("x-tt-source", "tt_client"),
            ("x-tt-serviceid", "probe"),
            ("x-forwarded-for", "127.0.0.1"),
        ],
    );
    // Not shared: no X-DYC-*; never an anonymous openid a client made up.
    for absent in [
        "x-dyc-from-app",
        "x-dyc-service",
        "x-tt-anonymous-openid",
        "x-tt-envid",
    ] {
        assert!(h.get(absent).is_none(), "{absent}: {h}");
    }

    // wxB through the share: its own app and user, and X-DYC-*.
    let b = session(&s, "wxB", "oB3").await;
    let auth_b = bearer(&b);
    let shared = [
        ("x-tt-serviceid", "probe"),
        ("x-tt-envid", "prod"),
        ("authorization", auth_b.as_str()),
    ];
    let r = send("GET", &s.url("/"), &shared, "").await;
    let h = &r.body["headers"];
    assert_eq!(
        (h["x-tt-appid"].as_str(), h["x-tt-openid"].as_str()),
        (Some("wxB"), Some("oB3"))
    );
    assert_eq!(h["x-dyc-from-app"], "wxB");
    assert_eq!(h["x-dyc-service"], "probe");
    // What a client says of its sharing must be true.
    let with = |extra| [shared[0], shared[1], shared[2], extra];
    let refused = err_no(&s, &with(("x-dyc-from-app", "wxA"))).await;
    assert_eq!(refused, (403, Some(-501019)));
    assert_eq!(err_no(&s, &with(("x-dyc-service", "echo"))).await.0, 400);
    // The share of `limited` covers `echo` only.
    let limited = [shared[0], ("x-tt-envid", "limited"), shared[2]];
    assert_eq!(err_no(&s, &limited).await, (403, Some(-501019)));
    // Limits and errcodes are callContainer's.
    let r = send("POST", &s.url("/"), &shared, vec![0u8; 100 * 1024 + 1]).await;
    assert_eq!((r.status, r.body["err_no"].as_i64()), (413, Some(-606001)));
    let r = send("GET", &s.url("/sleep?ms=3000"), &shared, "").await;
    assert_eq!((r.status, r.body["err_no"].as_i64()), (504, Some(102002)));
    let r = send("GET", &s.url("/"), &[shared[0], shared[2]], "").await;
    assert_eq!((r.status, r.body["err_no"].as_i64()), (400, Some(40101)));
    // Methods are Douyin's own: PATCH, which callContainer refuses, reaches the function;
    // TRACE, which callContainer passes, is refused.
    let r = send("PATCH", &s.url("/"), &shared, "").await;
    assert_eq!(
        (r.status, &r.body["method"]),
        (200, &json!("PATCH")),
        "{}",
        r.body
    );
    let r = send("TRACE", &s.url("/"), &shared, "").await;
    assert_eq!(r.status, 405, "{}", r.body);
}

/// A Taobao request's headers: `env=ENV`, authenticated by `auth`.
fn tb<'a>(env: &'a str, auth: &'a str) -> [(&'a str, &'a str); 2] {
    [("x-tb-env", env), ("authorization", auth)]
}

/// A Douyin GET of `/` with `headers`: the status and `err_no`.
async fn err_no(s: &TestServer, headers: &[(&str, &str)]) -> (u16, Option<i64>) {
    let r = send("GET", &s.url("/"), headers, "").await;
    (r.status, r.body["err_no"].as_i64())
}

/// protocol §10's sign, computed here independently of the host.
fn expected_sign(secret: &str, query: &serde_json::Map<String, Value>, body: &str) -> String {
    let mut keys: Vec<&String> = query.keys().filter(|k| *k != "sign").collect();
    keys.sort();
    let mut text = String::from(secret);
    for k in keys {
        let v = query[k].as_str().unwrap();
        if !v.is_empty() {
            text.push_str(k);
            text.push_str(v);
        }
    }
    text.push_str(body);
    text.push_str(secret);
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

#[tokio::test]
async fn taobao_system_parameters_sign_envelope_and_limits() {
    let s = world().await;
    let a = session(&s, "wxA", "oA4").await;
    let auth = bearer(&a);
    let h = |env| tb(env, &auth);
    let url = s.url("/envelope?name=cx&open_id=spoofed&sign=bad&app_key=evil");
    let r = send("GET", &url, &h("test"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body.as_object().unwrap().len(),
        2,
        "other fields dropped: {}",
        r.body
    );
    assert_eq!(r.body["success"], true);
    let q = r.body["data"]["query"].as_object().unwrap().clone();
    assert_eq!(q["name"], "cx");
    assert_eq!(q["open_id"], "oA4");
    assert_eq!(q["app_key"], "wxA");
    assert_eq!(q["mini_app_id"], "wxA");
    assert_eq!(q["source_app_id"], "wxA");
    assert_eq!(q["env"], "test");
    for empty in ["user_nick", "mix_nick", "access_token", "app_owner_open_id"] {
        assert_eq!(q[empty], "", "{empty}");
    }
    assert_eq!(r.body["data"]["vars"]["WHICH"], "test");
    let secret = "taobao-secret";
    assert_eq!(q["sign"], expected_sign(secret, &q, ""));
    // A POST's body is signed too; env=online is the other env.
    let body = r#"{"xftest":"hhh","id":"1234"}"#;
    let mut post = h("online").to_vec();
    post.push(("content-type", "application/json;charset=UTF-8"));
    let r = send("POST", &s.url("/envelope?age=18"), &post, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let q = r.body["data"]["query"].as_object().unwrap().clone();
    assert_eq!(r.body["data"]["vars"]["WHICH"], "online");
    assert_eq!(q["sign"], expected_sign(secret, &q, body));
    assert_ne!(q["sign"], expected_sign(secret, &q, ""));
    // Only GET and POST, POST only JSON, at most 128 KB; an answer that is not the envelope.
    let r = send("PUT", &s.url("/envelope"), &h("test"), "").await;
    assert_eq!(r.tb_error(), (405, Some("METHOD_NOT_ALLOWED")));
    let r = send("POST", &s.url("/envelope"), &h("test"), "a=1").await;
    assert_eq!(r.tb_error(), (415, Some("UNSUPPORTED_CONTENT_TYPE")));
    let big = vec![b' '; 128 * 1024 + 1];
    let r = send("POST", &s.url("/envelope"), &post, big).await;
    assert_eq!(r.tb_error(), (413, Some("REQUEST_TOO_LARGE")));
    let r = send("GET", &s.url("/probe"), &h("test"), "").await;
    assert_eq!(r.tb_error(), (502, Some("INVALID_RESPONSE")));
    assert_eq!(r.body["success"], false);
    // Timeout: default 3000 ms, at most 10000 ms.
    let mut slow = h("test").to_vec();
    slow.push(("x-tb-timeout", "200"));
    let r = send("GET", &s.url("/sleep?ms=1500"), &slow, "").await;
    assert_eq!(r.tb_error(), (504, Some("GATEWAY_TIMEOUT")));
    slow[2] = ("x-tb-timeout", "10001");
    let r = send("GET", &s.url("/envelope"), &slow, "").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = send(
        "GET",
        &s.url("/envelope"),
        &[("x-tb-env", "dev"), h("test")[1]],
        "",
    )
    .await;
    assert_eq!(r.tb_error(), (400, Some("INVALID_ENV")));
    let r = send("GET", &s.url("/envelope"), &[("x-tb-env", "test")], "").await;
    assert_eq!(r.tb_error(), (401, Some("41001")));
}

#[tokio::test]
async fn taobao_cache_kinds_and_expiry() {
    let s = world().await;
    let users = [
        ("wxA", "o1", session(&s, "wxA", "o1").await),
        ("wxA", "o2", session(&s, "wxA", "o2").await),
        ("wxB", "o1", session(&s, "wxB", "o1").await),
        ("wxB", "o3", session(&s, "wxB", "o3").await),
    ];
    // Each kind on its own path so kinds do not share entries.
    let get = |user: usize, kind: &str, time: &str, path: &str| {
        let auth = bearer(&users[user].2);
        let url = s.url(path);
        let (kind, time) = (kind.to_string(), time.to_string());
        async move {
            let [env, auth] = tb("online", &auth);
            let h = [
                env,
                auth,
                ("x-tb-cache-type", kind.as_str()),
                ("x-tb-cache-time", time.as_str()),
            ];
            let r = send("GET", &url, &h, "").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let cache = r.headers["x-cloudfn-cache"].to_str().unwrap().to_string();
            (cache, r.body["data"]["now_ns"].clone())
        }
    };
    // (first caller, second caller, whether the second hits) per kind: 0 same app and user,
    // 1 same app, 2 same user (openid), 3 anyone.
    let cases = [
        ("0", 0, 0, true),
        ("0", 0, 1, false),
        ("1", 0, 1, true),
        ("1", 0, 2, false),
        ("2", 0, 2, true),
        ("2", 0, 1, false),
        ("3", 0, 3, true),
    ];
    for (i, (kind, first, second, hits)) in cases.into_iter().enumerate() {
        let path = format!("/envelope?case={i}");
        let (c1, t1) = get(first, kind, "60", &path).await;
        assert_eq!(c1, "miss", "case {i}");
        let (c2, t2) = get(second, kind, "60", &path).await;
        assert_eq!(
            (c2 == "hit", t1 == t2),
            (hits, hits),
            "case {i}: kind {kind}"
        );
    }
    // Another request is another entry; an entry expires after cacheTime.
    assert_eq!(get(0, "3", "60", "/envelope?case=other").await.0, "miss");
    let (_, t1) = get(0, "3", "1", "/envelope?expiry").await;
    assert_eq!(get(0, "3", "1", "/envelope?expiry").await.1, t1);
    // Hits (which do not extend the entry) give the first answer until it expires; then the
    // function answers again.
    let t2 = poll_within(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the cache entry's expiry",
        || async {
            let (c, t) = get(0, "3", "1", "/envelope?expiry").await;
            if c == "miss" {
                return Some(t);
            }
            assert_eq!((c.as_str(), &t), ("hit", &t1));
            None
        },
    )
    .await;
    assert_ne!(t1, t2);
    // A cached answer is still only for callers the pipeline lets through: wxC is denied.
    let denied = session(&s, "wxC", "o1").await;
    let auth = bearer(&denied);
    let [env, auth] = tb("online", &auth);
    let h = [env, auth, ("x-tb-cache-type", "3")];
    let r = send("GET", &s.url("/envelope?case=6"), &h, "").await;
    assert_eq!(
        (r.status, r.body["success"].as_bool()),
        (403, Some(false)),
        "{}",
        r.body
    );
    // Bad cache parameters.
    let r = send(
        "GET",
        &s.url("/envelope"),
        &[h[0], h[1], ("x-tb-cache-type", "4")],
        "",
    )
    .await;
    assert_eq!(r.status, 400);
    // Said for people: the value given, not Rust's `Some(4)`.
    let message = r.body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("got 4 and 300") && !message.contains("Some("),
        "{message}"
    );
}

/// Runs seed 003's mini-program code (tests/node/miniprogram/container.js) as `appid`'s user
/// `openid` with the cloudfn `wx.cloud` SDK; `own_env` is the env of its own calls, if any.
fn seed_003(s: &TestServer, appid: &str, openid: &str, own_env: Option<&str>) -> Value {
    node_mini_program(s, "container.js", appid, openid, own_env)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wx_cloud_sdk_runs_seed_003_call_container_under_node() {
    let s = std::sync::Arc::new(world().await);
    let run = |appid: &'static str, openid: &'static str, own: Option<&'static str>| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || seed_003(&s, appid, openid, own))
    };
    // wxA's user: the counter template in its own env.
    let out = run("wxA", "oa9", Some("prod")).await.unwrap();
    let own = &out["own"]["ok"];
    assert_eq!(own["errMsg"], "cloud.callContainer:ok", "{out}");
    assert_eq!(
        (own["statusCode"].as_u64(), &own["data"]),
        (Some(200), &json!({"code": 0, "data": 1}))
    );
    assert!(
        own["callID"].as_str().is_some_and(|id| !id.is_empty()),
        "{out}"
    );
    assert_eq!(
        out["again"]["ok"]["data"],
        json!({"code": 0, "data": 2}),
        "{out}"
    );
    assert_eq!(
        out["byCallback"]["ok"]["data"],
        json!({"code": 0, "data": 2}),
        "{out}"
    );
    assert_eq!(out["noService"]["errCode"], 40101, "{out}");
    assert_eq!(out["unknown"]["errCode"], -501009, "{out}");
    let who = |out: &Value| {
        let me = &out["shared"]["ok"]["data"];
        json!([me["openid"], me["appid"], me["shared"]])
    };
    assert_eq!(who(&out), json!(["oa9", "wxA", false]), "{out}");
    // wxB's user: A's env after init, as a sharee.
    let out = run("wxB", "ob9", None).await.unwrap();
    assert_eq!(out["init"]["ok"]["errMsg"], "cloud.init:ok", "{out}");
    assert_eq!(who(&out), json!(["ob9", "wxB", true]), "{out}");
    // wxC's user: refused by A's cloudbase_auth at init, and so at the call.
    let out = run("wxC", "oc9", None).await.unwrap();
    let refused = |step: &str| out[step]["errCode"].as_i64().is_some_and(|c| c != 0);
    assert!(refused("init") && refused("shared"), "{out}");
}
