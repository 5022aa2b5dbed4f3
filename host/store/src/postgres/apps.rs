//! Apps in PostgreSQL: the app secret (kept as a SHA-256), the secretId/secretKey pair, access
//! tokens (protocol §2: the database keeps a token's hash and id, the token key is every
//! host's configuration), users' sealed `session_key`s, and settings.

use super::{PostgresStore, write_tx};
use crate::Apps;
use crate::error::{IssueError, StoreError};
use crate::model::{AppCredentials, AppInfo, TokenPolicy, TokenRecord};
use crate::names::validate_appid;
use crate::policy::{SESSION_KEY, SUPERSEDED_KEPT_SECS, upstream_setting};
use crate::secrets::{constant_time_eq, hash_secret, new_credentials, random_hex, token_for};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

#[async_trait]
impl Apps for PostgresStore {
    async fn create_app(
        &self,
        appid: &str,
        subject: Option<&str>,
    ) -> Result<AppCredentials, StoreError> {
        validate_appid(appid)?;
        let creds = new_credentials(appid);
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let existing: Option<Option<String>> = tx
            .query_opt("SELECT secret_sha256 FROM apps WHERE appid = $1", &[&appid])
            .await?
            .map(|r| r.get(0));
        let secret = hash_secret(&creds.secret);
        match existing {
            Some(Some(_)) => return Err(crate::policy::app_exists(appid)),
            Some(None) => {
                tx.execute(
                    "UPDATE apps SET subject = COALESCE($2, subject), secret_sha256 = $3,
                     secret_id = $4, secret_key = $5 WHERE appid = $1",
                    &[
                        &appid,
                        &subject,
                        &secret,
                        &creds.secret_id,
                        &creds.secret_key,
                    ],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "INSERT INTO apps (appid, subject, secret_sha256, secret_id, secret_key,
                        created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &appid,
                        &subject,
                        &secret,
                        &creds.secret_id,
                        &creds.secret_key,
                        &crate::fsutil::now(),
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.changed();
        Ok(creds)
    }

    async fn rotate_secret(&self, appid: &str) -> Result<AppCredentials, StoreError> {
        let creds = new_credentials(appid);
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let changed = tx
            .execute(
                "UPDATE apps SET secret_sha256 = $2, secret_id = $3, secret_key = $4
                 WHERE appid = $1",
                &[
                    &appid,
                    &hash_secret(&creds.secret),
                    &creds.secret_id,
                    &creds.secret_key,
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::AppNotFound(appid.to_string()));
        }
        tx.execute("DELETE FROM tokens WHERE appid = $1", &[&appid])
            .await?;
        tx.commit().await?;
        self.changed();
        Ok(creds)
    }

    async fn apps(&self) -> Result<Vec<AppInfo>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(&format!("{APP_SELECT} ORDER BY appid"), &[])
            .await?
            .iter()
            .map(app_row)
            .collect())
    }

    async fn app(&self, appid: &str) -> Result<AppInfo, StoreError> {
        self.client()
            .await?
            .query_opt(&format!("{APP_SELECT} WHERE appid = $1"), &[&appid])
            .await?
            .map(|r| app_row(&r))
            .ok_or_else(|| StoreError::AppNotFound(appid.to_string()))
    }

    async fn check_secret(&self, appid: &str, secret: &str) -> Result<(), IssueError> {
        let stored: Option<Option<String>> = self
            .client()
            .await?
            .query_opt("SELECT secret_sha256 FROM apps WHERE appid = $1", &[&appid])
            .await?
            .map(|r| r.get(0));
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

    async fn issue_token(
        &self,
        appid: &str,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        let id = random_hex(16);
        let token = token_for(&self.token_key, &id);
        let now = crate::fsutil::now();
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        tx.execute(
            "UPDATE tokens SET superseded_at = $2 WHERE appid = $1 AND superseded_at IS NULL",
            &[&appid, &now],
        )
        .await?;
        tx.execute(
            "INSERT INTO tokens (token_sha256, token_id, appid, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &hash_secret(&token),
                &id,
                &appid,
                &now,
                &(now + policy.ttl.as_secs() as i64),
            ],
        )
        .await?;
        // As in the SQLite store: expired tokens go, replaced ones ten minutes after their
        // overlap ended.
        tx.execute(
            "DELETE FROM tokens WHERE appid = $1 AND (expires_at <= $2 OR superseded_at <= $3)",
            &[
                &appid,
                &now,
                &(now - policy.overlap.as_secs() as i64 - SUPERSEDED_KEPT_SECS),
            ],
        )
        .await?;
        tx.commit().await?;
        self.changed();
        Ok((token, policy.ttl.as_secs()))
    }

    async fn stable_token(
        &self,
        appid: &str,
        force_refresh: bool,
        policy: TokenPolicy,
    ) -> Result<(String, u64), IssueError> {
        if !force_refresh {
            let now = crate::fsutil::now();
            let current = self
                .client()
                .await?
                .query_opt(
                    "SELECT token_id, expires_at, token_sha256 FROM tokens
                     WHERE appid = $1 AND superseded_at IS NULL AND expires_at > $2
                     ORDER BY issued_at DESC LIMIT 1",
                    &[&appid, &now],
                )
                .await?;
            if let Some(row) = current {
                let (id, expires_at, hash): (String, i64, String) =
                    (row.get(0), row.get(1), row.get(2));
                let token = token_for(&self.token_key, &id);
                // A host given another token key cannot rebuild the token: issue a new one
                // rather than hand out one that will not verify.
                if hash == hash_secret(&token) {
                    return Ok((token, (expires_at - now) as u64));
                }
            }
        }
        self.issue_token(appid, policy).await
    }

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
                self.client()
                    .await?
                    .execute("DELETE FROM settings WHERE key = $1", &[&key])
                    .await?;
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
        let mut client = self.client().await?;
        // Nothing on the call path reads a user's session_key: no write lock, no notification.
        let tx = client.transaction().await?;
        let Some(generation) = tx
            .query_opt(
                "SELECT session_gen FROM apps WHERE appid = $1 FOR SHARE",
                &[&appid],
            )
            .await?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Err(StoreError::AppNotFound(appid.to_string()));
        };
        tx.execute(
            "INSERT INTO user_sessions (appid, openid, unionid, session_key, logged_in_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (appid, openid) DO UPDATE
             SET unionid = $3, session_key = $4, logged_in_at = $5",
            &[&appid, &openid, &unionid, &sealed, &crate::fsutil::now()],
        )
        .await?;
        tx.commit().await?;
        Ok(generation as u64)
    }

    async fn revoke_sessions(&self, appid: &str) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = write_tx(&mut client).await?;
        let Some(generation) = tx
            .query_opt(
                "UPDATE apps SET session_gen = session_gen + 1 WHERE appid = $1
                 RETURNING session_gen",
                &[&appid],
            )
            .await?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Err(StoreError::AppNotFound(appid.to_string()));
        };
        tx.execute("DELETE FROM user_sessions WHERE appid = $1", &[&appid])
            .await?;
        tx.commit().await?;
        self.changed();
        Ok(generation as u64)
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()
            .await?
            .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
            .await?
            .map(|r| r.get(0)))
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = $2",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }
}

const APP_SELECT: &str =
    "SELECT appid, subject, secret_id, secret_sha256 IS NOT NULL, created_at, sharing FROM apps";

fn app_row(r: &Row) -> AppInfo {
    AppInfo {
        appid: r.get(0),
        subject: r.get(1),
        secret_id: r.get(2),
        has_secret: r.get(3),
        created_at: r.get(4),
        sharing: r.get(5),
    }
}

/// Every stored token.
pub(super) async fn tokens(db: &impl GenericClient) -> Result<Vec<TokenRecord>, StoreError> {
    Ok(db
        .query(
            "SELECT token_sha256, appid, expires_at, superseded_at FROM tokens",
            &[],
        )
        .await?
        .iter()
        .map(|r| TokenRecord {
            token_sha256: r.get(0),
            appid: r.get(1),
            expires_at: r.get(2),
            superseded_at: r.get(3),
        })
        .collect())
}

/// (secretId, appid, secretKey) of every app with server-SDK credentials.
pub(super) async fn secret_keys(
    db: &impl GenericClient,
) -> Result<Vec<(String, String, String)>, StoreError> {
    Ok(db
        .query(
            "SELECT secret_id, appid, secret_key FROM apps
             WHERE secret_id IS NOT NULL AND secret_key IS NOT NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Each app's session generation.
pub(super) async fn session_gens(
    db: &impl GenericClient,
) -> Result<Vec<(String, u64)>, StoreError> {
    Ok(db
        .query("SELECT appid, session_gen FROM apps", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect())
}
