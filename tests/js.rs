//! JavaScript cloud functions (CloudBase Node functions built by `cloudfn build`): the seed's
//! `cloudbase_auth` and a `users_add` in `functions/js/`, unchanged, deployed beside Rust guests
//! and called same-app over `/tcb/invokecloudfunction`, from the real `@cloudbase/node-sdk`, and
//! across apps through the JavaScript `cloudbase_auth`; the SDK shims' shapes and refusals
//! (`functions/test-guests/js_probe`); outbound HTTP only to allowed hosts; and the CLI's build,
//! its errors, deploy and a call after a restart.

use crate::common;

use crate::common::Manage;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::{Call, Identity, Invocation, InvokeRequest};
use cloudfn_store::FunctionConfig;
use common::guests as paths;
use common::http::*;
use common::{Bin, World, err, failed, js_guest, ok, ok_json, records};
use serde_json::{Value, json};

// Multi-threaded: the node-sdk runs as a blocking child process while the server answers it.
#[tokio::test(flavor = "multi_thread")]
async fn a_cloudbase_node_function_runs_unchanged_same_app_cross_app_and_from_the_node_sdk() {
    let s = World::new()
        .env("prod", "wxA")
        .deploy("prod", "cloudbase_auth", &js_guest("js/cloudbase_auth"))
        .deploy("prod", "users_add", &js_guest("js/users_add"))
        .deploy("prod", "echo", paths::ECHO)
        .sharing("wxA")
        .share("prod", "wxB", "*")
        // The seed's cloudbase_auth grants with auth {"x": 1}; the rule reads it.
        .rules("prod", r#"{"*": {"invoke": "auth.custom.x == 1"}}"#)
        .serve(ServeConfig::default())
        .await;

    // Same app, over the HTTP API: the JavaScript function calls the Rust echo.
    let v = call_as(
        &s,
        &s.owner,
        Some("oA-1"),
        "prod",
        "users_add",
        r#"{"name":" Ada ","age":36}"#,
    )
    .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let out = resp_data(&v);
    assert_eq!(out["added"]["name"], "Ada", "{out}");
    assert_eq!(out["added"]["age"], 36);
    assert_eq!(out["added"]["createdIn"], "wxA");
    assert_eq!(out["added"]["createdBy"], "oA-1");
    let callee = &out["stored"]["context"];
    assert_eq!(callee["SOURCE"], "wx_http,scf", "{out}");
    assert_eq!(callee["OPENID"], "oA-1");
    assert_eq!(out["stored"]["event"]["name"], "Ada");
    // The structured log line of cloud.logger() is in the call's record.
    let record = records(&s.host, "prod", Some("users_add")).await;
    let logs = &record.last().expect("a record").logs;
    assert!(
        logs.iter()
            .any(|l| l.tag() == "info" && l.message.contains(r#""adding":"Ada""#)),
        "{logs:?}"
    );

    // Across apps: wxB's user, through the JavaScript cloudbase_auth and the rule on its claim.
    let v = call_as(
        &s,
        &s.other,
        Some("oB-7"),
        "prod",
        "users_add",
        r#"{"name":"Bo"}"#,
    )
    .await;
    assert_eq!(errcode(&v), 0, "{v}");
    let out = resp_data(&v);
    assert_eq!(out["added"]["createdIn"], "wxB", "{out}");
    assert_eq!(out["added"]["createdBy"], "oB-7");
    assert_eq!(out["stored"]["context"]["FROM_APPID"], "wxB");
    assert!(out["stored"]["context"].get("OPENID").is_none(), "{out}");
    // The seed's console.log lines, FROM_APPID among them, are in cloudbase_auth's record.
    let auth = records(&s.host, "prod", Some("cloudbase_auth")).await;
    let auth = auth.last().expect("cloudbase_auth ran");
    assert_eq!(auth.errcode, 0);
    let printed: Vec<&str> = auth.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(printed.contains(&"wxB"), "{printed:?}");
    assert!(printed.contains(&"oB-7"), "{printed:?}");
    // The claim is what the rule reads: a rule wanting another value denies.
    s.host
        .control()
        .set_rules("prod", r#"{"*": {"invoke": "auth.custom.x == 2"}}"#)
        .await
        .unwrap();
    let v = call_as(
        &s,
        &s.other,
        Some("oB-7"),
        "prod",
        "users_add",
        r#"{"name":"Bo"}"#,
    )
    .await;
    assert_eq!(errcode(&v), -501019, "{v}");
    s.host
        .control()
        .set_rules("prod", r#"{"*": {"invoke": "auth.custom.x == 1"}}"#)
        .await
        .unwrap();

    // The real @cloudbase/node-sdk, as a backend calls it.
    let (ok, v) = node_call(
        &s,
        &s.owner,
        "prod",
        "users_add",
        Some(r#"{"name":"Cy"}"#),
        None,
    );
    assert!(ok, "{v}");
    assert_eq!(v["result"]["added"]["name"], "Cy", "{v}");
    assert_eq!(v["result"]["added"]["createdIn"], "wxA");
    // A thrown error: -504002 with its code and message, through the node-sdk as over HTTP.
    let v = call_as(
        &s,
        &s.owner,
        Some("oA-1"),
        "prod",
        "users_add",
        r#"{"name":""}"#,
    )
    .await;
    assert_eq!(errcode(&v), -504002, "{v}");
    assert!(
        v["errmsg"]
            .as_str()
            .unwrap()
            .contains("INVALID_USER: name must not be empty"),
        "{v}"
    );
    let (ok, v) = node_call(&s, &s.owner, "prod", "users_add", Some("{}"), None);
    assert!(!ok);
    assert_eq!(v["code"], "FUNCTION_INVOCATION_FAILED", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("name must not be empty"),
        "{v}"
    );
}

/// Calls `prod/js_probe` with `event` as a user of wxA.
async fn probe(host: &std::sync::Arc<cloudfn_invoke::Host>, event: Value) -> Invocation {
    let identity = Identity {
        appid: Some("wxA".into()),
        openid: Some("oA-1".into()),
        unionid: Some("uA-1".into()),
        client_ip: Some("203.0.113.9".into()),
        ..Identity::default()
    };
    host.call(Call::trusted(
        InvokeRequest::new("prod", "js_probe", event.to_string(), "wx_client"),
        identity,
    ))
    .await
}

#[tokio::test]
async fn the_sdk_shims_answer_as_the_real_sdks_and_refuse_what_cloudfn_lacks() {
    let allowed = stand_in(|_| async { (200, "text/plain", b"hello from outside".to_vec()) }).await;
    let refused =
        stand_in(|_| async { (200, "text/plain", b"must not be reached".to_vec()) }).await;
    let allowed_host = allowed.trim_start_matches("http://").to_string();
    let config = FunctionConfig::with(|c| {
        c.vars.insert("greeting".into(), "hi".into());
        c.outbound_hosts = vec![allowed_host.clone()];
    });
    let w = World::new()
        .options(cloudfn_invoke::Options {
            // The stand-ins listen on loopback, which is refused by default.
            egress_allow: vec!["127.0.0.1/32".parse().unwrap()],
            ..Default::default()
        })
        .app("wxA", "Acme")
        .env("prod", "wxA")
        .deploy_with(
            "prod",
            "js_probe",
            &js_guest("test-guests/js_probe"),
            config,
        )
        .deploy("prod", "echo", paths::ECHO)
        .deploy("prod", "fail_error", paths::FAIL_ERROR)
        .build()
        .await;
    let h = &w.host;

    // getWXContext as wx-server-sdk shapes it: only the fields the call has, ENV and SOURCE.
    let v = ok_json(&probe(h, json!({"op": "context"})).await);
    assert_eq!(
        v["wx"],
        json!({"CLIENTIP": "203.0.113.9", "APPID": "wxA", "OPENID": "oA-1", "UNIONID": "uA-1",
               "ENV": "prod", "SOURCE": "wx_client"}),
        "{v}"
    );
    assert_eq!(v["scf"]["function_name"], "js_probe");
    assert_eq!(v["vars"], json!({"greeting": "hi", "TCB_ENV": "prod"}));

    // callFunction: the SDK's success shape, and its failure shape for a missing function and
    // for one that ran and failed (-404011).
    let inv = probe(h, json!({"op": "call", "name": "echo", "data": {"n": 1}})).await;
    let v = ok_json(&inv);
    assert_eq!(v["ok"]["errMsg"], "cloud.callFunction:ok", "{v}");
    assert_eq!(v["ok"]["result"]["event"], json!({"n": 1}));
    assert_eq!(v["ok"]["result"]["context"]["SOURCE"], "wx_client,scf");
    assert_eq!(v["ok"]["requestID"], inv.request_id.as_str());
    let v = ok_json(&probe(h, json!({"op": "call", "name": "nope"})).await);
    assert_eq!(v["err"]["errCode"], -501009, "{v}");
    let msg = v["err"]["errMsg"].as_str().unwrap();
    assert!(
        msg.starts_with("cloud.callFunction:fail requestID "),
        "{msg}"
    );
    assert!(
        msg.contains("cloud function service error code -501009"),
        "{msg}"
    );
    let v = ok_json(&probe(h, json!({"op": "call", "name": "fail_error"})).await);
    assert_eq!(v["err"]["errCode"], -404011, "{v}");
    let message = v["err"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "errCode: -404011 cloud function execution error | errMsg: cloud.callFunction:fail"
        ),
        "{message}"
    );
    assert!(message.contains("error code -504002"), "{message}");

    // @cloudbase/node-sdk's callFunction and getUserInfo.
    let v = ok_json(&probe(h, json!({"op": "node", "name": "echo", "data": {"m": 2}})).await);
    assert_eq!(v["ok"]["result"]["event"], json!({"m": 2}), "{v}");
    assert_eq!(v["user"]["openId"], "oA-1");
    assert_eq!(v["user"]["appId"], "wxA");
    let v = ok_json(&probe(h, json!({"op": "node", "name": "nope"})).await);
    assert_eq!(v["err"]["code"], "FUNCTION_NOT_FOUND", "{v}");

    // What cloudfn does not provide fails with the API's name.
    let v = ok_json(&probe(h, json!({"op": "unsupported"})).await);
    let msg = v["failed"].as_str().unwrap();
    assert!(
        msg.starts_with("wx-server-sdk: cloud.database is not supported"),
        "{msg}"
    );

    // Outbound HTTP: the allowed host answers; any other is refused, and the call's logs say
    // why while the function sees a network error.
    let v = ok_json(&probe(h, json!({"op": "fetch", "url": format!("{allowed}/x")})).await);
    assert_eq!(v, json!({"status": 200, "body": "hello from outside"}));
    let inv = probe(h, json!({"op": "fetch", "url": format!("{refused}/x")})).await;
    let v = ok_json(&inv);
    assert!(v["failed"].is_string(), "{v}");
    let host = refused.trim_start_matches("http://");
    assert!(
        inv.logs
            .iter()
            .any(|l| l.tag() == "warn" && l.message.contains(&format!("{host} refused"))),
        "{:?}",
        inv.logs
    );

    // console.* and logger() land in the call's logs; timers work.
    let inv = probe(h, json!({"op": "logs"})).await;
    assert_eq!(ok_json(&inv), "logged");
    let lines: Vec<(String, String)> = inv
        .logs
        .iter()
        .map(|l| (l.tag().to_string(), l.message.clone()))
        .collect();
    for want in [
        ("warn", r#"{"probe":"logs","n":1}"#),
        ("stdout", "to stdout"),
        ("stderr", "to stderr"),
    ] {
        assert!(
            lines.contains(&(want.0.to_string(), want.1.to_string())),
            "{lines:?}"
        );
    }

    // A thrown error is -504002 with its code and message, and its stack in the logs.
    let inv = probe(h, json!({"op": "throws"})).await;
    let (code, msg) = err(&inv);
    assert_eq!(code, -504002);
    assert!(
        msg.contains("PROBE_FAILED: the probe failed on purpose"),
        "{msg}"
    );
    assert!(
        inv.logs
            .iter()
            .any(|l| l.message == "Error: the probe failed on purpose"),
        "{:?}",
        inv.logs
    );
}

/// A copy of `functions/FOLDER` in a new temporary dir, as a user's own function folder.
fn copy_folder(folder: &str, into: &std::path::Path) -> std::path::PathBuf {
    let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../functions")
        .join(folder);
    let to = into.join(from.file_name().unwrap());
    std::fs::create_dir_all(&to).unwrap();
    for file in ["index.js", "package.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    to
}

#[test]
fn cloudfn_build_makes_a_deployable_component_and_names_the_file_in_its_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bin = Bin::new(&data);
    let folder = |name: &str, files: &[(&str, &str)]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        dir.display().to_string()
    };
    let manifest = r#"{"name": "f", "main": "index.js"}"#;

    // A Node built-in: esbuild's location, and what to do instead.
    let dir = folder(
        "builtin",
        &[
            ("package.json", manifest),
            (
                "index.js",
                "const fs = require('fs')\nexports.main = async () => fs.readFileSync('/etc/hostname', 'utf8')\n",
            ),
        ],
    );
    let (_, e) = failed(&bin.run(&["build", &dir]));
    assert!(e.contains("index.js:1:19"), "{e}");
    assert!(e.contains("\"fs\" is a Node.js built-in module"), "{e}");
    // A syntax error, at its line and column.
    let dir = folder(
        "syntax",
        &[
            ("package.json", manifest),
            (
                "index.js",
                "exports.main = async () => {\n  return { a: 1,, }\n}\n",
            ),
        ],
    );
    let (_, e) = failed(&bin.run(&["build", &dir]));
    assert!(e.contains("index.js:2:16"), "{e}");
    assert!(e.contains("Expected identifier but found \",\""), "{e}");
    // No main.
    let dir = folder(
        "nomain",
        &[
            ("package.json", manifest),
            ("index.js", "exports.handler = async () => 1\n"),
        ],
    );
    let (_, e) = failed(&bin.run(&["build", &dir]));
    assert!(
        e.contains("index.js does not export a main function"),
        "{e}"
    );
    // Production dependencies are installed (a local package here, so no registry is needed),
    // the SDKs cloudfn replaces are not, and an error inside a dependency names its file.
    let lib = folder(
        "greet-lib",
        &[
            ("package.json", r#"{"name": "greet-lib", "main": "lib.js"}"#),
            (
                "lib.js",
                "const os = require('os')
exports.greet = (n) => `hi ${n} on ${os.hostname()}`
",
            ),
        ],
    );
    let dir = folder(
        "with-deps",
        &[
            (
                "package.json",
                r#"{"name": "with-deps", "dependencies": {"greet-lib": "file:../greet-lib", "wx-server-sdk": "~2.6.3"}, "devDependencies": {"left-pad": "1.3.0"}}"#,
            ),
            (
                "index.js",
                "const { greet } = require('greet-lib')
exports.main = async (e) => greet(e.name)
",
            ),
        ],
    );
    let (_, e) = failed(&bin.run(&["build", &dir]));
    assert!(e.contains("greet-lib/lib.js:1:19"), "{e}");
    assert!(e.contains("\"os\" is a Node.js built-in module"), "{e}");
    let installed = std::path::Path::new(&dir).join(".cloudfn/deps/node_modules");
    assert!(installed.join("greet-lib").exists(), "{lib}");
    assert!(!installed.join("wx-server-sdk").exists());
    assert!(!installed.join("left-pad").exists());
    // No index.js.
    let dir = folder("empty", &[("package.json", manifest)]);
    let (_, e) = failed(&bin.run(&["build", &dir]));
    assert!(e.contains("index.js: no such file"), "{e}");

    // The seed's unmodified users_add folder: build (to a path relative to where the command
    // runs), deploy beside a Rust echo, call.
    let users_add = copy_folder("js/users_add", tmp.path());
    let out = ok(&bin
        .command(&[
            "build",
            &users_add.display().to_string(),
            "--out",
            "built/users_add.wasm",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap());
    let wasm = tmp.path().join("built/users_add.wasm");
    assert!(out.contains(&wasm.display().to_string()), "{out}");
    ok(&bin.run(&["app", "create", "wxA", "--subject", "Acme"]));
    ok(&bin.run(&["env", "create", "prod", "--owner", "wxA"]));
    ok(&bin.run(&["deploy", "--env", "prod", "--name", "echo", paths::ECHO]));
    // A folder is built, then deployed: the same bundle as the build's, so the same component.
    let version = ok(&bin.run(&[
        "deploy",
        "--env",
        "prod",
        "--name",
        "users_add",
        &users_add.display().to_string(),
    ]));
    assert_eq!(version.trim(), "1");
    // The deploy compiled it once, keyed by content hash (and engine), for every later process.
    let sha = cloudfn_store::secrets::sha256_hex(&std::fs::read(&wasm).unwrap());
    let artifacts: Vec<String> = std::fs::read_dir(data.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        artifacts
            .iter()
            .any(|a| a.starts_with(&sha) && a.ends_with(".cwasm")),
        "{artifacts:?}"
    );
    // A new process calls it from that artifact.
    let out = bin.run(&[
        "invoke",
        "--env",
        "prod",
        "--name",
        "users_add",
        "--appid",
        "wxA",
        "--openid",
        "o-cli",
        "--event",
        r#"{"name":"Di"}"#,
    ]);
    let stdout = ok(&out);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["added"]["createdBy"], "o-cli", "{v}");
    assert_eq!(v["stored"]["context"]["SOURCE"], "wx_devtools,scf", "{v}");
}
