//! The catalog in SQLite: environments, functions, versions, and which version is active.

use super::SqliteStore;
use crate::Catalog;
use crate::error::StoreError;
use crate::model::{EnvInfo, FunctionConfig, FunctionInfo, VersionInfo};
use crate::names::{validate_appid, validate_env_name, validate_function_name};
use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

#[async_trait]
impl Catalog for SqliteStore {
    /// Creates environment `name` owned by `owner`, with its (empty) directory.
    async fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError> {
        validate_env_name(name)?;
        validate_appid(owner)?;
        let now = crate::fsutil::now();
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
            return Err(StoreError::EnvExists(existing));
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
        db.commit()?;
        self.feed.bump();
        Ok(EnvInfo {
            name: name.to_string(),
            owner_appid: owner.to_string(),
            created_at: now,
            functions: 0,
        })
    }

    /// Every environment, by name.
    async fn envs(&self) -> Result<Vec<EnvInfo>, StoreError> {
        envs(&self.db())
    }

    /// One environment.
    async fn env(&self, name: &str) -> Result<EnvInfo, StoreError> {
        self.db()
            .query_row(
                "SELECT e.name, e.owner_appid, e.created_at,
                        (SELECT COUNT(*) FROM functions f WHERE f.env = e.name)
                 FROM envs e WHERE e.name = ?1",
                [name],
                env_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::EnvNotFound(name.to_string()))
    }

    /// Records a new version of `env/name` with a stored blob and makes it active, in one
    /// transaction. Returns the new version id.
    async fn add_version(
        &self,
        env: &str,
        name: &str,
        sha256: &str,
        size: u64,
        config: &FunctionConfig,
    ) -> Result<u32, StoreError> {
        validate_function_name(name)?;
        config.validate()?;
        let config_json = serde_json::to_string(config).context("encoding function config")?;
        let now = crate::fsutil::now();
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
        crate::fsutil::crash_point("deploy-before-commit");
        tx.commit()?;
        self.feed.bump();
        Ok(version)
    }

    /// The functions of an environment, by name.
    async fn functions(&self, env: &str) -> Result<Vec<FunctionInfo>, StoreError> {
        let db = self.db();
        ensure_env(&db, env)?;
        let mut stmt = db.prepare(
            "SELECT f.env, f.name, f.active_version,
                    (SELECT COUNT(*) FROM versions v WHERE v.env = f.env AND v.name = f.name),
                    f.updated_at,
                    (SELECT v.config FROM versions v WHERE v.env = f.env AND v.name = f.name
                       AND v.version = f.active_version)
             FROM functions f WHERE f.env = ?1 ORDER BY f.name",
        )?;
        let rows = stmt.query_map([env], |r| {
            let config: Option<String> = r.get(5)?;
            let kind = config
                .and_then(|c| serde_json::from_str::<FunctionConfig>(&c).ok())
                .map(|c| c.kind)
                .unwrap_or_default();
            Ok(FunctionInfo {
                env: r.get(0)?,
                name: r.get(1)?,
                active_version: r.get(2)?,
                versions: r.get(3)?,
                updated_at: r.get(4)?,
                kind,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every version of a function, newest first.
    async fn versions(&self, env: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let db = self.db();
        ensure_function(&db, env, name)?;
        let mut stmt = db.prepare(&format!(
            "{VERSION_SELECT} WHERE v.env = ?1 AND v.name = ?2 ORDER BY v.version DESC"
        ))?;
        let rows = stmt.query_map([env, name], version_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The version a call runs: `version`, or the active one when `None`.
    async fn resolve(
        &self,
        env: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<VersionInfo, StoreError> {
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
                Err(StoreError::VersionNotFound {
                    env: env.into(),
                    name: name.into(),
                    version,
                })
            }
            (None, None) => {
                ensure_env(&db, env)?;
                Err(StoreError::FunctionNotFound {
                    env: env.into(),
                    name: name.into(),
                })
            }
        }
    }

    /// Makes `version` the active version of `env/name` again.
    async fn rollback(&self, env: &str, name: &str, version: u32) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        ensure_function(&tx, env, name)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM versions WHERE env = ?1 AND name = ?2 AND version = ?3)",
            params![env, name, version],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::VersionNotFound {
                env: env.into(),
                name: name.into(),
                version,
            });
        }
        tx.execute(
            "UPDATE functions SET active_version = ?3, updated_at = ?4 WHERE env = ?1 AND name = ?2",
            params![env, name, version, crate::fsutil::now()],
        )?;
        tx.commit()?;
        self.feed.bump();
        Ok(())
    }

    /// Removes a function and all its versions. Blobs stay (other versions may share them).
    async fn remove_function(&self, env: &str, name: &str) -> Result<(), StoreError> {
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
        self.feed.bump();
        Ok(())
    }
}

/// Every environment, by name.
pub(super) fn envs(db: &Connection) -> Result<Vec<EnvInfo>, StoreError> {
    let mut stmt = db.prepare(
        "SELECT e.name, e.owner_appid, e.created_at,
                (SELECT COUNT(*) FROM functions f WHERE f.env = e.name)
         FROM envs e ORDER BY e.name",
    )?;
    let rows = stmt.query_map([], env_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The active version of every function.
pub(super) fn active_versions(db: &Connection) -> Result<Vec<VersionInfo>, StoreError> {
    let mut stmt = db.prepare(&format!(
        "{VERSION_SELECT} WHERE v.version = f.active_version"
    ))?;
    let rows = stmt.query_map([], version_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
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

fn ensure_env(db: &Connection, env: &str) -> Result<(), StoreError> {
    let exists: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM envs WHERE name = ?1)",
        [env],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::EnvNotFound(env.to_string()))
    }
}

fn ensure_function(db: &Connection, env: &str, name: &str) -> Result<(), StoreError> {
    ensure_env(db, env)?;
    let exists: bool = db.query_row(
        "SELECT EXISTS (SELECT 1 FROM functions WHERE env = ?1 AND name = ?2)",
        [env, name],
        |r| r.get(0),
    )?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::FunctionNotFound {
            env: env.to_string(),
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::SqliteStore;
    use crate::{Blobs, Catalog, FunctionConfig, StoreError};

    #[tokio::test]
    async fn versions_rollback_and_removal() {
        let dir = tempfile::tempdir().unwrap();
        let reg = SqliteStore::open(dir.path(), 10).unwrap();
        reg.create_env("prod", "wxA").await.unwrap();
        assert!(matches!(
            reg.create_env("prod", "wxA").await,
            Err(StoreError::EnvExists(_))
        ));
        // Env names are directories: `Prod` would share `prod`'s on some filesystems.
        assert!(matches!(
            reg.create_env("Prod", "wxC").await,
            Err(StoreError::EnvExists(e)) if e == "prod"
        ));
        let h1 = reg.put_blob(b"one").await.unwrap();
        let h2 = reg.put_blob(b"two").await.unwrap();
        let cfg = FunctionConfig::default();
        assert_eq!(
            reg.add_version("prod", "fn1", &h1, 3, &cfg).await.unwrap(),
            1
        );
        assert_eq!(
            reg.add_version("prod", "fn1", &h2, 3, &cfg).await.unwrap(),
            2
        );
        assert_eq!(reg.resolve("prod", "fn1", None).await.unwrap().sha256, h2);
        reg.rollback("prod", "fn1", 1).await.unwrap();
        assert_eq!(reg.resolve("prod", "fn1", None).await.unwrap().sha256, h1);
        assert_eq!(
            reg.resolve("prod", "fn1", Some(2)).await.unwrap().sha256,
            h2
        );
        assert!(matches!(
            reg.rollback("prod", "fn1", 9).await,
            Err(StoreError::VersionNotFound { version: 9, .. })
        ));
        let versions = reg.versions("prod", "fn1").await.unwrap();
        assert_eq!(
            versions
                .iter()
                .map(|v| (v.version, v.active))
                .collect::<Vec<_>>(),
            vec![(2, false), (1, true)]
        );
        reg.remove_function("prod", "fn1").await.unwrap();
        assert!(matches!(
            reg.resolve("prod", "fn1", None).await,
            Err(StoreError::FunctionNotFound { .. })
        ));
        assert!(matches!(
            reg.resolve("nope", "fn1", None).await,
            Err(StoreError::EnvNotFound(_))
        ));
        // Reopening keeps everything and does not re-run migrations.
        drop(reg);
        let reg = SqliteStore::open(dir.path(), 10).unwrap();
        assert_eq!(reg.envs().await.unwrap().len(), 1);
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
