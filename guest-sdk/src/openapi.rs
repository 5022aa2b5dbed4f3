//! Cloud calls (`cloud.openapi`): the platform's server APIs, called as an app. The host adds
//! the app's access token; the function never sees a secret or a token.
//!
//! ```no_run
//! use cloudfn_sdk::openapi::{self, subscribe_message};
//! use serde_json::json;
//!
//! # fn f() -> Result<(), openapi::OpenApiError> {
//! // As the env's owner:
//! subscribe_message::send(&subscribe_message::Message {
//!     touser: "o-user".into(),
//!     template_id: "TEMPLATE".into(),
//!     data: json!({"thing1": {"value": "Your order shipped"}}),
//!     ..Default::default()
//! })?;
//! // Any API, as the calling app of a call across apps (its FROM_APPID):
//! let reply: serde_json::Value =
//!     openapi::call_as("wxB", "wxa/getwxacodeunlimit", &json!({"scene": "a=1"}))?;
//! # Ok(()) }
//! ```

use crate::wit;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a cloud call failed: the upstream's errcode and errmsg (e.g. 40003 invalid touser,
/// 43101 the user refused), or the host's (-501019 not allowed to act as that app, -501001 no
/// upstream credentials or cloud calls not configured, -1 the upstream unreachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenApiError {
    /// The errcode.
    pub errcode: i64,
    /// The errmsg.
    pub errmsg: String,
}

impl fmt::Display for OpenApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "openapi:fail errcode {} errmsg {}",
            self.errcode, self.errmsg
        )
    }
}

impl std::error::Error for OpenApiError {}

/// POSTs `body` to the upstream API at `path` (e.g. `cgi-bin/message/subscribe/send`) as the
/// env's owner; the reply, deserialized as `T`.
pub fn call<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> Result<T, OpenApiError> {
    request(path, body, None)
}

/// [`call`] as app `appid`: in a call across apps, the calling app (FROM_APPID) is the only
/// app other than the env's owner a function may act as.
pub fn call_as<T: DeserializeOwned>(
    appid: &str,
    path: &str,
    body: &impl Serialize,
) -> Result<T, OpenApiError> {
    request(path, body, Some(appid))
}

fn request<T: DeserializeOwned>(
    path: &str,
    body: &impl Serialize,
    appid: Option<&str>,
) -> Result<T, OpenApiError> {
    let body = serde_json::to_string(body).map_err(|e| OpenApiError {
        errcode: -501007,
        errmsg: format!("the request body cannot be serialized as JSON: {e}"),
    })?;
    let reply = wit::openapi::call(path, &body, appid).map_err(|e| OpenApiError {
        errcode: e.errcode,
        errmsg: e.errmsg,
    })?;
    serde_json::from_str(&reply).map_err(|e| OpenApiError {
        errcode: -1,
        errmsg: format!("the reply of {path} does not match the expected type: {e}"),
    })
}

/// `subscribeMessage.send`: a subscription message to a user who agreed to receive it.
pub mod subscribe_message {
    use super::{OpenApiError, request};
    use serde::Serialize;

    /// The message (protocol §12; the platform's snake_case field names).
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct Message {
        /// The receiving user's openid.
        pub touser: String,
        /// The template.
        pub template_id: String,
        /// The page the message opens.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub page: Option<String>,
        /// The template's fields: `{"thing1": {"value": "…"}}`.
        pub data: serde_json::Value,
        /// `developer`, `trial` or `formal`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub miniprogram_state: Option<String>,
        /// `zh_CN`, `en_US`, `zh_HK` or `zh_TW`.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub lang: Option<String>,
    }

    const PATH: &str = "cgi-bin/message/subscribe/send";

    /// Sends `message` as the env's owner.
    pub fn send(message: &Message) -> Result<(), OpenApiError> {
        request::<serde_json::Value>(PATH, message, None).map(drop)
    }

    /// Sends `message` as app `appid` (the calling app of a call across apps).
    pub fn send_as(appid: &str, message: &Message) -> Result<(), OpenApiError> {
        request::<serde_json::Value>(PATH, message, Some(appid)).map(drop)
    }
}
