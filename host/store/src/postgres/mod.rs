//! The store for several hosts: all state in one PostgreSQL database, so any number of
//! stateless `cloudfn serve` processes can run behind a load balancer.
//!
//! - Every trait of the store is implemented here with the same rules and the same errors as
//!   the SQLite store (the checks themselves are shared, in `policy`). Writes that change
//!   what the call path reads take one transaction-scoped advisory lock, so they are
//!   serialised across hosts exactly as SQLite serialises its writers.
//! - Components are stored content-addressed in the database (`blobs`); each host compiles
//!   them into its own artifact cache, keyed by content hash and engine configuration.
//! - The change feed is `LISTEN/NOTIFY` on one connection of its own (see `feed`): a commit
//!   notifies in the same transaction, every host's counter moves when it hears, and after a
//!   lost connection the host reconnects and moves the counter once more (a full resync).
//! - Activation records are written in batches by a background task and pruned per env and
//!   by age.
//! - The token key (it signs tokens and sessions and seals stored secrets) is configuration
//!   every host is given, not a local file: `CLOUDFN_TOKEN_KEY`.
//!
//! Schema migrations are versioned in `schema_migrations` and applied by [`migrate`] under a
//! session advisory lock, so several hosts starting at once apply each migration once.

mod activations;
mod apps;
mod catalog;
mod feed;
mod sharing;
#[cfg(feature = "test-support")]
pub mod testing;

use crate::error::{IssueError, StoreError};
use crate::model::*;
use crate::{ActivationLog, AuditLog, Blobs, ChangeFeed, Snapshots};
use activations::Recorder;
use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use feed::Feed;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

/// Schema migrations, applied in order; `schema_migrations` records each one applied.
/// Migrations only add: hosts of the previous release keep working against a migrated
/// database during a rolling upgrade.
const MIGRATIONS: &[&str] = &[
    // 1: the whole state of the SQLite store's five migrations, plus components and
    // activation records.
    "CREATE TABLE apps (
        appid TEXT PRIMARY KEY,
        subject TEXT,
        secret_sha256 TEXT,
        secret_id TEXT UNIQUE,
        secret_key TEXT,
        created_at BIGINT NOT NULL,
        sharing BOOLEAN NOT NULL DEFAULT FALSE,
        session_gen BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE envs (
        name TEXT PRIMARY KEY,
        owner_appid TEXT NOT NULL REFERENCES apps(appid),
        created_at BIGINT NOT NULL
    );
    -- Env names are directories on each host: names differing only in case are one env.
    CREATE UNIQUE INDEX envs_by_lower_name ON envs (lower(name));
    CREATE TABLE functions (
        env TEXT NOT NULL REFERENCES envs(name),
        name TEXT NOT NULL,
        active_version BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (env, name)
    );
    CREATE TABLE versions (
        env TEXT NOT NULL,
        name TEXT NOT NULL,
        version BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        config TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (env, name, version),
        FOREIGN KEY (env, name) REFERENCES functions(env, name) ON DELETE CASCADE
    );
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        bytes BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    );
    CREATE TABLE tokens (
        token_sha256 TEXT PRIMARY KEY,
        token_id TEXT NOT NULL,
        appid TEXT NOT NULL REFERENCES apps(appid) ON DELETE CASCADE,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        superseded_at BIGINT
    );
    CREATE INDEX tokens_by_app ON tokens (appid, issued_at);
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE shares (
        env TEXT NOT NULL REFERENCES envs(name),
        to_appid TEXT NOT NULL REFERENCES apps(appid),
        perms TEXT NOT NULL,
        functions TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        PRIMARY KEY (env, to_appid)
    );
    CREATE TABLE env_rules (
        env TEXT PRIMARY KEY REFERENCES envs(name),
        rules TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    );
    CREATE TABLE audit (
        seq BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        acting TEXT,
        action TEXT NOT NULL,
        env TEXT,
        target TEXT,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_env ON audit (env, seq);
    CREATE TABLE user_sessions (
        appid TEXT NOT NULL REFERENCES apps(appid) ON DELETE CASCADE,
        openid TEXT NOT NULL,
        unionid TEXT,
        session_key TEXT NOT NULL,
        logged_in_at BIGINT NOT NULL,
        PRIMARY KEY (appid, openid)
    );
    CREATE TABLE activations (
        seq BIGSERIAL PRIMARY KEY,
        request_id TEXT NOT NULL,
        env TEXT NOT NULL,
        function TEXT NOT NULL,
        version BIGINT,
        caller_appid TEXT,
        source TEXT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        duration_us BIGINT NOT NULL,
        errcode INTEGER NOT NULL,
        errmsg TEXT NOT NULL,
        peak_memory BIGINT NOT NULL,
        logs TEXT NOT NULL,
        decision TEXT
    );
    CREATE INDEX activations_by_env ON activations (env, seq);
    CREATE INDEX activations_by_fn ON activations (env, function, seq);
    CREATE INDEX activations_by_start ON activations (started_at_ms);",
];

/// The advisory lock every state-changing transaction takes: one writer at a time across
/// hosts, as in SQLite ("cloudfn" in ASCII).
const WRITE_LOCK: i64 = 0x0063_6c6f_7564_666e;
/// The advisory lock `migrate` holds while it applies migrations.
const MIGRATE_LOCK: i64 = WRITE_LOCK + 1;
/// The advisory lock each batch of activation records is inserted under.
const RECORDS_LOCK: i64 = WRITE_LOCK + 2;
/// The channel commits notify and every host listens on.
const CHANNEL: &str = "cloudfn_changes";
/// Connections each host keeps to the database at most.
const POOL_SIZE: usize = 16;
/// How long a request waits for a pooled connection (or a new one) before failing.
const POOL_WAIT: Duration = Duration::from_secs(10);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Storage(anyhow::Error::new(e).context("PostgreSQL store"))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Storage(anyhow::Error::new(e).context("PostgreSQL store: no connection"))
    }
}

impl From<tokio_postgres::Error> for IssueError {
    fn from(e: tokio_postgres::Error) -> Self {
        IssueError::System(anyhow::Error::new(e).context("token store"))
    }
}

impl From<deadpool_postgres::PoolError> for IssueError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        IssueError::System(anyhow::Error::new(e).context("token store: no connection"))
    }
}

/// Parses a token key given as configuration: 64 hex digits (32 bytes).
pub fn parse_token_key(hex_key: &str) -> anyhow::Result<Vec<u8>> {
    let key = hex::decode(hex_key.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .context("the token key must be 64 hex digits (32 random bytes: `openssl rand -hex 32`)")?;
    Ok(key)
}

/// `host:port/dbname` of a connection URL, for messages (never the password).
pub fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}/{}", c.get_dbname().unwrap_or("postgres"))
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

fn config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .context("parsing the PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB)")?;
    if config.get_application_name().is_none() {
        config.application_name("cloudfn");
    }
    config.connect_timeout(Duration::from_secs(5));
    // A dead peer (a PostgreSQL host gone without closing) is noticed in seconds.
    config.keepalives_idle(Duration::from_secs(10));
    Ok(config)
}

/// Applies the migrations the database at `url` has not had yet. Several processes may run it
/// at once: they take turns under an advisory lock, and each migration runs once. Returns
/// (schema version before, after).
pub async fn migrate(url: &str) -> anyhow::Result<(usize, usize)> {
    let (mut client, conn) = config(url)?
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to {}", describe(url)))?;
    let driver = tokio::spawn(conn);
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
            .await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY,
                    applied_at BIGINT NOT NULL
                )",
            )
            .await?;
        let before = schema_version(&client).await?;
        if before > MIGRATIONS.len() {
            anyhow::bail!(
                "the database has schema version {before}, newer than this cloudfn knows ({}); \
                 upgrade cloudfn",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(before) {
            let tx = client.transaction().await?;
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("schema migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&((i + 1) as i32), &crate::fsutil::now()],
            )
            .await?;
            tx.commit().await?;
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
            .await?;
        Ok((before, MIGRATIONS.len()))
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

async fn schema_version(client: &tokio_postgres::Client) -> anyhow::Result<usize> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    Ok(v as usize)
}

/// The store of one PostgreSQL database, shared by every host using it.
pub struct PostgresStore {
    pool: Pool,
    token_key: Vec<u8>,
    recorder: Recorder,
    feed: Arc<Feed>,
}

impl PostgresStore {
    /// Connects to the database at `url`, which must be migrated to this cloudfn's schema
    /// (`migrate` first, or pass `migrate`), starts listening for changes, and keeps at most
    /// `retention` activation records per env. `token_key` must be the same on every host.
    pub async fn open(
        url: &str,
        token_key: Vec<u8>,
        retention: u64,
        migrate: bool,
    ) -> anyhow::Result<PostgresStore> {
        anyhow::ensure!(token_key.len() == 32, "the token key must be 32 bytes");
        if migrate {
            self::migrate(url).await?;
        }
        let config = config(url)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(Duration::from_secs(5)))
            .build()
            .context("building the connection pool")?;
        let client = pool
            .get()
            .await
            .with_context(|| format!("connecting to {}", describe(url)))?;
        let version = schema_version(&client).await?;
        anyhow::ensure!(
            version == MIGRATIONS.len(),
            "the database at {} has schema version {version}, this cloudfn needs {}: {}",
            describe(url),
            MIGRATIONS.len(),
            if version < MIGRATIONS.len() {
                "run `cloudfn migrate` (or serve --migrate) first"
            } else {
                "upgrade cloudfn"
            }
        );
        drop(client);
        let feed = Feed::start(config).await?;
        let recorder = Recorder::start(pool.clone(), retention);
        Ok(PostgresStore {
            pool,
            token_key,
            recorder,
            feed,
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Tells this host at once (its next call reloads) and the others through the feed.
    fn changed(&self) {
        self.feed.bump();
    }
}

/// Starts a state-changing transaction: waits for the write lock, and notifies every host
/// when it commits.
async fn write_tx(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
        .await?;
    tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
    Ok(tx)
}

#[async_trait]
impl Blobs for PostgresStore {
    async fn put_blob(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha256 = crate::secrets::sha256_hex(bytes);
        self.client()
            .await?
            .execute(
                "INSERT INTO blobs (sha256, bytes, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &bytes, &crate::fsutil::now()],
            )
            .await?;
        Ok(sha256)
    }

    async fn blob(&self, sha256: &str) -> Result<Vec<u8>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT bytes FROM blobs WHERE sha256 = $1", &[&sha256])
            .await?;
        row.map(|r| r.get(0)).ok_or_else(|| {
            StoreError::Storage(anyhow::anyhow!("component {sha256} is not in the store"))
        })
    }
}

#[async_trait]
impl ActivationLog for PostgresStore {
    fn record(&self, activation: Activation) {
        self.recorder.record(activation);
    }

    async fn flush(&self) {
        self.recorder.flush().await;
    }

    async fn activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>, StoreError> {
        self.recorder.flush().await;
        activations::query(&self.client().await?, q).await
    }

    fn records_dropped(&self) -> u64 {
        self.recorder.dropped()
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn audit(&self, e: AuditEntry) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO audit (at, acting, action, env, target, detail)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &crate::fsutil::now(),
                    &e.acting,
                    &e.action,
                    &e.env,
                    &e.target,
                    &e.detail,
                ],
            )
            .await?;
        Ok(())
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT * FROM (
                    SELECT seq, at, acting, action, env, target, detail FROM audit
                    WHERE ($1::text IS NULL OR env = $1)
                      AND ($2::text IS NULL OR acting = $2 OR target = $2
                           OR env IN (SELECT name FROM envs WHERE owner_appid = $2))
                      AND seq > $3
                    ORDER BY seq DESC LIMIT $4
                 ) recent ORDER BY seq",
                &[
                    &q.env,
                    &q.app,
                    &q.after.unwrap_or(0),
                    &(q.limit.unwrap_or(100) as i64),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get(0),
                at: r.get(1),
                acting: r.get(2),
                action: r.get(3),
                env: r.get(4),
                target: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }
}

impl ChangeFeed for PostgresStore {
    fn version(&self) -> u64 {
        self.feed.version()
    }

    fn reachable(&self) -> bool {
        self.feed.connected()
    }
}

#[async_trait]
impl Snapshots for PostgresStore {
    async fn snapshot(&self) -> Result<StateSnapshot, StoreError> {
        let mut client = self.client().await?;
        // One repeatable-read transaction: every part is from the same commit.
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let snapshot = StateSnapshot {
            envs: catalog::envs(&tx).await?,
            active: catalog::active_versions(&tx).await?,
            shares: sharing::all_shares(&tx).await?,
            rules: sharing::all_rules(&tx).await?,
            tokens: apps::tokens(&tx).await?,
            secret_keys: apps::secret_keys(&tx).await?,
            session_gens: apps::session_gens(&tx).await?,
        };
        tx.commit().await?;
        Ok(snapshot)
    }
}
