//! The memory limits of one call: its own limit, and its share of the host's [`MemoryBudget`]
//! (all live instances together, and each env's part of that). The limiter refuses growth past
//! either and remembers which one refused, so a failed call is reported as out of memory (its
//! own limit) or as a full host (the budget), not as a trap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime::ResourceLimiter;

/// The linear memory all live instances may hold together, and the part of it one env's
/// instances may hold (so one tenant's memory bombs leave room for the others).
#[derive(Debug)]
pub struct MemoryBudget {
    total: Arc<Counter>,
    per_env: usize,
    envs: Mutex<HashMap<String, Arc<Counter>>>,
}

/// Bytes held against a limit.
#[derive(Debug)]
struct Counter {
    used: AtomicUsize,
    limit: usize,
}

impl Counter {
    fn take(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.limit {
            self.used.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl MemoryBudget {
    /// A budget of `total` bytes, of which one env may hold `per_env`.
    pub fn new(total: usize, per_env: usize) -> MemoryBudget {
        MemoryBudget {
            total: Arc::new(Counter {
                used: AtomicUsize::new(0),
                limit: total,
            }),
            per_env,
            envs: Mutex::default(),
        }
    }

    /// Bytes held by all live instances now.
    pub fn used(&self) -> usize {
        self.total.used.load(Ordering::Acquire)
    }

    /// An account for one call of a function in `env`.
    fn account(&self, env: &str) -> Account {
        let mut envs = self.envs.lock().unwrap_or_else(|e| e.into_inner());
        let env = match envs.get(env) {
            Some(c) => c.clone(),
            None => {
                // Envs that hold nothing are forgotten, so the map holds busy envs only.
                envs.retain(|_, c| Arc::strong_count(c) > 1);
                let c = Arc::new(Counter {
                    used: AtomicUsize::new(0),
                    limit: self.per_env,
                });
                envs.insert(env.to_string(), c.clone());
                c
            }
        };
        Account {
            total: self.total.clone(),
            env,
            held: 0,
        }
    }
}

/// One call's bytes in the budget, given back when the call's store drops.
#[derive(Debug)]
struct Account {
    total: Arc<Counter>,
    env: Arc<Counter>,
    held: usize,
}

impl Account {
    fn grow(&mut self, bytes: usize) -> bool {
        if !self.env.take(bytes) {
            return false;
        }
        if !self.total.take(bytes) {
            self.env.give(bytes);
            return false;
        }
        self.held += bytes;
        true
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.env.give(self.held);
        self.total.give(self.held);
    }
}

/// Enforces a call's memory limits and remembers which one the guest hit, and its peak.
#[derive(Debug)]
pub struct MemLimiter {
    limit: usize,
    total: usize,
    account: Account,
    /// The most linear memory the call had at once, in bytes.
    pub peak: usize,
    /// Whether a growth was refused because of the call's own limit.
    pub hit: bool,
    /// Whether a growth was refused because the host's (or the env's) budget was full.
    pub host_full: bool,
}

impl MemLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total, within `budget` for `env`.
    pub fn new(limit: usize, budget: &MemoryBudget, env: &str) -> Self {
        MemLimiter {
            limit,
            total: 0,
            account: budget.account(env),
            peak: 0,
            hit: false,
            host_full: false,
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
        if total > self.account.held && !self.account.grow(total - self.account.held) {
            self.host_full = true;
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
        let budget = MemoryBudget::new(usize::MAX, usize::MAX);
        let mut l = MemLimiter::new(1 << 20, &budget, "e");
        assert!(l.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!l.memory_growing(1 << 19, 2 << 20, None).unwrap());
        assert!(l.hit);
        assert!(!l.host_full);
        assert_eq!(l.peak, 1 << 19);
    }

    /// Calls share the host's budget and their env's part of it, and give it back when done.
    #[test]
    fn calls_share_the_budget_and_each_env_its_part() {
        let budget = MemoryBudget::new(4 << 20, 2 << 20);
        let mut a1 = MemLimiter::new(8 << 20, &budget, "a");
        let mut a2 = MemLimiter::new(8 << 20, &budget, "a");
        assert!(a1.memory_growing(0, 2 << 20, None).unwrap());
        // env a holds its 2 MB part: another call of a is refused, one of b is not.
        assert!(!a2.memory_growing(0, 1 << 20, None).unwrap());
        assert!(a2.host_full && !a2.hit);
        let mut b = MemLimiter::new(8 << 20, &budget, "b");
        assert!(b.memory_growing(0, 2 << 20, None).unwrap());
        assert_eq!(budget.used(), 4 << 20);
        let mut c = MemLimiter::new(8 << 20, &budget, "c");
        assert!(
            !c.memory_growing(0, 1 << 16, None).unwrap(),
            "the host is full"
        );
        drop((a1, b));
        assert_eq!(budget.used(), 0);
        assert!(c.memory_growing(0, 1 << 20, None).unwrap());
    }
}
