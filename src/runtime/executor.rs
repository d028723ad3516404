//! The executor: runs one claimed attempt with its timeout and cancellation, catches
//! panics, and turns the outcome into a `Completion` (including the retry decision).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::retry::{backoff, should_retry};
use super::{Done, Shared};
use crate::store::{ClaimedRun, Completion, RunStatus};
use crate::task::{FailedRun, TaskContext};

/// Why a running attempt's token was cancelled.
pub(super) const CANCEL_OPERATOR: u8 = 1;
pub(super) const CANCEL_SHUTDOWN: u8 = 2;

/// A running attempt as the node tracks it.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) attempt: i32,
    pub(super) token: CancellationToken,
    pub(super) reason: Arc<AtomicU8>,
}

/// How long a cancelled task may take to notice `ctx.cancelled()` before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Runs a claimed attempt on its own task, holding a worker slot until its outcome is
/// handed to the completer.
pub(super) fn spawn(
    shared: Arc<Shared>,
    run: ClaimedRun,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        execute(shared, run).await;
        drop(permit);
    });
}

async fn execute(shared: Arc<Shared>, run: ClaimedRun) {
    let token = CancellationToken::new();
    let reason = Arc::new(AtomicU8::new(0));
    shared.running.lock().expect("running map poisoned").insert(
        run.id,
        Running {
            attempt: run.attempt,
            token: token.clone(),
            reason: reason.clone(),
        },
    );
    let span = tracing::info_span!(
        "run",
        run_id = run.id,
        task = %run.task,
        job_id = run.job_id,
        attempt = run.attempt
    );
    let done = attempt(&shared, &run, token, reason).instrument(span).await;
    shared
        .running
        .lock()
        .expect("running map poisoned")
        .remove(&run.id);
    // The completer may be gone only during a hard stop; the lease then re-queues the run.
    let _ = shared.completions.send(super::Msg::Done(done));
    shared.wake_dispatcher.notify_one();
}

async fn attempt(
    shared: &Shared,
    run: &ClaimedRun,
    token: CancellationToken,
    reason: Arc<AtomicU8>,
) -> Done {
    let attempt = u32::try_from(run.attempt).unwrap_or(1);
    // Measured from the claim, not from when this task got scheduled: the attempt's
    // time starts when the database says it started.
    let started = run.started_at;
    let fail = |error: String, status: RunStatus, permanent: bool| -> Done {
        let max_retries = u32::try_from(run.max_retries).unwrap_or(0);
        if status != RunStatus::Cancelled && should_retry(attempt, max_retries, permanent) {
            let base = Duration::from_millis(run.retry_delay_ms.max(0) as u64);
            let delay = backoff(base, attempt, rand::random::<f64>());
            let run_at = shared.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::warn!(%error, retry_at = %run_at, "attempt failed; will retry");
            return Done {
                completion: Completion::Retry {
                    id: run.id,
                    attempt: run.attempt,
                    error,
                    run_at,
                },
                failed: None,
            };
        }
        tracing::error!(%error, status = %status, "run failed");
        Done {
            failed: (status != RunStatus::Cancelled).then(|| {
                let params = serde_json::from_str(&run.params).unwrap_or_default();
                FailedRun::new(
                    run.id,
                    run.task.clone(),
                    run.job_id,
                    attempt,
                    error.clone(),
                    params,
                )
            }),
            completion: Completion::Finished {
                id: run.id,
                attempt: run.attempt,
                status,
                error,
            },
        }
    };

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
    let params: serde_json::Value = match serde_json::from_str(&run.params) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                format!("invalid params: not JSON: {e}"),
                RunStatus::Failed,
                true,
            );
        }
    };
    let ctx = TaskContext::new(
        run.id,
        run.task.clone(),
        run.job_id,
        run.scheduled_for,
        attempt,
        token.clone(),
    );
    tracing::info!("started");
    let mut fut = AssertUnwindSafe((def.handler)(ctx, params)).catch_unwind();
    let timeout = Duration::from_millis(run.timeout_ms.max(0) as u64);
    let deadline = started + chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let result = tokio::select! {
        r = &mut fut => Some(r),
        _ = shared.clock.sleep_until(deadline) => {
            token.cancel();
            return fail(format!("timed out after {}", crate::schedule::format_duration(timeout)), RunStatus::TimedOut, false);
        }
        _ = token.cancelled() => None,
    };
    let result = match result {
        Some(r) => Some(r),
        // Cancelled: give the task a moment to stop on its own, then drop it.
        None => tokio::time::timeout(CANCEL_GRACE, &mut fut).await.ok(),
    };
    // A task that saw the cancellation (through either branch above) and did not
    // succeed ends as the canceller decided: released to the queue at shutdown,
    // cancelled for an operator.
    let succeeded = matches!(result, Some(Ok(Ok(_))));
    match reason.load(Ordering::SeqCst) {
        CANCEL_SHUTDOWN if !succeeded => {
            tracing::info!("released at shutdown");
            return Done {
                completion: Completion::Released {
                    id: run.id,
                    attempt: run.attempt,
                },
                failed: None,
            };
        }
        CANCEL_OPERATOR if !succeeded => {
            return fail("cancelled by operator".into(), RunStatus::Cancelled, true);
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
            Done {
                completion: Completion::Succeeded {
                    id: run.id,
                    attempt: run.attempt,
                    result: value.map(|v| v.to_string()),
                },
                failed: None,
            }
        }
        Ok(Err(e)) => {
            let permanent = e.is_permanent();
            fail(e.to_string(), RunStatus::Failed, permanent)
        }
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            fail(format!("panicked: {msg}"), RunStatus::Failed, false)
        }
    }
}
