//! Mini-program users' sessions. A client's `wx.login()` code is exchanged with the platform
//! (`jscode2session`, in [`crate::upstream`]) for the user's openid; the host keeps the
//! platform's `session_key` (sealed, in the store) and hands the client a session instead:
//!
//! `cfs1.` ‖ base64url(claims JSON) ‖ `.` ‖ base64url(HMAC-SHA256 of the claims under the
//! data dir's key), the claims being appid, openid, unionid, the app's session generation,
//! when the user logged in, and when the session expires.
//!
//! Checking one is a MAC and a comparison against the snapshot: no database read on the call
//! path. A session is refreshed (a new expiry, same login) while it is still valid, for at
//! most [`MAX_SESSION_AGE`] after the login; revoking an app's sessions moves its generation
//! on, which every host sharing the store sees on its next call.

use crate::call::AppCaller;
use crate::host::Host;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cloudfn_store::AuditEntry;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a session lasts unless refreshed (the serve option's default).
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(2 * 3600);
/// How long after a login its sessions may still be refreshed; then the client logs in again.
pub const MAX_SESSION_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// What sessions are MACed for (a key of their own, derived from the data dir's key).
const PURPOSE: &str = "client-session";
const PREFIX: &str = SESSION_PREFIX;
/// How every session starts: tells a session from an access token where either may come.
pub const SESSION_PREFIX: &str = "cfs1.";
/// Longest session text taken: claims of ids of at most 128 characters fit well inside.
const MAX_SESSION_LEN: usize = 1024;
/// Longest `wx.login()` code passed on to the platform.
const MAX_CODE_LEN: usize = 256;

/// What a session says; short keys keep it small, as it travels with every client call.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    /// appid.
    a: String,
    /// openid.
    o: String,
    /// unionid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    /// The app's session generation at login.
    g: u64,
    /// Login time, unix milliseconds.
    l: i64,
    /// Expiry, unix milliseconds.
    e: i64,
}

/// A session handed to a client.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The session text the client sends back with each call.
    pub session: String,
    /// Seconds it stays valid unless refreshed.
    pub expires_in: u64,
    /// The user in the app.
    pub openid: String,
    /// The user across the subject's apps, when the platform gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
}

/// Why a session is refused. The errcodes are the access token's (protocol §3): a session is
/// a user's access token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// No session was sent.
    #[error("session missing: log in first (POST /auth/code2session)")]
    Missing,
    /// Not a session this host issued, or altered.
    #[error("invalid session")]
    Invalid,
    /// Past its expiry.
    #[error("session expired: refresh it or log in again")]
    Expired,
    /// The app's sessions were revoked after it was issued.
    #[error("session revoked: log in again")]
    Revoked,
    /// The host could not read its state to check the session (details in its log).
    #[error("system error")]
    System,
}

impl SessionError {
    /// The protocol errcode.
    pub fn errcode(&self) -> i64 {
        match self {
            SessionError::Missing => 41001,
            SessionError::Invalid | SessionError::Revoked => 40014,
            SessionError::Expired => 42001,
            SessionError::System => -1,
        }
    }
}

/// A refused login, in the platform's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errmsg}")]
pub struct LoginError {
    /// The platform's errcode (its own refusals passed on as they are).
    pub errcode: i64,
    /// What went wrong.
    pub errmsg: String,
}

impl LoginError {
    fn new(errcode: i64, errmsg: impl Into<String>) -> LoginError {
        LoginError {
            errcode,
            errmsg: errmsg.into(),
        }
    }
}

impl Host {
    /// Logs a mini-program user in: exchanges `code` (from `wx.login()`) with the platform as
    /// `appid`, keeps the user's `session_key`, and returns a session. Every outcome is in
    /// the audit log.
    pub async fn login(&self, appid: &str, code: &str) -> Result<Session, LoginError> {
        let result = self.try_login(appid, code).await;
        match &result {
            Ok(s) => {
                self.audit_login(
                    Some(appid),
                    "login",
                    Some(&s.openid),
                    "session issued".into(),
                )
                .await
            }
            Err(e) => self.refused_login(appid, e).await,
        }
        result
    }

    async fn try_login(&self, appid: &str, code: &str) -> Result<Session, LoginError> {
        if code.is_empty() {
            return Err(LoginError::new(41008, "missing code"));
        }
        if code.len() > MAX_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(LoginError::new(40029, "invalid code"));
        }
        let snap = self.state.snapshot().await.map_err(system)?;
        if snap.session_gen(appid).is_none() {
            return Err(LoginError::new(40013, format!("invalid appid {appid}")));
        }
        let user = self
            .upstream
            .code2session(&*self.store, appid, code)
            .await
            .map_err(|e| LoginError::new(e.errcode, e.errmsg))?;
        for (what, id) in [
            ("openid", Some(&user.openid)),
            ("unionid", user.unionid.as_ref()),
        ] {
            if let Some(id) = id {
                cloudfn_protocol::ids::user_id(Some(id.as_bytes())).map_err(|why| {
                    LoginError::new(-1, format!("the platform's {what} is unusable: {why}"))
                })?;
            }
        }
        let generation = self
            .store
            .record_login(
                appid,
                &user.openid,
                user.unionid.as_deref(),
                &user.session_key,
            )
            .await
            .map_err(system)?;
        let now = now_ms();
        Ok(self.issue(Claims {
            a: appid.to_string(),
            o: user.openid,
            u: user.unionid,
            g: generation,
            l: now,
            e: now + self.session_ttl.as_millis() as i64,
        }))
    }

    /// The user a session names, as a caller; `client_ip` is where the request came from.
    pub async fn session_caller(
        &self,
        session: Option<&str>,
        client_ip: Option<String>,
    ) -> Result<AppCaller, SessionError> {
        let claims = self.check(session).await?;
        Ok(AppCaller {
            appid: claims.a,
            openid: Some(claims.o),
            unionid: claims.u,
            client_ip,
        })
    }

    /// A new session for the same login, while `session` is still valid and the login is
    /// less than [`MAX_SESSION_AGE`] old.
    pub async fn refresh_session(&self, session: Option<&str>) -> Result<Session, SessionError> {
        let claims = self.check(session).await?;
        let now = now_ms();
        if now - claims.l >= MAX_SESSION_AGE.as_millis() as i64 {
            return Err(SessionError::Expired);
        }
        Ok(self.issue(Claims {
            e: now + self.session_ttl.as_millis() as i64,
            ..claims
        }))
    }

    fn issue(&self, claims: Claims) -> Session {
        let json = serde_json::to_vec(&claims).expect("plain claims serialize");
        let mac = self.store.mac(PURPOSE, &json);
        Session {
            session: format!("{PREFIX}{}.{}", B64.encode(&json), B64.encode(mac)),
            expires_in: self.session_ttl.as_secs(),
            openid: claims.o,
            unionid: claims.u,
        }
    }

    async fn check(&self, session: Option<&str>) -> Result<Claims, SessionError> {
        let session = session
            .filter(|s| !s.is_empty())
            .ok_or(SessionError::Missing)?;
        let body = session
            .strip_prefix(PREFIX)
            .filter(|_| session.len() <= MAX_SESSION_LEN)
            .ok_or(SessionError::Invalid)?;
        let (claims, mac) = body.split_once('.').ok_or(SessionError::Invalid)?;
        let json = B64.decode(claims).map_err(|_| SessionError::Invalid)?;
        let mac = B64.decode(mac).map_err(|_| SessionError::Invalid)?;
        if !cloudfn_store::secrets::constant_time_eq(&mac, &self.store.mac(PURPOSE, &json)) {
            return Err(SessionError::Invalid);
        }
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| SessionError::Invalid)?;
        if now_ms() >= claims.e {
            return Err(SessionError::Expired);
        }
        let snap = self.state.snapshot().await.map_err(|e| {
            tracing::error!("checking a session: {e}");
            SessionError::System
        })?;
        match snap.session_gen(&claims.a) {
            Some(g) if g == claims.g => Ok(claims),
            Some(_) => Err(SessionError::Revoked),
            None => Err(SessionError::Invalid),
        }
    }

    /// Notes a refused login in the audit log, at most [`REFUSALS_AUDITED_PER_MINUTE`] per
    /// app a minute (a flood of bad codes must not become a flood of database writes); the
    /// rest are counted in the next entry that is written. Logins as apps the host does not
    /// know share one allowance, so made-up appids cannot multiply it.
    pub async fn refused_login(&self, appid: &str, error: &LoginError) {
        let known = matches!(self.state.snapshot().await, Ok(s) if s.session_gen(appid).is_some());
        let key = if known { appid } else { "" };
        let skipped = {
            let mut skipped = self.refusals_skipped.entry(key.to_string()).or_insert(0);
            if !self.refusals_audited.allow(key) {
                *skipped += 1;
                return;
            }
            std::mem::take(&mut *skipped)
        };
        let mut detail = format!("{} {}", error.errcode, error.errmsg);
        if !known {
            detail = format!("unknown app {appid:?}: {detail}");
        }
        if skipped > 0 {
            detail.push_str(&format!(" (and {skipped} more refusals not written)"));
        }
        self.audit_login(known.then_some(appid), "login.refused", None, detail)
            .await;
    }

    async fn audit_login(
        &self,
        appid: Option<&str>,
        action: &str,
        openid: Option<&str>,
        detail: String,
    ) {
        let entry = AuditEntry {
            seq: 0,
            at: 0,
            acting: appid.map(str::to_string),
            action: action.to_string(),
            env: None,
            target: openid.map(str::to_string),
            detail,
        };
        if let Err(e) = self.store.audit(entry).await {
            tracing::error!("writing the audit log ({action}) failed: {e}");
        }
    }
}

/// Refused logins written to the audit log per app per minute.
pub const REFUSALS_AUDITED_PER_MINUTE: u32 = 10;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn system(e: impl std::fmt::Display) -> LoginError {
    tracing::error!("logging a user in: {e}");
    LoginError::new(-1, "system error")
}
