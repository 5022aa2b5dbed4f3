//! The memory limit of one call: refuses growth past it and remembers the peak and whether the
//! guest hit the limit (so a failed call is reported as out of memory, not as a trap).

use wasmtime::ResourceLimiter;

/// Enforces a call's memory limit and remembers whether the guest hit it and its peak.
#[derive(Debug)]
pub struct MemLimiter {
    limit: usize,
    total: usize,
    /// The most linear memory the call had at once, in bytes.
    pub peak: usize,
    /// Whether a growth was refused because of the limit.
    pub hit: bool,
}

impl MemLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total.
    pub fn new(limit: usize) -> Self {
        MemLimiter {
            limit,
            total: 0,
            peak: 0,
            hit: false,
        }
    }
}

impl MemLimiter {
    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for MemLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current + desired;
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn limiter_refuses_growth_past_the_limit_and_tracks_peak() {
        let mut l = MemLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!l.memory_growing(1 << 19, 2 << 20, None).unwrap());
        assert!(l.hit);
        assert_eq!(l.peak, 1 << 19);
    }
}
