//! The function author's loop: `cloudfn new`, `cloudfn build`, the testing crate
//! (`cloudfn-testing`) driving the real pipeline, fixture files (`serve/invoke --fixture`),
//! `cloudfn dev` redeploying on save, and the CLI details a new user meets.

use crate::common::http::{ADMIN_TOKEN, TestServer};
use crate::common::*;
use cloudfn_gateway::server::ServeConfig;
use cloudfn_testing::{Config, Fixture, TestHost, examples};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Crates these tests create with `cloudfn new` build into one target dir (so the SDK compiles
/// once for all of them; their names differ), beside the guests' target dir, not in it: a
/// scaffolded `cloudbase_auth` would replace the example guest of the same name there.
fn wasm_target_dir() -> String {
    Path::new(guests::WASM_DIR)
        .ancestors()
        .nth(3)
        .unwrap()
        .join("wasm-test-builds")
        .display()
        .to_string()
}

fn cloudfn(dir: &Path, args: &[&str]) -> std::process::Output {
    Bin::new(dir)
        .command(args)
        .env("CARGO_TARGET_DIR", wasm_target_dir())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The component `cloudfn build` says it built.
fn component_in(build_output: &str) -> String {
    build_output
        .split_whitespace()
        .find(|w| w.ends_with(".wasm"))
        .unwrap_or_else(|| panic!("no component in {build_output}"))
        .to_string()
}

/// A file run of a scaffolded function as wxA's user o1, greeting Ada: its result.
fn greet_ada(dir: &Path, wasm: &str) -> Value {
    let run = ok(&cloudfn(
        dir,
        &[
            "invoke",
            wasm,
            "--appid",
            "wxA",
            "--openid",
            "o1",
            "--event",
            r#"{"name":"Ada"}"#,
        ],
    ));
    serde_json::from_str(run.trim()).unwrap()
}

/// A long-running `cloudfn` (serve, dev) whose output is read line by line as it comes:
/// stdout, and stderr too when asked. Killed on drop.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut cmd: Command, with_stderr: bool) -> Running {
        let stderr = if with_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let forward = |stream: Box<dyn std::io::Read + Send>,
                       tx: std::sync::mpsc::Sender<String>| {
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        };
        forward(Box::new(child.stdout.take().unwrap()), tx.clone());
        if let Some(err) = child.stderr.take() {
            forward(Box::new(err), tx);
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on containing `needle` (within 240 s: a first build of a
    /// crate may be in it).
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no {needle:?} in {:#?}", self.seen),
            }
        }
    }

    /// Every line read so far.
    fn text(&self) -> String {
        self.seen.join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two crates of one name in different folders, built into one target dir (a
/// `CARGO_TARGET_DIR` several crates share): each build gives that crate's own component, also
/// when cargo has built both before (cargo writes a cdylib under its bare name).
#[test]
fn crates_of_one_name_built_into_one_target_dir_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a/twin"), dir.path().join("b/twin"));
    for krate in [&a, &b] {
        std::fs::create_dir_all(krate.parent().unwrap()).unwrap();
        ok(&cloudfn(dir.path(), &["new", krate.to_str().unwrap()]));
    }
    let lib = b.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    assert!(code.contains("\"hello, {name}\""), "{code}");
    std::fs::write(&lib, code.replace("\"hello, {name}\"", "\"howdy, {name}\"")).unwrap();
    let greeting = |krate: &Path| -> String {
        let out = ok(&cloudfn(dir.path(), &["build", krate.to_str().unwrap()]));
        greet_ada(dir.path(), &component_in(&out))["greeting"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(greeting(&a), "hello, Ada");
    assert_eq!(greeting(&b), "howdy, Ada");
    // Both up to date for cargo now: each must still be itself.
    assert_eq!(greeting(&a), "hello, Ada");
    assert_eq!(greeting(&b), "howdy, Ada");
}

/// `cloudfn new` makes a crate that `cloudfn build` turns into a checked component, which
/// runs; `--auth` makes a `cloudbase_auth` that decides a share as the host asks it to.
#[test]
fn new_then_build_gives_a_component_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("hello");
    let out = ok(&cloudfn(dir.path(), &["new", krate.to_str().unwrap()]));
    assert!(out.contains("created function crate"), "{out}");
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/function.rs",
        "Cargo.lock",
    ] {
        assert!(krate.join(f).exists(), "{f} missing");
    }
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("guest-sdk") && manifest.contains("host/testing"),
        "{manifest}"
    );
    // Not over an existing crate.
    let (_, err) = failed(&cloudfn(dir.path(), &["new", krate.to_str().unwrap()]));
    assert!(err.contains("not empty"), "{err}");

    let out = ok(&cloudfn(dir.path(), &["build", krate.to_str().unwrap()]));
    assert!(out.contains("hello.wasm") && out.contains("KB"), "{out}");
    let wasm = component_in(&out);
    let v = greet_ada(dir.path(), &wasm);
    assert_eq!(v["greeting"], "hello, Ada");
    assert_eq!(v["openid"], "o1");
    // The folder itself runs too, built first as `deploy FOLDER` builds it.
    let v = greet_ada(dir.path(), krate.to_str().unwrap());
    assert_eq!(v["greeting"], "hello, Ada");

    // Not named cloudbase_auth: the seed fixture's crate of that name builds into the same
    // target dir, maybe meanwhile, and this test reads its product later (from the fixture).
    let auth = dir.path().join("acme_auth");
    ok(&cloudfn(
        dir.path(),
        &["new", auth.to_str().unwrap(), "--auth"],
    ));
    let out = ok(&cloudfn(dir.path(), &["build", auth.to_str().unwrap()]));
    let auth_wasm = component_in(&out);
    // The scaffolded cloudbase_auth decides a share in a fixture.
    let fixture = dir.path().join("f.toml");
    std::fs::write(
        &fixture,
        format!(
            r#"
[[app]]
appid = "wxA"
subject = "Acme"
sharing = true
[[app]]
appid = "wxB"
subject = "Acme"
[[app]]
appid = "wxC"
subject = "Acme"
[[env]]
name = "prod"
owner = "wxA"
[[function]]
env = "prod"
name = "cloudbase_auth"
wasm = "{auth_wasm}"
vars = {{ allowed_appids = "wxB" }}
[[function]]
env = "prod"
name = "hello"
wasm = "{wasm}"
[[share]]
env = "prod"
to = "wxB"
[[share]]
env = "prod"
to = "wxC"
"#
        ),
    )
    .unwrap();
    let f = fixture.to_str().unwrap();
    let call = |app: &str| {
        cloudfn(
            dir.path(),
            &[
                "invoke",
                "--fixture",
                f,
                "--env",
                "prod",
                "--name",
                "hello",
                "--from-appid",
                app,
                "--from-openid",
                "o2",
                "--event",
                r#"{"name":"Bo"}"#,
            ],
        )
    };
    let v: Value = serde_json::from_str(ok(&call("wxB")).trim()).unwrap();
    assert_eq!(v["from_appid"], "wxB");
    let (out, _) = failed(&call("wxC"));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["errcode"], -403001, "{v}");
}

/// `cloudfn new` works inside this repository too (under a workspace of its own, not the
/// enclosing one's).
#[test]
fn new_works_inside_the_cloudfn_repository() {
    let dir = tempfile::tempdir_in(repo().join("target")).unwrap();
    let krate = dir.path().join("inside_repo");
    ok(&cloudfn(dir.path(), &["new", krate.to_str().unwrap()]));
    let out = ok(&cloudfn(dir.path(), &["build", krate.to_str().unwrap()]));
    assert!(out.contains("inside_repo.wasm"), "{out}");
}

/// `cloudfn build` says what is wrong: not a crate, or a component of another world.
#[test]
fn build_refuses_what_is_not_a_cloud_function() {
    let dir = tempfile::tempdir().unwrap();
    let (_, err) = failed(&cloudfn(
        dir.path(),
        &["build", dir.path().to_str().unwrap()],
    ));
    // Both kinds of function folder are named.
    assert!(
        err.contains("not a function folder")
            && err.contains("Cargo.toml")
            && err.contains("package.json"),
        "{err}"
    );
    let wrong = repo().join("functions/test-guests/wrong_world");
    let (_, err) = failed(&cloudfn(dir.path(), &["build", wrong.to_str().unwrap()]));
    assert!(err.contains("cloud-function world"), "{err}");
}

/// The testing crate runs the one pipeline: same-app, granted and denied cross-app calls,
/// rules over cloudbase_auth's claims, an HTTP caller with a token, logs and records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testing_crate_drives_the_real_pipeline() {
    let host = TestHost::new().await.unwrap();
    for app in ["wxA", "wxB", "wxC"] {
        host.app(app, "Acme").await.unwrap();
    }
    host.env("prod", "wxA").await.unwrap();
    host.deploy("prod", "echo", guests::ECHO).await.unwrap();
    host.deploy_with(
        "prod",
        "users_add",
        guests::USERS_ADD,
        Config::with(|c| c.fs_write = true),
    )
    .await
    .unwrap();
    host.deploy_example_auth("prod", "wxB,wxC", "wxB=partner")
        .await
        .unwrap();
    host.share("prod", "wxB", "*").await.unwrap();
    host.share("prod", "wxC", "echo").await.unwrap();
    host.rules(
        "prod",
        r#"{"*": {"invoke": "auth != null"}, "users_add": {"invoke": "auth.custom.role == 'partner'"}}"#,
    )
    .await
    .unwrap();

    let own = host
        .call("prod", "echo")
        .user("wxA", "o-a")
        .event(json!({"x": 1}))
        .await;
    assert_eq!(own.ok()["context"]["OPENID"], "o-a");
    let granted = host.call("prod", "echo").from_app("wxB", "o-b").await;
    assert_eq!(granted.ok()["context"]["FROM_OPENID"], "o-b");
    // wxC is granted by cloudbase_auth but its role is not partner.
    let denied = host
        .call("prod", "users_add")
        .from_app("wxC", "o-c")
        .event(json!({"name": "Cy", "age": 3}))
        .await;
    assert_eq!(denied.err().errcode, -501019, "{:?}", denied.err());
    let record = denied.record(&host, "prod").await.unwrap();
    assert_eq!(record.errcode, -501019);
    assert_eq!(record.caller_appid.as_deref(), Some("wxC"));

    // Over HTTP with wxB's token: the same answers, through a real gateway.
    let http = host
        .call("prod", "echo")
        .from_app("wxB", "o-b")
        .event(json!({"y": 2}))
        .over_http()
        .await;
    assert_eq!(http.ok()["event"]["y"], 2);
    assert_eq!(http.ok()["context"]["SOURCE"], "wx_http");
    let http_denied = host
        .call("prod", "users_add")
        .from_app("wxC", "o-c")
        .over_http()
        .await;
    assert_eq!(http_denied.err().errcode, -501019);
    // A missing function is the protocol's error, typed.
    let missing = host.call("prod", "nope").user("wxA", "o").await;
    assert_eq!(missing.err().errcode, -501009);
}

/// A function crate deployed straight from its path (built on demand, once per process),
/// with its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testing_crate_builds_and_deploys_a_crate() {
    let host = TestHost::new().await.unwrap();
    host.app("wxA", "Acme").await.unwrap();
    host.env("prod", "wxA").await.unwrap();
    let chatty = repo().join("functions/test-guests/chatty");
    let v = host.deploy_crate("prod", "chatty", &chatty).await.unwrap();
    assert_eq!(v, 1);
    let out = host
        .call("prod", "chatty")
        .user("wxA", "o")
        .event(json!({"kb": 1}))
        .await;
    out.ok();
    assert!(!out.logs.is_empty(), "chatty logs");
    // The embedded example echo is there for tests that need something to call.
    host.deploy_bytes("prod", "echo", examples::ECHO, Config::default())
        .await
        .unwrap();
    let e = host.call("prod", "echo").await;
    assert_eq!(e.ok()["context"]["ENV"], "prod");
}

/// One fixture file reproduces the seed scenario (A shares with B; C is refused) for the
/// testing crate and for `cloudfn invoke --fixture`; loading it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixture_reproduces_the_seed_scenario() {
    let seed = repo().join("examples/fixtures/seed.toml");
    // Its crates build into the guests' target dir (already built: nothing to do).
    let fixture = Fixture::read(&seed).unwrap();
    let host = TestHost::new().await.unwrap();
    let built = |p: &Path| -> anyhow::Result<PathBuf> {
        let name = p.file_name().unwrap().to_str().unwrap();
        Ok(Path::new(guests::WASM_DIR).join(format!("{name}.wasm")))
    };
    for _ in 0..2 {
        fixture.apply(host.control(), &built).await.unwrap();
    }
    let versions = host.host().store().versions("prod", "echo").await.unwrap();
    assert_eq!(versions.len(), 1, "loading twice adds no version");
    let b = host
        .call("prod", "users_add")
        .from_app("wxB", "o1")
        .event(json!({"name":"Ada","age":36}))
        .await;
    b.ok();
    let c = host.call("prod", "echo").from_app("wxC", "o1").await;
    assert_eq!(c.err().errcode, -501019, "{:?}", c.err());

    // Bad fixtures are refused with the reason.
    let err = Fixture::parse("[[function]]\nenv = \"e\"\nname = \"f\"\n").unwrap_err();
    assert!(format!("{err:#}").contains("exactly one of"), "{err:#}");
    let err = Fixture::parse("[[app]]\nappid = \"wxA\"\ncolour = 1\n").unwrap_err();
    assert!(format!("{err:#}").contains("colour"), "{err:#}");
}

/// `invoke --fixture` and `serve --fixture` on the seed file, building its crates.
#[test]
fn serve_and_invoke_take_a_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let seed = repo().join("examples/fixtures/seed.toml");
    let seed = seed.to_str().unwrap();
    let call = |app: &str, name: &str| {
        cloudfn(
            dir.path(),
            &[
                "invoke",
                "--fixture",
                seed,
                "--env",
                "prod",
                "--name",
                name,
                "--from-appid",
                app,
                "--from-openid",
                "o1",
                "-q",
            ],
        )
    };
    let v: Value = serde_json::from_str(ok(&call("wxB", "echo")).trim()).unwrap();
    assert_eq!(v["context"]["FROM_APPID"], "wxB");
    let (out, _) = failed(&call("wxC", "echo"));
    assert!(out.contains("-501019"), "{out}");
    // invoke --fixture leaves the data dir alone.
    assert!(!dir.path().join("cloudfn.db").exists());

    let mut cmd = Bin::new(dir.path()).command(&[
        "serve",
        "--fixture",
        seed,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd.env("CARGO_TARGET_DIR", wasm_target_dir())
        .env("CLOUDFN_ADMIN_TOKEN", ADMIN_TOKEN);
    let mut serve = Running::start(cmd, false);
    serve.wait_for("app wxC (from the fixture)");
    let text = serve.text();
    drop(serve);
    assert!(text.starts_with("Serving HTTP on"), "{text}");
    for app in ["wxA", "wxB", "wxC"] {
        assert!(
            text.contains(&format!("app {app} (from the fixture): secret ")),
            "{text}"
        );
    }
    let ls = ok(&cloudfn(dir.path(), &["ls", "--env", "prod"]));
    assert!(ls.contains("users_add"), "{ls}");
}

/// The CLI as a new user meets it.
#[test]
fn cli_help_colour_and_file_runs() {
    let dir = tempfile::tempdir().unwrap();
    // Global options under their own heading, after the subcommand's own; the admin token's
    // minimum length is said.
    let help = ok(&cloudfn(dir.path(), &["deploy", "--help"]));
    let (own, global) = help.split_once("Global options:").expect("a heading");
    assert!(
        own.contains("--env") && !own.contains("--data-dir"),
        "{help}"
    );
    assert!(global.contains("--data-dir"), "{help}");
    let top = ok(&cloudfn(dir.path(), &["--help"]));
    assert!(top.contains("at least 16"), "{top}");

    // No colour codes in logs written to a file (stderr is not a terminal here).
    let out = Bin::new(dir.path())
        .command(&["invoke", guests::FAIL_PANIC])
        .env("CLOUDFN_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DEBUG"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");
    // On a terminal (a pseudo-terminal from util-linux `script`) they are coloured, unless
    // NO_COLOR is set.
    let on_a_terminal = |no_color: Option<&str>| {
        let line = format!(
            "{} --data-dir {} invoke {}",
            env!("CARGO_BIN_EXE_cloudfn"),
            dir.path().display(),
            guests::FAIL_PANIC
        );
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("CLOUDFN_LOG", "debug")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("util-linux `script`");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = on_a_terminal(None);
    assert!(tty.contains("DEBUG") && tty.contains('\x1b'), "{tty}");
    let tty = on_a_terminal(Some("1"));
    assert!(tty.contains("DEBUG") && !tty.contains('\x1b'), "{tty}");

    // A file run compiles once; the next run of the same bytes loads the cached artifact.
    let cache = dir.path().join("cache");
    let run = || {
        Bin::new(&dir.path().join("none"))
            .command(&["invoke", guests::ECHO])
            .env("XDG_CACHE_HOME", &cache)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(String::from_utf8_lossy(&first.stderr).contains("compiled"));
    let second = run();
    assert!(second.status.success());
    assert!(
        !String::from_utf8_lossy(&second.stderr).contains("compiled"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(first.stdout.len(), second.stdout.len());
}

/// `serve --demo` prints the banner and the demo credentials on one stream (stdout).
#[test]
fn serve_demo_prints_banner_and_credentials_together() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = Bin::new(dir.path()).serve(&["--demo"]);
    let mut serve = Running::start(cmd, false);
    serve.wait_for("try:");
    let text = serve.text();
    assert!(text.starts_with("Serving HTTP on"), "{text}");
    // The demo's admin token is new at each start, so the console can always be opened.
    assert!(
        text.contains("admin token (demo: a new one at each `serve --demo` start): cfadm_"),
        "{text}"
    );
    assert!(
        text.contains("/console (sign in with the admin token)"),
        "{text}"
    );
    assert!(
        text.contains("demo apps") && text.contains("secretKey"),
        "{text}"
    );
}

/// The admin API's invoke takes the event as an object as well as JSON text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_invoke_takes_an_event_object_or_text() {
    let s = World::new()
        .env("prod", "wxA")
        .deploy("prod", "echo", guests::ECHO)
        .serve(ServeConfig::default())
        .await;
    for body in [json!({"event": {"a": 1}}), json!({"event": "{\"a\":1}"})] {
        let v = admin_invoke(&s, &body).await;
        let result: Value = serde_json::from_str(v["result"].as_str().unwrap()).unwrap();
        assert_eq!(result["event"]["a"], 1, "{body}: {v}");
    }
    let v = admin_invoke(&s, &json!({})).await;
    let result: Value = serde_json::from_str(v["result"].as_str().unwrap()).unwrap();
    assert_eq!(result["event"], json!({}), "{v}");
}

async fn admin_invoke(s: &TestServer, body: &Value) -> Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(format!(
        "http://{}/v1/envs/prod/functions/echo/invoke",
        s.admin
    ))
    .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
    .body(http_body_util::Full::new(bytes::Bytes::from(
        body.to_string(),
    )))
    .unwrap();
    let resp = client.request(req).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// `examples/node/callFunction.js` prints what the README shows, and the README shows the
/// file as it is.
#[test]
fn the_node_example_prints_what_the_readme_shows() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let example = std::fs::read_to_string(repo().join("examples/node/callFunction.js")).unwrap();
    let body = &example[example.find("const tcb").unwrap()..];
    assert!(
        readme.contains(body.trim_end()),
        "README's Node snippet differs from the file"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(
        World::new()
            .env("prod-01", "wxA")
            .deploy("prod-01", "echo", guests::ECHO)
            .serve(ServeConfig::default()),
    );
    let node_dir = repo().join("tests/node");
    let out = Command::new("node")
        .current_dir(&node_dir)
        .args(["-r", "./guard.js"])
        .arg(repo().join("examples/node/callFunction.js"))
        .env("NODE_PATH", node_dir.join("node_modules"))
        .env("CLOUDFN_URL", format!("http://{}/admin", s.public))
        .env("SECRET_ID", &s.owner.secret_id)
        .env("SECRET_KEY", &s.owner.secret_key)
        .env("TENCENTCLOUD", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("{stdout} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["event"]["from"], "node", "{v}");
    assert_eq!(v["context"]["ENV"], "prod-01", "{v}");
    // The README's printed line names the same SOURCE.
    let shown = readme
        .lines()
        .find(|l| l.starts_with(r#"# prints {"context":{"#))
        .unwrap();
    let source = format!(r#""SOURCE":{}"#, v["context"]["SOURCE"]);
    assert!(
        shown.contains(&source),
        "README shows {shown}, the call gave {source}"
    );
    drop(s);
}

/// `cloudfn dev` serves an env, redeploys a crate when its source changes (calls keep being
/// answered throughout) and prints each call's logs.
#[test]
fn dev_redeploys_on_save_without_dropping_calls() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("greeter");
    ok(&cloudfn(dir.path(), &["new", krate.to_str().unwrap()]));
    let data = dir.path().join("data");
    let mut cmd = Bin::new(&data).command(&[
        "dev",
        "--env",
        "dev",
        "--owner",
        "wxD",
        krate.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    cmd.env("CARGO_TARGET_DIR", wasm_target_dir())
        .env("CLOUDFN_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("NO_COLOR", "1");
    // Both streams: progress goes to stdout, build errors to stderr.
    let mut dev = Running::start(cmd, true);
    dev.wait_for("deployed dev/greeter version 1");
    let admin = dev
        .wait_for("Admin API on http://")
        .trim_start_matches("Admin API on http://")
        .trim_end_matches('/')
        .to_string();
    dev.wait_for("watching");
    let call = move |name: &str| -> Value {
        let out = Bin::new(&data)
            .command(&[
                "--server",
                &format!("http://{admin}"),
                "--admin-token",
                ADMIN_TOKEN,
                "invoke",
                "--env",
                "dev",
                "--name",
                "greeter",
                "--appid",
                "wxD",
                "--openid",
                "o1",
                "--event",
                &format!(r#"{{"name":"{name}"}}"#),
                "-q",
            ])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stdout)))
    };
    assert_eq!(call("Ada")["greeting"], "hello, Ada");
    dev.wait_for("greeting Ada");

    // Calls keep coming while the crate is edited, rebuilt and redeployed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set once the caller has been answered by version 2.
    let upgraded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = {
        let (stop, upgraded) = (stop.clone(), upgraded.clone());
        let call = call.clone();
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let answer = call("Bo");
                if answer["greeting"] == "hi there, Bo" {
                    upgraded.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                answers.push(answer);
                std::thread::sleep(Duration::from_millis(50));
            }
            answers
        })
    };
    let lib = krate.join("src/lib.rs");
    let src = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        src.replace("\"hello, {name}\"", "\"hi there, {name}\""),
    )
    .unwrap();
    dev.wait_for("deployed dev/greeter version 2");
    // The calls go on across the switch: stop them once one has been answered by version 2.
    within_blocking(
        Duration::from_secs(20),
        "a call from the caller answered by version 2",
        || upgraded.load(std::sync::atomic::Ordering::Relaxed) || caller.is_finished(),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers = caller.join().unwrap();
    assert!(!answers.is_empty());
    for a in &answers {
        let g = a["greeting"]
            .as_str()
            .unwrap_or_else(|| panic!("dropped call: {a}"));
        assert!(g == "hello, Bo" || g == "hi there, Bo", "{a}");
    }
    assert_eq!(call("Cy")["greeting"], "hi there, Cy");
    // A change that does not build keeps the last good version serving.
    std::fs::write(&lib, "this is not rust").unwrap();
    dev.wait_for("previous version keeps serving");
    assert_eq!(call("Di")["greeting"], "hi there, Di");
}
