//! What got in a new user's way (issue 28), each through the real parts: the `cloudfn` binary
//! on a data dir, or a served host on 127.0.0.1. Silent fallbacks are refused with a message
//! that says what to do; messages name what they mean.

use crate::common::http::*;
use crate::common::{Bin, World, failed, guests as paths, ok, within_blocking};
use cloudfn_gateway::server::ServeConfig;
use cloudfn_store::{AuditQuery, FunctionConfig};
use std::time::Duration;

/// A data dir with app wxA, env `prod` and `echo` deployed.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = Bin::new(dir.path());
    ok(&bin.run(&["app", "create", "wxA", "--subject", "Acme"]));
    ok(&bin.run(&["env", "create", "prod", "--owner", "wxA"]));
    ok(&bin.run(&["deploy", "--env", "prod", "--name", "echo", paths::ECHO]));
    dir
}

/// Items 2, 4, 13 and 15: `invoke` refuses caller contexts that cannot happen and flags that
/// would not apply, builds or names a folder, and prints no run line when nothing ran.
#[test]
fn invoke_refuses_what_would_be_silently_ignored() {
    let dir = data_dir();
    let bin = Bin::new(dir.path());
    let echo = ["invoke", "--env", "prod", "--name", "echo"];
    fn with<'a>(echo: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
        [echo, more].concat()
    }
    // A user is always some app's: FROM_OPENID without FROM_APPID cannot happen.
    let (_, stderr) = failed(&bin.run(&with(&echo, &["--from-openid", "o1"])));
    assert!(stderr.contains("--from-appid"), "{stderr}");
    // A deployed version runs with its own settings.
    let flags: [&[&str]; 8] = [
        &["--memory", "1"],
        &["--kind", "http"],
        &["--timeout", "1"],
        &["--var", "K=V"],
        &["--allow-host", "example.com"],
        &["--fs-write"],
        &["--dir", "."],
        &["--egress-allow", "127.0.0.1/32"],
    ];
    for flag in flags {
        let (_, stderr) = failed(&bin.run(&with(&echo, flag)));
        assert!(
            stderr.contains(&format!("{} applies to a file run", flag[0]))
                && stderr.contains("deploy a new version"),
            "{flag:?}: {stderr}"
        );
    }
    // Nothing ran: the error alone, no `request … version - in 0.0 ms` line.
    let out = bin.run(&with(&echo, &["--event", "{bad"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("[cloudfn] request"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("errcode"));
    let out = bin.run(&with(&echo, &["--event", "{}"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[cloudfn] request"));
    // A folder is built as deploy builds it; one that is no function says what one is.
    let empty = tempfile::tempdir().unwrap();
    let (_, stderr) = failed(&bin.run(&["invoke", empty.path().to_str().unwrap()]));
    assert!(
        stderr.contains("is not a function folder") && stderr.contains("package.json"),
        "{stderr}"
    );
    assert!(!stderr.contains("Is a directory"), "{stderr}");
}

/// Items 5 and 15 (`logs`): `cloudbase_auth` of a shared env is not removed without `--force`.
#[test]
fn removing_cloudbase_auth_of_a_shared_env_needs_force() {
    let dir = data_dir();
    let bin = Bin::new(dir.path());
    ok(&bin.run(&["app", "create", "wxB", "--subject", "Acme"]));
    ok(&bin.run(&["app", "sharing", "wxA", "on"]));
    let deploy = ["deploy", "--env", "prod", "--name", "cloudbase_auth"];
    ok(&bin.run(&[&deploy[..], &[paths::CLOUDBASE_AUTH]].concat()));
    ok(&bin.run(&["share", "add", "--env", "prod", "--to", "wxB"]));
    // Item 15: `logs` says who the grant let in or refused, at which step and why.
    let as_wxb = ["--from-appid", "wxB", "--from-openid", "o1"];
    let _ = bin.run(&[&["invoke", "--env", "prod", "--name", "echo"][..], &as_wxb].concat());
    let mut logs = String::new();
    within_blocking(Duration::from_secs(10), "wxB's call in `logs`", || {
        logs = ok(&bin.run(&["logs", "--env", "prod"]));
        logs.contains(" app wxB at ")
    });
    assert!(
        logs.lines().any(|l| l.trim_start().starts_with("[grant] ")
            && l.contains(" app wxB at ")
            && l.contains(": ")),
        "{logs}"
    );
    let rm = ["rm", "--env", "prod", "--name", "cloudbase_auth"];
    let (_, stderr) = failed(&bin.run(&rm));
    assert!(
        stderr.contains("shared with wxB") && stderr.contains("--force"),
        "{stderr}"
    );
    let ls = ok(&bin.run(&["ls", "--env", "prod"]));
    assert!(ls.contains("cloudbase_auth"), "{ls}");
    ok(&bin.run(&[&rm[..], &["--force"]].concat()));
    let ls = ok(&bin.run(&["ls", "--env", "prod"]));
    assert!(!ls.contains("cloudbase_auth"), "{ls}");
}

/// wxA's `prod` with `echo`, shared with wxB (whom its `cloudbase_auth` allows); wxC exists.
fn shared_prod() -> World {
    World::new()
        .app("wxC", "Acme")
        .env("prod", "wxA")
        .deploy("prod", "echo", paths::ECHO)
        .deploy_with(
            "prod",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            FunctionConfig::vars([("allowed_appids", "wxB")]),
        )
        .sharing("wxA")
        .share("prod", "wxB", "*")
}

/// Items 2 (the admin API's side), 7, 10 and 14 on a served host.
#[tokio::test]
async fn made_up_names_cost_no_grant_and_a_no_op_rollback_is_refused() {
    let s = shared_prod().serve(ServeConfig::default()).await;
    let auth_runs = || async {
        s.host.flush_records().await;
        crate::common::records(&s.host, "prod", Some("cloudbase_auth"))
            .await
            .len()
    };
    // Item 7: a sharee's call of a function that does not exist runs no cloudbase_auth.
    let v = call_as(&s, &s.other, Some("o1"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), 0, "{v}");
    let before = auth_runs().await;
    for name in ["nope1", "nope2", "nope3"] {
        let v = call_as(&s, &s.other, Some("o1"), "prod", name, "{}").await;
        assert_eq!(errcode(&v), -501009, "{v}");
    }
    assert_eq!(
        auth_runs().await,
        before,
        "no cloudbase_auth run for made-up names"
    );
    // An app with no share learns nothing of which functions exist.
    let c = s.world.creds("wxC").clone();
    let v = call_as(&s, &c, Some("o1"), "prod", "nope1", "{}").await;
    assert_eq!(errcode(&v), -501019, "{v}");

    // Item 10: rolling back to the active version says so and audits nothing.
    let (status, v) = admin(
        &s,
        "POST",
        "/v1/envs/prod/functions/echo/rollback",
        r#"{"to":1}"#,
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("already active"),
        "{v}"
    );
    let q = AuditQuery {
        env: Some("prod".into()),
        ..Default::default()
    };
    let audit = s.host.store().audit_log(&q).await.unwrap();
    assert!(!audit.iter().any(|e| e.action == "rollback"), "{audit:?}");

    // Item 2 over the admin API: a calling app's user with no calling app runs nothing.
    let invoke = "/v1/envs/prod/functions/echo/invoke";
    for identity in [
        r#"{"from_openid":"o1"}"#,
        r#"{"appid":"wxA","from_unionid":"u1"}"#,
    ] {
        let body = format!(r#"{{"identity":{identity}}}"#);
        let (status, v) = admin(&s, "POST", invoke, body).await;
        assert_eq!(status, 400, "{identity}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("from_appid too"),
            "{v}"
        );
    }
    let body = r#"{"identity":{"from_appid":"wxB","from_openid":"o1"}}"#;
    let (status, v) = admin(&s, "POST", invoke, body).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["result"].as_str().unwrap().contains("wxB"), "{v}");

    // Item 14: the admin API asked on the public port says where it is.
    let (status, v) = get(&s.url("/v1/envs")).await;
    assert_eq!(status, 404);
    let message = v["errmsg"].as_str().unwrap();
    assert!(
        message.contains("admin listener")
            && message.contains("--admin-listen")
            && message.contains("127.0.0.1:8081"),
        "{message}"
    );
}

/// Item 3: a forgotten `--data-dir` makes no data dir for a command that only reads, and an
/// error about something missing names the data dir it looked in.
#[test]
fn a_missing_data_dir_is_named_and_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cloudfn-data");
    let bin = Bin::new(&data);
    for args in [
        &["ls", "--env", "prod"][..],
        &["env", "ls"],
        &["logs", "--env", "prod"],
        &["invoke", "--env", "prod", "--name", "echo"],
    ] {
        let (_, stderr) = failed(&bin.run(args));
        assert!(
            stderr.contains(&format!("no cloudfn data dir at {}", data.display()))
                && stderr.contains("--data-dir"),
            "{args:?}: {stderr}"
        );
        assert!(!data.exists(), "{args:?} made {}", data.display());
    }
    ok(&bin.run(&["app", "create", "wxA", "--subject", "Acme"]));
    let (_, stderr) = failed(&bin.run(&["deploy", "--env", "prod", "--name", "echo", paths::ECHO]));
    assert!(
        stderr.contains(&format!("in data dir {}", data.display())) && stderr.contains("prod"),
        "{stderr}"
    );
}

/// Item 6: an event over the 6 MB limit sent by the real node-sdk gets the protocol's error,
/// not a broken pipe (20 MB: more than loopback's socket buffers hold).
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_event_gets_the_error_not_a_broken_pipe() {
    let s = World::new()
        .env("prod", "wxA")
        .deploy("prod", "echo", paths::ECHO)
        .serve(ServeConfig::default())
        .await;
    let (owner, server) = (s.owner.clone(), &s);
    let (ok, v) = node_call_in(
        server,
        &owner,
        "prod",
        "echo",
        None,
        None,
        &[("FN_DATA_PAD", "20000000")],
    );
    assert!(!ok, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("EPIPE") && !message.contains("ECONNRESET"),
        "{v}"
    );
    assert!(
        message.contains("over") || v["code"] == "FUNCTION_PARAM_INVALID",
        "{v}"
    );
    // The same without node's timing: a client that sends the whole declared 20 MB before it
    // reads. Answered and closed at once, it would see its writes fail (a broken pipe or a
    // reset) once loopback's buffers fill; read on and dropped, all of them land.
    let token = s.token(&owner).await;
    let path = format!("/tcb/invokecloudfunction?access_token={token}&env=prod&name=echo");
    let addr = s.public;
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr)?;
        c.set_write_timeout(Some(Duration::from_secs(30)))?;
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let len = 20_000_000;
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        )?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            c.write_all(&chunk[..n])?;
            sent += n;
        }
        let mut answer = String::new();
        c.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .await
    .unwrap();
    let answer = answer.expect("every byte of the body written, then the answer read");
    assert!(
        answer.starts_with("HTTP/1.1 ") && answer.contains("-501007") && answer.contains("over"),
        "{answer}"
    );
    // A call of ordinary size goes on working.
    let (ok, v) = node_call(server, &owner, "prod", "echo", Some(r#"{"a":1}"#), None);
    assert!(ok, "{v}");
}

/// Item 9: the outcome filter is the store's, so a denied call is found however many calls
/// came after it; an outcome the API does not know is refused, not ignored.
#[tokio::test]
async fn the_outcome_filter_finds_old_records() {
    let s = shared_prod()
        .share("prod", "wxC", "*")
        .serve(ServeConfig::default())
        .await;
    let c = s.world.creds("wxC").clone();
    let v = call_as(&s, &c, Some("o1"), "prod", "echo", "{}").await;
    assert_eq!(errcode(&v), -403001, "{v}");
    for _ in 0..30 {
        let v = call_as(&s, &s.owner, Some("o1"), "prod", "echo", "{}").await;
        assert_eq!(errcode(&v), 0, "{v}");
    }
    let (status, v) = admin(
        &s,
        "GET",
        "/v1/envs/prod/activations?outcome=denied&limit=5",
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let records = v.as_array().unwrap();
    assert!(!records.is_empty(), "{v}");
    assert!(
        records.iter().all(|r| r["decision"]["allowed"] == false),
        "{v}"
    );
    let (status, v) = admin(&s, "GET", "/v1/envs/prod/activations?outcome=nope", "").await;
    assert_eq!(status, 400, "{v}");
}

/// Item 12: Rust's debug formatting does not reach people (`got Some(4)`, `for
/// Some("echo")`). Every debug placeholder (`{x:?}`) outside tests, in the host, the SDK and
/// the example functions, is listed here with why it is fit for people (it quotes a string,
/// or shows a duration); a new one fails this test until it is looked at and listed, and an
/// entry whose placeholder is gone fails it too, so the list stays the code's.
#[test]
fn debug_formatting_reaches_people_only_where_it_quotes_a_string() {
    const LISTED: &[(&str, &str, &str)] = &[
        ("host/invoke/src/webhook.rs", "{url:?}", "a &str, quoted"),
        ("host/invoke/src/session.rs", "{appid:?}", "a &str, quoted"),
        ("host/invoke/src/upstream.rs", "{path:?}", "a &str, quoted"),
        ("host/runtime/src/egress.rs", "{v:?}", "a &str, quoted"),
        (
            "host/runtime/src/engine.rs",
            "{other:?}",
            "the header's bytes, as a list",
        ),
        (
            "host/runtime/src/http.rs",
            "{code:?}",
            "a WASI HTTP error code, by name",
        ),
        ("host/gateway/src/admin_api.rs", "{o:?}", "a &str, quoted"),
        ("host/gateway/src/taobao.rs", "{s:?}", "a &str, quoted"),
        ("host/gateway/src/taobao.rs", "{ct:?}", "a &str, quoted"),
        ("host/gateway/src/taobao.rs", "{other:?}", "a &str, quoted"),
        ("host/gateway/src/taobao.rs", "{v:?}", "a &str, quoted"),
        ("host/gateway/src/server.rs", "{:?}", "a Duration: 5s"),
        (
            "host/gateway/src/console/pages.rs",
            "{m:?}",
            "a &str, quoted",
        ),
        (
            "host/gateway/src/console/pages.rs",
            "{line:?}",
            "a &str, quoted",
        ),
        (
            "host/protocol/src/tc3.rs",
            "{:?}",
            "lists of field names, quoted",
        ),
        ("host/protocol/src/rules.rs", "{other:?}", "a JSON value"),
        ("host/protocol/src/names.rs", "{name:?}", "a &str, quoted"),
        ("host/protocol/src/admin.rs", "{action:?}", "a &str, quoted"),
        ("host/protocol/src/admin.rs", "{q:?}", "a &str, quoted"),
        ("host/cli/src/commands/mod.rs", "{s:?}", "a &str, quoted"),
        ("host/cli/src/commands/serve.rs", "{s:?}", "a &str, quoted"),
        (
            "host/cli/src/commands/new.rs",
            "{:?}",
            "asserts in the tests `cloudfn new` writes",
        ),
        ("host/cli/src/commands/new.rs", "{name:?}", "a &str, quoted"),
        ("host/model/src/model.rs", "{other:?}", "a &str, quoted"),
        ("host/model/src/model.rs", "{k:?}", "a &str, quoted"),
        ("host/model/src/model.rs", "{host:?}", "a &str, quoted"),
        ("host/model/src/model.rs", "{p:?}", "a &str, quoted"),
        ("host/store/src/lib.rs", "{:?}", "a &str, quoted"),
        (
            "functions/wx_counter/src/lib.rs",
            "{text:?}",
            "a &str, quoted",
        ),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = std::collections::BTreeSet::new();
    let mut stack: Vec<std::path::PathBuf> = ["host", "guest-sdk", "functions"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                // Not for people: build output, test guests and fixtures, benchmarks.
                if ![
                    "target",
                    "node_modules",
                    "tests",
                    "test-guests",
                    "bench",
                    "fuzz",
                ]
                .contains(&name.as_str())
                {
                    stack.push(path);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "build.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // A module's unit tests sit at its end, after `#[cfg(test)]`.
            let code = text.split("#[cfg(test)]").next().unwrap();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            for line in code.lines() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                let mut rest = line;
                while let Some(open) = rest.find('{') {
                    rest = &rest[open..];
                    let Some(end) = rest.find('}') else { break };
                    let inner = &rest[1..end];
                    if let Some((arg, "?" | "#?")) = inner.split_once(':')
                        && arg
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    {
                        found.insert((rel.clone(), format!("{{{arg}:?}}")));
                    }
                    rest = &rest[1..];
                }
            }
        }
    }
    let listed: std::collections::BTreeSet<(String, String)> = LISTED
        .iter()
        .map(|(p, ph, _)| (p.to_string(), ph.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&listed).collect();
    assert!(
        new.is_empty(),
        "debug formatting in messages: show the value as people read it (no Some(..), \
         None or struct dumps), or, if it only quotes a string, list it here: {new:?}"
    );
    let gone: Vec<_> = listed.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "listed but no longer in the code: {gone:?}"
    );
}
