//! `cloudfn-bench js`: JavaScript functions beside Rust ones, in one sitting. The same
//! `users_add` in both languages (`functions/js/users_add`, `functions/users_add`), each calling
//! the Rust `echo`: build time and component size, the compile at deploy (wall time, peak RSS),
//! the first call after a restart, and calls under load (req/s, p50, p99, server CPU per call,
//! peak guest memory per call, server RSS).

use cloudfn_bench::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The event both functions get.
const USER: &str = r#"{"name":"Ada","age":36}"#;

/// One language's figures.
#[derive(Default)]
struct Row {
    size: u64,
    build: Option<Duration>,
    compile: Duration,
    compile_rss: u64,
    first_call: Duration,
    load: Figures,
    peak_memory_kb: u64,
    rss_growth: i64,
}

pub async fn run(
    cloudfn: &Path,
    duration: u32,
    connections: u32,
    runs: usize,
) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let world = World::build(cloudfn)?;
    let mut rust = Row {
        size: std::fs::metadata(cloudfn_test_guests::USERS_ADD)?.len(),
        ..Row::default()
    };
    let mut js = Row::default();

    // Build: a copy of the folder, as a user's; the toolchain installed by a first build.
    let tmp = tempfile::tempdir()?;
    let folder = tmp.path().join("users_add");
    std::fs::create_dir_all(&folder)?;
    for file in ["index.js", "package.json"] {
        std::fs::copy(
            root.join("functions/js/users_add").join(file),
            folder.join(file),
        )?;
    }
    let build = || -> anyhow::Result<Duration> {
        let _ = std::fs::remove_dir_all(folder.join(".cloudfn"));
        let t = Instant::now();
        let out = Command::new(cloudfn).arg("build").arg(&folder).output()?;
        anyhow::ensure!(
            out.status.success(),
            "cloudfn build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(t.elapsed())
    };
    eprintln!("js: building functions/js/users_add (the first build installs the toolchain)");
    build()?;
    let mut builds = (0..3)
        .map(|_| build())
        .collect::<anyhow::Result<Vec<_>>>()?;
    builds.sort();
    js.build = Some(builds[1]);
    let wasm = folder.join(".cloudfn/users_add.wasm");
    js.size = std::fs::metadata(&wasm)?.len();

    // The compile at deploy, each in its own CLI process.
    for (row, name, file) in [
        (
            &mut rust,
            "users_add",
            PathBuf::from(cloudfn_test_guests::USERS_ADD),
        ),
        (&mut js, "users_add_js", wasm.clone()),
    ] {
        let mut cmd = Command::new(cloudfn);
        cmd.arg("--data-dir")
            .arg(world.dir.path())
            .args(["deploy", "--env", ENV, "--name", name])
            .arg(&file);
        let (took, peak) = peak_rss(cmd)?;
        row.compile = took;
        row.compile_rss = peak;
        eprintln!("js: deployed {name} in {}", ms(took));
    }

    // The first call after a restart (artifacts on disk), then the load.
    let served = world.serve(&[])?;
    let token = served.token(OWNER, &world.apps[OWNER]).await?;
    for (row, name) in [(&mut rust, "users_add"), (&mut js, "users_add_js")] {
        let url = served.invoke_url(&token, ENV, name);
        let t = Instant::now();
        let (status, body) = request("POST", &url, &[], USER).await?;
        row.first_call = t.elapsed();
        anyhow::ensure!(
            status == 200 && body.contains("\"errcode\":0"),
            "{name}: {body}"
        );
    }
    for (row, name) in [(&mut rust, "users_add"), (&mut js, "users_add_js")] {
        let load = Load {
            url: served.invoke_url(&token, ENV, name),
            body: Some(USER.into()),
            headers: vec![],
            script: None,
        };
        load.check().await?;
        wrk(&served.server, &load, connections, 2)?;
        let before = served.server.rss()? as i64;
        let figures = (0..runs)
            .map(|_| wrk(&served.server, &load, connections, duration))
            .collect::<anyhow::Result<Vec<_>>>()?;
        row.load = median(&figures);
        row.rss_growth = served.server.rss()? as i64 - before;
        row.peak_memory_kb = peak_memory(cloudfn, world.dir.path(), name)?;
        eprintln!("js: loaded {name}: {:.0} req/s", row.load.rps);
    }
    let rss = served.server.rss()?;
    drop(served);

    let mb = |b: u64| format!("{:.1} MB", b as f64 / (1024.0 * 1024.0));
    let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    println!(
        "\nusers_add in Rust and in JavaScript (each calls the Rust echo); {connections} connections, \
         {runs} × {duration} s runs after a 2 s warm-up, median\n"
    );
    println!("| | Rust | JavaScript | JS ÷ Rust |");
    println!("| --- | ---: | ---: | ---: |");
    let ratio = |a: f64, b: f64| format!("{:.1}×", b / a);
    println!(
        "| component | {} | {} | {} |",
        mb(rust.size),
        mb(js.size),
        ratio(rust.size as f64, js.size as f64)
    );
    println!(
        "| `cloudfn build` (toolchain cached) | – | {} | – |",
        js.build.map_or("–".into(), s)
    );
    println!(
        "| compile at deploy (wall) | {} | {} | {} |",
        ms(rust.compile),
        s(js.compile),
        ratio(rust.compile.as_secs_f64(), js.compile.as_secs_f64())
    );
    println!(
        "| peak RSS of the deploy | {} | {} | {} |",
        mb(rust.compile_rss),
        mb(js.compile_rss),
        ratio(rust.compile_rss as f64, js.compile_rss as f64)
    );
    println!(
        "| first call after a restart | {} | {} | {} |",
        ms(rust.first_call),
        ms(js.first_call),
        ratio(rust.first_call.as_secs_f64(), js.first_call.as_secs_f64())
    );
    println!(
        "| req/s | {:.0} | {:.0} | {:.2}× |",
        rust.load.rps,
        js.load.rps,
        js.load.rps / rust.load.rps
    );
    println!(
        "| p50 / p99 | {} / {} | {} / {} | {} |",
        ms(rust.load.p50),
        ms(rust.load.p99),
        ms(js.load.p50),
        ms(js.load.p99),
        ratio(rust.load.p99.as_secs_f64(), js.load.p99.as_secs_f64())
    );
    println!(
        "| server CPU per call | {:.0} µs | {:.0} µs | {} |",
        rust.load.cpu_per_request.as_secs_f64() * 1e6,
        js.load.cpu_per_request.as_secs_f64() * 1e6,
        ratio(
            rust.load.cpu_per_request.as_secs_f64(),
            js.load.cpu_per_request.as_secs_f64()
        )
    );
    println!(
        "| peak guest memory per call | {} KB | {} KB | {} |",
        rust.peak_memory_kb,
        js.peak_memory_kb,
        ratio(rust.peak_memory_kb as f64, js.peak_memory_kb as f64)
    );
    println!(
        "| server RSS growth under the load | {:+.1} MB | {:+.1} MB | – |",
        rust.rss_growth as f64 / 1048576.0,
        js.rss_growth as f64 / 1048576.0
    );
    println!("| errors | {} | {} | – |", rust.load.errors, js.load.errors);
    println!("\nserver RSS after both loads: {}", mb(rss));
    Ok(())
}

/// Runs `cmd` to its end; its wall time and peak RSS (VmHWM, sampled every 5 ms).
fn peak_rss(mut cmd: Command) -> anyhow::Result<(Duration, u64)> {
    let t = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            && let Some(kb) = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))
        {
            let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            peak = peak.max(kb * 1024);
        }
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "{cmd:?} failed");
            return Ok((t.elapsed(), peak));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The peak guest memory of one call of `name`, as `cloudfn invoke` reports it.
fn peak_memory(cloudfn: &Path, dir: &Path, name: &str) -> anyhow::Result<u64> {
    let out = Command::new(cloudfn)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "invoke", "--env", ENV, "--name", name, "--appid", OWNER, "--event", USER,
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .split("peak memory ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|kb| kb.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no peak memory in {stderr}"))
}
