//! Who may share what (protocol §1) and other refusals every store gives in the same words: a
//! store reads the facts inside the transaction that makes the change and asks these functions
//! whether it may go ahead.

use crate::error::StoreError;

/// An app as the sharing checks see it: its subject and whether its sharing is on.
pub(crate) type AppFacts = (Option<String>, bool);

/// What [`check_share`] decides on, read in the transaction that adds the share.
pub(crate) struct ShareFacts<'a> {
    pub env: &'a str,
    pub owner: &'a str,
    pub to: &'a str,
    pub acting: Option<&'a str>,
    /// The owner app, `None` when it does not exist.
    pub owner_app: Option<AppFacts>,
    /// The app shared with, `None` when it does not exist.
    pub to_app: Option<AppFacts>,
    /// Whether the env has a `cloudbase_auth` function.
    pub has_auth: bool,
}

/// Only the owner may share, only with an app of the same subject, once the owner has sharing
/// on and the env has a deployed `cloudbase_auth`.
pub(crate) fn check_share(f: ShareFacts<'_>) -> Result<(), StoreError> {
    let ShareFacts { env, owner, to, .. } = f;
    if let Some(acting) = f.acting.filter(|a| *a != owner) {
        return Err(StoreError::Refused(format!(
            "only env {env}'s owner {owner} can share it; {acting} cannot pass it on"
        )));
    }
    if to == owner {
        return Err(StoreError::Refused(format!(
            "{to} owns env {env}; it needs no share"
        )));
    }
    let (owner_subject, sharing_on) = f
        .owner_app
        .ok_or_else(|| StoreError::AppNotFound(owner.into()))?;
    let (to_subject, _) = f.to_app.ok_or_else(|| StoreError::AppNotFound(to.into()))?;
    if owner_subject.is_none() || owner_subject != to_subject {
        return Err(StoreError::Refused(format!(
            "{owner} (subject {}) and {to} (subject {}) must belong to the same subject to share",
            owner_subject.as_deref().unwrap_or("unset"),
            to_subject.as_deref().unwrap_or("unset")
        )));
    }
    if !sharing_on {
        return Err(StoreError::Refused(format!(
            "app {owner} has not turned sharing on (cloudfn app sharing {owner} on)"
        )));
    }
    if !f.has_auth {
        return Err(StoreError::Refused(format!(
            "env {env} has no cloudbase_auth function; deploy one before sharing the env \
             (it decides, per calling app and user, whether to grant access)"
        )));
    }
    Ok(())
}

/// Only the owner ends one env's share; a sharee is pointed at `unbind`.
pub(crate) fn check_remove_share(
    env: &str,
    owner: &str,
    to: &str,
    acting: Option<&str>,
) -> Result<(), StoreError> {
    let Some(acting) = acting.filter(|a| *a != owner) else {
        return Ok(());
    };
    let how = if acting == to {
        format!(
            "; app {to} can end its whole relationship with {owner}: \
             cloudfn share unbind --owner {owner} --to {to} --as {to}"
        )
    } else {
        String::new()
    };
    Err(StoreError::Refused(format!(
        "only {owner}, env {env}'s owner, can end its share with {to}, not {acting}{how}"
    )))
}

/// Either side ends a relationship, nobody else.
pub(crate) fn check_unbind(owner: &str, to: &str, acting: Option<&str>) -> Result<(), StoreError> {
    match acting.filter(|a| *a != owner && *a != to) {
        Some(acting) => Err(StoreError::Refused(format!(
            "only {owner} or {to} can end their sharing relationship, not {acting}"
        ))),
        None => Ok(()),
    }
}

/// The refusal of `unbind` when the two apps share nothing.
pub(crate) fn nothing_to_unbind(owner: &str, to: &str) -> StoreError {
    StoreError::Refused(format!("app {owner} shares no env with {to}"))
}

/// Sharing goes off only once the app's envs have no shares.
pub(crate) fn check_sharing_off(appid: &str, shares: i64) -> Result<(), StoreError> {
    if shares > 0 {
        return Err(StoreError::Refused(format!(
            "app {appid} still shares its envs {shares} time(s); remove the shares \
             (cloudfn share ls) before turning sharing off"
        )));
    }
    Ok(())
}

/// The refusal of registering an app that has credentials already.
pub(crate) fn app_exists(appid: &str) -> StoreError {
    StoreError::InvalidConfig(format!(
        "app {appid} already exists; use `cloudfn app rotate-secret {appid}` for new credentials"
    ))
}

/// How long a replaced token is remembered after its overlap, to be refused as "not the
/// latest" (40001) rather than as unknown.
pub(crate) const SUPERSEDED_KEPT_SECS: i64 = 600;

/// What upstream secrets are sealed for.
const UPSTREAM: &str = "upstream-secret";

/// What users' `session_key`s are sealed for.
pub(crate) const SESSION_KEY: &str = "session-key";

/// The setting an app's upstream secret is kept under, sealed.
pub(crate) fn upstream_setting(appid: &str) -> String {
    format!("upstream/{appid}")
}

/// An app's upstream secret as kept (a setting, sealed under the store's key).
pub(crate) fn seal_upstream(key: &[u8], secret: &str) -> String {
    crate::secrets::seal(key, UPSTREAM, secret)
}

/// An app's upstream secret from its sealed setting, if it has one.
pub(crate) fn open_upstream(
    key: &[u8],
    appid: &str,
    sealed: Option<String>,
) -> Result<Option<String>, StoreError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    crate::secrets::unseal(key, UPSTREAM, &sealed)
        .map(Some)
        .ok_or_else(|| {
            StoreError::Storage(anyhow::anyhow!(
                "the upstream secret of {appid} does not open with this store's token key \
                 (keys/token.key or CLOUDFN_TOKEN_KEY replaced?); set it again"
            ))
        })
}
