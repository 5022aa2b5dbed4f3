//! The catalog in PostgreSQL: environments, functions, versions, and which version is active.

use super::{PostgresStore, write_tx};
use crate::Catalog;
use crate::error::StoreError;
use crate::model::{EnvInfo, FunctionConfig, FunctionInfo, VersionInfo};
use crate::names::{validate_appid, validate_env_name, validate_function_name};
use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

#[async_trait]
impl Catalog for PostgresStore {
    async fn create_env(&self, name: &str, owner: &str) -> Result<EnvInfo, StoreError> {
        validate_env_name(name)?;
        validate_appid(owner)?;
        let now = crate::fsutil::now();
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        // Names differing only in case are one env (they are directories on every host).
        if let Some(row) = tx
            .query_opt(
                "SELECT name FROM envs WHERE lower(name) = lower($1)",
                &[&name],
            )
            .await?
        {
            return Err(StoreError::EnvExists(row.get(0)));
        }
        tx.execute(
            "INSERT INTO apps (appid, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&owner, &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO envs (name, owner_appid, created_at) VALUES ($1, $2, $3)",
            &[&name, &owner, &now],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok(EnvInfo {
            name: name.to_string(),
            owner_appid: owner.to_string(),
            created_at: now,
            functions: 0,
        })
    }

    async fn envs(&self) -> Result<Vec<EnvInfo>, StoreError> {
        envs(&self.client().await?).await
    }

    async fn env(&self, name: &str) -> Result<EnvInfo, StoreError> {
        self.client()
            .await?
            .query_opt(&format!("{ENV_SELECT} WHERE e.name = $1"), &[&name])
            .await?
            .map(|r| env_row(&r))
            .ok_or_else(|| StoreError::EnvNotFound(name.to_string()))
    }

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
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        ensure_env(&tx, env).await?;
        let version: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE env = $1 AND name = $2",
                &[&env, &name],
            )
            .await?
            .get(0);
        tx.execute(
            "INSERT INTO functions (env, name, active_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (env, name) DO UPDATE SET active_version = $3, updated_at = $4",
            &[&env, &name, &version, &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO versions (env, name, version, sha256, size, config, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &env,
                &name,
                &version,
                &sha256,
                &(size as i64),
                &config_json,
                &now,
            ],
        )
        .await?;
        crate::fsutil::crash_point("deploy-before-commit");
        tx.commit().await?;
        self.changed();
        Ok(version as u32)
    }

    async fn functions(&self, env: &str) -> Result<Vec<FunctionInfo>, StoreError> {
        let client = self.client().await?;
        ensure_env(&client, env).await?;
        let rows = client
            .query(
                "SELECT f.env, f.name, f.active_version,
                        (SELECT COUNT(*) FROM versions v WHERE v.env = f.env AND v.name = f.name),
                        f.updated_at,
                        (SELECT v.config FROM versions v WHERE v.env = f.env AND v.name = f.name
                           AND v.version = f.active_version)
                 FROM functions f WHERE f.env = $1 ORDER BY f.name",
                &[&env],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let config: Option<String> = r.get(5);
                FunctionInfo {
                    env: r.get(0),
                    name: r.get(1),
                    active_version: r.get::<_, i64>(2) as u32,
                    versions: r.get::<_, i64>(3) as u32,
                    updated_at: r.get(4),
                    kind: config
                        .and_then(|c| serde_json::from_str::<FunctionConfig>(&c).ok())
                        .map(|c| c.kind)
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn versions(&self, env: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let client = self.client().await?;
        ensure_function(&client, env, name).await?;
        let rows = client
            .query(
                &format!(
                    "{VERSION_SELECT} WHERE v.env = $1 AND v.name = $2 ORDER BY v.version DESC"
                ),
                &[&env, &name],
            )
            .await?;
        rows.iter().map(version_row).collect()
    }

    async fn resolve(
        &self,
        env: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<VersionInfo, StoreError> {
        let client = self.client().await?;
        let found =
            match version {
                Some(v) => client
                    .query_opt(
                        &format!(
                            "{VERSION_SELECT} WHERE v.env = $1 AND v.name = $2 AND v.version = $3"
                        ),
                        &[&env, &name, &(v as i64)],
                    )
                    .await?,
                None => {
                    client
                        .query_opt(
                            &format!(
                                "{VERSION_SELECT} WHERE v.env = $1 AND v.name = $2
                             AND v.version = f.active_version"
                            ),
                            &[&env, &name],
                        )
                        .await?
                }
            };
        match (found, version) {
            (Some(row), _) => version_row(&row),
            (None, Some(version)) => {
                ensure_function(&client, env, name).await?;
                Err(StoreError::VersionNotFound {
                    env: env.into(),
                    name: name.into(),
                    version,
                })
            }
            (None, None) => {
                ensure_env(&client, env).await?;
                Err(StoreError::FunctionNotFound {
                    env: env.into(),
                    name: name.into(),
                })
            }
        }
    }

    async fn rollback(&self, env: &str, name: &str, version: u32) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        ensure_function(&tx, env, name).await?;
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM versions WHERE env = $1 AND name = $2 AND version = $3)",
                &[&env, &name, &(version as i64)],
            )
            .await?
            .get(0);
        if !exists {
            return Err(StoreError::VersionNotFound {
                env: env.into(),
                name: name.into(),
                version,
            });
        }
        tx.execute(
            "UPDATE functions SET active_version = $3, updated_at = $4 WHERE env = $1 AND name = $2",
            &[&env, &name, &(version as i64), &crate::fsutil::now()],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    async fn remove_function(&self, env: &str, name: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        ensure_function(&tx, env, name).await?;
        // Versions go with their function (ON DELETE CASCADE); components stay.
        tx.execute(
            "DELETE FROM functions WHERE env = $1 AND name = $2",
            &[&env, &name],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok(())
    }
}

const ENV_SELECT: &str = "SELECT e.name, e.owner_appid, e.created_at,
        (SELECT COUNT(*) FROM functions f WHERE f.env = e.name)
    FROM envs e";

const VERSION_SELECT: &str = "SELECT v.env, v.name, v.version, v.sha256, v.size, v.config,
        v.created_at, v.version = f.active_version
    FROM versions v JOIN functions f ON f.env = v.env AND f.name = v.name";

/// Every environment, by name.
pub(super) async fn envs(db: &impl GenericClient) -> Result<Vec<EnvInfo>, StoreError> {
    let rows = db
        .query(&format!("{ENV_SELECT} ORDER BY e.name"), &[])
        .await?;
    Ok(rows.iter().map(env_row).collect())
}

/// The active version of every function.
pub(super) async fn active_versions(
    db: &impl GenericClient,
) -> Result<Vec<VersionInfo>, StoreError> {
    let rows = db
        .query(
            &format!("{VERSION_SELECT} WHERE v.version = f.active_version"),
            &[],
        )
        .await?;
    rows.iter().map(version_row).collect()
}

fn env_row(r: &Row) -> EnvInfo {
    EnvInfo {
        name: r.get(0),
        owner_appid: r.get(1),
        created_at: r.get(2),
        functions: r.get::<_, i64>(3) as u32,
    }
}

fn version_row(r: &Row) -> Result<VersionInfo, StoreError> {
    let config: String = r.get(5);
    Ok(VersionInfo {
        env: r.get(0),
        name: r.get(1),
        version: r.get::<_, i64>(2) as u32,
        sha256: r.get(3),
        size: r.get::<_, i64>(4) as u64,
        config: serde_json::from_str(&config).context("a stored function config")?,
        created_at: r.get(6),
        active: r.get(7),
    })
}

pub(super) async fn ensure_env(db: &impl GenericClient, env: &str) -> Result<(), StoreError> {
    let exists: bool = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM envs WHERE name = $1)",
            &[&env],
        )
        .await?
        .get(0);
    if exists {
        Ok(())
    } else {
        Err(StoreError::EnvNotFound(env.to_string()))
    }
}

async fn ensure_function(db: &impl GenericClient, env: &str, name: &str) -> Result<(), StoreError> {
    ensure_env(db, env).await?;
    let exists: bool = db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE env = $1 AND name = $2)",
            &[&env, &name],
        )
        .await?
        .get(0);
    if exists {
        Ok(())
    } else {
        Err(StoreError::FunctionNotFound {
            env: env.to_string(),
            name: name.to_string(),
        })
    }
}
