//! Several hosts on one PostgreSQL store: real `cloudfn serve` processes on loopback ports and
//! a private PostgreSQL cluster per test (initdb into a temp dir, from the system's binaries).
//! A deploy through one host is served by another, a share removed through one is refused by
//! all within a second, an access token works on any host, a host killed under load loses no
//! acknowledged deploy, and the hosts survive a PostgreSQL restart.

use crate::common::guests as paths;
use crate::common::http::{ADMIN_TOKEN, errcode, get, request};
use crate::common::{Bin, ok, served_urls, within};
use cloudfn_store::postgres::testing::PgCluster;
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

const TOKEN_KEY: &str = "5a0f1b2c3d4e5f60718293a4b5c6d7e8f0112233445566778899aabbccddeeff";

/// A private cluster with a migrated database, and a scratch dir for the hosts.
struct Store {
    pg: PgCluster,
    url: String,
    dir: tempfile::TempDir,
}

impl Store {
    fn start() -> Store {
        let pg = PgCluster::start().expect("a private PostgreSQL from the system's binaries");
        let url = pg.create_db("cloudfn").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store { pg, url, dir };
        let out = store.cli(&["migrate"]);
        assert!(ok(&out).contains("schema version 0 -> "), "{out:?}");
        // Migrating again is a no-op.
        assert!(ok(&store.cli(&["migrate"])).contains("up to date"));
        store
    }

    /// The CLI on the store directly (no server).
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Bin::new(&self.dir.path().join("cli"))
            .command(&["--store", &self.url, "--token-key", TOKEN_KEY])
            .args(args)
            .output()
            .unwrap()
    }

    /// Starts host `name` with its own data dir (artifact cache, env directories).
    fn host(&self, name: &str) -> Host {
        let data = self.dir.path().join(name);
        let mut child = Bin::new(&data)
            .command(&[
                "--store",
                &self.url,
                "--token-key",
                TOKEN_KEY,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--host-id",
                name,
                "--drain-timeout",
                "2",
            ])
            .env("CLOUDFN_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        let (public, admin) = served_urls(&mut child);
        Host {
            name: name.into(),
            child,
            public,
            admin,
            data,
        }
    }
}

/// One `cloudfn serve` process.
struct Host {
    name: String,
    child: Child,
    public: String,
    admin: String,
    data: std::path::PathBuf,
}

impl Host {
    /// The CLI through this host's admin API.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Bin::new(&self.data)
            .command(&["--server", &self.admin, "--admin-token", ADMIN_TOKEN])
            .args(args)
            .output()
            .unwrap()
    }

    async fn token(&self, appid: &str, secret: &str) -> String {
        let (_, v) = get(&format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}",
            self.public
        ))
        .await;
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {v}", self.name))
            .to_string()
    }

    async fn call(&self, token: &str, env: &str, name: &str) -> Value {
        let url = format!(
            "{}/tcb/invokecloudfunction?access_token={token}&env={env}&name={name}",
            self.public
        );
        request("POST", &url, &[], r#"{"n":1}"#).await.1
    }

    async fn ready(&self) -> u16 {
        get(&format!("{}/readyz", self.admin)).await.0
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one load task has had answered so far.
#[derive(Default)]
struct Answered {
    /// Calls that succeeded.
    good: std::sync::atomic::AtomicU32,
    /// The answers of calls that failed.
    bad: std::sync::Mutex<Vec<Value>>,
}

impl Answered {
    fn succeeded(&self) -> u32 {
        self.good.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn failed(&self) -> bool {
        !self.bad.lock().unwrap().is_empty()
    }
}

/// The secret `app create` printed.
fn secret_of(out: &std::process::Output) -> String {
    ok(out)
        .lines()
        .find_map(|l| l.strip_prefix("secret:"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_one_store() {
    let store = Store::start();
    let hosts = [store.host("h1"), store.host("h2"), store.host("h3")];
    let [h1, h2, h3] = &hosts;
    for h in &hosts {
        assert_eq!(h.ready().await, 200, "{}", h.name);
        let (status, metrics) = get(&format!("{}/metrics", h.admin)).await;
        assert_eq!(status, 200);
        assert!(
            metrics
                .as_str()
                .unwrap()
                .contains(&format!(r#"host="{}""#, h.name)),
            "metrics are labelled by host: {metrics}"
        );
        // Also the counts read when the metrics are served.
        assert!(
            metrics.as_str().unwrap().contains(&format!(
                r#"cloudfn_calls_inline_total{{host="{}"}}"#,
                h.name
            )),
            "{metrics}"
        );
    }
    // Set up through host 1.
    let a_secret = secret_of(&h1.cli(&["app", "create", "wxA", "--subject", "Acme"]));
    let b_secret = secret_of(&h1.cli(&["app", "create", "wxB", "--subject", "Acme"]));
    ok(&h1.cli(&["env", "create", "prod", "--owner", "wxA"]));
    ok(&h1.cli(&["deploy", "--env", "prod", "--name", "echo", paths::ECHO]));
    ok(&h1.cli(&[
        "deploy",
        "--env",
        "prod",
        "--name",
        "cloudbase_auth",
        paths::CLOUDBASE_AUTH,
        "--var",
        "allowed_appids=wxB",
    ]));
    ok(&h1.cli(&["app", "sharing", "wxA", "on"]));
    ok(&h1.cli(&["share", "add", "--env", "prod", "--to", "wxB"]));

    // A token issued by one host works on every host.
    let a_token = h2.token("wxA", &a_secret).await;
    let b_token = h3.token("wxB", &b_secret).await;
    for h in &hosts {
        within(
            Duration::from_secs(1),
            "a token from another host",
            || async { errcode(&h.call(&a_token, "prod", "echo").await) == 0 },
        )
        .await;
        let v = h.call(&b_token, "prod", "echo").await;
        assert_eq!(errcode(&v), 0, "{}: B calls A's shared env: {v}", h.name);
    }

    // A deploy through host 1 is served by host 3 within a second.
    let v = h3.call(&a_token, "prod", "later").await;
    assert_ne!(errcode(&v), 0, "{v}");
    assert_eq!(
        ok(&h1.cli(&["deploy", "--env", "prod", "--name", "later", paths::ECHO])).trim(),
        "1"
    );
    let took = within(
        Duration::from_secs(1),
        "host 3 serving host 1's deploy",
        || async { errcode(&h3.call(&a_token, "prod", "later").await) == 0 },
    )
    .await;
    eprintln!("deploy through h1 served by h3 after {took:?}");

    // A share removed through host 2 is refused by hosts 1 and 3 within a second.
    ok(&h2.cli(&["share", "rm", "--env", "prod", "--to", "wxB"]));
    for h in [h1, h3] {
        let took = within(Duration::from_secs(1), "the share's removal", || async {
            errcode(&h.call(&b_token, "prod", "echo").await) != 0
        })
        .await;
        eprintln!(
            "share removed through h2 refused by {} after {took:?}",
            h.name
        );
        // The owner's own calls go on.
        assert_eq!(errcode(&h.call(&a_token, "prod", "echo").await), 0);
    }

    // Records of calls on every host land in the one store.
    let logs = ok(&h3.cli(&["logs", "--env", "prod", "--name", "later"]));
    assert!(logs.lines().any(|l| l.contains("prod/later@1")), "{logs}");

    // Host 2 killed under load: the others keep serving, and no deploy it acknowledged is lost.
    let [h1, h2, h3] = hosts;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for (h, token) in [
        (h1.public.clone(), a_token.clone()),
        (h3.public.clone(), a_token.clone()),
    ] {
        let answered = std::sync::Arc::new(Answered::default());
        let (stop, seen) = (stop.clone(), answered.clone());
        let task = tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url =
                    format!("{h}/tcb/invokecloudfunction?access_token={token}&env=prod&name=echo");
                let v = request("POST", &url, &[], "{}").await.1;
                if errcode(&v) == 0 {
                    seen.good.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    seen.bad.lock().unwrap().push(v);
                }
            }
        });
        load.push((answered, task));
    }
    // Host 2 is under load too when it dies; its callers see their connections fail.
    let served_by_2 = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let doomed = {
        let (h, token, stop) = (h2.public.clone(), a_token.clone(), stop.clone());
        let served = served_by_2.clone();
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let url =
                    format!("{h}/tcb/invokecloudfunction?access_token={token}&env=prod&name=echo");
                let req = hyper::Request::post(url)
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                    .unwrap();
                match client.request(req).await {
                    Ok(_) => {
                        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let deployer = {
        let (acked, admin, data) = (acked.clone(), h2.admin.clone(), h2.data.clone());
        std::thread::spawn(move || {
            for _ in 0..50 {
                let out = Bin::new(&data)
                    .command(&["--server", &admin, "--admin-token", ADMIN_TOKEN])
                    .args(["deploy", "--env", "prod", "--name", "churn", paths::ECHO])
                    .output()
                    .unwrap();
                if !out.status.success() {
                    return;
                }
                let v: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                acked.lock().unwrap().push(v);
            }
        })
    };
    // Kill it once it has acknowledged a deploy, then another, mid-churn. A fixed sleep was not
    // enough: on a loaded two-core CI machine the first remote deploy (a process start plus a
    // compile) took longer than 1.5 s.
    let first_ack = std::time::Instant::now();
    while acked.lock().unwrap().is_empty() {
        assert!(
            first_ack.elapsed() < Duration::from_secs(60) && !deployer.is_finished(),
            "host 2 acknowledged no deploy within {:?}",
            first_ack.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The kill lands mid-churn: the deployer is on to its next deploy, and host 2 has
    // answered some of its own load.
    let acks = acked.lock().unwrap().len();
    within(
        Duration::from_secs(60),
        "host 2 acknowledging another deploy and answering its load",
        || async {
            let churned = acked.lock().unwrap().len() > acks;
            assert!(
                churned || !deployer.is_finished(),
                "the deployer stopped: host 2 refused a deploy"
            );
            churned && served_by_2.load(std::sync::atomic::Ordering::Relaxed) > 0
        },
    )
    .await;
    let mut h2 = h2;
    h2.child.kill().unwrap();
    h2.child.wait().unwrap();
    deployer.join().unwrap();
    // The others keep serving after the kill: each answers 10 more calls (or one fails, which
    // the checks below report).
    let at_kill: Vec<u32> = load.iter().map(|(a, _)| a.succeeded()).collect();
    within(
        Duration::from_secs(30),
        "10 more calls answered by each surviving host",
        || async {
            load.iter().any(|(a, _)| a.failed())
                || load
                    .iter()
                    .zip(&at_kill)
                    .all(|((a, _), n)| a.succeeded() >= n + 10)
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for (answered, task) in load {
        task.await.unwrap();
        let bad = answered.bad.lock().unwrap();
        assert!(
            bad.is_empty(),
            "calls to the surviving hosts failed: {bad:?}"
        );
        let good = answered.succeeded();
        assert!(good > 10, "only {good} calls");
    }
    doomed.await.unwrap();
    assert!(
        served_by_2.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "host 2 served nothing before it was killed"
    );
    let acked = acked.lock().unwrap().clone();
    let versions = ok(&h1.cli(&["versions", "--env", "prod", "--name", "churn"]));
    for v in &acked {
        assert!(
            versions
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&v.to_string())),
            "acknowledged version {v} lost: {versions}"
        );
    }
    assert_eq!(errcode(&h3.call(&a_token, "prod", "churn").await), 0);
    eprintln!("host 2 killed after {} acknowledged deploys", acked.len());

    // A secret rotated through host 1 ends the app's tokens on host 3 within a second.
    ok(&h1.cli(&["app", "rotate-secret", "wxA"]));
    within(Duration::from_secs(1), "the rotation on host 3", || async {
        errcode(&h3.call(&a_token, "prod", "echo").await) != 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_survive_a_postgresql_restart() {
    let store = Store::start();
    // Set up on the store directly, without a server.
    let secret = secret_of(&store.cli(&["app", "create", "wxA", "--subject", "Acme"]));
    ok(&store.cli(&["env", "create", "prod", "--owner", "wxA"]));
    ok(&store.cli(&["deploy", "--env", "prod", "--name", "echo", paths::ECHO]));
    // Without the shared key, a PostgreSQL store does not open.
    let out = Bin::new(&store.dir.path().join("cli"))
        .command(&["--store", &store.url, "ls", "--env", "prod"])
        .env_remove("CLOUDFN_TOKEN_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLOUDFN_TOKEN_KEY"));

    let (h1, h2) = (store.host("h1"), store.host("h2"));
    let token = h1.token("wxA", &secret).await;
    for h in [&h1, &h2] {
        within(
            Duration::from_secs(1),
            "the token on both hosts",
            || async { errcode(&h.call(&token, "prod", "echo").await) == 0 },
        )
        .await;
    }

    store.pg.stop().unwrap();
    // Not ready while the store is unreachable, but calls go on from the state in memory.
    within(Duration::from_secs(10), "readyz turning 503", || async {
        h1.ready().await == 503 && h2.ready().await == 503
    })
    .await;
    assert_eq!(errcode(&h2.call(&token, "prod", "echo").await), 0);
    // A change cannot be made, and says why.
    let out = h1.cli(&["env", "create", "other", "--owner", "wxA"]);
    assert!(!out.status.success());

    store.pg.restart().unwrap();
    let took = within(
        Duration::from_secs(15),
        "readyz after the restart",
        || async { h1.ready().await == 200 && h2.ready().await == 200 },
    )
    .await;
    eprintln!("hosts ready again {took:?} after PostgreSQL restarted");
    // They listen again: a deploy through one is served by the other within a second.
    ok(&h1.cli(&["deploy", "--env", "prod", "--name", "after", paths::ECHO]));
    within(
        Duration::from_secs(1),
        "a deploy after the restart",
        || async { errcode(&h2.call(&token, "prod", "after").await) == 0 },
    )
    .await;
}
