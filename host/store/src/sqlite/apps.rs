//! Apps in SQLite: the app secret (for `/cgi-bin/token`, stored only as a SHA-256), the
//! secretId/secretKey pair (for the server SDK's TC3 signatures; the key is stored because
//! verifying an HMAC needs it), access tokens (protocol §2), and settings.
//!
//! The database keeps a token's SHA-256 (to verify) and its id; the token key lives in
//! `keys/token.key` outside the database, so a leaked database yields no usable token, while
//! `stable_token` can still hand back the current token after a restart.

use super::SqliteStore;
use crate::Apps;
use crate::error::{IssueError, StoreError};
use crate::fsutil::write_atomic;
use crate::model::{AppCredentials, AppInfo, TokenPolicy, TokenRecord};
use crate::names::validate_appid;
use crate::policy::{SESSION_KEY, SUPERSEDED_KEPT_SECS, upstream_setting};
use crate::secrets::{constant_time_eq, hash_secret, new_credentials, random_hex, token_for};
use anyhow::Context;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

#[async_trait]
impl Apps for SqliteStore {
    /// Registers an app and issues its credentials. An appid that already exists without
    /// credentials (an env owner from before apps had secrets) gets them now.
    async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> Result<AppCredentials, StoreError> {
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
            Some(Some(_)) => return Err(crate::policy::app_exists(appid)),
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
                    params![appid, subject, hash_secret(&creds.secret), creds.secret_id, creds.secret_key, crate::fsutil::now()],
                )?;
            }
        }
        tx.commit()?;
        self.feed.bump();
        Ok(creds)
    }

    /// Replaces an app's secret and secretId/secretKey; the old ones, and every access token
    /// issued with them, stop working at once (a rotation usually means a leak).
    async fn rotate_secret(&self, appid: &str) -> Result<AppCredentials, StoreError> {
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
            return Err(StoreError::AppNotFound(appid.to_string()));
        }
        tx.execute("DELETE FROM tokens WHERE appid = ?1", [appid])?;
        tx.commit()?;
        self.feed.bump();
        Ok(creds)
    }

    /// Every app, by appid.
    async fn apps(&self) -> Result<Vec<AppInfo>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("{APP_SELECT} ORDER BY appid"))?;
        let rows = stmt.query_map([], app_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One app.
    async fn app(&self, appid: &str) -> Result<AppInfo, StoreError> {
        self.db()
            .query_row(&format!("{APP_SELECT} WHERE appid = ?1"), [appid], app_row)
            .optional()?
            .ok_or_else(|| StoreError::AppNotFound(appid.to_string()))
    }

    /// Checks an app's secret (protocol §2 errcodes on failure).
    async fn check_secret(&self, appid: &str, secret: &str) -> Result<(), IssueError> {
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
    async fn issue_token(
        &self,
        appid: &str,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        let id = random_hex(16);
        let token = token_for(&self.token_key, &id);
        let now = crate::fsutil::now();
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
        // Forget expired tokens, and replaced ones ten minutes after their overlap ended (until
        // then they are refused as "not the latest", 40001, rather than as unknown): an app's
        // rows stay within what its token quota lets it issue in that time.
        tx.execute(
            "DELETE FROM tokens WHERE appid = ?1 AND (expires_at <= ?2 OR superseded_at <= ?3)",
            params![
                appid,
                now,
                now - policy.overlap.as_secs() as i64 - SUPERSEDED_KEPT_SECS
            ],
        )?;
        tx.commit()?;
        self.feed.bump();
        Ok((token, policy.ttl.as_secs()))
    }

    /// The app's current token and its remaining lifetime, or a new one when it has none
    /// (or `force_refresh`): `POST /cgi-bin/stable_token`.
    async fn stable_token(
        &self,
        appid: &str,
        force_refresh: bool,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        if !force_refresh {
            let now = crate::fsutil::now();
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
                let token = token_for(&self.token_key, &id);
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
        self.issue_token(appid, policy).await
    }

    /// A setting (e.g. the admin token's hash).
    async fn set_upstream_secret(
        &self,
        appid: &str,
        secret: Option<&str>,
    ) -> Result<(), StoreError> {
        self.app(appid).await?;
        let key = upstream_setting(appid);
        match secret {
            Some(s) => {
                let sealed = crate::policy::seal_upstream(&self.token_key, s);
                self.set_setting(&key, &sealed).await
            }
            None => {
                self.db()
                    .execute("DELETE FROM settings WHERE key = ?1", [&key])?;
                Ok(())
            }
        }
    }

    async fn upstream_secret(&self, appid: &str) -> Result<Option<String>, StoreError> {
        let sealed = self.setting(&upstream_setting(appid)).await?;
        crate::policy::open_upstream(&self.token_key, appid, sealed)
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        crate::secrets::mac(&self.token_key, purpose, data)
    }

    fn seal(&self, purpose: &str, plain: &str) -> String {
        crate::secrets::seal(&self.token_key, purpose, plain)
    }

    fn unseal(&self, purpose: &str, sealed: &str) -> Option<String> {
        crate::secrets::unseal(&self.token_key, purpose, sealed)
    }

    async fn record_login(
        &self,
        appid: &str,
        openid: &str,
        unionid: Option<&str>,
        session_key: &str,
    ) -> Result<u64, StoreError> {
        let sealed = crate::secrets::seal(&self.token_key, SESSION_KEY, session_key);
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(generation) = tx
            .query_row(
                "SELECT session_gen FROM apps WHERE appid = ?1",
                [appid],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        else {
            return Err(StoreError::AppNotFound(appid.to_string()));
        };
        tx.execute(
            "INSERT INTO user_sessions (appid, openid, unionid, session_key, logged_in_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (appid, openid) DO UPDATE
             SET unionid = ?3, session_key = ?4, logged_in_at = ?5",
            params![appid, openid, unionid, sealed, crate::fsutil::now()],
        )?;
        tx.commit()?;
        // No feed bump: nothing on the call path reads a user's session_key.
        Ok(generation as u64)
    }

    async fn revoke_sessions(&self, appid: &str) -> Result<u64, StoreError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(generation) = tx
            .query_row(
                "UPDATE apps SET session_gen = session_gen + 1 WHERE appid = ?1
                 RETURNING session_gen",
                [appid],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        else {
            return Err(StoreError::AppNotFound(appid.to_string()));
        };
        tx.execute("DELETE FROM user_sessions WHERE appid = ?1", [appid])?;
        tx.commit()?;
        self.feed.bump();
        Ok(generation as u64)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Sets a setting.
    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = ?2",
            [key, value],
        )?;
        Ok(())
    }
}

/// Every stored token. Expired ones stay until their app's next issue, so they are refused
/// as expired (42001) rather than as unknown.
pub(super) fn tokens(db: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt =
        db.prepare("SELECT token_sha256, appid, expires_at, superseded_at FROM tokens")?;
    let rows = stmt.query_map([], |r| {
        Ok(TokenRecord {
            token_sha256: r.get(0)?,
            appid: r.get(1)?,
            expires_at: r.get(2)?,
            superseded_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (secretId, appid, secretKey) of every app with server-SDK credentials.
pub(super) fn secret_keys(db: &Connection) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut stmt = db.prepare(
        "SELECT secret_id, appid, secret_key FROM apps
         WHERE secret_id IS NOT NULL AND secret_key IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Each app's session generation: sessions carry the one they were issued under, and
/// revoking an app's sessions moves it on.
pub(super) fn session_gens(db: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut stmt = db.prepare("SELECT appid, session_gen FROM apps")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reads the data dir's token key (`keys/token.key`), creating it on first use. Creation is a
/// link of a complete temp file that fails if another process got there first, so concurrent
/// first starts agree on one key.
pub(super) fn load_token_key(root: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let dir = root.join("keys");
    let path = dir.join("token.key");
    if !path.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::fsutil::restrict(&dir, 0o700)?;
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

/// The columns [`app_row`] reads, in its order.
const APP_SELECT: &str =
    "SELECT appid, subject, secret_id, secret_sha256 IS NOT NULL, created_at, sharing FROM apps";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppInfo> {
    Ok(AppInfo {
        appid: r.get(0)?,
        subject: r.get(1)?,
        secret_id: r.get(2)?,
        has_secret: r.get(3)?,
        created_at: r.get(4)?,
        sharing: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Snapshots, TokenError};
    use std::time::Duration;

    /// The app of `token`, as the call path checks it: through a snapshot.
    async fn verify(
        reg: &SqliteStore,
        token: &str,
        policy: TokenPolicy,
    ) -> Result<String, TokenError> {
        let snap = reg.snapshot().await.unwrap();
        let hash = hash_secret(token);
        match snap.tokens.iter().find(|t| t.token_sha256 == hash) {
            None => Err(TokenError::Invalid),
            Some(t) => t.check(crate::fsutil::now(), policy).map(str::to_string),
        }
    }

    #[tokio::test]
    async fn tokens_issue_verify_supersede_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = SqliteStore::open(dir.path(), 10).unwrap();
        let creds = reg.create_app("wxA", Some("Acme")).await.unwrap();
        assert!(matches!(
            reg.check_secret("wxA", "nope").await,
            Err(IssueError::WrongSecret)
        ));
        assert!(matches!(
            reg.check_secret("wxZ", "nope").await,
            Err(IssueError::UnknownApp)
        ));
        reg.check_secret("wxA", &creds.secret).await.unwrap();
        let policy = TokenPolicy::default();
        let (t1, ttl) = reg.issue_token("wxA", policy).await.unwrap();
        assert_eq!(ttl, 7200);
        assert!(t1.len() >= 64 && t1.len() <= 512);
        assert_eq!(verify(&reg, &t1, policy).await, Ok("wxA".to_string()));
        // stable_token hands back the current token, also after a reopen.
        drop(reg);
        let reg = SqliteStore::open(dir.path(), 10).unwrap();
        assert_eq!(reg.stable_token("wxA", false, policy).await.unwrap().0, t1);
        let (t2, _) = reg.stable_token("wxA", true, policy).await.unwrap();
        assert_ne!(t1, t2);
        // The replaced token works during the overlap, not after.
        assert_eq!(verify(&reg, &t1, policy).await, Ok("wxA".to_string()));
        let no_overlap = TokenPolicy {
            overlap: Duration::ZERO,
            ..policy
        };
        assert_eq!(
            verify(&reg, &t1, no_overlap).await,
            Err(TokenError::NotLatest)
        );
        assert_eq!(
            verify(&reg, "bogus", policy).await,
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
