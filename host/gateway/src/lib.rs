//! cloudfn-gateway: the HTTP side of cloudfn.
//!
//! - [`server`]: the listeners (public and admin), connection limits, graceful drain.
//! - [`router`]: the public listener's [`Gateway`], which hands each request to the
//!   [`Dialect`] that claims it ([`dialect`]): the dialect authenticates the request into a
//!   caller and a call, and renders the call's outcome in its own shape; the pipeline
//!   (`cloudfn-invoke`) does everything in between. [`wechat`] (`/cgi-bin/token`,
//!   `/cgi-bin/stable_token`, `/tcb/invokecloudfunction`, `/tcb/init`), [`cloudbase`] (the
//!   server SDK's `/admin`, TC3-signed) and [`client`] (mini-programs' `wx.cloud`: login
//!   with `wx.login()`'s code, then calls with a user session) are the dialects of cloud
//!   functions; [`wx_container`] (WeChat callContainer), [`douyin`] (Douyin Cloud) and
//!   [`taobao`] (Taobao cloud applications) put HTTP functions behind the container-style
//!   gateways, on what [`container`] shares. A new dialect is a module and a line in
//!   [`Gateway::new`].
//! - [`admin_api`]: the operator's REST API on the admin listener (and `/metrics`);
//!   [`console`]: the web console beside it, server-rendered, behind a login with the same token.
//! - [`http`]: bounded body reading and JSON responses; [`tc3`] (from `cloudfn-protocol`):
//!   TC3-HMAC-SHA256 signatures.

pub mod admin_api;
pub mod client;
pub mod cloudbase;
pub mod console;
pub mod container;
pub mod dialect;
pub mod douyin;
pub mod http;
pub mod router;
pub mod server;
pub mod taobao;
pub mod wechat;
pub mod wx_container;

pub use cloudfn_protocol::tc3;
pub use dialect::{Accepted, Context, Dialect};
pub use router::Gateway;

/// Largest request body (protocol §8: 6 MB sync events).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
