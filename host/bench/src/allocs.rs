//! `allocs`: heap allocations per call, counted (issue 30: "find the per-call allocations,
//! count them"). `cloudfn-bench`'s global allocator counts every allocation made on a thread
//! that has not opted out; this mode serves a bench world from a [`Host`] and gateway inside
//! this process, sends calls from a plain blocking socket on a thread that has opted out, and
//! reads the count before and after a batch. Everything the server does for the batch counts:
//! the gateway, the pipeline, the runtime, the guest threads, the activation writer (its queue
//! is flushed inside the window). The same calls through [`Host::invoke`] alone, and through
//! the runtime alone, split the figure by layer.
//!
//! Counts are deterministic to within a few per call (lazy one-time setups, hash-map growth),
//! unlike CPU time, so a change that removes an allocation shows here at once.

use anyhow::{Context, bail};
use cloudfn_bench::{ENV, EVENT, OWNER, SHAREE, World};
use cloudfn_gateway::server::{ServeConfig, Server};
use cloudfn_invoke::{Host, Identity, InvokeRequest};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The system allocator, counting: `cloudfn-bench`'s `#[global_allocator]`. (System rather
/// than the server's mimalloc: the count is the same, and `heaptrack` sees System's calls,
/// to find where they come from.)
pub struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the client thread, whose requests and parsing are not the server's cost.
    static UNCOUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if !UNCOUNTED.with(Cell::get) {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(size as u64, Relaxed);
    }
}

// SAFETY: every call goes straight to `System`; counting touches only atomics and a
// const-initialised thread-local without a destructor, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations and bytes so far.
fn snapshot() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

/// One row: allocations and bytes per call over `calls`.
struct Row {
    name: &'static str,
    allocs: f64,
    bytes: f64,
}

/// Builds the bench world with `cloudfn`, serves it in this process, and prints allocations
/// per call for each path.
pub async fn run(cloudfn: &Path, calls: u32) -> anyhow::Result<()> {
    let world = World::build(cloudfn)?;
    let host = Host::open(world.dir.path()).await?;
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        admin_listen: "127.0.0.1:0".parse()?,
        ..ServeConfig::default()
    };
    let server = Server::bind(host.clone(), config).await?;
    let addr = server.public_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let token = |appid: &str| {
        let secret = world.apps[appid].secret.clone();
        let url = format!(
            "http://{addr}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
        );
        async move {
            let (_, body) = cloudfn_bench::request("GET", &url, &[], "").await?;
            let v: serde_json::Value = serde_json::from_str(&body)?;
            v["access_token"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("no token: {body}"))
        }
    };
    let (owner, sharee) = (token(OWNER).await?, token(SHAREE).await?);

    let mut rows = Vec::new();
    for (name, tok) in [
        ("HTTP, same app", &owner),
        ("HTTP, cross-app, decision cached", &sharee),
    ] {
        let request = format!(
            "POST /tcb/invokecloudfunction?access_token={tok}&env={ENV}&name=echo HTTP/1.1\r\n\
             Host: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EVENT}",
            EVENT.len()
        );
        // Warm-up: lazy setups, caches, the decision cache, pools grown to their size.
        http_calls(addr, request.clone(), 500).await?;
        host.flush_records().await;
        let before = snapshot();
        http_calls(addr, request, calls).await?;
        host.flush_records().await;
        rows.push(row(name, before, calls));
    }

    let identity = Identity {
        appid: Some(OWNER.into()),
        openid: Some("o-bench".into()),
        ..Identity::default()
    };
    let invoke = |n: u32| {
        let (host, identity) = (host.clone(), identity.clone());
        async move {
            for _ in 0..n {
                let req = InvokeRequest::new(ENV, "echo", EVENT, "wx_client");
                if let Err(e) = host.invoke(req, identity.clone()).await.result {
                    bail!("invoke: {e}");
                }
            }
            anyhow::Ok(())
        }
    };
    invoke(500).await?;
    host.flush_records().await;
    let before = snapshot();
    invoke(calls).await?;
    host.flush_records().await;
    rows.push(row("Host::invoke (no HTTP), same app", before, calls));

    let _ = stop.send(());
    let _ = served.await;

    println!("\n{calls} calls of echo each, after 500 to warm up; this process's heap\n");
    println!("| path | allocations per call | bytes allocated per call |");
    println!("| --- | ---: | ---: |");
    for r in &rows {
        println!("| {} | {:.1} | {:.0} |", r.name, r.allocs, r.bytes);
    }
    Ok(())
}

fn row(name: &'static str, before: (u64, u64), calls: u32) -> Row {
    let after = snapshot();
    Row {
        name,
        allocs: (after.0 - before.0) as f64 / f64::from(calls),
        bytes: (after.1 - before.1) as f64 / f64::from(calls),
    }
}

/// `n` calls, one after another on one keep-alive connection, from a thread whose own
/// allocations are not counted; each answer must be errcode 0.
async fn http_calls(addr: SocketAddr, request: String, n: u32) -> anyhow::Result<()> {
    // A thread of its own, not the blocking pool's: the flag stays with this thread, and
    // the server's own blocking work (on the pool) is counted.
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        UNCOUNTED.with(|u| u.set(true));
        let _ = done.send(client(addr, &request, n));
    });
    result.await?
}

/// The client's loop (see [`http_calls`]).
fn client(addr: SocketAddr, request: &str, n: u32) -> anyhow::Result<()> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..n {
        conn.write_all(request.as_bytes())?;
        let body = read_response(&mut conn, &mut buf)?;
        if !body.starts_with(b"{\"errcode\":0,") {
            bail!("call failed: {}", String::from_utf8_lossy(body));
        }
    }
    Ok(())
}

/// Reads one HTTP/1.1 response with a Content-Length into `buf`; its body.
fn read_response<'b>(conn: &mut TcpStream, buf: &'b mut [u8]) -> anyhow::Result<&'b [u8]> {
    let mut len = 0;
    loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        len += n;
        let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end])?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .context("a response without Content-Length")?;
        let total = end + 4 + length;
        while len < total {
            let n = conn.read(&mut buf[len..total])?;
            if n == 0 {
                bail!("connection closed mid-body");
            }
            len += n;
        }
        return Ok(&buf[end + 4..total]);
    }
}
