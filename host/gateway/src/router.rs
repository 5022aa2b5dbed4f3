//! The public listener's router: each request goes to the first dialect that claims it; the
//! dialect authenticates it, the pipeline runs the call, the dialect renders the outcome.

use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{self, Body};
use crate::{client, cloudbase, wechat};
use cloudfn_invoke::{AppCaller, Call, Caller, Host, Invocation, InvokeRequest};
use cloudfn_store::TokenPolicy;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// The public listener: its dialects over one host.
#[derive(Clone)]
pub struct Gateway {
    /// What the dialects share.
    pub cx: Context,
    dialects: Arc<Vec<Box<dyn Dialect>>>,
}

impl Gateway {
    /// The gateway with every dialect, taking bodies of up to `max_body` bytes and
    /// `body_budget` bytes of them at once. A new dialect is a module and a line here.
    pub fn new(
        host: Arc<Host>,
        policy: TokenPolicy,
        max_body: usize,
        body_budget: usize,
        client_limits: client::ClientLimits,
    ) -> Gateway {
        let dialects: Vec<Box<dyn Dialect>> = vec![
            Box::new(wechat::WeChat::new(policy)),
            Box::new(cloudbase::CloudBase::default()),
            Box::new(client::Client::new(client_limits)),
        ];
        Gateway {
            cx: Context {
                host,
                max_body,
                bodies: Arc::new(http::BodyBudget::for_bodies(body_budget, max_body)),
                calls: tokio_util::task::TaskTracker::new(),
            },
            dialects: Arc::new(dialects),
        }
    }

    /// Routes one request to its dialect, makes the call, renders the result.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Some(dialect) = self.dialects.iter().find(|d| d.claims(&req)) else {
            let path = req.uri().path();
            return http::json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "errcode": 404, "errmsg": format!("no endpoint {path}") }),
            );
        };
        match dialect.accept(&self.cx, req, peer).await {
            Accepted::Answer(resp) => resp,
            Accepted::Call(caller, request) => dialect.render(self.call(caller, request).await),
        }
    }

    /// A call as `caller`, detached (its time limit is the dialect's choice: HTTP-API calls
    /// 5 s, protocol §3; a mini-program's 3 s).
    async fn call(&self, caller: AppCaller, request: InvokeRequest) -> Invocation {
        let host = self.cx.host.clone();
        self.cx
            .detached(async move { host.call(Call::new(request, Caller::App(caller))).await })
            .await
    }
}
