//! Operations on runs: reading them (one, or a filtered page, its logs and webhook
//! deliveries), cancel, retry, delete.

use serde::Serialize;

use super::Admin;
use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::model::{Run, RunFilter, RunLog, RunPage, RunStatus};
use crate::store::{CancelOutcome, DeleteOutcome, RetryOutcome};
use crate::webhook::RunDelivery;

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelResult {
    /// The run was queued and is now `cancelled`.
    Cancelled,
    /// The run is running: its node signals `ctx.cancelled()` within a second, drops it
    /// after a grace period, and the run ends `cancelled`.
    Requested,
}

impl Admin {
    /// One run, with its history.
    pub async fn run(&self, id: i64) -> Result<Run, Error> {
        self.store().run(id).await?.ok_or(Error::RunNotFound { id })
    }

    /// Runs matching `filter`, newest first, one page of them.
    pub async fn runs(&self, filter: &RunFilter) -> Result<RunPage, Error> {
        if filter.page_size > RunFilter::MAX_PAGE_SIZE {
            return Err(Error::invalid(
                "page_size",
                format!(
                    "{} is more than the {} runs a page may hold",
                    filter.page_size,
                    RunFilter::MAX_PAGE_SIZE
                ),
            ));
        }
        if filter.page > u64::MAX / RunFilter::MAX_PAGE_SIZE {
            return Err(Error::invalid("page", "page number too large"));
        }
        // Most likely the two bounds swapped ("after 1h ago, before 2h ago"): no run
        // could match, and an empty page would not say why.
        if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
            && after >= before
        {
            return Err(Error::invalid(
                "created_after",
                format!(
                    "{} is not before created_before ({}): no run could match; swap the two",
                    after.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
            ));
        }
        let page = self.store().runs(filter).await?;
        // A filter that matches nothing may name nothing: say so. (A deleted job's
        // kept runs are found by its name, so a job is looked up only here.)
        if page.total == 0 {
            if let Some(job) = &filter.job
                && self.store().job(job).await?.is_none()
            {
                return Err(self.job_not_found(job).await);
            }
            if let Some(task) = &filter.task
                && let Some(e) = self.unknown_task_filter(task).await?
            {
                return Err(e);
            }
            if let Some(queue) = &filter.queue
                && let Some(e) = super::cluster::unknown_queue(queue, &self.queues().await?)
            {
                return Err(e);
            }
        }
        Ok(page)
    }

    /// Cancels a run: a queued one at once, a running one cooperatively
    /// (`ctx.cancelled()`), then by dropping it after a grace period. Either way it
    /// ends `cancelled`, unless it finished first.
    pub async fn cancel_run(&self, id: i64) -> Result<CancelResult, Error> {
        match self.store().cancel_run(id, self.now()).await? {
            CancelOutcome::Cancelled => {
                if let Ok(r) = self.run(id).await {
                    let now = self.now();
                    self.emit(|| {
                        vec![
                            Event::new(EventKind::RunFinished, now)
                                .run(id, &r.task)
                                .job(r.job.clone())
                                .tags(&r.tags)
                                .data(serde_json::json!({ "status": RunStatus::Cancelled })),
                        ]
                    })
                    .await;
                }
                Ok(CancelResult::Cancelled)
            }
            CancelOutcome::Requested => {
                self.run_cancelled(id);
                Ok(CancelResult::Requested)
            }
            CancelOutcome::AlreadyFinished(s) => Err(Error::conflict(format!(
                "run {id} already finished ({s}); there is nothing to cancel"
            ))),
            CancelOutcome::NotFound => Err(Error::RunNotFound { id }),
        }
    }

    /// Queues a failed, timed-out or cancelled run again as its next attempt (the
    /// earlier attempts stay in its history).
    pub async fn retry_run(&self, id: i64) -> Result<Run, Error> {
        let in_flight = self.enqueue_in_flight();
        // Taken before the write: a node may start the run before this call returns,
        // and its `run_started` must not come before this `run_queued` by time.
        let now = self.now();
        match self.store().retry_run(id, now).await? {
            RetryOutcome::Queued(r) => {
                self.emit(|| {
                    vec![
                        Event::new(EventKind::RunQueued, now)
                            .run(id, &r.task)
                            .job(r.job.clone())
                            .tags(&r.tags)
                            .data(serde_json::json!({ "origin": "manual_retry" })),
                    ]
                })
                .await;
                drop(in_flight);
                self.runs_changed();
                Ok(*r)
            }
            RetryOutcome::NotRetryable(s) => Err(Error::conflict(match s {
                RunStatus::Succeeded => {
                    format!("run {id} succeeded; enqueue a new run instead of retrying it")
                }
                other => format!(
                    "run {id} is {other}; only a failed, timed-out or cancelled run can be retried"
                ),
            })),
            RetryOutcome::NotFound => Err(Error::RunNotFound { id }),
        }
    }

    /// A run's log lines after line `after` (0: from the first), oldest first, at most
    /// `limit`.
    pub async fn run_logs(&self, id: i64, after: i64, limit: u64) -> Result<Vec<RunLog>, Error> {
        if limit == 0 {
            return Err(Error::invalid("limit", "must be at least 1"));
        }
        let logs = self.store().run_logs(id, after, limit.min(10_000)).await?;
        if logs.is_empty() && after == 0 {
            // Tell "no such run" from "no lines yet".
            self.run(id).await?;
        }
        Ok(logs)
    }

    /// A run's webhook delivery attempts, oldest first (empty when it has no
    /// `callback_url` or has not finished yet).
    pub async fn deliveries(&self, id: i64) -> Result<Vec<RunDelivery>, Error> {
        let deliveries = self.store().deliveries(id).await?;
        if deliveries.is_empty() {
            // Tell "no such run" from "nothing delivered yet".
            self.run(id).await?;
        }
        Ok(deliveries)
    }

    /// Deletes finished runs (with their history, logs and deliveries) that finished
    /// more than `older_than` ago, of these statuses (every finished status when
    /// empty). Returns how many were deleted.
    pub async fn cleanup_runs(
        &self,
        older_than: std::time::Duration,
        statuses: &[RunStatus],
    ) -> Result<u64, Error> {
        if let Some(s) = statuses.iter().find(|s| !s.is_finished()) {
            return Err(Error::invalid(
                "status",
                format!("{s} runs are not finished; only finished runs are cleaned up"),
            ));
        }
        let statuses: Vec<RunStatus> = if statuses.is_empty() {
            RunStatus::ALL
                .into_iter()
                .filter(|s| s.is_finished())
                .collect()
        } else {
            statuses.to_vec()
        };
        let now = self.now();
        let before = chrono::Duration::from_std(older_than)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(|| Error::invalid("older_than", "too long ago"))?;
        Ok(self.store().prune_runs(&statuses, before).await?)
    }

    /// Deletes a run that is not running, with its history.
    pub async fn delete_run(&self, id: i64) -> Result<RunStatus, Error> {
        match self.store().delete_run(id).await? {
            DeleteOutcome::Deleted(s) => Ok(s),
            DeleteOutcome::Running => Err(Error::conflict(format!(
                "run {id} is running; cancel it first (`kairos runs cancel {id}`)"
            ))),
            DeleteOutcome::NotFound => Err(Error::RunNotFound { id }),
        }
    }
}
