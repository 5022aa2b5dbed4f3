//! `cloudfn invoke`: calls a function as any caller, and prints its logs (stderr) and result
//! (stdout): a deployed one (on the data dir or a server), a component file or function folder
//! run directly, or one on a temporary data dir a fixture file describes.

use super::{ConfigArgs, TempDir, artifact_cache, client, read_event, tempdir};
use crate::Cli;
use crate::client::AdminClient;
use anyhow::{Context, bail};
use clap::Args;
use cloudfn_gateway::admin_api::{AdminInvocation, AdminInvoke};
use cloudfn_invoke::{Control, EngineConfig, Host, Identity, InvokeRequest, Options};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `cloudfn invoke`.
#[derive(Debug, Args)]
pub struct InvokeCommand {
    /// Run this component file (or a function's folder, built first, as deploy builds it)
    /// directly instead of a deployed function (local testing).
    pub file: Option<PathBuf>,
    /// Run on a temporary data dir holding what this fixture file describes, instead of
    /// the data dir.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// The environment (for a file: where its call_function calls go; default `local`).
    #[arg(long)]
    pub env: Option<String>,
    /// The function (for a file: defaults to the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Run this version instead of the active one.
    #[arg(long)]
    pub version: Option<u32>,
    /// The event: JSON text, @FILE to read a file, or @- to read stdin.
    #[arg(long, default_value = "{}")]
    pub event: String,
    /// APPID of the caller (a user of the env's own app).
    #[arg(long)]
    pub appid: Option<String>,
    /// OPENID of the caller.
    #[arg(long)]
    pub openid: Option<String>,
    /// UNIONID of the caller.
    #[arg(long)]
    pub unionid: Option<String>,
    /// FROM_APPID: the calling app, for a call through a share.
    #[arg(long)]
    pub from_appid: Option<String>,
    /// FROM_OPENID: the calling app's user (with --from-appid: a user is always some app's).
    #[arg(long, requires = "from_appid")]
    pub from_openid: Option<String>,
    /// FROM_UNIONID: the calling user's unionid (with --from-appid).
    #[arg(long, requires = "from_appid")]
    pub from_unionid: Option<String>,
    /// CLIENTIP of the caller.
    #[arg(long)]
    pub client_ip: Option<String>,
    /// SOURCE of the call (wx_client, wx_http, wx_devtools, wx_trigger, …).
    #[arg(long, default_value = "wx_devtools")]
    pub source: String,
    /// Directory to preopen as `/` for a file run (deployed functions get their env's).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// For a file or fixture run: address ranges its outbound HTTP may reach besides the
    /// public internet (as `serve --egress-allow`), e.g. 127.0.0.1/32 for a local mock.
    #[arg(long = "egress-allow", value_name = "CIDR", value_delimiter = ',')]
    pub egress_allow: Vec<String>,
    /// Do not print the function's logs on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    /// Settings for a file run.
    pub config: ConfigArgs,
}

impl InvokeCommand {
    /// `cloudfn invoke`: a file run, a fixture run, or a call of a deployed function.
    pub async fn execute(&self, cli: &Cli) -> anyhow::Result<i32> {
        if self.file.is_some() {
            return invoke_file(&cli.data_dir, self).await;
        }
        if self.fixture.is_some() {
            return invoke_fixture(self).await;
        }
        invoke(&client(cli).await?, self).await
    }

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

async fn invoke(client: &AdminClient, args: &InvokeCommand) -> anyhow::Result<i32> {
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
    let inv = client.invoke(env, name, call).await?;
    Ok(print_invocation(&inv, args.quiet))
}

async fn invoke_file(data_dir: &Path, args: &InvokeCommand) -> anyhow::Result<i32> {
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
async fn invoke_fixture(args: &InvokeCommand) -> anyhow::Result<i32> {
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
        .apply(&Control::new(host.clone()), &|p| {
            Ok(cloudfn_builder::build_function(p)?.wasm)
        })
        .await?;
    invoke(&AdminClient::local(host), args).await
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
