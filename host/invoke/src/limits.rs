//! Every limit a call is held to, in one place: per-env concurrency slots, call depth, event and
//! result sizes, the time limit (the function's own, the call path's default, and what is left
//! of a calling function's time), and each env's disk quota.

use crate::call::Call;
use crate::error::InvokeError;
use cloudfn_store::FunctionConfig;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How deep function-to-function calls may nest.
pub const MAX_CALL_DEPTH: u32 = 8;
/// Largest event and largest result (protocol §8: 6 MB sync calls).
pub const MAX_RESULT_BYTES: usize = 6 * 1024 * 1024;

/// The host's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most calls running at once in one env (nested calls count too). A call past it waits
    /// up to `slot_wait` for a slot (at most as many calls wait as the cap), then gets -501004.
    pub env_concurrency: usize,
    /// How long a call may wait for a slot of its full env. A short wait smooths bursts, and
    /// a client looping on a full env gets its refusals at this pace, not as fast as it asks.
    pub slot_wait: Duration,
    /// Largest result a function may return.
    pub max_result_bytes: usize,
    /// Largest event a function-to-function call may pass.
    pub max_event_bytes: usize,
    /// How deep function-to-function calls may nest.
    pub max_depth: u32,
    /// Bytes of disk an env directory may use. Functions deployed with write access see it
    /// read-only while it is over (until files are removed); usage is measured after each
    /// call of such a function, so one call may overshoot by what it writes in its time.
    pub env_disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            env_concurrency: 64,
            slot_wait: Duration::from_millis(100),
            max_result_bytes: MAX_RESULT_BYTES,
            max_event_bytes: MAX_RESULT_BYTES,
            max_depth: MAX_CALL_DEPTH,
            env_disk_bytes: 1 << 30,
        }
    }
}

impl Limits {
    /// Checks what can be checked of a call before anything is looked up: its depth, and its
    /// event (JSON, and within the size limit for a nested call, whose event no gateway
    /// bounded).
    pub fn admit(&self, call: &Call) -> Result<(), InvokeError> {
        if call.depth >= self.max_depth {
            return Err(InvokeError::DepthExceeded(self.max_depth));
        }
        if call.http.is_some() {
            // An HTTP request's body was bounded by its gateway; it need not be JSON.
            return Ok(());
        }
        let event = &call.request.event;
        if event.len() > self.max_event_bytes {
            return Err(InvokeError::InvalidParam(format!(
                "the event is {} bytes, over the {}-byte limit",
                event.len(),
                self.max_event_bytes
            )));
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(event) {
            return Err(InvokeError::InvalidParam(format!(
                "the event is not JSON: {e}"
            )));
        }
        Ok(())
    }

    /// The time limit of a call of a function with `config`, and when it ends: the function's
    /// own limit, else the call path's default, never past the caller's deadline.
    pub fn time(&self, config: &FunctionConfig, call: &Call, now: Instant) -> (Duration, Instant) {
        let mut timeout = config
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(call.request.default_timeout);
        if let Some(deadline) = call.deadline {
            timeout = timeout.min(deadline.saturating_duration_since(now));
        }
        (timeout, now + timeout)
    }
}

/// The per-env concurrency slots (a sharded map: calls of different envs share no lock).
#[derive(Default)]
pub struct Slots {
    per_env: DashMap<String, Arc<EnvSlots>>,
}

struct EnvSlots {
    free: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Slots {
    /// Takes a slot of `env`'s cap of `limit`, waiting up to `wait` (and never past
    /// `deadline`) when the env is full, or says it is full.
    pub async fn take(
        &self,
        env: &str,
        limit: usize,
        wait: Duration,
        deadline: Option<Instant>,
    ) -> Result<OwnedSemaphorePermit, InvokeError> {
        let existing = self.per_env.get(env).map(|s| s.clone());
        let slots = existing.unwrap_or_else(|| {
            self.per_env
                .entry(env.to_string())
                .or_insert_with(|| {
                    Arc::new(EnvSlots {
                        free: Arc::new(Semaphore::new(limit)),
                        waiting: AtomicUsize::new(0),
                    })
                })
                .clone()
        });
        if let Ok(permit) = slots.free.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let busy = || InvokeError::TooBusy {
            env: env.to_string(),
            limit,
        };
        let wait = match deadline {
            Some(d) => wait.min(d.saturating_duration_since(Instant::now())),
            None => wait,
        };
        if wait.is_zero() || slots.waiting.fetch_add(1, Ordering::AcqRel) >= limit {
            if !wait.is_zero() {
                slots.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(busy());
        }
        let got = tokio::time::timeout(wait, slots.free.clone().acquire_owned()).await;
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        match got {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(busy()),
        }
    }
}

/// What each env directory uses on disk, as last measured.
#[derive(Default)]
pub struct DiskUsage {
    per_env: DashMap<String, Arc<EnvDisk>>,
}

#[derive(Default)]
struct EnvDisk {
    bytes: std::sync::atomic::AtomicU64,
    measuring: std::sync::atomic::AtomicBool,
}

/// Most directory entries one measurement visits (bounds its time on a huge tree; such a
/// tree is over any sane quota long before).
const MAX_ENTRIES: usize = 1_000_000;

impl DiskUsage {
    fn env(&self, env: &str) -> Arc<EnvDisk> {
        if let Some(e) = self.per_env.get(env) {
            return e.clone();
        }
        self.per_env.entry(env.to_string()).or_default().clone()
    }

    /// Whether `env` used more than `quota` bytes when last measured.
    pub fn over(&self, env: &str, quota: u64) -> bool {
        self.per_env
            .get(env)
            .is_some_and(|e| e.bytes.load(std::sync::atomic::Ordering::Relaxed) > quota)
    }

    /// Measures `env`'s directory `dir` again, off the async workers (once at a time per env).
    pub fn remeasure(&self, env: &str, dir: std::path::PathBuf) {
        use std::sync::atomic::Ordering;
        let e = self.env(env);
        if e.measuring.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::task::spawn_blocking(move || {
            e.bytes.store(measure(&dir), Ordering::Relaxed);
            e.measuring.store(false, Ordering::Release);
        });
    }
}

/// Disk blocks under `dir` in bytes (blocks, not lengths: a sparse file counts what it
/// occupies), symlinks not followed.
fn measure(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let (mut total, mut seen, mut stack) = (0u64, 0usize, vec![dir.to_path_buf()]);
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return u64::MAX;
            }
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_call_at_a_full_env_waits_for_a_slot_then_is_refused() {
        let slots = Arc::new(Slots::default());
        let held = slots.take("e", 1, WAIT, None).await.unwrap();
        // A slot freed within the wait goes to the waiting call.
        let waiter = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take("e", 1, WAIT, None).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap());
        // Nothing freed: refused once the wait is over, as busy.
        let _held = slots.take("e", 1, WAIT, None).await.unwrap();
        let started = Instant::now();
        let refused = slots.take("e", 1, WAIT, None).await.unwrap_err();
        assert!(matches!(refused, InvokeError::TooBusy { limit: 1, .. }));
        assert!(started.elapsed() >= WAIT);
        // A call whose time is up does not wait.
        let started = Instant::now();
        assert!(slots.take("e", 1, WAIT, Some(started)).await.is_err());
        assert!(started.elapsed() < WAIT);
        // Another env is not affected.
        assert!(slots.take("f", 1, WAIT, None).await.is_ok());
    }

    #[tokio::test]
    async fn at_most_the_cap_waits_beyond_it_calls_are_refused_at_once() {
        let slots = Arc::new(Slots::default());
        let _held = hold(&slots, 2).await;
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move { slots.take("e", 2, WAIT, None).await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        assert!(slots.take("e", 2, WAIT, None).await.is_err());
        assert!(started.elapsed() < WAIT, "refused without waiting");
        for w in waiters {
            assert!(!w.await.unwrap());
        }
    }

    async fn hold(slots: &Slots, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(slots.take("e", n, WAIT, None).await.unwrap());
        }
        held
    }
}
