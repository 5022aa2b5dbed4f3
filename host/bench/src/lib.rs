//! What the benchmark driver and the criterion benches share: the bench world (two apps of one
//! company, an env with echo and `cloudbase_auth`, a share), built with the real `cloudfn`
//! binary; servers as child processes with their CPU time and RSS read from `/proc`; `wrk`
//! runs and their figures; a small HTTP client for tokens and checks.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The env of the bench world.
pub const ENV: &str = "bench";
/// The owner app.
pub const OWNER: &str = "wxA";
/// The app the env is shared with.
pub const SHAREE: &str = "wxB";
/// The event every benchmark request sends.
pub const EVENT: &str = r#"{"a":1}"#;

/// A binary next to the running one (`cargo build --release` puts them all in one dir).
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    // criterion benches run from target/release/deps.
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// The credentials `cloudfn app create` prints once.
#[derive(Debug, Clone)]
pub struct Creds {
    /// For `/cgi-bin/token`.
    pub secret: String,
    /// For `/admin` TC3 signatures.
    pub secret_id: String,
    /// For `/admin` TC3 signatures.
    pub secret_key: String,
}

/// A data dir made by the real CLI, as an operator would.
pub struct World {
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// The `cloudfn` binary.
    pub cloudfn: PathBuf,
    /// Each app's credentials.
    pub apps: HashMap<String, Creds>,
    /// Global flags before every command (`--store URL --token-key HEX` for a PostgreSQL
    /// world).
    pub global: Vec<String>,
}

impl World {
    /// Apps wxA (owner, sharing on) and wxB of one company; env `bench` owned by wxA with
    /// `echo` and a `cloudbase_auth` that grants wxB; the env shared with wxB.
    pub fn build(cloudfn: &Path) -> anyhow::Result<World> {
        Self::build_with(cloudfn, Vec::new())
    }

    /// [`World::build`] with `global` flags on every command: `--store URL --token-key HEX`
    /// puts the world in a PostgreSQL database.
    pub fn build_with(cloudfn: &Path, global: Vec<String>) -> anyhow::Result<World> {
        let mut world = World {
            dir: tempfile::tempdir()?,
            cloudfn: cloudfn.to_path_buf(),
            apps: HashMap::new(),
            global,
        };
        for app in [OWNER, SHAREE] {
            let out = world.cf(&["app", "create", app, "--subject", "Bench Co"])?;
            let field = |name: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                    .with_context(|| format!("`app create` printed no {name}"))
            };
            let creds = Creds {
                secret: field("secret:")?,
                secret_id: field("secretId:")?,
                secret_key: field("secretKey:")?,
            };
            world.apps.insert(app.to_string(), creds);
        }
        world.cf(&["app", "sharing", OWNER, "on"])?;
        world.cf(&["env", "create", ENV, "--owner", OWNER])?;
        world.cf(&[
            "deploy",
            "--env",
            ENV,
            "--name",
            "echo",
            cloudfn_test_guests::ECHO,
        ])?;
        world.cf(&[
            "deploy",
            "--env",
            ENV,
            "--name",
            "cloudbase_auth",
            cloudfn_test_guests::CLOUDBASE_AUTH,
            "--var",
            &format!("allowed_appids={SHAREE}"),
        ])?;
        world.cf(&["share", "add", "--env", ENV, "--to", SHAREE])?;
        world.cf(&[
            "deploy",
            "--env",
            ENV,
            "--name",
            "probe",
            "--kind",
            "http",
            cloudfn_test_guests::HTTP_PROBE,
        ])?;
        Ok(world)
    }

    /// Runs the CLI on this world's data dir; its stdout, or why it failed.
    pub fn cf(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all: Vec<&str> = self.global.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        run_cloudfn(&self.cloudfn, self.dir.path(), &all)
    }

    /// Starts `cloudfn serve` on this world with `extra` flags.
    pub fn serve(&self, extra: &[&str]) -> anyhow::Result<Served> {
        self.serve_in(self.dir.path(), extra)
    }

    /// Starts `cloudfn serve` with `data_dir` as its data dir (with a PostgreSQL world, each
    /// host's own artifact cache and env directories).
    pub fn serve_in(&self, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Served> {
        let (port, admin_port) = (free_port()?, free_port()?);
        let mut cmd = Command::new(&self.cloudfn);
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(&self.global)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .args(extra);
        let server = Server::spawn("cloudfn", cmd, "Serving HTTP on")?;
        Ok(Served {
            server,
            base: format!("http://127.0.0.1:{port}"),
        })
    }
}

/// Runs `cloudfn --data-dir DIR ARGS`; its stdout, or its stderr as the error.
pub fn run_cloudfn(cloudfn: &Path, dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(cloudfn)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .with_context(|| format!("running {}", cloudfn.display()))?;
    if !out.status.success() {
        bail!(
            "cloudfn {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A running `cloudfn serve`.
pub struct Served {
    /// The process.
    pub server: Server,
    /// `http://127.0.0.1:PORT` of its public listener.
    pub base: String,
}

impl Served {
    /// `/tcb/invokecloudfunction` of `env`/`name` with `token`.
    pub fn invoke_url(&self, token: &str, env: &str, name: &str) -> String {
        format!(
            "{}/tcb/invokecloudfunction?access_token={token}&env={env}&name={name}",
            self.base
        )
    }

    /// The benchmark's load: POST the event to echo of the bench env with `token`.
    pub fn echo_load(&self, token: &str) -> Load {
        Load {
            script: None,
            url: self.invoke_url(token, ENV, "echo"),
            body: Some(EVENT.into()),
            headers: vec![],
        }
    }

    /// The HTTP-function load: the same event POSTed through callContainer to `probe` (a
    /// wasi:http function answering what it received) with `token`.
    pub fn container_load(&self, token: &str) -> Load {
        Load {
            script: None,
            url: format!("{}/bench", self.base),
            body: Some(EVENT.into()),
            headers: vec![
                ("X-WX-SERVICE".into(), "probe".into()),
                ("X-WX-ENV".into(), ENV.into()),
                ("Authorization".into(), format!("Bearer {token}")),
            ],
        }
    }

    /// An access token for `appid`.
    pub async fn token(&self, appid: &str, creds: &Creds) -> anyhow::Result<String> {
        let url = format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={}",
            self.base, creds.secret
        );
        let (_, body) = request("GET", &url, &[], "").await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        v["access_token"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("no token for {appid}: {body}"))
    }
}

/// A server under test, killed on drop.
pub struct Server {
    /// What it is.
    pub name: String,
    child: Child,
}

impl Server {
    /// Starts `cmd` and waits (≤ 30 s) until it prints a line containing `ready`.
    pub fn spawn(name: &str, mut cmd: Command, ready: &str) -> anyhow::Result<Server> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("BENCH_SERVER_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut signalled = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !signalled && line.contains(&ready) {
                    let _ = tx.send(());
                    signalled = true;
                }
            }
        });
        let server = Server {
            name: name.to_string(),
            child,
        };
        rx.recv_timeout(Duration::from_secs(30))
            .with_context(|| format!("{name} did not become ready"))?;
        Ok(server)
    }

    /// Starts `cmd` and waits (≤ 30 s) until 127.0.0.1:`port` accepts connections.
    pub fn spawn_until_port(name: &str, mut cmd: Command, port: u16) -> anyhow::Result<Server> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let server = Server {
            name: name.to_string(),
            child,
        };
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until {
                bail!("{name} did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system, all threads) the process has used so far.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(self.pid())
    }

    /// Resident memory in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        self.status_bytes("VmRSS:")
    }

    /// Resident memory in bytes: (anonymous, file-backed such as mapped artifacts).
    pub fn rss_split(&self) -> anyhow::Result<(u64, u64)> {
        Ok((
            self.status_bytes("RssAnon:")?,
            self.status_bytes("RssFile:")?,
        ))
    }

    fn status_bytes(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {field} in /proc/PID/status"))?;
        Ok(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 request; the status and the body as text.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string())))?)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// A load: one request `wrk` repeats.
#[derive(Debug, Clone)]
pub struct Load {
    /// The full URL.
    pub url: String,
    /// POST with this body (GET when None).
    pub body: Option<String>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// A wrk script that makes each request itself (instead of repeating the one above, which
    /// [`Load::check`] still sends once).
    pub script: Option<String>,
}

impl Load {
    /// Sends the request once and checks the answer is a success: HTTP 200 and, for the
    /// WeChat and /admin dialects, no error code in the body.
    pub async fn check(&self) -> anyhow::Result<String> {
        let (method, body) = match &self.body {
            Some(b) => ("POST", b.as_str()),
            None => ("GET", ""),
        };
        let mut headers = self.headers.clone();
        if self.body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let (status, text) = request(method, &self.url, &headers, body).await?;
        let v: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let failed = status != 200
            || v.as_ref().is_some_and(|v| {
                v.get("errcode").is_some_and(|c| c != 0)
                    || v.get("code").is_some_and(|c| !c.is_null() && c != "")
            });
        if failed {
            bail!("{} answered {status}: {text}", self.url);
        }
        Ok(text)
    }

    fn lua(&self) -> String {
        if let Some(script) = &self.script {
            return script.clone();
        }
        let mut s = String::new();
        if let Some(body) = &self.body {
            s.push_str("wrk.method = \"POST\"\n");
            s.push_str(&format!("wrk.body = {}\n", lua_string(body)));
            s.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
        }
        for (k, v) in &self.headers {
            s.push_str(&format!(
                "wrk.headers[{}] = {}\n",
                lua_string(k),
                lua_string(v)
            ));
        }
        s
    }
}

fn lua_string(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    format!("\"{escaped}\"")
}

/// What one `wrk` run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests completed.
    pub requests: u64,
    /// Responses that were not 2xx/3xx, and socket errors.
    pub errors: u64,
    /// Server CPU per request.
    pub cpu_per_request: Duration,
}

/// Runs `wrk -t2 -cCONNS -dSECS --latency` with `load` against `server`, measuring the
/// server's CPU over the run.
pub fn wrk(server: &Server, load: &Load, conns: u32, secs: u32) -> anyhow::Result<Figures> {
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), load.lua())?;
    let cpu_before = server.cpu()?;
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
        ])
        .arg("-s")
        .arg(script.path())
        .arg(&load.url)
        .output()
        .context("running wrk (install it: apt-get install wrk)")?;
    let cpu = server.cpu()?.saturating_sub(cpu_before);
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    if std::env::var_os("BENCH_WRK_OUTPUT").is_some() {
        eprintln!("{}\n{}", load.lua(), String::from_utf8_lossy(&out.stdout));
    }
    let mut f = parse_wrk(&String::from_utf8_lossy(&out.stdout))?;
    if f.requests > 0 {
        f.cpu_per_request = cpu / f.requests as u32;
    }
    Ok(f)
}

fn parse_wrk(out: &str) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => f.p50 = parse_duration(v)?,
            ["99%", v] => f.p99 = parse_duration(v)?,
            ["Requests/sec:", v] => f.rps = v.parse()?,
            [n, "requests", "in", ..] => f.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => f.errors += n.parse::<u64>()?,
            // Printed by scripts that look into answers (an error code in a 200).
            ["Refused", "answers:", n] => f.errors += n.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                for w in rest {
                    if let Ok(n) = w.trim_end_matches(',').parse::<u64>() {
                        f.errors += n;
                    }
                }
            }
            _ => {}
        }
    }
    if f.requests == 0 {
        bail!("wrk reported no requests:\n{out}");
    }
    Ok(f)
}

fn parse_duration(v: &str) -> anyhow::Result<Duration> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60.0)
    } else {
        bail!("unknown duration {v}")
    };
    Ok(Duration::from_secs_f64(num.parse::<f64>()? * scale))
}

/// The median of each figure over `runs`.
pub fn median(runs: &[Figures]) -> Figures {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v[v.len() / 2]
    }
    Figures {
        rps: mid(runs.iter().map(|f| f.rps).collect()),
        p50: mid(runs.iter().map(|f| f.p50).collect()),
        p99: mid(runs.iter().map(|f| f.p99).collect()),
        requests: mid(runs.iter().map(|f| f.requests).collect()),
        errors: runs.iter().map(|f| f.errors).sum(),
        cpu_per_request: mid(runs.iter().map(|f| f.cpu_per_request).collect()),
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Seconds since `t`, for progress lines.
pub fn since(t: Instant) -> String {
    format!("{:.1} s", t.elapsed().as_secs_f64())
}

/// `wasm` with a custom section appended: the same function with other bytes (and so another
/// content hash, compiled and cached apart), as distinct functions would be.
pub fn distinct(wasm: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"cloudfn-bench";
    let mut content = Vec::new();
    leb(name.len(), &mut content);
    content.extend_from_slice(name);
    content.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    leb(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// A wrk script sending `POST /admin?env=ENV&seqId=…` with `body`, each request signed anew
/// (TC3, as the server SDK does: a fresh seqId, the current second) with the app's key through
/// OpenSSL's libcrypto (LuaJIT FFI), because cloudfn accepts a signature once. Answers with an
/// error `code` are counted and printed as "Refused answers: N".
pub fn signed_admin_script(
    host: &str,
    env: &str,
    body: &serde_json::Map<String, serde_json::Value>,
    secret_id: &str,
    secret_key: &str,
) -> anyhow::Result<String> {
    const MARK: &str = "SEQ";
    let query = format!("env={env}&seqId={MARK}");
    let headers = |name: &str| match name {
        "host" => Some(host.to_string()),
        "content-type" => Some("application/json".to_string()),
        _ => None,
    };
    let req = cloudfn_gateway::tc3::SignedRequest {
        host,
        path: "/admin",
        query: &query,
        header: &headers,
        body,
    };
    let (canonical, params) = cloudfn_gateway::tc3::client_canonical(&req)
        .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
    let (before, after) = canonical
        .split_once(MARK)
        .ok_or_else(|| anyhow::anyhow!("no seqId in the canonical request"))?;
    let body_text = serde_json::Value::Object(body.clone()).to_string();
    Ok(SIGNED_ADMIN_LUA
        .replace("@BEFORE@", &lua_string(before))
        .replace("@AFTER@", &lua_string(after))
        .replace("@ENV@", &lua_string(env))
        .replace("@BODY@", &lua_string(&body_text))
        .replace("@SECRET_ID@", &lua_string(secret_id))
        .replace("@SECRET_KEY@", &lua_string(secret_key))
        .replace("@PARAMS@", &lua_string(&params))
        .replace(
            "@HEADERS@",
            &lua_string(cloudfn_gateway::tc3::CLIENT_SIGNED_HEADERS),
        ))
}

const SIGNED_ADMIN_LUA: &str = r#"
local ffi = require("ffi")
ffi.cdef[[
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
const void *EVP_sha256(void);
unsigned char *HMAC(const void *md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *out, unsigned int *out_len);
]]
local crypto = ffi.load("libcrypto.so.3")
local out, out_len = ffi.new("unsigned char[32]"), ffi.new("unsigned int[1]")
local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", string.byte(c)) end))
end
local function sha256(s) crypto.SHA256(s, #s, out) return ffi.string(out, 32) end
local function hmac(key, s)
  crypto.HMAC(crypto.EVP_sha256(), key, #key, s, #s, out, out_len)
  return ffi.string(out, 32)
end
local before, after, env, body = @BEFORE@, @AFTER@, @ENV@, @BODY@
local secret_id, secret_key, params, signed = @SECRET_ID@, @SECRET_KEY@, @PARAMS@, @HEADERS@
-- id and refused are globals: wrk's thread:set and thread:get reach only those.
id, refused = 0, 0
local threads, seq = {}, 0
local day, k_signing = nil, nil
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function request()
  seq = seq + 1
  local ts = os.time()
  local date = os.date("!%Y-%m-%d", ts)
  if date ~= day then
    day = date
    k_signing = hmac(hmac(hmac("TC3" .. secret_key, date), "tcb"), "tc3_request")
  end
  local seq_id = id .. "-" .. seq
  local to_sign = "TC3-HMAC-SHA256\n" .. ts .. "\n" .. date .. "/tcb/tc3_request\n"
    .. hex(sha256(before .. seq_id .. after))
  local auth = "TC3-HMAC-SHA256 Credential=" .. secret_id .. "/" .. date
    .. "/tcb/tc3_request, SignedParams=" .. params .. ", SignedHeaders=" .. signed
    .. ", Signature=" .. hex(hmac(k_signing, to_sign))
  return wrk.format("POST", "/admin?env=" .. env .. "&seqId=" .. seq_id, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = auth,
    ["X-Timestamp"] = tostring(ts),
    ["X-Signature-Expires"] = "600",
  }, body)
end
function response(status, headers, answer)
  if status ~= 200 or answer:find('"code":"', 1, true) then refused = refused + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("refused") or 0) end
  print("Refused answers: " .. total)
end
"#;
