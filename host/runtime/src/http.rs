//! HTTP functions: `wasi:http/proxy` components, one fresh instance per request. Owns the
//! request and response a gateway hands over ([`HttpRequest`], [`HttpResponse`]), the
//! outbound policy (no host unless the version's config names it: [`Outbound`]), and the run of
//! one request: the guest's `incoming-handler` and the collection of its response body within
//! the caller's limit, side by side in the call's turn.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::http::{HeaderMap, Method, StatusCode, Uri};
use std::sync::Arc;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// One request for an HTTP function, as the gateway passes it on (identity headers already
/// set by the gateway, the caller's own removed).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// Path and query, as the function sees them (`/api/count?x=1`).
    pub uri: Uri,
    /// The headers.
    pub headers: HeaderMap,
    /// The whole body (gateways bound it before the call).
    pub body: Bytes,
    /// The largest response body taken from the function; past it the call fails.
    pub max_response_bytes: usize,
}

/// What an HTTP function answered.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// Why an HTTP function produced no response, apart from the failures every call can have.
#[derive(Debug, thiserror::Error)]
pub enum HttpFailure {
    /// The response body is larger than the caller takes.
    #[error("its response body is over the {0}-byte limit")]
    TooLarge(usize),
    /// The guest returned without setting a response, or set an error.
    #[error("{0}")]
    NoResponse(String),
}

/// A linked HTTP function.
pub(crate) type HttpPre = ProxyPre<crate::state::CallState>;

/// The client functions' outbound requests go through: held to the host's egress policy.
pub type FunctionClient = crate::egress::EgressClient<WasiBody>;

/// The `wasi:http` hooks of one call: requests go out only to the hosts the version's config
/// names, and only to addresses the host's egress policy allows.
pub struct Outbound {
    /// `host` or `host:port`, as in the config.
    pub allowed: Arc<[String]>,
    /// The host's client for functions' requests (its connector checks every address).
    pub client: Arc<FunctionClient>,
    /// The call's logs, where a refusal is told: the guest itself sees only a network error.
    pub logs: Arc<std::sync::Mutex<crate::log::LogSink>>,
}

impl Outbound {
    /// Whether `authority` (`host[:port]` of a request) is one the function may reach: named
    /// exactly, or named without a port when the request uses the scheme's default port.
    fn permits(&self, authority: &str, default_port: u16) -> bool {
        let authority = authority.to_ascii_lowercase();
        let host = authority
            .strip_suffix(&format!(":{default_port}"))
            .unwrap_or(&authority);
        self.allowed.iter().any(|a| *a == authority || a == host)
    }
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                )>,
            > + Send,
    > {
        let default_port = match request.uri().scheme_str() {
            Some("http") => 80,
            _ => 443,
        };
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        if !self.permits(&authority, default_port) {
            tracing::debug!(%authority, "outbound request refused: host not allowed");
            let allowed = if self.allowed.is_empty() {
                "none".to_string()
            } else {
                self.allowed.join(", ")
            };
            self.logs.lock().unwrap_or_else(|e| e.into_inner()).structured(
                "warn",
                format!(
                    "cloudfn: outbound HTTP to {authority} refused: the function may reach only \
                     the hosts its deploy allows with --allow-host ({allowed})"
                ),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        _ = fut;
        let (client, logs) = (self.client.clone(), self.logs.clone());
        let first_byte = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(FIRST_BYTE_TIMEOUT);
        Box::new(async move {
            let sent = tokio::time::timeout(first_byte, client.request(request)).await;
            let response = match sent {
                Err(_) => return Err(wasmtime_wasi_http::Error::ConnectionReadTimeout),
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(send_error(&e, &authority, &logs)),
            };
            let body = response.map(|b| b.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
            // The client drives the connection in its own task: nothing more to wait for.
            let io = async { Ok(()) };
            Ok((body, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// How long a response may take to start when the guest sets no limit (the call's own time
/// limit ends it sooner).
const FIRST_BYTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A failed outbound request as `wasi:http` reports it; a refusal of the egress policy is
/// told in the call's logs too (the guest sees only `destination-ip-prohibited`).
fn send_error(
    e: &hyper_util::client::legacy::Error,
    authority: &str,
    logs: &Arc<std::sync::Mutex<crate::log::LogSink>>,
) -> wasmtime_wasi_http::Error {
    if let Some(refused) = crate::egress::refusal(e) {
        tracing::debug!(%authority, "outbound request refused: {refused}");
        logs.lock().unwrap_or_else(|e| e.into_inner()).structured(
            "warn",
            format!("cloudfn: outbound HTTP to {authority} refused: {refused}"),
        );
        return wasmtime_wasi_http::Error::DestinationIpProhibited;
    }
    // The guest gets a code; its logs get the cause (a certificate, a refused port, DNS).
    logs.lock().unwrap_or_else(|e| e.into_inner()).structured(
        "warn",
        format!(
            "cloudfn: outbound HTTP to {authority} failed: {}",
            crate::egress::explain(e)
        ),
    );
    if e.is_connect() {
        return wasmtime_wasi_http::Error::ConnectionRefused;
    }
    wasmtime_wasi_http::Error::HttpProtocolError
}

impl crate::state::CallState {
    /// Hands `request` to the guest as its incoming request, and the sender of its response.
    pub(crate) fn http_request(
        &mut self,
        request: &HttpRequest,
        respond: tokio::sync::oneshot::Sender<
            Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
        >,
    ) -> wasmtime::Result<(
        wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
    )> {
        let mut req = hyper::Request::builder()
            .method(request.method.clone())
            .uri(request.uri.clone())
            .body(Full::new(request.body.clone()))?;
        *req.headers_mut() = request.headers.clone();
        // The function sees a plain request to itself: no authority of the gateway's.
        if !req.headers().contains_key(hyper::header::HOST) {
            req.headers_mut()
                .insert(hyper::header::HOST, "localhost".parse()?);
        }
        let mut view = wasmtime_wasi_http::WasiHttpView::http(self);
        let incoming = view.new_incoming_request(Scheme::Http, req)?;
        let out = view.new_response_outparam(respond)?;
        Ok((incoming, out))
    }
}

/// Runs the guest's `incoming-handler` for `request` in `store`, and reads its response. The
/// guest writes its body while the host reads it: side by side, or a body larger than the
/// pipe's buffer would never finish. A trap is the call's error; once the body is complete the
/// response is the guest's answer, and what it does after is not waited for.
pub(crate) async fn handle(
    store: &mut wasmtime::Store<crate::state::CallState>,
    proxy: wasmtime_wasi_http::p2::bindings::Proxy,
    request: &HttpRequest,
) -> wasmtime::Result<Result<HttpResponse, HttpFailure>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (incoming, out) = store.data_mut().http_request(request, tx)?;
    let handle = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut *store, incoming, out);
    let max = request.max_response_bytes;
    let read = async move { collect(rx.await, max).await };
    let (mut handle, mut read) = (std::pin::pin!(handle), std::pin::pin!(read));
    let mut returned = false;
    loop {
        tokio::select! {
            handled = &mut handle, if !returned => match handled {
                // No response is coming.
                Err(trap) => return Err(trap),
                Ok(()) => returned = true,
            },
            read = &mut read => return Ok(read),
        }
    }
}

/// Reads the response the guest sent, its body within `max` bytes.
async fn collect(
    response: Result<
        Result<hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
        tokio::sync::oneshot::error::RecvError,
    >,
    max: usize,
) -> Result<HttpResponse, HttpFailure> {
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(code)) => {
            return Err(HttpFailure::NoResponse(format!(
                "it answered with an error: {code:?}"
            )));
        }
        Err(_) => {
            return Err(HttpFailure::NoResponse(
                "it returned without setting a response".into(),
            ));
        }
    };
    let (parts, body) = response.into_parts();
    let body = match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(HttpFailure::TooLarge(max));
        }
        Err(e) => {
            return Err(HttpFailure::NoResponse(format!(
                "its response body failed: {e}"
            )));
        }
    };
    Ok(HttpResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
