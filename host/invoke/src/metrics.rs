//! Prometheus metrics: calls and errors by errcode, call latency, instances in flight, each
//! labelled with the host's name when it has one. Served as text on the admin listener's
//! `/metrics`. Beside them, [`History`]: the last hour per env, which the console charts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::borrow::Cow;

/// Labels of the call counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// 0 for success, else the protocol errcode; `denied` for a `cloudbase_auth` denial,
    /// whose own errCodes are the guest's to choose and must not grow the label set.
    pub errcode: String,
}

/// The host's metrics.
pub struct Metrics {
    registry: Registry,
    /// Calls by outcome.
    pub calls: Family<CallLabels, Counter>,
    /// Call latency in seconds.
    pub latency: Histogram,
    /// Instances running now.
    pub in_flight: Gauge,
    /// Per-env calls, errors and latency over the last hour, for the console.
    pub history: History,
}

impl Metrics {
    /// The metrics of a host; with several hosts behind one load balancer each names itself,
    /// and every series carries `host="NAME"`.
    pub fn new(host: Option<&str>) -> Self {
        let labels = host.map(|h| (Cow::Borrowed("host"), Cow::Owned(h.to_string())));
        let mut registry = Registry::with_prefix_and_labels("cloudfn", labels.into_iter());
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            LATENCY_FIRST_US as f64 / 1e6,
            2.0,
            LATENCY_BUCKETS as u16,
        ));
        let in_flight = Gauge::default();
        registry.register(
            "calls",
            "Function calls by errcode (0 = success)",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Wall-clock duration of function calls",
            latency.clone(),
        );
        registry.register(
            "instances_in_flight",
            "Function instances running now",
            in_flight.clone(),
        );
        Metrics {
            registry,
            calls,
            latency,
            in_flight,
            history: History::default(),
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Width of one [`History`] bucket, in seconds.
pub const BUCKET_SECONDS: u64 = 10;
/// Buckets kept per env: one hour.
pub const BUCKETS: usize = 360;
/// The latency histograms' first bound, in microseconds; each next one doubles it.
const LATENCY_FIRST_US: u64 = 50;
/// How many bounds they have (the Prometheus one and the history's alike).
const LATENCY_BUCKETS: usize = 18;
/// The history's latency bounds, in microseconds (the Prometheus histogram's, in seconds
/// there); past the last, an open bucket.
const LATENCY_BOUNDS_US: [u64; LATENCY_BUCKETS] = {
    let mut b = [0u64; LATENCY_BUCKETS];
    let mut i = 0;
    while i < LATENCY_BUCKETS {
        b[i] = LATENCY_FIRST_US << i;
        i += 1;
    }
    b
};
/// Envs whose history is kept (at most ~33 KB each, for a full hour of calls); past it, envs
/// idle for an hour are dropped to make room, and if none is, a new env is not charted.
const MAX_ENVS: usize = 10_000;

/// One bucket of an env's history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bucket {
    /// Start, in [`BUCKET_SECONDS`] since the Unix epoch.
    slot: u64,
    calls: u32,
    errors: u32,
    /// Calls that ran a guest, by latency (the last entry: over the last bound).
    latency: [u32; LATENCY_BOUNDS_US.len() + 1],
}

/// One point of an env's history, as the console charts it.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Start of the bucket, Unix seconds.
    pub at: u64,
    /// Calls finished in it.
    pub calls: u32,
    /// Of them, calls that failed (any errcode, denials included).
    pub errors: u32,
    /// Median latency of the calls that ran a guest, in ms (upper bound of its histogram
    /// bucket); `None` when none ran.
    pub p50_ms: Option<f64>,
    /// 99th percentile, likewise.
    pub p99_ms: Option<f64>,
}

/// Per-env calls, errors and latency over the last hour in 10-second buckets, kept in memory
/// for the console's charts: the Prometheus series are totals with no env label (an env label
/// would let tenants grow the scrape without bound), and the console has no other source.
#[derive(Default)]
pub struct History {
    envs: dashmap::DashMap<String, std::sync::Mutex<std::collections::VecDeque<Bucket>>>,
}

impl History {
    /// Counts one finished call of `env` at Unix second `now`; `ran` is its latency when a
    /// guest ran.
    pub fn record(&self, env: &str, now: u64, ran: Option<std::time::Duration>, failed: bool) {
        let slot = now / BUCKET_SECONDS;
        let add = |ring: &mut std::collections::VecDeque<Bucket>| {
            if ring.back().is_none_or(|b| b.slot < slot) {
                if ring.len() == BUCKETS {
                    ring.pop_front();
                }
                ring.push_back(Bucket {
                    slot,
                    ..Bucket::default()
                });
            }
            // A late finisher (a call that started before the newest bucket) lands in the
            // newest one; a minute's skew in a 10 s chart does not matter.
            let b = ring.back_mut().expect("a bucket was just pushed");
            b.calls += 1;
            b.errors += u32::from(failed);
            if let Some(d) = ran {
                let us = d.as_micros() as u64;
                let i = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
                b.latency[i] += 1;
            }
        };
        if let Some(ring) = self.envs.get(env) {
            add(&mut ring.lock().unwrap_or_else(|p| p.into_inner()));
            return;
        }
        if self.envs.len() >= MAX_ENVS {
            // Full: envs idle for the whole hour make room (a removed env's history goes
            // then too); if none is idle, the new env is not charted.
            self.envs.retain(|_, ring| {
                ring.get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .back()
                    .is_some_and(|b| b.slot + BUCKETS as u64 > slot)
            });
            if self.envs.len() >= MAX_ENVS {
                return;
            }
        }
        let ring = self.envs.entry(env.to_string()).or_default();
        add(&mut ring.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// `env`'s last hour up to Unix second `now`, one point per bucket, oldest first (empty
    /// buckets included, so a chart's x axis is time).
    pub fn series(&self, env: &str, now: u64) -> Vec<Point> {
        let last = now / BUCKET_SECONDS;
        let first = last + 1 - BUCKETS as u64;
        let mut points: Vec<Point> = (first..=last)
            .map(|slot| Point {
                at: slot * BUCKET_SECONDS,
                calls: 0,
                errors: 0,
                p50_ms: None,
                p99_ms: None,
            })
            .collect();
        if let Some(ring) = self.envs.get(env) {
            for b in ring.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                if b.slot < first || b.slot > last {
                    continue;
                }
                let p = &mut points[(b.slot - first) as usize];
                p.calls = b.calls;
                p.errors = b.errors;
                p.p50_ms = quantile(&b.latency, 0.5);
                p.p99_ms = quantile(&b.latency, 0.99);
            }
        }
        points
    }
}

/// The upper bound (ms) of the histogram bucket holding quantile `q`; the open last bucket
/// reports twice the last bound.
fn quantile(counts: &[u32], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank {
            let bound = LATENCY_BOUNDS_US
                .get(i)
                .copied()
                .unwrap_or(LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1] * 2);
            return Some(bound as f64 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn history_buckets_calls_errors_and_latency_by_ten_seconds_for_an_hour() {
        let h = History::default();
        let t0 = 1_700_000_000;
        for i in 0..99 {
            h.record("e", t0, Some(Duration::from_micros(70)), i % 10 == 0);
        }
        h.record("e", t0 + 1, Some(Duration::from_millis(30)), true);
        h.record("e", t0 + 10, None, true);
        let s = h.series("e", t0 + 10);
        assert_eq!(s.len(), BUCKETS);
        let (prev, last) = (s[BUCKETS - 2], s[BUCKETS - 1]);
        assert_eq!((prev.calls, prev.errors), (100, 11));
        assert_eq!(prev.p50_ms, Some(0.1));
        assert_eq!(prev.p99_ms, Some(0.1));
        assert_eq!(last.at, (t0 + 10) / 10 * 10);
        assert_eq!((last.calls, last.errors, last.p50_ms), (1, 1, None));
        // An hour later the old buckets are gone.
        let later = h.series("e", t0 + 3600);
        assert_eq!(later.iter().map(|p| p.calls).sum::<u32>(), 1);
        assert!(h.series("other", t0).iter().all(|p| p.calls == 0));
    }

    #[test]
    fn a_full_history_makes_room_by_dropping_envs_idle_for_an_hour() {
        let h = History::default();
        let t0 = 1_700_000_000;
        for i in 0..MAX_ENVS {
            h.record(&format!("e{i}"), t0, None, false);
        }
        h.record("busy", t0, None, false);
        assert_eq!(
            h.series("busy", t0)[BUCKETS - 1].calls,
            0,
            "full: not charted"
        );
        let later = t0 + 3600 + BUCKET_SECONDS;
        h.record("busy", later, None, false);
        assert_eq!(h.series("busy", later)[BUCKETS - 1].calls, 1);
        assert_eq!(h.envs.len(), 1, "the idle envs made room");
    }
}
