//! The one `bindgen!` site of the host: Rust types and traits for `wit/cloudfn.wit`.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "cloudfn:function/cloud-function",
    imports: {
        "cloudfn:function/invoke.call-function": async,
        "cloudfn:function/openapi.call": async,
    },
    exports: { default: async },
});

pub use cloudfn::function::openapi::OpenapiError;
pub use cloudfn::function::types::{CallError, LogLevel, WxContext};

/// The WIT package's interfaces, as their instance names appear in a component.
pub const PACKAGE: &str = "cloudfn:function";
/// Interfaces a guest may import from the `cloudfn:function` package.
pub const IMPORTABLE: &[&str] = &["invoke", "log", "config", "openapi", "types"];
/// The interface a guest must export.
pub const HANDLER: &str = "handler";
