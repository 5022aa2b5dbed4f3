//! Prometheus metrics: calls and errors by errcode, call latency, instances in flight, each
//! labelled with the host's name when it has one. Served as text on the admin listener's
//! `/metrics`.

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
}

impl Metrics {
    /// The metrics of a host; with several hosts behind one load balancer each names itself,
    /// and every series carries `host="NAME"`.
    pub fn new(host: Option<&str>) -> Self {
        let labels = host.map(|h| (Cow::Borrowed("host"), Cow::Owned(h.to_string())));
        let mut registry = Registry::with_prefix_and_labels("cloudfn", labels.into_iter());
        let calls = Family::<CallLabels, Counter>::default();
        let latency = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.000_05, 2.0, 18,
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
