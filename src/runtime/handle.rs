//! The handle an application uses to steer its node: enqueue runs, pause, resume and
//! trigger jobs, cancel runs, read jobs and runs, and shut down.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Shared;
use crate::store::{CancelOutcome, Job, NewRun, Run, RunFilter, StoreError};

/// Why a handle operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// No task of that name is registered.
    #[error("unknown task `{name}`{hint}")]
    UnknownTask {
        /// The name given.
        name: String,
        /// A suggestion, if one is close.
        hint: String,
    },
    /// Params must be a JSON object (or null for none).
    #[error("params of `{task}` must be a JSON object of parameter names to values, got {got}")]
    ParamsNotObject {
        /// The task.
        task: String,
        /// The JSON type given.
        got: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A run to enqueue: `Enqueue::new("task").params(json!({...})).delay(...)`.
#[derive(Debug, Clone)]
pub struct Enqueue {
    task: String,
    params: Value,
    at: Option<DateTime<Utc>>,
    delay: Option<Duration>,
    priority: Option<i32>,
}

impl Enqueue {
    /// A run of `task` with no params, as soon as possible.
    pub fn new(task: impl Into<String>) -> Self {
        Enqueue {
            task: task.into(),
            params: Value::Object(Default::default()),
            at: None,
            delay: None,
            priority: None,
        }
    }
    /// The run's params: a JSON object whose keys are the task's parameter names.
    pub fn params(mut self, params: Value) -> Self {
        self.params = params;
        self
    }
    /// Start no earlier than `at`.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }
    /// Start no earlier than `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Override the task's priority (lower runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }
}

/// Steers a node; cheap to clone.
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

impl SchedulerHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SchedulerHandle { shared }
    }

    fn new_run(&self, e: Enqueue, now: DateTime<Utc>) -> Result<NewRun, HandleError> {
        if self.shared.registry.get(&e.task).is_none() {
            return Err(HandleError::UnknownTask {
                hint: crate::suggest::hint(&e.task, self.shared.registry.names()),
                name: e.task,
            });
        }
        let params = match e.params {
            Value::Null => Value::Object(Default::default()),
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(HandleError::ParamsNotObject {
                    task: e.task,
                    got: crate::task::json_kind(&other),
                });
            }
        };
        let policy = self.shared.policy(&e.task);
        let run_at = match (e.at, e.delay) {
            (Some(at), _) => at,
            (None, Some(d)) => now + chrono::Duration::from_std(d).unwrap_or_default(),
            (None, None) => now,
        };
        Ok(NewRun {
            task: e.task,
            params,
            run_at,
            priority: e.priority.unwrap_or(policy.priority),
            queue: policy.queue,
            max_retries: policy.max_retries,
            retry_delay: policy.retry_delay,
            timeout: policy.timeout,
        })
    }

    /// Enqueues one run; returns its id.
    pub async fn enqueue(&self, e: Enqueue) -> Result<i64, HandleError> {
        Ok(self.enqueue_many(vec![e]).await?[0])
    }

    /// Enqueues runs in one transaction; returns their ids in order.
    pub async fn enqueue_many(&self, runs: Vec<Enqueue>) -> Result<Vec<i64>, HandleError> {
        let now = self.shared.clock.now();
        let runs = runs
            .into_iter()
            .map(|e| self.new_run(e, now))
            .collect::<Result<Vec<_>, _>>()?;
        if let [run] = runs.as_slice()
            && let Some(id) = self.start_now(run, now).await?
        {
            return Ok(vec![id]);
        }
        let ids = self.shared.store.enqueue(&runs, now).await?;
        self.shared.wake_dispatcher.notify_one();
        Ok(ids)
    }

    /// The fast path for one run due now on a running node with an idle worker: it is
    /// inserted already claimed and starts without waiting for the dispatcher. Runs of
    /// tasks with an instance limit take the normal path, where the limit is counted.
    async fn start_now(
        &self,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, HandleError> {
        let s = &self.shared;
        if run.run_at > now
            || !s.started.load(std::sync::atomic::Ordering::SeqCst)
            || s.shutdown.is_cancelled()
            || s.claim_limits.max_instances.contains_key(&run.task)
        {
            return Ok(None);
        }
        let Ok(permit) = s.workers.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let claimed = s
            .store
            .enqueue_claimed(run, &s.node.id, now, s.lease)
            .await?;
        let id = claimed.id;
        super::executor::spawn(s.clone(), claimed, permit);
        Ok(Some(id))
    }

    /// Pauses a job: its slots pass without runs until resumed.
    pub async fn pause_job(&self, name: &str) -> Result<Job, HandleError> {
        let job = self
            .shared
            .store
            .set_job_paused(name, true, self.shared.clock.now())
            .await?;
        self.shared.wake_planner.notify_one();
        Ok(job)
    }

    /// Resumes a job; slots missed while paused coalesce into one run.
    pub async fn resume_job(&self, name: &str) -> Result<Job, HandleError> {
        let job = self
            .shared
            .store
            .set_job_paused(name, false, self.shared.clock.now())
            .await?;
        self.shared.wake_planner.notify_one();
        Ok(job)
    }

    /// Enqueues a run of the job now, outside its schedule. `None` if one was already
    /// triggered in this same millisecond.
    pub async fn trigger_job(&self, name: &str) -> Result<Option<i64>, HandleError> {
        let now = self.shared.clock.now();
        let job = self.shared.store.job(name).await?;
        let policy = self.shared.policy(&job.task);
        let run = NewRun {
            task: job.task.clone(),
            params: job.params.clone(),
            run_at: now,
            priority: job.priority.unwrap_or(policy.priority),
            queue: policy.queue,
            max_retries: policy.max_retries,
            retry_delay: policy.retry_delay,
            timeout: policy.timeout,
        };
        let id = self.shared.store.trigger_job(&job, run, now).await?;
        self.shared.wake_dispatcher.notify_one();
        Ok(id)
    }

    /// Cancels a run: a queued one at once, a running one cooperatively
    /// (`ctx.cancelled()`), then by dropping it after a grace period.
    pub async fn cancel_run(&self, id: i64) -> Result<CancelOutcome, HandleError> {
        let outcome = self
            .shared
            .store
            .cancel_run(id, self.shared.clock.now())
            .await?;
        if outcome == CancelOutcome::Requested {
            let running = self.shared.running.lock().expect("running map poisoned");
            if let Some(r) = running.get(&id) {
                r.reason.store(
                    super::executor::CANCEL_OPERATOR,
                    std::sync::atomic::Ordering::SeqCst,
                );
                r.token.cancel();
            }
        }
        Ok(outcome)
    }

    /// One run.
    pub async fn run(&self, id: i64) -> Result<Run, HandleError> {
        Ok(self.shared.store.run(id).await?)
    }

    /// Runs matching a filter, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<Run>, HandleError> {
        Ok(self.shared.store.runs(filter).await?)
    }

    /// One job.
    pub async fn job(&self, name: &str) -> Result<Job, HandleError> {
        Ok(self.shared.store.job(name).await?)
    }

    /// All jobs.
    pub async fn jobs(&self) -> Result<Vec<Job>, HandleError> {
        Ok(self.shared.store.jobs().await?)
    }

    /// The store, for queries the handle does not wrap.
    pub fn store(&self) -> &crate::store::Store {
        &self.shared.store
    }

    /// Asks the node to shut down gracefully; `run()` returns when it has.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
