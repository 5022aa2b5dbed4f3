//! The embedded demo: a data dir with example apps, envs and functions (built from
//! `functions/` and compiled into this binary), so a newcomer sees cloudfn work in one command.

use anyhow::Context;
use cloudfn_invoke::{Control, Host, Identity, InvokeRequest};
use cloudfn_store::{AppCredentials, FunctionConfig, FunctionKind, SharedFunctions, StoreError};

// The example functions, built from `functions/` by the build script and embedded.
include!(concat!(env!("OUT_DIR"), "/demo_functions.rs"));
use std::path::Path;

/// The owner app of the demo envs.
pub const OWNER_APPID: &str = "wxA";
/// An app of the same company that the owner's `cloudbase_auth` allows.
pub const PARTNER_APPID: &str = "wxB";
/// The production env of the owner app.
pub const PROD_ENV: &str = "prod-demo";
/// The development env of the owner app.
pub const DEV_ENV: &str = "dev-demo";

/// Fills `data_dir` with the demo (keeping anything already there) and makes a first call.
pub async fn run(data_dir: &Path, store: cloudfn_store::StoreConfig) -> anyhow::Result<i32> {
    let options = cloudfn_invoke::Options {
        store,
        ..Default::default()
    };
    let svc = Host::open_with(data_dir, options).await?;
    populate(&Control::new(svc.clone())).await?;
    eprintln!("demo data dir: {}", data_dir.display());
    for env in svc.store().envs().await? {
        let names: Vec<String> = svc
            .store()
            .functions(&env.name)
            .await?
            .into_iter()
            .map(|f| format!("{}@{}", f.name, f.active_version))
            .collect();
        eprintln!(
            "  env {} (owner {}): {}",
            env.name,
            env.owner_appid,
            names.join(", ")
        );
    }
    let req = InvokeRequest::new(
        PROD_ENV,
        "users_add",
        r#"{"name":"Ada","age":36}"#,
        "wx_client",
    );
    let identity = Identity {
        appid: Some(OWNER_APPID.into()),
        openid: Some("o-demo-user-1".into()),
        ..Identity::default()
    };
    eprintln!(
        "\n$ cloudfn invoke --env {PROD_ENV} --name users_add --appid {OWNER_APPID} --openid o-demo-user-1 --source wx_client --event '{{\"name\":\"Ada\",\"age\":36}}'"
    );
    let inv = svc.invoke(req, identity).await;
    let code = match inv.result {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            println!("{}", e.to_json());
            1
        }
    };
    eprintln!(
        "\nTry next:\n  cloudfn --data-dir {d} invoke --env {PROD_ENV} --name echo --from-appid {PARTNER_APPID} --from-openid o1 --event '{{\"a\":1}}'\n  cloudfn --data-dir {d} ls --env {PROD_ENV}\n  cloudfn --data-dir {d} versions --env {PROD_ENV} --name echo",
        d = data_dir.display()
    );
    Ok(code)
}

/// The company both demo apps belong to.
pub const SUBJECT: &str = "Demo Co";

/// Gives the demo apps fresh credentials (only hashes are kept, so a restart cannot show the
/// old ones) and returns them.
pub async fn rotate_credentials(svc: &Control) -> anyhow::Result<Vec<AppCredentials>> {
    let mut creds = Vec::new();
    for appid in [OWNER_APPID, PARTNER_APPID] {
        creds.push(svc.rotate_secret(appid).await?);
    }
    Ok(creds)
}

/// The demo's Taobao cloud application: `env=test` is dev, `env=online` prod, both `tb_app`.
pub fn taobao_app() -> (String, cloudfn_gateway::taobao::TaobaoApp) {
    (
        OWNER_APPID.to_string(),
        cloudfn_gateway::taobao::TaobaoApp {
            test: DEV_ENV.into(),
            online: PROD_ENV.into(),
            service: "tb_app".into(),
        },
    )
}

async fn deploy_tb_app(svc: &Control, env: &str, secret: &str) -> anyhow::Result<()> {
    let config = FunctionConfig::with(|c| {
        c.kind = FunctionKind::Http;
        c.vars.insert("APP_SECRET".into(), secret.into());
    });
    svc.deploy(env, "tb_app", demo_wasm("tb_app"), config)
        .await
        .with_context(|| format!("deploying demo function {env}/tb_app"))?;
    Ok(())
}

/// Prints the demo credentials and a curl session against `addr`.
pub fn print_credentials(creds: &[AppCredentials], addr: std::net::SocketAddr) {
    println!("demo apps (credentials rotated at each `serve --demo` start):");
    for c in creds {
        println!(
            "  {}  secret {}  secretId {}  secretKey {}",
            c.appid, c.secret, c.secret_id, c.secret_key
        );
    }
    let owner = &creds[0];
    println!(
        "try:\n  TOKEN=$(curl -s 'http://{addr}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}' | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n  curl -s -X POST \"http://{addr}/tcb/invokecloudfunction?access_token=$TOKEN&env={PROD_ENV}&name=echo\" -d '{{\"hello\":\"world\"}}'",
        owner.appid, owner.secret
    );
}

/// Creates the demo apps and envs and deploys the example functions where they are missing.
pub async fn populate(svc: &Control) -> anyhow::Result<()> {
    for appid in [OWNER_APPID, PARTNER_APPID] {
        if svc.host().store().app(appid).await.is_err() {
            svc.create_app(appid, Some(SUBJECT)).await?;
        }
    }
    for env in [PROD_ENV, DEV_ENV] {
        match svc.create_env(env, OWNER_APPID).await {
            Ok(_) | Err(StoreError::EnvExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (env, name, wasm) in DEMO_FUNCTIONS
        .iter()
        .filter(|(name, _)| *name != "tb_app")
        .map(|(name, wasm)| (PROD_ENV, *name, *wasm))
        .chain(std::iter::once((DEV_ENV, "echo", demo_wasm("echo"))))
    {
        let exists = svc
            .host()
            .store()
            .functions(env)
            .await?
            .iter()
            .any(|f| f.name == name);
        if exists {
            continue;
        }
        let mut config = FunctionConfig::default();
        // The HTTP examples keep their state in the env directory.
        if matches!(name, "wx_counter" | "tt_todo") {
            config.kind = FunctionKind::Http;
            config.fs_write = true;
        }
        if name == "cloudbase_auth" {
            config
                .vars
                .insert("allowed_appids".into(), PARTNER_APPID.into());
            config
                .vars
                .insert("roles".into(), format!("{PARTNER_APPID}=partner"));
        }
        svc.deploy(env, name, wasm, config)
            .await
            .with_context(|| format!("deploying demo function {env}/{name}"))?;
    }
    // The Taobao example verifies `sign` with the owner's Taobao signing secret (what the
    // gateway signs with), never with a cloudfn credential. A demo data dir made before it had
    // one gets one, and its tb_app the same.
    let store = svc.host().store();
    let fresh = svc.host().taobao_secret(OWNER_APPID).await?.is_none();
    if fresh {
        let secret = cloudfn_store::secrets::random_hex(16);
        svc.set_taobao_secret(OWNER_APPID, Some(&secret)).await?;
    }
    let secret = svc
        .host()
        .taobao_secret(OWNER_APPID)
        .await?
        .context("the demo owner's Taobao signing secret")?;
    for env in [PROD_ENV, DEV_ENV] {
        let exists = store
            .functions(env)
            .await?
            .iter()
            .any(|f| f.name == "tb_app");
        if fresh || !exists {
            deploy_tb_app(svc, env, &secret).await?;
        }
    }
    // The partner app uses prod through a share; its cloudbase_auth grants role "partner", and
    // only partners may add users.
    if store.share(PROD_ENV, PARTNER_APPID).await?.is_none() {
        svc.set_sharing(OWNER_APPID, true).await?;
        svc.add_share(
            PROD_ENV,
            PARTNER_APPID,
            &["functions:invoke".to_string()],
            SharedFunctions::All,
            None,
        )
        .await?;
        svc.set_rules(PROD_ENV, DEMO_RULES).await?;
    }
    Ok(())
}

/// The demo's security rules for `prod-demo`.
pub const DEMO_RULES: &str = r#"{
  "*": {"invoke": "auth != null"},
  "users_add": {"invoke": "auth.custom.role == 'partner'"}
}"#;

fn demo_wasm(wanted: &str) -> &'static [u8] {
    DEMO_FUNCTIONS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, wasm)| *wasm)
        .expect("a demo function")
}
