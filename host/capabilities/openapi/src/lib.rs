//! cloudfn-openapi: the `openapi` capability (`wit/openapi.wit`): a function's cloud calls
//! (`cloud.openapi`), the platform's server APIs called as an app.
//!
//! What it owns: the interface's bindings, the rule of which app a call may act as (the env's
//! owner by default; in a call across apps also the calling app, FROM_APPID; no other: -501019),
//! and the call's state. The call itself (the upstream, the app's access token, retries) is the
//! host's [`CloudCalls`] service, which it provides in its `Services`; without one every cloud
//! call is refused with -501001.

use cloudfn_capability::{CallInfo, Capability, HasInstances, instance};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        interfaces: "import cloudfn:function/openapi@0.1.0;",
        imports: { default: async },
    });
}

use bindings::cloudfn::function::openapi;
pub use openapi::OpenapiError;

/// The interface's name in the `cloudfn:function` package.
pub const INTERFACE: &str = "openapi";

/// What the host does with a cloud call: POST `body` to the upstream API at `path` as app
/// `appid`, and answer the upstream's reply (or its refusal).
pub trait CloudCalls: Send + Sync {
    /// One cloud call, as `appid`.
    fn call(
        &self,
        appid: String,
        path: String,
        body: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, OpenapiError>> + Send>>;
}

/// The service the host provides in its `Services`.
pub type Service = Arc<dyn CloudCalls>;

/// The capability, as the runtime lists it.
pub struct Openapi;

impl<T: HasInstances> Capability<T> for Openapi {
    fn interface(&self) -> &'static str {
        INTERFACE
    }

    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        openapi::add_to_linker::<T, HasSelf<CallState>>(linker, |s: &mut T| {
            instance::<T, CallState>(s)
        })
    }

    fn instance(&self, call: &CallInfo<'_>) -> Option<Box<dyn Any + Send>> {
        // A file run's env has no owner: the app it runs as stands in.
        let owner = Some(call.owner)
            .filter(|o| !o.is_empty())
            .or(call.appid)
            .map(str::to_string);
        Some(Box::new(CallState {
            service: call.services.get::<Service>().cloned(),
            env: call.env.to_string(),
            owner,
            from: call.from_appid.map(str::to_string),
        }))
    }
}

/// One call's `openapi`: whom it may act as, and where its calls go.
pub struct CallState {
    service: Option<Service>,
    env: String,
    owner: Option<String>,
    from: Option<String>,
}

fn refuse(errcode: i64, errmsg: String) -> OpenapiError {
    OpenapiError { errcode, errmsg }
}

impl openapi::Host for CallState {
    fn call(
        &mut self,
        path: String,
        body: String,
        appid: Option<String>,
    ) -> impl Future<Output = Result<String, OpenapiError>> + Send {
        let acting = match appid {
            None => self
                .owner
                .clone()
                .ok_or("this call has no app to act as".to_string()),
            Some(a) if Some(&a) == self.owner.as_ref() || Some(&a) == self.from.as_ref() => Ok(a),
            Some(a) => Err(format!(
                "a function of env {} may make cloud calls as the env's owner or the calling \
                 app, not as {a}",
                self.env
            )),
        };
        let service = self.service.clone();
        async move {
            let appid = acting.map_err(|msg| refuse(-501019, msg))?;
            let Some(service) = service else {
                return Err(refuse(
                    -501001,
                    "cloud calls are not configured on this host (serve --upstream URL)".into(),
                ));
            };
            service.call(appid, path, body).await
        }
    }
}
