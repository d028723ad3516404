//! The watcher: notices changes made by other processes (the CLI, other nodes) through
//! the store's change marker and applies cancel requests to local runs; beats the
//! node's heartbeat and renews its leases (stopping runs it turns out no longer to
//! own), declares silent nodes dead and takes back runs whose lease ended; expires
//! queued runs whose time to live ran out, and prunes finished runs per `[retention]`.
//! At shutdown it goes on until the node's last runs have ended: they are still its
//! own, and their leases must not run out while it lets them finish.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CancelReason, Held, Running, Shared, expiry};
use crate::events::{Event, EventKind};
use crate::model::RunStatus;
use crate::store::{Beat, BeatLook, TakenBack};

/// How often the change counter is read by default: the bound on how late a CLI pause
/// or cancel takes effect on SQLite. One indexed single-row read per tick keeps an idle
/// node nearly silent.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// While database notifications arrive (see `listener`) the counter is only a
/// backstop, read this many times less often.
const BACKSTOP_FACTOR: u32 = 10;

/// `seen`: the change marker as read before the planner and the dispatcher first
/// looked at the database.
pub(super) async fn run(shared: Arc<Shared>, mut seen: (i64, i64)) {
    let mut ticker = tokio::time::interval(shared.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A `[retention] every` shorter than the maintenance interval is kept too.
    let chores_every = shared
        .retention
        .every
        .filter(|e| !e.is_zero())
        .map_or(shared.maintenance_interval, |e| {
            e.min(shared.maintenance_interval)
        });
    let mut chores = tokio::time::interval(chores_every);
    chores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    chores.tick().await;
    // The first beat comes at once: a node started after a crash takes back the runs
    // of the node it replaces as soon as that one counts as dead.
    let mut beats = tokio::time::interval(shared.beat_interval);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heart = Heartbeat::new(shared.clock.now());
    let mut last_prune: Option<chrono::DateTime<chrono::Utc>> = None;
    let mut last_look = tokio::time::Instant::now();
    // While the database is out of reach the counter is read less often, and the
    // failures are logged once (see `Backoff`), not on every tick.
    let mut backoff = super::backoff::Backoff::default();
    let mut look_again_at: Option<tokio::time::Instant> = None;
    // Runs enqueued with a time to live before this node started, overdue ones too.
    expiry::learn(&shared, None).await;
    loop {
        tokio::select! {
            _ = shared.drained.cancelled() => return,
            _ = shared.signals.changed.notified() => {}
            _ = ticker.tick() => {
                if shared.signals.listening.load(std::sync::atomic::Ordering::SeqCst)
                    && last_look.elapsed() < shared.poll_interval * BACKSTOP_FACTOR
                {
                    continue;
                }
            }
            _ = beats.tick() => {
                heart.beat(&shared).await;
                continue;
            }
            _ = chores.tick() => {
                expiry::expire(&shared).await;
                prune(&shared, &mut last_prune).await;
                continue;
            }
            _ = expiry::due(&shared) => {
                expiry::expire(&shared).await;
                continue;
            }
            _ = expiry::moved(&shared) => continue,
        }
        if look_again_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            continue;
        }
        last_look = tokio::time::Instant::now();
        let m = match shared.store.change_marker().await {
            Ok(m) => {
                backoff.succeeded("watcher");
                look_again_at = None;
                m
            }
            Err(e) => {
                look_again_at = Some(tokio::time::Instant::now() + backoff.failed("watcher", &e));
                continue;
            }
        };
        if m == seen {
            continue;
        }
        // The sequence moves on changes other than new runs, a node's start among
        // them, which may have declared a queue's limits anew.
        if m.0 != seen.0 {
            refresh_queue_limits(&shared).await;
        }
        seen = m;
        shared.signals.wake_planner.notify_one();
        shared.signals.wake_dispatcher.notify_one();
        apply_cancel_requests(&shared).await;
        // Runs another process enqueued may expire before the next round.
        expiry::learn(&shared, None).await;
    }
}

/// Holds the queue limits stored now. A node that starts with other `[queues]` limits
/// than the stored ones replaces them (see `builder::queue_limits`); the nodes already
/// running take them up here, so that a queue's limits hold on every node without a
/// restart.
async fn refresh_queue_limits(shared: &Shared) {
    let stored = match shared.store.queue_limits().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "watcher: cannot read the queues' limits; keeping them");
            return;
        }
    };
    let current = shared.claim_limits();
    if current.queues == stored {
        return;
    }
    let mut names: Vec<&String> = current.queues.keys().chain(stored.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (was, now) = (current.queues.get(name), stored.get(name));
        if was != now {
            tracing::info!(
                queue = %name,
                was = ?was,
                now = ?now,
                "a queue's limits changed in the database (another node declared them): holding the new ones"
            );
        }
    }
    let next = crate::store::ClaimLimits {
        max_instances: current.max_instances.clone(),
        queues: stored,
    };
    *shared
        .claim_limits
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
    // Runs held back by a limit now lifted may start.
    shared.signals.wake_dispatcher.notify_one();
}

async fn apply_cancel_requests(shared: &Shared) {
    let Ok(requests) = shared.store.cancel_requests(&shared.node.id).await else {
        return;
    };
    for (id, attempt) in requests {
        // An operator's cancel, or a newer run of its job replacing it (overlap =
        // replace): the run's error says which.
        tracing::info!(run_id = id, "cancel requested");
        shared
            .signals
            .cancel_local(id, Some(attempt), CancelReason::Operator);
    }
}

/// What the heartbeat keeps from one beat to the next.
struct Heartbeat {
    /// When the leases were last renewed.
    last_renewed: DateTime<Utc>,
    /// When this node last failed to reach the database.
    last_failure: Option<tokio::time::Instant>,
    /// Whether the last heartbeat, and the last renewal, failed: an outage is logged
    /// at its start and its end, not at every beat.
    beat_failing: bool,
    renewal_failing: bool,
    /// This node's paused flag as the last heartbeat found it: kept should the node
    /// have to register again.
    paused: bool,
}

impl Heartbeat {
    fn new(now: DateTime<Utc>) -> Self {
        Heartbeat {
            last_renewed: now,
            last_failure: None,
            beat_failing: false,
            renewal_failing: false,
            paused: false,
        }
    }

    /// One heartbeat: records that the node is alive, renews the leases of its running
    /// runs and stops those it no longer owns, declares silent nodes dead and takes back
    /// runs whose lease ended.
    ///
    /// After this node could not reach the database, it waits a whole heartbeat timeout
    /// of working beats before judging others: they were cut off too, and need a beat or
    /// two to show they are alive and renew their leases.
    async fn beat(&mut self, shared: &Shared) {
        let now = shared.clock.now();
        let found = self.record(shared, now).await;
        self.renew(shared, now).await;
        if self
            .last_failure
            .is_some_and(|t| t.elapsed() < shared.heartbeat_timeout)
        {
            return;
        }
        // What the heartbeat found, read before the renewal: a lease of this node's that
        // had ended is renewed now, and the take-back checks again.
        if let Some(found) = found {
            judge_others(shared, &found, now).await;
        }
    }

    /// Records the heartbeat (registering the node again if its record is gone), and
    /// returns what it found of other nodes, leases and watchers.
    async fn record(&mut self, shared: &Shared, now: DateTime<Utc>) -> Option<Beat> {
        let look = BeatLook {
            dead_after: shared.heartbeat_timeout,
            leases_before: now,
            watchers_since: chrono::Utc::now() - super::event_log::SUBSCRIBER_TTL,
        };
        // The heartbeat returns the database's time it recorded: the clock's reading.
        let before = shared.clock_sync.as_ref().map(|s| s.local_now());
        match shared.store.heartbeat(&shared.node.id, &look).await {
            Ok(beat) if beat.at_ms.is_none() => {
                // Forgotten while it could not beat for days (or deleted by hand): without a
                // record it would be missing from `kairos nodes list` and from a pause of
                // every node.
                tracing::warn!(
                    node = %shared.node.id,
                    "this node's record was gone (forgotten after it was declared dead, or \
                     deleted); registering it again"
                );
                if let Err(e) = shared.store.register_node(&shared.node, self.paused).await {
                    tracing::warn!(error = %e, "cannot register this node again");
                }
                None
            }
            Ok(beat) => {
                if std::mem::take(&mut self.beat_failing) {
                    tracing::info!("heartbeat: the database answers again");
                }
                if !beat.alive {
                    tracing::warn!(
                        node = %shared.node.id,
                        "this node had been declared dead by another (no heartbeat for too \
                         long); the runs it held were taken back"
                    );
                }
                if let (Some(sync), Some(before), Some(db)) = (
                    &shared.clock_sync,
                    before,
                    beat.at_ms.and_then(DateTime::<Utc>::from_timestamp_millis),
                ) {
                    // A slow beat is no reading; the next one may be.
                    observe_clock(sync, before, db, sync.local_now());
                }
                shared.signals.events.saw_watchers(beat.watched);
                self.paused = beat.paused;
                Some(beat)
            }
            Err(e) => {
                if std::mem::replace(&mut self.beat_failing, true) {
                    tracing::debug!(error = %e, "heartbeat failed again");
                } else {
                    tracing::warn!(error = %e, "heartbeat failed: cannot reach the database; trying at every beat, logged again when it answers");
                }
                self.last_failure = Some(tokio::time::Instant::now());
                None
            }
        }
    }

    /// Renews the leases of the node's running attempts, stopping those it no longer
    /// owns, and those it could not renew for a whole lease.
    async fn renew(&mut self, shared: &Shared, now: DateTime<Utc>) {
        let lease = chrono::Duration::from_std(shared.lease).unwrap_or_default();
        // Attempts registered before the renewal have committed claims: one that the
        // renewal does not find was taken back from this node. With none, there is
        // nothing to renew (and no statement to make).
        let local = shared.signals.local_attempts();
        let keys: Vec<(i64, u32)> = local.iter().map(|h| (h.id, h.attempt)).collect();
        let renewed = if keys.is_empty() {
            Ok(Vec::new())
        } else {
            shared
                .store
                .renew_leases(&shared.node.id, &keys, now + lease)
                .await
        };
        match renewed {
            Ok(owned) => {
                self.last_renewed = now;
                self.renewal_failing = false;
                let owned: HashSet<(i64, u32)> = owned.into_iter().collect();
                // Not written: the run is another's or queued, and a new claim of the same
                // attempt by this node (made since the renewal read) could not be told from
                // this execution by the fence.
                let lost = local
                    .into_iter()
                    .filter(|h| !owned.contains(&(h.id, h.attempt)));
                stop_attempts(
                    lost,
                    Running::disown,
                    "this node no longer owns the run (its lease ended and it was taken back, \
                     or its claim was lost): stopping this attempt",
                );
            }
            Err(e) => {
                if std::mem::replace(&mut self.renewal_failing, true) {
                    tracing::debug!(error = %e, "lease renewal failed again");
                } else {
                    tracing::warn!(error = %e, "lease renewal failed");
                }
                self.last_failure = Some(tokio::time::Instant::now());
                if now - self.last_renewed >= lease {
                    // Another node may own these runs by now: stop rather than run beside
                    // it. Still this node's, perhaps: its outcome (a release, mostly) is
                    // written if nobody took the run back meanwhile.
                    stop_attempts(
                        local.into_iter(),
                        |r| r.cancel(CancelReason::LeaseLost),
                        "no lease renewal for a whole lease: stopping this attempt",
                    );
                }
            }
        }
    }
}

/// Acts on what a heartbeat found: declares silent nodes dead and takes back runs
/// whose lease ended (those of a node declared dead just now among them).
async fn judge_others(shared: &Shared, found: &Beat, now: DateTime<Utc>) {
    let mut declared = false;
    if found.silent_nodes {
        match shared
            .store
            .declare_dead_nodes(&shared.node.id, shared.heartbeat_timeout)
            .await
        {
            Ok(dead) if !dead.is_empty() => {
                declared = true;
                tracing::warn!(
                    nodes = ?dead,
                    "declared dead: no heartbeat within their heartbeat timeout"
                );
                for (id, name) in dead {
                    shared.emit(|| {
                        crate::events::Event::new(crate::events::EventKind::NodeLeft, now).data(
                            serde_json::json!({ "node_id": id, "name": name, "reason": "dead" }),
                        )
                    });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dead node check failed"),
        }
    }
    // A node declared dead has had its runs' leases ended just now.
    if !found.ended_leases && !declared {
        return;
    }
    // Runs queued again here may be claimed at once (the take-back moves the change
    // counter, which wakes dispatchers): held until their `run_queued` is published,
    // as an enqueue's are (see `order`).
    let in_flight = shared.signals.enqueues.enter();
    match shared.store.recover_expired(now).await {
        Ok(taken) if taken.is_empty() => {}
        Ok(taken) => {
            let requeued = taken
                .iter()
                .filter(|t| t.status == RunStatus::Queued)
                .count();
            tracing::warn!(
                requeued,
                failed = taken.len() - requeued,
                "took back runs whose node stopped renewing its lease"
            );
            taken_back_events(shared, &taken, now).await;
            drop(in_flight);
            shared.signals.wake_dispatcher.notify_one();
        }
        Err(e) => tracing::warn!(error = %e, "lease expiry check failed"),
    }
}

/// The names of these jobs, for events about runs this node did not run (a deleted
/// job's included); no query when there are none.
pub(super) async fn job_names(
    shared: &Shared,
    ids: impl Iterator<Item = i64>,
) -> std::collections::HashMap<i64, String> {
    let ids: Vec<i64> = ids.collect();
    if ids.is_empty() {
        return Default::default();
    }
    shared.store.job_names(&ids).await.unwrap_or_default()
}

/// Tells subscribers what became of runs taken back: queued again for their next
/// attempt, or finished (failed, or cancelled), as a shutdown's release or an outcome
/// would. Without these, a watcher would show them running forever.
async fn taken_back_events(shared: &Shared, taken: &[TakenBack], now: DateTime<Utc>) {
    if !shared.signals.events.wanted() {
        return;
    }
    let jobs = job_names(shared, taken.iter().filter_map(|t| t.job_id)).await;
    for t in taken {
        shared.emit(|| {
            let (kind, data) = if t.status == RunStatus::Queued {
                (
                    EventKind::RunQueued,
                    serde_json::json!({ "attempt": t.attempt, "recovered": true, "error": t.why }),
                )
            } else {
                (
                    EventKind::RunFinished,
                    serde_json::json!({
                        "attempt": t.attempt,
                        "status": t.status,
                        "error": t.why,
                        "recovered": true,
                    }),
                )
            };
            Event::new(kind, now)
                .run(t.id, &t.task)
                .job(t.job_id.and_then(|j| jobs.get(&j).cloned()))
                .data(data)
        });
    }
}

/// A reading of the database's clock slower than this says little about the offset.
const CLOCK_READ_MAX: chrono::Duration = chrono::Duration::milliseconds(50);

/// Measures how far this machine's clock is from the database's and corrects the
/// node's clock by it (see [`crate::clock::Clock::is_wall_clock`]).
pub(super) async fn sync_clock(store: &crate::store::Store, sync: &crate::clock::SyncedClock) {
    for _ in 0..3 {
        let before = sync.local_now();
        let db = match store.db_time_ms().await {
            Ok(ms) => DateTime::<Utc>::from_timestamp_millis(ms),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the database's clock");
                return;
            }
        };
        let after = sync.local_now();
        let Some(db) = db else { return };
        if observe_clock(sync, before, db, after) {
            return;
        }
    }
}

/// Takes one reading of the database's clock (`db`, read between `before` and
/// `after` on this machine's) into the node's correction, and says when the offset
/// appears or goes. A slow reading says little and is dropped: returns whether the
/// reading was taken.
fn observe_clock(
    sync: &crate::clock::SyncedClock,
    before: DateTime<Utc>,
    db: DateTime<Utc>,
    after: DateTime<Utc>,
) -> bool {
    if after - before > CLOCK_READ_MAX {
        return false;
    }
    if let Some(offset) = sync.observe(before, db, after) {
        if offset.is_zero() {
            tracing::info!("this machine's clock agrees with the database's again");
        } else {
            tracing::warn!(
                offset_ms = offset.num_milliseconds(),
                "this machine's clock differs from the database's: the node keeps time \
                 by the database (fix the machine's clock with NTP)"
            );
        }
    }
    true
}

/// Stops these local executions with `stop`: this node can no longer count on owning
/// them. Only the executions the renewal saw are stopped; one that ended meanwhile
/// has nothing to stop.
fn stop_attempts(attempts: impl Iterator<Item = Held>, stop: impl Fn(&Running), why: &str) {
    for held in attempts {
        if let Some(running) = held.running {
            // An attempt already stopping (at an earlier beat of an outage) is logged
            // once.
            let first = running.reason() == CancelReason::None;
            stop(&running);
            if first {
                tracing::warn!(run_id = held.id, attempt = held.attempt, "{why}");
            } else {
                tracing::debug!(run_id = held.id, attempt = held.attempt, "{why}");
            }
        }
    }
}

/// Default time between two prunes.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Deletes finished runs older than `[retention]` allows, and nodes that ended longer
/// ago than it keeps them, at most every `every`.
async fn prune(shared: &Shared, last: &mut Option<chrono::DateTime<chrono::Utc>>) {
    let now = shared.clock.now();
    let every = shared.retention.every.unwrap_or(PRUNE_EVERY);
    if last.is_some_and(|t| now < t + chrono::Duration::from_std(every).unwrap_or_default()) {
        return;
    }
    *last = Some(now);
    match shared
        .store
        .forget_nodes(shared.retention.nodes_kept())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(nodes = n, "forgot nodes that ended longer ago than kept"),
        Err(e) => tracing::warn!(error = %e, "forgetting ended nodes failed"),
    }
    let ages = shared.retention.ages();
    for (status, age) in &ages {
        let before = now - chrono::Duration::from_std(*age).unwrap_or_default();
        match shared.store.prune_runs(&[*status], before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(runs = n, %status, "pruned finished runs past their retention"),
            Err(e) => tracing::warn!(error = %e, %status, "pruning failed"),
        }
    }
    // Slot records go with the oldest runs kept.
    if let Some(longest) = ages.iter().map(|(_, d)| *d).max() {
        let before = now - chrono::Duration::from_std(longest).unwrap_or_default();
        if let Err(e) = shared.store.prune_slots(before).await {
            tracing::warn!(error = %e, "pruning slot records failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::super::{CancelReason, Running, Signals};
    use super::stop_attempts;
    use crate::events::EventBus;

    /// What a renewal decides stops the executions it saw, not a new claim of the same
    /// attempt that replaced one of them in the running map meanwhile.
    #[test]
    fn a_renewal_stops_the_executions_it_saw_only() {
        let signals = Signals::new(EventBus::new(None, None));
        let enter = |id: i64| {
            let r = Arc::new(Running::new(1, CancellationToken::new()));
            signals.running.lock().unwrap().insert(id, r.clone());
            r
        };
        let (first, other) = (enter(7), enter(8));
        signals.finishing.lock().unwrap().insert((9, 2));
        let mut seen = signals.local_attempts();
        seen.sort_by_key(|h| h.id);
        let keys: Vec<(i64, u32, bool)> = seen
            .iter()
            .map(|h| (h.id, h.attempt, h.running.is_some()))
            .collect();
        assert_eq!(keys, [(7, 1, true), (8, 1, true), (9, 2, false)]);
        // Run 7 is claimed again, as attempt 1 again, before the renewal's answer.
        let again = enter(7);
        stop_attempts(seen.into_iter(), Running::disown, "lost");
        assert!(first.is_disowned() && first.token.is_cancelled());
        assert_eq!(first.reason(), CancelReason::LeaseLost);
        assert!(other.is_disowned());
        assert!(!again.is_disowned() && !again.token.is_cancelled());
    }
}
