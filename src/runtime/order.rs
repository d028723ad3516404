//! Keeping a run's `run_queued` event ahead of its `run_started` on the node that
//! enqueued it. An enqueue publishes `run_queued` once its insert returns, and the
//! dispatcher, claiming at the same moment, can take the run in between: subscribers
//! (the dashboard among them) would then hear of the start before the queueing, and
//! show a running run as queued. Enqueues made through the node (and the planner's
//! firings) count themselves in here while they insert and publish; the dispatcher
//! lets the runs of a claim wait until the enqueues that began before it returned have
//! published: as long as those enqueues take (a commit each, queued behind one another
//! in a burst), a second at most.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a claim's runs wait for enqueues in flight to publish. An enqueue's
/// insert takes a round trip (and a disk flush on PostgreSQL), and hundreds enqueued at
/// once queue for the pool's connections: tens of milliseconds in all. Past this (a
/// database that stopped answering mid-enqueue), runs start anyway.
const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// Enqueues through this node that have not published their `run_queued` yet, by
/// ticket (tickets are handed out in order).
#[derive(Debug, Default)]
pub(crate) struct EnqueueGate {
    next: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
    settled: Notify,
}

/// Held by an enqueue from before its insert until it published its events.
pub(crate) struct InFlight<'a>(&'a EnqueueGate, u64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.0.in_flight.lock() {
            set.remove(&self.1);
        }
        self.0.settled.notify_waiters();
    }
}

impl EnqueueGate {
    /// Counts an enqueue in flight until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let ticket = self.next.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut set) = self.in_flight.lock() {
            set.insert(ticket);
        }
        InFlight(self, ticket)
    }

    /// Called once a claim returned: returns when every enqueue that began before now
    /// has published (a run the claim found was committed by one of those), or after
    /// [`SETTLE_AT_MOST`]. Enqueues that begin later do not hold it up, so a steady
    /// stream of them delays a claim by one enqueue at most.
    pub(crate) async fn settled(&self) {
        let upto = self.next.load(Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + SETTLE_AT_MOST;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Listening before looking: an enqueue ending in between is not missed.
            notified.as_mut().enable();
            let waiting = self
                .in_flight
                .lock()
                .map(|set| set.first().is_some_and(|&t| t < upto))
                .unwrap_or(false);
            if !waiting || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_enqueues_in_flight_and_no_longer() {
        let gate = std::sync::Arc::new(EnqueueGate::default());
        // Nothing in flight: at once.
        let began = tokio::time::Instant::now();
        gate.settled().await;
        assert_eq!(began.elapsed(), Duration::ZERO);

        let held = gate.enter();
        drop(gate.enter());
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            g.settled().await;
            began.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(5));

        // Enqueues that begin after the claim do not hold it up.
        let g = gate.clone();
        let early = gate.enter();
        let waiter = tokio::spawn(async move {
            let began = tokio::time::Instant::now();
            g.settled().await;
            began.elapsed()
        });
        tokio::task::yield_now().await;
        let _late = gate.enter();
        tokio::time::sleep(Duration::from_millis(3)).await;
        drop(early);
        assert_eq!(waiter.await.unwrap(), Duration::from_millis(3));

        // One that never ends: the wait gives up.
        let began = tokio::time::Instant::now();
        gate.settled().await;
        assert_eq!(began.elapsed(), SETTLE_AT_MOST);
    }
}
