//! On PostgreSQL, the node LISTENs for what inserts and the database's triggers
//! announce: runs inserted by any process (an enqueue from the CLI or another node, a
//! run written in an application's transaction, on its commit) are claimed at once on
//! the listening connection while the node has free slots and no limits (through the
//! primary key when the insert named their ids, as kairos's own do), and wake the
//! dispatcher for the rest; a moved change counter (pause, resume, cancel, job change)
//! wakes the planner, the dispatcher and the watcher. While the listener is connected the
//! watcher only polls as a backstop; when it drops, the node wakes every loop
//! (notifications sent meanwhile are lost) and reconnects with backoff.
//!
//! SQLite has no notifications, but every commit, by any connection of any process,
//! writes to the database's write-ahead log. On Linux the node asks the kernel
//! (inotify) to tell it when the log file is written; when that happens while the node
//! itself was not writing, the watcher reads the change marker, which tells whether
//! anything the node acts on changed. A run enqueued from the CLI or another process
//! then starts within milliseconds rather than at the watcher's next poll, which stays
//! as a backstop (and is all there is on other systems). An idle node spends nothing
//! on this: no timer, no reads, until the file is written.
//!
//! A write seen while the node wrote too is taken as the node's own doing: a busy node
//! commits claims and outcomes all the time, and would otherwise read the marker after
//! each. What another process changed in those moments reaches the node at the
//! watcher's next poll.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;

use super::{Shared, dispatcher, executor};
use crate::sqlx_txn::SqlxTxn;
use crate::store::{Announced, Notice};

pub(super) async fn run(shared: Arc<Shared>) {
    if let Some(path) = shared.store.wal_file() {
        return sqlite_wal::watch(shared, path).await;
    }
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
                Ok(Some(n)) => match Notice::read(n.payload()) {
                    Notice::Runs(among) => {
                        if let Some(at) = Notice::expiry(n.payload()) {
                            shared.signals.expiry.note(at);
                        }
                        let claimed = claim_announced(&shared, &mut listener, among).await;
                        // Every id announced was claimed here: nothing is left for the
                        // dispatcher to claim or to wait for.
                        if among.is_none_or(|a| claimed < a.len()) {
                            shared.signals.wake_dispatcher.notify_one();
                        }
                    }
                    Notice::Changed => wake_all(&shared),
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

/// Claims announced runs at once, on the listening connection, while the node has
/// slots free (as many as the dispatcher would claim without waiting) and no limits to
/// count: that connection's server process has just sent the notification and is
/// still awake, so the claim skips waking a pool connection's, one of the few hops of
/// a run enqueued by another process on its way to start. With the ids the insert
/// announced (`among`), only those runs are looked at, through the primary key.
/// Returns how many runs it claimed; the dispatcher is woken after it for what it did
/// not take (and for runs due later) unless it took every announced id.
async fn claim_announced(
    shared: &Arc<Shared>,
    listener: &mut PgListener,
    among: Option<Announced>,
) -> usize {
    if !shared.claim_limits().is_empty() || shared.shutdown.is_cancelled() {
        return 0;
    }
    let gather_below = dispatcher::gather_below(shared.node.max_workers);
    let Some(mut slots) = dispatcher::take_free_slots(shared, gather_below) else {
        return 0;
    };
    let now = shared.clock.now();
    let claimed = shared
        .store
        .claim_plain(
            &SqlxTxn::listener(listener),
            &shared.node.id,
            now + shared.lead,
            now,
            slots.num_permits(),
            shared.lease,
            among,
        )
        .await;
    match claimed {
        Ok(runs) => {
            let n = runs.len();
            for run in runs {
                let permit = slots.split(1).expect("a slot was taken for each run");
                executor::spawn(shared.clone(), run, permit);
            }
            n
        }
        // The dispatcher claims them instead; a broken connection is seen by the next
        // receive, which reconnects.
        Err(e) => {
            tracing::debug!(error = %e, "claim on the listening connection failed");
            0
        }
    }
}

fn wake_all(shared: &Shared) {
    shared.signals.wake_planner.notify_one();
    shared.signals.wake_dispatcher.notify_one();
    shared.signals.changed.notify_one();
}

/// The write-ahead log watch (see the module's doc).
#[cfg(target_os = "linux")]
mod sqlite_wal {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use inotify::{EventMask, Inotify, WatchMask};

    use super::Shared;

    /// How long to wait before watching again when the log file is missing (SQLite
    /// deletes it when the last connection to the database closes) or the watch failed.
    const RETRY: Duration = Duration::from_secs(1);

    /// How long the watch stops reading after a write of the node's own.
    const BUSY_PAUSE: Duration = Duration::from_millis(10);

    /// How long it stops reading after asking the watcher to look: one look at the
    /// marker covers what another busy process wrote meanwhile.
    const OTHERS_PAUSE: Duration = Duration::from_millis(2);

    /// When the watcher looks again after another process's writes went quiet. The
    /// log is written before a commit is visible: a connection with `synchronous =
    /// FULL` (SQLite's default, which an application's own connection may keep) syncs
    /// the file to disk in between, so the first look can come before the commit and
    /// find nothing. The later looks find it rather than the next poll.
    const FOLLOW_UPS: [Duration; 3] = [
        Duration::from_millis(8),
        Duration::from_millis(25),
        Duration::from_millis(120),
    ];

    pub(super) async fn watch(shared: Arc<Shared>, wal: PathBuf) {
        let mut warned = false;
        loop {
            match watch_once(&shared, &wal).await {
                Ok(Ended::Shutdown) => return,
                Ok(Ended::FileGone) => {}
                // Said once: the poll still works, changes just arrive later. The usual
                // cause is the per-user inotify limit (`fs.inotify.max_user_instances`).
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, file = %wal.display(), "cannot watch the write-ahead log (raise fs.inotify.max_user_instances if the limit is reached); changes other processes make reach this node at its poll until it can");
                }
                Err(e) => {
                    tracing::debug!(error = %e, file = %wal.display(), "cannot watch the write-ahead log yet")
                }
            }
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    enum Ended {
        Shutdown,
        FileGone,
    }

    async fn watch_once(shared: &Shared, wal: &std::path::Path) -> std::io::Result<Ended> {
        let inotify = Inotify::init()?;
        inotify.watches().add(
            wal,
            WatchMask::MODIFY | WatchMask::DELETE_SELF | WatchMask::MOVE_SELF,
        )?;
        // A change made while the watch was being set up is looked at once.
        shared.signals.changed.notify_one();
        let mut events = inotify.into_event_stream([0u8; 1024])?;
        let mut turns = shared.store.write_turns();
        // Since when another process's writes are quiet, and how many follow-up looks
        // were asked for since.
        let mut others_quiet: Option<(tokio::time::Instant, usize)> = None;
        loop {
            let follow_up = others_quiet
                .and_then(|(since, done)| FOLLOW_UPS.get(done).map(|after| since + *after));
            let event = tokio::select! {
                _ = shared.shutdown.cancelled() => return Ok(Ended::Shutdown),
                e = events.next() => e,
                _ = async {
                    match follow_up {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    shared.signals.changed.notify_one();
                    if let Some((_, done)) = &mut others_quiet {
                        *done += 1;
                    }
                    continue;
                }
            };
            let Some(event) = event else {
                return Ok(Ended::FileGone);
            };
            let event = event?;
            if event
                .mask
                .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED)
            {
                return Ok(Ended::FileGone);
            }
            // This node's own writes since the last event, or one in progress.
            let now = shared.store.write_turns();
            let writing = now != turns || now.0 != now.1;
            let pause = if writing {
                BUSY_PAUSE
            } else {
                shared.signals.changed.notify_one();
                others_quiet = Some((tokio::time::Instant::now() + OTHERS_PAUSE, 0));
                OTHERS_PAUSE
            };
            // The kernel folds the writes of the pause into one event: a busy node, or a
            // busy process beside it, wakes this watch a few hundred times a second at
            // most, not once per commit.
            tokio::select! {
                _ = shared.shutdown.cancelled() => return Ok(Ended::Shutdown),
                _ = tokio::time::sleep(pause) => {}
            }
            // What the node wrote until now (a write in progress at the event among
            // them) is its own: the next event is judged from here.
            turns = shared.store.write_turns();
        }
    }
}

/// Elsewhere the watcher's poll is how other processes' changes arrive.
#[cfg(not(target_os = "linux"))]
mod sqlite_wal {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::Shared;

    pub(super) async fn watch(_shared: Arc<Shared>, _wal: PathBuf) {}
}
