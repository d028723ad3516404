//! Time as the scheduler sees it: a `Clock` trait with the system clock for production
//! and a `ManualClock` that tests move by hand, so cron and retry logic never waits on
//! real time.

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

    #[tokio::test]
    async fn past_deadline_is_ready_at_once() {
        let clock = ManualClock::new(t0());
        let mut sleep = clock.sleep_until(t0() - chrono::Duration::seconds(1));
        assert!(futures::poll!(&mut sleep).is_ready());
    }
}
