//! Queued runs whose time to live ran out become `expired` when it runs out, not at
//! the next maintenance round (every 10 s): the watcher sleeps until the earliest
//! `expires_at` it knows of. It learns of deadlines from enqueues through this node
//! and from the notifications of other processes' inserts on PostgreSQL (at once), and
//! from the database (one indexed read after each of its expiry rounds, and whenever
//! the watcher finds that another process changed something), so a run enqueued with
//! `--ttl` from the CLI expires on time as well. Every node may act at a deadline: the
//! update is conditional, so one of them expires each run and tells watchers.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::Shared;
use super::watcher::job_names;
use crate::events::{Event, EventKind};
use crate::model::RunStatus;
use crate::store::codec::{from_ms, ms};

/// "No deadline known".
const NONE: i64 = i64::MAX;

/// The earliest time to live this node knows of among queued runs.
#[derive(Debug)]
pub(crate) struct Deadline {
    at_ms: AtomicI64,
    /// The deadline moved earlier: the watcher sets its timer again.
    moved: Notify,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            at_ms: AtomicI64::new(NONE),
            moved: Notify::new(),
        }
    }
}

impl Deadline {
    /// A queued run expires at `at`, unless claimed first.
    pub(crate) fn note(&self, at: DateTime<Utc>) {
        let at = ms(at);
        if self.at_ms.fetch_min(at, Ordering::SeqCst) > at {
            self.moved.notify_one();
        }
    }

    /// Notes the deadlines of runs just enqueued.
    pub(crate) fn note_all(&self, at: impl IntoIterator<Item = Option<DateTime<Utc>>>) {
        if let Some(first) = at.into_iter().flatten().min() {
            self.note(first);
        }
    }

    fn get(&self) -> Option<DateTime<Utc>> {
        match self.at_ms.load(Ordering::SeqCst) {
            NONE => None,
            at => Some(from_ms(at)),
        }
    }
}

/// Resolves when the earliest known deadline has come; never while none is known.
/// Dropped and made again whenever the watcher loops, so a deadline noted meanwhile
/// (see [`moved`]) is taken into account.
pub(super) async fn due(shared: &Shared) {
    let Some(at) = shared.signals.expiry.get() else {
        return std::future::pending().await;
    };
    shared.clock.sleep_until(at).await;
}

/// Resolves when a deadline earlier than the known one was noted.
pub(super) async fn moved(shared: &Shared) {
    shared.signals.expiry.moved.notified().await;
}

/// Expires the queued runs whose time to live ran out, tells watchers, and learns the
/// next deadline from the database.
pub(super) async fn expire(shared: &Shared) {
    let now = shared.clock.now();
    // Forgotten before the read, so that a deadline noted meanwhile is kept.
    shared.signals.expiry.at_ms.store(NONE, Ordering::SeqCst);
    match shared.store.expire_runs(now).await {
        Ok(expired) if expired.is_empty() => {}
        Ok(expired) => {
            tracing::info!(
                runs = expired.len(),
                "queued runs expired: their time to live ran out"
            );
            // Watchers would otherwise show them queued forever.
            if shared.signals.events.wanted() {
                let jobs = job_names(shared, expired.iter().filter_map(|(_, _, j, _)| *j)).await;
                for (id, task, job_id, attempt) in &expired {
                    shared.emit(|| {
                        Event::new(EventKind::RunFinished, now)
                            .run(*id, task)
                            .job(job_id.and_then(|j| jobs.get(&j).cloned()))
                            .data(serde_json::json!({
                                "attempt": attempt,
                                "status": RunStatus::Expired,
                                "error": crate::store::EXPIRED,
                            }))
                    });
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "expiry check failed"),
    }
    learn(shared, Some(now)).await;
}

/// Reads the earliest time to live among queued runs (enqueued by any process) into
/// the known deadline; with `after`, only of those ending after it (see [`expire`]:
/// an overdue run it failed to expire is left to the next round, not retried in a
/// loop). A failed read leaves it to the next maintenance round.
pub(super) async fn learn(shared: &Shared, after: Option<DateTime<Utc>>) {
    match shared.store.next_expiry(after).await {
        Ok(Some(at)) => shared.signals.expiry.note(at),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the next expiry"),
    }
}
