//! The default store: one data dir on one machine. State lives in SQLite (`cloudfn.db`, WAL,
//! one immediate transaction per change, versioned migrations); components are content-addressed
//! files written atomically; activation records have their own database (`activations.db`) so
//! their constant writes never look like state changes; the change feed is a counter in a
//! memory-mapped file that every process using the data dir bumps after it commits.
//!
//! Several processes may open one data dir at once (a server and the CLI): SQLite serialises
//! their writes and the change feed tells each of them about the others' commits.

mod activations;
mod apps;
mod audit;
mod catalog;
mod feed;
mod sharing;

use crate::error::{IssueError, StoreError};
use crate::fsutil::{remove_stale_temp_files, write_atomic};
use crate::model::*;
use crate::{ActivationLog, Blobs, ChangeFeed, Snapshots};
use activations::Recorder;
use anyhow::Context;
use async_trait::async_trait;
use feed::Feed;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Schema migrations of `cloudfn.db`, applied in order; `PRAGMA user_version` records how many
/// ran.
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
    // 4: the audit log of management changes.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        acting TEXT,
        action TEXT NOT NULL,
        env TEXT,
        target TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_env ON audit (env, seq);",
    // 5: mini-program users' logins: each app's session generation (revoking its sessions
    // moves it on), and each user's platform session_key, sealed.
    "ALTER TABLE apps ADD COLUMN session_gen INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE user_sessions (
        appid TEXT NOT NULL REFERENCES apps(appid) ON DELETE CASCADE,
        openid TEXT NOT NULL,
        unionid TEXT,
        session_key TEXT NOT NULL,
        logged_in_at INTEGER NOT NULL,
        PRIMARY KEY (appid, openid)
    );",
];

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Storage(anyhow::Error::new(e).context("registry database"))
    }
}

impl From<rusqlite::Error> for IssueError {
    fn from(e: rusqlite::Error) -> Self {
        IssueError::System(anyhow::Error::new(e).context("token store"))
    }
}

/// The store of one data dir.
pub struct SqliteStore {
    root: PathBuf,
    db: Mutex<Connection>,
    token_key: Vec<u8>,
    recorder: Recorder,
    feed: Arc<Feed>,
}

impl SqliteStore {
    /// Opens (creating if needed) the data dir at `root`, migrates its databases, removes temp
    /// files an interrupted write left behind, and keeps at most `retention` activation
    /// records per env (within the default byte budget).
    pub fn open(root: impl Into<PathBuf>, retention: u64) -> anyhow::Result<SqliteStore> {
        Self::open_with(root, retention, crate::model::DEFAULT_RECORDS_MAX_BYTES)
    }

    /// Like [`SqliteStore::open`], with the activation records also kept within `max_bytes`
    /// on disk (the oldest of any env go first).
    pub fn open_with(
        root: impl Into<PathBuf>,
        retention: u64,
        max_bytes: u64,
    ) -> anyhow::Result<SqliteStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))
            .with_context(|| format!("creating {}", root.join("blobs").display()))?;
        // The data dir holds secretKeys and the token key: only its owner may enter it.
        crate::fsutil::restrict(&root, 0o700)?;
        remove_stale_temp_files(&root.join("blobs"));
        let db_path = root.join("cloudfn.db");
        let mut conn = open_db(&db_path, true)?;
        migrate(&mut conn, MIGRATIONS)
            .with_context(|| format!("migrating {}", db_path.display()))?;
        let token_key = apps::load_token_key(&root)?;
        let recorder = Recorder::start(&root.join("activations.db"), retention, max_bytes)?;
        let feed = Feed::open(&root, &db_path)?;
        for file in [
            "cloudfn.db",
            "cloudfn.db-wal",
            "cloudfn.db-shm",
            "activations.db",
            "activations.db-wal",
            "activations.db-shm",
            "keys/token.key",
        ] {
            let path = root.join(file);
            if path.exists() {
                crate::fsutil::restrict(&path, 0o600)?;
            }
        }
        Ok(SqliteStore {
            root,
            db: Mutex::new(conn),
            token_key,
            recorder,
            feed,
        })
    }

    /// The data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied change (SQLite rolls the
        // transaction back), so a poisoned lock is safe to reuse.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha256}.wasm"))
    }
}

fn open_db(path: &Path, durable: bool) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Records are diagnostics: losing the last few to a power cut is acceptable, a sync per
    // batch is not needed. State changes are synced before they are acknowledged.
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Applies the `migrations` a database has not had yet, each in its own transaction.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> anyhow::Result<()> {
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

#[async_trait]
impl Blobs for SqliteStore {
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha256 = crate::secrets::sha256_hex(bytes);
        let path = self.blob_path(&sha256);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(sha256)
    }

    async fn blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(sha256);
        Ok(std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
    }
}

#[async_trait]
impl ActivationLog for SqliteStore {
    fn record(&self, activation: Activation) {
        self.recorder.record(activation);
    }

    async fn flush(&self) {
        self.recorder.flush();
    }

    async fn activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>, StoreError> {
        // Records wait a few milliseconds to be written in batches; a reader sees its own calls.
        self.recorder.flush();
        self.recorder.query(q)
    }

    fn records_dropped(&self) -> u64 {
        self.recorder.dropped()
    }
}

impl ChangeFeed for SqliteStore {
    fn version(&self) -> u64 {
        self.feed.version()
    }
}

#[async_trait]
impl Snapshots for SqliteStore {
    async fn snapshot(&self) -> Result<StateSnapshot, StoreError> {
        let mut db = self.db();
        // One read transaction: every part is from the same commit.
        let tx = db.transaction()?;
        let envs = catalog::envs(&tx)?;
        let active = catalog::active_versions(&tx)?;
        let shares = sharing::all_shares(&tx)?;
        let rules = sharing::all_rules(&tx)?;
        let tokens = apps::tokens(&tx)?;
        let secret_keys = apps::secret_keys(&tx)?;
        let session_gens = apps::session_gens(&tx)?;
        tx.finish()?;
        Ok(StateSnapshot {
            envs,
            active,
            shares,
            rules,
            tokens,
            secret_keys,
            session_gens,
        })
    }
}
