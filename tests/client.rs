//! Mini-program clients end to end: `wx.login()` codes exchanged with a fake platform on
//! 127.0.0.1 (`jscode2session`), user sessions (refresh, expiry, revocation per app), client
//! calls with SOURCE `wx_client` through the same pipeline (own env under its rules, a shared
//! env through `cloudbase_auth`), rate limits, the audit log, and the JavaScript `wx.cloud` SDK
//! (clients/wx-cloud) running seed 001's mini-program code under Node.

use crate::common::Manage;
use crate::common::http::*;
use crate::common::{Bin, World, guests as paths, let_time_pass, ok, poll_within};
use cloudfn_gateway::client::ClientLimits;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::Options;
use cloudfn_store::{AuditQuery, FunctionConfig};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRETS: [(&str, &str); 3] = [
    ("wxA", "AppSecret-of-wxA-7f3e"),
    ("wxB", "AppSecret-of-wxB-91c2"),
    ("wxC", "AppSecret-of-wxC-0d4b"),
];

/// What the fake platform saw: every code it was asked about.
#[derive(Default)]
struct Platform {
    codes: Mutex<Vec<String>>,
}

/// The fake platform's `GET /sns/jscode2session`: codes `ok-OPENID-…` are users (unionid
/// `u-OPENID`), each usable once; `risky-…` is a high-risk user; anything else is invalid.
async fn platform() -> (String, Arc<Platform>) {
    let seen = Arc::new(Platform::default());
    let state = seen.clone();
    let used = Arc::new(Mutex::new(HashSet::new()));
    let base = stand_in(move |(parts, _): Seen| {
        let (state, used) = (state.clone(), used.clone());
        async move {
            let q: std::collections::HashMap<String, String> =
                form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let reply = |v: Value| (200, "application/json", v.to_string().into_bytes());
            if parts.uri.path() != "/sns/jscode2session"
                || q.get("grant_type").map(String::as_str) != Some("authorization_code")
            {
                return reply(json!({"errcode": 40002, "errmsg": "invalid grant_type"}));
            }
            let app = q.get("appid").cloned().unwrap_or_default();
            if !SECRETS
                .iter()
                .any(|(a, s)| *a == app && q.get("secret").map(String::as_str) == Some(*s))
            {
                return reply(json!({"errcode": 40125, "errmsg": "invalid appsecret"}));
            }
            let code = q.get("js_code").cloned().unwrap_or_default();
            state.codes.lock().unwrap().push(code.clone());
            if !used.lock().unwrap().insert(code.clone()) {
                return reply(json!({"errcode": 40163, "errmsg": "code been used"}));
            }
            match code.split('-').collect::<Vec<_>>()[..] {
                ["ok", openid, ..] => reply(json!({
                    "openid": openid,
                    "unionid": format!("u-{openid}"),
                    "session_key": format!("SESSIONKEY-{code}"),
                })),
                ["risky", ..] => reply(json!({"errcode": 40226, "errmsg": "high risk user"})),
                _ => reply(json!({"errcode": 40029, "errmsg": "invalid code"})),
            }
        }
    })
    .await;
    (base, seen)
}

/// wxA owns `prod` (shared with wxB and wxC; `cloudbase_auth` grants wxB only); wxB owns
/// `bprod`. Every app has its platform AppSecret on the host.
async fn world(options: Options, config: ServeConfig) -> (TestServer, Arc<Platform>) {
    let (base, seen) = platform().await;
    let s = World::new()
        .options(Options {
            upstream: Some(base),
            ..options
        })
        .app("wxC", "Acme")
        .env("prod", "wxA")
        .env("bprod", "wxB")
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            FunctionConfig::vars([("allowed_appids", "wxB"), ("roles", "wxB=partner")]),
        )
        .deploy("prod", "echo", paths::ECHO)
        .deploy("bprod", "echo", paths::ECHO)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        .share("prod", "wxC", "*")
        .serve(config)
        .await;
    for (app, secret) in SECRETS {
        s.host
            .store()
            .set_upstream_secret(app, Some(secret))
            .await
            .unwrap();
    }
    (s, seen)
}

async fn login(s: &TestServer, appid: &str, code: &str) -> Value {
    let body = json!({ "appid": appid, "code": code }).to_string();
    request("POST", &s.url("/auth/code2session"), &[], body)
        .await
        .1
}

/// POSTs a client API with `session`.
async fn client(s: &TestServer, path: &str, session: &str, body: Value) -> Value {
    let auth = format!("Bearer {session}");
    request(
        "POST",
        &s.url(path),
        &[("authorization", &auth)],
        body.to_string(),
    )
    .await
    .1
}

/// `wx.cloud.callFunction` of `name` in `env` as the session's user.
async fn call_fn(s: &TestServer, session: &str, env: &str, name: &str) -> Value {
    let body = json!({ "env": env, "name": name });
    client(s, "/client/callFunction", session, body).await
}

fn session(v: &Value) -> String {
    v["session"]
        .as_str()
        .unwrap_or_else(|| panic!("no session in {v}"))
        .to_string()
}

/// The WXContext echo saw, from a successful client call.
fn context(v: &Value) -> &Value {
    assert_eq!(v["errMsg"], "cloud.callFunction:ok", "{v}");
    &v["result"]["context"]
}

async fn audit(s: &TestServer, app: &str) -> Vec<(String, Option<String>, String)> {
    let q = AuditQuery {
        app: Some(app.into()),
        ..AuditQuery::default()
    };
    s.host
        .store()
        .audit_log(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.target, e.detail))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn login_gives_a_session_and_keeps_the_session_key_on_the_host() {
    let (s, seen) = world(Options::default(), ServeConfig::default()).await;
    s.host
        .store()
        .set_upstream_secret("wxC", None)
        .await
        .unwrap();

    let v = login(&s, "wxB", "ok-ob1-1").await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(v["openid"], "ob1");
    assert_eq!(v["unionid"], "u-ob1");
    assert_eq!(v["expires_in"], 7200);
    assert!(session(&v).starts_with("cfs1."));
    assert!(
        !v.to_string().contains("SESSIONKEY"),
        "the session_key never leaves the host: {v}"
    );
    // Kept, sealed: neither the database nor its WAL holds it in the clear.
    for db in ["cloudfn.db", "cloudfn.db-wal"] {
        let bytes = std::fs::read(s.dir().join(db)).unwrap_or_default();
        assert!(
            !bytes.windows(10).any(|w| w == b"SESSIONKEY"),
            "session_key in {db}"
        );
    }

    // The platform's refusals come back as they are; the host's own checks come first.
    let refusals = [
        ("wxB", "ok-ob1-1", 40163), // a code is single-use
        ("wxB", "nonsense", 40029),
        ("wxB", "risky-1", 40226),
        ("wxB", "", 41008),
        ("wxB", "has space", 40029),
        ("wxZ", "ok-oz-1", 40013),
        ("wxC", "ok-oc-1", -501001), // no AppSecret for wxC on this host
    ];
    for (app, code, errcode) in refusals {
        let v = login(&s, app, code).await;
        assert_eq!(v["errcode"], errcode, "{app} {code}: {v}");
        assert!(v.get("session").is_none(), "{v}");
    }
    let v = login(&s, "wxC", "ok-oc-1").await;
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .contains("app set wxC --upstream-secret"),
        "{v}"
    );
    let (_, v) = request("POST", &s.url("/auth/code2session"), &[], "[1]").await;
    assert_eq!(v["errcode"], 47001, "{v}");
    let (_, v) = request("POST", &s.url("/auth/code2session"), &[], r#"{"code":"x"}"#).await;
    assert_eq!(v["errcode"], 41002, "{v}");
    let (_, v) = get(&s.url("/auth/code2session")).await;
    assert_eq!(v["errcode"], 43002, "{v}");
    // Only codes that passed the host's own checks reached the platform.
    assert_eq!(
        *seen.codes.lock().unwrap(),
        ["ok-ob1-1", "ok-ob1-1", "nonsense", "risky-1"]
    );

    // Sessions and refusals are in the audit log, with the user and the reason.
    let entries = audit(&s, "wxB").await;
    assert!(
        entries
            .iter()
            .any(|(a, t, _)| a == "login" && t.as_deref() == Some("ob1")),
        "{entries:?}"
    );
    for errcode in ["40163", "40029", "40226", "41008"] {
        assert!(
            entries
                .iter()
                .any(|(a, _, d)| a == "login.refused" && d.starts_with(errcode)),
            "{errcode} in {entries:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_calls_run_as_the_sessions_user_under_the_envs_rules() {
    let (s, _) = world(Options::default(), ServeConfig::default()).await;
    let b = session(&login(&s, "wxB", "ok-ob1-1").await);
    let c = session(&login(&s, "wxC", "ok-oc1-1").await);

    // The app's own env: APPID/OPENID/UNIONID of the session's user, SOURCE wx_client.
    let v = client(
        &s,
        "/client/callFunction",
        &b,
        json!({"env": "bprod", "name": "echo", "data": {"n": 1}}),
    )
    .await;
    let ctx = context(&v);
    assert_eq!(
        (&ctx["APPID"], &ctx["OPENID"], &ctx["UNIONID"]),
        (&json!("wxB"), &json!("ob1"), &json!("u-ob1"))
    );
    assert_eq!(ctx["SOURCE"], "wx_client");
    assert_eq!(ctx["CLIENTIP"], "127.0.0.1");
    assert!(ctx.get("FROM_APPID").is_none(), "{ctx}");
    assert_eq!(v["result"]["event"], json!({"n": 1}));
    assert!(v["requestID"].as_str().is_some_and(|r| !r.is_empty()));

    // A shared env: init runs the owner's cloudbase_auth for the user, then calls see FROM_*.
    let init = json!({"resourceAppid": "wxA", "resourceEnv": "prod"});
    let v = client(&s, "/client/init", &b, init.clone()).await;
    assert_eq!(v, json!({"errMsg": "cloud.init:ok"}));
    let v = client(
        &s,
        "/client/callFunction",
        &b,
        json!({"env": "prod", "resourceAppid": "wxA", "name": "echo"}),
    )
    .await;
    let ctx = context(&v);
    assert_eq!(
        (
            &ctx["FROM_APPID"],
            &ctx["FROM_OPENID"],
            &ctx["FROM_UNIONID"]
        ),
        (&json!("wxB"), &json!("ob1"), &json!("u-ob1"))
    );
    assert!(
        ctx.get("OPENID").is_none() && ctx.get("APPID").is_none(),
        "{ctx}"
    );
    assert_eq!(ctx["SOURCE"], "wx_client");
    // cloudbase_auth saw the user too, with SOURCE wx_client.
    let auth = crate::common::records(&s.host, "prod", Some("cloudbase_auth")).await;
    assert!(
        auth.iter().any(|r| r.source == "wx_client"),
        "{:?}",
        auth.iter().map(|r| &r.source).collect::<Vec<_>>()
    );

    // wxC shares prod too, but its cloudbase_auth refuses it: its errCode comes back.
    let v = client(&s, "/client/init", &c, init.clone()).await;
    assert_eq!(v["errCode"], -403001, "{v}");
    assert!(v["errMsg"].as_str().unwrap().starts_with("cloud.init:fail"));
    let v = call_fn(&s, &c, "prod", "echo").await;
    assert_eq!(v["errCode"], -403001, "{v}");
    assert!(
        v["errMsg"]
            .as_str()
            .unwrap()
            .starts_with("cloud.callFunction:fail requestID "),
        "{v}"
    );

    // An env named with the wrong owner is refused, not silently used.
    let v = client(
        &s,
        "/client/callFunction",
        &b,
        json!({"env": "prod", "resourceAppid": "wxC", "name": "echo"}),
    )
    .await;
    assert_eq!(v["errCode"], -501000, "{v}");

    // The own env's rules hold for its mini-program's calls, not for its server's.
    s.host
        .control()
        .set_rules(
            "bprod",
            r#"{"*": {"invoke": "auth != null"}, "echo": {"invoke": "auth.openid == 'ob2'"}}"#,
        )
        .await
        .unwrap();
    let v = call_fn(&s, &b, "bprod", "echo").await;
    assert_eq!(v["errCode"], -501019, "{v}");
    let b2 = session(&login(&s, "wxB", "ok-ob2-1").await);
    let v = call_fn(&s, &b2, "bprod", "echo").await;
    assert_eq!(context(&v)["OPENID"], "ob2");
    let token = s.token(&s.other).await;
    let v = s.invoke(&token, "bprod", "echo", "{}").await;
    assert_eq!(
        v["errcode"], 0,
        "the server's call is not a client call: {v}"
    );

    // Without a valid session nothing runs.
    for (bad, errcode) in [("", 41001), ("cfs1.e30.AAAA", 40014), ("nonsense", 40014)] {
        let v = call_fn(&s, bad, "bprod", "echo").await;
        assert_eq!(v["errCode"], errcode, "{bad}: {v}");
    }
    // A session altered to name another user is refused.
    let (claims, mac) = b[5..].split_once('.').unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = String::from_utf8(b64.decode(claims).unwrap())
        .unwrap()
        .replace("ob1", "ob2");
    let forged = format!("cfs1.{}.{mac}", b64.encode(forged));
    let v = call_fn(&s, &forged, "bprod", "echo").await;
    assert_eq!(v["errCode"], 40014, "{v}");
    let v = client(&s, "/client/callFunction", &b, json!({"name": "echo"})).await;
    assert_eq!(v["errCode"], 40101, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn function_failures_read_as_wx_cloud_reports_them() {
    let (s, _) = world(Options::default(), ServeConfig::default()).await;
    s.world
        .deploy("fail_panic", paths::FAIL_PANIC, FunctionConfig::default())
        .await;
    let b = session(&login(&s, "wxB", "ok-ob1-1").await);
    let v = call_fn(&s, &b, "prod", "fail_panic").await;
    assert_eq!(v["errCode"], -404011, "{v}");
    let msg = v["errMsg"].as_str().unwrap();
    assert!(
        msg.starts_with("cloud.callFunction:fail requestID ")
            && msg.contains("cloud function service error code -504002, error message "),
        "{msg}"
    );
    let v = call_fn(&s, &b, "prod", "nothing_here").await;
    assert_eq!(v["errCode"], -501009, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_refresh_expire_and_are_revoked_per_app() {
    let options = Options {
        session_ttl: Duration::from_secs(6),
        ..Options::default()
    };
    let (s, _) = world(options, ServeConfig::default()).await;
    let first = login(&s, "wxB", "ok-ob1-1").await;
    assert_eq!(first["expires_in"], 6);
    let b = session(&first);

    // Refreshed while valid, 3 s after the login: a new session for the same user, good after
    // the first expires (at 6 s; the refreshed one at 9 s: each check has seconds to spare on a
    // loaded machine). Those 3 s are what is tested (a later refresh lasts longer), not a wait
    // for something to happen.
    let_time_pass(Duration::from_secs(3)).await;
    let auth = format!("Bearer {b}");
    let (_, v) = request(
        "POST",
        &s.url("/auth/refresh"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(
        (v["errcode"].as_i64(), v["openid"].as_str()),
        (Some(0), Some("ob1")),
        "{v}"
    );
    let refreshed = session(&v);
    // The first session is refused once it expires. Polled 10 times a second: the IP's client
    // calls are limited to 50 a second, and the refreshed session's calls below must not be
    // refused for the rate.
    poll_within(
        Duration::from_secs(15),
        Duration::from_millis(100),
        "the first session's expiry",
        || async {
            let v = call_fn(&s, &b, "bprod", "echo").await;
            if v["errCode"] == 42001 {
                return Some(());
            }
            // Until then it is served.
            assert_eq!(context(&v)["OPENID"], "ob1");
            None
        },
    )
    .await;
    let (_, v) = request(
        "POST",
        &s.url("/auth/refresh"),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(
        v["errcode"], 42001,
        "an expired session is not refreshed: {v}"
    );
    assert_eq!(
        context(&call_fn(&s, &refreshed, "bprod", "echo").await)["OPENID"],
        "ob1"
    );

    // Revoking wxB's sessions (the CLI, on the served data dir) ends them on the next call,
    // and not wxA's.
    let a = session(&login(&s, "wxA", "ok-oa1-1").await);
    let b = session(&login(&s, "wxB", "ok-ob1-2").await);
    let out = ok(&Bin::new(s.dir()).run(&["app", "revoke-sessions", "wxB"]));
    assert!(out.contains("session generation 1"), "{out}");
    let v = call_fn(&s, &b, "bprod", "echo").await;
    assert_eq!(v["errCode"], 40014, "{v}");
    assert!(v["errMsg"].as_str().unwrap().contains("revoked"), "{v}");
    let v = call_fn(&s, &a, "prod", "echo").await;
    assert_eq!(context(&v)["OPENID"], "oa1");
    // A new login works at once; the admin API revokes too.
    let b = session(&login(&s, "wxB", "ok-ob1-3").await);
    assert_eq!(
        context(&call_fn(&s, &b, "bprod", "echo").await)["OPENID"],
        "ob1"
    );
    let (status, v) = admin(&s, "POST", "/v1/apps/wxB/revoke-sessions", "{}").await;
    assert_eq!((status, &v["generation"]), (200, &json!(2)), "{v}");
    assert_eq!(call_fn(&s, &b, "bprod", "echo").await["errCode"], 40014);
    let entries = audit(&s, "wxB").await;
    assert_eq!(
        entries
            .iter()
            .filter(|(a, _, _)| a == "app.revoke-sessions")
            .count(),
        2,
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_and_client_calls_are_rate_limited() {
    let config = ServeConfig {
        client_limits: ClientLimits {
            logins_per_ip_per_minute: 3,
            calls_per_ip_per_second: 4,
            ..ClientLimits::default()
        },
        ..ServeConfig::default()
    };
    let (s, seen) = world(Options::default(), config).await;
    let b = session(&login(&s, "wxB", "ok-ob1-1").await);
    for n in 2..=3 {
        assert_eq!(login(&s, "wxB", &format!("ok-ob{n}-1")).await["errcode"], 0);
    }
    let v = login(&s, "wxB", "ok-ob4-1").await;
    assert_eq!(v["errcode"], 45011, "{v}");
    assert_eq!(
        seen.codes.lock().unwrap().len(),
        3,
        "a refused login asks nobody"
    );
    let entries = audit(&s, "wxB").await;
    assert!(
        entries
            .iter()
            .any(|(a, _, d)| a == "login.refused" && d.starts_with("45011")),
        "{entries:?}"
    );

    // 12 calls at once against 4 a second (a burst of 4): 4 pass, plus at most what refilled
    // while they arrived; the rest are 45011.
    let started = std::time::Instant::now();
    let s = Arc::new(s);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (s, b) = (s.clone(), b.clone());
        calls.spawn(async move { call_fn(&s, &b, "bprod", "echo").await });
    }
    let codes: Vec<i64> = calls
        .join_all()
        .await
        .iter()
        .map(|v| v["errCode"].as_i64().unwrap_or(0))
        .collect();
    let refilled = (started.elapsed().as_secs_f64() * 4.0).ceil() as usize;
    let passed = codes.iter().filter(|c| **c == 0).count();
    assert!(passed >= 4 && passed <= 4 + refilled, "{codes:?}");
    assert_eq!(
        codes.iter().filter(|c| **c == 45011).count(),
        12 - passed,
        "{codes:?}"
    );
}

/// Runs seed 001's mini-program code (tests/node/miniprogram/app.js) as `appid`'s user
/// `openid`, with the cloudfn `wx.cloud` SDK; `own_env` is the app's own env, if any.
fn mini_program(s: &TestServer, appid: &str, openid: &str, own_env: Option<&str>) -> Value {
    node_mini_program(s, "app.js", appid, openid, own_env)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wx_cloud_sdk_runs_seed_001_under_node() {
    let (s, _) = world(Options::default(), ServeConfig::default()).await;
    let s = Arc::new(s);

    // B's user: its own env, then A's shared env after init, with one login for all of it.
    let out = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || mini_program(&s, "wxB", "ob7", Some("bprod")))
            .await
            .unwrap()
    };
    let own = &out["own"]["ok"];
    assert_eq!(own["errMsg"], "cloud.callFunction:ok", "{out}");
    assert_eq!(own["result"]["event"], json!({"hello": "own env"}));
    let ctx = &own["result"]["context"];
    assert_eq!(
        (&ctx["APPID"], &ctx["OPENID"]),
        (&json!("wxB"), &json!("ob7"))
    );
    assert_eq!(ctx["SOURCE"], "wx_client");
    assert_eq!(
        out["ownByCallback"]["ok"]["result"]["event"],
        json!({"by": "callback"}),
        "{out}"
    );
    assert_eq!(out["init"]["ok"]["errMsg"], "cloud.init:ok", "{out}");
    let ctx = &out["shared"]["ok"]["result"]["context"];
    assert_eq!(
        (
            &ctx["FROM_APPID"],
            &ctx["FROM_OPENID"],
            &ctx["FROM_UNIONID"]
        ),
        (&json!("wxB"), &json!("ob7"), &json!("u-ob7")),
        "{out}"
    );
    assert!(ctx.get("OPENID").is_none(), "{out}");
    assert_eq!(out["logins"], 1, "one login serves every call: {out}");

    // C's user: A's cloudbase_auth refuses it at init, and its calls.
    let out = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || mini_program(&s, "wxC", "oc7", None))
            .await
            .unwrap()
    };
    assert_eq!(out["init"]["errCode"], -403001, "{out}");
    assert_eq!(out["shared"]["errCode"], -403001, "{out}");

    // Sessions revoked while the mini-program runs: its next call logs in again by itself.
    let flag = s.dir().join("revoked");
    let mut cmd = mini_program_command(&s, "app.js", "wxB", "ob8", None);
    cmd.env("AFTER_FILE", &flag)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let waiting = tokio::task::spawn_blocking(move || {
        let line = lines.recv_timeout(Duration::from_secs(20));
        (line, lines)
    })
    .await
    .unwrap();
    let (line, lines) = waiting;
    assert_eq!(
        line.as_deref(),
        Ok("WAITING"),
        "the mini-program reaches its pause"
    );
    s.host.control().revoke_sessions("wxB").await.unwrap();
    std::fs::write(&flag, "").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_default();
        let status = child.wait_with_output().unwrap();
        (line, status.stderr)
    })
    .await
    .unwrap();
    let out = parse_node(out.0.as_bytes(), &out.1);
    assert_eq!(
        out["again"]["ok"]["result"]["context"]["FROM_OPENID"], "ob8",
        "{out}"
    );
    assert_eq!(out["logins"], 2, "{out}");
}

#[test]
fn the_wx_cloud_sdk_types_check_under_typescript_strict() {
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
    let tsc = node.join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.exists(),
        "run `npm ci --prefix tests/node` first (scripts/test.sh does)"
    );
    let out = std::process::Command::new("node")
        .current_dir(&node)
        .arg(&tsc)
        .args([
            "--noEmit", "--strict", "--target", "es2020", "--module", "commonjs",
        ])
        .arg("miniprogram/typed.ts")
        .output()
        .expect("running node");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
