//! Starting runs claimed ahead of their time on the dot.
//!
//! tokio's timers count whole milliseconds and its driver wakes up to a millisecond or
//! two after a deadline, so a thousand runs due at one second would all start about
//! 2 ms late before the first of them even ran. Runs claimed ahead (see
//! `SchedulerBuilder::lead`) wait on this gate instead: one thread per process sleeps
//! on the operating system's fine-grained timer (tens of microseconds) until the next
//! start time, and wakes one leader task per node and start time, which releases that
//! node's runs for it from inside the runtime. For a few milliseconds after a release
//! ([`BURST`]), work that can wait (writing outcomes) leaves the cores to the starting
//! runs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

/// Start times closer than this share one release: the runs of one claim with one
/// start time read the clock a few microseconds apart, and should go together.
const GRAIN: Duration = Duration::from_micros(100);

/// How long starting the runs released together may take, for work that waits for it
/// (a thousand runs start in 2–4 ms on two cores).
pub(super) const BURST: Duration = Duration::from_millis(4);

/// The instant start times are counted from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// The runs waiting for one start time.
#[derive(Debug, Default)]
struct Group {
    released: AtomicBool,
    notify: Notify,
}

/// The waiting groups by start time (rounded up to the grain, so never early), each
/// with the signal its leader waits for, and the condition the releasing thread sleeps
/// on.
#[derive(Default)]
struct Gate {
    groups: Mutex<BTreeMap<Instant, Vec<oneshot::Sender<()>>>>,
    earlier: Condvar,
}

/// The process's gate, its thread started on first use. It sleeps without a deadline
/// while nothing waits, so an idle process pays nothing for it.
fn gate() -> &'static Gate {
    static GATE: OnceLock<&'static Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let gate: &'static Gate = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("kairos-on-time".into())
            .spawn(move || release_loop(gate))
            .expect("cannot start the kairos-on-time thread");
        gate
    })
}

fn release_loop(gate: &Gate) {
    let mut groups = gate.groups.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let next = groups.keys().next().copied();
        match next {
            None => {
                groups = gate.earlier.wait(groups).unwrap_or_else(|e| e.into_inner());
            }
            Some(at) if at > now => {
                let (guard, waited) = gate
                    .earlier
                    .wait_timeout(groups, at - now)
                    .unwrap_or_else(|e| e.into_inner());
                groups = guard;
                let left = at.saturating_duration_since(Instant::now());
                if waited.timed_out() && left > GRAIN {
                    // The wait ended early by the process's clock: the kernel's clock
                    // is ahead of it (see `wait_for_release`). Sleep the rest by a
                    // relative timer rather than spin until the time comes.
                    drop(groups);
                    std::thread::sleep(left);
                    groups = gate.groups.lock().unwrap_or_else(|e| e.into_inner());
                }
            }
            Some(_) => {
                let later = groups.split_off(&(now + Duration::from_nanos(1)));
                for leader in std::mem::replace(&mut *groups, later)
                    .into_values()
                    .flatten()
                {
                    // Gone only if its runtime stopped: nobody waits any more.
                    let _ = leader.send(());
                }
            }
        }
    }
}

/// How late after its time a group is released by the runtime's own timer should the
/// gate's thread not wake for it.
const BACKSTOP: Duration = Duration::from_millis(5);

/// Waits for the gate's thread to release the group waiting for `at`, or for the
/// runtime's timer a little later. The thread sleeps until a deadline the kernel
/// reads on its own monotonic clock, which is not always the one the process reads:
/// under a library that fakes the process's clocks (libfaketime, to test skew), the
/// thread would oversleep by the offset.
async fn wait_for_release(rx: oneshot::Receiver<()>, at: Instant) {
    tokio::select! {
        _ = rx => {}
        _ = tokio::time::sleep_until((at + BACKSTOP).into()) => {}
    }
}

/// The start times a node's runs wait for, each with its group. A node's groups are its
/// own: a group's leader runs on the runtime of the run that made it, and a run of
/// another runtime (another node in the process) must not depend on that runtime
/// staying up.
#[derive(Debug, Default)]
pub(crate) struct Starts {
    groups: Mutex<BTreeMap<Instant, Weak<Group>>>,
    /// When a group was last released, in nanoseconds since `origin()` (0: never).
    released_at: Arc<AtomicU64>,
}

impl Starts {
    /// The group waiting for `at`, created (with its leader) by its first waiter.
    fn join(&self, at: Instant) -> Arc<Group> {
        let mut open = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(group) = open.get(&at).and_then(Weak::upgrade) {
            return group;
        }
        // Groups whose runs all started (or stopped waiting) are gone.
        open.retain(|_, g| g.strong_count() > 0);
        let group = Arc::new(Group::default());
        open.insert(at, Arc::downgrade(&group));
        drop(open);
        let (tx, rx) = oneshot::channel();
        let leader = group.clone();
        let released_at = self.released_at.clone();
        // The thread wakes this one task, which wakes the group's runs from inside the
        // runtime: a thousand wake-ups from the thread would each cross into the
        // runtime (and took half a millisecond before the first run started).
        tokio::spawn(async move {
            wait_for_release(rx, at).await;
            let since = u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX);
            released_at.store(since.max(1), Ordering::Release);
            leader.released.store(true, Ordering::Release);
            leader.notify.notify_waiters();
        });
        let gate = gate();
        let mut groups = gate.groups.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = groups.keys().next().is_none_or(|first| at < *first);
        // Other nodes' groups may wait for the same time.
        groups.entry(at).or_default().push(tx);
        if earliest {
            gate.earlier.notify_one();
        }
        group
    }

    /// While the runs of a group released a moment ago are still starting: until when
    /// (a fixed [`BURST`] after the release). Work that can wait a few milliseconds
    /// waits for it, so that the runs have the cores.
    pub(super) fn burst_ends(&self) -> Option<Instant> {
        let at = self.released_at.load(Ordering::Acquire);
        if at == 0 {
            return None;
        }
        let ends = origin() + Duration::from_nanos(at) + BURST;
        (ends > Instant::now()).then_some(ends)
    }

    /// Completes at `at` (within the operating system's timer precision, never before).
    pub(super) async fn until(&self, at: Instant) {
        let now = Instant::now();
        if at <= now {
            return;
        }
        // Round up to the grain, counted from a fixed origin so that every waiter
        // rounds the same way.
        let origin = origin();
        let grain = GRAIN.as_nanos();
        let since = (at - origin).as_nanos();
        let at = origin
            + Duration::from_nanos(
                u64::try_from(since.div_ceil(grain) * grain).unwrap_or(u64::MAX),
            );
        let group = self.join(at);
        let released = group.notify.notified();
        tokio::pin!(released);
        // Listening before looking: a release between the two is not missed.
        released.as_mut().enable();
        if group.released.load(Ordering::Acquire) {
            return;
        }
        released.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_are_released_at_their_time_and_not_before() {
        let starts = Starts::default();
        let starts = &starts;
        let start = Instant::now();
        let times = [40u64, 10, 25, 10, 0];
        let waits = times.iter().map(|&ms| async move {
            let at = start + Duration::from_millis(ms);
            starts.until(at).await;
            (at, Instant::now())
        });
        for (at, woke) in futures::future::join_all(waits).await {
            assert!(woke >= at, "released {:?} early", at - woke);
        }
        // Earlier deadlines joined after later ones still wake the thread in time.
        let later = starts.until(Instant::now() + Duration::from_secs(3600));
        let soon = Instant::now() + Duration::from_millis(5);
        tokio::select! {
            _ = later => panic!("released an hour early"),
            _ = starts.until(soon) => assert!(Instant::now() >= soon),
        }
    }

    /// Two nodes of one process, on runtimes of their own, wait for the same start
    /// time; one stops (its runtime ends) before it. The other's runs are released all
    /// the same, and not early.
    #[test]
    fn a_node_s_runs_do_not_depend_on_another_node_s_runtime() {
        let runtime = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
        };
        let (a, b) = (runtime(), runtime());
        let (starts_a, starts_b) = (Arc::new(Starts::default()), Arc::new(Starts::default()));
        let at = Instant::now() + Duration::from_millis(300);
        let waits_a = starts_a.clone();
        a.spawn(async move { waits_a.until(at).await });
        // The other node's run comes second, when the first one's group exists.
        std::thread::sleep(Duration::from_millis(50));
        let waits_b = starts_b.clone();
        let woke = b.spawn(async move {
            waits_b.until(at).await;
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(50));
        a.shutdown_background();
        let woke = b
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), woke).await })
            .expect("the run of the node still running was never released")
            .unwrap();
        assert!(woke >= at, "released {:?} early", at - woke);
    }

    /// A group the gate's thread does not release (its timer runs on a clock other
    /// than the process's) is released by the runtime's timer, a little late.
    #[tokio::test]
    async fn a_group_the_thread_misses_is_released_by_the_backstop() {
        let (_never, rx) = oneshot::channel();
        let at = Instant::now() + Duration::from_millis(20);
        tokio::time::timeout(Duration::from_secs(5), wait_for_release(rx, at))
            .await
            .expect("never released");
        assert!(Instant::now() >= at + BACKSTOP);
    }

    #[tokio::test]
    async fn a_release_opens_a_burst_that_ends_on_its_own() {
        let starts = Starts::default();
        assert_eq!(starts.burst_ends(), None, "nothing released yet");
        starts
            .until(Instant::now() + Duration::from_millis(5))
            .await;
        let at = starts.released_at.load(Ordering::Acquire);
        assert_ne!(at, 0, "the release is recorded");
        let released = origin() + Duration::from_nanos(at);
        assert!(released <= Instant::now());
        // (None if this waiter woke more than a burst after the release.)
        let ends = starts.burst_ends();
        assert!(ends.is_none_or(|e| e == released + BURST), "{ends:?}");
        tokio::time::sleep_until((released + BURST).into()).await;
        assert_eq!(starts.burst_ends(), None, "over after BURST");
    }
}
