//! Cloud calls (`openapi`) end to end: a real guest (`openapi_probe`, through the SDK) on a
//! served host, against a fake upstream platform on 127.0.0.1 that issues tokens per app and
//! checks which app's token each API call carries.

use crate::common::http::*;
use crate::common::{Bin, World, guests as paths, ok, poll_within};
use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::Options;
use cloudfn_store::FunctionConfig;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the fake upstream saw.
#[derive(Default)]
struct Upstream {
    /// Token fetches per app.
    fetches: Mutex<HashMap<String, u32>>,
    /// API calls: (the app whose token it carried, the path, the body).
    calls: Mutex<Vec<(String, String, Value)>>,
    /// Answer the next API call 42001 (token expired).
    expire_next: AtomicBool,
}

const SECRETS: [(&str, &str); 3] = [
    ("wxA", "AppSecret-of-wxA-7f3e"),
    ("wxB", "AppSecret-of-wxB-91c2"),
    ("wxC", "AppSecret-of-wxC-0d4b"),
];

/// The fake platform: `GET /cgi-bin/token` (tokens `tok-APP-N`, 50 ms to answer so concurrent
/// fetches would overlap), `POST /cgi-bin/message/subscribe/send`, `POST
/// /wxa/getwxacodeunlimit` (an image).
async fn upstream() -> (String, Arc<Upstream>) {
    let seen = Arc::new(Upstream::default());
    let state = seen.clone();
    let base = stand_in(move |(parts, body): Seen| {
        let state = state.clone();
        async move { state.answer(parts, body).await }
    })
    .await;
    (base, seen)
}

impl Upstream {
    async fn answer(
        &self,
        parts: hyper::http::request::Parts,
        body: bytes::Bytes,
    ) -> (u16, &'static str, Vec<u8>) {
        let path = parts.uri.path().to_string();
        let query: HashMap<String, String> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let reply = |v: Value| (200, "application/json", v.to_string().into_bytes());
        if path == "/cgi-bin/token" {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let app = query.get("appid").cloned().unwrap_or_default();
            let secret = query.get("secret").map(String::as_str);
            if !SECRETS.iter().any(|(a, s)| *a == app && Some(*s) == secret) {
                return reply(json!({"errcode": 40125, "errmsg": "invalid appsecret"}));
            }
            let mut fetches = self.fetches.lock().unwrap();
            let n = fetches.entry(app.clone()).or_default();
            *n += 1;
            // wxC's tokens live 2 s, to show they are refreshed before they expire.
            let expires_in = if app == "wxC" { 2 } else { 7200 };
            return reply(
                json!({"access_token": format!("tok-{app}-{n}"), "expires_in": expires_in}),
            );
        }
        let token = query.get("access_token").cloned().unwrap_or_default();
        let app = token.split('-').nth(1).unwrap_or("?").to_string();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.calls
            .lock()
            .unwrap()
            .push((app, path.clone(), json.clone()));
        if self.expire_next.swap(false, Ordering::SeqCst) {
            reply(json!({"errcode": 42001, "errmsg": "access_token expired"}))
        } else if path == "/wxa/getwxacodeunlimit" {
            (200, "image/jpeg", vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3])
        } else if json["touser"].as_str().unwrap_or("").is_empty() {
            reply(json!({"errcode": 40003, "errmsg": "invalid openid"}))
        } else {
            reply(json!({"errcode": 0, "errmsg": "ok"}))
        }
    }
}

/// Whether a probe result is a sent message (`subscribe_message::send` gives `()`).
fn sent(r: &Value) -> bool {
    r.get("ok").is_some() && r.get("errcode").is_none()
}

/// The probe's results for one call, as `app`'s server calls it over HTTP.
async fn probe(s: &TestServer, creds: &cloudfn_store::AppCredentials, ask: Value) -> Vec<Value> {
    probe_in(s, creds, "prod", ask).await
}

/// [`probe`] in env `env`.
async fn probe_in(
    s: &TestServer,
    creds: &cloudfn_store::AppCredentials,
    env: &str,
    ask: Value,
) -> Vec<Value> {
    let token = s.token(creds).await;
    let v = s
        .invoke(&token, env, "openapi_probe", &ask.to_string())
        .await;
    assert_eq!(v["errcode"], 0, "{v}");
    let text = v["resp_data"].as_str().unwrap();
    assert!(
        !text.contains("tok-"),
        "the function never sees a token: {text}"
    );
    let out: Value = serde_json::from_str(text).unwrap();
    out["results"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_calls_act_as_the_owner_or_the_calling_app_with_tokens_the_host_keeps() {
    let (base, seen) = upstream().await;
    let s = World::new()
        .options(Options {
            upstream: Some(base),
            ..Options::default()
        })
        .app("wxC", "Acme")
        .env("prod", "wxA")
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            FunctionConfig::vars([("allowed_appids", "wxB")]),
        )
        .deploy("prod", "openapi_probe", paths::OPENAPI_PROBE)
        .env("short", "wxC")
        .deploy("short", "openapi_probe", paths::OPENAPI_PROBE)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        .serve(ServeConfig::default())
        .await;
    let owner = s.owner.clone();
    let other = s.other.clone();

    // No credentials yet: the host says so; the upstream is not asked.
    let r = probe(&s, &owner, json!({"send": {"touser": "o1"}})).await;
    assert_eq!(r[0]["errcode"], -501001, "{r:?}");
    assert!(
        r[0]["errmsg"]
            .as_str()
            .unwrap()
            .contains("app set wxA --upstream-secret"),
        "{r:?}"
    );

    // Credentials through the admin API and the CLI (read from a file), kept sealed.
    let (status, v) = admin(
        &s,
        "POST",
        "/v1/apps/wxA/upstream",
        json!({"secret": SECRETS[0].1}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let file = s.dir().join("wxB.secret");
    std::fs::write(&file, SECRETS[1].1).unwrap();
    let secret_arg = format!("@{}", file.display());
    ok(&Bin::new(s.dir()).run(&["app", "set", "wxB", "--upstream-secret", &secret_arg]));
    std::fs::remove_file(&file).unwrap();
    for db in ["cloudfn.db", "cloudfn.db-wal"] {
        let bytes = std::fs::read(s.dir().join(db)).unwrap_or_default();
        for (_, secret) in SECRETS {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {db}"
            );
        }
    }

    // As the owner: three sends, one token.
    let r = probe(
        &s,
        &owner,
        json!({"send": {"touser": "o1", "data": {"thing1": {"value": "hi"}}}, "times": 3}),
    )
    .await;
    assert!(r.iter().all(sent), "{r:?}");
    assert_eq!(seen.fetches.lock().unwrap()["wxA"], 1);
    {
        let calls = seen.calls.lock().unwrap();
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|(app, path, body)| app == "wxA"
            && path == "/cgi-bin/message/subscribe/send"
            && body["data"]["thing1"]["value"] == "hi"
            && body["template_id"] == "T1"));
    }

    // A user of wxB across the share: by default as the owner, or as wxB itself — and as no
    // other app.
    let r = probe(&s, &other, json!({"send": {"touser": "o2"}})).await;
    assert!(sent(&r[0]), "{r:?}");
    let r = probe(&s, &other, json!({"send": {"touser": "o2"}, "as": "wxB"})).await;
    assert!(sent(&r[0]), "{r:?}");
    let r = probe(&s, &other, json!({"send": {"touser": "o2"}, "as": "wxC"})).await;
    assert_eq!(r[0]["errcode"], -501019, "{r:?}");
    // The owner's own function cannot act as wxB either: it is not the calling app.
    let r = probe(&s, &owner, json!({"send": {"touser": "o2"}, "as": "wxB"})).await;
    assert_eq!(r[0]["errcode"], -501019, "{r:?}");
    {
        let calls = seen.calls.lock().unwrap();
        let apps: Vec<&str> = calls[3..].iter().map(|(a, _, _)| a.as_str()).collect();
        assert_eq!(
            apps,
            ["wxA", "wxB"],
            "refused calls never reached the upstream"
        );
    }

    // The upstream's own errors come back as they are.
    let r = probe(&s, &owner, json!({"send": {"touser": ""}})).await;
    assert_eq!(
        (&r[0]["errcode"], &r[0]["errmsg"]),
        (&json!(40003), &json!("invalid openid"))
    );

    // An expired token: a new one is fetched and the call retried, once.
    seen.expire_next.store(true, Ordering::SeqCst);
    let r = probe(&s, &owner, json!({"send": {"touser": "o1"}})).await;
    assert!(sent(&r[0]), "{r:?}");
    assert_eq!(seen.fetches.lock().unwrap()["wxA"], 2);

    // Concurrent calls needing a token share one fetch.
    let before = seen.fetches.lock().unwrap()["wxB"];
    let (status, _) = admin(
        &s,
        "POST",
        "/v1/apps/wxB/upstream",
        json!({"secret": SECRETS[1].1}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "setting it again forgets the cached token");
    let token = s.token(&other).await;
    let url = s.url(&format!(
        "/tcb/invokecloudfunction?access_token={token}&env=prod&name=openapi_probe"
    ));
    let ask = json!({"send": {"touser": "o3"}, "as": "wxB"}).to_string();
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (url, ask) = (url.clone(), ask.clone());
            tokio::spawn(async move { request("POST", &url, &[], ask).await.1 })
        })
        .collect();
    for call in calls {
        let v = call.await.unwrap();
        let out: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
        assert!(sent(&out["results"][0]), "{v}");
    }
    assert_eq!(seen.fetches.lock().unwrap()["wxB"], before + 1);

    // A token is fetched again before it expires (wxC's live 2 s), not used past it.
    let (status, _) = admin(
        &s,
        "POST",
        "/v1/apps/wxC/upstream",
        json!({"secret": SECRETS[2].1}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let c = s.world.creds("wxC").clone();
    let r = probe_in(
        &s,
        &c,
        "short",
        json!({"send": {"touser": "o4"}, "times": 2}),
    )
    .await;
    assert!(r.iter().all(sent), "{r:?}");
    assert_eq!(seen.fetches.lock().unwrap()["wxC"], 1, "cached while fresh");
    // Sends go on until one of them finds the token due (2 s after its fetch) and fetches a
    // new one; every send succeeds meanwhile. Five a second for at most 10 s: each probe takes
    // a new access token of wxC, which may have 60 a minute.
    poll_within(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(200),
        "wxC's token fetched again once due",
        || async {
            let r = probe_in(&s, &c, "short", json!({"send": {"touser": "o4"}})).await;
            assert!(sent(&r[0]), "{r:?}");
            (seen.fetches.lock().unwrap()["wxC"] > 1).then_some(())
        },
    )
    .await;
    assert_eq!(seen.fetches.lock().unwrap()["wxC"], 2, "refreshed once due");

    // A binary reply, as wx-server-sdk gives it: {contentType, buffer (base64)}.
    let r = probe(
        &s,
        &owner,
        json!({"path": "wxa/getwxacodeunlimit", "body": {"scene": "a=1"}}),
    )
    .await;
    assert_eq!(r[0]["ok"]["contentType"], "image/jpeg", "{r:?}");
    assert_eq!(r[0]["ok"]["buffer"], "/9j/4AECAw==");
    // Paths the host refuses before asking anyone.
    let r = probe(&s, &owner, json!({"path": "../cgi-bin/token"})).await;
    assert_eq!(r[0]["errcode"], -501007, "{r:?}");

    // Every credential change is in the audit log; no secret is.
    let (_, v) = admin(&s, "GET", "/v1/audit", "").await;
    let text = v.to_string();
    assert!(text.contains("upstream.set"), "{text}");
    assert!(
        !SECRETS.iter().any(|(_, secret)| text.contains(secret)),
        "{text}"
    );
}

/// Over https the upstream's certificate is verified: a stand-in with a self-signed one gets
/// a TLS handshake (so https is spoken) and the call is refused for its certificate, -1 saying
/// why; nothing is sent to it.
#[tokio::test(flavor = "multi_thread")]
async fn https_upstreams_have_their_certificates_verified() {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let handshakes = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let outcome = match acceptor.accept(stream).await {
                Ok(_) => "completed".to_string(),
                Err(e) => e.to_string(),
            };
            seen.lock().unwrap().push(outcome);
        }
    });
    let s = World::new()
        .options(Options {
            upstream: Some(base),
            ..Options::default()
        })
        .env("prod", "wxA")
        .deploy("prod", "openapi_probe", paths::OPENAPI_PROBE)
        .serve(ServeConfig::default())
        .await;
    let (status, _) = admin(
        &s,
        "POST",
        "/v1/apps/wxA/upstream",
        json!({"secret": SECRETS[0].1}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let owner = s.owner.clone();
    let r = probe(&s, &owner, json!({"send": {"touser": "o1"}})).await;
    assert_eq!(r[0]["errcode"], -1, "{r:?}");
    let why = r[0]["errmsg"].as_str().unwrap();
    assert!(why.contains("certificate"), "{why}");
    // The stand-in records the handshake's end a moment after the client gave up.
    let mut seen = Vec::new();
    for _ in 0..500 {
        seen = handshakes.lock().unwrap().clone();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !seen.is_empty() && !seen.contains(&"completed".to_string()),
        "{seen:?}"
    );
}
