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

/// An error with its causes (`client error (Connect): invalid peer certificate: …`): the
/// client's own message alone does not say what went wrong.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// A client for http:// and https:// URLs.
pub fn client() -> Outbound {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}
