//! A private PostgreSQL cluster for tests: `initdb` into a temp dir, the server on a free
//! loopback port with its socket in that dir, stopped when dropped. The binaries are the
//! system's (`CLOUDFN_PG_BIN`, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`); as root they run as the `postgres` user, since PostgreSQL
//! refuses to run as root.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running cluster. Its superuser is `cloudfn`, trusted on loopback (no password).
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl PgCluster {
    /// Initialises and starts a cluster.
    pub fn start() -> anyhow::Result<PgCluster> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("cloudfn-pg-").tempdir()?;
        if is_root() {
            // The server runs as `postgres`: it must own its directory.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(status.success(), "chown of {} failed", dir.path().display());
        }
        let data = dir.path().join("data");
        run(
            as_server_user(&bin.join("initdb"))
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "cloudfn",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        )?;
        let port = free_port()?;
        let cluster = PgCluster { dir, bin, port };
        cluster.pg_ctl("start")?;
        Ok(cluster)
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://cloudfn@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database named `db`.
    pub fn create_db(&self, db: &str) -> anyhow::Result<String> {
        run(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-U", "cloudfn", "-p"])
                .arg(self.port.to_string())
                .arg(db),
            "createdb",
        )?;
        Ok(self.url(db))
    }

    /// Stops the server (fast shutdown: open connections are ended).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl("stop")
    }

    /// Starts a stopped server again, on the same port.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.pg_ctl("start")
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let data = self.dir.path().join("data");
        let mut cmd = as_server_user(&self.bin.join("pg_ctl"));
        cmd.arg(action)
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w"]);
        if action == "start" {
            cmd.arg("-l")
                .arg(self.dir.path().join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
                    self.port,
                    self.dir.path().display()
                ));
        }
        run(&mut cmd, &format!("pg_ctl {action}")).map_err(|e| {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            e.context(format!("server log:\n{log}"))
        })
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.discard();
    }
}

impl PgCluster {
    /// Stops the server at once and removes its files: what dropping does, for a cluster
    /// kept in a `static` (which is never dropped).
    pub fn discard(&self) {
        let data = self.dir.path().join("data");
        let _ = as_server_user(&self.bin.join("pg_ctl"))
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The directory of the PostgreSQL server binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLOUDFN_PG_BIN") {
        return Ok(dir.into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).context(
        "no PostgreSQL server binaries (initdb, pg_ctl): install the distribution's \
         `postgresql` package (scripts/test.sh does) or set CLOUDFN_PG_BIN",
    )
}
