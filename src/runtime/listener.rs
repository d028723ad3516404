//! On PostgreSQL, the node LISTENs for what the database's triggers announce: runs
//! inserted by any process (an enqueue from the CLI or another node, a run written in
//! an application's transaction, on its commit) wake the dispatcher; a moved change
//! counter (pause, resume, cancel, job change) wakes the planner, the dispatcher and
//! the watcher. While the listener is connected the watcher only polls as a backstop;
//! when it drops, the node wakes every loop (notifications sent meanwhile are lost)
//! and reconnects with backoff. SQLite has no notifications: the watcher polls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Shared;

pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match shared.store.listen().await {
            None => return,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for database notifications; polling meanwhile");
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        shared.signals.listening.store(true, Ordering::SeqCst);
        wake_all(&shared);
        loop {
            let next = tokio::select! {
                _ = shared.shutdown.cancelled() => {
                    shared.signals.listening.store(false, Ordering::SeqCst);
                    return;
                }
                n = listener.try_recv() => n,
            };
            match next {
                // What this node did itself it already acted on.
                Ok(Some(n)) if shared.store.is_own_notification(n.payload()) => {}
                Ok(Some(n)) => match n.payload().split(' ').next() {
                    Some("kairos_runs") => shared.signals.wake_dispatcher.notify_one(),
                    _ => wake_all(&shared),
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the database notification channel; reconnecting");
                    break;
                }
            }
        }
        shared.signals.listening.store(false, Ordering::SeqCst);
        wake_all(&shared);
    }
}

fn wake_all(shared: &Shared) {
    shared.signals.wake_planner.notify_one();
    shared.signals.wake_dispatcher.notify_one();
    shared.signals.changed.notify_one();
}
