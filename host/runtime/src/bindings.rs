//! The runtime's `bindgen!` site: the handler every function exports and the package's types.
//! Every interface a guest imports is a capability's, bound in its own crate (see
//! `capabilities.rs`), not here, so a new one needs no line in this file.

wasmtime::component::bindgen!({
    path: "../../wit",
    inline: "
        package cloudfn:host;

        world cloud-function {
            import cloudfn:function/types@0.1.0;

            export cloudfn:function/handler@0.1.0;
        }
    ",
    world: "cloudfn:host/cloud-function",
    exports: { default: async },
});

pub use cloudfn::function::types::WxContext;

/// The WIT package's interfaces, as their instance names appear in a component.
pub const PACKAGE: &str = "cloudfn:function";
/// Interfaces of the package the runtime itself provides (the types every interface uses);
/// each capability adds its own.
pub const OWN_INTERFACES: &[&str] = &["types"];
/// The interface a guest must export.
pub const HANDLER: &str = "handler";
