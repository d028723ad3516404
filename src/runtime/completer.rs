//! The completer: writes attempt outcomes back in batches (one transaction for
//! everything finished since the last write), then runs failure callbacks for runs that
//! really ended failed (not those an operator cancelled meanwhile), and hands the runs
//! that ended to the webhook worker (which POSTs those with a callback URL).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::hooks::{Hooks, RunOutcome};
use super::{Done, Msg, Shared};
use crate::events::{Event, EventKind};
use crate::model::RunStatus;
use crate::store::Completion;

/// Outcomes written per transaction at most.
const COMPLETE_BATCH: usize = 2048;

/// Outcomes whose attempts ended this close together are written with one time, the
/// latest of theirs (see `write`).
const SAME_END: chrono::Duration = chrono::Duration::milliseconds(250);

/// Tells subscribers how an attempt ended, as it was stored.
fn emit(shared: &Shared, done: &Done, statuses: &std::collections::HashMap<i64, RunStatus>) {
    let id = done.completion.id();
    let Some(&status) = statuses.get(&id) else {
        return;
    };
    let attempt = done.completion.attempt();
    shared.emit(|| {
        let (kind, data) = match (&done.completion, status) {
            (Completion::Retry { error, run_at, .. }, RunStatus::Queued) => (
                EventKind::RunRetried,
                serde_json::json!({ "attempt": attempt, "error": error, "retry_at": crate::clock::whole_ms(*run_at) }),
            ),
            (Completion::Snoozed { run_at, .. }, RunStatus::Queued) => (
                EventKind::RunQueued,
                serde_json::json!({ "attempt": attempt, "run_at": crate::clock::whole_ms(*run_at), "snoozed": true }),
            ),
            (Completion::Released { .. }, _) => (
                EventKind::RunQueued,
                serde_json::json!({ "attempt": attempt, "released": true }),
            ),
            (c, s) => (
                EventKind::RunFinished,
                serde_json::json!({
                    "attempt": attempt,
                    "status": s,
                    "error": match c {
                        Completion::Finished { error, .. } => Some(error.clone()),
                        _ => None,
                    },
                }),
            ),
        };
        Event::new(kind, shared.clock.now())
            .run(id, &done.task)
            .job(shared.job_name(done.job_id))
            .tags(&done.tags)
            .data(data)
    });
}

/// Runs the scheduler-wide hooks for an outcome as it was stored.
fn call_hooks(shared: &Shared, done: &Done, statuses: &std::collections::HashMap<i64, RunStatus>) {
    let h = &shared.hooks;
    if !h.wants_outcomes() {
        return;
    }
    let id = done.completion.id();
    let Some(&status) = statuses.get(&id) else {
        return;
    };
    let outcome = |error: Option<&String>, retry_at| RunOutcome {
        run_id: id,
        task: done.task.clone(),
        job_id: done.job_id,
        attempt: done.completion.attempt(),
        status,
        error: error.cloned(),
        retry_at,
    };
    match (&done.completion, status) {
        (Completion::Succeeded { .. }, RunStatus::Succeeded) => {
            Hooks::call(&h.on_success, "on_success", outcome(None, None))
        }
        (Completion::Finished { error, .. }, RunStatus::Failed | RunStatus::TimedOut) => {
            Hooks::call(&h.on_failure, "on_failure", outcome(Some(error), None))
        }
        (Completion::Retry { error, run_at, .. }, RunStatus::Queued) => {
            Hooks::call(&h.on_retry, "on_retry", outcome(Some(error), Some(*run_at)))
        }
        _ => {}
    }
}

/// The attempts of `batch` that may have ended a run with a callback URL, for the
/// webhook worker: those stored with a final status, and plain successes (whose status
/// is read back only when hooks or events want it; the worker's query tells). Retries,
/// snoozes and releases stored as `queued` did not end anything. Runs without a callback
/// URL are left out here, so that a batch of them costs the worker no query.
fn ended(batch: &[Done], statuses: &HashMap<i64, RunStatus>) -> Vec<(i64, u32)> {
    batch
        .iter()
        .filter(|d| d.callback)
        .filter(
            |d| match (&d.completion, statuses.get(&d.completion.id())) {
                (Completion::Released { .. }, _) => false,
                (Completion::Succeeded { .. }, None) => true,
                (_, status) => status.is_some_and(|s| s.is_finished()),
            },
        )
        .map(|d| (d.completion.id(), d.completion.attempt()))
        .collect()
}

pub(super) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut batch = Vec::with_capacity(COMPLETE_BATCH);
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        take(Some(first), &mut rx, &mut batch, &mut flushes);
        if !batch.is_empty() {
            // Runs released together for their start time are still starting (see
            // `on_time`): outcomes can wait a few milliseconds, those starts cannot,
            // and writing meanwhile took a fifth of the cores they start on.
            if let Some(ends) = shared.starts.burst_ends() {
                tokio::time::sleep_until(ends.into()).await;
                take(None, &mut rx, &mut batch, &mut flushes);
            }
            write(&shared, &mut batch).await;
        }
        for tx in flushes.drain(..) {
            let _ = tx.send(());
        }
    }
}

/// Writes `completions` of attempts that ended by `ended`, trying until the database
/// takes them: a database outage must not lose outcomes (the runs stay `running` and
/// leased meanwhile, so no other node takes them). Returns the statuses stored.
async fn store(
    shared: &Shared,
    completions: &[Completion],
    ended: chrono::DateTime<chrono::Utc>,
) -> HashMap<i64, RunStatus> {
    let mut wait = Duration::from_millis(50);
    loop {
        match shared
            .store
            .complete(
                &shared.node.id,
                completions,
                ended,
                shared.hooks.wants_outcomes() || shared.signals.events.wanted(),
            )
            .await
        {
            Ok(s) => return s,
            Err(e) => {
                tracing::error!(error = %e, runs = completions.len(), "cannot record run outcomes; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Adds `first` and whatever else is waiting to `batch`, until it holds a batch.
fn take(
    first: Option<Msg>,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    batch: &mut Vec<Done>,
    flushes: &mut Vec<tokio::sync::oneshot::Sender<()>>,
) {
    let room = |batch: &Vec<Done>| batch.len() < COMPLETE_BATCH;
    let mut next = first.or_else(|| room(batch).then(|| rx.try_recv().ok()).flatten());
    while let Some(msg) = next.take() {
        match msg {
            Msg::Done(d) => batch.push(*d),
            Msg::Flush(tx) => flushes.push(tx),
        }
        if room(batch) {
            next = rx.try_recv().ok();
        }
    }
}

async fn write(shared: &Shared, batch: &mut Vec<Done>) {
    // What the attempts reported last is stored before how they ended.
    let (tx, rx) = tokio::sync::oneshot::channel();
    if shared
        .reports
        .tx
        .send(crate::context::Report::Flush(tx))
        .is_ok()
    {
        let _ = rx.await;
    }
    // Each outcome is stored with the time its attempt ended. Outcomes that ended
    // within `SAME_END` of each other (all of them, but after an outage) share one
    // write and the latest of their times.
    batch.sort_by_key(|d| d.ended_at);
    let mut statuses = HashMap::new();
    let mut first = 0;
    while first < batch.len() {
        let from = batch[first].ended_at;
        let end = batch[first..]
            .iter()
            .position(|d| d.ended_at - from > SAME_END)
            .map_or(batch.len(), |n| first + n);
        let completions: Vec<Completion> = batch[first..end]
            .iter()
            .map(|d| d.completion.clone())
            .collect();
        statuses.extend(store(shared, &completions, batch[end - 1].ended_at).await);
        first = end;
    }
    {
        let mut finishing = shared
            .signals
            .finishing
            .lock()
            .expect("finishing set poisoned");
        for d in batch.iter() {
            finishing.remove(&(d.completion.id(), d.completion.attempt()));
        }
    }
    shared.webhooks.finished(ended(batch, &statuses));
    let requeued = batch.iter().any(|d| {
        matches!(
            d.completion,
            Completion::Retry { .. } | Completion::Snoozed { .. } | Completion::Released { .. }
        )
    });
    for done in batch.drain(..) {
        call_hooks(shared, &done, &statuses);
        emit(shared, &done, &statuses);
        let Some(failed) = done.failed else { continue };
        if !matches!(
            statuses.get(&failed.run_id),
            Some(RunStatus::Failed | RunStatus::TimedOut)
        ) {
            continue;
        }
        let Some(hook) = shared.registry.get(&failed.task).and_then(|t| t.on_failure) else {
            continue;
        };
        tokio::spawn(async move {
            let run_id = failed.run_id;
            let call = std::panic::AssertUnwindSafe(hook(failed));
            if futures::FutureExt::catch_unwind(call).await.is_err() {
                tracing::error!(run_id, "on_failure callback panicked");
            }
        });
    }
    // Limited claims count the runs the database shows as running, so a run written as
    // ended may free a slot; and a run queued again may be due before the time the
    // dispatcher sleeps until. Otherwise the slot the attempt freed already woke it
    // (see the executor): another look would claim nothing.
    if requeued || !shared.claim_limits().is_empty() {
        shared.signals.wake_dispatcher.notify_one();
    }
}
