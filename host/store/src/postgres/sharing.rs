//! Environment sharing in PostgreSQL: the app-level sharing switch, shares and each env's
//! security rules, with the checks of protocol §1 (`policy`) in the transaction that makes
//! the change.

use super::{PostgresStore, write_tx};
use crate::error::StoreError;
use crate::model::{AUTH_FUNCTION, ShareInfo, SharedFunctions, validate_permissions};
use crate::policy::{AppFacts, ShareFacts, check_share};
use crate::{Catalog, Sharing};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

#[async_trait]
impl Sharing for PostgresStore {
    async fn set_sharing(&self, appid: &str, on: bool) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        if app(&tx, appid).await?.is_none() {
            return Err(StoreError::AppNotFound(appid.into()));
        }
        if !on {
            let shares: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM shares s JOIN envs e ON e.name = s.env
                     WHERE e.owner_appid = $1",
                    &[&appid],
                )
                .await?
                .get(0);
            crate::policy::check_sharing_off(appid, shares)?;
        }
        tx.execute(
            "UPDATE apps SET sharing = $2 WHERE appid = $1",
            &[&appid, &on],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    async fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, StoreError> {
        validate_permissions(perms)?;
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let owner: String = tx
            .query_opt("SELECT owner_appid FROM envs WHERE name = $1", &[&env])
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::EnvNotFound(env.into()))?;
        let has_auth: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM functions WHERE env = $1 AND name = $2)",
                &[&env, &AUTH_FUNCTION],
            )
            .await?
            .get(0);
        check_share(ShareFacts {
            env,
            owner: &owner,
            to,
            acting,
            owner_app: app(&tx, &owner).await?,
            to_app: app(&tx, to).await?,
            has_auth,
        })?;
        tx.execute(
            "INSERT INTO shares (env, to_appid, perms, functions, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (env, to_appid) DO UPDATE SET perms = $3, functions = $4",
            &[
                &env,
                &to,
                &perms.join(","),
                &functions.encode(),
                &crate::fsutil::now(),
            ],
        )
        .await?;
        let share = tx
            .query_one(
                &format!("{SHARE_SELECT} WHERE s.env = $1 AND s.to_appid = $2"),
                &[&env, &to],
            )
            .await?;
        tx.commit().await?;
        self.changed();
        Ok(share_row(&share))
    }

    async fn share(&self, env: &str, to: &str) -> Result<Option<ShareInfo>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt(
                &format!("{SHARE_SELECT} WHERE s.env = $1 AND s.to_appid = $2"),
                &[&env, &to],
            )
            .await?
            .map(|r| share_row(&r)))
    }

    async fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<ShareInfo>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "{SHARE_SELECT} WHERE ($1::text IS NULL OR s.env = $1)
                     AND ($2::text IS NULL OR s.to_appid = $2 OR e.owner_appid = $2)
                     ORDER BY s.env, s.to_appid"
                ),
                &[&env, &app],
            )
            .await?;
        Ok(rows.iter().map(share_row).collect())
    }

    async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), StoreError> {
        let owner = self.env(env).await?.owner_appid;
        crate::policy::check_remove_share(env, &owner, to, acting)?;
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let removed = tx
            .execute(
                "DELETE FROM shares WHERE env = $1 AND to_appid = $2",
                &[&env, &to],
            )
            .await?;
        if removed == 0 {
            return Err(StoreError::ShareNotFound {
                env: env.into(),
                to: to.into(),
            });
        }
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        crate::policy::check_unbind(owner, to, acting)?;
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let envs: Vec<String> = tx
            .query(
                "DELETE FROM shares s USING envs e
                 WHERE e.name = s.env AND e.owner_appid = $1 AND s.to_appid = $2
                 RETURNING s.env",
                &[&owner, &to],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if envs.is_empty() {
            return Err(crate::policy::nothing_to_unbind(owner, to));
        }
        tx.commit().await?;
        self.changed();
        let mut envs = envs;
        envs.sort();
        Ok(envs)
    }

    async fn set_rules(&self, env: &str, json: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        super::catalog::ensure_env(&tx, env).await?;
        tx.execute(
            "INSERT INTO env_rules (env, rules, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (env) DO UPDATE SET rules = $2, updated_at = $3",
            &[&env, &json, &crate::fsutil::now()],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok(())
    }

    async fn rules(&self, env: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        super::catalog::ensure_env(&client, env).await?;
        Ok(client
            .query_opt("SELECT rules FROM env_rules WHERE env = $1", &[&env])
            .await?
            .map(|r| r.get(0)))
    }
}

async fn app(db: &impl GenericClient, appid: &str) -> Result<Option<AppFacts>, StoreError> {
    Ok(db
        .query_opt(
            "SELECT subject, sharing FROM apps WHERE appid = $1",
            &[&appid],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

/// Every share.
pub(super) async fn all_shares(db: &impl GenericClient) -> Result<Vec<ShareInfo>, StoreError> {
    Ok(db
        .query(SHARE_SELECT, &[])
        .await?
        .iter()
        .map(share_row)
        .collect())
}

/// (env, rules JSON) of every env with its own rules.
pub(super) async fn all_rules(
    db: &impl GenericClient,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(db
        .query("SELECT env, rules FROM env_rules", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

fn share_row(r: &Row) -> ShareInfo {
    let perms: String = r.get(3);
    let functions: String = r.get(4);
    ShareInfo {
        env: r.get(0),
        owner_appid: r.get(1),
        to_appid: r.get(2),
        perms: perms.split(',').map(str::to_string).collect(),
        functions: SharedFunctions::parse(&functions).unwrap_or(SharedFunctions::Only(Vec::new())),
        created_at: r.get(5),
    }
}

const SHARE_SELECT: &str =
    "SELECT s.env, e.owner_appid, s.to_appid, s.perms, s.functions, s.created_at
    FROM shares s JOIN envs e ON e.name = s.env";
