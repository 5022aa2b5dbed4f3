//! What is learnt from every call, in one place: the [`Observer`] sees each finished call with
//! its origin (a user call, a `cloudbase_auth` run, a nested call, a file run) and whether it
//! was refused before any guest code ran. [`Standard`] turns that into Prometheus metrics, an
//! activation record, and a log line for grant decisions. A new per-call metric is a field of
//! [`crate::metrics::Metrics`] and a line in [`Standard::finished`].

use crate::call::{Call, Invocation};
use crate::error::InvokeError;
use crate::metrics::{CallLabels, Metrics};
use cloudfn_store::{Activation, ActivationLog};
use std::sync::Arc;
use std::time::Duration;

/// A finished call as the observer sees it.
pub struct Finished<'a> {
    /// The call, given up to the observer: its record takes the call's names rather than
    /// copies of them.
    pub call: Call,
    /// What it did.
    pub invocation: &'a Invocation,
    /// Start, Unix milliseconds.
    pub started_at_ms: i64,
    /// Whether a guest ran (false: refused before anything ran).
    pub ran: bool,
}

/// Sees every call.
pub trait Observer: Send + Sync {
    /// A call started running a guest.
    fn started(&self) {}
    /// A call's guest stopped running (also when the call was dropped half-way).
    fn ended(&self) {}
    /// A call's guest finished (or the call was refused).
    fn finished(&self, f: Finished<'_>);
}

/// Metrics, activation records, and decision logs.
pub struct Standard {
    /// The metrics.
    pub metrics: Metrics,
    records: Arc<dyn ActivationLog>,
    decision_lines: LineBudget,
    log_bytes: LogBudget,
    /// Records of `init` decisions, per env and calling app.
    init_records: crate::quota::RateLimit,
}

/// What an `init` decision's record names as its function: no function runs, and no
/// function can have this name (names are letters, digits, `_` and `-`).
pub const INIT_RECORD: &str = "cloud.init";

/// `init` decisions recorded per env and calling app, per minute: every decision of a shared
/// env is in the records, but a client calling `init` in a loop must not evict the env's
/// records of real calls (the rest are counted in the metrics and the log).
const INIT_RECORDS_PER_MINUTE: u32 = 10;

/// Decision lines logged at INFO per second, at most; any app with a token can make the host
/// decide (and refuse) as fast as it can send, and the log must not grow at that rate. Every
/// decision is in the activation records or the metrics either way.
const DECISION_LINES_PER_SECOND: u32 = 20;

/// Lines allowed per second, and how many were held back.
#[derive(Default)]
struct LineBudget {
    /// The current second (since the Unix epoch) and the lines logged in it, packed.
    window: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LineBudget {
    /// Whether a line may be logged now; when a new second starts, says how many were held
    /// back in the last one(s).
    fn allow(&self, per_second: u32) -> bool {
        use std::sync::atomic::Ordering;
        let now = cloudfn_store::fsutil::now() as u64;
        let mut current = self.window.load(Ordering::Relaxed);
        loop {
            let (second, used) = (current >> 32, current as u32);
            let next = if second == now {
                if used >= per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                (now << 32) | u64::from(used + 1)
            } else {
                (now << 32) | 1
            };
            match self.window.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if second != now {
                        let held = self.suppressed.swap(0, Ordering::Relaxed);
                        if held > 0 {
                            tracing::info!(
                                "{held} more grant decisions were not logged (over \
                                 {per_second} lines a second); the activation records and \
                                 metrics have them"
                            );
                        }
                    }
                    return true;
                }
                Err(seen) => current = seen,
            }
        }
    }
}

impl Standard {
    /// An observer writing records to `records`, its metrics labelled with `host`.
    pub fn new(records: Arc<dyn ActivationLog>, host: Option<&str>) -> Self {
        Standard {
            metrics: Metrics::new(host),
            records,
            decision_lines: LineBudget::default(),
            log_bytes: LogBudget::default(),
            init_records: crate::quota::RateLimit::new(
                INIT_RECORDS_PER_MINUTE,
                Duration::from_secs(60),
            ),
        }
    }

    /// Records a shared env's `init` decision (`cloud.init()` of another app's env), within
    /// [`INIT_RECORDS_PER_MINUTE`] per env and calling app.
    pub fn init_decided(&self, init: InitDecision<'_>) {
        // As for calls: a refusal anyone with a token can provoke is not recorded.
        if matches!(init.result, Err(InvokeError::NotShared { .. })) {
            return;
        }
        let key = format!("{}/{}", init.env, init.decision.caller_appid);
        if !self.init_records.allow(&key) {
            return;
        }
        let (errcode, errmsg) = match init.result {
            Ok(()) => (0, String::new()),
            Err(e) => (e.errcode(), e.to_string()),
        };
        self.records.record(Activation {
            seq: 0,
            request_id: init.request_id,
            env: init.env.to_string(),
            function: INIT_RECORD.to_string(),
            version: None,
            caller_appid: Some(init.decision.caller_appid.clone()),
            source: init.source.to_string(),
            started_at_ms: init.started_at_ms,
            duration_us: init.duration.as_micros() as i64,
            errcode,
            errmsg,
            peak_memory: 0,
            logs: Vec::new(),
            decision: Some(init.decision.clone()),
        });
    }
}

/// An `init` decision, for its record.
pub struct InitDecision<'a> {
    /// The request id the record carries.
    pub request_id: String,
    /// The shared env.
    pub env: &'a str,
    /// SOURCE of the `init`.
    pub source: &'a str,
    /// When it started, Unix ms.
    pub started_at_ms: i64,
    /// How long deciding took.
    pub duration: Duration,
    /// The decision.
    pub decision: &'a cloudfn_store::Decision,
    /// Granted, or why not.
    pub result: Result<(), &'a InvokeError>,
}

impl Observer for Standard {
    fn started(&self) {
        self.metrics.in_flight.inc();
    }

    fn ended(&self) {
        self.metrics.in_flight.dec();
    }

    fn finished(&self, f: Finished<'_>) {
        let inv = f.invocation;
        let req = &f.call.request;
        if f.ran {
            // Refusals took no time worth a latency sample.
            self.metrics.latency.observe(inv.duration.as_secs_f64());
        }
        let (errcode, errmsg) = match &inv.result {
            Ok(_) => (0, "ok".to_string()),
            Err(InvokeError::System(e)) => {
                tracing::error!(request_id = %inv.request_id, env = %req.env,
                    function = %req.name, "system error: {e:#}");
                (-1, format!("system error: {e:#}"))
            }
            Err(e) => (e.errcode(), e.to_string()),
        };
        let errcode_label = match &inv.result {
            Ok(_) => None,
            Err(InvokeError::Denied { .. }) => Some("denied".to_string()),
            Err(_) => Some(errcode.to_string()),
        };
        match errcode_label {
            None => self.metrics.calls_ok.inc(),
            Some(errcode) => self
                .metrics
                .calls
                .get_or_create(&CallLabels { errcode })
                .inc(),
        };
        // A decision is logged when it is made (within a lines-per-second budget); its reuse
        // from the cache, or one over the budget, only at debug level.
        match &inv.decision {
            Some(d) if !d.cached && self.decision_lines.allow(DECISION_LINES_PER_SECOND) => {
                tracing::info!(
                    env = %req.env, function = %req.name, caller = %d.caller_appid,
                    origin = f.call.origin.as_str(), allowed = d.allowed, step = %d.step,
                    "{}", d.reason
                )
            }
            Some(d) => tracing::debug!(
                env = %req.env, function = %req.name, caller = %d.caller_appid,
                origin = f.call.origin.as_str(), allowed = d.allowed, step = %d.step,
                "{}{}", if d.cached { "cached: " } else { "" }, d.reason
            ),
            None => {}
        }
        // A refusal anyone with a token can provoke (an env that does not exist or is not
        // shared with them) is counted above but not recorded: records are kept per env, and
        // such a flood would evict the env's real ones.
        if !f.ran
            && matches!(
                inv.result,
                Err(InvokeError::EnvNotFound(_) | InvokeError::NotShared { .. })
            )
        {
            return;
        }
        // Only calls that reached an existing env are charted: a refusal before the env was
        // looked up (a bad name, an oversized event) may name any env, and must not make the
        // history keep one for it.
        let reached_env = f.ran
            || inv.version.is_some()
            || inv.decision.is_some()
            || matches!(inv.result, Err(InvokeError::FunctionNotFound { .. }));
        if reached_env {
            self.metrics.history.record(
                &req.env,
                (f.started_at_ms.max(0) as u64 + inv.duration.as_millis() as u64) / 1000,
                f.ran.then_some(inv.duration),
                errcode != 0,
            );
        }
        let logs = self.log_bytes.keep(&req.env, &inv.logs);
        let caller_appid = f.call.caller.appid().map(str::to_string);
        let req = f.call.request;
        self.records.record(Activation {
            seq: 0,
            request_id: inv.request_id.clone(),
            env: req.env,
            function: req.name,
            version: inv.version,
            caller_appid,
            source: req.source,
            started_at_ms: f.started_at_ms,
            duration_us: inv.duration.as_micros() as i64,
            errcode,
            errmsg,
            peak_memory: inv.peak_memory as i64,
            logs,
            decision: inv.decision.clone(),
        });
    }
}

/// Log bytes an env's records may carry per second, on average; a burst of this many per
/// second times [`LOG_BURST_SECONDS`] is allowed. Past it, its records keep a marker instead of
/// their logs: a tenant logging megabytes per call must not make the host write (and fsync)
/// its logs as fast as it can produce them. (The call's own answer and `cloudfn logs` of later
/// calls are unaffected.)
pub const LOG_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
/// See [`LOG_BYTES_PER_SECOND`].
const LOG_BURST_SECONDS: f64 = 8.0;

/// Per-env budgets of log bytes in records.
struct LogBudget(crate::quota::RateLimit);

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget(crate::quota::RateLimit::per_second(
            LOG_BYTES_PER_SECOND,
            LOG_BYTES_PER_SECOND * LOG_BURST_SECONDS,
        ))
    }
}

impl LogBudget {
    /// `logs` if `env` has the room for them, else a one-line marker.
    fn keep(&self, env: &str, logs: &[cloudfn_store::LogLine]) -> Vec<cloudfn_store::LogLine> {
        let bytes: usize = logs.iter().map(|l| l.message.len()).sum();
        if bytes == 0 {
            return Vec::new();
        }
        if self.0.take(env, bytes as f64) {
            return logs.to_vec();
        }
        vec![cloudfn_store::LogLine {
            stream: cloudfn_store::LogStream::Stderr,
            level: None,
            message: format!(
                "[cloudfn: {bytes} bytes of logs not kept: env {env} is over its log rate of \
                 {} KB/s in records]",
                LOG_BYTES_PER_SECOND as u64 / 1024
            ),
        }]
    }
}
