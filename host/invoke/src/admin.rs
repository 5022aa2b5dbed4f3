//! The changes an operator makes through the host, where they need more than the store: a
//! deploy validates and compiles the component before storing it, a new env gets its
//! directory, rules are compiled before they are stored. Everything else (listing, apps,
//! shares) is the store's own (`Host::store`). No cache is invalidated here: the store's change
//! feed tells the state, in this process and every other.

use crate::host::Host;
use cloudfn_protocol::rules::{DEFAULT_RULES, Rules};
use cloudfn_store::fsutil::crash_point;
use cloudfn_store::{EnvInfo, FunctionConfig, StoreError, VersionInfo, validate_function_name};

impl Host {
    /// Creates an environment and its directory.
    pub async fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError> {
        // The directory first: a name the store refuses leaves at most an empty directory, a
        // stored env never lacks its directory.
        cloudfn_store::validate_env_name(name)?;
        let dir = self.state.env_dir(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        self.store.create_env(name, owner).await
    }

    /// Validates and stores a new version of `env/name` and makes it active.
    pub async fn deploy(
        &self,
        env: &str,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> Result<VersionInfo, StoreError> {
        validate_function_name(name)?;
        config.validate()?;
        self.store.env(env).await?;
        let runtime = self.runtime.clone();
        let bytes = wasm.to_vec();
        // Compiling takes tens of milliseconds or more: off the async workers.
        let component = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| anyhow::anyhow!("compile task: {e}"))?
            .map_err(|e| StoreError::InvalidWasm(e.0))?;
        let sha256 = self.store.put_blob(wasm).await?;
        crash_point("deploy-after-blob");
        self.runtime.remember(&sha256, &component)?;
        crash_point("deploy-after-artifact");
        let version = self
            .store
            .add_version(env, name, &sha256, wasm.len() as u64, &config)
            .await?;
        self.store.resolve(env, name, Some(version)).await
    }

    /// Validates and stores an env's security rules; returns them as stored.
    pub async fn set_rules(&self, env: &str, json: &str) -> Result<String, StoreError> {
        self.store.env(env).await?;
        Rules::parse(json).map_err(StoreError::InvalidRules)?;
        self.store.set_rules(env, json).await?;
        Ok(json.to_string())
    }

    /// An env's security rules (the default ones when it has set none).
    pub async fn rules(&self, env: &str) -> Result<String, StoreError> {
        Ok(self
            .store
            .rules(env)
            .await?
            .unwrap_or_else(|| DEFAULT_RULES.to_string()))
    }
}
