//! The `cloudfn` binary end to end: env, deploy, ls, versions, rollback, rm, invoke (deployed
//! and from a file), the demo, and deploys interrupted by a crash at every step.

use crate::common;

use common::guests as paths;
use common::{Bin, failed, ok};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;

fn cloudfn(data_dir: &Path, args: &[&str]) -> Output {
    Bin::new(data_dir).run(args)
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&cloudfn(
        dir.path(),
        &["app", "create", "wxA", "--subject", "Acme"],
    ));
    ok(&cloudfn(
        dir.path(),
        &["env", "create", "prod", "--owner", "wxA"],
    ));
    let v = ok(&cloudfn(
        dir.path(),
        &["deploy", "--env", "prod", "--name", "echo", paths::ECHO],
    ));
    assert_eq!(v.trim(), "1");
    dir
}

#[test]
fn invoke_with_caller_identity_prints_event_and_context() {
    let dir = setup();
    let from_b = [
        "invoke",
        "--env",
        "prod",
        "--name",
        "echo",
        "--from-appid",
        "wxB",
        "--from-openid",
        "o1",
        "--event",
        r#"{"a":1}"#,
    ];
    // A call as another app goes through the sharing checks, locally too: no share, no call.
    let (stdout, _) = failed(&cloudfn(dir.path(), &from_b));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["errcode"],
        -501019
    );
    // Share prod with wxB (same subject, sharing on, a cloudbase_auth that allows wxB).
    ok(&cloudfn(
        dir.path(),
        &["app", "create", "wxB", "--subject", "Acme"],
    ));
    ok(&cloudfn(dir.path(), &["app", "sharing", "wxA", "on"]));
    ok(&cloudfn(
        dir.path(),
        &[
            "deploy",
            "--env",
            "prod",
            "--name",
            "cloudbase_auth",
            paths::CLOUDBASE_AUTH,
            "--var",
            "allowed_appids=wxB",
        ],
    ));
    ok(&cloudfn(
        dir.path(),
        &[
            "share",
            "add",
            "--env",
            "prod",
            "--to",
            "wxB",
            "--perm",
            "functions:invoke",
        ],
    ));
    let out = ok(&cloudfn(dir.path(), &from_b));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"], json!({"a":1}));
    assert_eq!(v["context"]["FROM_APPID"], "wxB");
    assert_eq!(v["context"]["FROM_OPENID"], "o1");
    assert_eq!(v["context"]["ENV"], "prod");
    assert!(v["context"].get("OPENID").is_none());
    assert!(v["context"].get("APPID").is_none());
}

#[test]
fn invoke_failures_print_protocol_errors_and_exit_nonzero() {
    let dir = setup();
    let (stdout, _) = failed(&cloudfn(
        dir.path(),
        &["invoke", "--env", "prod", "--name", "nope"],
    ));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errcode"], -501009);
    let (stdout, _) = failed(&cloudfn(
        dir.path(),
        &["invoke", "--env", "gone", "--name", "echo"],
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()["errcode"],
        -501000
    );
    ok(&cloudfn(
        dir.path(),
        &[
            "deploy",
            "--env",
            "prod",
            "--name",
            "boom",
            paths::FAIL_PANIC,
        ],
    ));
    let (stdout, stderr) = failed(&cloudfn(
        dir.path(),
        &["invoke", "--env", "prod", "--name", "boom"],
    ));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["errcode"], -504002);
    assert!(
        stderr.contains("[stderr]") && stderr.contains("deliberate panic"),
        "{stderr}"
    );
}

#[test]
fn event_from_file_and_version_listing_and_rollback() {
    let dir = setup();
    let event_file = dir.path().join("event.json");
    std::fs::write(&event_file, r#"{"from":"file"}"#).unwrap();
    let at = format!("@{}", event_file.display());
    let out = ok(&cloudfn(
        dir.path(),
        &["invoke", "--env", "prod", "--name", "echo", "--event", &at],
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["event"]["from"],
        "file"
    );

    let v2 = ok(&cloudfn(
        dir.path(),
        &[
            "deploy",
            "--env",
            "prod",
            "--name",
            "echo",
            paths::FAIL_ERROR,
            "--timeout",
            "1.5",
            "--memory",
            "64",
            "--var",
            "k=v",
        ],
    ));
    assert_eq!(v2.trim(), "2");
    let versions = ok(&cloudfn(
        dir.path(),
        &["versions", "--env", "prod", "--name", "echo"],
    ));
    let rows: Vec<Vec<&str>> = versions
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows[0][0], "2");
    assert_eq!(rows[0][1], "*");
    assert_eq!(rows[0][4], "1.5s");
    assert_eq!(rows[0][5], "64MB");
    assert_eq!(rows[1][0], "1");
    ok(&cloudfn(
        dir.path(),
        &["rollback", "--env", "prod", "--name", "echo", "--to", "1"],
    ));
    let ls = ok(&cloudfn(dir.path(), &["ls", "--env", "prod"]));
    assert_eq!(ls.lines().nth(1).unwrap(), "echo\t1\t2\tfunction");
    let (_, stderr) = failed(&cloudfn(
        dir.path(),
        &["rollback", "--env", "prod", "--name", "echo", "--to", "9"],
    ));
    assert!(stderr.contains("has no version 9"), "{stderr}");
    ok(&cloudfn(
        dir.path(),
        &["rm", "--env", "prod", "--name", "echo"],
    ));
    let ls = ok(&cloudfn(dir.path(), &["ls", "--env", "prod"]));
    assert_eq!(ls.lines().count(), 1, "{ls}");
}

/// A deploy's settings reach the host whatever text its variables hold: the CLI sends them in
/// a header (through the admin API, in-process here), which must not lose non-ASCII values.
#[test]
fn variables_beyond_ascii_are_deployed_as_written() {
    let dir = setup();
    let reply = r#"{"msg":"héllo 你好 🎉"}"#;
    let var = format!("reply={reply}");
    let v = ok(&cloudfn(
        dir.path(),
        &[
            "deploy",
            "--env",
            "prod",
            "--name",
            "say",
            paths::AUTH_REPLY,
            "--timeout",
            "2",
            "--var",
            &var,
        ],
    ));
    assert_eq!(v.trim(), "1");
    let out = ok(&cloudfn(
        dir.path(),
        &["invoke", "--env", "prod", "--name", "say", "--appid", "wxA"],
    ));
    assert_eq!(out.trim(), reply);
    let versions = ok(&cloudfn(
        dir.path(),
        &["versions", "--env", "prod", "--name", "say"],
    ));
    assert!(versions.contains("2s"), "{versions}");
}

/// An event as large as the host takes (here 5 MB, of its 6 MB) goes through the CLI on a
/// data dir, though it crosses the admin API's routes in-process (as JSON text, escaped).
#[test]
fn a_large_event_goes_through_the_cli() {
    let dir = setup();
    let event_file = dir.path().join("big.json");
    // 5 MB of JSON text: each `\"q\"` is the three characters `"q"`, and escaped again
    // (`\\\"q\\\"`) as the event crosses the API inside a JSON string, 9 MB there.
    let text = r#"\"q\""#.repeat(1024 * 1024);
    std::fs::write(&event_file, format!(r#"{{"big":"{text}"}}"#)).unwrap();
    let at = format!("@{}", event_file.display());
    let out = ok(&cloudfn(
        dir.path(),
        &["invoke", "--env", "prod", "--name", "echo", "--event", &at],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"]["big"].as_str().unwrap().len(), 3 * 1024 * 1024);
}

#[test]
fn deploy_errors_are_clear() {
    let dir = setup();
    let cases = [
        (
            vec![
                "deploy",
                "--env",
                "prod",
                "--name",
                "x1",
                paths::WRONG_WORLD,
            ],
            "does not export `cloudfn:function/handler`",
        ),
        (
            vec![
                "deploy",
                "--env",
                "prod",
                "--name",
                "x1",
                paths::WRONG_IMPORT,
            ],
            "imports `acme:billing/charge`",
        ),
        (
            vec!["deploy", "--env", "prod", "--name=-bad", paths::ECHO],
            "invalid function name",
        ),
        (
            vec!["deploy", "--env", "nope", "--name", "echo", paths::ECHO],
            "env not exists: nope",
        ),
        (
            vec!["deploy", "--env", "prod", "--name", "x1", "/no/such.wasm"],
            "reading /no/such.wasm",
        ),
        (
            vec![
                "deploy",
                "--env",
                "prod",
                "--name",
                "x1",
                paths::ECHO,
                "--var",
                "novalue",
            ],
            "expected K=V",
        ),
        (
            vec!["env", "create", "prod", "--owner", "wxA"],
            "env prod already exists",
        ),
        (
            vec!["env", "create", "../x", "--owner", "wxA"],
            "invalid env name",
        ),
        // A misspelt owner is refused, not registered as an app without credentials.
        (
            vec!["env", "create", "other", "--owner", "wxQ"],
            "app wxQ does not exist: register it first with `cloudfn app create wxQ",
        ),
    ];
    for (args, want) in cases {
        let (_, stderr) = failed(&cloudfn(dir.path(), &args));
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    let envs = ok(&cloudfn(dir.path(), &["env", "ls"]));
    assert_eq!(envs, "ENV\tOWNER\tFUNCTIONS\nprod\twxA\t1\n");
}

#[test]
fn invoke_a_wasm_file_directly_without_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let out = ok(&cloudfn(
        &data,
        &[
            "invoke",
            paths::ECHO,
            "--openid",
            "oX",
            "--appid",
            "wxA",
            "--source",
            "wx_client",
            "--event",
            r#"{"local":true}"#,
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"]["local"], true);
    assert_eq!(v["context"]["OPENID"], "oX");
    assert_eq!(v["context"]["SOURCE"], "wx_client");
    assert_eq!(v["context"]["FUNCTION_NAME"], "echo");
    assert!(!data.exists(), "a file run must not create a data dir");
    // A file run with variables and a time limit.
    let out = failed(&cloudfn(
        &data,
        &["invoke", paths::FAIL_LOOP, "--timeout", "0.2"],
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&out.0).unwrap()["errcode"],
        -501002
    );
}

#[test]
fn the_demo_fills_a_data_dir_and_calls_a_function() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&cloudfn(dir.path(), &["demo"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"]["name"], "Ada");
    assert_eq!(v["stored"]["context"]["SOURCE"], "wx_client,scf");
    // Running it again keeps what is there.
    ok(&cloudfn(dir.path(), &["demo"]));
    // The README's first call on the demo: wxB's user, through the share.
    let out = ok(&cloudfn(
        dir.path(),
        &[
            "invoke",
            "--env",
            "prod-demo",
            "--name",
            "echo",
            "--from-appid",
            "wxB",
            "--from-openid",
            "o1",
            "--event",
            r#"{"a":1}"#,
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["event"], json!({"a":1}));
    assert_eq!(v["context"]["FROM_APPID"], "wxB");
    assert_eq!(v["context"]["FROM_OPENID"], "o1");
    let ls = ok(&cloudfn(dir.path(), &["ls", "--env", "prod-demo"]));
    assert_eq!(
        ls,
        "NAME\tACTIVE\tVERSIONS\tKIND\ncloudbase_auth\t1\t1\tfunction\necho\t1\t1\tfunction\n\
         tb_app\t1\t1\thttp\ntt_todo\t1\t1\thttp\nusers_add\t1\t1\tfunction\nwx_counter\t1\t1\thttp\n"
    );
}

#[test]
fn a_deploy_interrupted_at_any_step_leaves_the_registry_consistent() {
    for step in [
        "deploy-after-blob",
        "deploy-after-artifact",
        "deploy-before-commit",
    ] {
        let dir = setup();
        let out = Bin::new(dir.path())
            .command(&[
                "deploy",
                "--env",
                "prod",
                "--name",
                "echo",
                paths::FAIL_ERROR,
            ])
            .env("CLOUDFN_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{step}: the deploy must have crashed"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("simulated crash"),
            "{step}"
        );
        // Only version 1 exists and it still runs.
        let versions = ok(&cloudfn(
            dir.path(),
            &["versions", "--env", "prod", "--name", "echo"],
        ));
        assert_eq!(versions.lines().count(), 2, "{step}: {versions}");
        let out = ok(&cloudfn(
            dir.path(),
            &[
                "invoke", "--env", "prod", "--name", "echo", "--event", "[1]",
            ],
        ));
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap()["event"],
            json!([1]),
            "{step}"
        );
        // No temp files are left behind, and the next deploy works.
        let v = ok(&cloudfn(
            dir.path(),
            &[
                "deploy",
                "--env",
                "prod",
                "--name",
                "echo",
                paths::FAIL_ERROR,
            ],
        ));
        assert_eq!(v.trim(), "2", "{step}");
        for sub in ["blobs", "artifacts"] {
            for entry in std::fs::read_dir(dir.path().join(sub)).unwrap() {
                let name = entry.unwrap().file_name();
                assert!(
                    !name.to_string_lossy().contains(".tmp-"),
                    "{step}: {name:?}"
                );
            }
        }
    }
}

#[test]
fn the_readme_walkthrough_runs_as_printed() {
    let stdout = common::run_example("walkthrough.sh");
    let lines: Vec<&str> = stdout.lines().collect();
    let invoked: Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.starts_with("{\"errcode\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(invoked["errcode"], 0);
    let data: Value = serde_json::from_str(invoked["resp_data"].as_str().unwrap()).unwrap();
    assert_eq!(data["event"], json!({"hello":"world"}));
    assert_eq!(data["context"]["OPENID"], "o-user-1");
    let node: Value = serde_json::from_str(
        lines
            .iter()
            .find(|l| l.contains(r#""event":{"from":"node"}"#))
            .unwrap_or_else(|| panic!("no Node result in {stdout}")),
    )
    .unwrap();
    assert_eq!(node["context"]["APPID"], "wxA");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("prod-01/echo@1 wxA") && l.ends_with(" ok"))
            .count(),
        2,
        "{stdout}"
    );
}

#[test]
fn serve_compiles_versions_without_an_artifact_before_any_call() {
    // A data dir whose artifacts are gone (as on a new host of a shared store): serve compiles
    // the active version in the background, so no call pays for it.
    let dir = setup();
    let artifacts = dir.path().join("artifacts");
    let listed = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&artifacts)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let before = listed();
    assert_eq!(before.len(), 1, "the deploy compiled echo once: {before:?}");
    std::fs::remove_file(&before[0]).unwrap();
    let mut child = Bin::new(dir.path())
        .serve(&[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    common::served_urls(&mut child);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Until the artifact is back under its own name (a compile writes a temporary file first
    // and renames it into place).
    while listed() != before && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        listed(),
        before,
        "serve compiled echo's artifact back without a call"
    );
}
