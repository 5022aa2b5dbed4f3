//! Environment sharing in the registry: the app-level sharing switch, shares (env → app, with
//! permissions and a function list), and each env's security rules. The rules of who may share
//! what (protocol §1) are enforced here, so every entry point gets them.

use crate::error::RegistryError;
use crate::registry::{Registry, now, validate_function_name};
use crate::rules::Rules;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Permissions a share can grant.
pub const PERMISSIONS: &[&str] = &["functions:invoke"];

/// Which functions a share covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedFunctions {
    /// Every function of the env (`*`).
    All,
    /// Only these.
    Only(Vec<String>),
}

impl SharedFunctions {
    /// Parses `*` or `a,b,c`.
    pub fn parse(s: &str) -> Result<SharedFunctions, RegistryError> {
        if s.trim() == "*" {
            return Ok(SharedFunctions::All);
        }
        let names: Vec<String> = s
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Err(RegistryError::InvalidConfig(
                "--functions must be `*` or a comma-separated list of function names".into(),
            ));
        }
        for n in &names {
            validate_function_name(n)?;
        }
        Ok(SharedFunctions::Only(names))
    }

    /// Whether `function` is covered.
    pub fn covers(&self, function: &str) -> bool {
        match self {
            SharedFunctions::All => true,
            SharedFunctions::Only(names) => names.iter().any(|n| n == function),
        }
    }

    fn encode(&self) -> String {
        match self {
            SharedFunctions::All => "*".into(),
            SharedFunctions::Only(names) => names.join(","),
        }
    }
}

/// One share: `owner`'s env `env` used by app `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareInfo {
    /// The shared environment.
    pub env: String,
    /// Its owner.
    pub owner_appid: String,
    /// The app it is shared with.
    pub to_appid: String,
    /// Granted permissions, e.g. `functions:invoke`.
    pub perms: Vec<String>,
    /// The functions covered.
    pub functions: SharedFunctions,
    /// Unix seconds.
    pub created_at: i64,
}

impl ShareInfo {
    /// Whether the share lets its app invoke `function`.
    pub fn permits_invoke(&self, function: &str) -> bool {
        self.perms.iter().any(|p| p == "functions:invoke") && self.functions.covers(function)
    }
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

impl Registry {
    /// Turns an app's sharing on or off. Off is refused while the app's envs have shares.
    pub fn set_sharing(&self, appid: &str, on: bool) -> Result<(), RegistryError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM apps WHERE appid = ?1)",
            [appid],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(RegistryError::AppNotFound(appid.into()));
        }
        if !on {
            let shares: i64 = tx.query_row(
                "SELECT COUNT(*) FROM shares s JOIN envs e ON e.name = s.env WHERE e.owner_appid = ?1",
                [appid],
                |r| r.get(0),
            )?;
            if shares > 0 {
                return Err(RegistryError::Refused(format!(
                    "app {appid} still shares its envs {shares} time(s); remove the shares \
                     (cloudfn share ls) before turning sharing off"
                )));
            }
        }
        tx.execute(
            "UPDATE apps SET sharing = ?2 WHERE appid = ?1",
            params![appid, on],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Whether an app has sharing turned on.
    pub fn sharing_enabled(&self, appid: &str) -> Result<bool, RegistryError> {
        self.db()
            .query_row("SELECT sharing FROM apps WHERE appid = ?1", [appid], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| RegistryError::AppNotFound(appid.into()))
    }

    /// Shares `env` with app `to`. `acting` is the app making the change (default: the owner);
    /// only the owner may share, and only with an app of the same subject, once the owner has
    /// sharing on and the env has a deployed `cloudbase_auth`. Sharing again updates the share.
    pub fn add_share(
        &self,
        env: &str,
        to: &str,
        perms: &[String],
        functions: SharedFunctions,
        acting: Option<&str>,
    ) -> Result<ShareInfo, RegistryError> {
        if perms.is_empty() {
            return Err(RegistryError::InvalidConfig(format!(
                "a share needs at least one permission: {}",
                PERMISSIONS.join(", ")
            )));
        }
        if let Some(p) = perms.iter().find(|p| !PERMISSIONS.contains(&p.as_str())) {
            return Err(RegistryError::InvalidConfig(format!(
                "unknown permission {p:?}; known: {}",
                PERMISSIONS.join(", ")
            )));
        }
        // All checks and the insert in one write transaction: a concurrent `sharing off` or
        // removal of cloudbase_auth cannot slip in between.
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let owner: String = tx
            .query_row("SELECT owner_appid FROM envs WHERE name = ?1", [env], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| RegistryError::EnvNotFound(env.into()))?;
        if let Some(acting) = acting.filter(|a| *a != owner) {
            return Err(RegistryError::Refused(format!(
                "only env {env}'s owner {owner} can share it; {acting} cannot pass it on"
            )));
        }
        if to == owner {
            return Err(RegistryError::Refused(format!(
                "{to} owns env {env}; it needs no share"
            )));
        }
        let app = |appid: &str| -> Result<(Option<String>, bool), RegistryError> {
            tx.query_row(
                "SELECT subject, sharing FROM apps WHERE appid = ?1",
                [appid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| RegistryError::AppNotFound(appid.into()))
        };
        let ((owner_subject, sharing_on), (to_subject, _)) = (app(&owner)?, app(to)?);
        if owner_subject.is_none() || owner_subject != to_subject {
            return Err(RegistryError::Refused(format!(
                "{owner} (subject {}) and {to} (subject {}) must belong to the same subject to share",
                owner_subject.as_deref().unwrap_or("unset"),
                to_subject.as_deref().unwrap_or("unset")
            )));
        }
        if !sharing_on {
            return Err(RegistryError::Refused(format!(
                "app {owner} has not turned sharing on (cloudfn app sharing {owner} on)"
            )));
        }
        let has_auth: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM functions WHERE env = ?1 AND name = ?2)",
            [env, crate::grant::AUTH_FUNCTION],
            |r| r.get(0),
        )?;
        if !has_auth {
            return Err(RegistryError::Refused(format!(
                "env {env} has no cloudbase_auth function; deploy one before sharing the env \
                 (it decides, per calling app and user, whether to grant access)"
            )));
        }
        tx.execute(
            "INSERT INTO shares (env, to_appid, perms, functions, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (env, to_appid) DO UPDATE SET perms = ?3, functions = ?4",
            params![env, to, perms.join(","), functions.encode(), now()],
        )?;
        let share = tx.query_row(
            &format!("{SHARE_SELECT} WHERE s.env = ?1 AND s.to_appid = ?2"),
            [env, to],
            share_row,
        )?;
        tx.commit()?;
        Ok(share)
    }

    /// The share of `env` with `to`, if any.
    pub fn share(&self, env: &str, to: &str) -> Result<Option<ShareInfo>, RegistryError> {
        Ok(self
            .db()
            .prepare_cached(&format!(
                "{SHARE_SELECT} WHERE s.env = ?1 AND s.to_appid = ?2"
            ))?
            .query_row([env, to], share_row)
            .optional()?)
    }

    /// Shares of an env, or involving an app (as owner or sharee), or all.
    pub fn shares(
        &self,
        env: Option<&str>,
        app: Option<&str>,
    ) -> Result<Vec<ShareInfo>, RegistryError> {
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
    pub fn remove_share(
        &self,
        env: &str,
        to: &str,
        acting: Option<&str>,
    ) -> Result<(), RegistryError> {
        let owner = self.env(env)?.owner_appid;
        if let Some(acting) = acting.filter(|a| *a != owner && *a != to) {
            return Err(RegistryError::Refused(format!(
                "only {owner} (the owner) or {to} (the sharee) can end this share, not {acting}"
            )));
        }
        let removed = self.db().execute(
            "DELETE FROM shares WHERE env = ?1 AND to_appid = ?2",
            [env, to],
        )?;
        if removed == 0 {
            return Err(RegistryError::ShareNotFound {
                env: env.into(),
                to: to.into(),
            });
        }
        Ok(())
    }

    /// Validates and stores an env's security rules; returns them as stored.
    pub fn set_rules(&self, env: &str, json: &str) -> Result<String, RegistryError> {
        self.env(env)?;
        Rules::parse(json).map_err(RegistryError::InvalidRules)?;
        self.db().execute(
            "INSERT INTO env_rules (env, rules, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (env) DO UPDATE SET rules = ?2, updated_at = ?3",
            params![env, json, now()],
        )?;
        Ok(json.to_string())
    }

    /// An env's security rules (the default ones when it has set none).
    pub fn rules(&self, env: &str) -> Result<String, RegistryError> {
        self.env(env)?;
        Ok(self
            .db()
            .query_row("SELECT rules FROM env_rules WHERE env = ?1", [env], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or_else(|| crate::rules::DEFAULT_RULES.to_string()))
    }
}
