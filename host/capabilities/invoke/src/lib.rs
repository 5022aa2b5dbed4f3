//! cloudfn-calls: the `invoke` capability (`wit/invoke.wit`): a function calls another
//! function of its env. It only carries the call to the [`CallFunction`] the host's pipeline
//! made for the call; every policy (depth, size, identity, grant, time left) is the
//! pipeline's.
//!
//! The runtime holds the call's `CallFunction` and hands it to this capability through
//! [`HasCalls`], so a call makes no state of its own for it.

use cloudfn_capability::{Capability, HasInstances};
use std::pin::Pin;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        interfaces: "import cloudfn:function/invoke@0.1.0;",
        imports: { default: async },
    });
}

use bindings::cloudfn::function::invoke;
pub use bindings::cloudfn::function::types::CallError;

/// The interface's name in the `cloudfn:function` package.
pub const INTERFACE: &str = "invoke";

/// What a running function may do through the host: call `name` with an event, as the
/// pipeline decides.
pub type CallFunction = Arc<
    dyn Fn(String, String) -> Pin<Box<dyn Future<Output = Result<String, CallError>> + Send>>
        + Send
        + Sync,
>;

/// A store's data that holds the call's [`CallFunction`].
pub trait HasCalls {
    /// The call's nested-call function.
    fn calls(&mut self) -> &CallFunction;
}

/// The capability, as the runtime lists it.
pub struct Invoke;

impl<T: HasInstances + HasCalls> Capability<T> for Invoke {
    fn interface(&self) -> &'static str {
        INTERFACE
    }

    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        invoke::add_to_linker::<T, CallsData>(linker, |s: &mut T| Calls(s.calls()))
    }
}

struct CallsData;

impl HasData for CallsData {
    type Data<'a> = Calls<'a>;
}

/// The host side of the `invoke` interface: the call's function.
struct Calls<'a>(&'a CallFunction);

impl invoke::Host for Calls<'_> {
    fn call_function(
        &mut self,
        name: String,
        event: String,
    ) -> impl Future<Output = Result<String, CallError>> + Send {
        (self.0)(name, event)
    }
}
