//! The one HTTP client the host calls out with (the upstream platform, webhooks): http:// and
//! https:// (rustls, the Mozilla roots of `webpki-roots`, so it needs no system store).

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// An outbound client.
pub type Outbound = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub use cloudfn_runtime::egress::explain;

/// A client for http:// and https:// URLs.
pub fn client() -> Outbound {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}
