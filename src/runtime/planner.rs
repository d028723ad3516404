//! The planner: fires due jobs. It sleeps on the injected clock until the earliest
//! `next_run_at` (or until woken by a job change) instead of polling, plans each due
//! job's slots with the misfire policy (see [`super::policy`]) and applies the plans
//! through the store's compare-and-set.
//!
//! A slot is fired a little ahead of its time (see `SchedulerBuilder::lead`): its run
//! is queued, due at the slot, before the slot comes, so that the dispatcher can claim
//! it ahead too and the task starts on the dot however many jobs share the second.
//! Jobs with an instance limit fire only when due: whether their slot is free depends
//! on runs that may still end before it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::hooks::{Hooks, SkippedSlots};
use super::policy::plan_due;
use super::{CancelReason, Shared};
use crate::events::{Event, EventKind};
use crate::model::{Job, RunOrigin};
use crate::store::{FireOutcome, FirePlan, NewRun, PlannedRun, StoreError};

/// Jobs fired per transaction.
const FIRE_BATCH: u64 = 1000;

pub(super) async fn run(shared: Arc<Shared>) {
    let mut backoff = super::backoff::Backoff::default();
    loop {
        let woken = shared.signals.wake_planner.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = match tick(&shared).await {
            Ok(next) => {
                backoff.succeeded("planner");
                next
            }
            Err(e) => {
                let wait = backoff.failed("planner", &e);
                Some(shared.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default())
            }
        };
        if !shared.idle(next, woken).await {
            return;
        }
    }
}

/// When to look again: at the earliest slot after `horizon`, less the lead, or when
/// the first job left waiting (due within the lead, but fired only when due) is due.
async fn next_look(
    shared: &Shared,
    horizon: DateTime<Utc>,
    waiting: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let next = shared
        .store
        .next_job_at(horizon)
        .await?
        .map(|t| t - shared.lead);
    Ok(match (next, waiting) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Fires what is due; returns when to look again.
async fn tick(shared: &Shared) -> Result<Option<DateTime<Utc>>, StoreError> {
    loop {
        let now = shared.clock.now();
        let horizon = now + shared.lead;
        let mut due = shared.store.due_jobs(horizon, FIRE_BATCH).await?;
        let batch_full = due.len() as u64 >= FIRE_BATCH;
        let mut waiting = None;
        due.retain(|j| {
            let at = j.due_at.unwrap_or(now);
            // A task this node lacks has the defaults: no instance limit.
            let limited = shared
                .policies
                .get(&j.task)
                .is_some_and(|p| p.max_instances.is_some());
            let ready = at <= now || !limited;
            if !ready {
                waiting = Some(waiting.map_or(at, |w: DateTime<Utc>| w.min(at)));
            }
            ready
        });
        if due.is_empty() {
            return next_look(shared, horizon, waiting).await;
        }
        if let Ok(mut names) = shared.job_names.lock() {
            for j in &due {
                names.entry(j.id).or_insert_with(|| j.name.clone());
            }
        }
        let plans: Vec<FirePlan> = due
            .iter()
            .map(|job| plan_for(shared, job, now.max(job.due_at.unwrap_or(now))))
            .collect();
        // Its runs' `run_queued` go out before a claim's starts (see `order`).
        let in_flight = shared.signals.enqueues.enter();
        let outcomes = shared.store.fire(&plans, now).await?;
        let mut fired = 0;
        for (plan, outcome) in plans.iter().zip(&outcomes) {
            let FireOutcome::Fired {
                runs,
                overlap_skipped,
                replaced,
            } = outcome
            else {
                continue;
            };
            fired += runs.len();
            let job = due.iter().find(|j| j.id == plan.job_id);
            for (id, slot) in runs {
                shared.emit(|| {
                    Event::new(EventKind::RunQueued, now)
                        .run(*id, job.map_or("", |j| j.task.as_str()))
                        .job(job.map(|j| j.name.clone()))
                        .data(serde_json::json!({ "scheduled_for": slot, "origin": "schedule" }))
                });
            }
            if !overlap_skipped.is_empty() {
                tracing::info!(
                    job_id = plan.job_id,
                    slots = overlap_skipped.len(),
                    "slot skipped: the job already has max_instances runs queued or running"
                );
            }
            for rec in plan.skipped.iter().chain(overlap_skipped) {
                if let Some(reason) = rec.reason {
                    shared.emit(|| {
                        let mut e = Event::new(EventKind::SlotSkipped, now)
                            .job(job.map(|j| j.name.clone()));
                        e.task = job.map(|j| j.task.clone());
                        e.data(serde_json::json!({
                            "first": rec.first, "last": rec.last, "reason": reason,
                        }))
                    });
                    Hooks::call(
                        &shared.hooks.on_skip,
                        "on_skip",
                        SkippedSlots {
                            job_id: plan.job_id,
                            first: rec.first,
                            last: rec.last,
                            reason,
                        },
                    );
                }
            }
            for id in replaced {
                tracing::info!(
                    job_id = plan.job_id,
                    run_id = id,
                    "replacing a running run (overlap = replace)"
                );
                shared
                    .signals
                    .cancel_local(*id, None, CancelReason::Operator);
            }
            if !plan.skipped.is_empty() {
                tracing::info!(
                    job_id = plan.job_id,
                    ranges = plan.skipped.len(),
                    "missed slots skipped"
                );
            }
        }
        drop(in_flight);
        if fired > 0 {
            shared.signals.wake_dispatcher.notify_one();
        }
        if !batch_full && plans.iter().all(|p| p.next.is_none_or(|n| n > horizon)) {
            return next_look(shared, horizon, waiting).await;
        }
    }
}

fn plan_for(shared: &Shared, job: &Job, now: DateTime<Utc>) -> FirePlan {
    let due = job.due_at.unwrap_or(now);
    let anchor = job.anchor_at.unwrap_or(due);
    let plan = plan_due(
        &job.schedule,
        anchor,
        due,
        now,
        &job.policy,
        &job.pause_windows,
    );
    let policy = shared.policy(&job.task);
    let runs = plan
        .runs
        .into_iter()
        .map(|p| PlannedRun {
            run: NewRun::of_job(
                job,
                &policy,
                p.slot,
                if p.caught_up {
                    RunOrigin::CatchUp
                } else {
                    RunOrigin::Schedule
                },
            ),
            coalesced: p.coalesced,
        })
        .collect();
    FirePlan {
        job_id: job.id,
        version: job.version,
        prev_slot: job.last_fired_at,
        last_slot: plan.last_slot,
        next: plan.next,
        // Windows the plan went past are accounted for; later ones stay.
        pause_windows: job
            .pause_windows
            .iter()
            .copied()
            .filter(|(_, to)| *to > plan.last_slot)
            .collect(),
        runs,
        skipped: plan.skipped,
        overlap: job.policy.overlap,
        max_instances: policy.max_instances,
    }
}
