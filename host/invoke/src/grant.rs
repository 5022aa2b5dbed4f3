//! The grant rules of a shared env (protocol §1, §4, §5, §6), as pure steps the pipeline runs
//! in order for a caller that does not own the env:
//!
//! a. [`check_share`]: a share of the env with the calling app exists and permits the function,
//!    else -501019;
//! b. `cloudbase_auth` runs (the pipeline runs it) with FROM_* set and the [`auth_event`];
//!    [`cloudfn_protocol::auth_reply::parse`] reads its reply: errCode ≠ 0 goes back to the caller unchanged, a reply
//!    that breaks the §5 table is a denial, never a grant;
//! c. [`check_rules`]: the env's security rules over `auth` = {appid, openid, unionid,
//!    loginType, custom}, else -501019;
//! d. the function runs with FROM_* set and the owner's APPID/OPENID absent.
//!
//! [`needs_grant`] is the one place that decides whether a call goes through these steps.
//! Step b's outcome is cached per (env, app, openid, unionid, function) for a TTL in
//! [`Decisions`], under the env's grant tag: a change to the env's shares, rules or
//! `cloudbase_auth` makes every cached outcome of the env unusable at once.

use crate::call::{AppCaller, Caller};
use crate::error::InvokeError;
use crate::state::Snapshot;
pub use cloudfn_protocol::auth_reply::AuthOutcome;
use cloudfn_protocol::auth_reply::parse as parse_reply;
use cloudfn_store::{AUTH_FUNCTION, Decision, EnvInfo};
use dashmap::DashMap;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The app a call must be granted access for, if any: an app caller that does not own the
/// env. An owner's own call, and a trusted identity, need no grant.
pub fn needs_grant<'a>(env: &EnvInfo, caller: &'a Caller) -> Option<&'a AppCaller> {
    match caller {
        Caller::App(app) if app.appid != env.owner_appid => Some(app),
        _ => None,
    }
}

/// A decision in words, for the record.
pub fn decision(caller: &AppCaller, allowed: bool, step: &str, reason: String) -> Decision {
    Decision {
        allowed,
        step: step.to_string(),
        reason,
        caller_appid: caller.appid.clone(),
        cached: false,
    }
}

/// Step a: the share of `env` with the caller, and that it covers `function` (None: `init`);
/// no share covers `cloudbase_auth`.
pub fn check_share(
    snap: &Snapshot,
    env: &EnvInfo,
    function: Option<&str>,
    caller: &AppCaller,
) -> Result<(), InvokeError> {
    let Some(share) = snap.share(&env.name, &caller.appid) else {
        return Err(InvokeError::NotShared {
            env: env.name.clone(),
            appid: caller.appid.clone(),
        });
    };
    // cloudbase_auth answers the host's grant step only: a sharee calling it could mint
    // claims for any user it names in the event.
    if function == Some(AUTH_FUNCTION) {
        return Err(InvokeError::Unauthorized(format!(
            "{AUTH_FUNCTION} of env {} runs only for the host's grant check; app {} may not \
             invoke it",
            env.name, caller.appid
        )));
    }
    if let Some(f) = function
        && !share.permits_invoke(f)
    {
        return Err(InvokeError::Unauthorized(format!(
            "the share of env {} with app {} does not permit invoking {f}",
            env.name, caller.appid
        )));
    }
    Ok(())
}

/// Step b's event (protocol §5).
pub fn auth_event(env: &EnvInfo, function: Option<&str>, caller: &AppCaller) -> String {
    json!({
        "fromAppid": caller.appid,
        "fromOpenid": caller.openid,
        "fromUnionid": caller.unionid,
        "resourceAppid": env.owner_appid,
        "resourceEnv": env.name,
        "function": function,
    })
    .to_string()
}

/// A refusal: the error the caller gets, and what only the env's owner sees (in the
/// decision of the activation record): the owner's rule text, or how its `cloudbase_auth`
/// failed, are not the caller's business.
pub struct Refused {
    /// What the caller is told.
    pub error: InvokeError,
    /// Why, in the owner's terms.
    pub detail: String,
}

impl From<InvokeError> for Refused {
    fn from(error: InvokeError) -> Self {
        Refused {
            detail: error.to_string(),
            error,
        }
    }
}

/// Step b's verdict from the `cloudbase_auth` run's result.
pub fn auth_outcome(
    env: &EnvInfo,
    result: Result<String, InvokeError>,
) -> Result<AuthOutcome, Refused> {
    let refused = |detail: String| Refused {
        error: InvokeError::Unauthorized(format!(
            "{AUTH_FUNCTION} of env {} gave no valid reply; access denied",
            env.name
        )),
        detail,
    };
    match result {
        Ok(json) => parse_reply(&json).map_err(|why| refused(format!("invalid reply: {why}"))),
        // Not deployed, the env busy, the host failing: said as such, not as a denial.
        Err(
            e @ (InvokeError::FunctionNotFound { .. }
            | InvokeError::TooBusy { .. }
            | InvokeError::Overloaded(_)
            | InvokeError::DepthExceeded(_)
            | InvokeError::System(_)),
        ) => Err(e.into()),
        // A crash, a timeout or a result that is not even JSON is no reply: never a grant.
        Err(e) => Err(refused(e.to_string())),
    }
}

/// The `auth` the env's rules see for a caller and its `cloudbase_auth` claims (the console's
/// "try it" starts from one, so that a rule written from it holds for real callers).
pub fn rules_auth(caller: &AppCaller, custom: &Value) -> Value {
    json!({
        "appid": caller.appid,
        "openid": caller.openid,
        "unionid": caller.unionid,
        "loginType": if caller.openid.is_some() { "WECHAT" } else { "APP" },
        "custom": custom,
    })
}

/// Step c: the env's rules for `function` over the caller and its claims.
pub fn check_rules(
    snap: &Snapshot,
    env: &EnvInfo,
    function: &str,
    caller: &AppCaller,
    custom: &Value,
) -> Result<(), Refused> {
    let auth = rules_auth(caller, custom);
    let verdict = snap.rules(&env.name).check(function, &auth);
    if verdict.allowed {
        return Ok(());
    }
    let why = match &verdict.error {
        Some(e) => format!(" ({e})"),
        None => String::new(),
    };
    Err(Refused {
        error: InvokeError::Unauthorized(format!(
            "the security rules of env {} deny app {} calling {function}",
            env.name, caller.appid
        )),
        detail: format!("the security rule `{}` denies{why}", verdict.rule),
    })
}

/// Whose `cloudbase_auth` decision about what: env, app, openid, unionid and function, each
/// length-prefixed into one string (so no two keys run together). The function is part of
/// the key because the §5 event names it: a `cloudbase_auth` may decide per function. One
/// string rather than a tuple of five, so a lookup can borrow a reused buffer instead of
/// allocating five strings per call.
fn write_key(key: &mut String, env: &str, function: Option<&str>, caller: &AppCaller) {
    use std::fmt::Write;
    key.clear();
    for part in [
        Some(env),
        Some(caller.appid.as_str()),
        caller.openid.as_deref(),
        caller.unionid.as_deref(),
        function,
    ] {
        // `-` for None, `N:` before N bytes for Some: None and Some("") differ.
        let _ = match part {
            None => write!(key, "-"),
            Some(p) => write!(key, "{}:{p}", p.len()),
        };
    }
}

/// Most `cloudbase_auth` decisions kept; past it, expired ones are dropped first, then all.
const MAX_CACHED_DECISIONS: usize = 100_000;

/// One cached outcome.
struct Cached {
    /// The grant tag it was made under (shares, rules and `cloudbase_auth` of the env).
    tag: u64,
    at: Instant,
    outcome: Arc<AuthOutcome>,
    /// The whole grant, once the rules passed for it: a hit skips the rules as well.
    granted: Option<Decision>,
}

/// Cached `cloudbase_auth` outcomes.
pub struct Decisions {
    ttl: Duration,
    /// Sharded: concurrent cross-app calls share no lock.
    cache: DashMap<String, Cached>,
}

impl Decisions {
    /// A cache keeping outcomes for `ttl` (zero: never).
    pub fn new(ttl: Duration) -> Self {
        Decisions {
            ttl,
            cache: DashMap::new(),
        }
    }

    /// Runs `f` with the key of (`env`, `function`, `caller`) in this thread's buffer.
    fn with_key<R>(
        env: &str,
        function: Option<&str>,
        caller: &AppCaller,
        f: impl FnOnce(&str) -> R,
    ) -> R {
        thread_local!(static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
        KEY.with_borrow_mut(|key| {
            write_key(key, env, function, caller);
            f(key)
        })
    }

    /// A cached outcome made under `tag` and still fresh, with the whole grant when the
    /// rules passed for it under the same tag.
    pub fn get(
        &self,
        tag: u64,
        env: &str,
        function: Option<&str>,
        caller: &AppCaller,
    ) -> Option<(Arc<AuthOutcome>, Option<Decision>)> {
        Self::with_key(env, function, caller, |key| {
            let entry = self.cache.get(key)?;
            let c = entry.value();
            (c.tag == tag && c.at.elapsed() < self.ttl)
                .then(|| (c.outcome.clone(), c.granted.clone()))
        })
    }

    /// Keeps an outcome made under `tag`.
    pub fn put(
        &self,
        tag: u64,
        env: &str,
        function: Option<&str>,
        caller: &AppCaller,
        outcome: &Arc<AuthOutcome>,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let cache = &self.cache;
        if cache.len() >= MAX_CACHED_DECISIONS {
            let ttl = self.ttl;
            cache.retain(|_, c| c.at.elapsed() < ttl);
            if cache.len() >= MAX_CACHED_DECISIONS {
                cache.clear();
            }
        }
        let mut key = String::new();
        write_key(&mut key, env, function, caller);
        cache.insert(
            key,
            Cached {
                tag,
                at: Instant::now(),
                outcome: outcome.clone(),
                granted: None,
            },
        );
    }

    /// Notes that the rules passed for `outcome`, cached under `tag`. Only on that very
    /// outcome: a concurrent call with the same key may have replaced it (a `cloudbase_auth`
    /// may decide by CLIENTIP or SOURCE, which the key leaves out), and its outcome was not
    /// checked against the rules.
    pub fn granted(
        &self,
        tag: u64,
        env: &str,
        function: Option<&str>,
        caller: &AppCaller,
        outcome: &Arc<AuthOutcome>,
        decision: &Decision,
    ) {
        Self::with_key(env, function, caller, |key| {
            if let Some(mut c) = self.cache.get_mut(key)
                && c.tag == tag
                && Arc::ptr_eq(&c.outcome, outcome)
            {
                c.granted = Some(Decision {
                    cached: true,
                    ..decision.clone()
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(openid: Option<&str>) -> AppCaller {
        AppCaller {
            appid: "wxB".into(),
            openid: openid.map(str::to_string),
            unionid: None,
            client_ip: None,
        }
    }

    fn granted_outcome() -> Arc<AuthOutcome> {
        Arc::new(AuthOutcome::Granted {
            custom: json!({"role": "member"}),
            raw: "{}".into(),
        })
    }

    #[test]
    fn the_rules_pass_is_kept_only_on_the_outcome_they_were_checked_for() {
        let cache = Decisions::new(Duration::from_secs(60));
        let who = caller(Some("o1"));
        // Call A: cloudbase_auth grants, and its outcome is cached.
        let a = granted_outcome();
        cache.put(7, "prod", Some("echo"), &who, &a);
        // Call B, same key, at once: cloudbase_auth (deciding by CLIENTIP, say) denies, and
        // its outcome replaces A's before A's rules pass is noted.
        let b = Arc::new(AuthOutcome::Denied {
            errcode: -1,
            errmsg: "not from here".into(),
        });
        cache.put(7, "prod", Some("echo"), &who, &b);
        let pass = decision(&who, true, "rules", "granted".into());
        cache.granted(7, "prod", Some("echo"), &who, &a, &pass);
        let (outcome, whole) = cache.get(7, "prod", Some("echo"), &who).expect("cached");
        assert!(matches!(*outcome, AuthOutcome::Denied { .. }));
        assert!(whole.is_none(), "B's denial must not carry A's grant");

        // On its own outcome the pass is kept, and read back as cached.
        let c = granted_outcome();
        cache.put(7, "prod", Some("echo"), &who, &c);
        cache.granted(7, "prod", Some("echo"), &who, &c, &pass);
        let (_, whole) = cache.get(7, "prod", Some("echo"), &who).expect("cached");
        assert!(whole.expect("the grant").cached);
        // Another tag (a share, rule or cloudbase_auth changed) finds nothing.
        assert!(cache.get(8, "prod", Some("echo"), &who).is_none());
    }

    #[test]
    fn keys_differ_for_an_absent_and_an_empty_part() {
        let cache = Decisions::new(Duration::from_secs(60));
        cache.put(1, "prod", Some("echo"), &caller(None), &granted_outcome());
        assert!(
            cache
                .get(1, "prod", Some("echo"), &caller(Some("")))
                .is_none()
        );
        assert!(cache.get(1, "prod", None, &caller(None)).is_none());
        assert!(cache.get(1, "prod", Some("echo"), &caller(None)).is_some());
        // Parts cannot run together: ("ab", "c") is not ("a", "bc").
        cache.put(1, "ab", Some("c"), &caller(None), &granted_outcome());
        assert!(cache.get(1, "a", Some("bc"), &caller(None)).is_none());
    }
}
