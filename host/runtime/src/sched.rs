//! Fair shares of the CPU between envs. Guest code runs on the runtime's guest threads (apart
//! from the HTTP side's), in slices: a guest that computes without pause yields at every epoch
//! tick ([`crate::EPOCH_TICK`]). A guest needs a *turn* to run a slice; at most `capacity`
//! turns are out at once (one per core), and a freed turn goes to the waiting env that
//! has used the least CPU time (the time its slices took): an env with 64 looping calls is
//! charged 1 ms a slice, one answering echo calls 25 µs a call, so the second gets its calls
//! through between the first's slices, and each env gets an equal share of the CPU when both
//! want more than that. While another env is active, one env holds at most half the turns,
//! so a core stays for the others' calls and the host's own work (alone, an env may use all).
//! An env that was idle comes back at the least time of those running: no credit saved up, no
//! debt either. Waiting calls sit in the scheduler's queues, not in the
//! threads' run queues.
//!
//! A turn is held only while a slice runs (one poll of the call's future), never while the
//! guest waits (for a nested call, a sleep, I/O). A nested call is a task of its own
//! (`Runtime::run` spawns every call made inside a slice), so it takes its own turn once its
//! caller's slice ended; [`Scheduler::run`] must never be awaited inside another call's slice.
//!
//! A call's first slice may run *inline*, on the thread that asked for the call (an HTTP
//! worker), when it can have a turn at once: no thread hand-off for the common short call.
//! It still holds a turn while it runs and is charged for it; an env ahead of its share gets
//! no inline slice (its calls go to the guest threads to wait their turn), and a call that
//! needs more than that slice continues on the guest threads (`Runtime::run`).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Hands out turns to run guest code, fairly between envs.
pub struct Scheduler {
    capacity: usize,
    /// Turns one env may hold at once while another env is active: half of them (at least
    /// one), so that however many calls one tenant runs, a turn stays for the others and the
    /// host's own work. An env alone may use them all.
    per_env: usize,
    inner: Mutex<Inner>,
    /// Makes the running slices end early (at their next epoch check).
    preempt: Box<dyn Fn() + Send + Sync>,
    /// Whether slices of an env ahead of its share may run at a lower OS priority (only where
    /// a thread can raise its priority back; otherwise threads would stay low for good).
    demote: bool,
}

#[derive(Default)]
struct Inner {
    /// Turns out now (held by running slices, or granted to a waiter about to run).
    running: usize,
    /// Waiters of all envs.
    waiting: usize,
    /// The envs running or waiting, with their CPU time; an env that has neither is forgotten
    /// [`GRACE`] later.
    envs: HashMap<Arc<str>, Account>,
}

/// An env's use of the scheduler.
#[derive(Default)]
struct Account {
    /// CPU time used by its slices (since it last came back from idle, plus where it started).
    used: Duration,
    /// Its turns out now.
    running: usize,
    /// Its waiters, oldest first.
    waiters: VecDeque<Arc<Waiter>>,
    /// Since when it has had neither (it is forgotten [`GRACE`] later).
    idle_since: Option<Instant>,
}

impl Account {
    fn idle(&self) -> bool {
        self.running == 0 && self.waiters.is_empty()
    }
}

/// How long an idle env still counts as active: a tenant between two calls is still there,
/// and the others are still held to their part of the turns.
const GRACE: Duration = Duration::from_millis(10);

/// A call waiting for a turn.
#[derive(Default)]
struct Waiter {
    /// Whether a turn was handed to it, and whom to wake.
    state: Mutex<(bool, Option<Waker>)>,
}

thread_local! {
    /// Whether this thread runs at the lower priority of an env ahead of its share.
    static DEMOTED: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is running a slice now (a nested call made inside it must not take
    /// a turn of its own there).
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
    /// Whether this thread is polling a call's inline slice (see [`inline`]).
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a call's slice now.
pub(crate) fn in_turn() -> bool {
    IN_TURN.get()
}

/// Runs `poll` (the first poll of a call) as an inline slice: it runs only if a turn is free
/// for its env right now and the env is not ahead of its share; otherwise it returns
/// `Pending` without running guest code, to be polled again on the guest threads.
pub(crate) fn inline<T>(poll: impl FnOnce() -> T) -> T {
    let _inline = Flag::set(&INLINE, true);
    poll()
}

/// A thread-local flag set until dropped (even by a panic), then put back as it was.
struct Flag(&'static std::thread::LocalKey<Cell<bool>>, bool);

impl Flag {
    fn set(key: &'static std::thread::LocalKey<Cell<bool>>, value: bool) -> Flag {
        Flag(key, key.replace(value))
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// What [`Scheduler::acquire`] gave.
enum Acquired {
    /// A turn: run the slice.
    Turn,
    /// In line for a turn.
    Wait(Arc<Waiter>),
    /// No inline slice for this env now (it is ahead of its share, or a turn is not free).
    NotInline,
}

/// How far ahead of the least-served active env an env must be for its slices to run at a
/// lower OS priority.
const AHEAD: Duration = Duration::from_millis(20);

impl Scheduler {
    /// A scheduler with `capacity` turns (at least one); `preempt` makes the running slices
    /// end early, so that a call of an env that has used less than the running ones need not
    /// wait for a whole slice.
    pub fn new(capacity: usize, preempt: Box<dyn Fn() + Send + Sync>) -> Scheduler {
        Scheduler {
            capacity: capacity.max(1),
            per_env: capacity.div_ceil(2).max(1),
            inner: Mutex::new(Inner::default()),
            preempt,
            demote: cloudfn_model::fsutil::can_restore_priority(),
        }
    }

    /// Runs `work` (a call of a guest in `env`) a slice at a time, each slice in a turn. The
    /// turn of the slice that finished `work` is still held when this returns: what the caller
    /// does next without awaiting (a call's teardown) is part of that slice and charged to it,
    /// with no second turn to wait for. Dropping the [`Turn`] gives it back.
    pub async fn run<'a, F: Future>(&'a self, env: &'a str, work: F) -> (F::Output, Turn<'a>) {
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

    /// Takes a turn now, or queues a waiter of `env` for one. For an inline slice (`inline`),
    /// takes a free turn or nothing, and nothing for an env ahead of its share.
    fn acquire(&self, env: &str, waker: &Waker, inline: bool) -> Acquired {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let now = Instant::now();
        inner
            .envs
            .retain(|_, a| a.idle_since.is_none_or(|t| now.duration_since(t) < GRACE));
        if !inner.envs.contains_key(env) {
            // Back from idle (or new): level with the least-served env that is active.
            let used = inner
                .envs
                .values()
                .map(|a| a.used)
                .min()
                .unwrap_or_default();
            inner.envs.insert(
                env.into(),
                Account {
                    used,
                    ..Account::default()
                },
            );
        }
        let cap = self.cap(inner);
        // Nobody waits: take a free turn. Otherwise wait in line, even with a turn free for
        // a moment, so that arrivals cannot overtake the queue.
        let free = inner.running < self.capacity && inner.waiting == 0;
        let ahead = inline && Self::is_ahead(inner, env);
        let account = inner.envs.get_mut(env).expect("inserted above");
        if free && account.running < cap && !ahead {
            account.idle_since = None;
            account.running += 1;
            inner.running += 1;
            return Acquired::Turn;
        }
        if inline {
            // To the guest threads, where it takes a turn or waits for one as usual; an env
            // seen only now is forgotten like any idle one.
            if account.idle() && account.idle_since.is_none() {
                account.idle_since = Some(now);
            }
            return Acquired::NotInline;
        }
        account.idle_since = None;
        let waiter = Arc::new(Waiter {
            state: Mutex::new((false, Some(waker.clone()))),
        });
        account.waiters.push_back(waiter.clone());
        let used = account.used;
        inner.waiting += 1;
        // A turn may be free while the line is not empty (its envs hold their part): hand it
        // to whoever may take it now.
        if inner.running < self.capacity {
            if let Some(w) = Self::next_waiter(inner, cap) {
                inner.running += 1;
                grant(&w);
            }
            return Acquired::Wait(waiter);
        }
        // Every turn is out: if an env that has used more than this one runs, end its slice
        // now rather than at the next tick.
        let busier = inner
            .envs
            .iter()
            .any(|(name, a)| a.running > 0 && a.used > used && &**name != env);
        drop(guard);
        if busier {
            (self.preempt)();
        }
        Acquired::Wait(waiter)
    }

    /// Gives back a turn `env` held for `used`: to the waiting env that has used the least,
    /// or to the pool.
    fn release(&self, env: &str, used: Duration) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(account) = inner.envs.get_mut(env) {
            account.used += used;
            account.running -= 1;
            if account.idle() {
                account.idle_since = Some(Instant::now());
            }
        }
        let cap = self.cap(inner);
        match Self::next_waiter(inner, cap) {
            Some(w) => grant(&w),
            None => inner.running -= 1,
        }
    }

    /// Whether `env` has used more than its share while others are active: its slices then
    /// run at a lower OS priority, so the threads that answer the others' requests get the
    /// core first (the turn is still its; only contended CPU goes elsewhere).
    fn ahead(&self, env: &str) -> bool {
        if !self.demote {
            return false;
        }
        Self::is_ahead(&self.lock(), env)
    }

    /// Whether `env` has used [`AHEAD`] more than another active env.
    fn is_ahead(inner: &Inner, env: &str) -> bool {
        if inner.envs.len() < 2 {
            return false;
        }
        let Some(mine) = inner.envs.get(env).map(|a| a.used) else {
            return false;
        };
        inner
            .envs
            .iter()
            .filter(|(name, _)| &***name != env)
            .any(|(_, a)| a.used + AHEAD < mine)
    }

    /// The turns one env may hold now: all of them while it is the only active env.
    fn cap(&self, inner: &Inner) -> usize {
        if inner.envs.len() > 1 {
            self.per_env
        } else {
            self.capacity
        }
    }

    /// The oldest waiter of the waiting env that has used the least CPU (among those under
    /// `cap` turns), its turn counted to its env.
    fn next_waiter(inner: &mut Inner, cap: usize) -> Option<Arc<Waiter>> {
        let account = inner
            .envs
            .values_mut()
            .filter(|a| !a.waiters.is_empty() && a.running < cap)
            .min_by_key(|a| a.used)?;
        let waiter = account.waiters.pop_front();
        account.running += 1;
        inner.waiting -= 1;
        waiter
    }

    /// A waiter that gives up: out of the line, or its granted turn passed on.
    fn cancel(&self, env: &str, waiter: &Arc<Waiter>) {
        let mut inner = self.lock();
        let granted = waiter.state.lock().unwrap_or_else(|e| e.into_inner()).0;
        if granted {
            drop(inner);
            self.release(env, Duration::ZERO);
            return;
        }
        let inner = &mut *inner;
        if let Some(account) = inner.envs.get_mut(env) {
            let before = account.waiters.len();
            account.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
            inner.waiting -= before - account.waiters.len();
            if account.idle() {
                account.idle_since = Some(Instant::now());
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

/// A turn held: given back, and charged for the time since its slice began, when dropped
/// (even by a panic in the guest's host code).
pub struct Turn<'s> {
    sched: &'s Scheduler,
    env: &'s str,
    started: Instant,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.sched.release(self.env, self.started.elapsed());
    }
}

impl<'a, F: Future> Future for Fair<'a, F> {
    type Output = (F::Output, Turn<'a>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inline = INLINE.get();
        match &self.waiter {
            None => match self.sched.acquire(self.env, cx.waker(), inline) {
                Acquired::Turn => {}
                Acquired::Wait(w) => {
                    self.waiter = Some(w);
                    return Poll::Pending;
                }
                Acquired::NotInline => return Poll::Pending,
            },
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
        let (sched, env) = (self.sched, self.env);
        // Only a guest thread is demoted (an inline slice is never of an env ahead).
        let demote = !inline && sched.ahead(env);
        if !inline && demote != DEMOTED.get() {
            DEMOTED.set(demote);
            cloudfn_model::fsutil::set_thread_nice(if demote { 10 } else { 0 });
            // (If raising it back failed, `demote` would be off: see `can_restore_priority`.)
        }
        let turn = Turn {
            sched,
            env,
            started: Instant::now(),
        };
        let _in_turn = Flag::set(&IN_TURN, true);
        // What runs inside the slice (a nested call's pipeline) is not itself inline.
        let _inline = Flag::set(&INLINE, false);
        self.work.as_mut().poll(cx).map(|output| (output, turn))
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
        let sched = Arc::new(Scheduler::new(1, Box::new(|| {})));
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
                    .await;
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

    /// Polls `work` (a call of `env`) once as an inline slice; whether it ran.
    fn poll_inline(sched: &Scheduler, env: &str) -> bool {
        let ran = Cell::new(false);
        let mut fut = std::pin::pin!(sched.run(env, async {
            assert!(in_turn(), "a slice runs in a turn");
            ran.set(true);
        }));
        let mut cx = Context::from_waker(Waker::noop());
        let polled = inline(|| fut.as_mut().poll(&mut cx));
        assert_eq!(polled.is_ready(), ran.get());
        assert!(!in_turn(), "out of the slice, out of the turn");
        ran.get()
    }

    /// An inline slice takes a free turn and gives it back; with none free, or a line of
    /// waiters, it runs nothing and leaves nothing behind (no waiter, no turn).
    #[test]
    fn an_inline_slice_takes_a_free_turn_or_nothing() {
        let sched = Scheduler::new(1, Box::new(|| {}));
        assert!(poll_inline(&sched, "a"));
        assert_eq!(sched.lock().running, 0);
        // The one turn is out.
        sched.lock().running = 1;
        assert!(!poll_inline(&sched, "b"));
        {
            let inner = sched.lock();
            assert_eq!((inner.running, inner.waiting), (1, 0));
            assert!(inner.envs["b"].idle() && inner.envs["b"].idle_since.is_some());
        }
        // A turn is free, but others are in line before it.
        sched.lock().running = 0;
        sched.lock().waiting = 1;
        assert!(!poll_inline(&sched, "b"));
        sched.lock().waiting = 0;
        assert!(poll_inline(&sched, "b"));
    }

    /// An env that has used more than its share gets no inline slice; the others do.
    #[test]
    fn an_env_ahead_of_its_share_gets_no_inline_slice() {
        let sched = Scheduler::new(2, Box::new(|| {}));
        for (env, used) in [("busy", AHEAD * 3), ("light", Duration::ZERO)] {
            sched.lock().envs.insert(
                env.into(),
                Account {
                    used,
                    ..Account::default()
                },
            );
        }
        assert!(!poll_inline(&sched, "busy"));
        assert!(poll_inline(&sched, "light"));
    }

    /// The turn of the slice that finished the work stays out until the caller drops it, and
    /// is charged for the time until then (a call's teardown needs no turn of its own).
    #[test]
    fn a_held_turn_is_out_and_charged_until_dropped() {
        let sched = Scheduler::new(1, Box::new(|| {}));
        let mut fut = std::pin::pin!(sched.run("a", async { 7 }));
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready((seven, turn)) = fut.as_mut().poll(&mut cx) else {
            panic!("a free turn runs the work at once");
        };
        assert_eq!(seven, 7);
        assert_eq!(sched.lock().running, 1);
        // Another env waits for it.
        let mut other = std::pin::pin!(sched.run("b", async {}));
        assert!(other.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(5));
        drop(turn);
        assert!(sched.lock().envs["a"].used >= Duration::from_millis(5));
        assert!(
            other.as_mut().poll(&mut cx).is_ready(),
            "the turn passed on"
        );
        assert_eq!(sched.lock().running, 0);
    }

    /// Dropped waiters give their turn back: nothing leaks, later calls still run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_waiters_give_their_turns_back() {
        let sched = Arc::new(Scheduler::new(1, Box::new(|| {})));
        for _ in 0..20 {
            let s = sched.clone();
            let t =
                tokio::spawn(
                    async move { _ = s.run("a", spin(100, Duration::from_millis(1))).await },
                );
            tokio::time::sleep(Duration::from_millis(2)).await;
            t.abort();
        }
        tokio::time::timeout(Duration::from_secs(5), sched.run("b", async {}))
            .await
            .expect("a turn is free");
        assert_eq!(sched.lock().running, 0);
        assert_eq!(sched.lock().waiting, 0);
        assert!(sched.lock().envs.values().all(Account::idle));
    }
}
