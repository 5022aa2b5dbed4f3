//! The audit log in SQLite: one row per management change, in `cloudfn.db` beside the state it
//! describes. Appending does not bump the change feed: the log is not state the call path reads.

use super::SqliteStore;
use crate::AuditLog;
use crate::error::StoreError;
use crate::model::{AuditEntry, AuditQuery};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl AuditLog for SqliteStore {
    async fn audit(&self, e: AuditEntry) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO audit (at, acting, action, env, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                crate::fsutil::now(),
                e.acting,
                e.action,
                e.env,
                e.target,
                e.detail
            ],
        )?;
        Ok(())
    }

    async fn audit_log(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare_cached(
            "SELECT * FROM (
                SELECT seq, at, acting, action, env, target, detail FROM audit
                WHERE (?1 IS NULL OR env = ?1)
                  AND (?2 IS NULL OR acting = ?2 OR target = ?2
                       OR env IN (SELECT name FROM envs WHERE owner_appid = ?2))
                  AND seq > ?3
                ORDER BY seq DESC LIMIT ?4
             ) ORDER BY seq",
        )?;
        let rows = stmt.query_map(
            params![q.env, q.app, q.after.unwrap_or(0), q.limit.unwrap_or(100)],
            |r| {
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    acting: r.get(2)?,
                    action: r.get(3)?,
                    env: r.get(4)?,
                    target: r.get(5)?,
                    detail: r.get(6)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
