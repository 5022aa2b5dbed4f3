//! The `invoke` interface: a function calls another function of its env. The runtime only
//! carries the call to the capability the pipeline handed it; every policy (depth, size,
//! identity, grant, time left) is the pipeline's.

use crate::bindings::CallError;
use crate::bindings::cloudfn::function::invoke;
use std::pin::Pin;
use std::sync::Arc;

/// What a running function may do through the host: the nested-call capability.
pub type CallFunction = Arc<
    dyn Fn(String, String) -> Pin<Box<dyn Future<Output = Result<String, CallError>> + Send>>
        + Send
        + Sync,
>;

/// The host side of the `invoke` interface: the call's capability.
pub struct InvokeHost(pub CallFunction);

impl invoke::Host for InvokeHost {
    fn call_function(
        &mut self,
        name: String,
        event: String,
    ) -> impl Future<Output = Result<String, CallError>> + Send {
        (self.0)(name, event)
    }
}
