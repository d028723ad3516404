//! The executor: runs one claimed attempt with its timeout and cancellation, catches
//! panics, and turns the outcome into a `Completion` (including the retry decision).
//!
//! A run an operator cancelled ends `cancelled` whatever the task then returns (a
//! cooperative task typically notices `ctx.cancelled()` and returns `Ok`); a run
//! cancelled because the node shuts down is released to the queue instead.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::retry::{backoff, should_retry};
use super::{CancelReason, Done, Running, Shared};
use crate::events::{Event, EventKind};
use crate::model::RunStatus;
use crate::store::{ClaimedRun, Completion, Release};
use crate::task::{FailedRun, TaskContext, TaskError};

/// An attempt starting this long after the start its claim gave it first makes sure
/// that the run is still this node's. Well under the shortest lease (3 s), so no run
/// can have been taken back from a node that starts it sooner; a running node starts
/// its runs within milliseconds, so this costs nothing but after a stall.
const LATE_START: chrono::Duration = chrono::Duration::seconds(1);

/// Runs a claimed attempt on its own task, holding a worker slot until its outcome is
/// handed to the completer (or dropped, for a disowned execution), then tells the
/// dispatcher the slot is free.
pub(super) fn spawn(
    shared: Arc<Shared>,
    run: ClaimedRun,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    // Registered before the task is scheduled: from the claim on, the node's lease
    // renewal must count this attempt as its own. A beat in between would leave its
    // lease unrenewed and, should it then run out (a clock that jumped, a machine
    // that slept), take the run back from the node executing it.
    let (token, running) = register(&shared, &run);
    tokio::spawn(async move {
        let id = run.id;
        let executed = AssertUnwindSafe(execute(&shared, run, token, &running))
            .catch_unwind()
            .await;
        if let Err(panic) = executed {
            // The node's own code panicked around the task (the task's own panics are
            // its outcome). Left in the running map, the attempt would have its lease
            // renewed for as long as the node lives; out of it, the run is taken back
            // once the lease ends, like a dead node's. The node stops: it is broken.
            let mut map = shared
                .signals
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            unregister(&mut map, id, &running);
            drop(map);
            shared.fail("executor", &*panic);
        }
        // The slot is free only once the permit is back: a dispatcher woken before
        // would count no free slot and wait again for a notification already spent.
        drop(permit);
        shared.signals.slot_freed.notify_one();
    });
}

/// Enters the attempt in the node's running map, stopping an earlier execution of the
/// run that is still there.
fn register(shared: &Shared, run: &ClaimedRun) -> (CancellationToken, Arc<Running>) {
    let token = CancellationToken::new();
    let running = Arc::new(Running::new(run.attempt, token.clone()));
    let older = shared
        .signals
        .running
        .lock()
        .expect("running map poisoned")
        .insert(run.id, running.clone());
    if let Some(older) = older {
        if older.attempt == run.attempt {
            tracing::warn!(
                run_id = run.id,
                attempt = run.attempt,
                "this attempt was claimed again (the database lost the claim it ran under): \
                 stopping the earlier execution, whose outcome is dropped"
            );
            older.disown();
        } else {
            // An earlier attempt of this run still runs here: the run was taken back
            // from this node and claimed again before the renewal noticed.
            tracing::warn!(
                run_id = run.id,
                attempt = older.attempt,
                "an earlier attempt of this run was taken back from this node: stopping it"
            );
            older.cancel(CancelReason::LeaseLost);
        }
    }
    (token, running)
}

/// Takes the attempt `running` of run `id` out of the node's running map: only this
/// attempt's entry, since a newer attempt of the run may have replaced it.
fn unregister(map: &mut HashMap<i64, Arc<Running>>, id: i64, running: &Arc<Running>) {
    if map.get(&id).is_some_and(|r| Arc::ptr_eq(r, running)) {
        map.remove(&id);
    }
}

async fn execute(
    shared: &Shared,
    run: ClaimedRun,
    token: CancellationToken,
    running: &Arc<Running>,
) {
    let span = tracing::info_span!(
        "run",
        run_id = run.id,
        task = %run.task,
        job_id = run.job_id,
        attempt = run.attempt
    );
    let mut done = attempt(shared, &run, token, running).instrument(span).await;
    done.ended_at = shared.clock.now();
    // Read once: an attempt entered as finishing must also reach the completer, which
    // alone takes it out again.
    let disowned = running.is_disowned();
    {
        let mut map = shared.signals.running.lock().expect("running map poisoned");
        unregister(&mut map, run.id, running);
        if !disowned {
            shared
                .signals
                .finishing
                .lock()
                .expect("finishing set poisoned")
                .insert((run.id, run.attempt));
        }
    }
    if disowned {
        tracing::warn!(
            run_id = run.id,
            attempt = run.attempt,
            "not written: the outcome of an execution this node no longer owns"
        );
        return;
    }
    // The completer may be gone only during a hard stop; the lease then re-queues the run.
    let _ = shared.completions.send(super::Msg::Done(Box::new(done)));
}

async fn attempt(
    shared: &Shared,
    run: &ClaimedRun,
    token: CancellationToken,
    running: &Running,
) -> Done {
    // Measured from the claim, not from when this task got scheduled: the attempt's
    // time starts when the database says it started.
    let started = run.started_at;
    let fail = |error: String, status: RunStatus, permanent: bool| -> Done {
        if status != RunStatus::Cancelled && should_retry(run.attempt, run.max_retries, permanent) {
            // 0.5 is the middle of the jitter range: the plain backoff.
            let jitter = if shared.retry_jitter {
                rand::random::<f64>()
            } else {
                0.5
            };
            let delay = backoff(run.retry_delay, run.attempt, jitter);
            let run_at = shared.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::warn!(%error, retry_at = %run_at, "attempt failed; will retry");
            return Done::of(
                run,
                Completion::Retry {
                    id: run.id,
                    attempt: run.attempt,
                    error,
                    run_at,
                },
                None,
            );
        }
        if status == RunStatus::Cancelled {
            // Asked for (an operator, or a newer run of its job replacing it): no error.
            tracing::info!(%error, "run cancelled");
        } else {
            tracing::error!(%error, status = %status, "run failed");
        }
        let failed = (status != RunStatus::Cancelled).then(|| {
            FailedRun::new(
                run.id,
                run.task.clone(),
                run.job_id,
                run.attempt,
                error.clone(),
                run.params.clone(),
            )
        });
        Done::of(
            run,
            Completion::Finished {
                id: run.id,
                attempt: run.attempt,
                status,
                error,
                unstarted: false,
            },
            failed,
        )
    };

    // Back in the queue without counting the attempt (see `CancelReason`).
    let release = |reason: CancelReason| {
        let why = match reason {
            CancelReason::LeaseLost => Release::LeaseLost,
            _ => Release::Shutdown,
        };
        Done::of(
            run,
            Completion::Released {
                id: run.id,
                attempt: run.attempt,
                why,
            },
            None,
        )
    };

    if run.started_at > shared.clock.now() {
        // Claimed ahead of its time (see `SchedulerBuilder::lead`): start on the dot.
        tokio::select! {
            _ = shared.start_at(run.started_at) => {}
            _ = token.cancelled() => {
                return match running.reason() {
                    // It never started: no attempt to count, no start time to show.
                    CancelReason::Operator => {
                        tracing::info!("cancelled by operator before its start");
                        Done::of(
                            run,
                            Completion::Finished {
                                id: run.id,
                                attempt: run.attempt,
                                status: RunStatus::Cancelled,
                                error: "cancelled by operator".into(),
                                unstarted: true,
                            },
                            None,
                        )
                    }
                    reason => release(reason),
                };
            }
        }
    }

    // A start this late means the node was held up since the claim (stopped,
    // starved): by now another node may have taken the run back, and run it. Renewing
    // the lease tells whether it is still this node's (see `LATE_START`).
    if shared.clock.now() - run.started_at > LATE_START {
        let until =
            shared.clock.now() + chrono::Duration::from_std(shared.lease).unwrap_or_default();
        let mine = (run.id, run.attempt);
        match shared
            .store
            .renew_leases(&shared.node.id, &[mine], until)
            .await
        {
            Ok(owned) if owned.contains(&mine) => {}
            Ok(_) => {
                tracing::warn!("not started: the run was taken back while this node was held up");
                return release(CancelReason::LeaseLost);
            }
            Err(e) => {
                tracing::warn!(error = %e, "not started: cannot tell whether the run is still this node's");
                return release(CancelReason::LeaseLost);
            }
        }
    }
    let Some(def) = shared.registry.get(&run.task) else {
        return fail(
            format!(
                "unknown task `{}`: no task of that name is registered on this node",
                run.task
            ),
            RunStatus::Failed,
            true,
        );
    };
    let ctx = TaskContext::for_attempt(
        run.id,
        &run.task,
        run.job_id,
        run.scheduled_for,
        run.attempt,
        token.clone(),
        run.tags.clone(),
        run.checkpoint.clone(),
        shared.reports.clone(),
        running.disowned.clone(),
    );
    tracing::info!("started");
    shared.learn_job_name(run.job_id).await;
    shared.emit(|| {
        Event::new(EventKind::RunStarted, run.started_at)
            .run(run.id, &run.task)
            .job(shared.job_name(run.job_id))
            .tags(&run.tags)
            .data(serde_json::json!({ "attempt": run.attempt, "node_id": shared.node.id }))
    });
    let _executing = Executing::count(&shared.signals.executing);
    let mut fut = AssertUnwindSafe((def.handler)(ctx, run.params.clone())).catch_unwind();
    let deadline =
        started + chrono::Duration::from_std(run.timeout).unwrap_or(chrono::Duration::MAX);
    let timed_out = || {
        fail(
            format!(
                "timed out after {}",
                crate::schedule::format_duration(run.timeout)
            ),
            RunStatus::TimedOut,
            false,
        )
    };
    let result = tokio::select! {
        // The task first: one that is done at its first poll then never sets a timer.
        biased;
        r = &mut fut => Some(r),
        _ = shared.clock.sleep_until(deadline) => {
            token.cancel();
            return timed_out();
        }
        _ = token.cancelled() => None,
    };
    // Whether the task returned after it was asked to stop: what it returned then says
    // nothing of whether its work was done.
    let asked_to_stop = token.is_cancelled();
    if result.is_some() && !asked_to_stop && shared.clock.now() > deadline {
        // The task held its thread (blocking code in an async fn) past its deadline,
        // so the timer could not stop it: the attempt overran all the same.
        tracing::warn!(
            "the task blocked its thread past its timeout; run blocking code in \
             tokio::task::spawn_blocking so that it can be timed out"
        );
        return timed_out();
    }
    let result = match result {
        Some(r) => Some(r),
        // Cancelled: give the task a moment to stop on its own, then drop it; at
        // shutdown, only until the node stops waiting (see `SHUTDOWN_STOP`). A run the
        // node lost is another node's by now: it gets one last poll and is dropped,
        // rather than run on beside the new owner's attempt for the grace period.
        None => {
            let grace = if running.reason() == CancelReason::LeaseLost {
                std::time::Duration::ZERO
            } else {
                shared.cancel_grace
            };
            tokio::select! {
                biased;
                r = tokio::time::timeout(grace, &mut fut) => r.ok(),
                _ = shared.abandon.cancelled() => None,
            }
        }
    };
    match running.reason() {
        // Whatever the task returned once it was cancelled, the canceller decides.
        CancelReason::Operator => {
            tracing::info!("stopped on request");
            return fail("cancelled by operator".into(), RunStatus::Cancelled, true);
        }
        // Released without counting the attempt. After a lost lease the release is
        // normally discarded (another node owns the run now); it takes effect only
        // if nobody took the run back while the database was out of reach.
        reason @ (CancelReason::Shutdown | CancelReason::LeaseLost)
            if asked_to_stop || !matches!(result, Some(Ok(Ok(_)))) =>
        {
            if reason == CancelReason::Shutdown {
                tracing::info!("released at shutdown");
            } else {
                tracing::warn!("stopped: this node lost the run's lease");
            }
            return release(reason);
        }
        _ => {}
    }
    let Some(result) = result else {
        return fail("cancelled".into(), RunStatus::Cancelled, true);
    };
    match result {
        Ok(Ok(value)) => {
            tracing::info!(
                elapsed_ms = (shared.clock.now() - started).num_milliseconds(),
                "succeeded"
            );
            Done::of(
                run,
                Completion::Succeeded {
                    id: run.id,
                    attempt: run.attempt,
                    result: value,
                },
                None,
            )
        }
        Ok(Err(TaskError::Snooze(delay))) => {
            let delay = delay.min(crate::schedule::MAX_DURATION);
            let run_at = shared.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::info!(until = %run_at, "snoozed");
            Done::of(
                run,
                Completion::Snoozed {
                    id: run.id,
                    attempt: run.attempt,
                    run_at,
                    note: format!(
                        "snoozed for {} by the task",
                        crate::schedule::format_duration(delay)
                    ),
                },
                None,
            )
        }
        Ok(Err(e)) => {
            let permanent = e.is_permanent();
            fail(e.to_string(), RunStatus::Failed, permanent)
        }
        Err(panic) => fail(
            format!("panicked: {}", crate::task::panic_message(&*panic)),
            RunStatus::Failed,
            false,
        ),
    }
}

/// Counts a task as executing for as long as it is held (see `Signals::executing`).
struct Executing<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Executing<'a> {
    fn count(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Executing(n)
    }
}

impl Drop for Executing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
