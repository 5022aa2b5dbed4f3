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
    /// The successes' counter of `calls`, kept at hand: most calls succeed, and looking it up
    /// by label costs a String and a lock each time.
    pub calls_ok: Counter,
    /// Call latency in seconds.
    pub latency: Histogram,
    /// Instances running now.
    pub in_flight: Gauge,
    /// The `host` label of every series, if the host has a name (for the series built when
    /// the metrics are served).
    host: Option<String>,
    /// Per-env calls, errors and latency over the last hour, for the console.
    pub history: History,
}

impl Metrics {
    /// The metrics of a host; with several hosts behind one load balancer each names itself,
    /// and every series carries `host="NAME"`.
    pub fn new(host: Option<&str>) -> Self {
        let mut registry = registry(host);
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
        let calls_ok = calls
            .get_or_create(&CallLabels {
                errcode: "0".into(),
            })
            .clone();
        Metrics {
            registry,
            calls,
            calls_ok,
            latency,
            in_flight,
            host: host.map(str::to_string),
            history: History::default(),
        }
    }

    /// The Prometheus text exposition, with the counts kept elsewhere as they are now.
    pub fn encode(&self, now: Counts) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        use prometheus_client::metrics::counter::ConstCounter;
        let mut read = registry(self.host.as_deref());
        read.register(
            "activation_records_dropped",
            "Activation records dropped because the record writer was behind (its queue full)",
            ConstCounter::new(now.records_dropped),
        );
        read.register(
            "calls_inline",
            "Guest calls that ran to their end in their first slice, on the HTTP worker that \
             took the request",
            ConstCounter::new(now.calls_inline),
        );
        read.register(
            "calls_on_guest_threads",
            "Guest calls that ran, or went on, on the guest threads",
            ConstCounter::new(now.calls_on_guest_threads),
        );
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &read))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// A registry of `cloudfn_` series, each labelled `host="NAME"` when the host has a name.
fn registry(host: Option<&str>) -> Registry {
    let labels = host.map(|h| (Cow::Borrowed("host"), Cow::Owned(h.to_string())));
    Registry::with_prefix_and_labels("cloudfn", labels.into_iter())
}

/// What others (the store, the runtime) count, as it is now (each only grows).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Activation records the store dropped.
    pub records_dropped: u64,
    /// Calls that ran to their end inline.
    pub calls_inline: u64,
    /// Calls that ran on the guest threads.
    pub calls_on_guest_threads: u64,
}

/// Width of one [`History`] bucket of the last hour, in seconds.
pub const BUCKET_SECONDS: u64 = 10;
/// Those buckets kept per env: one hour.
pub const BUCKETS: usize = 360;
/// Width of one bucket of the last day, in seconds.
const DAY_BUCKET_SECONDS: u64 = 600;
/// Those buckets kept per env: one day.
const DAY_BUCKETS: usize = 144;
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
/// Envs whose history is kept (at most ~46 KB each, for a full day of calls); past it, envs
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

/// A span of an env's history the console charts: the 5 minutes and the hour in
/// [`BUCKET_SECONDS`] steps, the day in 10-minute steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    FiveMinutes,
    Hour,
    Day,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::FiveMinutes, Window::Hour, Window::Day];

    /// Its name in a link (`5m`, `1h`, `24h`).
    pub fn as_str(self) -> &'static str {
        match self {
            Window::FiveMinutes => "5m",
            Window::Hour => "1h",
            Window::Day => "24h",
        }
    }

    /// The window named `s`, as [`Window::as_str`] spells it.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// Seconds per point.
    pub fn step_seconds(self) -> u64 {
        match self {
            Window::Day => DAY_BUCKET_SECONDS,
            _ => BUCKET_SECONDS,
        }
    }

    /// Points in it.
    pub fn points(self) -> usize {
        match self {
            Window::FiveMinutes => (300 / BUCKET_SECONDS) as usize,
            Window::Hour => BUCKETS,
            Window::Day => DAY_BUCKETS,
        }
    }

    /// Its length in minutes.
    pub fn minutes(self) -> u32 {
        (self.step_seconds() * self.points() as u64 / 60) as u32
    }
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

/// Per-env calls, errors and latency over the last hour in 10-second buckets and over the
/// last day in 10-minute ones, kept in memory for the console's charts: the Prometheus series
/// are totals with no env label (an env label would let tenants grow the scrape without
/// bound), and the console has no other source.
#[derive(Default)]
pub struct History {
    envs: dashmap::DashMap<String, std::sync::Mutex<Rings>>,
}

/// One env's buckets: the hour's and the day's.
#[derive(Default)]
struct Rings {
    hour: std::collections::VecDeque<Bucket>,
    day: std::collections::VecDeque<Bucket>,
}

impl Rings {
    fn add(&mut self, now: u64, latency: Option<usize>, failed: bool) {
        add(
            &mut self.hour,
            now / BUCKET_SECONDS,
            BUCKETS,
            latency,
            failed,
        );
        add(
            &mut self.day,
            now / DAY_BUCKET_SECONDS,
            DAY_BUCKETS,
            latency,
            failed,
        );
    }
}

/// Counts a call in `ring`'s bucket `slot`, keeping at most `cap` buckets.
fn add(
    ring: &mut std::collections::VecDeque<Bucket>,
    slot: u64,
    cap: usize,
    latency: Option<usize>,
    failed: bool,
) {
    if ring.back().is_none_or(|b| b.slot < slot) {
        if ring.len() == cap {
            ring.pop_front();
        }
        ring.push_back(Bucket {
            slot,
            ..Bucket::default()
        });
    }
    // A late finisher (a call that started before the newest bucket) lands in the newest
    // one; a minute's skew in a 10 s chart does not matter.
    let b = ring.back_mut().expect("a bucket was just pushed");
    b.calls += 1;
    b.errors += u32::from(failed);
    if let Some(i) = latency {
        b.latency[i] += 1;
    }
}

impl History {
    /// Counts one finished call of `env` at Unix second `now`; `ran` is its latency when a
    /// guest ran.
    pub fn record(&self, env: &str, now: u64, ran: Option<std::time::Duration>, failed: bool) {
        let slot = now / BUCKET_SECONDS;
        let latency = ran.map(|d| {
            let us = d.as_micros() as u64;
            LATENCY_BOUNDS_US.partition_point(|&bound| bound < us)
        });
        if let Some(rings) = self.envs.get(env) {
            let mut rings = rings.lock().unwrap_or_else(|p| p.into_inner());
            rings.add(now, latency, failed);
            return;
        }
        if self.envs.len() >= MAX_ENVS {
            // Full: envs idle for the whole hour make room (a removed env's history goes
            // then too); if none is idle, the new env is not charted.
            self.envs.retain(|_, rings| {
                rings
                    .get_mut()
                    .unwrap_or_else(|p| p.into_inner())
                    .hour
                    .back()
                    .is_some_and(|b| b.slot + BUCKETS as u64 > slot)
            });
            if self.envs.len() >= MAX_ENVS {
                return;
            }
        }
        let rings = self.envs.entry(env.to_string()).or_default();
        let mut rings = rings.lock().unwrap_or_else(|p| p.into_inner());
        rings.add(now, latency, failed);
    }

    /// `env`'s last hour up to Unix second `now`, one point per bucket, oldest first (empty
    /// buckets included, so a chart's x axis is time).
    pub fn series(&self, env: &str, now: u64) -> Vec<Point> {
        self.window(env, now, Window::Hour)
    }

    /// `env`'s `window` up to Unix second `now`, as [`History::series`].
    pub fn window(&self, env: &str, now: u64, window: Window) -> Vec<Point> {
        let step = window.step_seconds();
        let last = now / step;
        let first = last + 1 - window.points() as u64;
        let mut points: Vec<Point> = (first..=last)
            .map(|slot| Point {
                at: slot * step,
                calls: 0,
                errors: 0,
                p50_ms: None,
                p99_ms: None,
            })
            .collect();
        if let Some(rings) = self.envs.get(env) {
            let rings = rings.lock().unwrap_or_else(|p| p.into_inner());
            let ring = if window == Window::Day {
                &rings.day
            } else {
                &rings.hour
            };
            for b in ring.iter() {
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
    fn the_windows_are_five_minutes_and_an_hour_in_ten_seconds_and_a_day_in_ten_minutes() {
        let h = History::default();
        let t0 = 1_700_000_400; // a 10-minute boundary
        h.record("e", t0, Some(Duration::from_micros(70)), false);
        h.record("e", t0 + 700, None, true);
        h.record("e", t0 + 7200, None, false);
        let now = t0 + 7200;
        let five = h.window("e", now, Window::FiveMinutes);
        assert_eq!((five.len(), five.last().unwrap().at), (30, now));
        assert_eq!(five.iter().map(|p| p.calls).sum::<u32>(), 1);
        let hour = h.window("e", now, Window::Hour);
        assert_eq!(hour.iter().map(|p| p.calls).sum::<u32>(), 1);
        let day = h.window("e", now, Window::Day);
        assert_eq!(day.len(), 144);
        assert_eq!(day.iter().map(|p| p.calls).sum::<u32>(), 3);
        let first = day.iter().find(|p| p.calls > 0).unwrap();
        assert_eq!((first.at, first.calls, first.p50_ms), (t0, 1, Some(0.1)));
        assert_eq!(day.iter().map(|p| p.errors).sum::<u32>(), 1);
        assert_eq!(Window::Day.minutes(), 1440);
        assert_eq!(Window::parse("5m"), Some(Window::FiveMinutes));
        assert_eq!(Window::parse("2h"), None);
        // A day later, the day's first calls are gone.
        let next_day = h.window("e", t0 + 86_400 + 600, Window::Day);
        assert_eq!(next_day.iter().map(|p| p.calls).sum::<u32>(), 1);
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
