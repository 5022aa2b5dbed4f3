//! Fair shares of the CPU between envs. Guest code runs on the same async workers as the HTTP
//! side, in slices: a guest that computes without pause yields at every epoch tick
//! ([`crate::EPOCH_TICK`]). Without a scheduler, 64 looping calls of one env fill the
//! workers' run queues and another env's call waits behind all of them. With it, a guest
//! needs a *turn* to run a slice, at most `capacity` turns are out at once (one per core), and
//! a freed turn goes to the envs that wait in round-robin order: an env with 64 waiting calls
//! gets one turn when it comes round, like an env with one. Waiting calls sit in the
//! scheduler's queues, not in the runtime's, so the HTTP side and other envs keep moving.
//!
//! A turn is held only while a slice runs (one poll of the call's future), never while the
//! guest waits (for a nested call, a sleep, I/O); a nested call runs within its caller's turn.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Hands out turns to run guest code, fairly between envs.
pub struct Scheduler {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Turns out now (held by running slices, or granted to a waiter about to run).
    running: usize,
    /// Envs with waiters, in the order they get the next turns.
    ring: VecDeque<Arc<str>>,
    /// Each waiting env's waiters, oldest first.
    queues: HashMap<Arc<str>, VecDeque<Arc<Waiter>>>,
}

/// A call waiting for a turn.
#[derive(Default)]
struct Waiter {
    /// Whether a turn was handed to it, and whom to wake.
    state: Mutex<(bool, Option<Waker>)>,
}

thread_local! {
    /// Whether this thread is running a slice (so a nested call needs no turn of its own).
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
}

impl Scheduler {
    /// A scheduler with `capacity` turns (at least one).
    pub fn new(capacity: usize) -> Scheduler {
        Scheduler {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Turns out at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `work` (a call of a guest in `env`) a slice at a time, each slice in a turn.
    pub async fn run<F: Future>(&self, env: &str, work: F) -> F::Output {
        Fair {
            sched: self,
            env,
            waiter: None,
            work: Box::pin(work),
        }
        .await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a turn now, or queues `env`'s waiter for the next one.
    fn acquire(&self, env: &str, waker: &Waker) -> Option<Arc<Waiter>> {
        let mut inner = self.lock();
        // Nobody waits: take a free turn. Otherwise wait in line, even with a turn free for
        // a moment, so that arrivals cannot overtake the queue.
        if inner.running < self.capacity && inner.ring.is_empty() {
            inner.running += 1;
            return None;
        }
        let waiter = Arc::new(Waiter {
            state: Mutex::new((false, Some(waker.clone()))),
        });
        let env: Arc<str> = match inner.queues.get_key_value(env) {
            Some((k, _)) => k.clone(),
            None => {
                let env: Arc<str> = env.into();
                inner.ring.push_back(env.clone());
                env
            }
        };
        inner
            .queues
            .entry(env)
            .or_default()
            .push_back(waiter.clone());
        // A turn may have been free while the line was not empty: hand it on now.
        if inner.running < self.capacity {
            inner.running += 1;
            let next = Self::next_waiter(&mut inner);
            drop(inner);
            if let Some(w) = next {
                grant(&w);
            }
        }
        Some(waiter)
    }

    /// Gives a turn back: to the next env in line, or to the pool.
    fn release(&self) {
        let mut inner = self.lock();
        let next = Self::next_waiter(&mut inner);
        if next.is_none() {
            inner.running -= 1;
        }
        drop(inner);
        if let Some(w) = next {
            grant(&w);
        }
    }

    /// The oldest waiter of the env whose go it is; that env goes to the back of the line.
    fn next_waiter(inner: &mut Inner) -> Option<Arc<Waiter>> {
        let env = inner.ring.pop_front()?;
        let queue = inner.queues.get_mut(&env).expect("ring envs have queues");
        let waiter = queue.pop_front();
        if queue.is_empty() {
            inner.queues.remove(&env);
        } else {
            inner.ring.push_back(env);
        }
        waiter
    }

    /// A waiter that gives up: out of the line, or its granted turn passed on.
    fn cancel(&self, env: &str, waiter: &Arc<Waiter>) {
        let mut inner = self.lock();
        let granted = waiter.state.lock().unwrap_or_else(|e| e.into_inner()).0;
        if granted {
            drop(inner);
            self.release();
            return;
        }
        if let Some(queue) = inner.queues.get_mut(env) {
            queue.retain(|w| !Arc::ptr_eq(w, waiter));
            if queue.is_empty() {
                inner.queues.remove(env);
                inner.ring.retain(|e| &**e != env);
            }
        }
    }
}

fn grant(waiter: &Waiter) {
    let mut state = waiter.state.lock().unwrap_or_else(|e| e.into_inner());
    state.0 = true;
    if let Some(w) = state.1.take() {
        w.wake();
    }
}

/// A call's future, polled only within turns.
struct Fair<'a, F> {
    sched: &'a Scheduler,
    env: &'a str,
    waiter: Option<Arc<Waiter>>,
    work: Pin<Box<F>>,
}

impl<F: Future> Future for Fair<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if IN_TURN.get() {
            return self.work.as_mut().poll(cx);
        }
        match &self.waiter {
            None => {
                if let Some(w) = self.sched.acquire(self.env, cx.waker()) {
                    self.waiter = Some(w);
                    return Poll::Pending;
                }
            }
            Some(w) => {
                let mut state = w.state.lock().unwrap_or_else(|e| e.into_inner());
                if !state.0 {
                    state.1 = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                drop(state);
                self.waiter = None;
            }
        }
        // Release the turn even if the guest's host code panics.
        struct Turn<'s>(&'s Scheduler);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                IN_TURN.set(false);
                self.0.release();
            }
        }
        let _turn = Turn(self.sched);
        IN_TURN.set(true);
        self.work.as_mut().poll(cx)
    }
}

impl<F> Drop for Fair<'_, F> {
    fn drop(&mut self) {
        if let Some(w) = self.waiter.take() {
            self.sched.cancel(self.env, &w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A slice-at-a-time worker: busy for `slice`, then yields, `slices` times.
    async fn spin(slices: usize, slice: Duration) {
        for _ in 0..slices {
            let end = std::time::Instant::now() + slice;
            while std::time::Instant::now() < end {}
            tokio::task::yield_now().await;
        }
    }

    /// One turn, 16 looping calls of env a queued first: a call of env b still runs after at
    /// most a couple of a's slices, not after all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_env_cannot_starve_another() {
        let sched = Arc::new(Scheduler::new(1));
        let a_slices = Arc::new(AtomicUsize::new(0));
        let mut loops = Vec::new();
        for _ in 0..16 {
            let (sched, count) = (sched.clone(), a_slices.clone());
            loops.push(tokio::spawn(async move {
                sched
                    .run("a", async {
                        for _ in 0..50 {
                            spin(1, Duration::from_millis(2)).await;
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = a_slices.load(Ordering::Relaxed);
        sched.run("b", spin(3, Duration::from_micros(10))).await;
        let during = a_slices.load(Ordering::Relaxed) - before;
        // b's 3 slices each wait for at most one slice of a (plus one in flight).
        assert!(during <= 8, "a ran {during} slices while b waited");
        for l in loops {
            l.abort();
        }
    }

    /// Dropped waiters give their turn back: nothing leaks, later calls still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_waiters_give_their_turns_back() {
        let sched = Arc::new(Scheduler::new(1));
        for _ in 0..20 {
            let s = sched.clone();
            let t =
                tokio::spawn(async move { s.run("a", spin(100, Duration::from_millis(1))).await });
            tokio::time::sleep(Duration::from_millis(2)).await;
            t.abort();
        }
        tokio::time::timeout(Duration::from_secs(5), sched.run("b", async {}))
            .await
            .expect("a turn is free");
        assert_eq!(sched.lock().running, 0);
        assert!(sched.lock().ring.is_empty());
    }

    /// A call made inside a slice (a nested call) runs in its caller's turn.
    #[tokio::test]
    async fn nested_calls_use_the_callers_turn() {
        let sched = Scheduler::new(1);
        let out = sched
            .run("a", async { sched.run("b", async { 7 }).await })
            .await;
        assert_eq!(out, 7);
    }
}
