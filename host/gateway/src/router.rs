//! The public listener's router: each request goes to the first dialect that claims it; the
//! dialect authenticates it, the pipeline runs the call, the dialect renders the outcome.

use crate::container::ContainerConfig;
use crate::dialect::{Accepted, Context, Dialect};
use crate::http::{self, Body};
use crate::{client, cloudbase, douyin, taobao, wechat, wx_container};
use cloudfn_invoke::{Call, Caller, Host, Invocation};
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
        containers: ContainerConfig,
    ) -> Gateway {
        // The container dialects first: they claim by headers no other client sends, and pass
        // every path on to the function, a backend's `/admin` or `/auth/…` included.
        let dialects: Vec<Box<dyn Dialect>> = vec![
            Box::new(wx_container::CallContainer::new(
                policy,
                containers.env_by_host,
            )),
            Box::new(douyin::Douyin::new(policy)),
            Box::new(taobao::Taobao::new(policy, containers.taobao)),
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
            // The CLI's --server (or a browser) pointed at this port by mistake: say where the
            // admin endpoints are.
            let admin = ["/v1/", "/console", "/metrics", "/healthz", "/readyz"];
            let errmsg = if admin.iter().any(|p| path.starts_with(p)) {
                format!(
                    "no endpoint {path} on the public listener: the admin API, the console and \
                     /metrics are on the admin listener (serve --admin-listen, default \
                     127.0.0.1:8081; the CLI's --server names that one)"
                )
            } else {
                format!("no endpoint {path}")
            };
            return http::json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "errcode": 404, "errmsg": errmsg }),
            );
        };
        match dialect.accept(&self.cx, req, peer).await {
            Accepted::Answer(resp) => resp,
            Accepted::Call(caller, request) => {
                dialect.render(self.call(Call::new(request, Caller::App(caller))).await)
            }
            Accepted::Http(caller, request, http) => {
                let deadline = std::time::Instant::now() + request.default_timeout;
                let call = Call {
                    deadline: Some(deadline),
                    http: Some(http),
                    ..Call::new(request, Caller::App(caller))
                };
                dialect.render(self.call(call).await)
            }
        }
    }

    /// A call as `caller`, detached (its time limit is the dialect's choice: HTTP-API calls
    /// 5 s, protocol §3; a mini-program's 3 s).
    async fn call(&self, call: Call) -> Invocation {
        let host = self.cx.host.clone();
        self.cx.detached(async move { host.call(call).await }).await
    }
}
