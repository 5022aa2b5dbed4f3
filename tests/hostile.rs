//! The hostile-tenant suite (issue 9): each attack runs while a benign tenant (app wxB, env
//! `quiet`, echo) keeps calling, and the tests assert outcomes: the attack's errcodes, the
//! benign tenant answered (while the attack still holds), the host's budgets back to empty.
//! No timings are asserted; `cloudfn-bench hostile` runs the same attacks for figures.
//!
//! The attacker is app wxA, owner of env `noisy`. These tests run on a runtime of their own
//! (a small memory budget, and no other test's calls in its CPU scheduler).

use crate::common;

use common::guests as paths;
use common::http::*;
use common::{World, poll_within, records};

use cloudfn_gateway::server::ServeConfig;
use cloudfn_invoke::{Limits, Options};
use cloudfn_runtime::{EngineConfig, Runtime};
use cloudfn_store::FunctionConfig;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Disk each env directory may use in the suite.
const DISK_QUOTA: u64 = 1 << 20;

/// Linear memory all instances of the hostile suite may hold (half of it per env).
const MEMORY_BUDGET: usize = 512 << 20;

fn new_runtime() -> Arc<Runtime> {
    let engine = EngineConfig {
        pool_instances: Some(1000),
        memory_budget: MEMORY_BUDGET,
        ..EngineConfig::default()
    };
    let cache = Some(crate::common::artifact_cache());
    Arc::new(Runtime::with_config(cache, &engine).expect("building a hostile-suite runtime"))
}

/// The runtime the suite's tests share.
fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME.get_or_init(new_runtime).clone()
}

/// Env `noisy` (wxA) with the attack guests, env `quiet` (wxB) with echo.
async fn arena(config: ServeConfig) -> TestServer {
    arena_on(runtime(), config).await
}

async fn arena_on(runtime: Arc<Runtime>, config: ServeConfig) -> TestServer {
    let ms = |ms| FunctionConfig::with(|c| c.timeout_ms = Some(ms));
    World::new()
        .runtime(runtime)
        .options(Options {
            limits: Limits {
                env_concurrency: 64,
                env_disk_bytes: DISK_QUOTA,
                ..Limits::default()
            },
            ..Options::default()
        })
        .env("noisy", "wxA")
        .env("quiet", "wxB")
        .deploy_with("noisy", "fail_loop", paths::FAIL_LOOP, ms(3000))
        .deploy_with(
            "noisy",
            "fail_memory",
            paths::FAIL_MEMORY,
            FunctionConfig::with(|c| c.memory_mb = 200),
        )
        .deploy_with("noisy", "sleepy", paths::SLEEPY, ms(10_000))
        .deploy_with(
            "noisy",
            "hostile",
            paths::HOSTILE,
            FunctionConfig::with(|c| c.fs_write = true),
        )
        .deploy("noisy", "chatty", paths::CHATTY)
        .deploy("noisy", "recurse", paths::RECURSE)
        .deploy("quiet", "echo", paths::ECHO)
        .serve(config)
        .await
}

/// Calls `noisy/name` `n` times at once as wxA; the errcodes, as the calls end.
fn attack(
    s: &TestServer,
    token: &str,
    name: &str,
    event: &str,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Value>> {
    (0..n)
        .map(|_| {
            let url = s.url(&format!(
                "/tcb/invokecloudfunction?access_token={token}&env=noisy&name={name}"
            ));
            let event = event.to_string();
            tokio::spawn(async move { request("POST", &url, &[], event).await.1 })
        })
        .collect()
}

/// The benign tenant: `n` echo calls one after another; each must succeed.
async fn benign(s: &TestServer, token: &str, n: usize) {
    for i in 0..n {
        let v = s
            .invoke(token, "quiet", "echo", &format!("{{\"i\":{i}}}"))
            .await;
        assert_eq!(errcode(&v), 0, "benign call {i}: {v}");
    }
}

async fn outcomes(calls: Vec<tokio::task::JoinHandle<Value>>) -> Vec<Value> {
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

/// 64 looping calls of one env: the other env's calls are all answered while every loop is
/// still running (before the fair scheduler, another env's echo fell to 14 req/s, so these
/// 50 calls took longer than the loops' 3 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loops_leave_other_envs_their_share() {
    let s = arena(ServeConfig::default()).await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let loops = attack(&s, &ta, "fail_loop", "{}", 64);
    s.calls_under_way(&loops).await;
    benign(&s, &tb, 50).await;
    let still_looping = loops.iter().filter(|l| !l.is_finished()).count();
    assert_eq!(
        still_looping, 64,
        "the benign calls finished while the attack held"
    );
    for v in outcomes(loops).await {
        assert_eq!(errcode(&v), -501002, "{v}");
    }
}

/// Memory bombs in one env take at most half the host's budget: the rest of them are
/// refused as "host full" (-501004), the other env runs, and every byte comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_stay_within_their_envs_part_of_the_budget() {
    // A runtime of its own, so that its budget is this test's alone.
    let runtime = new_runtime();
    let s = arena_on(runtime.clone(), ServeConfig::default()).await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let bombs = attack(&s, &ta, "fail_memory", "{}", 8);
    benign(&s, &tb, 20).await;
    let codes: Vec<i64> = outcomes(bombs).await.iter().map(errcode).collect();
    assert!(
        codes.iter().all(|c| [-504002, -501004].contains(c)),
        "{codes:?}"
    );
    // 8 × 200 MB cannot fit in the env's 256 MB: some were refused by the budget.
    assert!(codes.contains(&-501004), "{codes:?}");
    assert_eq!(runtime.memory.used(), 0, "instances gave their memory back");
    benign(&s, &tb, 5).await;
}

/// A guest's own failures are contained: stack overflow, unbounded recursion through
/// call_function, a result over the cap, a log flood. Each gets its errcode; the other env
/// is answered meanwhile; messages do not disclose the guest's source locations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_recursion_output_and_log_floods_are_contained() {
    let s = arena(ServeConfig::default()).await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let mut attacks = attack(&s, &ta, "hostile", r#"{"op":"stack"}"#, 4);
    attacks.extend(attack(&s, &ta, "hostile", r#"{"op":"output","mb":7}"#, 4));
    attacks.extend(attack(&s, &ta, "recurse", "{}", 4));
    attacks.extend(attack(&s, &ta, "chatty", r#"{"kb":8192}"#, 4));
    benign(&s, &tb, 20).await;
    let out = outcomes(attacks).await;
    for v in &out[0..4] {
        assert_eq!(errcode(v), -504002, "stack: {v}");
        // Rust keeps its stack in linear memory: overflowing it is an out-of-bounds trap.
        assert!(v["errmsg"].as_str().unwrap().contains("wasm trap"), "{v}");
    }
    for v in &out[4..8] {
        assert_eq!(errcode(v), -504002, "output: {v}");
        assert!(v["errmsg"].as_str().unwrap().contains("over the"), "{v}");
    }
    for v in &out[8..12] {
        assert_eq!(errcode(v), 0, "recurse: {v}");
        let inner: Value = serde_json::from_str(v["resp_data"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner["errcode"], -504002,
            "the depth limit stopped it: {inner}"
        );
    }
    for v in &out[12..16] {
        assert_eq!(errcode(v), 0, "chatty: {v}");
    }
    s.host.flush_records().await;
    for r in records(&s.host, "noisy", Some("chatty")).await {
        let bytes: usize = r.logs.iter().map(|l| l.message.len()).sum();
        assert!(
            bytes <= cloudfn_runtime::log::MAX_LOG_BYTES,
            "{bytes} log bytes kept"
        );
    }
    let failed = s.invoke(&ta, "noisy", "hostile", r#"{"op":"nope"}"#).await;
    assert_eq!(errcode(&failed), -504002, "{failed}");
}

/// A flood of slow calls fills only its own env's slots: past 64 the env refuses (-501004),
/// and the other env is answered while they all sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_call_floods_fill_only_their_envs_slots() {
    let s = arena(ServeConfig::default()).await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let sleepers = attack(&s, &ta, "sleepy", r#"{"ms":3000}"#, 64);
    // Every sleeper holds one of the env's 64 slots before another call is made.
    s.calls_under_way(&sleepers).await;
    let extra = s.invoke(&ta, "noisy", "sleepy", r#"{"ms":1}"#).await;
    assert_eq!(errcode(&extra), -501004, "{extra}");
    benign(&s, &tb, 50).await;
    assert_eq!(sleepers.iter().filter(|l| !l.is_finished()).count(), 64);
    for v in outcomes(sleepers).await {
        assert_eq!(errcode(&v), 0, "{v}");
    }
}

/// Connections that send part of a large body and stall hold at most the app's share of the
/// body budget: past it the app's next body is refused at once (-501004), not buffered;
/// another app is served; a declared length over the limit is refused before reading; and
/// the share is free again when the stalled connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_at_most_their_apps_share() {
    let s = arena(ServeConfig {
        max_body: 1 << 20,
        body_budget: 4 << 20,
        ..ServeConfig::default()
    })
    .await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let path = format!("/tcb/invokecloudfunction?access_token={ta}&env=noisy&name=hostile");
    let stall = |declared: usize| {
        let path = path.clone();
        let addr = s.public;
        async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            let head =
                format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {declared}\r\n\r\n");
            conn.write_all(head.as_bytes()).await.unwrap();
            conn.write_all(&vec![b' '; declared / 2]).await.unwrap();
            conn
        }
    };
    // wxA's share is a quarter of 4 MB: one stalled 1 MB body holds it, once the server has
    // read its head. Until then wxA's calls go through (removing a file that is not there).
    let stalled = stall(1 << 20).await;
    let refused = poll_within(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "the stalled body holding wxA's share",
        || async {
            let v = s
                .invoke(&ta, "noisy", "hostile", r#"{"op":"remove","file":"x"}"#)
                .await;
            (errcode(&v) != 0).then_some(v)
        },
    )
    .await;
    assert_eq!(errcode(&refused), -501004, "{refused}");
    assert!(
        refused["errmsg"].as_str().unwrap().contains("busy"),
        "{refused}"
    );
    benign(&s, &tb, 5).await;
    // Over the limit by its own account: answered without reading the body.
    let mut conn = TcpStream::connect(s.public).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(
        answer.contains("-501007") && answer.contains("over"),
        "{answer}"
    );
    drop(stalled);
    let mut v = Value::Null;
    for _ in 0..100 {
        v = s
            .invoke(&ta, "noisy", "hostile", r#"{"op":"remove","file":"x"}"#)
            .await;
        if errcode(&v) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errcode(&v), 0, "the share is free again: {v}");
}

/// An app asking for new tokens as fast as it can gets its quota (45009 past it), its token
/// rows stay bounded, and another app's tokens and calls are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_spam_is_held_to_a_quota() {
    let s = arena(ServeConfig::default()).await;
    let tb = s.token(&s.other).await;
    let url = s.url(&format!(
        "/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
        s.owner.appid, s.owner.secret
    ));
    let spam: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url).await.1 })
        })
        .collect();
    benign(&s, &tb, 20).await;
    let codes: Vec<Value> = outcomes(spam).await;
    let issued = codes
        .iter()
        .filter(|v| v["access_token"].is_string())
        .count();
    let refused = codes.iter().filter(|v| v["errcode"] == 45009).count();
    assert_eq!(issued, cloudfn_gateway::wechat::TOKENS_PER_MINUTE as usize);
    assert_eq!(issued + refused, 100, "{codes:?}");
    let db = rusqlite::Connection::open(s.dir().join("cloudfn.db")).unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM tokens WHERE appid = 'wxA'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(rows <= issued as i64, "{rows} token rows");
    // wxB's quota is its own.
    assert!(!s.token(&s.other).await.is_empty());
}

/// A function with write access fills its env directory: once the env is over its quota, the
/// directory is read-only for its functions (one call may overshoot by what it writes), and
/// writable again once files are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_env_directory_becomes_read_only() {
    let s = arena(ServeConfig::default()).await;
    let (ta, tb) = (s.token(&s.owner).await, s.token(&s.other).await);
    let fill = |file: &str, kb: usize| format!(r#"{{"op":"fill","file":"{file}","kb":{kb}}}"#);
    let v = s.invoke(&ta, "noisy", "hostile", &fill("big", 2048)).await;
    assert_eq!(errcode(&v), 0, "{v}");
    // The usage is measured after the call: soon no further file can be written.
    let mut refused = Value::Null;
    for i in 0..100 {
        let v = s
            .invoke(&ta, "noisy", "hostile", &fill(&format!("more{i}"), 1))
            .await;
        if errcode(&v) != 0 {
            refused = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errcode(&refused), -504002, "{refused}");
    benign(&s, &tb, 5).await;
    let dir = s.dir().join("envs/noisy");
    let used: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(used < 3 << 20, "{used} bytes in the env directory");
    // The operator removes the file: after the next call measures again, writes work.
    std::fs::remove_file(dir.join("big")).unwrap();
    let mut v = Value::Null;
    for _ in 0..100 {
        v = s.invoke(&ta, "noisy", "hostile", &fill("after", 1)).await;
        if errcode(&v) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(errcode(&v), 0, "{v}");
}
