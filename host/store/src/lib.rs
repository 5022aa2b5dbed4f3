//! cloudfn-store: where cloudfn's state lives, behind traits.
//!
//! - [`model`]: the data model every other crate speaks (envs, functions, versions, apps,
//!   tokens, shares, activation records, the call path's [`StateSnapshot`]), re-exported from
//!   `cloudfn-model` with [`fsutil`]; [`error`]: the store's errors.
//! - The traits, one per kind of state: [`Catalog`] (envs, functions, versions), [`Blobs`]
//!   (content-addressed components), [`Apps`] (apps, credentials, tokens, settings),
//!   [`Sharing`] (the sharing switch, shares, rules), [`ActivationLog`] (call records),
//!   [`Snapshots`] and the [`ChangeFeed`] that says when to take a new one. [`Store`] is all of
//!   them.
//! - [`sqlite`]: the default implementation, a data dir with SQLite files.
//! - [`postgres`]: the same traits on a PostgreSQL database shared by several hosts, with a
//!   `LISTEN/NOTIFY` change feed. [`open`] picks one from configuration; nothing outside this
//!   crate names a database type.

// The model and the file helpers live in cloudfn-model (no database driver there, so the
// runtime can use them); their paths through this crate stay as they were.
pub mod error;
pub use cloudfn_model::{fsutil, model, names};
mod policy;
pub mod postgres;
pub mod secrets;
pub mod sqlite;

pub use error::{IssueError, StoreError, TokenError};
pub use model::*;
pub use names::{validate_appid, validate_env_name, validate_function_name};

use async_trait::async_trait;

/// Environments, their functions, and each function's immutable versions.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// Creates environment `name` owned by `owner` (an unknown owner becomes an app without
    /// credentials). Names differing only in case are the same env.
    async fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError>;
    /// Every environment, by name.
    async fn envs(&self) -> Result<Vec<EnvInfo>, StoreError>;
    /// One environment.
    async fn env(&self, name: &str) -> Result<EnvInfo, StoreError>;
    /// Records a new version of `env/name` whose component is stored under `sha256`, and makes
    /// it active, atomically. Returns the version id.
    async fn add_version(
        &self,
        env: &str,
        name: &str,
        sha256: &str,
        size: u64,
        config: &FunctionConfig,
    ) -> Result<u32, StoreError>;
    /// The functions of an environment, by name.
    async fn functions(&self, env: &str) -> Result<Vec<FunctionInfo>, StoreError>;
    /// Every version of a function, newest first.
    async fn versions(&self, env: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError>;
    /// The version a call runs: `version`, or the active one when `None`.
    async fn resolve(
        &self,
        env: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<VersionInfo, StoreError>;
    /// Makes `version` the active version of `env/name` again.
    async fn rollback(&self, env: &str, name: &str, version: u32) -> Result<(), StoreError>;
    /// Removes a function and all its versions (components stay: others may share them).
    async fn remove_function(&self, env: &str, name: &str) -> Result<(), StoreError>;
}

/// Components, stored by the SHA-256 of their bytes.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// Stores a component (a no-op when already stored); returns its hash, hex.
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError>;
    /// The component stored under `sha256`.
    async fn blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError>;
}

/// Apps, their credentials, access tokens, and host settings.
#[async_trait]
pub trait Apps: Send + Sync {
    /// Registers an app and issues its credentials. An appid that exists without credentials
    /// (an env owner from before apps had secrets) gets them now.
    async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> Result<AppCredentials, StoreError>;
    /// Replaces an app's credentials; the old ones and every token issued with them stop
    /// working at once.
    async fn rotate_secret(&self, appid: &str) -> Result<AppCredentials, StoreError>;
    /// Every app, by appid.
    async fn apps(&self) -> Result<Vec<AppInfo>, StoreError>;
    /// One app.
    async fn app(&self, appid: &str) -> Result<AppInfo, StoreError>;
    /// Checks an app's secret (protocol §2 errcodes on failure).
    async fn check_secret(&self, appid: &str, secret: &str) -> Result<(), IssueError>;
    /// Issues a new token for `appid`; earlier ones keep working for `policy.overlap`.
    /// Returns the token and its lifetime in seconds.
    async fn issue_token(
        &self,
        appid: &str,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError>;
    /// The app's current token and its remaining lifetime, or a new one when it has none (or
    /// `force_refresh`): `POST /cgi-bin/stable_token`.
    async fn stable_token(
        &self,
        appid: &str,
        force_refresh: bool,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError>;
    /// Keeps (or with `None` forgets) an app's credential for the upstream platform (its
    /// AppSecret there), sealed: only this data dir's key opens it.
    async fn set_upstream_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> Result<(), StoreError>;
    /// An app's upstream credential, unsealed, if it has one.
    async fn upstream_secret(&self, appid: &str) -> Result<Option<String>, StoreError>;
    /// HMAC-SHA256 of `data` under this store's key, derived for `purpose`: what signs
    /// values the host hands out and checks when they come back (user sessions).
    fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32];
    /// `plain` sealed under this store's key for `purpose` (ChaCha20-Poly1305): how secrets
    /// the host must use again (webhook signing keys) are kept at rest.
    fn seal(&self, purpose: &str, plain: &str) -> String;
    /// What [`Apps::seal`] sealed for `purpose`; `None` when it was sealed under another key
    /// or purpose, or altered.
    fn unseal(&self, purpose: &str, sealed: &str) -> Option<String>;
    /// Setting `key` sealed for `purpose`, opened; `None` when it is not set. A value that
    /// does not open (the token key replaced) is an error saying so.
    async fn sealed_setting(&self, purpose: &str, key: &str) -> Result<Option<String>, StoreError> {
        let Some(sealed) = self.setting(key).await?.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        self.unseal(purpose, &sealed).map(Some).ok_or_else(|| {
            StoreError::Storage(anyhow::anyhow!(
                "{key} does not open with this store's token key (keys/token.key or \
                 CLOUDFN_TOKEN_KEY replaced?); set it again"
            ))
        })
    }
    /// Keeps `value` as setting `key`, sealed for `purpose` (with `None`, clears it).
    async fn set_sealed_setting(
        &self,
        purpose: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let kept = value.map_or_else(String::new, |v| self.seal(purpose, v));
        self.set_setting(key, &kept).await
    }
    /// Keeps a mini-program user's login: their `session_key` from the platform (sealed, never
    /// handed out), replacing an earlier one. Returns the app's session generation, which the
    /// session issued for this login carries.
    async fn record_login(
        &self,
        appid: &str,
        openid: &str,
        unionid: Option<&str>,
        session_key: &str,
    ) -> Result<u64, StoreError>;
    /// Ends every session of an app's users: moves its session generation on (sessions
    /// carrying an older one are refused) and forgets their `session_key`s. Returns the new
    /// generation.
    async fn revoke_sessions(&self, appid: &str) -> Result<u64, StoreError>;
    /// A setting (e.g. the admin token's hash).
    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// Environment sharing: the app-level switch, shares, and each env's security rules. A store
/// enforces who may share what (protocol §1) in the same transaction as the change.
#[async_trait]
pub trait Sharing: Send + Sync {
    /// Turns an app's sharing on or off. Off is refused while the app's envs have shares.
    async fn set_sharing(&self, appid: &str, on: bool) -> Result<(), StoreError>;
    /// Shares `env` with app `to`. `acting` is the app making the change (default: the
    /// owner); only the owner may share, only with an app of the same subject, once the owner
    /// has sharing on and the env has a deployed `cloudbase_auth`. Sharing again updates.
    async fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, StoreError>;
    /// The share of `env` with `to`, if any.
    async fn share(&self, env: &str, to: &str) -> Result<Option<ShareInfo>, StoreError>;
    /// Shares of an env, or involving an app (as owner or sharee), or all.
    async fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<ShareInfo>, StoreError>;
    /// Ends the share of one env: its owner's alone (`acting`, default the owner, must be the
    /// owner; a sharee ends the whole relationship with [`Sharing::unbind`]).
    async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Ends the relationship of two apps: every share of `owner`'s envs with `to`. Either side
    /// may (`acting`: `owner` or `to`; default the owner). Returns the envs whose shares ended.
    async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<Vec<String>, StoreError>;
    /// Stores an env's security rules (already validated by the caller).
    async fn set_rules(&self, env: &str, json: &str) -> Result<(), StoreError>;
    /// An env's own security rules, `None` when it has set none.
    async fn rules(&self, env: &str) -> Result<Option<String>, StoreError>;
}

/// Activation records: written off the call path, read by `logs` and the admin API.
#[async_trait]
pub trait ActivationLog: Send + Sync {
    /// Queues a record; never waits for storage.
    fn record(&self, activation: Activation);
    /// Waits until every record queued so far is stored.
    async fn flush(&self);
    /// Records matching `q`, oldest first, including every record queued before the call.
    async fn activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>, StoreError>;
    /// Records dropped since the start because the writer was that far behind (its queue
    /// full): served in `/metrics` as `cloudfn_activation_records_dropped_total`.
    fn records_dropped(&self) -> u64;
}

/// The audit log of management changes: who (the operator, or an app acting through it) did
/// what to which env, function or app.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry (its `seq` and `at` are the store's).
    async fn audit(&self, entry: AuditEntry) -> Result<(), StoreError>;
    /// Entries matching `q`, oldest first.
    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Reads everything the call path needs in one consistent read.
#[async_trait]
pub trait Snapshots: Send + Sync {
    /// The current state.
    async fn snapshot(&self) -> Result<StateSnapshot, StoreError>;
}

/// Says when the state changed, in this process or any other using the same store.
pub trait ChangeFeed: Send + Sync {
    /// A number that moves whenever a change is committed. It is read on every call, so it
    /// must cost next to nothing (no database round trip).
    fn version(&self) -> u64;
    /// Whether the store can be reached, as far as the feed knows without a round trip (a
    /// host is not ready while it cannot hear about changes).
    fn reachable(&self) -> bool {
        true
    }
}

/// A complete store.
pub trait Store:
    Catalog + Blobs + Apps + Sharing + ActivationLog + AuditLog + Snapshots + ChangeFeed
{
}

impl<T: Catalog + Blobs + Apps + Sharing + ActivationLog + AuditLog + Snapshots + ChangeFeed> Store
    for T
{
}

/// Where a host keeps its state: a data dir (SQLite, the default) or a PostgreSQL database
/// shared with other hosts.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// `postgres://…` for the PostgreSQL store; `None` for the data dir's SQLite store.
    pub url: Option<String>,
    /// The token key as 64 hex digits: required with PostgreSQL (every host the same), not
    /// used with a data dir (which keeps its own in `keys/token.key`).
    pub token_key: Option<String>,
    /// Apply PostgreSQL schema migrations first (a data dir always migrates on open).
    pub migrate: bool,
}

/// Opens the store `config` names; a data dir store at `data_dir`. Activation records: at
/// most `retention` per env, and (data dir) `max_bytes` on disk.
pub async fn open(
    config: &StoreConfig,
    data_dir: &std::path::Path,
    retention: u64,
    max_bytes: u64,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    use anyhow::Context;
    match config.url.as_deref() {
        None => {
            anyhow::ensure!(
                config.token_key.is_none(),
                "a token key (--token-key, CLOUDFN_TOKEN_KEY) is for a PostgreSQL store; a data \
                 dir keeps its own in keys/token.key"
            );
            let store = sqlite::SqliteStore::open_with(data_dir, retention, max_bytes)
                .with_context(|| format!("opening data dir {}", data_dir.display()))?;
            Ok(std::sync::Arc::new(store))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let key = config.token_key.as_deref().context(
                "a PostgreSQL store needs the token key every host shares: --token-key or \
                 CLOUDFN_TOKEN_KEY (64 hex digits; make one with `openssl rand -hex 32`)",
            )?;
            let key = postgres::parse_token_key(key)?;
            let store = postgres::PostgresStore::open(url, key, retention, config.migrate)
                .await
                .with_context(|| format!("opening the store at {}", postgres::describe(url)))?;
            Ok(std::sync::Arc::new(store))
        }
        Some(other) => anyhow::bail!(
            "unsupported store {:?}: use postgres://USER:PASSWORD@HOST:PORT/DB, or no --store \
             for the data dir",
            other.split(':').next().unwrap_or(other)
        ),
    }
}
