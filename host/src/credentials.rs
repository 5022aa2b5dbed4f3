//! Apps and what proves a caller is one: the app secret (for `/cgi-bin/token`, stored only as a
//! SHA-256), the secretId/secretKey pair (for the server SDK's TC3 signatures; the key is stored
//! because verifying an HMAC needs it), and access tokens (protocol §2).
//!
//! A token is `id ‖ HMAC(token key, id)` in hex. The database keeps its SHA-256 (to verify) and
//! its id; the token key lives in `keys/token.key` outside the database, so a leaked database
//! yields no usable token, while `stable_token` can still hand back the current token after a
//! restart.

use crate::error::RegistryError;
use crate::registry::{Registry, now, validate_appid, write_atomic};
use anyhow::Context;
use hmac::{Hmac, Mac};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long an access token lives (protocol §2: `expires_in` 7200).
pub const TOKEN_TTL: Duration = Duration::from_secs(7200);
/// How long a replaced token keeps working (protocol §2: 5 minutes).
pub const TOKEN_OVERLAP: Duration = Duration::from_secs(300);

/// Token lifetimes; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    /// Lifetime of a new token.
    pub ttl: Duration,
    /// How long a replaced token stays valid.
    pub overlap: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            ttl: TOKEN_TTL,
            overlap: TOKEN_OVERLAP,
        }
    }
}

/// An app as listed (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    /// The appid.
    pub appid: String,
    /// The company ("subject") it belongs to.
    pub subject: Option<String>,
    /// Its server-SDK secretId, when it has credentials.
    pub secret_id: Option<String>,
    /// Whether it has an app secret for `/cgi-bin/token`.
    pub has_secret: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// Credentials shown once, when created or rotated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCredentials {
    /// The appid.
    pub appid: String,
    /// The app secret for `/cgi-bin/token` (32 hex characters).
    pub secret: String,
    /// The server SDK's secretId.
    pub secret_id: String,
    /// The server SDK's secretKey.
    pub secret_key: String,
}

/// Why a token was refused, with the protocol errcode of each case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No such token (40014).
    #[error("invalid access_token")]
    Invalid,
    /// Past its lifetime (42001).
    #[error("access_token expired")]
    Expired,
    /// Replaced by a newer token more than the overlap ago (40001).
    #[error("access_token is invalid or not latest")]
    NotLatest,
}

impl TokenError {
    /// The protocol errcode.
    pub fn errcode(self) -> i32 {
        match self {
            TokenError::Invalid => 40014,
            TokenError::Expired => 42001,
            TokenError::NotLatest => 40001,
        }
    }
}

/// Why a token could not be issued (protocol §2 errcodes).
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// 40013.
    #[error("invalid appid")]
    UnknownApp,
    /// 40125.
    #[error("invalid appsecret")]
    WrongSecret,
    /// -1.
    #[error("system error")]
    System(#[from] anyhow::Error),
}

impl IssueError {
    /// The protocol errcode.
    pub fn errcode(&self) -> i32 {
        match self {
            IssueError::UnknownApp => 40013,
            IssueError::WrongSecret => 40125,
            IssueError::System(_) => -1,
        }
    }
}

impl From<rusqlite::Error> for IssueError {
    fn from(e: rusqlite::Error) -> Self {
        IssueError::System(anyhow::Error::new(e).context("token store"))
    }
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    hex::encode(bytes)
}

/// SHA-256 of a secret, hex; what the database keeps of secrets that only need checking.
pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_credentials(appid: &str) -> AppCredentials {
    AppCredentials {
        appid: appid.to_string(),
        secret: random_hex(16),
        secret_id: format!("AKID{}", random_hex(16)),
        secret_key: random_hex(20),
    }
}

impl Registry {
    /// Registers an app and issues its credentials. An appid that already exists without
    /// credentials (an env owner from before apps had secrets) gets them now.
    pub fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> Result<AppCredentials, RegistryError> {
        validate_appid(appid)?;
        let creds = new_credentials(appid);
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing: Option<Option<String>> = tx
            .query_row(
                "SELECT secret_sha256 FROM apps WHERE appid = ?1",
                [appid],
                |r| r.get(0),
            )
            .optional()?;
        match existing {
            Some(Some(_)) => {
                return Err(RegistryError::InvalidConfig(format!(
                    "app {appid} already exists; use `cloudfn app rotate-secret {appid}` for new credentials"
                )));
            }
            Some(None) => {
                tx.execute(
                    "UPDATE apps SET subject = COALESCE(?2, subject), secret_sha256 = ?3,
                     secret_id = ?4, secret_key = ?5 WHERE appid = ?1",
                    params![
                        appid,
                        subject,
                        hash_secret(&creds.secret),
                        creds.secret_id,
                        creds.secret_key
                    ],
                )?;
            }
            None => {
                tx.execute(
                    "INSERT INTO apps (appid, subject, secret_sha256, secret_id, secret_key, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![appid, subject, hash_secret(&creds.secret), creds.secret_id, creds.secret_key, now()],
                )?;
            }
        }
        tx.commit()?;
        Ok(creds)
    }

    /// Replaces an app's secret and secretId/secretKey; the old ones, and every access token
    /// issued with them, stop working at once (a rotation usually means a leak).
    pub fn rotate_secret(&self, appid: &str) -> Result<AppCredentials, RegistryError> {
        let creds = new_credentials(appid);
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE apps SET secret_sha256 = ?2, secret_id = ?3, secret_key = ?4 WHERE appid = ?1",
            params![
                appid,
                hash_secret(&creds.secret),
                creds.secret_id,
                creds.secret_key
            ],
        )?;
        if changed == 0 {
            return Err(RegistryError::AppNotFound(appid.to_string()));
        }
        tx.execute("DELETE FROM tokens WHERE appid = ?1", [appid])?;
        tx.commit()?;
        Ok(creds)
    }

    /// Every app, by appid.
    pub fn apps(&self) -> Result<Vec<AppInfo>, RegistryError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT appid, subject, secret_id, secret_sha256 IS NOT NULL, created_at
             FROM apps ORDER BY appid",
        )?;
        let rows = stmt.query_map([], app_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One app.
    pub fn app(&self, appid: &str) -> Result<AppInfo, RegistryError> {
        self.db()
            .query_row(
                "SELECT appid, subject, secret_id, secret_sha256 IS NOT NULL, created_at
                 FROM apps WHERE appid = ?1",
                [appid],
                app_row,
            )
            .optional()?
            .ok_or_else(|| RegistryError::AppNotFound(appid.to_string()))
    }

    /// The app and secretKey behind a server-SDK secretId.
    pub fn secret_key(&self, secret_id: &str) -> Result<Option<(String, String)>, RegistryError> {
        Ok(self
            .db()
            .prepare_cached("SELECT appid, secret_key FROM apps WHERE secret_id = ?1")?
            .query_row([secret_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn token_for(&self, id: &str) -> anyhow::Result<String> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.token_key()).expect("any key length");
        mac.update(id.as_bytes());
        Ok(format!("{id}{}", hex::encode(mac.finalize().into_bytes())))
    }

    /// Checks an app's secret (protocol §2 errcodes on failure).
    pub fn check_secret(&self, appid: &str, secret: &str) -> Result<(), IssueError> {
        let stored: Option<Option<String>> = self
            .db()
            .query_row(
                "SELECT secret_sha256 FROM apps WHERE appid = ?1",
                [appid],
                |r| r.get(0),
            )
            .optional()?;
        match stored {
            None => Err(IssueError::UnknownApp),
            Some(Some(hash))
                if constant_time_eq(hash.as_bytes(), hash_secret(secret).as_bytes()) =>
            {
                Ok(())
            }
            Some(_) => Err(IssueError::WrongSecret),
        }
    }

    /// Issues a new token for `appid`; tokens issued before it keep working for
    /// `policy.overlap`. Returns the token and its lifetime in seconds.
    pub fn issue_token(
        &self,
        appid: &str,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        let id = random_hex(16);
        let token = self.token_for(&id)?;
        let now = now();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE tokens SET superseded_at = ?2 WHERE appid = ?1 AND superseded_at IS NULL",
            params![appid, now],
        )?;
        tx.execute(
            "INSERT INTO tokens (token_sha256, token_id, appid, issued_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                hash_secret(&token),
                id,
                appid,
                now,
                now + policy.ttl.as_secs() as i64
            ],
        )?;
        // Forget expired tokens. Replaced ones stay until then, so they are refused as "not the
        // latest" (40001) rather than as unknown.
        tx.execute(
            "DELETE FROM tokens WHERE appid = ?1 AND expires_at <= ?2",
            params![appid, now],
        )?;
        tx.commit()?;
        Ok((token, policy.ttl.as_secs()))
    }

    /// The app's current token and its remaining lifetime, or a new one when it has none
    /// (or `force_refresh`): `POST /cgi-bin/stable_token`.
    pub fn stable_token(
        &self,
        appid: &str,
        force_refresh: bool,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        if !force_refresh {
            let now = now();
            let current: Option<(String, i64)> = self
                .db()
                .query_row(
                    "SELECT token_id, expires_at FROM tokens
                     WHERE appid = ?1 AND superseded_at IS NULL AND expires_at > ?2
                     ORDER BY issued_at DESC LIMIT 1",
                    params![appid, now],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, expires_at)) = current {
                let token = self.token_for(&id)?;
                // A token key replaced since (a restored data dir) cannot rebuild the token:
                // issue a new one rather than hand out one that will not verify.
                let hash: Option<String> = self
                    .db()
                    .query_row(
                        "SELECT token_sha256 FROM tokens WHERE token_id = ?1",
                        [&id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if hash.as_deref() == Some(hash_secret(&token).as_str()) {
                    return Ok((token, (expires_at - now) as u64));
                }
            }
        }
        self.issue_token(appid, policy)
    }

    /// The app a token belongs to, or why it is refused.
    pub fn verify_token(
        &self,
        token: &str,
        policy: TokenPolicy,
    ) -> Result<Result<String, TokenError>, RegistryError> {
        let row: Option<(String, i64, Option<i64>)> = self
            .db()
            .prepare_cached(
                "SELECT appid, expires_at, superseded_at FROM tokens WHERE token_sha256 = ?1",
            )?
            .query_row([hash_secret(token)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let now = now();
        Ok(match row {
            None => Err(TokenError::Invalid),
            Some((_, expires_at, _)) if now >= expires_at => Err(TokenError::Expired),
            Some((_, _, Some(superseded)))
                if now >= superseded + policy.overlap.as_secs() as i64 =>
            {
                Err(TokenError::NotLatest)
            }
            Some((appid, _, _)) => Ok(appid),
        })
    }

    /// A setting (e.g. the admin token's hash).
    pub fn setting(&self, key: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .db()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<(), RegistryError> {
        self.db().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            [key, value],
        )?;
        Ok(())
    }
}

/// Reads the data dir's token key (`keys/token.key`), creating it on first use. Creation is a
/// link of a complete temp file that fails if another process got there first, so concurrent
/// first starts agree on one key.
pub(crate) fn load_token_key(root: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let dir = root.join("keys");
    let path = dir.join("token.key");
    if !path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let tmp = dir.join(format!(
            "token.key.tmp-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        write_atomic(&tmp, &key)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // A filesystem without hard links: create-if-absent, then write.
            Err(_) => match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(&key)?;
                    f.sync_all()?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            },
        }
    }
    let key = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        key.len() == 32,
        "{} is damaged (expected 32 bytes)",
        path.display()
    );
    Ok(key)
}

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppInfo> {
    Ok(AppInfo {
        appid: r.get(0)?,
        subject: r.get(1)?,
        secret_id: r.get(2)?,
        has_secret: r.get(3)?,
        created_at: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issue_verify_supersede_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let creds = reg.create_app("wxA", Some("Acme")).unwrap();
        assert!(matches!(
            reg.check_secret("wxA", "nope"),
            Err(IssueError::WrongSecret)
        ));
        assert!(matches!(
            reg.check_secret("wxZ", "nope"),
            Err(IssueError::UnknownApp)
        ));
        reg.check_secret("wxA", &creds.secret).unwrap();
        let policy = TokenPolicy::default();
        let (t1, ttl) = reg.issue_token("wxA", policy).unwrap();
        assert_eq!(ttl, 7200);
        assert!(t1.len() >= 64 && t1.len() <= 512);
        assert_eq!(
            reg.verify_token(&t1, policy).unwrap(),
            Ok("wxA".to_string())
        );
        // stable_token hands back the current token, also after a reopen.
        drop(reg);
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.stable_token("wxA", false, policy).unwrap().0, t1);
        let (t2, _) = reg.stable_token("wxA", true, policy).unwrap();
        assert_ne!(t1, t2);
        // The replaced token works during the overlap, not after.
        assert_eq!(
            reg.verify_token(&t1, policy).unwrap(),
            Ok("wxA".to_string())
        );
        let no_overlap = TokenPolicy {
            overlap: Duration::ZERO,
            ..policy
        };
        assert_eq!(
            reg.verify_token(&t1, no_overlap).unwrap(),
            Err(TokenError::NotLatest)
        );
        assert_eq!(
            reg.verify_token("bogus", policy).unwrap(),
            Err(TokenError::Invalid)
        );
        // Nothing secret is stored in plain text except the TC3 key.
        for name in ["cloudfn.db", "cloudfn.db-wal"] {
            let Ok(bytes) = std::fs::read(dir.path().join(name)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(&creds.secret), "{name}");
            assert!(!text.contains(&t1), "{name}");
        }
    }
}
