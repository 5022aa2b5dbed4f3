//! The pipeline's vocabulary: what a call asks for ([`InvokeRequest`]), who makes it
//! ([`Caller`]), where it comes from ([`Origin`]), the whole [`Call`] handed to
//! `Host::call` (the pipeline), and what comes back ([`Invocation`]).

use crate::error::InvokeError;
use cloudfn_runtime::{HttpRequest, HttpResponse, Prepared, WxContext};
use cloudfn_store::{DEFAULT_TIMEOUT, Decision, LogLine};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The caller as the function sees it (protocol §4): its WXContext identity fields. Empty
/// fields are absent from the function's WXContext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Identity {
    /// The caller's app, when it is the env's own app.
    pub appid: Option<String>,
    /// The end user inside `appid`.
    pub openid: Option<String>,
    /// The end user's unionid.
    pub unionid: Option<String>,
    /// The calling app, when the call crosses apps through a share.
    pub from_appid: Option<String>,
    /// The calling app's user.
    pub from_openid: Option<String>,
    /// The calling user's unionid.
    pub from_unionid: Option<String>,
    /// The end client's address.
    pub client_ip: Option<String>,
}

impl Identity {
    /// Refuses a caller that cannot happen: a user of the calling app (FROM_OPENID,
    /// FROM_UNIONID) with no calling app. Run as named, it would reach the function with no
    /// FROM_APPID and skip the share checks, which only an app can be put through.
    pub fn check(&self) -> Result<(), String> {
        if self.from_appid.is_none() {
            for (field, value) in [
                ("from_openid", &self.from_openid),
                ("from_unionid", &self.from_unionid),
            ] {
                if value.is_some() {
                    return Err(format!(
                        "identity.{field} names a user of the calling app: give \
                         identity.from_appid too (a user is always some app's)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An authenticated calling app and its user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCaller {
    /// The calling app (from its token, its secretId, or the CLI's flags).
    pub appid: String,
    /// Its end user, when named.
    pub openid: Option<String>,
    /// Its end user's unionid, when known.
    pub unionid: Option<String>,
    /// The end client's address.
    pub client_ip: Option<String>,
}

impl AppCaller {
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
    pub fn as_owner(&self) -> Identity {
        Identity {
            appid: Some(self.appid.clone()),
            openid: self.openid.clone(),
            unionid: self.unionid.clone(),
            client_ip: self.client_ip.clone(),
            ..Identity::default()
        }
    }
}

/// Who makes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An app and its user. The pipeline decides whether the app owns the env or must be
    /// granted access through a share (`grant::needs_grant`, the one place that decides).
    App(AppCaller),
    /// A WXContext set verbatim by whoever controls this host (a test, a file run): no grant
    /// is checked and the function sees exactly these fields.
    Trusted(Identity),
}

impl Caller {
    /// The caller an operator names with WXContext fields (`cloudfn invoke --appid/--from-appid`,
    /// the admin API): the app they name (FROM_APPID first) goes through the same checks as an
    /// HTTP caller of that app; naming no app is an anonymous call as the env itself.
    pub fn named(identity: Identity) -> Caller {
        let (appid, openid, unionid) = match (&identity.from_appid, &identity.appid) {
            (Some(from), _) => (from, &identity.from_openid, &identity.from_unionid),
            (None, Some(app)) => (app, &identity.openid, &identity.unionid),
            (None, None) => return Caller::Trusted(identity),
        };
        Caller::App(AppCaller {
            appid: appid.clone(),
            openid: openid.clone(),
            unionid: unionid.clone(),
            client_ip: identity.client_ip.clone(),
        })
    }

    /// The app the caller acts for, if any, for records.
    pub fn appid(&self) -> Option<&str> {
        match self {
            Caller::App(c) => Some(&c.appid),
            Caller::Trusted(i) => i.from_appid.as_deref().or(i.appid.as_deref()),
        }
    }
}

/// SOURCE of a mini-program's own call (`wx.cloud.callFunction`): the one the env's security
/// rules apply to even when the app owns the env (protocol §6).
pub const CLIENT_SOURCE: &str = "wx_client";

/// Where a call comes from; the observer tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A caller outside the host: a gateway, the admin API, the CLI, a test.
    User,
    /// The `cloudbase_auth` run that decides a grant.
    Auth,
    /// A function calling another through `call-function`.
    Nested,
    /// A component file run without deploying it.
    File,
}

impl Origin {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::Auth => "auth",
            Origin::Nested => "nested",
            Origin::File => "file",
        }
    }
}

/// What a call asks for.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The environment.
    pub env: String,
    /// The function.
    pub name: String,
    /// The event, JSON text.
    pub event: String,
    /// SOURCE: how the call arrived (`wx_http`, `wx_client`, `wx_devtools`, …).
    pub source: String,
    /// A specific version instead of the active one.
    pub version: Option<u32>,
    /// The time limit when the function sets none (3 s; HTTP-API calls 5 s, protocol §3).
    pub default_timeout: Duration,
}

impl InvokeRequest {
    /// A call of `env/name` with `event` from SOURCE `source`.
    pub fn new(env: &str, name: &str, event: impl Into<String>, source: &str) -> Self {
        InvokeRequest {
            env: env.to_string(),
            name: name.to_string(),
            event: event.into(),
            source: source.to_string(),
            version: None,
            default_timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One call through the pipeline.
#[derive(Clone)]
pub struct Call {
    /// What it asks for.
    pub request: InvokeRequest,
    /// Who makes it.
    pub caller: Caller,
    /// How deep in a chain of function-to-function calls (0 for a caller's own call).
    pub depth: u32,
    /// Where it comes from.
    pub origin: Origin,
    /// When the calling function's time is up (a nested call gets no more than that).
    pub deadline: Option<Instant>,
    /// For a file run: the component to run as `request.name` in an ephemeral env.
    pub file: Option<Arc<Prepared>>,
    /// For a call of an HTTP function: the request (`request.event` is unused).
    pub http: Option<Arc<HttpCall>>,
}

/// Sets a gateway's identity headers (or query parameters) on an HTTP function's request, once
/// the pipeline has decided who the caller is to the function (the env's own user, or a
/// sharee's: protocol §4).
pub type Stamp = Arc<dyn Fn(&WxContext, &mut HttpRequest) + Send + Sync>;

/// A request for an HTTP function, and how its gateway tells the function who calls.
pub struct HttpCall {
    /// The request as the client sent it, less what the gateway strips.
    pub request: HttpRequest,
    /// Adds the caller's identity in the gateway's own headers.
    pub stamp: Stamp,
}

impl Call {
    /// A user call of `request` by `caller`.
    pub fn new(request: InvokeRequest, caller: Caller) -> Call {
        Call {
            request,
            caller,
            depth: 0,
            origin: Origin::User,
            deadline: None,
            file: None,
            http: None,
        }
    }

    /// A user call with a WXContext set verbatim (see [`Caller::Trusted`]).
    pub fn trusted(request: InvokeRequest, identity: Identity) -> Call {
        Call::new(request, Caller::Trusted(identity))
    }

    /// A user call by the app an operator names (see [`Caller::named`]).
    pub fn named(request: InvokeRequest, identity: Identity) -> Call {
        Call::new(request, Caller::named(identity))
    }
}

/// What a call did: its result and its record.
#[derive(Debug)]
pub struct Invocation {
    /// The call's id.
    pub request_id: String,
    /// The version that ran, when one was found.
    pub version: Option<u32>,
    /// Wall-clock time of the call.
    pub duration: Duration,
    /// The most linear memory the guest used, in bytes.
    pub peak_memory: usize,
    /// stdout, stderr and log lines, in order.
    pub logs: Vec<LogLine>,
    /// The function's JSON result, or why there is none.
    pub result: Result<String, InvokeError>,
    /// The grant decision, for a call across apps.
    pub decision: Option<Decision>,
    /// An HTTP function's response (`result` is then `Ok` and empty).
    pub response: Option<Box<HttpResponse>>,
}

impl Invocation {
    /// A call that failed before any guest code ran.
    pub fn refused(request_id: String, error: InvokeError, decision: Option<Decision>) -> Self {
        Invocation {
            request_id,
            version: None,
            duration: Duration::ZERO,
            peak_memory: 0,
            logs: Vec::new(),
            result: Err(error),
            decision,
            response: None,
        }
    }
}

/// Request ids: a per-process prefix (time and pid) and a sequence number.
pub struct RequestIds {
    prefix: String,
    seq: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        RequestIds {
            prefix: format!(
                "{:x}{:04x}",
                nanos & 0xffff_ffff_ffff,
                std::process::id() & 0xffff
            ),
            seq: AtomicU64::new(0),
        }
    }
}

impl RequestIds {
    /// A fresh id.
    pub fn next(&self) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq:08x}", self.prefix)
    }
}
