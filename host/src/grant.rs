//! The cross-app pipeline (protocol §1, §4, §5, §6), the same for `/tcb/invokecloudfunction`,
//! `/admin`, function-to-function calls and local `cloudfn invoke --from-appid`:
//!
//! a. a share of the env with the calling app exists and permits the function, else -501019;
//! b. the env's `cloudbase_auth` runs with FROM_* set and the §5 event; errCode ≠ 0 goes back
//!    to the caller unchanged, a reply that breaks the §5 table is a denial, never a grant;
//! c. the env's security rules are evaluated with `auth` = {appid, openid, unionid, loginType,
//!    custom}, else -501019;
//! d. the function runs with FROM_* set and the owner's APPID/OPENID absent.
//!
//! Step b's decision is cached per (env, app, openid, unionid) for a TTL; changing a share or
//! the rules, or redeploying `cloudbase_auth`, drops the env's cached decisions at once.

use crate::error::InvokeError;
use crate::registry::{EnvInfo, validate_function_name};
use crate::rules::Rules;
use crate::service::{Cloudfn, Identity, Invocation, InvokeRequest};
use crate::sharing::ShareInfo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The name of the function that decides grants.
pub const AUTH_FUNCTION: &str = "cloudbase_auth";

/// An authenticated calling app and its user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The calling app (from its token, its secretId, or the CLI's flags).
    pub appid: String,
    /// Its end user, when named.
    pub openid: Option<String>,
    /// Its end user's unionid, when known.
    pub unionid: Option<String>,
    /// The end client's address.
    pub client_ip: Option<String>,
}

impl Caller {
    /// The WXContext identity of this caller using another app's env: FROM_* set, the
    /// owner's APPID/OPENID absent (protocol §4).
    pub fn as_sharee(&self) -> Identity {
        Identity {
            from_appid: Some(self.appid.clone()),
            from_openid: self.openid.clone(),
            from_unionid: self.unionid.clone(),
            client_ip: self.client_ip.clone(),
            ..Identity::default()
        }
    }

    /// The WXContext identity of this caller in its own app's env.
    pub fn as_owner(self) -> Identity {
        Identity {
            appid: Some(self.appid),
            openid: self.openid,
            unionid: self.unionid,
            client_ip: self.client_ip,
            ..Identity::default()
        }
    }
}

impl Identity {
    /// The app an identity calls as, if it names one: the sharing app (FROM_*), else APPID.
    pub fn caller(&self) -> Option<Caller> {
        let (appid, openid, unionid) = match (&self.from_appid, &self.appid) {
            (Some(from), _) => (from, &self.from_openid, &self.from_unionid),
            (None, Some(app)) => (app, &self.openid, &self.unionid),
            (None, None) => return None,
        };
        Some(Caller {
            appid: appid.clone(),
            openid: openid.clone(),
            unionid: unionid.clone(),
            client_ip: self.client_ip.clone(),
        })
    }
}

/// A grant decision, kept in the activation record and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the call went on.
    pub allowed: bool,
    /// The step that decided: `owner`, `share`, `cloudbase_auth` or `rules`.
    pub step: String,
    /// Why, in words.
    pub reason: String,
    /// The calling app.
    pub caller_appid: String,
}

/// A `cloudbase_auth` outcome worth caching.
#[derive(Debug, Clone)]
enum AuthOutcome {
    /// errCode 0: the claims (`auth.custom`) and the raw `auth` string.
    Granted { custom: Value, raw: String },
    /// errCode ≠ 0.
    Denied { errcode: i32, errmsg: String },
}

/// Whose `cloudbase_auth` decision about what: (env, app, openid, unionid, function). The
/// function is part of the key because the §5 event names it: a `cloudbase_auth` may decide
/// per function.
type AuthKey = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Most `cloudbase_auth` decisions kept; past it, expired ones are dropped first, then all.
const MAX_CACHED_DECISIONS: usize = 100_000;

/// What the pipeline caches, per env.
#[derive(Default)]
pub struct SharingCache {
    shares: HashMap<(String, String), Option<Arc<ShareInfo>>>,
    rules: HashMap<String, Arc<Rules>>,
    auth: HashMap<AuthKey, (Instant, AuthOutcome)>,
    /// Bumped by every invalidation: a value read from the registry (or a `cloudbase_auth` run
    /// begun) before an invalidation must not be cached after it.
    epoch: u64,
}

impl SharingCache {
    /// Drops everything cached about `env`.
    pub fn forget_env(&mut self, env: &str) {
        self.epoch += 1;
        self.shares.retain(|(e, _), _| e != env);
        self.rules.remove(env);
        self.auth.retain(|(e, ..), _| e != env);
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.epoch += 1;
        self.shares.clear();
        self.rules.clear();
        self.auth.clear();
    }
}

/// Checks a `cloudbase_auth` reply against the §5 table.
fn parse_reply(json: &str) -> Result<AuthOutcome, String> {
    let reply: Value =
        serde_json::from_str(json).map_err(|e| format!("the reply is not JSON: {e}"))?;
    let Value::Object(reply) = reply else {
        return Err(format!("the reply must be a JSON object, got {reply}"));
    };
    let errcode = match reply.get("errCode") {
        None => return Err("errCode is missing".into()),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("errCode must be an integer, got {n}"))?,
        Some(other) => return Err(format!("errCode must be a number, got {other}")),
    };
    let errmsg = match reply.get("errMsg") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(format!("errMsg must be a string, got {other}")),
    };
    if errcode != 0 {
        return Ok(AuthOutcome::Denied { errcode, errmsg });
    }
    let raw = match reply.get("auth") {
        None => return Err("auth is missing".into()),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "auth must be a string holding a JSON object, got {other}"
            ));
        }
    };
    match serde_json::from_str::<Value>(&raw) {
        Ok(custom @ Value::Object(_)) => Ok(AuthOutcome::Granted { custom, raw }),
        Ok(other) => Err(format!("auth must hold a JSON object, got {other}")),
        Err(e) => Err(format!("auth is not JSON: {e}")),
    }
}

impl Cloudfn {
    fn cached_share(&self, env: &str, to: &str) -> Result<Option<Arc<ShareInfo>>, InvokeError> {
        let key = (env.to_string(), to.to_string());
        let epoch = {
            let cache = self.sharing_cache();
            if let Some(s) = cache.shares.get(&key) {
                return Ok(s.clone());
            }
            cache.epoch
        };
        let share = self.registry().share(env, to)?.map(Arc::new);
        let mut cache = self.sharing_cache();
        if cache.epoch == epoch {
            cache.shares.insert(key, share.clone());
        }
        Ok(share)
    }

    fn cached_rules(&self, env: &str) -> Result<Arc<Rules>, InvokeError> {
        let epoch = {
            let cache = self.sharing_cache();
            if let Some(r) = cache.rules.get(env) {
                return Ok(r.clone());
            }
            cache.epoch
        };
        let json = self.registry().rules(env)?;
        let rules = Arc::new(Rules::parse(&json).map_err(|e| {
            InvokeError::System(anyhow::anyhow!(
                "stored rules of env {env} are invalid: {e}"
            ))
        })?);
        let mut cache = self.sharing_cache();
        if cache.epoch == epoch {
            cache.rules.insert(env.to_string(), rules.clone());
        }
        Ok(rules)
    }

    /// Runs `cloudbase_auth` for a caller (or takes its cached decision).
    async fn auth_outcome(
        self: &Arc<Self>,
        env: &EnvInfo,
        function: Option<&str>,
        caller: &Caller,
        source: &str,
        depth: u32,
    ) -> Result<AuthOutcome, InvokeError> {
        let key = (
            env.name.clone(),
            caller.appid.clone(),
            caller.openid.clone(),
            caller.unionid.clone(),
            function.map(str::to_string),
        );
        let ttl = self.options().auth_cache_ttl;
        let epoch = {
            let cache = self.sharing_cache();
            if let Some((at, outcome)) = cache.auth.get(&key)
                && at.elapsed() < ttl
            {
                return Ok(outcome.clone());
            }
            cache.epoch
        };
        let event = json!({
            "fromAppid": caller.appid,
            "fromOpenid": caller.openid,
            "fromUnionid": caller.unionid,
            "resourceAppid": env.owner_appid,
            "resourceEnv": env.name,
            "function": function,
        });
        let mut req = InvokeRequest::new(&env.name, AUTH_FUNCTION, event.to_string(), source);
        req.identity = caller.as_sharee();
        let inv = self.invoke_raw(req, depth, None).await;
        let outcome = match inv.result {
            Ok(json) => parse_reply(&json).map_err(|why| {
                InvokeError::Unauthorized(format!(
                    "{AUTH_FUNCTION} of env {} gave an invalid reply ({why}); access denied",
                    env.name
                ))
            })?,
            // Not deployed, the env busy, the host failing: said as such, not as a denial.
            Err(
                e @ (InvokeError::FunctionNotFound { .. }
                | InvokeError::TooBusy { .. }
                | InvokeError::Overloaded(_)
                | InvokeError::DepthExceeded(_)
                | InvokeError::System(_)),
            ) => return Err(e),
            // A crash, a timeout or a result that is not even JSON is no reply: never a grant.
            Err(e) => {
                return Err(InvokeError::Unauthorized(format!(
                    "{AUTH_FUNCTION} of env {} gave no valid reply ({e}); access denied",
                    env.name
                )));
            }
        };
        let mut cache = self.sharing_cache();
        if cache.epoch == epoch {
            if cache.auth.len() >= MAX_CACHED_DECISIONS {
                cache.auth.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.auth.len() >= MAX_CACHED_DECISIONS {
                    cache.auth.clear();
                }
            }
            cache.auth.insert(key, (Instant::now(), outcome.clone()));
        }
        Ok(outcome)
    }

    /// Steps a–c for `caller` calling `function` (None: `init`) in `env`. On success returns
    /// `cloudbase_auth`'s raw `auth` string.
    pub(crate) async fn authorize(
        self: &Arc<Self>,
        env: &EnvInfo,
        function: Option<&str>,
        caller: &Caller,
        source: &str,
        depth: u32,
    ) -> (Result<String, InvokeError>, Decision) {
        let decide = |allowed: bool, step: &str, reason: String| Decision {
            allowed,
            step: step.to_string(),
            reason,
            caller_appid: caller.appid.clone(),
        };
        let deny = |step: &str, e: InvokeError| {
            let d = decide(false, step, e.to_string());
            (Err(e), d)
        };
        // a. the share.
        let share = match self.cached_share(&env.name, &caller.appid) {
            Ok(Some(share)) => share,
            Ok(None) => {
                return deny(
                    "share",
                    InvokeError::Unauthorized(format!(
                        "env {} is not shared with app {}",
                        env.name, caller.appid
                    )),
                );
            }
            Err(e) => return deny("share", e),
        };
        if let Some(f) = function
            && !share.permits_invoke(f)
        {
            return deny(
                "share",
                InvokeError::Unauthorized(format!(
                    "the share of env {} with app {} does not permit invoking {f}",
                    env.name, caller.appid
                )),
            );
        }
        // b. cloudbase_auth.
        let (custom, raw) = match self
            .auth_outcome(env, function, caller, source, depth)
            .await
        {
            Ok(AuthOutcome::Granted { custom, raw }) => (custom, raw),
            Ok(AuthOutcome::Denied { errcode, errmsg }) => {
                return deny(AUTH_FUNCTION, InvokeError::Denied { errcode, errmsg });
            }
            Err(e) => return deny(AUTH_FUNCTION, e),
        };
        // c. the security rules.
        if let Some(f) = function {
            let rules = match self.cached_rules(&env.name) {
                Ok(r) => r,
                Err(e) => return deny("rules", e),
            };
            let auth = json!({
                "appid": caller.appid,
                "openid": caller.openid,
                "unionid": caller.unionid,
                "loginType": if caller.openid.is_some() { "WECHAT" } else { "APP" },
                "custom": custom,
            });
            let verdict = rules.check(f, &auth);
            if !verdict.allowed {
                let why = match &verdict.error {
                    Some(e) => format!(" ({e})"),
                    None => String::new(),
                };
                return deny(
                    "rules",
                    InvokeError::Unauthorized(format!(
                        "the security rule `{}` of env {} denies app {}{why}",
                        verdict.rule, env.name, caller.appid
                    )),
                );
            }
        }
        let reason = format!("granted by {AUTH_FUNCTION} with claims {custom}");
        (Ok(raw), decide(true, "rules", reason))
    }

    /// Calls `req.env/req.name` as `caller`: directly when the caller owns the env, through
    /// the cross-app pipeline otherwise. `req.identity` is replaced.
    pub async fn invoke_as(self: &Arc<Self>, caller: Caller, req: InvokeRequest) -> Invocation {
        self.invoke_as_at_depth(caller, req, 0).await
    }

    pub(crate) async fn invoke_as_at_depth(
        self: &Arc<Self>,
        caller: Caller,
        mut req: InvokeRequest,
        depth: u32,
    ) -> Invocation {
        if let Err(e) = validate_function_name(&req.name) {
            return self.refused(&req, InvokeError::InvalidParam(e.to_string()), None);
        }
        let env = match self.env(&req.env) {
            Ok(env) => env,
            Err(e) => return self.refused(&req, e, None),
        };
        if env.owner_appid == caller.appid {
            req.identity = caller.as_owner();
            return self.invoke_raw(req, depth, None).await;
        }
        let (granted, decision) = self
            .authorize(&env, Some(&req.name), &caller, &req.source, depth)
            .await;
        tracing::info!(
            env = %env.name, function = %req.name, caller = %caller.appid,
            allowed = decision.allowed, step = %decision.step, "{}", decision.reason
        );
        // Granted, the call runs as the sharee; refused, the record still names who it was.
        req.identity = caller.as_sharee();
        match granted {
            Ok(_) => self.invoke_raw(req, depth, Some(decision)).await,
            Err(e) => self.refused(&req, e, Some(decision)),
        }
    }

    /// Calls with the identity `req` carries, applying the pipeline when it names another app
    /// than the owner (`from_appid`, or an `appid` that does not own the env): what the CLI and
    /// the admin API use, so local testing goes through the same checks as HTTP.
    pub async fn invoke_checked(self: &Arc<Self>, req: InvokeRequest) -> Invocation {
        match req.identity.caller() {
            Some(caller) => self.invoke_as(caller, req).await,
            None => self.invoke(req).await,
        }
    }

    /// `POST /tcb/init`: the `cloud.init()` of a shared env. Runs steps a (the share exists)
    /// and b for `caller`; returns `cloudbase_auth`'s `auth` string on a grant.
    pub async fn init(
        self: &Arc<Self>,
        env: &str,
        caller: Caller,
    ) -> Result<Option<String>, InvokeError> {
        let env = self.env(env)?;
        if env.owner_appid == caller.appid {
            return Ok(None);
        }
        let (granted, decision) = self.authorize(&env, None, &caller, "wx_http", 0).await;
        tracing::info!(
            env = %env.name, caller = %caller.appid, allowed = decision.allowed,
            step = %decision.step, "init: {}", decision.reason
        );
        granted.map(Some)
    }
}
