//! Micro-benchmarks of one call (docs/performance.md): a fresh instance + call of echo in the
//! runtime alone and through the whole pipeline; the first call after a restart with and
//! without the precompiled artifact; `cloudfn invoke` of a deployed function as a whole process;
//! what the console's per-env history adds to a call, beside the Prometheus series it already
//! updated.
//!
//! `cargo bench -p cloudfn-bench --bench calls` (scripts/bench.sh runs it).

use cloudfn_bench::{ENV, EVENT, OWNER, sibling};
use cloudfn_invoke::{Control, Host, Identity, InvokeRequest};
use cloudfn_runtime::{CallError, CallFunction, GuestCall, Runtime, WxContext};
use cloudfn_store::FunctionConfig;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn owner() -> Identity {
    Identity {
        appid: Some(OWNER.into()),
        openid: Some("o-bench".into()),
        ..Identity::default()
    }
}

/// A data dir with env `bench` and echo deployed (its artifact precompiled).
fn data_dir(rt: &tokio::runtime::Runtime) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let control = Control::new(Host::open(dir.path()).await.expect("open"));
        control.create_env(ENV, OWNER).await.expect("env");
        let echo = std::fs::read(cloudfn_test_guests::ECHO).expect("echo.wasm");
        control
            .deploy(ENV, "echo", &echo, FunctionConfig::default())
            .await
            .expect("deploy");
    });
    dir
}

fn echo_call(c: &mut Criterion) {
    let rt = tokio();
    let dir = data_dir(&rt);
    let mut group = c.benchmark_group("echo");

    // The runtime alone: fresh Store + WASI context, instantiate, call, result check.
    let runtime = Arc::new(Runtime::new(None).expect("runtime"));
    let echo = std::fs::read(cloudfn_test_guests::ECHO).expect("echo.wasm");
    let component = runtime
        .compile(&echo, cloudfn_store::FunctionKind::Function)
        .expect("compile");
    let prepared = Arc::new(
        runtime
            .prepare(&component, None, FunctionConfig::default())
            .expect("prepare"),
    );
    // No services: a cloud call would be refused (-501001); the echo makes none.
    let services = Arc::new(cloudfn_runtime::Services::default());
    let calls: CallFunction = Arc::new(|_, _| {
        Box::pin(async {
            Err(CallError {
                errcode: -1,
                errmsg: "no nested calls in this benchmark".into(),
            })
        })
    });
    let outbound = Arc::new(cloudfn_runtime::egress::client(Arc::default()));
    group.bench_function("runtime: instantiate + call", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = runtime
                .run(
                    &prepared,
                    GuestCall {
                        event: EVENT.to_string(),
                        context: WxContext {
                            env: ENV.into(),
                            source: "wx_client".into(),
                            appid: Some(OWNER.into()),
                            openid: Some("o-bench".into()),
                            unionid: None,
                            from_appid: None,
                            from_openid: None,
                            from_unionid: None,
                            client_ip: None,
                            request_id: "bench".into(),
                            function_name: "echo".into(),
                        },
                        timeout: Duration::from_secs(3),
                        deadline: Instant::now() + Duration::from_secs(3),
                        calls: calls.clone(),
                        owner: OWNER.into(),
                        services: services.clone(),
                        max_result_bytes: 1 << 20,
                        read_only: false,
                        http: None,
                        outbound: outbound.clone(),
                    },
                )
                .await;
            outcome.result.expect("echo answers")
        })
    });

    // The whole pipeline in-process: admission, snapshot, resolve, slot, run, observe.
    let host = rt.block_on(Host::open(dir.path())).expect("open");
    group.bench_function("pipeline: Host::invoke", |b| {
        b.to_async(&rt).iter(|| async {
            let inv = host
                .invoke(InvokeRequest::new(ENV, "echo", EVENT, "wx_client"), owner())
                .await;
            inv.result.expect("echo answers")
        })
    });
    group.finish();
}

fn first_call(c: &mut Criterion) {
    let rt = tokio();
    let dir = data_dir(&rt);
    let artifacts = dir.path().join("artifacts");
    let mut group = c.benchmark_group("first call after restart");
    group.sample_size(20);
    for precompiled in [true, false] {
        let name = if precompiled {
            "precompiled artifact"
        } else {
            "no artifact (compiles)"
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // A restart: a new engine and host over the same data dir.
                    if !precompiled {
                        let _ = std::fs::remove_dir_all(&artifacts);
                    }
                    rt.block_on(Host::open(dir.path())).expect("open")
                },
                // The host goes back out, so its teardown (unmapping the instance pool) is
                // not timed.
                |host| {
                    let result = rt.block_on(async {
                        let inv = host
                            .invoke(InvokeRequest::new(ENV, "echo", EVENT, "wx_client"), owner())
                            .await;
                        inv.result.expect("echo answers")
                    });
                    (host, result)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn whole_process(c: &mut Criterion) {
    let rt = tokio();
    let dir = data_dir(&rt);
    let cloudfn = sibling("cloudfn");
    let mut group = c.benchmark_group("cloudfn invoke, whole process");
    group.sample_size(20);
    group.bench_function("deployed echo", |b| {
        b.iter(|| {
            let out = std::process::Command::new(&cloudfn)
                .arg("--data-dir")
                .arg(dir.path())
                .args(["invoke", "--env", ENV, "--name", "echo", "--event", EVENT])
                .args(["--appid", OWNER, "--quiet"])
                .output()
                .expect("cloudfn invoke");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    });
    group.finish();
}

/// The per-call metric work: the Prometheus counter and histogram every call updates, and the
/// console's per-env history beside them (one map lookup, one uncontended lock).
fn history(c: &mut Criterion) {
    let metrics = cloudfn_invoke::metrics::Metrics::new(None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let latency = Duration::from_micros(180);
    let label = cloudfn_invoke::metrics::CallLabels {
        errcode: "0".into(),
    };
    let mut group = c.benchmark_group("metrics");
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            metrics.latency.observe(latency.as_secs_f64());
            metrics.calls.get_or_create(&label).inc();
        })
    });
    group.bench_function("history", |b| {
        b.iter(|| metrics.history.record(ENV, now, Some(latency), false))
    });
    group.finish();
}

criterion_group!(benches, echo_call, first_call, whole_process, history);
criterion_main!(benches);
