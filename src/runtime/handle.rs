//! The handle an application uses to steer its node. Every operation goes through the
//! node's [`Admin`] (the one front door); the handle adds what only a running node can
//! do: start a run enqueued on an idle worker at once, and shut down.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::error::Error;
use crate::model::{Job, Run, RunFilter, RunPage};
use crate::ops::{Admin, CancelResult, Enqueue};
use crate::store::NewRun;

/// Steers a node; cheap to clone.
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    shared: Arc<Shared>,
}

impl SchedulerHandle {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        SchedulerHandle { shared }
    }

    /// How far ahead this node fires slots and claims runs (see
    /// `SchedulerBuilder::lead`); the test harness waits for that work too.
    pub(crate) fn lead(&self) -> chrono::Duration {
        self.shared.lead
    }

    /// Every operation on jobs, runs, queues and nodes, bound to this application's
    /// tasks; changes made through it reach this node at once.
    pub fn admin(&self) -> &Admin {
        &self.shared.admin
    }

    /// Enqueues one run after checking it; returns its id (the existing run's, for an
    /// idempotency key an unfinished run of the same task and params holds; a key held
    /// by another task or other params is refused as an
    /// [`Error::IdempotencyConflict`]).
    pub async fn enqueue(&self, e: Enqueue) -> Result<i64, Error> {
        let now = self.shared.clock.now();
        let run = self.shared.admin.prepare(e, now).await?;
        if let Some(id) = self.start_now(&run, now).await? {
            return Ok(id);
        }
        // Counted until published: a claim made meanwhile holds the run's start back
        // (see `order`).
        let in_flight = self.shared.signals.enqueues.enter();
        let (id, existing) = self
            .shared
            .store
            .enqueue(std::slice::from_ref(&run), now)
            .await
            .map_err(|e| Error::of_enqueue(e, None))?[0];
        if !existing {
            self.shared.emit(|| crate::ops::queued_event(id, &run, now));
        }
        drop(in_flight);
        self.shared.signals.expiry.note_all([run.expires_at]);
        self.shared.signals.wake_dispatcher.notify_one();
        Ok(id)
    }

    /// Enqueues one run in the application's own SeaORM transaction (or sqlx one, lent
    /// with [`SqlxTxn`](crate::SqlxTxn)): it exists if and only if `txn` commits (see
    /// [`Admin::enqueue_in`]). Returns its id.
    pub async fn enqueue_in<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        e: Enqueue,
    ) -> Result<i64, Error> {
        Ok(self.shared.admin.enqueue_in(txn, e).await?.id)
    }

    /// Enqueues runs in the application's own SeaORM transaction, all or nothing, and
    /// only if `txn` commits; returns their ids in order.
    pub async fn enqueue_many_in<C: sea_orm::ConnectionTrait>(
        &self,
        txn: &C,
        runs: Vec<Enqueue>,
    ) -> Result<Vec<i64>, Error> {
        Ok(self
            .shared
            .admin
            .enqueue_many_in(txn, runs)
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }

    /// Enqueues runs in one transaction, all or nothing; returns their ids in order.
    pub async fn enqueue_many(&self, runs: Vec<Enqueue>) -> Result<Vec<i64>, Error> {
        Ok(self
            .shared
            .admin
            .enqueue_many(runs)
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect())
    }

    /// The fast path for one run due now on a running node with an idle worker: it is
    /// inserted already claimed and starts without waiting for the dispatcher. Runs
    /// that a limit applies to take the normal path, where the limit is counted.
    async fn start_now(&self, run: &NewRun, now: DateTime<Utc>) -> Result<Option<i64>, Error> {
        let s = &self.shared;
        if run.run_at > now
            || run.idempotency_key.is_some()
            || !s.started.load(Ordering::SeqCst)
            || s.shutdown.is_cancelled()
        {
            return Ok(None);
        }
        let limits = s.claim_limits();
        if limits.max_instances.contains_key(&run.task) || limits.queues.contains_key(&run.queue) {
            return Ok(None);
        }
        let Ok(permit) = s.workers.clone().try_acquire_owned() else {
            return Ok(None);
        };
        match s
            .store
            .enqueue_claimed(run, &s.node.id, now, s.lease)
            .await?
        {
            Some(claimed) => {
                let id = claimed.id;
                s.emit(|| crate::ops::queued_event(id, run, now));
                super::executor::spawn(s.clone(), claimed, permit);
                Ok(Some(id))
            }
            None => Ok(None),
        }
    }

    /// Pauses a job: it fires nothing until resumed. On resume, the slots that passed
    /// meanwhile are missed, and its misfire policy decides what runs for them.
    pub async fn pause_job(&self, name: &str) -> Result<Job, Error> {
        self.shared.admin.pause_job(name).await
    }

    /// Resumes a job; the slots missed while paused go through its misfire policy.
    pub async fn resume_job(&self, name: &str) -> Result<Job, Error> {
        self.shared.admin.resume_job(name).await
    }

    /// Enqueues a run of the job now, outside its schedule; returns its id.
    pub async fn trigger_job(&self, name: &str) -> Result<i64, Error> {
        self.shared.admin.trigger_job(name).await
    }

    /// Cancels a run: a queued one at once, a running one cooperatively
    /// (`ctx.cancelled()`), then by dropping it after a grace period.
    pub async fn cancel_run(&self, id: i64) -> Result<CancelResult, Error> {
        self.shared.admin.cancel_run(id).await
    }

    /// One run, with its history.
    pub async fn run(&self, id: i64) -> Result<Run, Error> {
        self.shared.admin.run(id).await
    }

    /// Runs matching a filter, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<RunPage, Error> {
        self.shared.admin.runs(filter).await
    }

    /// One job.
    pub async fn job(&self, name: &str) -> Result<Job, Error> {
        self.shared.admin.job(name).await
    }

    /// All jobs.
    pub async fn jobs(&self) -> Result<Vec<Job>, Error> {
        self.shared.admin.jobs().await
    }

    /// Every event as it happens on this node and, through the database, in other
    /// processes (the CLI, other nodes). A subscriber that falls behind gets an
    /// `EventKind::Dropped` notice and its stream ends.
    pub fn events(&self) -> crate::events::EventStream {
        self.events_matching(crate::events::EventFilter::all())
    }

    /// The events that `filter` selects (by run, job, task, tag or kind), as
    /// [`SchedulerHandle::events`] delivers them; the filtering happens before they are
    /// queued for this subscriber.
    pub fn events_matching(
        &self,
        filter: crate::events::EventFilter,
    ) -> crate::events::EventStream {
        self.shared.signals.events.subscribe(filter)
    }

    /// Tasks executing on this node right now (for the test harness).
    pub(crate) fn executing(&self) -> usize {
        self.shared
            .signals
            .executing
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks the node to shut down gracefully; `run()` returns when it has.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
