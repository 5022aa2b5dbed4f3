//! Files written so a crash leaves the old content or the new, never half of it; the clock;
//! and the deliberate crash points the interrupted-deploy tests use.

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Deliberate crash points for tests of interrupted deploys: set `CLOUDFN_CRASH_AT` to a step
/// name and the process aborts there, as a power cut would.
pub fn crash_point(step: &str) {
    if std::env::var_os("CLOUDFN_CRASH_AT").is_some_and(|v| v == step) {
        eprintln!("cloudfn: simulated crash at {step}");
        std::process::abort();
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one: a temp file
/// in the same directory, fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .context("atomic write needs a parent directory")?;
    let tmp = dir.join(format!(
        "{}.tmp-{}-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Removes temp files an interrupted [`write_atomic`] left in `dir`, if older than ten minutes
/// (a young one may be another process's write in progress).
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 600);
        if stale && entry.file_name().to_string_lossy().contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Sets `path`'s permission bits to `mode` (on Unix; elsewhere a no-op).
pub fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("restricting {} to {mode:o}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Lowers the calling thread's CPU priority (nice 10): for background work (writing records)
/// that must not take the CPU from answering calls when a tenant makes a lot of it; it still
/// gets the CPU that is idle. Best effort: where it cannot, nothing changes.
pub fn background_priority() {
    set_thread_nice(10);
}

/// Sets the calling thread's nice value; whether it took (Linux; elsewhere nothing happens).
/// Lowering the priority is always allowed; raising it back only where the process may (root,
/// `CAP_SYS_NICE` or `RLIMIT_NICE`): see [`can_restore_priority`].
pub fn set_thread_nice(nice: i32) -> bool {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read their arguments; on Linux, PRIO_PROCESS with a
    // thread id sets that thread's nice value.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        false
    }
}

/// Whether a thread of this process can lower its priority and raise it back (tried on a
/// thread of its own, which then ends).
pub fn can_restore_priority() -> bool {
    std::thread::spawn(|| set_thread_nice(10) && set_thread_nice(0))
        .join()
        .unwrap_or(false)
}
