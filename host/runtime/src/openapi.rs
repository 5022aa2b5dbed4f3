//! The `openapi` interface: a function's cloud calls (the platform's server APIs, as an app).
//! Like `invoke`, the runtime only carries the call to the capability the pipeline handed it;
//! which apps a function may act as, the upstream, its tokens and retries are the pipeline's.

use crate::bindings::cloudfn::function::openapi::{self, OpenapiError};
use std::pin::Pin;
use std::sync::Arc;

/// The cloud-call capability: (path, body, acting app) → the upstream's reply.
pub type CloudCall = Arc<
    dyn Fn(
            String,
            String,
            Option<String>,
        ) -> Pin<Box<dyn Future<Output = Result<String, OpenapiError>> + Send>>
        + Send
        + Sync,
>;

/// A capability refusing every cloud call (runs with no upstream, benchmarks).
pub fn no_cloud_calls() -> CloudCall {
    Arc::new(|_, _, _| {
        Box::pin(async {
            Err(OpenapiError {
                errcode: -501001,
                errmsg: "cloud calls are not configured on this host (serve --upstream URL)".into(),
            })
        })
    })
}

/// The host side of the `openapi` interface: the call's capability.
pub struct OpenapiHost(pub CloudCall);

impl openapi::Host for OpenapiHost {
    fn call(
        &mut self,
        path: String,
        body: String,
        appid: Option<String>,
    ) -> impl Future<Output = Result<String, OpenapiError>> + Send {
        (self.0)(path, body, appid)
    }
}
