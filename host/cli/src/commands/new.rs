//! `cloudfn new`: creates a function crate (a plain function, or with `--auth` a
//! `cloudbase_auth`) with a passing test that runs it on cloudfn's real host, in-process.

use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// `cloudfn new`.
#[derive(Debug, Args)]
pub struct NewCommand {
    /// The new crate's directory (its last component is the function's name).
    pub path: PathBuf,
    /// A `cloudbase_auth` function (decides who may use a shared env) instead of a plain one.
    #[arg(long)]
    pub auth: bool,
    /// The cloudfn source tree whose SDK and testing crate the new crate uses [default: the
    /// one this binary was built from].
    #[arg(long, env = "CLOUDFN_SOURCE")]
    pub cloudfn_source: Option<PathBuf>,
}

impl NewCommand {
    /// `cloudfn new PATH [--auth]`.
    pub fn execute(&self) -> anyhow::Result<i32> {
        let source = self.cloudfn_source.clone().unwrap_or_else(built_from);
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
        let dir = &self.path;
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
        if self.auth && name != "cloudbase_auth" {
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
        let (lib, test) = if self.auth {
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
}

/// The cloudfn source tree this binary was built from (its SDK and testing crate).
fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
