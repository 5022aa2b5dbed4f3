//! The registry: which environments exist, their functions, each function's immutable versions
//! and which one is active. Metadata lives in SQLite (`cloudfn.db`, WAL, one transaction per
//! change, versioned migrations); wasm and precompiled artifacts are content-addressed files
//! written atomically (temp file, fsync, rename), so a crash at any step leaves either the old
//! state or the new one, never a half-written function.

use crate::error::RegistryError;
use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default time limit of a call (protocol §8: 3 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time limit of an HTTP-API call (protocol §3: 5 s).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default memory limit of a call.
pub const DEFAULT_MEMORY_MB: u32 = 256;
/// Largest memory limit a function may ask for (protocol §8).
pub const MAX_MEMORY_MB: u32 = 2048;
/// Longest time limit a function may ask for (protocol §8: 900 s on the newest platform).
pub const MAX_TIMEOUT_MS: u64 = 900_000;
/// Total size of a function's variables (SCF's environment-variable limit).
const MAX_VARS_BYTES: usize = 4096;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: environments, functions, versions.
    "CREATE TABLE envs (
        name TEXT PRIMARY KEY,
        owner_appid TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE functions (
        env TEXT NOT NULL REFERENCES envs(name),
        name TEXT NOT NULL,
        active_version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (env, name)
    );
    CREATE TABLE versions (
        env TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        config TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (env, name, version),
        FOREIGN KEY (env, name) REFERENCES functions(env, name) ON DELETE CASCADE
    );",
    // 2: apps and their credentials, access tokens, settings. Env owners
    // from a schema-1 data dir become apps without credentials (`app rotate-secret` issues them).
    "CREATE TABLE apps (
        appid TEXT PRIMARY KEY,
        subject TEXT,
        secret_sha256 TEXT,
        secret_id TEXT UNIQUE,
        secret_key TEXT,
        created_at INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO apps (appid, created_at)
        SELECT owner_appid, MIN(created_at) FROM envs GROUP BY owner_appid;
    CREATE TABLE tokens (
        token_sha256 TEXT PRIMARY KEY,
        token_id TEXT NOT NULL,
        appid TEXT NOT NULL REFERENCES apps(appid) ON DELETE CASCADE,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        superseded_at INTEGER
    );
    CREATE INDEX tokens_by_app ON tokens (appid, issued_at);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );",
    // 3: environment sharing: the app-level switch, shares, security rules.
    "ALTER TABLE apps ADD COLUMN sharing INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE shares (
        env TEXT NOT NULL REFERENCES envs(name),
        to_appid TEXT NOT NULL REFERENCES apps(appid),
        perms TEXT NOT NULL,
        functions TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (env, to_appid)
    );
    CREATE TABLE env_rules (
        env TEXT PRIMARY KEY REFERENCES envs(name),
        rules TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );",
];

/// A function version's configuration, fixed when it is deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FunctionConfig {
    /// Time limit of one call, in milliseconds; `None` takes the platform default for the
    /// call's path (3 s, 5 s for HTTP-API calls: protocol §3, §8).
    pub timeout_ms: Option<u64>,
    /// Memory limit of one call, in MiB.
    pub memory_mb: u32,
    /// Variables the function reads with `var(name)`.
    pub vars: BTreeMap<String, String>,
    /// Whether the env directory is writable for this function (read-only by default).
    pub fs_write: bool,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig {
            timeout_ms: None,
            memory_mb: DEFAULT_MEMORY_MB,
            vars: BTreeMap::new(),
            fs_write: false,
        }
    }
}

impl FunctionConfig {
    /// Checks every value is within the platform's limits.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let bad = |msg: String| Err(RegistryError::InvalidConfig(msg));
        if let Some(ms) = self.timeout_ms
            && (ms == 0 || ms > MAX_TIMEOUT_MS)
        {
            return bad(format!(
                "timeout must be between 1 ms and {} s, got {ms} ms",
                MAX_TIMEOUT_MS / 1000
            ));
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return bad(format!(
                "memory must be between 1 and {MAX_MEMORY_MB} MB, got {} MB",
                self.memory_mb
            ));
        }
        let mut total = 0;
        for (k, v) in &self.vars {
            let valid = k.len() <= 64
                && k.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return bad(format!(
                    "variable name {k:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 64 characters)"
                ));
            }
            total += k.len() + v.len();
        }
        if total > MAX_VARS_BYTES {
            return bad(format!(
                "variables take {total} bytes, more than the {MAX_VARS_BYTES}-byte limit"
            ));
        }
        Ok(())
    }
}

/// One environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInfo {
    /// Its id, e.g. `prod-01`.
    pub name: String,
    /// The app that owns it.
    pub owner_appid: String,
    /// Unix seconds.
    pub created_at: i64,
    /// How many functions it has.
    pub functions: u32,
}

/// One function and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The environment.
    pub env: String,
    /// The function's name.
    pub name: String,
    /// The version calls run.
    pub active_version: u32,
    /// How many versions are kept.
    pub versions: u32,
    /// Unix seconds of the last deploy or rollback.
    pub updated_at: i64,
}

/// One immutable version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The environment.
    pub env: String,
    /// The function's name.
    pub name: String,
    /// The version id (1, 2, …).
    pub version: u32,
    /// SHA-256 of the component, hex: the blob's file name.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// Its configuration.
    pub config: FunctionConfig,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether calls currently run this version.
    pub active: bool,
}

/// A name made of ASCII letters, digits, '_' and '-', with a length range and rules for its
/// first and last characters; `rule` says it in words for the error.
fn check_name(
    kind: &'static str,
    name: &str,
    len: std::ops::RangeInclusive<usize>,
    first: fn(&u8) -> bool,
    last: fn(&u8) -> bool,
    rule: &'static str,
) -> Result<(), RegistryError> {
    let b = name.as_bytes();
    let ok = len.contains(&b.len())
        && b.first().is_some_and(first)
        && b.last().is_some_and(last)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            kind,
            name: name.to_string(),
            rule,
        })
    }
}

/// Checks a function name against protocol §3: `^[a-zA-Z][a-zA-Z0-9_-]{0,58}[a-zA-Z0-9]$`.
pub fn validate_function_name(name: &str) -> Result<(), RegistryError> {
    check_name(
        "function",
        name,
        2..=60,
        u8::is_ascii_alphabetic,
        u8::is_ascii_alphanumeric,
        "2-60 characters: a letter first, then letters, digits, '_' or '-', \
         ending with a letter or digit",
    )
}

/// Checks an env id: 2-64 characters of letters, digits, '-' and '_', starting with a letter
/// or digit (e.g. `prod-01`, `test-f96b31`); it names a directory, so nothing else is allowed.
pub fn validate_env_name(name: &str) -> Result<(), RegistryError> {
    check_name(
        "env",
        name,
        2..=64,
        u8::is_ascii_alphanumeric,
        |_| true,
        "2-64 characters: letters, digits, '-' or '_', starting with a letter or digit",
    )
}

/// Checks an appid: 2-64 letters, digits, '_' or '-' (e.g. `wx8f3a…`, `tt12…`).
pub fn validate_appid(appid: &str) -> Result<(), RegistryError> {
    check_name(
        "app",
        appid,
        2..=64,
        |_| true,
        |_| true,
        "2-64 characters: letters, digits, '-' or '_'",
    )
}

/// Deliberate crash points for tests of interrupted deploys: set `CLOUDFN_CRASH_AT` to a step
/// name and the process aborts there, as a power cut would.
pub(crate) fn crash_point(step: &str) {
    if std::env::var_os("CLOUDFN_CRASH_AT").is_some_and(|v| v == step) {
        eprintln!("cloudfn: simulated crash at {step}");
        std::process::abort();
    }
}

/// The registry of one data dir.
pub struct Registry {
    root: PathBuf,
    db: Mutex<Connection>,
    token_key: Vec<u8>,
}

impl Registry {
    /// Opens (creating if needed) the data dir at `root`, migrates its database and removes
    /// temp files an interrupted write left behind.
    pub fn open(root: impl Into<PathBuf>) -> anyhow::Result<Registry> {
        let root = root.into();
        for dir in ["blobs", "artifacts", "envs"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        for dir in ["blobs", "artifacts"] {
            for entry in std::fs::read_dir(root.join(dir))?.flatten() {
                // Only old ones: a young temp file may be another process's write in progress.
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(600));
                if stale && entry.file_name().to_string_lossy().contains(".tmp-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let db_path = root.join("cloudfn.db");
        let mut conn =
            Connection::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, MIGRATIONS)
            .with_context(|| format!("migrating {}", db_path.display()))?;
        let token_key = crate::credentials::load_token_key(&root)?;
        Ok(Registry {
            root,
            db: Mutex::new(conn),
            token_key,
        })
    }

    /// SQLite's `data_version`: it changes when another connection (another process) commits,
    /// so caches of registry state know when to re-read.
    pub fn data_version(&self) -> Result<u64, RegistryError> {
        Ok(self
            .db()
            .pragma_query_value(None, "data_version", |r| r.get::<_, i64>(0))? as u64)
    }

    /// The key access tokens are derived with.
    pub(crate) fn token_key(&self) -> &[u8] {
        &self.token_key
    }

    /// The data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied change (SQLite rolls the
        // transaction back), so a poisoned lock is safe to reuse.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates environment `name` owned by `owner`, with its (empty) directory.
    pub fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, RegistryError> {
        validate_env_name(name)?;
        validate_appid(owner)?;
        let now = now();
        let mut db = self.db();
        let db = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Env names are directories: on a case-insensitive filesystem `Prod` and `prod` would
        // share one, so names that differ only in case are the same env.
        let clash: Option<String> = db
            .query_row(
                "SELECT name FROM envs WHERE lower(name) = lower(?1)",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(existing) = clash {
            return Err(RegistryError::EnvExists(existing));
        }
        // An owner not yet registered becomes an app without credentials.
        db.execute(
            "INSERT OR IGNORE INTO apps (appid, created_at) VALUES (?1, ?2)",
            params![owner, now],
        )?;
        db.execute(
            "INSERT INTO envs (name, owner_appid, created_at) VALUES (?1, ?2, ?3)",
            params![name, owner, now],
        )?;
        // Inside the transaction: if the directory cannot be made, the env is not created.
        std::fs::create_dir_all(self.env_dir(name))
            .with_context(|| format!("creating the directory of env {name}"))?;
        db.commit()?;
        Ok(EnvInfo {
            name: name.to_string(),
            owner_appid: owner.to_string(),
            created_at: now,
            functions: 0,
        })
    }

    /// Every environment, by name.
    pub fn envs(&self) -> Result<Vec<EnvInfo>, RegistryError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT e.name, e.owner_appid, e.created_at,
                    (SELECT COUNT(*) FROM functions f WHERE f.env = e.name)
             FROM envs e ORDER BY e.name",
        )?;
        let rows = stmt.query_map([], env_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One environment.
    pub fn env(&self, name: &str) -> Result<EnvInfo, RegistryError> {
        self.db()
            .query_row(
                "SELECT e.name, e.owner_appid, e.created_at,
                        (SELECT COUNT(*) FROM functions f WHERE f.env = e.name)
                 FROM envs e WHERE e.name = ?1",
                [name],
                env_row,
            )
            .optional()?
            .ok_or_else(|| RegistryError::EnvNotFound(name.to_string()))
    }

    /// The directory an environment's functions see as `/`.
    pub fn env_dir(&self, env: &str) -> PathBuf {
        self.root.join("envs").join(env)
    }

    /// Where the component with this hash is stored.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.wasm"))
    }

    /// Where the precompiled artifact of this hash for an engine (`engine_tag`) is cached.
    pub fn artifact_path(&self, sha256: &str, engine_tag: &str) -> PathBuf {
        self.root
            .join("artifacts")
            .join(format!("{sha256}-{engine_tag}.cwasm"))
    }

    /// Stores a component by content hash (atomically; a no-op when already stored).
    pub fn put_blob(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let path = self.blob_path(&sha256);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(sha256)
    }

    /// Records a new version of `env/name` with a stored blob and makes it active, in one
    /// transaction. Returns the new version id.
    pub fn add_version(
        &self,
        env: &str,
        name: &str,
        sha256: &str,
        size: u64,
        config: &FunctionConfig,
    ) -> Result<u32, RegistryError> {
        validate_function_name(name)?;
        config.validate()?;
        let config_json = serde_json::to_string(config).context("encoding function config")?;
        let now = now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        ensure_env(&tx, env)?;
        let version: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE env = ?1 AND name = ?2",
            [env, name],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO functions (env, name, active_version, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (env, name) DO UPDATE SET active_version = ?3, updated_at = ?4",
            params![env, name, version, now],
        )?;
        tx.execute(
            "INSERT INTO versions (env, name, version, sha256, size, config, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![env, name, version, sha256, size as i64, config_json, now],
        )?;
        crash_point("deploy-before-commit");
        tx.commit()?;
        Ok(version)
    }

    /// The functions of an environment, by name.
    pub fn functions(&self, env: &str) -> Result<Vec<FunctionInfo>, RegistryError> {
        let db = self.db();
        ensure_env(&db, env)?;
        let mut stmt = db.prepare(
            "SELECT f.env, f.name, f.active_version,
                    (SELECT COUNT(*) FROM versions v WHERE v.env = f.env AND v.name = f.name),
                    f.updated_at
             FROM functions f WHERE f.env = ?1 ORDER BY f.name",
        )?;
        let rows = stmt.query_map([env], |r| {
            Ok(FunctionInfo {
                env: r.get(0)?,
                name: r.get(1)?,
                active_version: r.get(2)?,
                versions: r.get(3)?,
                updated_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every version of a function, newest first.
    pub fn versions(&self, env: &str, name: &str) -> Result<Vec<VersionInfo>, RegistryError> {
        let db = self.db();
        ensure_function(&db, env, name)?;
        let mut stmt = db.prepare(&format!(
            "{VERSION_SELECT} WHERE v.env = ?1 AND v.name = ?2 ORDER BY v.version DESC"
        ))?;
        let rows = stmt.query_map([env, name], version_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The version a call runs: `version`, or the active one when `None`.
    pub fn resolve(
        &self,
        env: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<VersionInfo, RegistryError> {
        let db = self.db();
        let found = match version {
            Some(v) => db
                .prepare_cached(&format!(
                    "{VERSION_SELECT} WHERE v.env = ?1 AND v.name = ?2 AND v.version = ?3"
                ))?
                .query_row(params![env, name, v], version_row)
                .optional()?,
            None => db
                .prepare_cached(&format!(
                    "{VERSION_SELECT} WHERE v.env = ?1 AND v.name = ?2
                     AND v.version = f.active_version"
                ))?
                .query_row(params![env, name], version_row)
                .optional()?,
        };
        match (found, version) {
            (Some(v), _) => Ok(v),
            (None, Some(version)) => {
                ensure_function(&db, env, name)?;
                Err(RegistryError::VersionNotFound {
                    env: env.into(),
                    name: name.into(),
                    version,
                })
            }
            (None, None) => {
                ensure_env(&db, env)?;
                Err(RegistryError::FunctionNotFound {
                    env: env.into(),
                    name: name.into(),
                })
            }
        }
    }

    /// Makes `version` the active version of `env/name` again.
    pub fn rollback(&self, env: &str, name: &str, version: u32) -> Result<(), RegistryError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        ensure_function(&tx, env, name)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE env = ?1 AND name = ?2 AND version = ?3)",
            params![env, name, version],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(RegistryError::VersionNotFound {
                env: env.into(),
                name: name.into(),
                version,
            });
        }
        tx.execute(
            "UPDATE functions SET active_version = ?3, updated_at = ?4 WHERE env = ?1 AND name = ?2",
            params![env, name, version, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes a function and all its versions. Blobs stay (other versions may share them).
    pub fn remove_function(&self, env: &str, name: &str) -> Result<(), RegistryError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        ensure_function(&tx, env, name)?;
        tx.execute(
            "DELETE FROM versions WHERE env = ?1 AND name = ?2",
            [env, name],
        )?;
        tx.execute(
            "DELETE FROM functions WHERE env = ?1 AND name = ?2",
            [env, name],
        )?;
        tx.commit()?;
        Ok(())
    }
}

const VERSION_SELECT: &str = "SELECT v.env, v.name, v.version, v.sha256, v.size, v.config,
        v.created_at, v.version = f.active_version
    FROM versions v JOIN functions f ON f.env = v.env AND f.name = v.name";

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionInfo> {
    let config: String = r.get(5)?;
    Ok(VersionInfo {
        env: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        sha256: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        config: serde_json::from_str(&config).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        created_at: r.get(6)?,
        active: r.get(7)?,
    })
}

fn env_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnvInfo> {
    Ok(EnvInfo {
        name: r.get(0)?,
        owner_appid: r.get(1)?,
        created_at: r.get(2)?,
        functions: r.get(3)?,
    })
}

fn ensure_env(db: &Connection, env: &str) -> Result<(), RegistryError> {
    let exists: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM envs WHERE name = ?1)",
        [env],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(RegistryError::EnvNotFound(env.to_string()))
    }
}

fn ensure_function(db: &Connection, env: &str, name: &str) -> Result<(), RegistryError> {
    ensure_env(db, env)?;
    let exists: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM functions WHERE env = ?1 AND name = ?2)",
        [env, name],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(RegistryError::FunctionNotFound {
            env: env.to_string(),
            name: name.to_string(),
        })
    }
}

/// Applies the `migrations` a database has not had yet, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> anyhow::Result<()> {
    let applied = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if applied > migrations.len() {
        anyhow::bail!(
            "the database has schema version {applied}, newer than this cloudfn knows ({}); \
             upgrade cloudfn",
            migrations.len()
        );
    }
    for (i, sql) in migrations.iter().enumerate().skip(applied) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)
            .with_context(|| format!("schema migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one: a temp file
/// in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .context("atomic write needs a parent directory")?;
    let tmp = dir.join(format!(
        "{}.tmp-{}-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_protocol_pattern() {
        for ok in [
            "ab",
            "echo",
            "cloudbase_auth",
            "users-add2",
            &"a".repeat(60),
        ] {
            assert!(validate_function_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "1abc",
            "_abc",
            "abc_",
            "ab.c",
            "a b",
            "../x",
            &"a".repeat(61),
        ] {
            assert!(validate_function_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_cannot_escape_the_data_dir() {
        for bad in ["..", "a/b", ".hidden", "a", "é1"] {
            assert!(validate_env_name(bad).is_err(), "{bad}");
        }
        assert!(validate_env_name("prod-01").is_ok());
    }

    #[test]
    fn versions_rollback_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        reg.create_env("prod", "wxA").unwrap();
        assert!(matches!(
            reg.create_env("prod", "wxA"),
            Err(RegistryError::EnvExists(_))
        ));
        // Env names are directories: `Prod` would share `prod`'s on some filesystems.
        assert!(matches!(
            reg.create_env("Prod", "wxC"),
            Err(RegistryError::EnvExists(e)) if e == "prod"
        ));
        let h1 = reg.put_blob(b"one").unwrap();
        let h2 = reg.put_blob(b"two").unwrap();
        let cfg = FunctionConfig::default();
        assert_eq!(reg.add_version("prod", "fn1", &h1, 3, &cfg).unwrap(), 1);
        assert_eq!(reg.add_version("prod", "fn1", &h2, 3, &cfg).unwrap(), 2);
        assert_eq!(reg.resolve("prod", "fn1", None).unwrap().sha256, h2);
        reg.rollback("prod", "fn1", 1).unwrap();
        assert_eq!(reg.resolve("prod", "fn1", None).unwrap().sha256, h1);
        assert_eq!(reg.resolve("prod", "fn1", Some(2)).unwrap().sha256, h2);
        assert!(matches!(
            reg.rollback("prod", "fn1", 9),
            Err(RegistryError::VersionNotFound { version: 9, .. })
        ));
        let versions = reg.versions("prod", "fn1").unwrap();
        assert_eq!(
            versions
                .iter()
                .map(|v| (v.version, v.active))
                .collect::<Vec<_>>(),
            vec![(2, false), (1, true)]
        );
        reg.remove_function("prod", "fn1").unwrap();
        assert!(matches!(
            reg.resolve("prod", "fn1", None),
            Err(RegistryError::FunctionNotFound { .. })
        ));
        assert!(matches!(
            reg.resolve("nope", "fn1", None),
            Err(RegistryError::EnvNotFound(_))
        ));
        // Reopening keeps everything and does not re-run migrations.
        drop(reg);
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.envs().unwrap().len(), 1);
    }

    #[test]
    fn config_limits_are_checked() {
        let mut cfg = FunctionConfig {
            memory_mb: 4096,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
        cfg.memory_mb = 128;
        cfg.timeout_ms = Some(0);
        assert!(cfg.validate().is_err());
        cfg.timeout_ms = Some(1000);
        cfg.vars.insert("bad name".into(), "x".into());
        assert!(cfg.validate().is_err());
    }
}
