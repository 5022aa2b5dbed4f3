//! What a gateway dialect is: one platform's HTTP wire format, which turns a request into an
//! authenticated caller and a call (or answers it directly), and renders the call's outcome in
//! its own shape. [`Context`] is what every dialect may use.

use crate::http::Body;
use async_trait::async_trait;
use cloudfn_invoke::{AppCaller, Host, HttpCall, Invocation, InvokeRequest};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a dialect made of a request.
pub enum Accepted {
    /// A call to make for an authenticated caller.
    Call(AppCaller, InvokeRequest),
    /// A request for an HTTP function, for an authenticated caller; the call's time is
    /// `default_timeout` at most.
    Http(AppCaller, InvokeRequest, Arc<HttpCall>),
    /// The answer itself: an error in the dialect's shape, or an endpoint that makes no call.
    Answer(Response<Body>),
}

/// One platform's HTTP wire format.
#[async_trait]
pub trait Dialect: Send + Sync {
    /// Whether this dialect serves `req`.
    fn claims(&self, req: &Request<Incoming>) -> bool;
    /// Reads and authenticates a request.
    async fn accept(&self, cx: &Context, req: Request<Incoming>, peer: SocketAddr) -> Accepted;
    /// The response to a call that ran (or was refused).
    fn render(&self, inv: Invocation) -> Response<Body>;
}

/// What dialects share: the host, the body limit and budget, and the detached calls shutdown
/// waits for.
#[derive(Clone)]
pub struct Context {
    /// The host.
    pub host: Arc<Host>,
    /// Largest request body.
    pub max_body: usize,
    /// The body bytes all requests may hold at once.
    pub bodies: Arc<crate::http::BodyBudget>,
    /// The calls running on behalf of requests; shutdown waits for them.
    pub calls: tokio_util::task::TaskTracker,
}

impl Context {
    /// Runs work in its own task: if the client goes away, a function still finishes (no
    /// half-done side effects) and its activation record is still written. The server's
    /// shutdown waits for these tasks too.
    pub async fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> T {
        self.calls
            .spawn(work)
            .await
            .expect("the call task does not panic")
    }
}
