//! The `cloudfn` commands: serving, apps, environments, deploys, versions, invocation (local,
//! from a file, or against a server), and activation logs, printed for people (tables,
//! logs on stderr, results on stdout).

use crate::args::*;
use crate::client::{AdminClient, Backend};
use anyhow::{Context, bail};
use cloudfn_gateway::admin_api::{AdminInvocation, AdminInvoke, NewShare};
use cloudfn_gateway::server::{ServeConfig, Server, new_admin_token};
use cloudfn_invoke::{EngineConfig, Host, Identity, InvokeRequest, Limits, Options};
use cloudfn_store::{ActivationQuery, AppCredentials, AuditQuery, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Runs the CLI; returns the process exit code. On a data dir, an error about something that
/// is not there names the data dir it looked in (a forgotten --data-dir is the usual cause).
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let local = cli.server.is_none() && cli.store.is_none();
    let data_dir = cli.data_dir.clone();
    run_command(cli).await.map_err(|e| {
        let missing = matches!(
            e.downcast_ref::<StoreError>(),
            Some(
                StoreError::EnvNotFound(_)
                    | StoreError::AppNotFound(_)
                    | StoreError::FunctionNotFound { .. }
            )
        );
        if local && missing {
            e.context(format!(
                "in data dir {} (--data-dir, CLOUDFN_DATA_DIR)",
                data_dir.display()
            ))
        } else {
            e
        }
    })
}

/// Whether a command only reads state: on a data dir that is not there, it has nothing to
/// read, and must not make one.
fn reads_only(command: &Command) -> bool {
    matches!(
        command,
        Command::Ls { .. }
            | Command::Versions { .. }
            | Command::Logs { .. }
            | Command::Audit { .. }
            | Command::Invoke(_)
            | Command::App(AppCommand::Ls)
            | Command::Env(EnvCommand::Ls)
            | Command::Share(ShareCommand::Ls { .. })
            | Command::Rules(RulesCommand::Get { .. })
    )
}

async fn run_command(cli: Cli) -> anyhow::Result<i32> {
    match &cli.command {
        Command::Serve(args) => return serve(&cli, args).await,
        Command::Invoke(args) if args.file.is_some() => {
            return invoke_file(&cli.data_dir, args).await;
        }
        Command::Invoke(args) if args.fixture.is_some() => {
            return invoke_fixture(args).await;
        }
        Command::New(args) => return crate::author::new(args),
        Command::Build(args) => return crate::author::build_cmd(args),
        Command::Dev(args) => {
            return crate::author::dev(&cli.data_dir, cli.admin_token.clone(), args).await;
        }
        Command::Invoke(args) => return invoke(&backend(&cli).await?, args).await,
        Command::Demo => return crate::demo::run(&cli.data_dir, store_config(&cli, false)).await,
        Command::Migrate => return migrate(&cli).await,
        Command::App(AppCommand::Create { appid, subject }) => {
            let creds = backend(&cli)
                .await?
                .create_app(appid, subject.as_deref())
                .await?;
            print_credentials(&creds);
        }
        Command::App(AppCommand::RotateSecret { appid }) => {
            let creds = backend(&cli).await?.rotate_secret(appid).await?;
            print_credentials(&creds);
        }
        Command::App(AppCommand::RevokeSessions { appid }) => {
            let generation = backend(&cli).await?.revoke_sessions(appid).await?;
            println!("revoked every session of {appid}'s users (session generation {generation})");
        }
        Command::App(AppCommand::Ls) => {
            let mut out = String::from("APPID\tSUBJECT\tSECRET_ID\n");
            for a in backend(&cli).await?.apps().await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    a.appid,
                    a.subject.unwrap_or_default(),
                    a.secret_id.unwrap_or_else(|| "(no credentials)".into())
                ));
            }
            print!("{out}");
        }
        Command::App(AppCommand::Sharing { appid, state }) => {
            backend(&cli)
                .await?
                .set_sharing(appid, state == "on")
                .await?;
            println!("sharing of {appid} is {state}");
        }
        Command::Share(ShareCommand::Add {
            env,
            to,
            perm,
            functions,
            acting,
        }) => {
            let share = (backend(&cli).await?)
                .add_share(NewShare {
                    env: env.clone(),
                    to: to.clone(),
                    perms: perm
                        .split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect(),
                    functions: Some(functions.clone()),
                    acting: acting.clone(),
                })
                .await?;
            println!(
                "shared env {} of {} with {} ({})",
                share.env,
                share.owner_appid,
                share.to_appid,
                share.perms.join(",")
            );
        }
        Command::Share(ShareCommand::Ls { env, app }) => {
            let mut out = String::from("ENV\tOWNER\tTO\tPERMS\tFUNCTIONS\n");
            for s in backend(&cli)
                .await?
                .shares(env.as_deref(), app.as_deref())
                .await?
            {
                let functions = s.functions.encode();
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\n",
                    s.env,
                    s.owner_appid,
                    s.to_appid,
                    s.perms.join(","),
                    functions
                ));
            }
            print!("{out}");
        }
        Command::App(AppCommand::Set {
            appid,
            webhook,
            no_webhook,
            upstream_secret,
            no_upstream_secret,
            taobao_secret,
            no_taobao_secret,
        }) => {
            let backend = backend(&cli).await?;
            if webhook.is_some() || *no_webhook {
                let secret = backend.set_webhook(appid, webhook.as_deref()).await?;
                match (webhook, secret) {
                    (Some(url), Some(secret)) => {
                        println!("webhook of {appid}: {url}");
                        println!("signing secret (shown once): {secret}");
                    }
                    _ => println!("{appid} has no webhook"),
                }
            }
            if let Some(secret) = upstream_secret {
                let secret = read_event(secret)?;
                backend
                    .set_upstream_secret(appid, Some(secret.trim()))
                    .await?;
                println!("upstream credentials of {appid} set (sealed)");
            } else if *no_upstream_secret {
                backend.set_upstream_secret(appid, None).await?;
                println!("{appid} has no upstream credentials");
            }
            if let Some(secret) = taobao_secret {
                let secret = read_event(secret)?;
                backend
                    .set_taobao_secret(appid, Some(secret.trim()))
                    .await?;
                println!("Taobao signing secret of {appid} set (sealed)");
            } else if *no_taobao_secret {
                backend.set_taobao_secret(appid, None).await?;
                println!("{appid} has no Taobao signing secret");
            }
        }
        Command::Share(ShareCommand::Unbind { owner, to, acting }) => {
            let envs = backend(&cli)
                .await?
                .unbind(owner, to, acting.as_deref())
                .await?;
            println!("{owner} no longer shares {} with {to}", envs.join(", "));
        }
        Command::Share(ShareCommand::Rm { env, to, acting }) => {
            backend(&cli)
                .await?
                .remove_share(env, to, acting.as_deref())
                .await?;
            println!("env {env} is no longer shared with {to}");
        }
        Command::Rules(RulesCommand::Set { env, file, acting }) => {
            let rules = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            backend(&cli)
                .await?
                .set_rules(env, rules, acting.as_deref())
                .await?;
            println!("rules of env {env} set");
        }
        Command::Rules(RulesCommand::Get { env }) => {
            println!("{}", backend(&cli).await?.rules(env).await?)
        }
        Command::Env(EnvCommand::Create { env, owner }) => {
            let info = backend(&cli).await?.create_env(env, owner).await?;
            println!("created env {} owned by {}", info.name, info.owner_appid);
        }
        Command::Env(EnvCommand::Ls) => {
            let mut out = String::from("ENV\tOWNER\tFUNCTIONS\n");
            for e in backend(&cli).await?.envs().await? {
                out.push_str(&format!("{}\t{}\t{}\n", e.name, e.owner_appid, e.functions));
            }
            print!("{out}");
        }
        Command::Deploy(args) => {
            let config = args.config.to_config()?;
            let file = if args.file.is_dir() {
                let dir = args.file.clone();
                tokio::task::spawn_blocking(move || cloudfn_builder::build_function(&dir))
                    .await??
                    .wasm
            } else {
                args.file.clone()
            };
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let backend = backend(&cli).await?;
            let msg = format!("compiling {} ({} KB)", args.name, wasm.len() / 1024);
            let deploy =
                backend.deploy(&args.env, &args.name, wasm, config, args.acting.as_deref());
            let info = with_spinner(msg, deploy).await?;
            eprintln!(
                "deployed {}/{} version {} (sha256 {})",
                info.env,
                info.name,
                info.version,
                short(&info.sha256)
            );
            println!("{}", info.version);
        }
        Command::Ls { env, acting } => {
            let mut out = String::from("NAME\tACTIVE\tVERSIONS\tKIND\n");
            for f in backend(&cli)
                .await?
                .functions(env, acting.as_deref())
                .await?
            {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\n",
                    f.name, f.active_version, f.versions, f.kind
                ));
            }
            print!("{out}");
        }
        Command::Versions { env, name, acting } => {
            let mut out = String::from("VERSION\tACTIVE\tSHA256\tSIZE\tTIMEOUT\tMEMORY\tKIND\n");
            for v in backend(&cli)
                .await?
                .versions(env, name, acting.as_deref())
                .await?
            {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}MB\t{}\n",
                    v.version,
                    if v.active { "*" } else { "" },
                    short(&v.sha256),
                    v.size,
                    v.config
                        .timeout_ms
                        .map(|ms| format!("{}s", ms as f64 / 1000.0))
                        .unwrap_or_else(|| "default".into()),
                    v.config.memory_mb,
                    v.config.kind
                ));
            }
            print!("{out}");
        }
        Command::Rollback {
            env,
            name,
            to,
            acting,
        } => {
            backend(&cli)
                .await?
                .rollback(env, name, *to, acting.as_deref())
                .await?;
            println!("{env}/{name} now runs version {to}");
        }
        Command::Rm {
            env,
            name,
            acting,
            force,
        } => {
            backend(&cli)
                .await?
                .remove(env, name, acting.as_deref(), *force)
                .await?;
            println!("removed {env}/{name}");
        }
        Command::Logs {
            env,
            name,
            limit,
            follow,
            acting,
        } => {
            let query = ActivationQuery {
                env: env.to_string(),
                name: name.clone(),
                limit: Some(*limit),
                ..Default::default()
            };
            logs(&backend(&cli).await?, query, acting.as_deref(), *follow).await?
        }
        Command::Audit { env, app, limit } => {
            let q = AuditQuery {
                env: env.clone(),
                app: app.clone(),
                limit: Some(*limit),
                ..Default::default()
            };
            let mut out = String::from("SEQ\tTIME\tBY\tACTION\tENV\tTARGET\tDETAIL\n");
            for e in backend(&cli).await?.audit(&q).await? {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    e.seq,
                    format_time(e.at * 1000),
                    e.acting.as_deref().unwrap_or("operator"),
                    e.action,
                    e.env.as_deref().unwrap_or("-"),
                    e.target.as_deref().unwrap_or("-"),
                    e.detail
                ));
            }
            print!("{out}");
        }
    }
    Ok(0)
}

/// The first 12 characters of a hash, for display.
fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

async fn backend(cli: &Cli) -> anyhow::Result<Backend> {
    match &cli.server {
        Some(url) => {
            let token = cli
                .admin_token
                .as_deref()
                .context("--server needs --admin-token (or CLOUDFN_ADMIN_TOKEN)")?;
            Ok(Backend::Remote(AdminClient::new(url, token)?))
        }
        None => {
            if cli.store.is_none()
                && reads_only(&cli.command)
                && !cli.data_dir.join("cloudfn.db").exists()
            {
                bail!(
                    "no cloudfn data dir at {} (no cloudfn.db there): name yours with --data-dir \
                     (or CLOUDFN_DATA_DIR), a running server with --server, or start one with \
                     `cloudfn app create` or `cloudfn demo`",
                    cli.data_dir.display()
                );
            }
            Ok(Backend::Local(open(cli).await?))
        }
    }
}

fn print_credentials(c: &AppCredentials) {
    println!("appid:      {}", c.appid);
    println!("secret:     {}", c.secret);
    println!("secretId:   {}", c.secret_id);
    println!("secretKey:  {}", c.secret_key);
    eprintln!("These are shown once: cloudfn keeps only what it needs to check them.");
}

async fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<i32> {
    if cli.server.is_some() {
        bail!("serve runs a server on this machine's data dir; drop --server");
    }
    let options = Options {
        limits: Limits {
            env_concurrency: args.env_concurrency.max(1),
            slot_wait: Duration::from_millis(args.slot_wait_ms),
            env_disk_bytes: args.env_disk_quota_mb.saturating_mul(1 << 20),
            ..Limits::default()
        },
        activation_retention: args.retention,
        activation_max_bytes: args.records_max_mb.max(1) * 1024 * 1024,
        auth_cache_ttl: Duration::from_secs(args.auth_cache_ttl),
        engine: EngineConfig {
            pool_instances: Some(args.max_instances.max(1)),
            keep_resident: args.keep_resident_kb * 1024,
            memory_budget: args.memory_budget_mb.max(1) << 20,
        },
        upstream: args.upstream.clone(),
        session_ttl: std::time::Duration::from_secs(args.session_ttl_minutes.max(1) * 60),
        store: store_config(cli, args.migrate),
        host_id: Some(args.host_id.clone().unwrap_or_else(hostname)),
        egress_allow: cloudfn_runtime::egress::Egress::parse_allow(&args.egress_allow)
            .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?,
        ..Options::default()
    };
    let svc = Host::open_with(&cli.data_dir, options).await?;
    let _warmer = svc.spawn_warmer();
    let demo_credentials = if args.demo {
        crate::demo::populate(&svc).await?;
        Some(crate::demo::rotate_credentials(&svc).await?)
    } else {
        None
    };
    let fixture_credentials = match &args.fixture {
        Some(path) => {
            let fixture = cloudfn_invoke::fixture::Fixture::read(path)?;
            fixture
                .apply(&svc, &|p| Ok(cloudfn_builder::build_function(p)?.wasm))
                .await?
        }
        None => Vec::new(),
    };
    // The demo, like its apps' credentials, gets a fresh admin token at each start and prints
    // it, so a newcomer can always sign in to the console.
    let demo_admin_token = args.demo && cli.admin_token.is_none();
    let admin_token = if demo_admin_token {
        Some(new_admin_token())
    } else {
        cli.admin_token.clone()
    };
    let config = ServeConfig {
        listen: args.listen,
        admin_listen: args.admin_listen,
        admin_token: admin_token.clone(),
        max_body: args.max_body_mb.max(1) * 1024 * 1024,
        body_budget: args.body_budget_mb.max(1) * 1024 * 1024,
        drain_timeout: Duration::from_secs(args.drain_timeout),
        max_connections_per_ip: args.max_connections_per_ip,
        client_limits: cloudfn_gateway::client::ClientLimits {
            logins_per_ip_per_minute: args.logins_per_ip,
            logins_per_app_per_minute: args.logins_per_app,
            calls_per_ip_per_second: args.client_calls_per_ip,
            calls_per_app_per_second: args.client_calls_per_app,
        },
        containers: cloudfn_gateway::container::ContainerConfig {
            env_by_host: args
                .container_hosts
                .iter()
                .map(|(h, e)| (h.to_ascii_lowercase(), e.clone()))
                .collect(),
            taobao: args
                .demo
                .then(crate::demo::taobao_app)
                .into_iter()
                .chain(args.taobao.iter().cloned())
                .collect(),
        },
        console_session_ttl: Duration::from_secs(args.console_session_secs.max(1)),
        ..ServeConfig::default()
    };
    let server = Server::bind(svc.clone(), config).await?;
    // What a person starting the server reads (the banner, credentials, the admin token) goes
    // to stdout, in one stream, the addresses first; the host's diagnostics go to stderr.
    println!("Serving HTTP on http://{}/", server.public_addr());
    println!("Admin API on http://{}/", server.admin_addr());
    println!(
        "Web console on http://{}/console (sign in with the admin token)",
        server.admin_addr()
    );
    if let Some(token) = &server.generated_admin_token {
        println!("admin token (shown once; cloudfn keeps only its hash): {token}");
    } else if demo_admin_token {
        println!(
            "admin token (demo: a new one at each `serve --demo` start): {}",
            admin_token.as_deref().unwrap_or_default()
        );
    }
    if let Some(creds) = demo_credentials {
        crate::demo::print_credentials(&creds, server.public_addr());
    }
    for c in &fixture_credentials {
        println!(
            "app {} (from the fixture): secret {}  secretId {}  secretKey {}",
            c.appid, c.secret, c.secret_id, c.secret_key
        );
    }
    let _ = std::io::stdout().flush();
    server.run(cloudfn_gateway::server::shutdown_signal()).await;
    svc.flush_records().await;
    Ok(0)
}

async fn logs(
    backend: &Backend,
    mut query: ActivationQuery,
    acting: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let mut first = true;
    loop {
        let records = backend.activations(&query, acting).await?;
        let mut out = std::io::stdout().lock();
        for a in &records {
            writeln!(
                out,
                "{} {} {}/{}@{} {} {:.2}ms {}",
                format_time(a.started_at_ms),
                a.request_id,
                a.env,
                a.function,
                a.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.caller_appid.as_deref().unwrap_or("-"),
                a.duration_us as f64 / 1000.0,
                if a.errcode == 0 {
                    "ok".to_string()
                } else {
                    format!("errcode {} {}", a.errcode, a.errmsg)
                }
            )?;
            // A shared env's grant: who was let in or refused, at which step, and why.
            if let Some(d) = &a.decision {
                writeln!(
                    out,
                    "    [grant] {} app {} at {}{}: {}",
                    if d.allowed { "allowed" } else { "denied" },
                    d.caller_appid,
                    d.step,
                    if d.cached { " (cached decision)" } else { "" },
                    d.reason
                )?;
            }
            for line in &a.logs {
                let tag = line.tag();
                writeln!(out, "    [{tag}] {}", line.message)?;
            }
        }
        out.flush()?;
        drop(out);
        if first {
            // How fresh the list is, on stderr so the listing stays one line per call.
            let now = format_time(cloudfn_store::fsutil::now_ms());
            let shown = records.len();
            eprintln!(
                "{shown} call(s) of {}, oldest first, as recorded at {now}; a call is listed \
                 once its record is written, about 0.1 s after it ends{}",
                query.env,
                if follow {
                    "; following: new calls appear within half a second (Ctrl-C stops)"
                } else {
                    " (-f follows)"
                }
            );
            first = false;
        }
        if !follow {
            return Ok(());
        }
        if let Some(last) = records.last() {
            query.after = Some(last.seq);
        } else if query.after.is_none() {
            query.after = Some(0);
        }
        query.limit = Some(1000);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of Unix milliseconds.
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        cloudfn_gateway::tc3::utc_date(secs),
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        ms.rem_euclid(1000)
    )
}

/// The store for a command that makes a change or a call or two and exits: no instance pool
/// to set up and tear down.
async fn open(cli: &Cli) -> anyhow::Result<Arc<Host>> {
    open_dir(&cli.data_dir, store_config(cli, false)).await
}

/// [`open`] for a data dir of its own (`store` the default) or the command line's store.
async fn open_dir(data_dir: &Path, store: cloudfn_store::StoreConfig) -> anyhow::Result<Arc<Host>> {
    let options = Options {
        engine: EngineConfig::one_shot(),
        store,
        ..Options::default()
    };
    Host::open_with(data_dir, options).await
}

/// Where the command's state lives: --store and --token-key, else the data dir.
fn store_config(cli: &Cli, migrate: bool) -> cloudfn_store::StoreConfig {
    cloudfn_store::StoreConfig {
        url: cli.store.clone(),
        token_key: cli.token_key.clone(),
        migrate,
    }
}

/// The machine's hostname (a pod's name in Kubernetes).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `cloudfn migrate`.
async fn migrate(cli: &Cli) -> anyhow::Result<i32> {
    match &cli.store {
        Some(url) => {
            let (before, after) = cloudfn_store::postgres::migrate(url)
                .await
                .with_context(|| format!("migrating {}", cloudfn_store::postgres::describe(url)))?;
            if before == after {
                println!("schema version {after}: up to date");
            } else {
                println!("schema version {before} -> {after}");
            }
        }
        None => {
            // Opening a data dir migrates it.
            open(cli).await?;
            println!("data dir {}: up to date", cli.data_dir.display());
        }
    }
    Ok(0)
}

async fn with_spinner<T>(msg: String, f: impl Future<Output = T>) -> T {
    let bar = indicatif::ProgressBar::new_spinner().with_message(msg);
    bar.enable_steady_tick(Duration::from_millis(80));
    let out = f.await;
    bar.finish_and_clear();
    out
}

fn read_event(event: &str) -> anyhow::Result<String> {
    Ok(match event.strip_prefix('@') {
        Some("-") => {
            std::io::read_to_string(std::io::stdin()).context("reading the event from stdin")?
        }
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the event from {path}"))?,
        None => event.to_string(),
    })
}

impl InvokeArgs {
    fn identity(&self) -> Identity {
        Identity {
            appid: self.appid.clone(),
            openid: self.openid.clone(),
            unionid: self.unionid.clone(),
            from_appid: self.from_appid.clone(),
            from_openid: self.from_openid.clone(),
            from_unionid: self.from_unionid.clone(),
            client_ip: self.client_ip.clone(),
        }
    }
}

async fn invoke(backend: &Backend, args: &InvokeArgs) -> anyhow::Result<i32> {
    let (Some(env), Some(name)) = (&args.env, &args.name) else {
        bail!("invoke needs --env and --name, or a .wasm file to run directly");
    };
    // A deployed version runs with the settings it was deployed with: a flag that would
    // change them must not look as if it did.
    let file_only = args
        .config
        .first_given()
        .or(args.dir.as_ref().map(|_| "--dir"))
        .or((!args.egress_allow.is_empty() && args.fixture.is_none()).then_some("--egress-allow"));
    if let Some(flag) = file_only {
        bail!(
            "{flag} applies to a file run (invoke FILE.wasm) or a deploy; {env}/{name} runs with \
             the settings of its deployed version (see `cloudfn versions --env {env} --name \
             {name}`): deploy a new version to change them"
        );
    }
    let call = AdminInvoke {
        event: read_event(&args.event)?,
        identity: args.identity(),
        source: Some(args.source.clone()),
        version: args.version,
    };
    let inv = backend.invoke(env, name, call).await?;
    Ok(print_invocation(&inv, args.quiet))
}

async fn invoke_file(data_dir: &Path, args: &InvokeArgs) -> anyhow::Result<i32> {
    let file = args.file.as_ref().expect("checked by the caller");
    let event = read_event(&args.event)?;
    // A function's folder is built first, as `deploy FOLDER` does.
    let built = if file.is_dir() {
        let dir = file.clone();
        tokio::task::spawn_blocking(move || cloudfn_builder::build_function(&dir))
            .await??
            .wasm
    } else {
        file.clone()
    };
    let wasm = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "main".into()),
    };
    let env = args.env.clone().unwrap_or_else(|| "local".into());
    // A file run needs no data dir; use one only if it is already there. Compiled components
    // are kept by content hash (in the data dir, or the user's cache dir) for the next run.
    let egress_allow = cloudfn_runtime::egress::Egress::parse_allow(&args.egress_allow)
        .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?;
    let (svc, _tmp) = if data_dir.join("cloudfn.db").exists() {
        let options = Options {
            engine: EngineConfig::one_shot(),
            egress_allow,
            ..Options::default()
        };
        (Host::open_with(data_dir, options).await?, None)
    } else {
        let tmp = tempdir()?;
        let runtime = Arc::new(cloudfn_runtime::Runtime::with_config(
            artifact_cache(),
            &EngineConfig::one_shot(),
        )?);
        let options = Options {
            egress_allow,
            ..Options::default()
        };
        let svc = Host::open_shared(&tmp, options, runtime).await?;
        (svc, Some(TempDir(tmp)))
    };
    let req = InvokeRequest::new(&env, &name, event, &args.source);
    let config = args.config.to_config()?;
    let compiles = || {
        svc.runtime()
            .stats
            .compiles
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let (before, started) = (compiles(), std::time::Instant::now());
    let inv = svc
        .run_file(&wasm, config, args.dir.as_deref(), req, args.identity())
        .await?;
    if compiles() > before && !args.quiet {
        eprintln!(
            "[cloudfn] compiled {} ({} KB) in {} ms; the next run of the same file loads it",
            file.display(),
            wasm.len() / 1024,
            (started.elapsed().as_secs_f64() * 1e3 - inv.duration.as_secs_f64() * 1e3).max(0.0)
                as u64
        );
    }
    Ok(print_invocation(&inv.into(), args.quiet))
}

/// `invoke --fixture FILE`: the call on a temporary data dir holding what the fixture
/// describes, through the same checks as on a server.
async fn invoke_fixture(args: &InvokeArgs) -> anyhow::Result<i32> {
    let path = args.fixture.as_ref().expect("checked by the caller");
    let fixture = cloudfn_invoke::fixture::Fixture::read(path)?;
    let tmp = tempdir()?;
    let _tmp = TempDir(tmp.clone());
    let options = Options {
        engine: EngineConfig::one_shot(),
        egress_allow: cloudfn_runtime::egress::Egress::parse_allow(&args.egress_allow)
            .map_err(|e| anyhow::anyhow!("--egress-allow: {e}"))?,
        ..Options::default()
    };
    let host = Host::open_with(&tmp, options).await?;
    fixture
        .apply(&host, &|p| Ok(cloudfn_builder::build_function(p)?.wasm))
        .await?;
    invoke(&Backend::Local(host), args).await
}

/// Prints logs on stderr and the result (or the protocol error) on stdout; returns the exit code.
fn print_invocation(inv: &AdminInvocation, quiet: bool) -> i32 {
    // Nothing ran (a bad event, an unknown function, a refusal): the error alone says it.
    let ran = inv.version.is_some();
    if !quiet {
        let mut err = std::io::stderr().lock();
        for line in &inv.logs {
            let tag = line.tag();
            let _ = writeln!(err, "[{tag}] {}", line.message);
        }
    }
    if !quiet && ran {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "[cloudfn] request {} version {} in {:.1} ms, peak memory {} KB",
            inv.request_id,
            inv.version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            inv.duration_us as f64 / 1000.0,
            inv.peak_memory / 1024
        );
    }
    match (&inv.result, &inv.error) {
        (Some(json), _) => {
            println!("{json}");
            0
        }
        (None, error) => {
            println!("{}", error.clone().unwrap_or_default());
            1
        }
    }
}

/// Where file runs keep compiled components: `artifacts` in the user's cache dir
/// ([`cloudfn_builder::user_cache_dir`]).
fn artifact_cache() -> Option<PathBuf> {
    Some(cloudfn_builder::user_cache_dir()?.join("artifacts"))
}

/// A temporary data dir for file runs, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "cloudfn-local-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
