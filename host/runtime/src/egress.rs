//! The egress policy: which network addresses outbound connections made for tenants (a
//! function's outbound HTTP, an app's webhook) may reach. Owns the policy ([`Egress`]: the
//! operator's allowed ranges and the host's own listeners), the check of one address
//! ([`Egress::check`]), and the connector every such client connects through
//! ([`Connector`]), which resolves a name itself and checks each address it resolves to before
//! connecting to that very address: a name that resolves to loopback, or changes what it
//! resolves to between a check and the connect, reaches nothing it should not.
//!
//! Refused unless the operator allows them (`serve --egress-allow CIDR`): loopback,
//! link-local (cloud metadata at 169.254.169.254 among them), private and shared ranges,
//! unspecified, multicast and reserved addresses, in IPv4, IPv6 and IPv4-mapped IPv6. The
//! host's own listeners are refused even then.

use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long resolving and connecting may take, when the caller sets no shorter limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where tenants' outbound connections may go.
#[derive(Debug, Default)]
pub struct Egress {
    /// Ranges the operator allows although they are otherwise refused.
    allow: Vec<IpNet>,
    /// The host's own listeners, refused whatever is allowed (set once they are bound), and
    /// this machine's interface addresses then (a wildcard listener listens on each).
    listeners: RwLock<(Vec<SocketAddr>, Vec<IpAddr>)>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{addr} is {why}, which tenants' connections may not reach{hint}",
    hint = if *.listener { "" } else { " (an operator allows a range with serve --egress-allow CIDR)" }
)]
pub struct Refused {
    /// The address refused.
    pub addr: SocketAddr,
    /// What kind of address it is.
    pub why: &'static str,
    /// Whether it is one of the host's own listeners (refused even when allowed).
    pub listener: bool,
}

impl Egress {
    /// The policy allowing `allow` beside the public internet.
    pub fn new(allow: Vec<IpNet>) -> Egress {
        Egress {
            allow,
            listeners: RwLock::default(),
        }
    }

    /// Parses `--egress-allow` values: CIDR ranges (`127.0.0.1/32`, `10.0.0.0/8`) or single
    /// addresses.
    pub fn parse_allow(values: &[String]) -> Result<Vec<IpNet>, String> {
        values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{v:?} is not a CIDR range (e.g. 10.1.0.0/16) or an IP"))
            })
            .collect()
    }

    /// The ranges allowed beyond the default.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Adds the host's own listening addresses, refused from now on.
    pub fn add_listeners(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let mut listeners = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        listeners.0.extend(addrs);
        listeners.1 = interface_addresses();
    }

    /// Whether a connection to `addr` is allowed.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refused> {
        let ip = canonical(addr.ip());
        let listening = {
            let (listeners, own) = &*self.listeners.read().unwrap_or_else(|e| e.into_inner());
            listeners.iter().any(|l| {
                l.port() == addr.port()
                    && (canonical(l.ip()) == ip
                        || ip.is_loopback()
                        || ip.is_unspecified()
                        || (l.ip().is_unspecified() && own.contains(&ip)))
            })
        };
        if listening {
            return Err(Refused {
                addr,
                why: "this host's own listener",
                listener: true,
            });
        }
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match special(ip) {
            Some(why) => Err(Refused {
                addr,
                why,
                listener: false,
            }),
            None => Ok(()),
        }
    }
}

/// This machine's interface addresses (`getifaddrs`), IPv4-mapped ones as IPv4.
fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we only read, then free once.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                        out.push(IpAddr::V4(ip));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(canonical(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr))));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, if it is one.
fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if ip.is_private() {
        "a private address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if a == 0 {
        "an unspecified address"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "a multicast or reserved address"
    } else if ip.is_documentation() || (a == 198 && (b & 0xfe) == 18) {
        "a documentation or benchmarking address"
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "an IETF protocol address"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if first & 0xfe00 == 0xfc00 {
        "a private (unique local) address"
    } else if first & 0xffc0 == 0xfec0 {
        "a site-local address"
    } else if ip.segments()[..3] == [0x64, 0xff9b, 1] {
        "a local-use NAT64 address (where it leads is the network's to say)"
    } else if first & 0xff00 == 0xff00 {
        "a multicast address"
    } else if let Some(v4) = nat64(ip) {
        return special_v4(v4);
    } else {
        return None;
    })
}

/// The IPv4 address inside a well-known NAT64 address (`64:ff9b::/96`), which reaches it.
fn nat64(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// The connector of tenants' clients: resolves the URI's host, and connects to the first
/// address it resolves to that [`Egress::check`] allows; fails with the refusal when none is.
#[derive(Clone)]
pub struct Connector {
    egress: Arc<Egress>,
}

impl Connector {
    /// A connector held to `egress`.
    pub fn new(egress: Arc<Egress>) -> Connector {
        Connector { egress }
    }
}

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

/// The refusal inside a connection error, if the egress policy is why it failed.
pub fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<Refused>())
        {
            return Some(r);
        }
        cause = e.source();
    }
    None
}

/// The host a URI connects to (an IPv6 literal without its brackets) and its port (the
/// scheme's default when it names none).
pub fn host_and_port(uri: &Uri) -> Option<(&str, u16)> {
    let host = uri.host().filter(|h| !h.is_empty())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let default = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    Some((host, uri.port_u16().unwrap_or(default)))
}

async fn connect(egress: Arc<Egress>, uri: Uri) -> io::Result<TokioIo<TcpStream>> {
    let (host, port) = host_and_port(&uri).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the URL has no host".to_string(),
        )
    })?;
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        if let Err(refused) = egress.check(addr) {
            last = Some(io::Error::new(io::ErrorKind::PermissionDenied, refused));
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(TokioIo::new(stream));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let egress = self.egress.clone();
        Box::pin(async move {
            tokio::time::timeout(CONNECT_TIMEOUT, connect(egress, uri))
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
                    ))
                })
        })
    }
}

/// An HTTP client for http:// and https:// URLs (rustls, the Mozilla roots of
/// `webpki-roots`) whose every connection goes through [`Connector`].
pub type EgressClient<B> = Client<hyper_rustls::HttpsConnector<Connector>, B>;

/// A client held to `egress`, for request bodies of type `B`.
pub fn client<B>(egress: Arc<Egress>) -> EgressClient<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(Connector::new(egress));
    Client::builder(TokioExecutor::new()).build(https)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let egress = Egress::default();
        for refused in [
            "127.0.0.1:80",
            "127.3.4.5:8081",
            "169.254.169.254:80",
            "10.1.2.3:443",
            "172.16.0.1:443",
            "192.168.1.1:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[::]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::7f00:1]:80",
            "[64:ff9b:1::a9fe:a9fe]:80",
            "192.0.0.8:80",
            "[fec0::1]:80",
        ] {
            assert!(egress.check(addr(refused)).is_err(), "{refused}");
        }
        for allowed in ["93.184.216.34:443", "[2606:2800:220:1::]:443", "1.1.1.1:53"] {
            assert_eq!(egress.check(addr(allowed)), Ok(()), "{allowed}");
        }
        let allow = Egress::parse_allow(&["127.0.0.1/32, 10.0.0.0/8".into()]).unwrap();
        let egress = Egress::new(allow);
        assert_eq!(egress.check(addr("127.0.0.1:9000")), Ok(()));
        assert_eq!(egress.check(addr("10.9.9.9:80")), Ok(()));
        assert!(egress.check(addr("127.0.0.2:9000")).is_err());
        assert!(Egress::parse_allow(&["localhost".into()]).is_err());
    }

    #[test]
    fn the_hosts_own_listeners_are_refused_even_when_allowed() {
        let egress = Egress::new(Egress::parse_allow(&["127.0.0.0/8".into()]).unwrap());
        egress.add_listeners([addr("127.0.0.1:8081"), addr("0.0.0.0:8080")]);
        for refused in [
            "127.0.0.1:8081",
            "127.0.0.2:8081",
            "127.0.0.1:8080",
            "[::1]:8080",
        ] {
            let e = egress.check(addr(refused)).unwrap_err();
            assert!(e.listener, "{refused}");
            assert!(e.to_string().contains("own listener"), "{e}");
        }
        assert_eq!(egress.check(addr("127.0.0.1:9000")), Ok(()));
        // Another machine's port 8080 is not this host's listener.
        assert_eq!(egress.check(addr("93.184.216.34:8080")), Ok(()));
    }
}
