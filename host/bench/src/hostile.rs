//! `cloudfn-bench hostile`: the hostile-tenant suite's attacks (tests/hostile.rs) against a
//! release server, each for a while, with a benign tenant under wrk beside it. Prints the
//! benign tenant's p50/p99 under each attack next to its solo figures from the same run (the
//! goal: p99 within 2×), what the attack got back, and the server's RSS.
//!
//! The benign tenant is app wxA calling echo in env `bench` from 127.0.0.1; the attacker is
//! app wxB, owner of env `noisy`, from 127.0.0.2 (another client, as it would be).

use bytes::Bytes;
use cloudfn_bench::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const NOISY: &str = "noisy";
const ATTACKER_IP: [u8; 4] = [127, 0, 0, 2];

/// What the attacker's answers were, by errcode (or outcome).
type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

/// One attack: `callers` loops each sending `event` to `noisy/function` as wxB.
struct Calls {
    function: &'static str,
    event: String,
    callers: usize,
}

enum Attack {
    Calls(Calls),
    /// Connections that send half of a 6 MB body and stall.
    StalledBodies(usize),
    /// Connections that send nothing.
    Idle(usize),
    /// Loops asking for new access tokens.
    TokenSpam(usize),
}

fn attacks() -> Vec<(&'static str, Attack)> {
    let calls = |function, event: &str, callers| {
        Attack::Calls(Calls {
            function,
            event: event.to_string(),
            callers,
        })
    };
    vec![
        ("infinite loops ×1", calls("fail_loop", "{}", 1)),
        ("infinite loops ×64", calls("fail_loop", "{}", 64)),
        ("memory bombs ×32 (256 MB)", calls("fail_memory", "{}", 32)),
        (
            "stack overflows ×16",
            calls("hostile", r#"{"op":"stack"}"#, 16),
        ),
        ("call_function recursion ×16", calls("recurse", "{}", 16)),
        (
            "7 MB results ×8",
            calls("hostile", r#"{"op":"output","mb":7}"#, 8),
        ),
        (
            "log floods ×16 (4 MB)",
            calls("chatty", r#"{"kb":4096}"#, 16),
        ),
        (
            "slow calls ×80 (2 s)",
            calls("sleepy", r#"{"ms":2000}"#, 80),
        ),
        ("stalled 6 MB bodies ×200", Attack::StalledBodies(200)),
        ("idle connections ×900", Attack::Idle(900)),
        ("token spam ×16", Attack::TokenSpam(16)),
    ]
}

/// Builds the world (and env `noisy` with the attack guests), then measures.
pub async fn run(
    cloudfn: &Path,
    duration: u32,
    connections: u32,
    runs: u32,
    only: &[String],
) -> anyhow::Result<()> {
    let world = World::build(cloudfn)?;
    world.cf(&["env", "create", NOISY, "--owner", SHAREE])?;
    for (name, path, extra) in [
        ("fail_loop", cloudfn_test_guests::FAIL_LOOP, &[][..]),
        (
            "fail_memory",
            cloudfn_test_guests::FAIL_MEMORY,
            &["--memory", "256"][..],
        ),
        ("hostile", cloudfn_test_guests::HOSTILE, &[][..]),
        ("recurse", cloudfn_test_guests::RECURSE, &[][..]),
        ("chatty", cloudfn_test_guests::CHATTY, &[][..]),
        (
            "sleepy",
            cloudfn_test_guests::SLEEPY,
            &["--timeout", "10"][..],
        ),
    ] {
        let mut args = vec!["deploy", "--env", NOISY, "--name", name, path];
        args.extend_from_slice(extra);
        world.cf(&args)?;
    }
    let served = world.serve(&[])?;
    let benign_token = served.token(OWNER, &world.apps[OWNER]).await?;
    let attacker_token = served.token(SHAREE, &world.apps[SHAREE]).await?;
    let benign = served.echo_load(&benign_token);
    benign.check().await?;
    let base_rss = served.server.rss()?;
    wrk(&served.server, &benign, connections, 2)?;
    let measure = |load: &Load| -> anyhow::Result<Figures> {
        let figures = (0..runs.max(1))
            .map(|_| wrk(&served.server, load, connections, duration))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(median(&figures))
    };
    let solo = measure(&benign)?;
    eprintln!(
        "solo: {:.0} req/s, p50 {}, p99 {}",
        solo.rps,
        ms(solo.p50),
        ms(solo.p99)
    );
    let public: SocketAddr = served.base.trim_start_matches("http://").parse()?;
    let mut rows = Vec::new();
    let chosen = attacks()
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())));
    for (name, attack) in chosen {
        let tally: Tally = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = start(
            &attack,
            &served,
            public,
            &attacker_token,
            &world,
            &tally,
            &stop,
        )?;
        // Let the attack build up before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let under = tokio::task::block_in_place(|| measure(&benign))?;
        let peak_rss = served.server.rss()?;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.abort();
        }
        // Calls in flight finish (up to their time limits) before the next attack.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let after_rss = served.server.rss()?;
        let outcome = tally
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "{name}: benign {:.0} req/s, p99 {} ({:.2}× solo); attacker got {outcome}",
            under.rps,
            ms(under.p99),
            under.p99.as_secs_f64() / solo.p99.as_secs_f64()
        );
        rows.push((name, under, outcome, peak_rss, after_rss));
    }
    println!(
        "\nbenign tenant: wrk -t2 -c{connections} on echo, median of {runs} × {duration} s per \
         row; solo {:.0} req/s, p50 {}, p99 {}; server RSS at start {} MB\n",
        solo.rps,
        ms(solo.p50),
        ms(solo.p99),
        base_rss >> 20
    );
    println!(
        "| attack | benign req/s | benign p50 | benign p99 | p99 ÷ solo | benign errors | \
         attacker got | RSS during / after |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for (name, f, outcome, peak, after) in &rows {
        println!(
            "| {name} | {:.0} | {} | {} | {:.2}× | {} | {outcome} | {} / {} MB |",
            f.rps,
            ms(f.p50),
            ms(f.p99),
            f.p99.as_secs_f64() / solo.p99.as_secs_f64(),
            f.errors,
            peak >> 20,
            after >> 20
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// A client whose connections come from the attacker's address.
fn attacker_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(IpAddr::from(ATTACKER_IP)));
    Client::builder(TokioExecutor::new()).build(connector)
}

async fn attacker_socket(public: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((ATTACKER_IP, 0)))?;
    socket.connect(public).await
}

fn count(tally: &Tally, key: String) {
    *tally.lock().unwrap().entry(key).or_default() += 1;
}

/// The answer's errcode, or what went wrong.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    body: &str,
) -> String {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid request");
    let resp = match client.request(req).await {
        Ok(r) => r,
        Err(e) => return format!("client error ({e})"),
    };
    let Ok(bytes) = resp.into_body().collect().await else {
        return "broken answer".into();
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes.to_bytes()).unwrap_or_default();
    match (v.get("errcode"), v.get("access_token")) {
        (_, Some(_)) => "token".into(),
        (Some(c), _) => c.to_string(),
        _ => "no errcode".into(),
    }
}

fn start(
    attack: &Attack,
    served: &Served,
    public: SocketAddr,
    token: &str,
    world: &World,
    tally: &Tally,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let running = |stop: &Arc<std::sync::atomic::AtomicBool>| {
        !stop.load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut tasks = Vec::new();
    match attack {
        Attack::Calls(c) => {
            let url = served.invoke_url(token, NOISY, c.function);
            for _ in 0..c.callers {
                let (client, url, event) = (attacker_client(), url.clone(), c.event.clone());
                let (tally, stop) = (tally.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while running(&stop) {
                        let code = send(&client, "POST", &url, &event).await;
                        count(&tally, code);
                    }
                }));
            }
        }
        Attack::StalledBodies(n) => {
            let path =
                format!("/tcb/invokecloudfunction?access_token={token}&env={NOISY}&name=hostile");
            for _ in 0..*n {
                let (path, tally) = (path.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(mut conn) = attacker_socket(public).await else {
                        count(&tally, "connect failed".into());
                        return;
                    };
                    let size = 6 * 1024 * 1024 - 1;
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {size}\r\n\r\n"
                    );
                    let half = vec![b' '; size / 2];
                    let sent = async {
                        conn.write_all(head.as_bytes()).await?;
                        conn.write_all(&half).await
                    };
                    count(
                        &tally,
                        match sent.await {
                            Ok(()) => "half sent, stalled".into(),
                            Err(_) => "cut off".into(),
                        },
                    );
                    // Hold the connection until the attack ends (the task is aborted).
                    std::future::pending::<()>().await;
                    drop(conn);
                }));
            }
        }
        Attack::Idle(n) => {
            for _ in 0..*n {
                let tally = tally.clone();
                tasks.push(tokio::spawn(async move {
                    let conn = attacker_socket(public).await;
                    count(
                        &tally,
                        match &conn {
                            Ok(_) => "open".into(),
                            Err(_) => "refused".into(),
                        },
                    );
                    std::future::pending::<()>().await;
                    drop(conn);
                }));
            }
        }
        Attack::TokenSpam(n) => {
            let creds = &world.apps[SHAREE];
            let url = format!(
                "{}/cgi-bin/token?grant_type=client_credential&appid={SHAREE}&secret={}",
                served.base, creds.secret
            );
            for _ in 0..*n {
                let (client, url) = (attacker_client(), url.clone());
                let (tally, stop) = (tally.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while running(&stop) {
                        count(&tally, send(&client, "GET", &url, "").await);
                    }
                }));
            }
        }
    }
    Ok(tasks)
}
