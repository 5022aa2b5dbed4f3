//! Fixture files: one TOML file describing apps, envs, shares, rules and functions (with their
//! variables), so a whole multi-app setup is reproduced by `cloudfn serve --fixture`,
//! `cloudfn invoke --fixture` and `cloudfn_testing::TestHost::from_fixture` alike.
//!
//! ```toml
//! [[app]]
//! appid = "wxA"
//! subject = "Acme"
//! sharing = true              # may share its envs (default false)
//!
//! [[env]]
//! name = "prod"
//! owner = "wxA"
//! rules = '{"*": {"invoke": "auth.custom.role == \"partner\""}}'   # or rules_file = "rules.json"
//!
//! [[share]]
//! env = "prod"
//! to = "wxB"
//! functions = "*"             # or "echo,users_add"
//!
//! [[function]]
//! env = "prod"
//! name = "echo"
//! wasm = "echo.wasm"          # or crate = "functions/echo" (built on load)
//! timeout_ms = 3000           # optional, like memory_mb and fs_write
//! vars = { GREETING = "hi" }
//! # kind = "http"            # a wasi:http function, for the container gateways
//! # allow_hosts = ["api.example.com"]   # hosts an HTTP function may send requests to
//! ```
//!
//! Relative paths are relative to the fixture file. Loading is idempotent: what already exists
//! (an app, an env, the same function bytes and configuration) is left as it is, shares and
//! rules are set to what the file says, so a
//! server restarted with the same fixture keeps its data and its apps' credentials.

use crate::Control;
use anyhow::{Context, bail};
use cloudfn_store::{AppCredentials, FunctionConfig, SharedFunctions, StoreError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed fixture file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Apps, created with credentials.
    #[serde(default, rename = "app")]
    pub apps: Vec<App>,
    /// Envs and their rules.
    #[serde(default, rename = "env")]
    pub envs: Vec<Env>,
    /// Shares of envs with other apps.
    #[serde(default, rename = "share")]
    pub shares: Vec<Share>,
    /// Functions deployed into envs.
    #[serde(default, rename = "function")]
    pub functions: Vec<Function>,
    /// The directory relative paths are resolved against (the file's).
    #[serde(skip)]
    pub base: PathBuf,
}

/// `[[app]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub appid: String,
    /// Its company (apps of one subject may share envs).
    pub subject: Option<String>,
    /// Whether it may share its envs.
    #[serde(default)]
    pub sharing: bool,
}

/// `[[env]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    pub name: String,
    pub owner: String,
    /// Security rules, as JSON text.
    pub rules: Option<String>,
    /// Or a file holding them.
    pub rules_file: Option<PathBuf>,
}

/// `[[share]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub env: String,
    pub to: String,
    /// `*` or a comma-separated list of function names.
    #[serde(default = "all")]
    pub functions: String,
    /// The share's permissions.
    #[serde(default = "invoke")]
    pub perms: Vec<String>,
}

fn all() -> String {
    "*".into()
}

fn invoke() -> Vec<String> {
    vec!["functions:invoke".into()]
}

/// `[[function]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Function {
    pub env: String,
    pub name: String,
    /// A built component.
    pub wasm: Option<PathBuf>,
    /// Or a function crate, built when the fixture is loaded.
    #[serde(rename = "crate")]
    pub krate: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u32>,
    #[serde(default)]
    pub fs_write: bool,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// `function` (default) or `http`.
    #[serde(default)]
    pub kind: cloudfn_store::FunctionKind,
    /// Hosts an HTTP function may send requests to.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

impl Function {
    /// The component at `wasm` deployed as `env/name` with `config`.
    pub fn wasm(env: &str, name: &str, wasm: impl Into<PathBuf>, config: &FunctionConfig) -> Self {
        Function {
            env: env.into(),
            name: name.into(),
            wasm: Some(wasm.into()),
            krate: None,
            timeout_ms: config.timeout_ms,
            memory_mb: Some(config.memory_mb),
            fs_write: config.fs_write,
            vars: config.vars.clone(),
            kind: config.kind,
            allow_hosts: config.outbound_hosts.clone(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> FunctionConfig {
        FunctionConfig::with(|c| {
            c.timeout_ms = self.timeout_ms;
            if let Some(mb) = self.memory_mb {
                c.memory_mb = mb;
            }
            c.fs_write = self.fs_write;
            c.vars = self.vars.clone();
            c.kind = self.kind;
            c.outbound_hosts = self.allow_hosts.clone();
        })
    }
}

impl Fixture {
    /// Reads and checks `path`.
    pub fn read(path: impl AsRef<Path>) -> anyhow::Result<Fixture> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading fixture {}", path.display()))?;
        let mut fixture =
            Fixture::parse(&text).with_context(|| format!("in fixture {}", path.display()))?;
        fixture.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(fixture)
    }

    /// Parses fixture text (relative paths then resolve against the current directory).
    pub fn parse(text: &str) -> anyhow::Result<Fixture> {
        let fixture: Fixture = toml::from_str(text)?;
        fixture.check()?;
        Ok(fixture)
    }

    /// What can be checked without a host: every function names one source, every share and
    /// function an env of the fixture or one that may already exist.
    fn check(&self) -> anyhow::Result<()> {
        for f in &self.functions {
            match (&f.wasm, &f.krate) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!(
                    "function {}/{}: give exactly one of `wasm` (a built component) or `crate` \
                     (a function crate to build)",
                    f.env,
                    f.name
                ),
            }
        }
        for e in &self.envs {
            if e.rules.is_some() && e.rules_file.is_some() {
                bail!("env {}: give `rules` or `rules_file`, not both", e.name);
            }
        }
        for s in &self.shares {
            SharedFunctions::parse(&s.functions)
                .with_context(|| format!("share of env {} with {}", s.env, s.to))?;
        }
        Ok(())
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Applies the fixture through `control`; returns the credentials of the apps it created (an app
    /// that already existed keeps its credentials and is not listed). Function crates are built
    /// with `build`.
    pub async fn apply(
        &self,
        control: &Control,
        build: &dyn Fn(&Path) -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<Vec<AppCredentials>> {
        let store = control.host().store();
        let mut created = Vec::new();
        for app in &self.apps {
            let exists = store
                .app(&app.appid)
                .await
                .is_ok_and(|a| a.secret_id.is_some());
            if !exists {
                let creds = control
                    .create_app(&app.appid, app.subject.as_deref())
                    .await
                    .with_context(|| format!("app {}", app.appid))?;
                created.push(creds);
            }
            if app.sharing {
                control.set_sharing(&app.appid, true).await?;
            }
        }
        for env in &self.envs {
            match control.create_env(&env.name, &env.owner).await {
                Ok(_) | Err(StoreError::EnvExists(_)) => {}
                Err(e) => return Err(e).with_context(|| format!("env {}", env.name)),
            }
        }
        for f in &self.functions {
            let path = match (&f.wasm, &f.krate) {
                (Some(wasm), _) => self.resolve(wasm),
                (_, Some(krate)) => build(&self.resolve(krate))
                    .with_context(|| format!("building function {}/{}", f.env, f.name))?,
                _ => unreachable!("checked on parse"),
            };
            let wasm = std::fs::read(&path).with_context(|| {
                format!("function {}/{}: reading {}", f.env, f.name, path.display())
            })?;
            deploy_unless_current(control, &f.env, &f.name, &wasm, f.config())
                .await
                .with_context(|| format!("deploying function {}/{}", f.env, f.name))?;
        }
        for s in &self.shares {
            let functions = SharedFunctions::parse(&s.functions)?;
            // Sharing again updates the share to what the fixture says.
            control
                .add_share(&s.env, &s.to, &s.perms, functions, None)
                .await
                .with_context(|| format!("sharing env {} with {}", s.env, s.to))?;
        }
        for env in &self.envs {
            let rules = match (&env.rules, &env.rules_file) {
                (Some(r), _) => r.clone(),
                (_, Some(file)) => {
                    let file = self.resolve(file);
                    std::fs::read_to_string(&file)
                        .with_context(|| format!("env {}: reading {}", env.name, file.display()))?
                }
                _ => continue,
            };
            control
                .set_rules(&env.name, &rules)
                .await
                .with_context(|| format!("rules of env {}", env.name))?;
        }
        Ok(created)
    }
}

/// Deploys unless the active version already has these bytes and this configuration, so
/// loading a fixture again adds no versions.
async fn deploy_unless_current(
    control: &Control,
    env: &str,
    name: &str,
    wasm: &[u8],
    config: FunctionConfig,
) -> anyhow::Result<()> {
    let sha = cloudfn_store::secrets::sha256_hex(wasm);
    if let Ok(versions) = control.host().store().versions(env, name).await
        && versions
            .iter()
            .any(|v| v.active && v.sha256 == sha && v.config == config)
    {
        return Ok(());
    }
    control.deploy(env, name, wasm, config).await?;
    Ok(())
}
