//! The web console (`/console` on the admin listener): the whole of it in a real browser
//! (the distribution's Chromium, driven by playwright-core in `tests/node/console.js`), and
//! its login, session expiry and CSRF checks over plain HTTP, where each refusal can be
//! provoked exactly.

use crate::common;

use cloudfn_gateway::server::ServeConfig;
use cloudfn_store::FunctionConfig;
use common::guests as paths;
use common::http::*;
use common::{World, poll_within};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The browser: `CHROMIUM`, else the distribution's (scripts/test.sh installs it).
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {} (scripts/test.sh installs the distribution's: apt-get install chromium)",
        path.display()
    );
    path
}

/// Where the screenshots go: a test artifact beside the build.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

async fn console_world(config: ServeConfig) -> TestServer {
    World::new()
        .app("wxC", "Other Inc")
        .env("prod", "wxA")
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            FunctionConfig::vars([("allowed_appids", "wxB"), ("roles", "wxB=partner")]),
        )
        .deploy("prod", "echo", paths::ECHO)
        .deploy("prod", "fail_error", paths::FAIL_ERROR)
        .deploy("prod", "chatty", paths::CHATTY)
        .env("dev", "wxA")
        .deploy("dev", "cloudbase_auth", paths::CLOUDBASE_AUTH)
        .serve(config)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_chromium_deploys_rolls_back_shares_edits_rules_and_charts_calls() {
    let browser = chromium();
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
    assert!(
        node_dir.join("node_modules/playwright-core").exists(),
        "run `npm ci --prefix tests/node` first (scripts/test.sh does)"
    );
    let mut s = console_world(ServeConfig::default()).await;
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);
    let mut cmd = std::process::Command::new("node");
    cmd.current_dir(&node_dir)
        .arg("console.js")
        .env("CONSOLE_URL", format!("http://{}", s.admin))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("UPLOAD_WASM", paths::ECHO)
        .env("SHOTS", &shots)
        .env("CHROMIUM", &browser);
    // console.js stops itself after 4 minutes at most.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("running node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "console.js failed:\n{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // What the browser did is in the store, not only on its pages.
    let store = s.host.store();
    let versions = store.versions("prod", "hello").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        versions.iter().find(|v| v.active).map(|v| v.version),
        Some(1),
        "rolled back to 1"
    );
    assert!(store.shares(None, None).await.unwrap().is_empty());
    assert!(!store.app("wxA").await.unwrap().sharing);
    assert!(
        store
            .rules("prod")
            .await
            .unwrap()
            .unwrap()
            .contains("auth.custom.x == 1")
    );
    let audit = store.audit_log(&Default::default()).await.unwrap();
    for action in ["share.add", "share.unbind", "share.remove", "rollback"] {
        assert!(
            audit.iter().any(|a| a.action == action),
            "{action} audited: {audit:?}"
        );
    }
    for page in [
        "01-login",
        "02-overview",
        "03-env",
        "04-function",
        "05-rollback-confirm",
        "06-sharing-by-me",
        "07-sharing-configure",
        "08-sharing-with-me",
        "09-unbind-confirm",
        "10-rules-error",
        "11-rules-try",
        "12-activations",
        "13-activation",
        "14-metrics",
    ] {
        let png = std::fs::read(shots.join(format!("{page}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{page}.png is a PNG");
    }
    s.shutdown().await;
}

/// The login form's answer: its status, headers and HTML.
async fn post_form(
    url: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> (u16, hyper::HeaderMap, String) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let (status, headers, value) = exchange(
        "POST",
        url,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", cookie),
        ],
        body,
    )
    .await;
    (
        status,
        headers,
        value.as_str().unwrap_or_default().to_string(),
    )
}

fn set_cookie(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map_or("", |(_, v)| v)
}

/// The hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_string()
}

/// Signs in over HTTP; returns the session cookie's value.
async fn sign_in(s: &TestServer) -> String {
    let base = format!("http://{}", s.admin);
    let (status, headers, form) = exchange("GET", &format!("{base}/console/login"), &[], "").await;
    assert_eq!(status, 200);
    let login = set_cookie(&headers, "cloudfn_login").expect("a login cookie");
    let csrf = csrf_field(form.as_str().unwrap());
    let (status, headers, _) = post_form(
        &format!("{base}/console/login"),
        &format!("cloudfn_login={}", cookie_value(&login)),
        &[("token", ADMIN_TOKEN), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    let session = set_cookie(&headers, "cloudfn_console").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
        assert!(session.contains(attribute), "{session} has {attribute}");
    }
    cookie_value(&session).to_string()
}

/// A multipart deploy form with `fields` first, then the component.
fn deploy_form(fields: &[(&str, &str)], wasm: &[u8]) -> (String, Vec<u8>) {
    let boundary = "cloudfnTestBoundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"f.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A page's HTML with the session cookie.
async fn page(base: &str, path: &str, cookie: &str) -> (u16, hyper::HeaderMap, String) {
    let (status, headers, body) =
        exchange("GET", &format!("{base}{path}"), &[("cookie", cookie)], "").await;
    (
        status,
        headers,
        body.as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn console_forms_need_the_sessions_csrf_token_and_take_the_clis_checks() {
    let mut s = console_world(ServeConfig::default()).await;
    let base = format!("http://{}", s.admin);
    let store = s.host.store().clone();

    // Anonymous: every page sends to the login form; the admin API is unaffected.
    let (status, headers, _) = exchange("GET", &format!("{base}/console/metrics"), &[], "").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/login");
    let (status, _) = admin(&s, "GET", "/v1/envs", "").await;
    assert_eq!(status, 200);

    // The login form itself: without its cookie (a cross-site post) it is refused, and a
    // wrong token is refused.
    let (status, _, html) = post_form(
        &format!("{base}/console/login"),
        "",
        &[("token", ADMIN_TOKEN), ("csrf", "guess")],
    )
    .await;
    assert_eq!(status, 403);
    assert!(html.contains("CSRF check failed"), "{html}");
    let (status, _, html) = post_form(
        &format!("{base}/console/login"),
        "cloudfn_login=abc",
        &[("token", "wrong"), ("csrf", "abc")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(html.contains("wrong admin token"), "{html}");

    let session = sign_in(&s).await;
    let cookie = format!("cloudfn_console={session}");
    let (status, _, html) = page(&base, "/console/sharing?app=wxA", &cookie).await;
    assert_eq!(status, 200);
    let csrf = csrf_field(&html);
    let other = sign_in(&s).await;
    let other_cookie = format!("cloudfn_console={other}");
    let (_, _, other_html) = page(&base, "/console", &other_cookie).await;
    let other_csrf = csrf_field(&other_html);
    assert_ne!(csrf, other_csrf);

    // A change without the token, or with another session's, is refused and changes nothing.
    let switch = format!("{base}/console/sharing/switch");
    for sent in [None, Some(other_csrf.as_str()), Some("")] {
        let mut form = vec![("app", "wxA"), ("on", "on")];
        if let Some(t) = sent {
            form.push(("csrf", t));
        }
        let (status, _, html) = post_form(&switch, &cookie, &form).await;
        assert_eq!(status, 403, "{sent:?}");
        assert!(html.contains("CSRF token"), "{html}");
        assert!(!store.app("wxA").await.unwrap().sharing);
    }
    // The same form with this session's token does it.
    let (status, headers, _) = post_form(
        &switch,
        &cookie,
        &[("app", "wxA"), ("on", "on"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        "/console/sharing?app=wxA&done=sharing-on"
    );
    assert!(store.app("wxA").await.unwrap().sharing);

    // A deploy of a real component is refused without this session's token first, and
    // nothing is stored; with it, it deploys.
    let echo = std::fs::read(paths::ECHO).unwrap();
    let deploy = format!("{base}/console/envs/prod/deploy");
    for fields in [
        vec![("name", "sneaky")],
        vec![("csrf", other_csrf.as_str()), ("name", "sneaky")],
        vec![("name", "sneaky"), ("csrf", csrf.as_str())],
    ] {
        let (content_type, body) = deploy_form(&fields, &echo);
        let (status, _, _) = exchange(
            "POST",
            &deploy,
            &[("cookie", &cookie), ("content-type", &content_type)],
            body,
        )
        .await;
        assert_eq!(status, 403, "{fields:?}");
        assert!(store.versions("prod", "sneaky").await.is_err());
    }
    let (content_type, body) = deploy_form(&[("csrf", &csrf), ("name", "sneaky")], &echo);
    let (status, headers, _) = exchange(
        "POST",
        &deploy,
        &[("cookie", &cookie), ("content-type", &content_type)],
        body,
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        headers["location"],
        "/console/envs/prod/functions/sneaky?done=deployed&v=1"
    );

    // Sharing steps are held to the CLI's checks, with its messages: not with an app of
    // another subject, and a sharee cannot end one env's share (only the owner can).
    let share = format!("{base}/console/sharing/share");
    let (status, _, html) = post_form(
        &share,
        &cookie,
        &[
            ("csrf", &csrf),
            ("app", "wxA"),
            ("to", "wxC"),
            ("env", "prod"),
            ("perm", "functions:invoke"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(html.contains("must belong to the same subject"), "{html}");
    let (status, _, _) = post_form(
        &share,
        &cookie,
        &[
            ("csrf", &csrf),
            ("app", "wxA"),
            ("to", "wxB"),
            ("env", "prod"),
            ("perm", "functions:invoke"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, html) = post_form(
        &format!("{base}/console/sharing/remove"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("app", "wxB"),
            ("env", "prod"),
            ("to", "wxB"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert!(html.contains("only wxA, env prod&#x27;s owner"), "{html}");
    assert!(store.share("prod", "wxB").await.unwrap().is_some());

    // Logout ends the session: its cookie no longer opens a page.
    let (status, headers, _) = post_form(
        &format!("{base}/console/logout"),
        &other_cookie,
        &[("csrf", &other_csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert!(
        set_cookie(&headers, "cloudfn_console")
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, headers, _) = page(&base, "/console", &other_cookie).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/login?expired=1");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_sessions_expire() {
    let mut s = console_world(ServeConfig {
        console_session_ttl: Duration::from_secs(2),
        ..ServeConfig::default()
    })
    .await;
    let base = format!("http://{}", s.admin);
    let cookie = format!("cloudfn_console={}", sign_in(&s).await);
    let (status, _, html) = page(&base, "/console/sharing?app=wxA", &cookie).await;
    assert_eq!(status, 200, "the session is live before its lifetime ends");
    let csrf = csrf_field(&html);
    // After its lifetime (counted from the login; pages do not extend it) the session is gone:
    // pages send to the login form, which says why, and its forms do nothing.
    let headers = poll_within(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "the console session's expiry",
        || async {
            let (status, headers, _) = page(&base, "/console", &cookie).await;
            (status == 303).then_some(headers)
        },
    )
    .await;
    assert_eq!(headers["location"], "/console/login?expired=1");
    let (status, headers, _) = post_form(
        &format!("{base}/console/sharing/switch"),
        &cookie,
        &[("app", "wxA"), ("on", "on"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/login?expired=1");
    assert!(!s.host.store().app("wxA").await.unwrap().sharing);
    let (_, _, html) = exchange("GET", &format!("{base}/console/login?expired=1"), &[], "").await;
    assert!(html.as_str().unwrap().contains("session expired"));
    s.shutdown().await;
}

/// Issue 28, item 5: a share whose env lost its `cloudbase_auth` (removed with `--force`) is
/// shown broken where the operator looks: the sharing page, its configure page, the env page.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_whose_env_lost_its_cloudbase_auth_shows_as_broken() {
    let mut s = World::new()
        .env("prod", "wxA")
        .deploy("prod", "cloudbase_auth", paths::CLOUDBASE_AUTH)
        .deploy("prod", "echo", paths::ECHO)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        .serve(ServeConfig::default())
        .await;
    let base = format!("http://{}", s.admin);
    let cookie = format!("cloudfn_console={}", sign_in(&s).await);
    let pages = [
        "/console/sharing?app=wxA",
        "/console/sharing?app=wxB",
        "/console/sharing/configure?app=wxA&to=wxB",
        "/console/envs/prod",
    ];
    for path in pages {
        let (status, _, html) = page(&base, path, &cookie).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("broken"), "{path} while whole: {html}");
    }
    let (status, body) = admin(
        &s,
        "DELETE",
        "/v1/envs/prod/functions/cloudbase_auth?force=true",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for path in pages {
        let (_, _, html) = page(&base, path, &cookie).await;
        assert!(
            (html.contains("class=\"broken\"") || html.contains("id=\"broken-shares\""))
                && html.contains("no cloudbase_auth")
                && html.contains("-501009"),
            "{path} says the share is broken: {html}"
        );
    }
    let (_, _, env) = page(&base, "/console/envs/prod", &cookie).await;
    assert!(
        env.contains("shared with wxB but has no cloudbase_auth"),
        "{env}"
    );
    s.shutdown().await;
}
