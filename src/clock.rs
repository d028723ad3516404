//! Time as the scheduler sees it: a `Clock` trait with the system clock for production
//! and a `ManualClock` that tests move by hand, so cron and retry logic never waits on
//! real time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

/// The source of "now" and of waits until a wall-clock instant.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
    /// Completes at (or after) `deadline` on this clock.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()>;
    /// Whether this clock reads the machine's wall time. A node corrects such a clock
    /// by its measured offset from the database's clock, so that nodes whose machines
    /// disagree about the time still agree on when a slot is due and a lease ends. A
    /// test clock that stands still or jumps by hand is used as it is.
    fn is_wall_clock(&self) -> bool {
        false
    }
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Re-check after waking: the wall clock may have been stepped meanwhile.
            loop {
                let left = deadline - Utc::now();
                match left.to_std() {
                    Ok(d) if !d.is_zero() => tokio::time::sleep(d).await,
                    _ => return,
                }
            }
        })
    }

    fn is_wall_clock(&self) -> bool {
        true
    }
}

/// A wall clock shifted by the offset a node measured between its machine and the
/// database (see [`Clock::is_wall_clock`]).
#[derive(Debug)]
pub(crate) struct SyncedClock {
    inner: Arc<dyn Clock>,
    offset_ms: AtomicI64,
}

/// Offsets that differ from the one in use by less than this are ignored: a database
/// on the same machine reads the same clock, and measurement noise must not move it.
const OFFSET_SLACK_MS: i64 = 25;

impl SyncedClock {
    pub(crate) fn new(inner: Arc<dyn Clock>) -> Self {
        SyncedClock {
            inner,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// The machine's clock, uncorrected.
    pub(crate) fn local_now(&self) -> DateTime<Utc> {
        self.inner.now()
    }

    /// Takes a measurement: `db` was read between the local instants `before` and
    /// `after`. Returns the new offset when it changed.
    pub(crate) fn observe(
        &self,
        before: DateTime<Utc>,
        db: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> Option<chrono::Duration> {
        let mid = before + (after - before) / 2;
        let measured = (db - mid).num_milliseconds();
        let current = self.offset_ms.load(Ordering::Relaxed);
        let wanted = if measured.abs() < OFFSET_SLACK_MS {
            0
        } else {
            measured
        };
        if (wanted - current).abs() < OFFSET_SLACK_MS {
            return None;
        }
        self.offset_ms.store(wanted, Ordering::Relaxed);
        Some(chrono::Duration::milliseconds(wanted))
    }

    fn offset(&self) -> chrono::Duration {
        chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

impl Clock for SyncedClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.now() + self.offset()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        self.inner.sleep_until(deadline - self.offset())
    }

    fn is_wall_clock(&self) -> bool {
        true
    }
}

/// A clock that only moves when told to. Sleepers wake when `advance`/`set` pass
/// their deadline.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
    tick: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        let (tick, _) = watch::channel(start);
        ManualClock {
            now: Arc::new(Mutex::new(start)),
            tick,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).expect("duration out of range");
        let mut now = self.now.lock().expect("clock poisoned");
        *now += by;
        self.tick.send_replace(*now);
    }

    /// Sets the clock to `to` (which may be earlier, to test clock steps).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().expect("clock poisoned") = to;
        self.tick.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock poisoned")
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, so a deadline already passed
            // returns at once. If the clock is dropped, the sleep never ends, like time
            // that never comes.
            if rx.wait_for(|now| *now >= deadline).await.is_err() {
                futures::future::pending::<()>().await;
            }
        })
    }
}

/// `t` in whole milliseconds, as the database stores times and every output shows
/// them: a time computed from the clock reads the same before and after it is stored.
pub(crate) fn whole_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(t, 3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t0() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_deadline_passes() {
        let clock = ManualClock::new(t0());
        let mut sleep = clock.sleep_until(t0() + chrono::Duration::seconds(10));
        assert!(futures::poll!(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(9));
        assert!(futures::poll!(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(futures::poll!(&mut sleep).is_ready());
        assert_eq!(clock.now(), t0() + chrono::Duration::seconds(10));
    }

    #[test]
    fn synced_clock_follows_the_database_and_ignores_noise() {
        let manual = ManualClock::new(t0());
        let synced = SyncedClock::new(Arc::new(manual.clone()));
        let ms = chrono::Duration::milliseconds;
        // Same machine: a few milliseconds either way change nothing.
        assert_eq!(synced.observe(t0(), t0() + ms(3), t0() + ms(2)), None);
        assert_eq!(synced.now(), t0());
        // The machine runs five minutes fast: the node reads the database's time.
        let off = synced.observe(t0(), t0() - ms(300_000), t0() + ms(2));
        assert_eq!(off, Some(ms(-300_001)));
        assert_eq!(synced.now(), t0() - ms(300_001));
        assert_eq!(synced.local_now(), t0());
        // Noise around the new offset is ignored; the clock back in sync returns to 0.
        assert_eq!(synced.observe(t0(), t0() - ms(300_010), t0()), None);
        assert_eq!(synced.observe(t0(), t0() + ms(1), t0()), Some(ms(0)));
    }

    #[tokio::test]
    async fn synced_clock_sleeps_until_the_corrected_deadline() {
        let manual = ManualClock::new(t0());
        let synced = SyncedClock::new(Arc::new(manual.clone()));
        synced.observe(t0(), t0() + chrono::Duration::seconds(60), t0());
        // Due at t0 + 70 s database time = t0 + 10 s on this machine.
        let mut sleep = synced.sleep_until(t0() + chrono::Duration::seconds(70));
        manual.advance(Duration::from_secs(9));
        assert!(futures::poll!(&mut sleep).is_pending());
        manual.advance(Duration::from_secs(1));
        assert!(futures::poll!(&mut sleep).is_ready());
    }

    #[tokio::test]
    async fn past_deadline_is_ready_at_once() {
        let clock = ManualClock::new(t0());
        let mut sleep = clock.sleep_until(t0() - chrono::Duration::seconds(1));
        assert!(futures::poll!(&mut sleep).is_ready());
    }
}
