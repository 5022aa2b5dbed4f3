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

/// A finished call as the observer sees it.
pub struct Finished<'a> {
    /// The call.
    pub call: &'a Call,
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
    fn finished(&self, f: &Finished<'_>);
}

/// Metrics, activation records, and decision logs.
pub struct Standard {
    /// The metrics.
    pub metrics: Metrics,
    records: Arc<dyn ActivationLog>,
}

impl Standard {
    /// An observer writing records to `records`.
    pub fn new(records: Arc<dyn ActivationLog>) -> Self {
        Standard {
            metrics: Metrics::default(),
            records,
        }
    }
}

impl Observer for Standard {
    fn started(&self) {
        self.metrics.in_flight.inc();
    }

    fn ended(&self) {
        self.metrics.in_flight.dec();
    }

    fn finished(&self, f: &Finished<'_>) {
        let inv = f.invocation;
        let req = &f.call.request;
        if f.ran {
            // Refusals took no time worth a latency sample.
            self.metrics.latency.observe(inv.duration.as_secs_f64());
        }
        let (errcode, errmsg) = match &inv.result {
            Ok(_) => (0, "ok".to_string()),
            Err(e) => (e.errcode(), e.to_string()),
        };
        let label = match &inv.result {
            Err(InvokeError::Denied { .. }) => "denied".to_string(),
            _ => errcode.to_string(),
        };
        self.metrics
            .calls
            .get_or_create(&CallLabels { errcode: label })
            .inc();
        // A decision is logged when it is made; its reuse from the cache only at debug level
        // (it is in the activation record either way).
        match &inv.decision {
            Some(d) if !d.cached => tracing::info!(
                env = %req.env, function = %req.name, caller = %d.caller_appid,
                origin = f.call.origin.as_str(), allowed = d.allowed, step = %d.step,
                "{}", d.reason
            ),
            Some(d) => tracing::debug!(
                env = %req.env, function = %req.name, caller = %d.caller_appid,
                origin = f.call.origin.as_str(), allowed = d.allowed, step = %d.step,
                "cached: {}", d.reason
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
        self.records.record(Activation {
            seq: 0,
            request_id: inv.request_id.clone(),
            env: req.env.clone(),
            function: req.name.clone(),
            version: inv.version,
            caller_appid: f.call.caller.appid().map(str::to_string),
            source: req.source.clone(),
            started_at_ms: f.started_at_ms,
            duration_us: inv.duration.as_micros() as i64,
            errcode,
            errmsg,
            peak_memory: inv.peak_memory as i64,
            logs: inv.logs.clone(),
            decision: inv.decision.clone(),
        });
    }
}
