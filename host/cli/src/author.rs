//! The function author's loop: `cloudfn new` (a function crate with a passing test), `cloudfn
//! build` (a checked wasm32-wasip2 component) and `cloudfn dev` (a locally served env that
//! rebuilds and redeploys crates on save and prints each call's logs as it happens).

use crate::args::{BuildArgs, DevArgs, NewArgs};
use anyhow::{Context, bail};
use cloudfn_builder::{self as build, BuildOptions};
use cloudfn_gateway::server::{ServeConfig, Server};
use cloudfn_invoke::Host;
use cloudfn_invoke::fixture::Fixture;
use cloudfn_store::{ActivationQuery, FunctionConfig, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The cloudfn source tree this binary was built from (its SDK and testing crate).
fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cloudfn new PATH [--auth]`.
pub fn new(args: &NewArgs) -> anyhow::Result<i32> {
    let source = args.cloudfn_source.clone().unwrap_or_else(built_from);
    let source = source.canonicalize().with_context(|| {
        format!(
            "the cloudfn source tree {} is not there; pass --cloudfn-source (or CLOUDFN_SOURCE) \
             pointing at a checkout of cloudfn",
            source.display()
        )
    })?;
    if !source.join("guest-sdk/Cargo.toml").exists() {
        bail!(
            "{} is not a cloudfn source tree (no guest-sdk/); pass --cloudfn-source",
            source.display()
        );
    }
    let dir = &args.path;
    if dir.exists() && dir.read_dir()?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the path needs a last component: the function's name")?
        .to_string();
    cloudfn_store::names::validate_function_name(&name)
        .map_err(|e| anyhow::anyhow!("{name:?} cannot name a function: {e}"))?;
    if args.auth && name != "cloudbase_auth" {
        eprintln!(
            "note: deploy it as `cloudbase_auth` (the name the host calls): cloudfn deploy --name cloudbase_auth …"
        );
    }
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    let package = name.replace('_', "-");
    let fill = |t: &str| {
        t.replace("@NAME@", &name)
            .replace("@PACKAGE@", &package)
            .replace("@IDENT@", &name.replace('-', "_"))
            .replace("@SDK@", &source.join("guest-sdk").display().to_string())
            .replace(
                "@TESTING@",
                &source.join("host/testing").display().to_string(),
            )
    };
    let (lib, test) = if args.auth {
        (AUTH_LIB, AUTH_TEST)
    } else {
        (PLAIN_LIB, PLAIN_TEST)
    };
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(dir.join("src/lib.rs"), fill(lib))?;
    std::fs::write(dir.join("tests/function.rs"), fill(test))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    // The versions cloudfn itself is built and tested with, so the test's host builds as it.
    if let Ok(lock) = std::fs::read(source.join("Cargo.lock")) {
        std::fs::write(dir.join("Cargo.lock"), lock)?;
    }
    println!("created function crate {} ({name})", dir.display());
    println!(
        "  cd {} && cargo test        # its tests, on an in-process cloudfn",
        dir.display()
    );
    println!(
        "  cloudfn build {}            # the component to deploy",
        dir.display()
    );
    Ok(0)
}

/// `cloudfn build [PATH]`.
pub fn build_cmd(args: &BuildArgs) -> anyhow::Result<i32> {
    if cloudfn_builder::js::is_js_function(&args.path) {
        let (built, t) = cloudfn_builder::js::build_js(&args.path, args.out.as_deref())?;
        println!(
            "built {} ({:.1} MB), a component of the cloud-function world, from JavaScript \
             (dependencies {} ms, bundle {} ms, componentize {} ms); deploy it with \
             `cloudfn deploy --env ENV --name {} {}`",
            built.wasm.display(),
            built.size as f64 / (1024.0 * 1024.0),
            t.deps_ms,
            t.bundle_ms,
            t.componentize_ms,
            built.package,
            built.wasm.display()
        );
        return Ok(0);
    }
    if args.out.is_some() {
        anyhow::bail!(
            "--out is for JavaScript functions; a crate's component is in its target dir"
        );
    }
    let built = build::build_crate(&args.path, &BuildOptions::default())?;
    println!(
        "built {} ({:.1} KB), a component of the cloud-function world",
        built.wasm.display(),
        built.size as f64 / 1024.0
    );
    Ok(0)
}

/// `cloudfn dev --env ENV [PATH…]`.
pub async fn dev(
    data_dir: &Path,
    admin_token: Option<String>,
    args: &DevArgs,
) -> anyhow::Result<i32> {
    let host = Host::open(data_dir)
        .await
        .with_context(|| format!("opening data dir {}", data_dir.display()))?;
    if let Some(path) = &args.fixture {
        let fixture = Fixture::read(path)?;
        let created = fixture
            .apply(&host, &|p| Ok(build::build_function(p)?.wasm))
            .await?;
        print_created(&created);
    }
    if host.store().app(&args.owner).await.is_err() {
        // Through the host, not the store, so the app's creation is in the audit log.
        let creds = host.create_app(&args.owner, None).await?;
        print_created(&[creds]);
    }
    match host.create_env(&args.env, &args.owner).await {
        Ok(_) | Err(StoreError::EnvExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let crates: Vec<PathBuf> = args
        .paths
        .iter()
        .map(|p| {
            p.canonicalize()
                .with_context(|| format!("{} is not there", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    for c in &crates {
        if let Err(e) = rebuild(&host, &args.env, c).await {
            eprintln!("[cloudfn dev] {e:#}");
        }
    }
    let config = ServeConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        admin_token,
        ..ServeConfig::default()
    };
    // Records from here on are printed: taken before serving, so no call can slip in between.
    let printed_up_to = latest_record(&host, &args.env).await;
    let server = Server::bind(host.clone(), config).await?;
    if let Some(token) = &server.generated_admin_token {
        println!("admin token (shown once): {token}");
    }
    println!("Serving HTTP on http://{}/", server.public_addr());
    println!("Admin API on http://{}/", server.admin_addr());
    println!(
        "[cloudfn dev] watching {} crate(s); env {} redeploys on save (Ctrl-C stops)",
        crates.len(),
        args.env
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let _watcher = watch(&crates, tx)?;
    tokio::spawn(print_calls(host.clone(), args.env.clone(), printed_up_to));
    let redeploys = {
        let (host, env) = (host.clone(), args.env.clone());
        tokio::spawn(async move {
            while let Some(changed) = rx.recv().await {
                // Editors write several files per save: let them settle, then build once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut todo = vec![changed];
                while let Ok(more) = rx.try_recv() {
                    todo.push(more);
                }
                todo.sort();
                todo.dedup();
                for c in todo {
                    if let Err(e) = rebuild(&host, &env, &c).await {
                        eprintln!("[cloudfn dev] {e:#} (the previous version keeps serving)");
                    }
                }
            }
        })
    };
    server.run(cloudfn_gateway::server::shutdown_signal()).await;
    redeploys.abort();
    host.flush_records().await;
    Ok(0)
}

fn print_created(created: &[cloudfn_store::AppCredentials]) {
    for c in created {
        println!(
            "app {}: secret {}  secretId {}  secretKey {}",
            c.appid, c.secret, c.secret_id, c.secret_key
        );
    }
}

/// Builds the crate at `path` and deploys it into `env` under its crate name, unless the
/// active version is already this component.
async fn rebuild(host: &Arc<Host>, env: &str, path: &Path) -> anyhow::Result<()> {
    let p = path.to_path_buf();
    let built = tokio::task::spawn_blocking(move || build::build_function(&p)).await??;
    let name = built.package.replace('-', "_");
    let wasm = std::fs::read(&built.wasm)?;
    let config = host
        .store()
        .versions(env, &name)
        .await
        .ok()
        .and_then(|v| v.into_iter().find(|v| v.active).map(|v| v.config))
        .unwrap_or_else(FunctionConfig::default);
    let info = host.deploy(env, &name, &wasm, config).await?;
    println!(
        "[cloudfn dev] deployed {env}/{name} version {} ({:.1} KB)",
        info.version,
        built.size as f64 / 1024.0
    );
    Ok(())
}

/// Watches each function's sources (a crate's, or a JavaScript folder's); sends the one whose
/// files changed.
fn watch(
    crates: &[PathBuf],
    tx: tokio::sync::mpsc::UnboundedSender<PathBuf>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let roots = crates.to_vec();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            let relevant = path.extension().is_some_and(|e| {
                ["rs", "toml", "wit", "js", "mjs", "cjs", "json"].contains(&&*e.to_string_lossy())
            });
            // Build output (a JavaScript function's is its `.cloudfn`) must not trigger a build.
            let output = |c: std::path::Component| {
                ["target", ".cloudfn", "node_modules"].contains(&&*c.as_os_str().to_string_lossy())
            };
            if !relevant || path.components().any(output) {
                continue;
            }
            if let Some(root) = roots.iter().find(|r| path.starts_with(r)) {
                let _ = tx.send(root.clone());
            }
        }
    })?;
    for c in crates {
        watcher
            .watch(c, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", c.display()))?;
    }
    Ok(watcher)
}

/// The `seq` of `env`'s newest activation record (0 when it has none).
async fn latest_record(host: &Host, env: &str) -> i64 {
    host.flush_records().await;
    host.store()
        .activations(&ActivationQuery {
            env: env.to_string(),
            limit: Some(1),
            ..Default::default()
        })
        .await
        .ok()
        .and_then(|r| r.last().map(|a| a.seq))
        .unwrap_or(0)
}

/// Prints each call of `env` after record `after` with its log lines, as the records arrive.
async fn print_calls(host: Arc<Host>, env: String, mut after: i64) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        host.flush_records().await;
        let Ok(records) = host
            .store()
            .activations(&ActivationQuery {
                env: env.clone(),
                name: None,
                after: Some(after),
                limit: Some(1000),
                ..Default::default()
            })
            .await
        else {
            continue;
        };
        for a in &records {
            after = a.seq;
            let outcome = if a.errcode == 0 {
                "ok".to_string()
            } else {
                format!("errcode {} {}", a.errcode, a.errmsg)
            };
            println!(
                "[call] {}@{} by {} in {:.1} ms: {outcome}",
                a.function,
                a.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.caller_appid.as_deref().unwrap_or("-"),
                a.duration_us as f64 / 1000.0
            );
            for line in &a.logs {
                println!("    [{}] {}", line.tag(), line.message);
            }
        }
    }
}

const CARGO_TOML: &str = r#"[package]
name = "@PACKAGE@"
version = "0.1.0"
edition = "2024"
publish = false

# A cloud function is a library built as a wasm component: `cloudfn build`.
[lib]
crate-type = ["cdylib"]

[dependencies]
cloudfn-sdk = { path = "@SDK@" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

# Its tests run the function on cloudfn's real host, in-process (no server, no account).
[dev-dependencies]
anyhow = "1"
cloudfn-testing = { path = "@TESTING@" }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

# The tests run wasmtime, which is very slow unoptimised; optimising the dependencies alone
# keeps your own code quick to rebuild.
[profile.dev.package."*"]
opt-level = 1
debug = "line-tables-only"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# A workspace of its own, wherever it is created.
[workspace]
"#;

const PLAIN_LIB: &str = r#"//! `@NAME@`: a cloud function. Greets the caller by name and says who called.

use cloudfn_sdk::{Error, WxContext};
use serde::Deserialize;
use serde_json::{Value, json};

/// The event this function takes.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Event {
    name: Option<String>,
}

#[cloudfn_sdk::function]
fn @IDENT@(event: Event, ctx: &WxContext) -> Result<Value, Error> {
    let Some(name) = event.name else {
        return Err(Error::with_code("MISSING_NAME", "the event needs a name"));
    };
    cloudfn_sdk::info!("greeting {name}");
    Ok(json!({
        "greeting": format!("hello, {name}"),
        // The caller: APPID/OPENID for the env's own app, FROM_APPID/FROM_OPENID for a user
        // of an app the env is shared with.
        "appid": ctx.appid,
        "openid": ctx.openid,
        "from_appid": ctx.from_appid,
        "from_openid": ctx.from_openid,
    }))
}
"#;

const PLAIN_TEST: &str = r#"//! `@NAME@` on cloudfn's real host, in-process: the same pipeline as the server (sharing
//! checks, `cloudbase_auth`, rules), with no server, no cloud account and no secrets.

use cloudfn_testing::TestHost;
use serde_json::json;

/// App wxA owns env `prod` with this function; wxA shares it with wxB (same company), whose
/// users `cloudbase_auth` grants; wxC (same company) has a share but is not granted.
async fn world() -> anyhow::Result<TestHost> {
    let host = TestHost::new().await?;
    for app in ["wxA", "wxB", "wxC"] {
        host.app(app, "Acme").await?;
    }
    host.env("prod", "wxA").await?;
    host.deploy_crate("prod", "@NAME@", env!("CARGO_MANIFEST_DIR")).await?;
    host.deploy_example_auth("prod", "wxB", "wxB=partner").await?;
    host.share("prod", "wxB", "*").await?;
    host.share("prod", "wxC", "*").await?;
    Ok(host)
}

#[tokio::test]
async fn greets_a_user_of_its_own_app() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "@NAME@")
        .user("wxA", "o-user-1")
        .event(json!({"name": "Ada"}))
        .await;
    assert_eq!(out.ok()["greeting"], "hello, Ada");
    assert_eq!(out.ok()["openid"], "o-user-1");
    assert!(out.log_text().contains("greeting Ada"), "{}", out.log_text());
    Ok(())
}

#[tokio::test]
async fn a_granted_app_calls_across_apps() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "@NAME@")
        .from_app("wxB", "o-b-1")
        .event(json!({"name": "Bo"}))
        .await;
    assert_eq!(out.ok()["from_appid"], "wxB");
    assert_eq!(out.ok()["from_openid"], "o-b-1");
    Ok(())
}

#[tokio::test]
async fn an_app_cloudbase_auth_does_not_grant_is_refused() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "@NAME@")
        .from_app("wxC", "o-c-1")
        .event(json!({"name": "Cy"}))
        .await;
    // cloudbase_auth's own errCode comes back to the caller (protocol §5).
    assert_eq!(out.err().errcode, -403001, "{:?}", out.err());
    Ok(())
}

#[tokio::test]
async fn a_missing_name_is_the_functions_own_error() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "@NAME@").user("wxA", "o-user-1").await;
    // -504002: the function failed (here: returned an error).
    assert_eq!(out.err().errcode, -504002, "{:?}", out.err());
    assert!(out.err().errmsg.contains("the event needs a name"), "{:?}", out.err());
    Ok(())
}
"#;

const AUTH_LIB: &str = r#"//! `@NAME@`: the `cloudbase_auth` of a shared env. The host calls it for each caller from
//! another app before that caller's call runs; errCode 0 grants, and `auth` (a JSON object as
//! a string) becomes `auth.custom` in the env's security rules.

use cloudfn_sdk::{Error, WxContext};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Reply {
    err_code: i64,
    err_msg: String,
    auth: String,
}

/// Grants the apps listed in the variable `allowed_appids` (comma-separated), with claim
/// `role` = `member`; refuses every other app.
#[cloudfn_sdk::function]
fn @IDENT@(_event: Value, ctx: &WxContext) -> Result<Reply, Error> {
    let from_appid = ctx.from_appid.clone().unwrap_or_default();
    let allowed = cloudfn_sdk::var("allowed_appids").unwrap_or_default();
    if from_appid.is_empty() || !allowed.split(',').any(|a| a.trim() == from_appid) {
        cloudfn_sdk::warn!("refused app {from_appid}");
        return Ok(Reply {
            err_code: -403001,
            err_msg: format!("app {from_appid} may not use this env"),
            auth: String::new(),
        });
    }
    let claims = json!({ "role": "member", "fromOpenid": ctx.from_openid });
    Ok(Reply {
        err_code: 0,
        err_msg: String::new(),
        auth: claims.to_string(),
    })
}
"#;

const AUTH_TEST: &str = r##"//! `@NAME@` deciding who may use a shared env, on cloudfn's real host in-process: calls from
//! other apps go through the share, this function and the env's rules as on the server.

use cloudfn_testing::{Config, TestHost, examples};
use serde_json::json;

/// App wxA owns env `prod` (this function as its `cloudbase_auth`, allowing wxB, and the
/// example echo to call); wxB and wxC (same company) both have a share.
async fn world() -> anyhow::Result<TestHost> {
    let host = TestHost::new().await?;
    for app in ["wxA", "wxB", "wxC"] {
        host.app(app, "Acme").await?;
    }
    host.env("prod", "wxA").await?;
    let config = Config::vars([("allowed_appids", "wxB")]);
    host.deploy_crate_with("prod", "cloudbase_auth", env!("CARGO_MANIFEST_DIR"), config)
        .await?;
    host.deploy_bytes("prod", "echo", examples::ECHO, Config::default())
        .await?;
    host.share("prod", "wxB", "*").await?;
    host.share("prod", "wxC", "*").await?;
    // Only members may call.
    host.rules("prod", r#"{"*": {"invoke": "auth.custom.role == 'member'"}}"#)
        .await?;
    Ok(host)
}

#[tokio::test]
async fn an_allowed_app_is_granted() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host
        .call("prod", "echo")
        .from_app("wxB", "o-b-1")
        .event(json!({"hi": 1}))
        .await;
    assert_eq!(out.ok()["context"]["FROM_APPID"], "wxB");
    assert_eq!(out.ok()["event"]["hi"], 1);
    Ok(())
}

#[tokio::test]
async fn another_app_is_refused() -> anyhow::Result<()> {
    let host = world().await?;
    let out = host.call("prod", "echo").from_app("wxC", "o-c-1").await;
    // cloudbase_auth's own errCode comes back to the caller (protocol §5).
    assert_eq!(out.err().errcode, -403001, "{:?}", out.err());
    Ok(())
}
"##;
