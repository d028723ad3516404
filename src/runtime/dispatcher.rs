//! The dispatcher: claims due runs in batches while there are free worker slots and
//! starts each on the executor. It sleeps until the earliest queued `run_at`, a
//! completion frees a slot, a rate limit has budget again, or an enqueue wakes it; it
//! never polls on a timer. A freed slot wakes it only while slots are what it waits
//! for (every slot busy, or due runs left over by the last claim): on a node whose
//! queue is empty, a run that ends costs no claim.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Shared, executor};

/// Runs claimed per transaction at most.
const CLAIM_BATCH: usize = 512;

/// While most workers are busy, how long to let freed slots accumulate before claiming,
/// so that one claim serves many finished runs instead of one statement per completion.
/// Bounds the extra wait of a queued run on a loaded node; an idle node claims at once.
const GATHER: Duration = Duration::from_millis(1);

/// The longest an idle dispatcher sleeps without looking for due runs. Inserts and
/// the change counter wake it for what other processes add; this is the backstop for
/// runs queued again by an update that announces nothing, such as a retry written by a
/// node that stopped or died before its time, which no other node knows is due.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// Below this many free slots (of `workers`) a claim waits up to [`GATHER`] for more.
pub(super) fn gather_below(workers: usize) -> usize {
    (workers / 4).max(1)
}

/// Takes the free worker slots, up to [`CLAIM_BATCH`], for a claim about to be made
/// (`None` when fewer than `at_least` are free). Slots are taken before claiming, not
/// per run after: a run claimed while another claimer (the listener, the handle's fast
/// path) took the slot it was counted for would wait for one without its lease being
/// renewed.
pub(super) fn take_free_slots(
    shared: &Shared,
    at_least: usize,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        let free = shared.workers.available_permits().min(CLAIM_BATCH);
        if free == 0 || free < at_least {
            return None;
        }
        match shared.workers.clone().try_acquire_many_owned(free as u32) {
            Ok(slots) => return Some(slots),
            // Taken meanwhile by another claimer: count again.
            Err(tokio::sync::TryAcquireError::NoPermits) => continue,
            Err(tokio::sync::TryAcquireError::Closed) => return None,
        }
    }
}

pub(super) async fn run(shared: Arc<Shared>) {
    let workers = shared.node.max_workers;
    let mut gather_until: Option<Instant> = None;
    let mut backoff = super::backoff::Backoff::default();
    let later = |wait: Duration| chrono::Duration::from_std(wait).unwrap_or_default();
    loop {
        let woken = shared.signals.wake_dispatcher.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // A slot freed since this was last listened to is kept by the Notify, so one
        // freed meanwhile is not missed.
        let freed = shared.signals.slot_freed.notified();
        tokio::pin!(freed);
        if shared.shutdown.is_cancelled() {
            return;
        }
        let free = shared.workers.available_permits().min(CLAIM_BATCH);
        if free > 0 && free < gather_below(workers) {
            let deadline = *gather_until.get_or_insert_with(|| Instant::now() + GATHER);
            if Instant::now() < deadline {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = woken.as_mut() => continue,
                    _ = freed.as_mut() => continue,
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        gather_until = None;
        let mut sleep_until = None;
        // Every slot is busy: a freed one is what to wait for. (With a slot free, the
        // claim below either filled them all and looks again at once, or found nothing
        // more to claim, which a freed slot does not change; limits are looked at
        // again when the completer wakes us.)
        let slots = take_free_slots(&shared, 1);
        let wait_for_slots = slots.is_none();
        if let Some(mut slots) = slots {
            let free = slots.num_permits();
            let now = shared.clock.now();
            // Runs due within the lead are claimed now and wait here for their time.
            let due_by = now + shared.lead;
            match shared
                .store
                .claim(
                    &shared.node.id,
                    due_by,
                    &|| shared.clock.now(),
                    free,
                    shared.lease,
                    &shared.claim_limits(),
                )
                .await
            {
                Ok(claim) => {
                    backoff.succeeded("dispatcher");
                    let n = claim.runs.len();
                    if n > 0 {
                        // A run enqueued through this node is started after its
                        // queueing is published (see `order`).
                        shared.signals.enqueues.settled().await;
                    }
                    for run in claim.runs {
                        let permit = slots.split(1).expect("a slot was taken for each run");
                        executor::spawn(shared.clone(), run, permit);
                    }
                    // The slots no run was found for are free again.
                    drop(slots);
                    if n == free {
                        // Possibly more due: claim again at once.
                        continue;
                    }
                    // Sleep until the next run not yet due, in any queue. Due runs the
                    // claim left (a queue at its limit, or paused) wait for a
                    // completion, a change or the rate limit's budget to wake us; they
                    // must not hold back runs due later in other queues.
                    match shared.store.next_queued_after(due_by).await {
                        Ok(next) => {
                            let next = next.map(|t| t - shared.lead);
                            let backstop = now + later(LOOK_AT_LEAST_EVERY);
                            sleep_until = [next, claim.retry_at, Some(backstop)]
                                .into_iter()
                                .flatten()
                                .min();
                        }
                        Err(e) => {
                            sleep_until = Some(now + later(backoff.failed("dispatcher", &e)));
                        }
                    }
                }
                Err(e) => {
                    sleep_until = Some(now + later(backoff.failed("dispatcher: claim", &e)));
                }
            }
        }
        let slots = async {
            if wait_for_slots {
                freed.await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            awake = shared.idle(sleep_until, woken) => if !awake { return },
            _ = slots => {}
        }
    }
}
