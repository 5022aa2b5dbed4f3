//! Per-key rate limits (token buckets), for what one tenant may make the host do per second:
//! new access tokens per app (each a database write and fsync, and a state reload for every
//! other tenant's next call), log bytes kept in records per env (each written to disk).

use dashmap::DashMap;
use std::time::{Duration, Instant};

/// A token bucket per key: `burst` at once, refilled at `per_second`.
pub struct RateLimit {
    burst: f64,
    per_second: f64,
    buckets: DashMap<String, (f64, Instant)>,
}

/// Most keys remembered; past it, full buckets are forgotten (they hold no state worth keeping).
const MAX_KEYS: usize = 100_000;

impl RateLimit {
    /// `burst` events at once, `burst` more per `period`.
    pub fn new(burst: u32, period: Duration) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit::per_second(burst / period.as_secs_f64().max(1e-3), burst)
    }

    /// `per_second` units a second, up to `burst` at once.
    pub fn per_second(per_second: f64, burst: f64) -> RateLimit {
        RateLimit {
            burst,
            per_second,
            buckets: DashMap::new(),
        }
    }

    /// Takes one event for `key`, or says it is over its rate.
    pub fn allow(&self, key: &str) -> bool {
        self.take(key, 1.0)
    }

    /// Takes `amount` units for `key`, or says there are not that many (and takes none).
    pub fn take(&self, key: &str, amount: f64) -> bool {
        let now = Instant::now();
        if self.buckets.len() >= MAX_KEYS {
            let (burst, rate) = (self.burst, self.per_second);
            self.buckets.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let mut bucket = self
            .buckets
            .entry(key.to_string())
            .or_insert((self.burst, now));
        let (level, at) = &mut *bucket;
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *level >= amount {
            *level -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_is_refused_and_others_are_not() {
        let limit = RateLimit::new(3, Duration::from_secs(3600));
        assert!((0..3).all(|_| limit.allow("a")));
        assert!(!limit.allow("a"));
        assert!(limit.allow("b"));
    }
}
