//! `cloudfn-bench`: the benchmarks that need whole processes (docs/performance.md).
//!
//! - `http`: the side-by-side table. Bare hyper, Node.js `http`, `wasmtime serve` (when a
//!   binary is given) and cloudfn (same-app, cross-app with the decision cached and uncached,
//!   `/admin` with a TC3 signature), each under `wrk -t2 -c64 --latency` on 127.0.0.1: a
//!   warm-up, then the median of several runs; server CPU from `/proc`.
//! - `compare`: the cloudfn rows of `http` for a base build and this one, alternately in one
//!   sitting, with head ÷ base ([`compare`]).
//! - `deploy`: the p99 of calls while new versions are deployed, against the same load without.
//! - `scale`: many functions across many envs: start time, idle RSS, first call of each, RSS.
//! - `allocs`: heap allocations per call, counted by this binary's allocator ([`allocs`]).
//! - `hostile`: the hostile-tenant attacks, each beside a benign tenant under wrk ([`hostile`]).
//! - `hosts`: 1, 2 and 3 `cloudfn serve` processes on one PostgreSQL store (a private cluster),
//!   each under its own wrk, together: req/s and p99 per host count.
//!
//! Every load is bounded in time and targets only 127.0.0.1. Figures are printed, never asserted.
//! `BENCH_WRK_OUTPUT=1` also prints each wrk script and its output; `BENCH_SERVER_STDERR=1`
//! lets the servers' stderr through.

mod allocs;
mod compare;
mod hostile;
mod js;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cloudfn_bench::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

#[derive(Parser)]
#[command(about = "cloudfn's process-level benchmarks (see docs/performance.md)")]
struct Args {
    /// The `cloudfn` binary to measure (default: the one next to this binary), e.g. an older
    /// build for a before/after comparison in one sitting.
    #[arg(long, global = true)]
    cloudfn: Option<PathBuf>,
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// The side-by-side HTTP table: req/s, p50, p99 and server CPU per request.
    Http {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Measured runs per server (the table shows the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Open connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// A `wasmtime` 48 CLI for the `wasmtime serve` row (skipped when not given).
        #[arg(long)]
        wasmtime: Option<PathBuf>,
        /// The wasi:http hello component `wasmtime serve` runs.
        #[arg(long)]
        http_hello: Option<PathBuf>,
        /// Only the rows whose name contains this.
        #[arg(long)]
        only: Option<String>,
        /// Record a `perf` profile of each server during its first measured run, into this
        /// dir (`perf report -i DIR/ROW.data`).
        #[arg(long)]
        perf: Option<PathBuf>,
    },
    /// The cloudfn rows of `http` for two builds in one sitting, alternately (base, head,
    /// head, base, …): each build's median and head ÷ base, for a change's commit message
    /// (`scripts/bench.sh compare REF` builds REF's binary and runs this).
    Compare {
        /// The base build's `cloudfn` (`--cloudfn`, or the one next to this binary, is head).
        #[arg(long)]
        base: PathBuf,
        /// Rounds; each measures every row once for each build, the order alternating.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Open connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Only the rows whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// Calls' latency while new versions of the called function are deployed.
    Deploy {
        /// Seconds of load, with and without deploys.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Open connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
    },
    /// The hostile-tenant attacks, each beside a benign tenant under wrk: the benign p99
    /// under each attack against its solo p99 (goal: within 2×).
    Hostile {
        /// Seconds of benign load per attack (and solo).
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// The benign tenant's open connections.
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// Measured runs of the benign load, solo and under each attack (the table shows the
        /// median of each figure).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Run only the attacks whose name contains one of these (e.g. `--only log --only slow`).
        #[arg(long)]
        only: Vec<String>,
    },
    /// 1, 2 and 3 hosts on one PostgreSQL store (a private cluster started from the system's
    /// binaries), each host under its own wrk at once: req/s and p99 per host count.
    Hosts {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Open connections in all, split over the hosts.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// The host counts to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        hosts: Vec<usize>,
        /// Measured runs per host count (the table shows the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// JavaScript beside Rust: the same users_add in each language, from build to calls under
    /// load (component size, build, compile at deploy, first call after a restart, req/s,
    /// latency, CPU and memory per call).
    Js {
        /// Seconds per measured run.
        #[arg(long, default_value_t = 10)]
        duration: u32,
        /// Open connections.
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Measured runs per language (the table shows the median).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Heap allocations per call, counted in this process: the bench world served in-process,
    /// calls over HTTP (same app, cross-app) and through `Host::invoke` alone.
    Allocs {
        /// Calls measured per path.
        #[arg(long, default_value_t = 5000)]
        calls: u32,
    },
    /// Many functions across many envs: start time, RSS, first call of each.
    Scale {
        /// Functions in all.
        #[arg(long, default_value_t = 1000)]
        functions: usize,
        /// Envs they are spread over.
        #[arg(long, default_value_t = 100)]
        envs: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cloudfn = args.cloudfn.unwrap_or_else(|| sibling("cloudfn"));
    anyhow::ensure!(
        cloudfn.exists(),
        "{} is missing: build it first (scripts/bench.sh does)",
        cloudfn.display()
    );
    match args.command {
        Bench::Http {
            duration,
            runs,
            connections,
            wasmtime,
            http_hello,
            only,
            perf,
        } => {
            let plan = Plan {
                duration,
                runs,
                connections,
                only,
                perf,
            };
            http(&plan, &cloudfn, wasmtime.zip(http_hello)).await
        }
        Bench::Compare {
            base,
            rounds,
            duration,
            connections,
            only,
        } => {
            let plan = Plan {
                duration,
                runs: 1,
                connections,
                only,
                perf: None,
            };
            compare::run(&plan, &base, &cloudfn, rounds).await
        }
        Bench::Deploy {
            duration,
            connections,
        } => deploy(&cloudfn, duration, connections).await,
        Bench::Allocs { calls } => allocs::run(&cloudfn, calls).await,
        Bench::Scale { functions, envs } => scale(&cloudfn, functions, envs).await,
        Bench::Hosts {
            duration,
            connections,
            hosts,
            runs,
        } => across_hosts(&cloudfn, duration, connections, &hosts, runs).await,
        Bench::Hostile {
            duration,
            connections,
            runs,
            only,
        } => hostile::run(&cloudfn, duration, connections, runs, &only).await,
        Bench::Js {
            duration,
            connections,
            runs,
        } => js::run(&cloudfn, duration, connections, runs).await,
    }
}

/// The same-app echo load on N hosts sharing one PostgreSQL store, N = each of `counts`; first
/// one host on a SQLite data dir, for comparison in the same sitting.
async fn across_hosts(
    cloudfn: &std::path::Path,
    duration: u32,
    connections: u32,
    counts: &[usize],
    runs: usize,
) -> anyhow::Result<()> {
    let pg = cloudfn_store::postgres::testing::PgCluster::start()?;
    let url = pg.create_db("bench")?;
    let key = cloudfn_store::secrets::random_hex(32);
    let global = ["--store", &url, "--token-key", &key]
        .map(String::from)
        .to_vec();
    let mut migrate: Vec<&str> = global.iter().map(String::as_str).collect();
    migrate.push("migrate");
    let scratch = tempfile::tempdir()?;
    run_cloudfn(cloudfn, scratch.path(), &migrate)?;
    let world = World::build_with(cloudfn, global)?;
    let sqlite = World::build(cloudfn)?;
    let mut rows = Vec::new();
    let one = sqlite.serve(&[])?;
    rows.push((
        "1, SQLite data dir".to_string(),
        measure_hosts(&sqlite, &[one], connections, duration, runs).await?,
    ));
    for &n in counts {
        let hosts = (0..n)
            .map(|i| {
                let dir = world.dir.path().join(format!("host{i}"));
                world.serve_in(&dir, &["--host-id", &format!("host{i}")])
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        rows.push((
            format!("{n}, PostgreSQL"),
            measure_hosts(&world, &hosts, connections, duration, runs).await?,
        ));
    }
    println!(
        "\nsame-app echo on N hosts sharing one PostgreSQL store, beside one host on a SQLite data \
         dir; {connections} connections split over the hosts, one wrk -t2 per host at once, \
         median of {runs} × {duration} s runs after a 2 s warm-up\n"
    );
    println!(
        "| hosts | req/s | p50 (worst host) | p99 (worst host) | req/s vs 1 SQLite host | errors |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let one = rows.first().map(|r| r.1.rps).unwrap_or(1.0);
    for (name, f) in rows {
        println!(
            "| {name} | {:.0} | {} | {} | {:.2}× | {} |",
            f.rps,
            ms(f.p50),
            ms(f.p99),
            f.rps / one,
            f.errors
        );
    }
    Ok(())
}

/// Each host under its own wrk at once (`connections` split between them): a warm-up, then
/// `runs` runs; the median run's total req/s and its worst host's latencies.
async fn measure_hosts(
    world: &World,
    hosts: &[Served],
    connections: u32,
    duration: u32,
    runs: usize,
) -> anyhow::Result<Figures> {
    let token = hosts[0].token(OWNER, &world.apps[OWNER]).await?;
    let loads: Vec<Load> = hosts.iter().map(|h| h.echo_load(&token)).collect();
    for load in &loads {
        // Also compiles echo on each host before the clock starts.
        load.check().await?;
    }
    let per_host = (connections / hosts.len() as u32).max(1);
    let run = |secs: u32| -> anyhow::Result<Figures> {
        let each = std::thread::scope(|s| {
            let runs: Vec<_> = hosts
                .iter()
                .zip(&loads)
                .map(|(h, load)| s.spawn(move || wrk(&h.server, load, per_host, secs)))
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("a wrk thread panicked"))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        Ok(Figures {
            rps: each.iter().map(|f| f.rps).sum(),
            p50: each.iter().map(|f| f.p50).max().unwrap_or_default(),
            p99: each.iter().map(|f| f.p99).max().unwrap_or_default(),
            requests: each.iter().map(|f| f.requests).sum(),
            errors: each.iter().map(|f| f.errors).sum(),
            cpu_per_request: Duration::ZERO,
        })
    };
    run(2)?;
    let mut figures = Vec::new();
    for i in 0..runs {
        let f = run(duration)?;
        eprintln!(
            "{} host(s): run {}: {:.0} req/s, p50 {}, p99 {}, {} errors",
            hosts.len(),
            i + 1,
            f.rps,
            ms(f.p50),
            ms(f.p99),
            f.errors
        );
        figures.push(f);
    }
    Ok(median(&figures))
}

struct Plan {
    duration: u32,
    runs: usize,
    connections: u32,
    only: Option<String>,
    perf: Option<PathBuf>,
}

impl Plan {
    fn wants(&self, row: &str) -> bool {
        self.only.as_ref().is_none_or(|o| row.contains(o.as_str()))
    }

    /// A warm-up, then the measured runs; prints each run as it ends.
    async fn measure(&self, row: &str, server: &Server, load: &Load) -> anyhow::Result<Figures> {
        let answer = load
            .check()
            .await
            .with_context(|| format!("{row}: checking"))?;
        eprintln!(
            "{row}: answers {}",
            answer.chars().take(120).collect::<String>()
        );
        wrk(server, load, self.connections, 2)?;
        let mut figures = Vec::new();
        for i in 0..self.runs {
            let perf = match (&self.perf, i) {
                (Some(dir), 0) => Some(self.record(dir, row, server)?),
                _ => None,
            };
            let f = wrk(server, load, self.connections, self.duration)?;
            if let Some(mut perf) = perf {
                perf.wait()?;
            }
            eprintln!(
                "{row}: run {}: {:.0} req/s, p50 {}, p99 {}, {:.1} µs CPU/req, {} errors",
                i + 1,
                f.rps,
                ms(f.p50),
                ms(f.p99),
                f.cpu_per_request.as_secs_f64() * 1e6,
                f.errors
            );
            figures.push(f);
        }
        // The load was all successes before and after the runs (a script that makes each
        // request itself counts refused answers among the errors instead).
        if load.script.is_none() {
            load.check()
                .await
                .with_context(|| format!("{row}: after the runs"))?;
        }
        Ok(median(&figures))
    }
}

impl Plan {
    fn record(
        &self,
        dir: &std::path::Path,
        row: &str,
        server: &Server,
    ) -> anyhow::Result<std::process::Child> {
        std::fs::create_dir_all(dir)?;
        let file: String = row
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Command::new("perf")
            .args([
                "record",
                "-F",
                "499",
                "--call-graph",
                "dwarf,8192",
                "-q",
                "-p",
            ])
            .arg(server.pid().to_string())
            .arg("-o")
            .arg(dir.join(format!("{file}.data")))
            .args(["--", "sleep"])
            .arg(self.duration.saturating_sub(1).max(1).to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("running perf (apt-get install linux-perf)")
    }
}

const HYPER: &str = "bare hyper 1.x hello";
const NODE: &str = "Node.js http hello";
const WASMTIME: &str = "wasmtime serve, wasi:http hello";
const SAME: &str = "cloudfn echo, same app";
const CROSS: &str = "cloudfn echo, cross-app, decision cached";
const CROSS_UNCACHED: &str = "cloudfn echo, cross-app, no decision cache";
const ADMIN: &str = "cloudfn echo, /admin TC3-signed";
const CONTAINER: &str = "cloudfn HTTP function, callContainer, same app";

async fn http(
    plan: &Plan,
    cloudfn: &std::path::Path,
    wasmtime: Option<(PathBuf, PathBuf)>,
) -> anyhow::Result<()> {
    let mut rows: Vec<(&str, Figures)> = Vec::new();
    let hello = |port: u16| Load {
        script: None,
        url: format!("http://127.0.0.1:{port}/"),
        body: Some(EVENT.into()),
        headers: vec![],
    };

    if plan.wants(HYPER) {
        let port = free_port()?;
        let mut cmd = Command::new(sibling("hello-hyper"));
        cmd.arg(format!("127.0.0.1:{port}"));
        let server = Server::spawn(HYPER, cmd, "listening")?;
        rows.push((HYPER, plan.measure(HYPER, &server, &hello(port)).await?));
    }
    if plan.wants(NODE) {
        let port = free_port()?;
        let mut cmd = Command::new("node");
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/node/hello.js"))
            .arg(port.to_string());
        let server = Server::spawn(NODE, cmd, "listening")?;
        rows.push((NODE, plan.measure(NODE, &server, &hello(port)).await?));
    }
    match &wasmtime {
        Some((bin, component)) if plan.wants(WASMTIME) => {
            let port = free_port()?;
            let mut cmd = Command::new(bin);
            // -Scli: Rust's std imports wasi:cli (environment, stdio), as cloudfn guests may.
            cmd.arg("serve")
                .arg("-Scli")
                .arg("--addr")
                .arg(format!("127.0.0.1:{port}"))
                .arg(component);
            // wasmtime serve logs its address on stderr; wait for the port instead.
            let server = Server::spawn_until_port(WASMTIME, cmd, port)?;
            rows.push((
                WASMTIME,
                plan.measure(WASMTIME, &server, &hello(port)).await?,
            ));
        }
        _ => eprintln!("{WASMTIME}: skipped (no --wasmtime binary; scripts/bench.sh --wasmtime)"),
    }

    let world = World::build(cloudfn)?;
    if [SAME, CROSS, ADMIN, CONTAINER]
        .iter()
        .any(|r| plan.wants(r))
    {
        let served = world.serve(&[])?;
        for row in [SAME, CROSS, ADMIN, CONTAINER] {
            if plan.wants(row) {
                let load = cloudfn_load(row, &world, &served).await?;
                rows.push((row, plan.measure(row, &served.server, &load).await?));
            }
        }
    }
    if plan.wants(CROSS_UNCACHED) {
        let served = world.serve(&["--auth-cache-ttl", "0"])?;
        let token = served.token(SHAREE, &world.apps[SHAREE]).await?;
        let load = served.echo_load(&token);
        rows.push((
            CROSS_UNCACHED,
            plan.measure(CROSS_UNCACHED, &served.server, &load).await?,
        ));
    }
    print_table(plan, &rows);
    Ok(())
}

/// The load of one of the cloudfn rows served by `world.serve(&[])` (all but the uncached
/// cross-app row, which needs a server of its own).
async fn cloudfn_load(row: &str, world: &World, served: &Served) -> anyhow::Result<Load> {
    Ok(match row {
        SAME => served.echo_load(&served.token(OWNER, &world.apps[OWNER]).await?),
        CROSS => served.echo_load(&served.token(SHAREE, &world.apps[SHAREE]).await?),
        ADMIN => admin_load(&served.base, &world.apps[OWNER])?,
        CONTAINER => served.container_load(&served.token(OWNER, &world.apps[OWNER]).await?),
        _ => anyhow::bail!("{row} is not a row of one cloudfn server"),
    })
}

/// A `functions.invokeFunction` request as `@cloudbase/node-sdk` sends it: signed once for
/// the check, and anew for each request under wrk (cloudfn accepts a signature once).
fn admin_load(base: &str, creds: &Creds) -> anyhow::Result<Load> {
    let host = base.trim_start_matches("http://");
    let body = serde_json::json!({
        "action": "functions.invokeFunction",
        "function_name": "echo",
        "request_data": EVENT,
        "envName": ENV,
    });
    let map = body.as_object().expect("object");
    let query = format!("env={ENV}");
    let content_type = "application/json";
    let headers = |name: &str| match name {
        "host" => Some(host.to_string()),
        "content-type" => Some(content_type.to_string()),
        _ => None,
    };
    let now = cloudfn_store::fsutil::now();
    let req = cloudfn_gateway::tc3::SignedRequest {
        host,
        path: "/admin",
        query: &query,
        header: &headers,
        body: map,
    };
    let auth = cloudfn_gateway::tc3::sign(&req, &creds.secret_id, &creds.secret_key, now)?;
    let script =
        cloudfn_bench::signed_admin_script(host, ENV, map, &creds.secret_id, &creds.secret_key)?;
    Ok(Load {
        script: Some(script),
        url: format!("{base}/admin?{query}"),
        body: Some(body.to_string()),
        headers: vec![
            ("Authorization".into(), auth),
            ("X-Timestamp".into(), now.to_string()),
            ("X-Signature-Expires".into(), "600".into()),
        ],
    })
}

fn print_table(plan: &Plan, rows: &[(&str, Figures)]) {
    let get = |name: &str| rows.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
    println!(
        "\n{} connections, {} × {} s runs after a 2 s warm-up, median; wrk -t2 on the same machine\n",
        plan.connections, plan.runs, plan.duration
    );
    println!("| server | req/s | p50 | p99 | server CPU µs/req | req/s vs Node | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let node = get(NODE);
    for (name, f) in rows {
        let vs_node = node.map_or("–".into(), |n| format!("{:.2}×", f.rps / n.rps));
        println!(
            "| {name} | {:.0} | {} | {} | {:.1} | {vs_node} | {} |",
            f.rps,
            ms(f.p50),
            ms(f.p99),
            f.cpu_per_request.as_secs_f64() * 1e6,
            f.errors
        );
    }
    println!("\nTargets (docs/performance.md):");
    let ratio =
        |what: &str, a: Option<Figures>, b: Option<Figures>, f: fn(&Figures) -> f64, goal: &str| {
            if let (Some(a), Some(b)) = (a, b) {
                println!("- {what}: {:.2}× (target {goal})", f(&a) / f(&b));
            }
        };
    let rps = |f: &Figures| f.rps;
    let p99 = |f: &Figures| f.p99.as_secs_f64();
    ratio(
        "same-app req/s ÷ Node req/s",
        get(SAME),
        node,
        rps,
        "≥ 0.8×, issue 30",
    );
    ratio(
        "same-app req/s ÷ wasmtime serve req/s",
        get(SAME),
        get(WASMTIME),
        rps,
        "≥ 3×",
    );
    ratio(
        "same-app p99 ÷ bare hyper p99",
        get(SAME),
        get(HYPER),
        p99,
        "≤ 1.5×",
    );
    ratio(
        "cross-app cached req/s ÷ same-app req/s",
        get(CROSS),
        get(SAME),
        rps,
        "≥ 0.9×",
    );
    if let Some(f) = get(SAME) {
        println!(
            "- same-app server CPU per call: {:.1} µs (target ≤ 25 µs, issue 30)",
            f.cpu_per_request.as_secs_f64() * 1e6
        );
    }
}

async fn deploy(cloudfn: &std::path::Path, duration: u32, connections: u32) -> anyhow::Result<()> {
    let world = World::build(cloudfn)?;
    let served = world.serve(&[])?;
    let token = served.token(OWNER, &world.apps[OWNER]).await?;
    let load = served.echo_load(&token);
    load.check().await?;
    wrk(&served.server, &load, connections, 2)?;
    let quiet = wrk(&served.server, &load, connections, duration)?;

    // New versions (distinct bytes, so each compiles) from another process, once a second,
    // as an operator's deploys would come.
    let echo = std::fs::read(cloudfn_test_guests::ECHO)?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deployer = {
        let (stop, dir, cloudfn) = (
            stop.clone(),
            world.dir.path().to_path_buf(),
            cloudfn.to_path_buf(),
        );
        std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
            let mut times = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let file = dir.join(format!("echo-{i}.wasm"));
                std::fs::write(&file, distinct(&echo, &format!("v{i}")))?;
                let t = Instant::now();
                run_cloudfn(
                    &cloudfn,
                    &dir,
                    &[
                        "deploy",
                        "--env",
                        ENV,
                        "--name",
                        "echo",
                        file.to_str().expect("utf-8"),
                    ],
                )?;
                times.push(t.elapsed());
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(times)
        })
    };
    let busy = wrk(&served.server, &load, connections, duration)?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deploys = deployer.join().expect("deployer thread")?;
    load.check().await?;
    println!("\n{connections} connections, {duration} s each, echo same-app\n");
    println!("| load | req/s | p50 | p99 | errors |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, f) in [
        ("calls only", quiet),
        (&*format!("calls + {} deploys", deploys.len()), busy),
    ] {
        println!(
            "| {name} | {:.0} | {} | {} | {} |",
            f.rps,
            ms(f.p50),
            ms(f.p99),
            f.errors
        );
    }
    let mean = deploys.iter().sum::<Duration>() / deploys.len().max(1) as u32;
    println!("\ndeploy command, whole process, mean: {}", ms(mean));
    println!(
        "p99 during deploys ÷ p99 without: {:.2}×",
        busy.p99.as_secs_f64() / quiet.p99.as_secs_f64()
    );
    Ok(())
}

async fn scale(cloudfn: &std::path::Path, functions: usize, envs: usize) -> anyhow::Result<()> {
    let world = World::build(cloudfn)?;
    let echo = std::fs::read(cloudfn_test_guests::ECHO)?;
    let t = Instant::now();
    {
        // Deploys in-process (each compiles once and leaves its precompiled artifact).
        let host = cloudfn_invoke::Host::open(world.dir.path()).await?;
        let control = cloudfn_invoke::Control::new(host);
        for e in 0..envs {
            control.create_env(&format!("scale-{e:03}"), OWNER).await?;
        }
        for i in 0..functions {
            let env = format!("scale-{:03}", i % envs);
            let wasm = distinct(&echo, &format!("f{i}"));
            control
                .deploy(&env, &format!("f{i:04}"), &wasm, Default::default())
                .await?;
            if (i + 1) % 100 == 0 {
                eprintln!("deployed {} functions ({})", i + 1, since(t));
            }
        }
    }
    let deployed = t.elapsed();

    let started = Instant::now();
    let served = world.serve(&[])?;
    let start = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = served.server.rss()?;
    let idle_split = served.server.rss_split()?;
    let token = served.token(OWNER, &world.apps[OWNER]).await?;
    let mut firsts = Vec::with_capacity(functions);
    let cpu0 = served.server.cpu()?;
    let url = |i: usize| {
        served.invoke_url(
            &token,
            &format!("scale-{:03}", i % envs),
            &format!("f{i:04}"),
        )
    };
    for i in 0..functions {
        let t = Instant::now();
        let (status, body) = request("POST", &url(i), &[], EVENT).await?;
        firsts.push(t.elapsed());
        anyhow::ensure!(
            status == 200 && body.contains("\"errcode\":0"),
            "f{i:04}: {body}"
        );
    }
    let first_cpu = served.server.cpu()?.saturating_sub(cpu0);
    let after = served.server.rss()?;
    let after_split = served.server.rss_split()?;
    let mut seconds = Vec::with_capacity(functions);
    for i in 0..functions {
        let t = Instant::now();
        request("POST", &url(i), &[], EVENT).await?;
        seconds.push(t.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
    };
    let mb = |b: u64| format!("{:.1} MB", b as f64 / (1024.0 * 1024.0));
    println!(
        "\n{functions} functions across {envs} envs (each distinct bytes, precompiled at deploy)\n"
    );
    println!("| figure | value |");
    println!("| --- | ---: |");
    println!(
        "| deploy all, in-process | {:.1} s |",
        deployed.as_secs_f64()
    );
    println!(
        "| `cloudfn serve` start, spawn to listening | {} |",
        ms(start)
    );
    println!(
        "| idle RSS after start (anonymous + file-backed) | {} ({} + {}) |",
        mb(idle),
        mb(idle_split.0),
        mb(idle_split.1)
    );
    println!(
        "| first call of each, p50 (client, HTTP) | {} |",
        ms(pct(&mut firsts, 0.5))
    );
    println!(
        "| first call of each, p99 | {} |",
        ms(pct(&mut firsts, 0.99))
    );
    println!(
        "| server CPU per first call | {} |",
        ms(first_cpu / functions as u32)
    );
    println!(
        "| RSS after calling each once (anonymous + file-backed: mapped artifacts) | {} ({} + {}) |",
        mb(after),
        mb(after_split.0),
        mb(after_split.1)
    );
    println!(
        "| second call of each, p50 | {} |",
        ms(pct(&mut seconds, 0.5))
    );
    Ok(())
}
