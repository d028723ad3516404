//! The watcher: notices changes made by other processes (the CLI, other nodes) through
//! the store's change marker, applies cancel requests to local runs, beats the node's
//! heartbeat, renews its leases and takes back runs whose node's lease expired.

use std::sync::Arc;
use std::time::Duration;

use super::{CancelReason, Shared};

/// How often the change counter is read: the bound on how late a CLI pause or cancel
/// takes effect. One indexed single-row read per tick keeps an idle node nearly silent.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// How often heartbeats, lease renewals and lease expiry checks run.
const HEARTBEAT_EVERY: u32 = 20;

pub(super) async fn run(shared: Arc<Shared>) {
    let mut seen = shared.store.change_marker().await.unwrap_or((0, 0));
    let mut ticker = tokio::time::interval(WATCH_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u32 = 0;
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        n = n.wrapping_add(1);
        match shared.store.change_marker().await {
            Ok(m) if m != seen => {
                seen = m;
                shared.signals.wake_planner.notify_one();
                shared.signals.wake_dispatcher.notify_one();
                apply_cancel_requests(&shared).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watcher: cannot read change counter"),
        }
        if n.is_multiple_of(HEARTBEAT_EVERY) {
            maintain(&shared).await;
        }
    }
}

async fn apply_cancel_requests(shared: &Shared) {
    let Ok(requests) = shared.store.cancel_requests(&shared.node.id).await else {
        return;
    };
    for (id, attempt) in requests {
        tracing::info!(run_id = id, "cancel requested by operator");
        shared
            .signals
            .cancel_local(id, Some(attempt), CancelReason::Operator);
    }
}

async fn maintain(shared: &Shared) {
    let now = shared.clock.now();
    let until = now + chrono::Duration::from_std(shared.lease).unwrap_or_default();
    if let Err(e) = shared.store.heartbeat(&shared.node.id, now).await {
        tracing::warn!(error = %e, "heartbeat failed");
    }
    if let Err(e) = shared.store.renew_leases(&shared.node.id, until).await {
        tracing::warn!(error = %e, "lease renewal failed");
    }
    match shared.store.recover_expired(now).await {
        Ok((0, 0)) => {}
        Ok((requeued, failed)) => {
            tracing::warn!(
                requeued,
                failed,
                "took back runs whose node stopped renewing its lease"
            );
            shared.signals.wake_dispatcher.notify_one();
        }
        Err(e) => tracing::warn!(error = %e, "lease expiry check failed"),
    }
}
