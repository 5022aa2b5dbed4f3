//! `cloudfn serve`: binds the public listener (WeChat-compatible endpoints) and the admin
//! listener, serves both on hyper, and on shutdown stops accepting, lets in-flight calls
//! finish (up to a drain timeout), then returns.

use crate::MAX_BODY_BYTES;
use crate::admin_api::{ADMIN_TOKEN_SETTING, AdminApi};
use crate::router::Gateway;
use anyhow::Context;
use cloudfn_invoke::Host;
use cloudfn_store::TokenPolicy;
use cloudfn_store::secrets::{hash_secret, random_hex};
use dashmap::DashMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Most connections served at once per listener.
const MAX_CONNECTIONS: usize = 10_000;

/// Connections one client IP may hold on a listener by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// The most a connection's read buffer holds: the request head must fit (431 otherwise).
/// 16 KiB, Node.js's own limit for a request's headers (`--max-http-header-size`).
const MAX_READ_BUFFER: usize = 16 * 1024;

/// Body bytes held at once by default: room for ~40 bodies of the largest size.
pub const DEFAULT_BODY_BUDGET: usize = 256 * 1024 * 1024;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The public listener.
    pub listen: SocketAddr,
    /// The admin listener.
    pub admin_listen: SocketAddr,
    /// The admin bearer token; when `None`, the stored one, or a new one made and shown once.
    pub admin_token: Option<String>,
    /// Token lifetimes.
    pub token_policy: TokenPolicy,
    /// Largest request body on the public listener.
    pub max_body: usize,
    /// Body bytes the public listener holds at once across all connections (a quarter of
    /// it per app); past it a request is refused as busy instead of buffered.
    pub body_budget: usize,
    /// How long shutdown waits for in-flight calls.
    pub drain_timeout: Duration,
    /// Most connections one client IP may hold open on each listener; past it new ones from
    /// that IP are closed at once, so one client cannot take all of `MAX_CONNECTIONS` from
    /// everybody else.
    pub max_connections_per_ip: usize,
    /// Mini-program logins and calls allowed per client IP and per app.
    pub client_limits: crate::client::ClientLimits,
    /// Where container-gateway requests go when they do not say (hosts, Taobao apps).
    pub containers: crate::container::ContainerConfig,
    /// How long a web-console session lasts after its login.
    pub console_session_ttl: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 8081).into(),
            admin_token: None,
            token_policy: TokenPolicy::default(),
            max_body: MAX_BODY_BYTES,
            body_budget: DEFAULT_BODY_BUDGET,
            drain_timeout: Duration::from_secs(30),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            client_limits: Default::default(),
            containers: Default::default(),
            console_session_ttl: crate::console::DEFAULT_SESSION_TTL,
        }
    }
}

/// A server with its sockets bound, ready to run.
pub struct Server {
    public: TcpListener,
    admin: TcpListener,
    gateway: Gateway,
    admin_api: AdminApi,
    drain_timeout: Duration,
    per_ip: usize,
    /// The admin token, when this start generated it (to be shown once).
    pub generated_admin_token: Option<String>,
}

/// A new random admin token (192 bits), as `serve` generates one when none is set.
pub fn new_admin_token() -> String {
    format!("cfadm_{}", random_hex(24))
}

impl Server {
    /// Checks the configuration, settles the admin token, and binds both listeners.
    pub async fn bind(host: Arc<Host>, config: ServeConfig) -> anyhow::Result<Server> {
        let store = host.store();
        let mut generated = None;
        let token_sha256 = match &config.admin_token {
            Some(t) if t.trim().len() < 16 => {
                anyhow::bail!("the admin token must be at least 16 characters")
            }
            Some(t) => {
                let h = hash_secret(t.trim());
                store.set_setting(ADMIN_TOKEN_SETTING, &h).await?;
                h
            }
            None => match store.setting(ADMIN_TOKEN_SETTING).await? {
                Some(h) => h,
                None => {
                    let t = new_admin_token();
                    let h = hash_secret(&t);
                    store.set_setting(ADMIN_TOKEN_SETTING, &h).await?;
                    generated = Some(t);
                    h
                }
            },
        };
        let public = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the public listener on {}", config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("binding the admin listener on {}", config.admin_listen))?;
        // A function or webhook must never reach the host's own endpoints, whatever ranges
        // the operator allows.
        host.egress()
            .add_listeners([public.local_addr()?, admin.local_addr()?]);
        let gateway = Gateway::new(
            host.clone(),
            config.token_policy,
            config.max_body,
            config.body_budget,
            config.client_limits,
            config.containers,
        );
        let console = crate::console::Console::new(
            host.clone(),
            token_sha256.clone(),
            config.console_session_ttl,
        );
        Ok(Server {
            public,
            admin,
            gateway,
            admin_api: AdminApi::new(host, token_sha256, console),
            drain_timeout: config.drain_timeout,
            per_ip: config.max_connections_per_ip.max(1),
            generated_admin_token: generated,
        })
    }

    /// The public listener's address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let gateway = self.gateway.clone();
        let public = tokio::spawn(accept_loop(
            self.public,
            self.per_ip,
            stop_rx.clone(),
            graceful.clone(),
            move |req, peer| {
                let gateway = gateway.clone();
                async move { gateway.handle(req, peer).await }
            },
        ));
        let admin_api = self.admin_api.clone();
        let admin = tokio::spawn(accept_loop(
            self.admin,
            self.per_ip,
            stop_rx,
            graceful.clone(),
            move |req, _peer| {
                let admin_api = admin_api.clone();
                async move { admin_api.handle(req).await }
            },
        ));
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining in-flight calls");
        let _ = stop_tx.send(true);
        let _ = public.await;
        let _ = admin.await;
        let graceful = Arc::into_inner(graceful).expect("accept loops have ended");
        // Connections first, then calls whose client already left: both finish or time out.
        let calls = self.gateway.cx.calls.clone();
        calls.close();
        let drained = async {
            graceful.shutdown().await;
            calls.wait().await;
        };
        tokio::select! {
            _ = drained => tracing::info!("all connections closed and calls finished"),
            _ = tokio::time::sleep(self.drain_timeout) => {
                tracing::warn!("drain timeout of {:?} reached; closing remaining connections", self.drain_timeout)
            }
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    per_ip: usize,
    mut stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
    handler: F,
) where
    F: Fn(hyper::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = hyper::Response<crate::http::Body>> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let by_ip = Arc::new(DashMap::<IpAddr, usize>::new());
    loop {
        // At the cap, stop accepting until a connection ends: the kernel's backlog queues the
        // rest instead of the host running out of descriptors.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Some(ip_slot) = IpSlot::take(&by_ip, peer.ip(), per_ip) else {
            tracing::debug!("{peer} holds {per_ip} connections already; closing the new one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, std::convert::Infallible>(handler(req, peer).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            // A client that never finishes its headers must not hold a connection forever.
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            // Headers in at most 16 KiB (hyper's default buffer is ~400 KiB): two thousand slow
            // clients sending endless headers or bodies hold 32 MB of buffers, not 800 MB.
            // Bodies stream through it.
            .max_buf_size(MAX_READ_BUFFER)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer} ended with an error: {e}");
            }
            drop(slot);
            drop(ip_slot);
        });
    }
}

/// One connection of a client IP, counted while it is open.
struct IpSlot {
    by_ip: Arc<DashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl IpSlot {
    /// Counts a connection of `ip`, unless it holds `max` already.
    fn take(by_ip: &Arc<DashMap<IpAddr, usize>>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut held = by_ip.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(IpSlot {
            by_ip: by_ip.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        // The last connection of an IP removes its entry: the map holds live clients only.
        self.by_ip.remove_if_mut(&self.ip, |_, held| {
            *held -= 1;
            *held == 0
        });
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
