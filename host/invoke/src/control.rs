//! The control plane: management over the same store the data plane reads, and the one place
//! that decides who may manage what. [`Control`] holds the [`Host`] it manages (a deploy
//! validates and compiles the component with the host's runtime, a new env gets its directory,
//! rules are compiled before they are stored); the host knows nothing of it, so the call path
//! runs without the management code.
//!
//! An [`Actor`] is the operator (the admin token, or the CLI on its data dir) or an app acting
//! through it (`acting`, `--as`). An app manages its own envs; in an env shared with it, its
//! share's permissions decide (`functions:read`: list functions and versions, read the records
//! of its own calls; `functions:deploy`: deploy, roll back and remove the functions the share
//! covers, never `cloudbase_auth`); an env's rules and shares stay its owner's. Every change
//! made here is written to the audit log with the acting app. No cache is invalidated here:
//! the store's change feed tells the state, in this process and every other.

use crate::host::Host;
use crate::webhook::{self, Webhook};
use cloudfn_protocol::rules::{DEFAULT_RULES, Rules};
use cloudfn_store::fsutil::crash_point;
use cloudfn_store::{
    AUTH_FUNCTION, Activation, ActivationQuery, AppCredentials, AuditEntry, EnvInfo,
    FunctionConfig, FunctionInfo, FunctionKind, PERM_DEPLOY, PERM_READ, ShareInfo, SharedFunctions,
    StoreError, VersionInfo, validate_function_name,
};
use std::sync::Arc;

/// Who makes a management change or read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Actor {
    /// The operator: may do everything.
    #[default]
    Operator,
    /// An app acting through the operator's API or CLI.
    App(String),
}

impl Actor {
    /// The actor an optional `acting` app names.
    pub fn acting(acting: Option<&str>) -> Actor {
        match acting {
            Some(app) if !app.is_empty() => Actor::App(app.to_string()),
            _ => Actor::Operator,
        }
    }

    fn app(&self) -> Option<&str> {
        match self {
            Actor::Operator => None,
            Actor::App(a) => Some(a),
        }
    }
}

/// What Taobao signing secrets are sealed for.
pub(crate) const TAOBAO_SECRET: &str = "taobao-secret";

/// The setting an app's Taobao signing secret is kept under, sealed.
pub(crate) fn taobao_secret_key(appid: &str) -> String {
    format!("taobao-secret/{appid}")
}

/// What a sharee sees in place of a variable's value: variables hold the owner's secrets.
pub const HIDDEN_VALUE: &str = "(hidden)";

/// `config` with its variables' values hidden (their names kept).
pub fn hide_values(config: &mut FunctionConfig) {
    for value in config.vars.values_mut() {
        *value = HIDDEN_VALUE.to_string();
    }
}

/// How much of an env an actor may reach.
enum Access {
    /// The operator, or the env's owner.
    Full,
    /// A sharee, within its share.
    Shared(ShareInfo),
}

/// The control plane of a host: every management change and read, each checked against what
/// its [`Actor`] may do and written to the audit log. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    host: Arc<Host>,
}

impl Control {
    /// The control plane of `host`.
    pub fn new(host: Arc<Host>) -> Control {
        Control { host }
    }

    /// The host it manages (the data plane: calls, metrics, the store it reads).
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// What `actor` may reach of `env` for an action needing `perm` of a share.
    async fn access(&self, actor: &Actor, env: &str, perm: &str) -> Result<Access, StoreError> {
        let info = self.host.store.env(env).await?;
        let Some(app) = actor.app() else {
            return Ok(Access::Full);
        };
        if info.owner_appid == app {
            return Ok(Access::Full);
        }
        match self.host.store.share(env, app).await? {
            Some(share) if share.has(perm) => Ok(Access::Shared(share)),
            Some(_) => Err(StoreError::Forbidden(format!(
                "app {app}'s share of env {env} does not grant {perm}"
            ))),
            None => Err(StoreError::Forbidden(format!(
                "app {app} neither owns env {env} nor has a share of it"
            ))),
        }
    }

    /// What `actor` may reach of function `name` for `perm`; `cloudbase_auth` and functions
    /// outside the share are the owner's.
    async fn function_access(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
        perm: &str,
    ) -> Result<Access, StoreError> {
        let access = self.access(actor, env, perm).await?;
        if let Access::Shared(share) = &access {
            let app = &share.to_appid;
            if name == AUTH_FUNCTION && perm == PERM_DEPLOY {
                return Err(StoreError::Forbidden(format!(
                    "app {app} may not change {AUTH_FUNCTION} of env {env}: only its owner decides \
                     who may use it"
                )));
            }
            if !share.functions.covers(name) {
                return Err(StoreError::Forbidden(format!(
                    "app {app}'s share of env {env} does not cover function {name}"
                )));
            }
        }
        Ok(access)
    }

    async fn owner_only(&self, actor: &Actor, env: &str, what: &str) -> Result<(), StoreError> {
        let info = self.host.store.env(env).await?;
        match actor.app() {
            Some(app) if app != info.owner_appid => Err(StoreError::Forbidden(format!(
                "only env {env}'s owner {} may {what}; app {app} may not",
                info.owner_appid
            ))),
            _ => Ok(()),
        }
    }

    /// Appends to the audit log; a change already made is not undone when this fails, so the
    /// failure is logged rather than returned.
    async fn log_change(
        &self,
        actor: &Actor,
        action: &str,
        env: Option<&str>,
        target: Option<&str>,
        detail: String,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at: 0,
            acting: actor.app().map(str::to_string),
            action: action.to_string(),
            env: env.map(str::to_string),
            target: target.map(str::to_string),
            detail,
        };
        if let Err(e) = self.host.store.audit(entry).await {
            tracing::error!("writing the audit log ({action}) failed: {e}");
        }
    }

    /// Creates an environment and its directory.
    pub async fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError> {
        // The directory first: a name the store refuses leaves at most an empty directory, a
        // stored env never lacks its directory.
        cloudfn_store::validate_env_name(name)?;
        let dir = self.host.state.env_dir(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let info = self.host.store.create_env(name, owner).await?;
        self.log_change(
            &Actor::Operator,
            "env.create",
            Some(name),
            None,
            format!("owner {owner}"),
        )
        .await;
        Ok(info)
    }

    /// [`Control::create_env`] as an operator asks for it (the CLI's `env create`, the admin
    /// API): the owner must be a registered app, so a misspelt appid is refused instead of
    /// becoming an app without credentials. (Test and authoring hosts create owners as they go.)
    pub async fn create_env_for_app(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError> {
        match self.host.store.app(owner).await {
            Ok(_) => self.create_env(name, owner).await,
            Err(StoreError::AppNotFound(_)) => Err(StoreError::InvalidConfig(format!(
                "app {owner} does not exist: register it first with `cloudfn app create {owner} \
                 --subject COMPANY` (POST /v1/apps), then create the env"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Validates and stores a new version of `env/name` and makes it active.
    pub async fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> Result<VersionInfo, StoreError> {
        self.deploy_as(&Actor::Operator, env, name, wasm, config)
            .await
    }

    /// [`Control::deploy`] by `actor`.
    pub async fn deploy_as(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> Result<VersionInfo, StoreError> {
        validate_function_name(name)?;
        config.validate()?;
        if name == AUTH_FUNCTION && config.kind == FunctionKind::Http {
            return Err(StoreError::InvalidConfig(format!(
                "{name} decides grants with a JSON result: it must be a cloud function, not an \
                 HTTP function"
            )));
        }
        if let Access::Shared(share) = self.function_access(actor, env, name, PERM_DEPLOY).await? {
            self.check_sharee_hosts(&share.to_appid, env, name, &config)
                .await?;
        }
        let runtime = self.host.runtime.clone();
        let bytes = wasm.to_vec();
        let kind = config.kind;
        // Compiling takes tens of milliseconds or more (seconds for JavaScript): off the async
        // workers, and not again for a component compiled before.
        let component = tokio::task::spawn_blocking(move || {
            let sha256 = cloudfn_store::secrets::sha256_hex(&bytes);
            runtime.compile_once(&sha256, &bytes, kind)
        })
        .await
        .map_err(|e| anyhow::anyhow!("compile task: {e}"))?
        .map_err(|e| StoreError::InvalidWasm(e.0))?;
        let sha256 = self.host.store.put_blob(wasm).await?;
        crash_point("deploy-after-blob");
        self.host.runtime.remember(&sha256, &component)?;
        crash_point("deploy-after-artifact");
        let version = self
            .host
            .store
            .add_version(env, name, &sha256, wasm.len() as u64, &config)
            .await?;
        let info = self.host.store.resolve(env, name, Some(version)).await?;
        self.log_change(
            actor,
            "deploy",
            Some(env),
            Some(name),
            format!("version {version}, sha256 {sha256}"),
        )
        .await;
        Ok(info)
    }

    /// Makes version `to` of `env/name` active again.
    pub async fn rollback_as(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
        to: u32,
    ) -> Result<(), StoreError> {
        let access = self.function_access(actor, env, name, PERM_DEPLOY).await?;
        if let Access::Shared(share) = &access {
            // An old version may reach hosts the owner has since taken away.
            let target = self.host.store.resolve(env, name, Some(to)).await?;
            self.check_sharee_hosts(&share.to_appid, env, name, &target.config)
                .await?;
        }
        if self.host.store.resolve(env, name, None).await?.version == to {
            return Err(StoreError::Refused(format!(
                "version {to} of {env}/{name} is already active; nothing changed"
            )));
        }
        self.host.store.rollback(env, name, to).await?;
        self.log_change(
            actor,
            "rollback",
            Some(env),
            Some(name),
            format!("to version {to}"),
        )
        .await;
        Ok(())
    }

    /// Removes `env/name` and all its versions. `cloudbase_auth` of a shared env only with
    /// `force`: without it every sharee's call fails and the env cannot be shared again.
    pub async fn remove_as(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
        force: bool,
    ) -> Result<(), StoreError> {
        self.function_access(actor, env, name, PERM_DEPLOY).await?;
        if name == AUTH_FUNCTION && !force {
            let shares = self.host.store.shares(Some(env), None).await?;
            if !shares.is_empty() {
                let apps: Vec<&str> = shares.iter().map(|s| s.to_appid.as_str()).collect();
                return Err(StoreError::Refused(format!(
                    "env {env} is shared with {}: without {AUTH_FUNCTION} every call of theirs \
                     fails (-501009) and the env cannot be shared again until one is deployed; \
                     end the shares first (cloudfn share rm --env {env} --to APP), or remove it \
                     anyway with --force (?force=true)",
                    apps.join(", ")
                )));
            }
        }
        self.host.store.remove_function(env, name).await?;
        self.log_change(actor, "remove", Some(env), Some(name), String::new())
            .await;
        Ok(())
    }

    /// The functions of `env` `actor` may see (a sharee: those its share covers).
    pub async fn functions_as(
        &self,
        actor: &Actor,
        env: &str,
    ) -> Result<Vec<FunctionInfo>, StoreError> {
        let access = self.access(actor, env, PERM_READ).await?;
        let mut functions = self.host.store.functions(env).await?;
        if let Access::Shared(share) = access {
            functions.retain(|f| share.functions.covers(&f.name));
        }
        Ok(functions)
    }

    /// The versions of `env/name`, if `actor` may see them.
    pub async fn versions_as(
        &self,
        actor: &Actor,
        env: &str,
        name: &str,
    ) -> Result<Vec<VersionInfo>, StoreError> {
        let access = self.function_access(actor, env, name, PERM_READ).await?;
        let mut versions = self.host.store.versions(env, name).await?;
        if let Access::Shared(_) = access {
            for v in &mut versions {
                hide_values(&mut v.config);
            }
        }
        Ok(versions)
    }

    /// A sharee deploying may keep or narrow the outbound hosts the function's active version
    /// allows, never widen them: what the env may reach is its owner's to decide (a new
    /// function of a sharee's reaches nothing).
    async fn check_sharee_hosts(
        &self,
        app: &str,
        env: &str,
        name: &str,
        config: &FunctionConfig,
    ) -> Result<(), StoreError> {
        if config.outbound_hosts.is_empty() {
            return Ok(());
        }
        let allowed = match self.host.store.resolve(env, name, None).await {
            Ok(active) => active.config.outbound_hosts,
            Err(StoreError::FunctionNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let wider: Vec<&str> = config
            .outbound_hosts
            .iter()
            .filter(|h| !allowed.contains(h))
            .map(String::as_str)
            .collect();
        if wider.is_empty() {
            return Ok(());
        }
        let now = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        Err(StoreError::Forbidden(format!(
            "app {app} may not let {env}/{name} reach {}: a sharee may only keep or narrow the \
             outbound hosts its active version allows ({now}); the env's owner widens them",
            wider.join(", ")
        )))
    }

    /// Activation records `actor` may read: all of the env's for its owner, those of its own
    /// calls for a sharee.
    pub async fn activations_as(
        &self,
        actor: &Actor,
        q: &ActivationQuery,
    ) -> Result<Vec<Activation>, StoreError> {
        let access = self.access(actor, &q.env, PERM_READ).await?;
        self.host.flush_records().await;
        match access {
            Access::Full => self.host.store.activations(q).await,
            Access::Shared(share) => {
                let mut q = q.clone();
                q.caller = Some(share.to_appid);
                self.host.store.activations(&q).await
            }
        }
    }

    /// Validates and stores an env's security rules; returns them as stored.
    pub async fn set_rules(&self, env: &str, json: &str) -> Result<String, StoreError> {
        self.set_rules_as(&Actor::Operator, env, json).await
    }

    /// [`Control::set_rules`] by `actor`: the env's owner's alone.
    pub async fn set_rules_as(
        &self,
        actor: &Actor,
        env: &str,
        json: &str,
    ) -> Result<String, StoreError> {
        self.owner_only(actor, env, "set its security rules")
            .await?;
        Rules::parse(json).map_err(StoreError::InvalidRules)?;
        self.host.store.set_rules(env, json).await?;
        self.log_change(
            actor,
            "rules.set",
            Some(env),
            None,
            format!("{} bytes", json.len()),
        )
        .await;
        Ok(json.to_string())
    }

    /// An env's security rules (the default ones when it has set none).
    pub async fn rules(&self, env: &str) -> Result<String, StoreError> {
        Ok(self
            .host
            .store
            .rules(env)
            .await?
            .unwrap_or_else(|| DEFAULT_RULES.to_string()))
    }

    /// Registers an app and issues its credentials.
    pub async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> Result<AppCredentials, StoreError> {
        let creds = self.host.store.create_app(appid, subject).await?;
        let detail = subject.map(|s| format!("subject {s}")).unwrap_or_default();
        self.log_change(&Actor::Operator, "app.create", None, Some(appid), detail)
            .await;
        Ok(creds)
    }

    /// Issues an app new credentials; the old ones stop working.
    pub async fn rotate_secret(&self, appid: &str) -> Result<AppCredentials, StoreError> {
        let creds = self.host.store.rotate_secret(appid).await?;
        self.log_change(
            &Actor::Operator,
            "app.rotate-secret",
            None,
            Some(appid),
            String::new(),
        )
        .await;
        Ok(creds)
    }

    /// Ends every session of an app's mini-program users at once (they log in again); takes
    /// effect on every host sharing the store from its next call.
    pub async fn revoke_sessions(&self, appid: &str) -> Result<u64, StoreError> {
        let generation = self.host.store.revoke_sessions(appid).await?;
        self.log_change(
            &Actor::Operator,
            "app.revoke-sessions",
            None,
            Some(appid),
            format!("session generation {generation}"),
        )
        .await;
        Ok(generation)
    }

    /// Turns an app's sharing switch on or off (off is refused while it has shares).
    pub async fn set_sharing(&self, appid: &str, on: bool) -> Result<(), StoreError> {
        self.host.store.set_sharing(appid, on).await?;
        let action = if on { "sharing.on" } else { "sharing.off" };
        self.log_change(&Actor::Operator, action, None, Some(appid), String::new())
            .await;
        Ok(())
    }

    /// Shares `env` with `to` (the store checks who may: the owner, same subject, sharing on,
    /// a `cloudbase_auth` deployed).
    pub async fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, StoreError> {
        let share = self
            .host
            .store
            .add_share(env, to, perms, functions, acting)
            .await?;
        let detail = format!("{} on {}", share.perms.join(","), share.functions.encode());
        self.log_change(
            &Actor::acting(acting),
            "share.add",
            Some(env),
            Some(to),
            detail,
        )
        .await;
        Ok(share)
    }

    /// Ends the share of `env` with `to`: its owner's alone. The sharee is told (webhook).
    pub async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), StoreError> {
        let owner = self.host.store.env(env).await?.owner_appid;
        self.host.store.remove_share(env, to, acting).await?;
        let actor = Actor::acting(acting);
        self.log_change(&actor, "share.remove", Some(env), Some(to), String::new())
            .await;
        self.share_ended(&actor, &owner, to, vec![env.to_string()], "env");
        Ok(())
    }

    /// Ends every share of `owner`'s envs with `to`; either side may. The other side is told
    /// (webhook). Returns the envs whose shares ended.
    pub async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let envs = self.host.store.unbind(owner, to, acting).await?;
        let actor = Actor::acting(acting);
        let detail = format!("owner {owner}, envs {}", envs.join(","));
        self.log_change(&actor, "share.unbind", None, Some(to), detail)
            .await;
        self.share_ended(&actor, owner, to, envs.clone(), "app");
        Ok(envs)
    }

    /// Sets (or with `None` clears) the URL `appid`'s events are POSTed to; returns the new
    /// signing secret, shown once.
    pub async fn set_webhook(
        &self,
        appid: &str,
        url: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        self.host.store.app(appid).await?;
        let key = webhook::setting_key(appid);
        let Some(url) = url else {
            self.host.store.set_setting(&key, "").await?;
            self.log_change(
                &Actor::Operator,
                "webhook.clear",
                None,
                Some(appid),
                String::new(),
            )
            .await;
            return Ok(None);
        };
        self.host
            .webhooks
            .check_url(url)
            .await
            .map_err(StoreError::InvalidConfig)?;
        let hook = Webhook {
            url: url.to_string(),
            secret: cloudfn_store::secrets::random_hex(24),
        };
        webhook::save(self.host.store.as_ref(), appid, &hook).await?;
        self.log_change(
            &Actor::Operator,
            "webhook.set",
            None,
            Some(appid),
            url.to_string(),
        )
        .await;
        Ok(Some(hook.secret))
    }

    /// Keeps (sealed) or forgets `appid`'s AppSecret on the upstream platform, which its
    /// functions' cloud calls get their access tokens with. Never shown again.
    pub async fn set_upstream_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> Result<(), StoreError> {
        if secret.is_some_and(|s| s.trim().is_empty()) {
            return Err(StoreError::InvalidConfig(
                "the upstream secret is empty".into(),
            ));
        }
        self.host.store.set_upstream_secret(appid, secret).await?;
        self.host.upstream.forget(appid);
        let action = if secret.is_some() {
            "upstream.set"
        } else {
            "upstream.clear"
        };
        self.log_change(&Actor::Operator, action, None, Some(appid), String::new())
            .await;
        Ok(())
    }

    /// Keeps (sealed) or forgets the secret `appid`'s Taobao mini-program signs with: what
    /// the Taobao gateway signs its system parameters (`sign`, protocol §10) with for the
    /// functions of `appid`'s envs, and what those functions hold to check them. Its own
    /// secret, apart from every cloudfn credential and from the upstream AppSecret, so a
    /// function holding it can do nothing else with it.
    pub async fn set_taobao_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> Result<(), StoreError> {
        self.host.store.app(appid).await?;
        if secret.is_some_and(|s| s.trim().is_empty()) {
            return Err(StoreError::InvalidConfig(
                "the Taobao signing secret is empty".into(),
            ));
        }
        self.host
            .store
            .set_sealed_setting(TAOBAO_SECRET, &taobao_secret_key(appid), secret)
            .await?;
        let action = if secret.is_some() {
            "taobao-secret.set"
        } else {
            "taobao-secret.clear"
        };
        self.log_change(&Actor::Operator, action, None, Some(appid), String::new())
            .await;
        Ok(())
    }

    /// The webhook of `appid`, if it has one.
    pub async fn webhook(&self, appid: &str) -> Result<Option<Webhook>, StoreError> {
        webhook::load(self.host.store.as_ref(), appid).await
    }

    /// Tells the side of a share that did not end it (both, when the operator did), in the
    /// background: the change stands whether or not a receiver is up, and the delivery's
    /// outcome goes to the audit log.
    fn share_ended(&self, actor: &Actor, owner: &str, to: &str, envs: Vec<String>, scope: &str) {
        let notify: Vec<&str> = match actor.app() {
            Some(a) if a == owner => vec![to],
            Some(a) if a == to => vec![owner],
            _ => vec![owner, to],
        };
        let body = serde_json::json!({
            "event": "share.ended",
            "scope": scope,
            "owner": owner,
            "to": to,
            "envs": envs,
            "acting": actor.app(),
            "at": cloudfn_store::fsutil::now(),
        })
        .to_string()
        .into_bytes();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for app in notify {
            let (store, hooks, app, body) = (
                self.host.store.clone(),
                self.host.webhooks.clone(),
                app.to_string(),
                body.clone(),
            );
            rt.spawn(async move {
                let Ok(Some(hook)) = webhook::load(store.as_ref(), &app).await else {
                    return;
                };
                let delivery = cloudfn_store::secrets::random_hex(12);
                let done = hooks.deliver(&hook, "share.ended", &delivery, &body).await;
                let (action, detail) = if done.ok {
                    let detail = format!(
                        "share.ended to {} after {} attempt(s)",
                        hook.url, done.attempts
                    );
                    ("webhook.delivered", detail)
                } else {
                    let last = done.last_error.unwrap_or_default();
                    tracing::warn!(app, url = %hook.url, "webhook not delivered: {last}");
                    let detail = format!(
                        "share.ended to {} failed {} time(s), last: {last}",
                        hook.url, done.attempts
                    );
                    ("webhook.failed", detail)
                };
                let entry = AuditEntry {
                    seq: 0,
                    at: 0,
                    acting: None,
                    action: action.to_string(),
                    env: None,
                    target: Some(app),
                    detail,
                };
                if let Err(e) = store.audit(entry).await {
                    tracing::error!("writing the audit log ({action}) failed: {e}");
                }
            });
        }
    }
}
