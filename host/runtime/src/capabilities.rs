//! The assembly line of guest capabilities: every capability the host ships, one line each.
//! A capability is a crate implementing `cloudfn_capability::Capability` (see that crate and
//! docs/architecture.md, "A new capability"); the runtime links each into the linker every
//! function shares and, when a call's guest first calls into a capability, makes each its state
//! for that call (`state::CallCapabilities`).

use crate::state::CallState;
use cloudfn_capability::Capability;
use std::sync::Arc;

/// A capability as the runtime holds it.
pub type Dyn = Arc<dyn Capability<CallState>>;

/// The capabilities a runtime links, shared with every call's store.
pub type List = Arc<[Dyn]>;

/// The capabilities the host ships.
pub fn standard() -> Vec<Dyn> {
    vec![
        Arc::new(cloudfn_calls::Invoke),
        Arc::new(cloudfn_log::Log),
        Arc::new(cloudfn_config::Config),
        Arc::new(cloudfn_openapi::Openapi),
    ]
}
