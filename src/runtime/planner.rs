//! The planner: fires due jobs. It sleeps on the injected clock until the earliest
//! `next_run_at` (or until woken by a job change) instead of polling, then fires every
//! due slot through the store's compare-and-set.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::schedule::Schedule;
use crate::store::{FireOutcome, FirePlan, Job, NewRun};

/// Jobs fired per transaction.
const FIRE_BATCH: u64 = 1000;
/// How many missed cron slots are walked to find the latest one before giving up and
/// firing the last one reached (only after very long outages of second-level crons).
const MAX_WALK: usize = 100_000;

/// Which slot a due job fires now and which slot comes next (misfire policy
/// `run_once`: all slots missed up to `now` coalesce into one run for the latest).
pub fn plan_slot(
    schedule: &Schedule,
    anchor: DateTime<Utc>,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let mut slot = due;
    match schedule {
        Schedule::Every(step) => {
            if let Ok(step) = chrono::Duration::from_std(*step) {
                let step_ms = step.num_milliseconds().max(1);
                let behind = (now - due).num_milliseconds();
                if behind > 0 {
                    slot = due + chrono::Duration::milliseconds(behind / step_ms * step_ms);
                }
            }
        }
        _ => {
            for _ in 0..MAX_WALK {
                match schedule.next_after(anchor, slot) {
                    Some(n) if n <= now => slot = n,
                    _ => break,
                }
            }
        }
    }
    (slot, schedule.next_after(anchor, slot.max(now)))
}

pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        let woken = shared.wake_planner.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = match tick(&shared).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "planner: database error; retrying in 1s");
                Some(shared.clock.now() + chrono::Duration::seconds(1))
            }
        };
        if !shared.idle(next, woken).await {
            return;
        }
    }
}

/// Fires what is due; returns when to look again.
async fn tick(shared: &Shared) -> Result<Option<DateTime<Utc>>, crate::store::StoreError> {
    loop {
        let now = shared.clock.now();
        let due = shared.store.due_jobs(now, FIRE_BATCH).await?;
        if due.is_empty() {
            return shared.store.next_job_at().await;
        }
        let mut plans = Vec::with_capacity(due.len());
        for job in &due {
            match plan_for(shared, job, now) {
                Ok(p) => plans.push(p),
                Err(e) => {
                    tracing::error!(job = %job.name, error = %e, "cannot plan job; parking it");
                    shared.store.park_job(job.id, now).await?;
                }
            }
        }
        let outcomes = shared.store.fire(&plans, now).await?;
        let mut fired = 0;
        for (plan, outcome) in plans.iter().zip(&outcomes) {
            match outcome {
                FireOutcome::Fired(run_id) => {
                    fired += 1;
                    tracing::debug!(job_id = plan.job_id, run_id, slot = %plan.slot, "fired");
                }
                FireOutcome::Skipped => tracing::info!(
                    job_id = plan.job_id,
                    slot = %plan.slot,
                    "slot skipped: the job already has max_instances runs queued or running"
                ),
                FireOutcome::Lost => {}
            }
        }
        if fired > 0 {
            shared.wake_dispatcher.notify_one();
        }
        if (due.len() as u64) < FIRE_BATCH {
            return shared.store.next_job_at().await;
        }
    }
}

fn plan_for(
    shared: &Shared,
    job: &Job,
    now: DateTime<Utc>,
) -> Result<FirePlan, crate::store::StoreError> {
    let schedule = job.schedule()?;
    let due = job.next_run_at.unwrap_or(now);
    let anchor = job.anchor_at.unwrap_or(due);
    let (slot, next) = plan_slot(&schedule, anchor, due, now);
    let policy = shared.policy(&job.task);
    Ok(FirePlan {
        job_id: job.id,
        version: job.version,
        slot,
        next,
        max_instances: policy.max_instances,
        run: NewRun {
            task: job.task.clone(),
            params: job.params.clone(),
            run_at: slot,
            priority: job.priority.unwrap_or(policy.priority),
            queue: policy.queue.clone(),
            max_retries: policy.max_retries,
            retry_delay: policy.retry_delay,
            timeout: policy.timeout,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CronSchedule, Tz};
    use std::time::Duration;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn on_time_slot_fires_itself_and_schedules_the_next() {
        let s = Schedule::Every(Duration::from_secs(60));
        let (slot, next) = plan_slot(
            &s,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:01:00Z"),
        );
        assert_eq!(slot, t("2026-01-01T00:01:00Z"));
        assert_eq!(next, Some(t("2026-01-01T00:02:00Z")));
    }

    #[test]
    fn missed_interval_slots_coalesce_into_the_latest() {
        let s = Schedule::Every(Duration::from_secs(60));
        let (slot, next) = plan_slot(
            &s,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:01:00Z"),
            t("2026-01-01T00:10:30Z"),
        );
        assert_eq!(slot, t("2026-01-01T00:10:00Z"));
        assert_eq!(next, Some(t("2026-01-01T00:11:00Z")));
    }

    #[test]
    fn missed_cron_slots_coalesce_into_the_latest() {
        let s = Schedule::Cron(CronSchedule::parse("0 * * * *", Tz::UTC).unwrap());
        let (slot, next) = plan_slot(
            &s,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T01:00:00Z"),
            t("2026-01-01T05:30:00Z"),
        );
        assert_eq!(slot, t("2026-01-01T05:00:00Z"));
        assert_eq!(next, Some(t("2026-01-01T06:00:00Z")));
    }

    #[test]
    fn one_off_has_no_next() {
        let s = Schedule::Once(t("2026-01-01T00:00:00Z"));
        let (slot, next) = plan_slot(
            &s,
            t("2026-01-01T00:00:00Z"),
            t("2026-01-01T00:00:00Z"),
            t("2026-01-02T00:00:00Z"),
        );
        assert_eq!(slot, t("2026-01-01T00:00:00Z"));
        assert_eq!(next, None);
    }
}
