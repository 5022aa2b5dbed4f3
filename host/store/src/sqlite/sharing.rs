//! Environment sharing in SQLite: the app-level sharing switch, shares (env → app, with
//! permissions and a function list), and each env's security rules. The rules of who may share
//! what (protocol §1) are checked in the transaction that makes the change.

use super::SqliteStore;
use crate::error::StoreError;
use crate::model::{AUTH_FUNCTION, ShareInfo, SharedFunctions, validate_permissions};
use crate::policy::{AppFacts, ShareFacts, check_share};
use crate::{Catalog, Sharing};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

#[async_trait]
impl Sharing for SqliteStore {
    /// Turns an app's sharing on or off. Off is refused while the app's envs have shares.
    async fn set_sharing(&self, appid: &str, on: bool) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM apps WHERE appid = ?1)",
            [appid],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::AppNotFound(appid.into()));
        }
        if !on {
            let shares: i64 = tx.query_row(
                "SELECT COUNT(*) FROM shares s JOIN envs e ON e.name = s.env WHERE e.owner_appid = ?1",
                [appid],
                |r| r.get(0),
            )?;
            crate::policy::check_sharing_off(appid, shares)?;
        }
        tx.execute(
            "UPDATE apps SET sharing = ?2 WHERE appid = ?1",
            params![appid, on],
        )?;
        tx.commit()?;
        self.feed.bump();
        Ok(())
    }

    /// Shares `env` with app `to`. `acting` is the app making the change (default: the owner);
    /// only the owner may share, and only with an app of the same subject, once the owner has
    /// sharing on and the env has a deployed `cloudbase_auth`. Sharing again updates the share.
    async fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, StoreError> {
        validate_permissions(perms)?;
        // All checks and the insert in one write transaction: a concurrent `sharing off` or
        // removal of cloudbase_auth cannot slip in between.
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let owner: String = tx
            .query_row("SELECT owner_appid FROM envs WHERE name = ?1", [env], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::EnvNotFound(env.into()))?;
        let app = |appid: &str| -> Result<Option<AppFacts>, StoreError> {
            Ok(tx
                .query_row(
                    "SELECT subject, sharing FROM apps WHERE appid = ?1",
                    [appid],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        };
        let has_auth: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE env = ?1 AND name = ?2)",
            [env, AUTH_FUNCTION],
            |r| r.get(0),
        )?;
        check_share(ShareFacts {
            env,
            owner: &owner,
            to,
            acting,
            owner_app: app(&owner)?,
            to_app: app(to)?,
            has_auth,
        })?;
        tx.execute(
            "INSERT INTO shares (env, to_appid, perms, functions, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (env, to_appid) DO UPDATE SET perms = ?3, functions = ?4",
            params![env, to, perms.join(","), functions.encode(), crate::fsutil::now()],
        )?;
        let share = tx.query_row(
            &format!("{SHARE_SELECT} WHERE s.env = ?1 AND s.to_appid = ?2"),
            [env, to],
            share_row,
        )?;
        tx.commit()?;
        self.feed.bump();
        Ok(share)
    }

    /// The share of `env` with `to`, if any.
    async fn share(&self, env: &str, to: &str) -> Result<Option<ShareInfo>, StoreError> {
        Ok(self
            .db()
            .prepare_cached(&format!(
                "{SHARE_SELECT} WHERE s.env = ?1 AND s.to_appid = ?2"
            ))?
            .query_row([env, to], share_row)
            .optional()?)
    }

    /// Shares of an env, or involving an app (as owner or sharee), or all.
    async fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<ShareInfo>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "{SHARE_SELECT} WHERE (?1 IS NULL OR s.env = ?1)
             AND (?2 IS NULL OR s.to_appid = ?2 OR e.owner_appid = ?2)
             ORDER BY s.env, s.to_appid"
        ))?;
        let rows = stmt.query_map(params![env, app], share_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Ends a share. Either side may: `acting` (default: the owner) must be the owner or `to`.
    async fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), StoreError> {
        let owner = self.env(env).await?.owner_appid;
        crate::policy::check_remove_share(env, &owner, to, acting)?;
        let removed = self.db().execute(
            "DELETE FROM shares WHERE env = ?1 AND to_appid = ?2",
            [env, to],
        )?;
        if removed == 0 {
            return Err(StoreError::ShareNotFound {
                env: env.into(),
                to: to.into(),
            });
        }
        self.feed.bump();
        Ok(())
    }

    async fn unbind(
        &self,
        owner: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        crate::policy::check_unbind(owner, to, acting)?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let envs: Vec<String> = tx
            .prepare(
                "SELECT s.env FROM shares s JOIN envs e ON e.name = s.env
                 WHERE e.owner_appid = ?1 AND s.to_appid = ?2 ORDER BY s.env",
            )?
            .query_map([owner, to], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if envs.is_empty() {
            return Err(crate::policy::nothing_to_unbind(owner, to));
        }
        tx.execute(
            "DELETE FROM shares WHERE to_appid = ?2
             AND env IN (SELECT name FROM envs WHERE owner_appid = ?1)",
            [owner, to],
        )?;
        tx.commit()?;
        drop(db);
        self.feed.bump();
        Ok(envs)
    }

    async fn set_rules(&self, env: &str, json: &str) -> Result<(), StoreError> {
        self.env(env).await?;
        self.db().execute(
            "INSERT INTO env_rules (env, rules, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (env) DO UPDATE SET rules = ?2, updated_at = ?3",
            params![env, json, crate::fsutil::now()],
        )?;
        self.feed.bump();
        Ok(())
    }

    async fn rules(&self, env: &str) -> Result<Option<String>, StoreError> {
        self.env(env).await?;
        Ok(self
            .db()
            .query_row("SELECT rules FROM env_rules WHERE env = ?1", [env], |r| {
                r.get(0)
            })
            .optional()?)
    }
}

/// Every share.
pub(super) fn all_shares(db: &Connection) -> Result<Vec<ShareInfo>, StoreError> {
    let mut stmt = db.prepare(SHARE_SELECT)?;
    let rows = stmt.query_map([], share_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (env, rules JSON) of every env with its own rules.
pub(super) fn all_rules(db: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = db.prepare("SELECT env, rules FROM env_rules")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn share_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShareInfo> {
    let perms: String = r.get(3)?;
    let functions: String = r.get(4)?;
    Ok(ShareInfo {
        env: r.get(0)?,
        owner_appid: r.get(1)?,
        to_appid: r.get(2)?,
        perms: perms.split(',').map(str::to_string).collect(),
        functions: SharedFunctions::parse(&functions).unwrap_or(SharedFunctions::Only(Vec::new())),
        created_at: r.get(5)?,
    })
}

const SHARE_SELECT: &str =
    "SELECT s.env, e.owner_appid, s.to_appid, s.perms, s.functions, s.created_at
    FROM shares s JOIN envs e ON e.name = s.env";
