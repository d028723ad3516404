//! Scheduler-wide hooks: code the application runs when a run succeeds, fails for
//! good, is retried, or when a job's slot is skipped. A hook runs on its own task after
//! the outcome is stored; one that panics or returns an error is logged and changes
//! nothing else.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::model::{RunStatus, SkipReason};

/// What a run hook learns about the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: i64,
    /// Its task.
    pub task: String,
    /// The job that fired it, if any.
    pub job_id: Option<i64>,
    /// The attempt that just ended.
    pub attempt: u32,
    /// `succeeded`, `failed`, `timed_out`, or `queued` for a retry.
    pub status: RunStatus,
    /// The attempt's error.
    pub error: Option<String>,
    /// When the retry is due (on_retry only).
    pub retry_at: Option<DateTime<Utc>>,
}

/// What an `on_skip` hook learns: slots of a job that passed without a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SkippedSlots {
    /// The job.
    pub job_id: i64,
    /// The first skipped slot.
    pub first: DateTime<Utc>,
    /// The last skipped slot (the same as `first` for one slot).
    pub last: DateTime<Utc>,
    /// Why.
    pub reason: SkipReason,
}

/// What a hook may return: nothing, or a `Result` whose error is logged.
pub trait HookResult {
    /// The error text, if the hook failed.
    fn into_error(self) -> Option<String>;
}

impl HookResult for () {
    fn into_error(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display> HookResult for Result<(), E> {
    fn into_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

type Hook<T> = Arc<dyn Fn(T) -> BoxFuture<'static, Option<String>> + Send + Sync>;

/// Wraps a user closure into a stored hook.
pub(crate) fn hook<T, F, Fut>(f: F) -> Hook<T>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HookResult,
{
    Arc::new(move |t| {
        let fut = f(t);
        Box::pin(async move { fut.await.into_error() })
    })
}

/// The hooks of a node.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_success: Vec<Hook<RunOutcome>>,
    pub(crate) on_failure: Vec<Hook<RunOutcome>>,
    pub(crate) on_retry: Vec<Hook<RunOutcome>>,
    pub(crate) on_skip: Vec<Hook<SkippedSlots>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_success", &self.on_success.len())
            .field("on_failure", &self.on_failure.len())
            .field("on_retry", &self.on_retry.len())
            .field("on_skip", &self.on_skip.len())
            .finish()
    }
}

impl Hooks {
    /// Whether any run hook is set (the completer then reads final statuses back).
    pub(crate) fn wants_outcomes(&self) -> bool {
        !self.on_success.is_empty() || !self.on_failure.is_empty() || !self.on_retry.is_empty()
    }

    /// Runs each hook of `list` with `value` on its own task, catching panics.
    pub(crate) fn call<T: Clone + Send + 'static>(list: &[Hook<T>], name: &'static str, value: T) {
        for h in list {
            // A closure may panic before it returns its future (a poisoned lock, say):
            // that must not take the caller (the completer) down with it.
            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(value.clone())));
            let Ok(fut) = made else {
                tracing::error!(hook = name, "hook panicked");
                continue;
            };
            tokio::spawn(async move {
                match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(None) => {}
                    Ok(Some(e)) => tracing::warn!(hook = name, error = %e, "hook failed"),
                    Err(_) => tracing::error!(hook = name, "hook panicked"),
                }
            });
        }
    }
}
