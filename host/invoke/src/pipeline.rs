//! The one invocation pipeline. Every entry point — the gateways, the admin API, the CLI (local
//! and `--server`), function-to-function calls, `cloudbase_auth` runs and file runs — reaches a
//! guest through [`Host::call`]:
//!
//! 1. admit: depth, event size and JSON ([`crate::limits`]);
//! 2. one snapshot of the state for the whole call ([`crate::state`]);
//! 3. the env, and whether the caller needs a grant ([`crate::grant::needs_grant`]); if so, the
//!    share, `cloudbase_auth` (run through this same pipeline) and the rules;
//! 4. the function's version, prepared; a slot of the env's concurrency cap; the time limit;
//! 5. the guest runs in a fresh instance ([`cloudfn_runtime`]), with a `call-function`
//!    capability that re-enters step 1 one level deeper;
//! 6. the observer records the call, refused or not ([`crate::observe`]).

use crate::call::{
    AppCaller, CLIENT_SOURCE, Call, Caller, Identity, Invocation, InvokeRequest, Origin,
};
use crate::error::InvokeError;
use crate::grant::{self, AuthOutcome};
use crate::host::Host;
use crate::observe::{Finished, Observer};
use crate::state::Snapshot;
use cloudfn_runtime::{CallError, CallFunction, GuestCall, GuestError, Prepared, WxContext};
use cloudfn_store::{
    AUTH_FUNCTION, Decision, EnvInfo, FunctionConfig, FunctionKind, validate_function_name,
};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A boxed call future (the pipeline re-enters itself for `cloudbase_auth` and nested calls).
type CallFuture<'a> = Pin<Box<dyn Future<Output = Invocation> + Send + 'a>>;

impl Host {
    /// Runs one call through the pipeline and returns its record.
    pub fn call(self: &Arc<Self>, mut call: Call) -> CallFuture<'_> {
        Box::pin(async move {
            let started = Instant::now();
            let started_at_ms = cloudfn_store::fsutil::now_ms();
            let request_id = self.ids.next();
            let finished = |call: Call, inv: &Invocation, ran| {
                self.observer.finished(Finished {
                    call,
                    invocation: inv,
                    started_at_ms,
                    ran,
                })
            };
            match self.prepare_call(&call).await {
                Ok((ready, decision)) => {
                    // The event goes to the guest as it is (up to 6 MB), not a copy of it:
                    // nothing after the guest reads it.
                    let event = std::mem::take(&mut call.request.event);
                    // Shared with the guest's capabilities, which need its caller and env
                    // only if the guest uses them: no copies made up front for each call.
                    let call = Arc::new(call);
                    let inv = self.run(ready, &call, event, request_id, started).await;
                    let inv = Invocation { decision, ..inv };
                    // The guest's capabilities went with its store: the call is this one's.
                    let call = Arc::try_unwrap(call).unwrap_or_else(|shared| (*shared).clone());
                    finished(call, &inv, true);
                    inv
                }
                Err((e, decision)) => {
                    let inv = Invocation::refused(request_id, e, decision);
                    finished(call, &inv, false);
                    inv
                }
            }
        })
    }

    /// Calls `request` as a trusted identity (see [`Caller::Trusted`]).
    pub async fn invoke(
        self: &Arc<Self>,
        request: InvokeRequest,
        identity: Identity,
    ) -> Invocation {
        self.call(Call::trusted(request, identity)).await
    }

    /// Runs a component file without deploying it: a function `request.name` of an ephemeral
    /// env `request.env` (which has no owner and no shares, so the identity is used as given).
    /// Its `call-function` calls go to the deployed functions of `request.env`.
    pub async fn run_file(
        self: &Arc<Self>,
        wasm: &[u8],
        config: FunctionConfig,
        dir: Option<&std::path::Path>,
        request: InvokeRequest,
        identity: Identity,
    ) -> Result<Invocation, cloudfn_store::StoreError> {
        config.validate()?;
        let runtime = self.runtime.clone();
        // Cached by content, so running the same file again loads it instead of compiling.
        let sha256 = cloudfn_store::secrets::sha256_hex(wasm);
        let component = match runtime.cached(&sha256) {
            Some(c) => c,
            None => {
                let c = runtime
                    .compile(wasm, config.kind)
                    .map_err(|e| cloudfn_store::StoreError::InvalidWasm(e.0))?;
                runtime.remember(&sha256, &c)?;
                c
            }
        };
        let prepared = runtime.prepare(&component, dir, config)?;
        let call = Call {
            origin: Origin::File,
            file: Some(Arc::new(prepared)),
            ..Call::trusted(request, identity)
        };
        Ok(self.call(call).await)
    }

    /// `POST /tcb/init`: the `cloud.init()` of a shared env. Runs the share check and
    /// `cloudbase_auth` for `caller`; returns `cloudbase_auth`'s `auth` string on a grant (None
    /// for the owner, who needs none).
    pub async fn init(
        self: &Arc<Self>,
        env: &str,
        caller: AppCaller,
        source: &str,
    ) -> Result<Option<String>, InvokeError> {
        let snap = self.state.snapshot().await?;
        let env = snap
            .env(env)
            .ok_or_else(|| InvokeError::EnvNotFound(env.to_string()))?
            .clone();
        let as_caller = Caller::App(caller);
        let Some(app) = grant::needs_grant(&env, &as_caller) else {
            return Ok(None);
        };
        let (started, started_at_ms) = (Instant::now(), cloudfn_store::fsutil::now_ms());
        let (granted, decision) = self
            .authorize(&snap, &env, None, app, source, 0, None)
            .await;
        tracing::info!(
            env = %env.name, caller = %app.appid, allowed = decision.allowed,
            step = %decision.step, "init: {}", decision.reason
        );
        let granted = granted.and_then(|outcome| match &*outcome {
            AuthOutcome::Granted { raw, .. } => Ok(raw.clone()),
            // authorize answers Ok only with a grant; a denial stays one all the same.
            AuthOutcome::Denied { errcode, errmsg } => Err(InvokeError::Denied {
                errcode: *errcode,
                errmsg: errmsg.clone(),
            }),
        });
        self.observer.init_decided(crate::observe::InitDecision {
            request_id: self.ids.next(),
            env: &env.name,
            source,
            started_at_ms,
            duration: started.elapsed(),
            decision: &decision,
            result: granted.as_ref().map(drop),
        });
        granted.map(Some)
    }

    /// Steps 1–4: everything that can refuse a call before its guest runs.
    async fn prepare_call(
        self: &Arc<Self>,
        call: &Call,
    ) -> Result<(Ready, Option<Decision>), (InvokeError, Option<Decision>)> {
        let req = &call.request;
        validate_function_name(&req.name)
            .map_err(|e| (InvokeError::InvalidParam(e.to_string()), None))?;
        self.limits.admit(call).map_err(|e| (e, None))?;
        let snap = self.state.snapshot().await.map_err(|e| (e, None))?;
        let env = match (snap.env(&req.env), &call.file) {
            (Some(env), _) => Cow::Borrowed(env),
            // A file run's env need not exist: it is ephemeral.
            (None, Some(_)) => Cow::Owned(EnvInfo {
                name: req.env.clone(),
                owner_appid: String::new(),
                created_at: 0,
                functions: 0,
            }),
            (None, None) => return Err((InvokeError::EnvNotFound(req.env.clone()), None)),
        };
        let (identity, decision) = self.admit_caller(&snap, &env, call).await?;
        let (version, prepared) = self
            .resolve(&snap, call)
            .await
            .map_err(|e| (e, decision.clone()))?;
        if let Err(e) = kind_fits(call, prepared.config.kind) {
            return Err((e, decision));
        }
        let slot = self
            .slots
            .take(
                &req.env,
                self.limits.env_concurrency,
                self.limits.slot_wait,
                call.deadline,
            )
            .await
            .map_err(|e| (e, decision.clone()))?;
        Ok((
            Ready {
                identity,
                owner: env.owner_appid.clone(),
                version,
                prepared,
                _slot: slot,
            },
            decision,
        ))
    }

    /// Step 3: who the caller is to the function, after the share, `cloudbase_auth` and the
    /// rules where the call needs a grant.
    async fn admit_caller(
        self: &Arc<Self>,
        snap: &Snapshot,
        env: &EnvInfo,
        call: &Call,
    ) -> Result<(Identity, Option<Decision>), (InvokeError, Option<Decision>)> {
        let req = &call.request;
        Ok(
            match (grant::needs_grant(env, &call.caller), &call.caller) {
                // A mini-program's own call is held to its env's rules, as the platform holds
                // client calls (protocol §6); its servers' calls are not.
                (None, Caller::App(app))
                    if call.origin == Origin::User && req.source == CLIENT_SOURCE =>
                {
                    let custom = serde_json::Value::Object(Default::default());
                    if let Err(e) = grant::check_rules(snap, env, &req.name, app, &custom) {
                        let decision = grant::decision(app, false, "rules", e.detail);
                        return Err((e.error, Some(decision)));
                    }
                    (app.as_owner(), None)
                }
                (None, Caller::App(app)) => (app.as_owner(), None),
                (None, Caller::Trusted(identity)) => (identity.clone(), None),
                (Some(app), _) => {
                    let (granted, decision) = self
                        .authorize(
                            snap,
                            env,
                            Some(&req.name),
                            app,
                            &req.source,
                            call.depth,
                            call.deadline,
                        )
                        .await;
                    if let Err(e) = granted {
                        return Err((e, Some(decision)));
                    }
                    (app.as_sharee(), Some(decision))
                }
            },
        )
    }

    /// Whether `call` would be let through to its function (env, share, `cloudbase_auth`,
    /// rules), without running it: for a gateway that answers from its cache.
    pub async fn check_access(self: &Arc<Self>, call: &Call) -> Result<(), InvokeError> {
        let snap = self.state.snapshot().await?;
        let env = snap
            .env(&call.request.env)
            .ok_or_else(|| InvokeError::EnvNotFound(call.request.env.clone()))?
            .clone();
        let req = &call.request;
        let f =
            snap.function(&req.env, &req.name)
                .ok_or_else(|| InvokeError::FunctionNotFound {
                    env: req.env.clone(),
                    name: req.name.clone(),
                    version: None,
                })?;
        kind_fits(call, f.info.config.kind)?;
        self.admit_caller(&snap, &env, call)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// The version a call runs, prepared.
    async fn resolve(
        &self,
        snap: &Snapshot,
        call: &Call,
    ) -> Result<(u32, Arc<Prepared>), InvokeError> {
        let req = &call.request;
        if let Some(file) = &call.file {
            return Ok((0, file.clone()));
        }
        match req.version {
            Some(v) => {
                let (info, prepared) = self.state.pinned(&req.env, &req.name, v).await?;
                Ok((info.version, prepared))
            }
            None => {
                let f = snap.function(&req.env, &req.name).ok_or_else(|| {
                    InvokeError::FunctionNotFound {
                        env: req.env.clone(),
                        name: req.name.clone(),
                        version: None,
                    }
                })?;
                Ok((f.info.version, self.state.prepared(f).await?))
            }
        }
    }

    /// Steps a–c of the grant for `app` calling `function` (None: `init`) in `env`. On
    /// success returns `cloudbase_auth`'s raw `auth` string.
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        self: &Arc<Self>,
        snap: &Snapshot,
        env: &EnvInfo,
        function: Option<&str>,
        app: &AppCaller,
        source: &str,
        depth: u32,
        deadline: Option<Instant>,
    ) -> (Result<Arc<AuthOutcome>, InvokeError>, Decision) {
        let deny = |step: &str, refused: grant::Refused| {
            let d = grant::decision(app, false, step, refused.detail);
            (Err(refused.error), d)
        };
        if let Err(e) = grant::check_share(snap, env, function, app) {
            return deny("share", e.into());
        }
        // A function that does not exist is not worth a cloudbase_auth run (nor a cached
        // decision per made-up name). Said only after the share check, so an app without a
        // share covering the name learns nothing of which functions exist.
        if let Some(name) = function
            && snap.function(&env.name, name).is_none()
        {
            let missing = InvokeError::FunctionNotFound {
                env: env.name.clone(),
                name: name.to_string(),
                version: None,
            };
            let reason = format!("no function {name} in env {}", env.name);
            return (
                Err(missing),
                grant::decision(app, false, "function", reason),
            );
        }
        let tag = snap.grant_tag(&env.name);
        // A grant is shared with the cache (an Arc): a cached one costs no copy of its claims.
        let outcome = match self.decisions.get(tag, &env.name, function, app) {
            // `granted` is stamped only on a grant that passed the rules; the guard keeps a
            // denial from ever reading as one.
            Some((outcome, Some(granted))) if matches!(*outcome, AuthOutcome::Granted { .. }) => {
                return (Ok(outcome), granted);
            }
            Some((outcome, _)) => outcome,
            None => {
                let request = InvokeRequest::new(
                    &env.name,
                    AUTH_FUNCTION,
                    grant::auth_event(env, function, app),
                    source,
                );
                let run = Call {
                    depth,
                    origin: Origin::Auth,
                    deadline,
                    ..Call::trusted(request, app.as_sharee())
                };
                match grant::auth_outcome(env, self.call(run).await.result) {
                    Ok(outcome) => {
                        let outcome = Arc::new(outcome);
                        self.decisions.put(tag, &env.name, function, app, &outcome);
                        outcome
                    }
                    Err(e) => return deny(AUTH_FUNCTION, e),
                }
            }
        };
        let custom = match &*outcome {
            AuthOutcome::Granted { custom, .. } => custom,
            AuthOutcome::Denied { errcode, errmsg } => {
                let denied = InvokeError::Denied {
                    errcode: *errcode,
                    errmsg: errmsg.clone(),
                };
                return deny(AUTH_FUNCTION, denied.into());
            }
        };
        if let Some(f) = function
            && let Err(e) = grant::check_rules(snap, env, f, app, custom)
        {
            return deny("rules", e);
        }
        let reason = format!("granted by {AUTH_FUNCTION} with claims {custom}");
        let decision = grant::decision(app, true, "rules", reason);
        self.decisions
            .granted(tag, &env.name, function, app, &outcome, &decision);
        (Ok(outcome), decision)
    }

    /// Step 5: the guest runs.
    async fn run(
        self: &Arc<Self>,
        ready: Ready,
        call: &Arc<Call>,
        event: String,
        request_id: String,
        started: Instant,
    ) -> Invocation {
        let req = &call.request;
        let (timeout, deadline) = self.limits.time(&ready.prepared.config, call, started);
        let identity = ready.identity;
        let context = WxContext {
            env: req.env.clone(),
            source: req.source.clone(),
            appid: identity.appid,
            openid: identity.openid,
            unionid: identity.unionid,
            from_appid: identity.from_appid,
            from_openid: identity.from_openid,
            from_unionid: identity.from_unionid,
            client_ip: identity.client_ip,
            request_id: request_id.clone(),
            function_name: req.name.clone(),
        };
        let http = call.http.as_ref().map(|h| {
            let mut request = Box::new(h.request.clone());
            (h.stamp)(&context, &mut request);
            request
        });
        let calls = self.nested_calls(call, deadline);
        let _running = Running::new(&self.observer);
        let fs_write = ready.prepared.config.fs_write && call.file.is_none();
        let read_only = fs_write && self.disk.over(&req.env, self.limits.env_disk_bytes);
        let outcome = self
            .runtime
            .run(
                &ready.prepared,
                GuestCall {
                    event,
                    context,
                    timeout,
                    deadline,
                    calls,
                    owner: ready.owner,
                    services: self.services.clone(),
                    max_result_bytes: self.limits.max_result_bytes,
                    read_only,
                    http,
                    outbound: self.outbound.clone(),
                },
            )
            .await;
        if fs_write {
            self.disk.remeasure(&req.env, self.state.env_dir(&req.env));
        }
        let name = &req.name;
        let result = outcome.result.map_err(|e| match e {
            GuestError::Timeout(limit) => InvokeError::Timeout {
                name: name.clone(),
                limit,
            },
            GuestError::MemoryLimit(limit_mb) => InvokeError::MemoryLimit {
                name: name.clone(),
                limit_mb,
            },
            GuestError::Failed(message) => InvokeError::Failed {
                name: name.clone(),
                message,
            },
            GuestError::Overloaded(why) => InvokeError::Overloaded(why),
            GuestError::System(e) => InvokeError::System(e),
        });
        Invocation {
            request_id,
            version: Some(ready.version),
            duration: started.elapsed(),
            peak_memory: outcome.peak_memory,
            logs: outcome.logs,
            result,
            decision: None,
            response: outcome.response,
        }
    }

    /// The `call-function` capability of a call: the callee runs in the same env, for the same
    /// caller (a sharee is checked again), with SOURCE extended by `,scf`, one level deeper,
    /// within the caller's remaining time.
    fn nested_calls(self: &Arc<Self>, parent: &Arc<Call>, deadline: Instant) -> CallFunction {
        let host = Arc::downgrade(self);
        let parent = parent.clone();
        Arc::new(move |name: String, event: String| {
            let host = host.clone();
            let req = &parent.request;
            let source = format!("{},scf", req.source);
            let call = Call {
                request: InvokeRequest::new(&req.env, &name, event, &source),
                caller: parent.caller.clone(),
                depth: parent.depth + 1,
                origin: Origin::Nested,
                deadline: Some(deadline),
                file: None,
                http: None,
            };
            Box::pin(async move {
                let Some(host) = host.upgrade() else {
                    return Err(CallError {
                        errcode: -1,
                        errmsg: "cloudfn is shutting down".into(),
                    });
                };
                let inv = host.call(call).await;
                inv.result.map_err(|e| CallError {
                    errcode: e.errcode(),
                    errmsg: format!("requestID {}, {e}", inv.request_id),
                })
            })
        })
    }
}

/// An HTTP request goes to an HTTP function, an event to a cloud function.
fn kind_fits(call: &Call, kind: FunctionKind) -> Result<(), InvokeError> {
    if (kind == FunctionKind::Http) == call.http.is_some() {
        return Ok(());
    }
    Err(InvokeError::WrongKind {
        env: call.request.env.clone(),
        name: call.request.name.clone(),
        kind,
    })
}

/// A call past every check, ready to run.
struct Ready {
    identity: Identity,
    /// The env's owner (empty for a file run's env).
    owner: String,
    version: u32,
    prepared: Arc<Prepared>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Tells the observer a guest is running, and that it stopped even if the call is dropped
/// half-way (its client went away).
struct Running<'a>(&'a dyn Observer);

impl<'a> Running<'a> {
    fn new(observer: &'a dyn Observer) -> Self {
        observer.started();
        Running(observer)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.ended();
    }
}
