//! The runtime's `bindgen!` site: the handler every function exports, the types, and the
//! interfaces the runtime implements itself (`invoke`, `log`, `config`). A capability's
//! interface is bound in its own crate (see `capabilities.rs`), not here, so a new one needs no
//! line in this file.

wasmtime::component::bindgen!({
    path: "../../wit",
    inline: "
        package cloudfn:host;

        world cloud-function {
            import cloudfn:function/invoke@0.1.0;
            import cloudfn:function/log@0.1.0;
            import cloudfn:function/config@0.1.0;

            export cloudfn:function/handler@0.1.0;
        }
    ",
    world: "cloudfn:host/cloud-function",
    imports: {
        "cloudfn:function/invoke.call-function": async,
    },
    exports: { default: async },
});

pub use cloudfn::function::types::{CallError, LogLevel, WxContext};

/// The WIT package's interfaces, as their instance names appear in a component.
pub const PACKAGE: &str = "cloudfn:function";
/// Interfaces of the package the runtime itself provides; each capability adds its own.
pub const OWN_INTERFACES: &[&str] = &["invoke", "log", "config", "types"];
/// The interface a guest must export.
pub const HANDLER: &str = "handler";
