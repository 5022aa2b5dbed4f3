//! # cloudfn-sdk: write cloudfn cloud functions in Rust
//!
//! A cloud function is one Rust function marked `#[cloudfn_sdk::function]`. It
//! takes a typed event (anything `serde` can deserialize) and the caller's
//! [`WxContext`], and returns `Result<impl Serialize, Error>`. The SDK generates
//! the component bindings for the `cloud-function` world (`wit/` at the
//! repository root), parses and serializes JSON, and maps errors.
//!
//! ```
//! use cloudfn_sdk::{Error, WxContext};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     message: String,
//!     caller: Option<String>,
//! }
//!
//! #[cloudfn_sdk::function]
//! fn greet(event: Greet, ctx: &WxContext) -> Result<Greeting, Error> {
//!     if event.name.is_empty() {
//!         return Err(Error::with_code("EMPTY_NAME", "name must not be empty"));
//!     }
//!     cloudfn_sdk::info!("greeting {} from {}", event.name, ctx.source);
//!     let greeting = cloudfn_sdk::var("greeting").unwrap_or_else(|| "hello".into());
//!     Ok(Greeting {
//!         message: format!("{greeting}, {}", event.name),
//!         caller: ctx.openid.clone().or_else(|| ctx.from_openid.clone()),
//!     })
//! }
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type
//! `cdylib`) and deploy the `.wasm` with `cloudfn deploy`. Anything the function
//! prints to stdout or stderr becomes part of the call's logs.
#![deny(missing_docs)]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

pub use cloudfn_sdk_macros::function;

#[doc(hidden)]
pub mod __private {
    //! Glue used by the `#[function]` expansion. Not a stable API.

    #[allow(missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "cloudfn:function/cloud-function",
            pub_export_macro: true,
            default_bindings_module: "::cloudfn_sdk::__private::bindings",
            export_macro_name: "export",
        });
    }

    pub use bindings::cloudfn::function::types::WxContext as RawContext;
    pub use bindings::export;
    pub use bindings::exports::cloudfn::function::handler::{FunctionError, Guest};

    use crate::{Error, WxContext};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Runs a user function: JSON in, JSON out, errors mapped to `function-error`.
    pub fn run<E, R, F>(event: String, context: RawContext, f: F) -> Result<String, FunctionError>
    where
        E: DeserializeOwned,
        R: Serialize,
        F: FnOnce(E, &WxContext) -> Result<R, Error>,
    {
        let ctx = WxContext::from(context);
        let event: E = serde_json::from_str(&event).map_err(|e| FunctionError {
            code: Some("INVALID_EVENT".into()),
            message: format!("the event does not match what the function expects: {e}"),
        })?;
        let result = f(event, &ctx).map_err(|e| FunctionError {
            code: e.code,
            message: e.message,
        })?;
        serde_json::to_string(&result).map_err(|e| FunctionError {
            code: Some("INVALID_RESULT".into()),
            message: format!("the function's result cannot be serialized as JSON: {e}"),
        })
    }
}

use __private::bindings::cloudfn::function as wit;

pub mod openapi;

/// The caller's identity and call path (the platform's `WXContext`).
///
/// Serializes with the platform's upper-case keys (`APPID`, `FROM_OPENID`, …);
/// absent fields are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct WxContext {
    /// ENV: the environment this function runs in.
    pub env: String,
    /// SOURCE: the call path, comma-chained (`wx_http`, `wx_client,scf`, …).
    pub source: String,
    /// APPID: the caller's app when it is the env's own app.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub appid: Option<String>,
    /// OPENID: the end user inside APPID, when the caller names one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub openid: Option<String>,
    /// UNIONID: the user across the company's apps, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unionid: Option<String>,
    /// FROM_APPID: the calling app when the call crosses apps through a share.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_appid: Option<String>,
    /// FROM_OPENID: the calling app's user when the call crosses apps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_openid: Option<String>,
    /// FROM_UNIONID: the calling user's unionid when the call crosses apps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_unionid: Option<String>,
    /// CLIENTIP: the end client's address, where known.
    #[serde(rename = "CLIENTIP", skip_serializing_if = "Option::is_none", default)]
    pub client_ip: Option<String>,
    /// The id of this call.
    #[serde(rename = "REQUEST_ID")]
    pub request_id: String,
    /// The name of the function being run.
    #[serde(rename = "FUNCTION_NAME")]
    pub function_name: String,
}

impl From<wit::types::WxContext> for WxContext {
    fn from(c: wit::types::WxContext) -> Self {
        WxContext {
            env: c.env,
            source: c.source,
            appid: c.appid,
            openid: c.openid,
            unionid: c.unionid,
            from_appid: c.from_appid,
            from_openid: c.from_openid,
            from_unionid: c.from_unionid,
            client_ip: c.client_ip,
            request_id: c.request_id,
            function_name: c.function_name,
        }
    }
}

/// A failure the function returns on purpose. The caller gets errcode -504002
/// with this message (and code, when given).
///
/// Any `std::error::Error` converts into it, so `?` works on most results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: Option<String>,
    message: String,
}

impl Error {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Error {
            code: None,
            message: message.into(),
        }
    }

    /// An error with an application-defined code and a message.
    pub fn with_code(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            code: Some(code.into()),
            message: message.into(),
        }
    }

    /// The application-defined code, if any.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error::new(e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why [`call_function`] failed: the protocol errcode and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The protocol errcode, e.g. -501009 (no such function) or -504002 (it failed).
    pub errcode: i32,
    /// What went wrong.
    pub errmsg: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cloud.callFunction:fail errcode {} errmsg {}",
            self.errcode, self.errmsg
        )
    }
}

impl std::error::Error for CallError {}

/// Calls function `name` of the same environment with `data` as its event and
/// returns its result, deserialized as `T` (use `serde_json::Value` for any).
///
/// The callee sees this call's identity and SOURCE extended with `,scf`.
pub fn call_function<T: DeserializeOwned>(
    name: &str,
    data: &impl Serialize,
) -> Result<T, CallError> {
    let event = serde_json::to_string(data).map_err(|e| CallError {
        errcode: -501007,
        errmsg: format!("the event cannot be serialized as JSON: {e}"),
    })?;
    let result = wit::invoke::call_function(name, &event).map_err(|e| CallError {
        errcode: e.errcode,
        errmsg: e.errmsg,
    })?;
    serde_json::from_str(&result).map_err(|e| CallError {
        errcode: -504002,
        errmsg: format!("the result of {name} does not match the expected type: {e}"),
    })
}

/// Returns the function's configured variable `name` (`cloudfn deploy --var name=value`).
pub fn var(name: &str) -> Option<String> {
    wit::config::get_var(name)
}

/// Returns all configured variables, sorted by name.
pub fn vars() -> Vec<(String, String)> {
    wit::config::get_vars()
}

/// Severity of a log line; see the [`info!`] family of macros.
pub use wit::types::LogLevel as Level;

/// Writes one structured log line into the call's activation record.
pub fn log(level: Level, message: &str) {
    wit::log::log(level, message)
}

/// Logs at a level: `log!(Level::Info, "x = {}", x)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs a trace line with `format!` syntax.
#[macro_export]
macro_rules! trace { ($($arg:tt)+) => { $crate::log!($crate::Level::Trace, $($arg)+) }; }
/// Logs a debug line with `format!` syntax.
#[macro_export]
macro_rules! debug { ($($arg:tt)+) => { $crate::log!($crate::Level::Debug, $($arg)+) }; }
/// Logs an info line with `format!` syntax.
#[macro_export]
macro_rules! info { ($($arg:tt)+) => { $crate::log!($crate::Level::Info, $($arg)+) }; }
/// Logs a warning with `format!` syntax.
#[macro_export]
macro_rules! warn { ($($arg:tt)+) => { $crate::log!($crate::Level::Warn, $($arg)+) }; }
/// Logs an error line with `format!` syntax.
#[macro_export]
macro_rules! error { ($($arg:tt)+) => { $crate::log!($crate::Level::Error, $($arg)+) }; }
