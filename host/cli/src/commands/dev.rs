//! `cloudfn dev`: serves an env locally on the data dir, builds and deploys the given function
//! crates (or JavaScript folders), rebuilds and redeploys each on save, and prints each call's
//! logs as it happens.

use crate::Cli;
use anyhow::Context;
use clap::Args;
use cloudfn_builder as build;
use cloudfn_gateway::server::{ServeConfig, Server};
use cloudfn_invoke::fixture::Fixture;
use cloudfn_invoke::{Control, Host};
use cloudfn_store::{ActivationQuery, FunctionConfig, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `cloudfn dev`.
#[derive(Debug, Args)]
pub struct DevCommand {
    /// The env the functions are deployed into (created, owned by --owner, when missing).
    #[arg(long)]
    pub env: String,
    /// The app owning the env when it is created.
    #[arg(long, default_value = "wxdev")]
    pub owner: String,
    /// Function crates or JavaScript function folders to watch; each is deployed under its
    /// crate's (or package.json's) name.
    #[arg(default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Address of the public endpoints.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub admin_listen: std::net::SocketAddr,
    /// A fixture file to load first (apps, envs, shares, rules, other functions).
    #[arg(long)]
    pub fixture: Option<PathBuf>,
}

impl DevCommand {
    /// `cloudfn dev --env ENV [PATH…]`.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        let host = Host::open(&cli.data_dir)
            .await
            .with_context(|| format!("opening data dir {}", cli.data_dir.display()))?;
        let control = Control::new(host.clone());
        if let Some(path) = &self.fixture {
            let fixture = Fixture::read(path)?;
            let created = fixture
                .apply(&control, &|p| Ok(build::build_function(p)?.wasm))
                .await?;
            print_created(&created);
        }
        if host.store().app(&self.owner).await.is_err() {
            // Through the control plane, not the store, so the app's creation is in the audit
            // log.
            let creds = control.create_app(&self.owner, None).await?;
            print_created(&[creds]);
        }
        match control.create_env(&self.env, &self.owner).await {
            Ok(_) | Err(StoreError::EnvExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let crates: Vec<PathBuf> = self
            .paths
            .iter()
            .map(|p| {
                p.canonicalize()
                    .with_context(|| format!("{} is not there", p.display()))
            })
            .collect::<anyhow::Result<_>>()?;
        for c in &crates {
            if let Err(e) = rebuild(&control, &self.env, c).await {
                eprintln!("[cloudfn dev] {e:#}");
            }
        }
        let config = ServeConfig {
            listen: self.listen,
            admin_listen: self.admin_listen,
            admin_token: cli.admin_token.clone(),
            ..ServeConfig::default()
        };
        // Records from here on are printed: taken before serving, so no call can slip in between.
        let printed_up_to = latest_record(&host, &self.env).await;
        let server = Server::bind(host.clone(), config).await?;
        if let Some(token) = &server.generated_admin_token {
            println!("admin token (shown once): {token}");
        }
        println!("Serving HTTP on http://{}/", server.public_addr());
        println!("Admin API on http://{}/", server.admin_addr());
        println!(
            "[cloudfn dev] watching {} crate(s); env {} redeploys on save (Ctrl-C stops)",
            crates.len(),
            self.env
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let _watcher = watch(&crates, tx)?;
        tokio::spawn(print_calls(host.clone(), self.env.clone(), printed_up_to));
        let redeploys = {
            let (control, env) = (control.clone(), self.env.clone());
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
                        if let Err(e) = rebuild(&control, &env, &c).await {
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
async fn rebuild(control: &Control, env: &str, path: &Path) -> anyhow::Result<()> {
    let p = path.to_path_buf();
    let built = tokio::task::spawn_blocking(move || build::build_function(&p)).await??;
    let name = built.package.replace('-', "_");
    let wasm = std::fs::read(&built.wasm)?;
    let config = control
        .host()
        .store()
        .versions(env, &name)
        .await
        .ok()
        .and_then(|v| v.into_iter().find(|v| v.active).map(|v| v.config))
        .unwrap_or_else(FunctionConfig::default);
    let info = control.deploy(env, &name, &wasm, config).await?;
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
