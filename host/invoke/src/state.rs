//! The state the call path reads, held in memory: a [`Snapshot`] of the store (envs, active
//! versions, shares, rules, tokens, server-SDK keys) taken whole and replaced whole when the
//! store's change feed moves, and the prepared (compiled, linked) function versions in use.
//!
//! A call reads the feed (one memory load), and only when it moved takes a new snapshot; so a
//! change committed by this process or another one is seen by the next call, and a call makes
//! no database round trip otherwise. Every step of one call reads the one snapshot it started
//! with.

use crate::error::InvokeError;
use arc_swap::ArcSwap;
use cloudfn_protocol::rules::Rules;
use cloudfn_runtime::{Prepared, Runtime};
use cloudfn_store::{
    AUTH_FUNCTION, EnvInfo, ShareInfo, StateSnapshot, Store, TokenError, TokenPolicy, TokenRecord,
    VersionInfo,
};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// A function's active version, and its prepared form once a call needed it.
pub struct ActiveFunction {
    /// The version.
    pub info: VersionInfo,
    /// Loaded by the first call that needs it while the others wait (one compile per
    /// version, not one per concurrent caller).
    prepared: tokio::sync::OnceCell<Arc<Prepared>>,
}

/// One consistent view of the store.
pub struct Snapshot {
    /// The change-feed version it was taken at.
    pub feed_version: u64,
    envs: HashMap<String, EnvInfo>,
    functions: HashMap<String, HashMap<String, ActiveFunction>>,
    shares: HashMap<String, HashMap<String, ShareInfo>>,
    rules: HashMap<String, Arc<Rules>>,
    default_rules: Arc<Rules>,
    /// Per env: a tag of everything a `cloudbase_auth` decision depends on (its version and
    /// config, the env's shares and rules); a cached decision is good only under its tag.
    grant_tags: HashMap<String, u64>,
    tokens: HashMap<String, TokenRecord>,
    secret_keys: HashMap<String, (String, String)>,
    session_gens: HashMap<String, u64>,
}

impl Snapshot {
    fn build(feed_version: u64, s: StateSnapshot, old: Option<&Snapshot>) -> Snapshot {
        let envs: HashMap<String, EnvInfo> =
            s.envs.into_iter().map(|e| (e.name.clone(), e)).collect();
        let mut functions: HashMap<String, HashMap<String, ActiveFunction>> = HashMap::new();
        for info in s.active {
            // A version still active with the same content and config keeps its prepared form.
            let prepared = tokio::sync::OnceCell::new();
            if let Some(p) = old
                .and_then(|o| o.function(&info.env, &info.name))
                .filter(|f| f.info.sha256 == info.sha256 && f.info.config == info.config)
                .and_then(|f| f.prepared.get())
            {
                let _ = prepared.set(p.clone());
            }
            functions
                .entry(info.env.clone())
                .or_default()
                .insert(info.name.clone(), ActiveFunction { info, prepared });
        }
        let mut shares: HashMap<String, HashMap<String, ShareInfo>> = HashMap::new();
        for share in s.shares {
            shares
                .entry(share.env.clone())
                .or_default()
                .insert(share.to_appid.clone(), share);
        }
        let mut rules = HashMap::new();
        let mut rules_json: HashMap<&str, &str> = HashMap::new();
        for (env, json) in &s.rules {
            match Rules::parse(json) {
                Ok(r) => {
                    rules.insert(env.clone(), Arc::new(r));
                }
                // Rules are validated before they are stored; if stored ones still fail, the
                // env denies every shared call rather than fall back to a laxer default.
                Err(e) => {
                    tracing::error!("stored rules of env {env} are invalid ({e}); denying");
                    rules.insert(env.clone(), Arc::new(Rules::deny_all()));
                }
            }
            rules_json.insert(env, json);
        }
        let mut grant_tags = HashMap::new();
        for env in envs.keys() {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            if let Some(auth) = functions.get(env).and_then(|f| f.get(AUTH_FUNCTION)) {
                (auth.info.version, &auth.info.sha256, &auth.info.config).hash(&mut h);
            }
            if let Some(shares) = shares.get(env) {
                let mut list: Vec<_> = shares.values().collect();
                list.sort_by(|a, b| a.to_appid.cmp(&b.to_appid));
                for s in list {
                    (&s.to_appid, &s.perms, s.functions.encode()).hash(&mut h);
                }
            }
            rules_json.get(env.as_str()).hash(&mut h);
            grant_tags.insert(env.clone(), h.finish());
        }
        Snapshot {
            feed_version,
            envs,
            functions,
            shares,
            rules,
            default_rules: Arc::new(Rules::default_rules()),
            grant_tags,
            tokens: s
                .tokens
                .into_iter()
                .map(|t| (t.token_sha256.clone(), t))
                .collect(),
            secret_keys: s
                .secret_keys
                .into_iter()
                .map(|(id, app, key)| (id, (app, key)))
                .collect(),
            session_gens: s.session_gens.into_iter().collect(),
        }
    }

    /// An environment.
    pub fn env(&self, name: &str) -> Option<&EnvInfo> {
        self.envs.get(name)
    }

    /// A function's active version.
    pub fn function(&self, env: &str, name: &str) -> Option<&ActiveFunction> {
        self.functions.get(env)?.get(name)
    }

    /// The share of `env` with app `to`.
    pub fn share(&self, env: &str, to: &str) -> Option<&ShareInfo> {
        self.shares.get(env)?.get(to)
    }

    /// An env's rules (the default ones when it set none).
    pub fn rules(&self, env: &str) -> &Rules {
        self.rules.get(env).unwrap_or(&self.default_rules)
    }

    /// The tag cached `cloudbase_auth` decisions of `env` must carry to be used.
    pub fn grant_tag(&self, env: &str) -> u64 {
        self.grant_tags.get(env).copied().unwrap_or(0)
    }

    /// The app an access token belongs to, or why it is refused.
    pub fn token_app(&self, token: &str, policy: TokenPolicy) -> Result<&str, TokenError> {
        let hash = cloudfn_store::secrets::hash_secret(token);
        match self.tokens.get(&hash) {
            None => Err(TokenError::Invalid),
            Some(t) => t.check(cloudfn_store::fsutil::now(), policy),
        }
    }

    /// An app's session generation (`None`: no such app): a user session is good only
    /// under the current one.
    pub fn session_gen(&self, appid: &str) -> Option<u64> {
        self.session_gens.get(appid).copied()
    }

    /// The app and secretKey behind a server-SDK secretId.
    pub fn secret_key(&self, secret_id: &str) -> Option<(&str, &str)> {
        self.secret_keys
            .get(secret_id)
            .map(|(app, key)| (app.as_str(), key.as_str()))
    }
}

/// The snapshot in use and the prepared versions.
pub struct State {
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    env_root: PathBuf,
    /// Swapped whole on reload; calls read it without a lock.
    current: ArcSwap<Snapshot>,
    reload: tokio::sync::Mutex<()>,
    /// Versions called by number (not the active one), by (env, name, version).
    pinned: RwLock<HashMap<PinnedKey, (VersionInfo, Arc<Prepared>)>>,
}

/// (env, name, version) of a version called by number.
type PinnedKey = (String, String, u32);

/// Most versions called by number kept prepared.
const MAX_PINNED: usize = 256;

impl State {
    /// The state of `store`, with env directories under `env_root`.
    pub async fn load(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        env_root: PathBuf,
    ) -> Result<State, InvokeError> {
        let feed_version = store.version();
        let snapshot = Snapshot::build(feed_version, store.snapshot().await?, None);
        Ok(State {
            store,
            runtime,
            env_root,
            current: ArcSwap::from_pointee(snapshot),
            reload: tokio::sync::Mutex::new(()),
            pinned: RwLock::default(),
        })
    }

    /// The current snapshot, taking a new one first if the store changed since.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, InvokeError> {
        let current = self.current.load_full();
        if current.feed_version == self.store.version() {
            return Ok(current);
        }
        // One reload at a time; whoever waited finds it done.
        let _reloading = self.reload.lock().await;
        let current = self.current.load_full();
        let feed_version = self.store.version();
        if current.feed_version == feed_version {
            return Ok(current);
        }
        // Read the version before the state: a change landing in between moves the feed again
        // and the next call reloads once more.
        let fresh = Arc::new(Snapshot::build(
            feed_version,
            self.store.snapshot().await?,
            Some(&current),
        ));
        self.current.store(fresh.clone());
        self.pinned
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(fresh)
    }

    /// The directory an env's functions see as `/`.
    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.env_root.join(env)
    }

    /// The prepared form of a function's active version, loading it on first use.
    pub async fn prepared(&self, f: &ActiveFunction) -> Result<Arc<Prepared>, InvokeError> {
        f.prepared
            .get_or_try_init(|| self.load_version(&f.info))
            .await
            .cloned()
    }

    /// Compiles every active version that would need a compile on its first call, one at a
    /// time (a compile takes both cores; calls go on meanwhile, and one needing the version
    /// being prepared waits for it). Versions with an artifact are left to load on first use
    /// (~0.1 ms), so a host with many functions does not map them all at start.
    pub async fn warm(&self) {
        let snapshot = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("not preparing functions ahead of calls: {e}");
                return;
            }
        };
        for f in snapshot.functions.values().flat_map(HashMap::values) {
            if f.prepared.get().is_none()
                && !self.runtime.is_compiled(&f.info.sha256)
                && let Err(e) = self.prepared(f).await
            {
                tracing::warn!(
                    env = %f.info.env,
                    function = %f.info.name,
                    version = f.info.version,
                    "preparing ahead of calls failed: {e}"
                );
            }
        }
    }

    /// The prepared form of a version called by number.
    pub async fn pinned(
        &self,
        env: &str,
        name: &str,
        version: u32,
    ) -> Result<(VersionInfo, Arc<Prepared>), InvokeError> {
        let key = (env.to_string(), name.to_string(), version);
        if let Some(hit) = self
            .pinned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let info = self.store.resolve(env, name, Some(version)).await?;
        let prepared = self.load_version(&info).await?;
        let mut pinned = self.pinned.write().unwrap_or_else(|e| e.into_inner());
        if pinned.len() >= MAX_PINNED {
            pinned.clear();
        }
        pinned.insert(key, (info.clone(), prepared.clone()));
        Ok((info, prepared))
    }

    /// Loads (artifact or compile), links and prepares a version. Each step blocks — a file
    /// map, tens of milliseconds of Cranelift, type-checking imports, opening the env directory —
    /// so each runs off the async workers.
    async fn load_version(&self, info: &VersionInfo) -> Result<Arc<Prepared>, InvokeError> {
        let (runtime, sha) = (self.runtime.clone(), info.sha256.clone());
        let component = match blocking(move || Ok(runtime.cached(&sha))).await? {
            Some(c) => c,
            None => {
                let bytes = self.store.blob(&info.sha256).await?;
                let (runtime, sha) = (self.runtime.clone(), info.sha256.clone());
                blocking(move || runtime.compile_stored(&sha, &bytes)).await?
            }
        };
        let (runtime, dir, config) = (
            self.runtime.clone(),
            self.env_dir(&info.env),
            info.config.clone(),
        );
        let prepared = blocking(move || runtime.prepare(&component, Some(&dir), config)).await?;
        Ok(Arc::new(prepared))
    }
}

/// Runs blocking work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, InvokeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InvokeError::System(anyhow::anyhow!("blocking task: {e}")))?
        .map_err(InvokeError::System)
}
