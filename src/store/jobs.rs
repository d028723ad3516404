//! Job queries and mutations: reconciling declared jobs into the table, firing due
//! slots, pausing and triggering, and the task catalogue nodes publish for the CLI.
//!
//! # Exactly-once firing
//! A slot fires inside one transaction that (1) advances the job's `next_run_at` with a
//! compare-and-set on its `version` and (2) inserts the run. A node that lost the race
//! updates no row and inserts nothing; the unique index on `(job_id, scheduled_for)`
//! rejects a second run for the same slot even if two writers got past the first check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, TransactionTrait, Value};

use super::entity::job;
use super::runs::{bump, write_txn};
use super::sql::placeholders;
use super::types::{Job, NewRun, StoredTask};
use super::{Store, StoreError, duration_ms, from_ms, ms};
use crate::job::{JobSpec, TaskPolicy};
use crate::schedule::Schedule;

/// What happened to one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// A run was inserted.
    Fired(i64),
    /// The job already had `max_instances` runs queued or running: the slot passed
    /// without a run (overlap policy `skip`).
    Skipped,
    /// Another node fired this slot first, or the job changed meanwhile.
    Lost,
}

/// One slot to fire.
#[derive(Debug, Clone)]
pub struct FirePlan {
    /// The job as read (its id and version are the compare-and-set).
    pub job_id: i64,
    /// Version read.
    pub version: i64,
    /// The slot this run stands for.
    pub slot: DateTime<Utc>,
    /// The job's next slot after this one.
    pub next: Option<DateTime<Utc>>,
    /// The run to insert.
    pub run: NewRun,
    /// Overlap limit of the job.
    pub max_instances: Option<u32>,
}

fn schedule_columns(s: &Schedule, anchor: DateTime<Utc>) -> [Value; 5] {
    match s {
        Schedule::Cron(c) => [
            Value::from("cron"),
            Value::from(Some(c.expr().to_string())),
            Value::from(Some(c.timezone().name().to_string())),
            Value::from(None::<i64>),
            Value::from(None::<i64>),
        ],
        Schedule::Every(d) => [
            Value::from("interval"),
            Value::from(None::<String>),
            Value::from(None::<String>),
            Value::from(Some(duration_ms(*d))),
            Value::from(Some(ms(anchor))),
        ],
        Schedule::Once(t) => [
            Value::from("once"),
            Value::from(None::<String>),
            Value::from(None::<String>),
            Value::from(None::<i64>),
            Value::from(Some(ms(*t))),
        ],
    }
}

/// The first slot of a new (or rescheduled) job created at `now`.
fn first_slot(s: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match s {
        // A one-off time in the past still fires once (it was missed, not cancelled).
        Schedule::Once(t) => Some(*t),
        other => other.next_after(now, now),
    }
}

impl Store {
    /// Reconciles declared jobs into the table by name: new ones are inserted, changed
    /// ones updated (a changed schedule restarts from `now`), and code/config jobs no
    /// longer declared are disabled (kept with their history). API-created jobs are left
    /// alone. Returns the names of jobs it disabled.
    pub async fn sync_jobs(
        &self,
        specs: &[JobSpec],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let existing: HashMap<String, Job> = job::Entity::find()
            .all(&txn)
            .await?
            .into_iter()
            .map(|m| Job::try_from(m).map(|j| (j.name.clone(), j)))
            .collect::<Result<_, _>>()?;
        for spec in specs {
            let params = spec.params.to_string();
            match existing.get(&spec.name) {
                Some(old) => {
                    let same_schedule = old.schedule().ok().as_ref() == Some(&spec.schedule);
                    let (anchor, next) = if same_schedule {
                        (old.anchor_at.unwrap_or(now), old.next_run_at)
                    } else {
                        (now, first_slot(&spec.schedule, now))
                    };
                    let [kind, cron, tz, interval, anchor_v] =
                        schedule_columns(&spec.schedule, anchor);
                    let changed = !same_schedule
                        || old.task != spec.task
                        || old.params != spec.params
                        || old.enabled != spec.enabled
                        || old.priority != spec.priority
                        || old.source != spec.source.as_str();
                    if !changed {
                        continue;
                    }
                    txn.execute_raw(self.stmt(
                        "UPDATE kairos_jobs SET task = $1, kind = $2, cron = $3, timezone = $4, interval_ms = $5, \
                         anchor_at = $6, params = $7, enabled = $8, priority = $9, source = $10, next_run_at = $11, \
                         version = version + 1, updated_at = $12 WHERE id = $13",
                        [
                            Value::from(spec.task.clone()),
                            kind,
                            cron,
                            tz,
                            interval,
                            anchor_v,
                            Value::from(params),
                            Value::from(spec.enabled),
                            Value::from(spec.priority),
                            Value::from(spec.source.as_str()),
                            Value::from(next.map(ms)),
                            Value::from(ms(now)),
                            Value::from(old.id),
                        ],
                    ))
                    .await?;
                }
                None => {
                    let [kind, cron, tz, interval, anchor_v] =
                        schedule_columns(&spec.schedule, now);
                    txn.execute_raw(self.stmt(
                        "INSERT INTO kairos_jobs (name, task, kind, cron, timezone, interval_ms, anchor_at, params, \
                         enabled, paused, priority, source, next_run_at, last_fired_at, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, $10, $11, $12, NULL, 0, $13, $13)",
                        [
                            Value::from(spec.name.clone()),
                            Value::from(spec.task.clone()),
                            kind,
                            cron,
                            tz,
                            interval,
                            anchor_v,
                            Value::from(params),
                            Value::from(spec.enabled),
                            Value::from(spec.priority),
                            Value::from(spec.source.as_str()),
                            Value::from(first_slot(&spec.schedule, now).map(ms)),
                            Value::from(ms(now)),
                        ],
                    ))
                    .await?;
                }
            }
        }
        let declared: std::collections::HashSet<&str> =
            specs.iter().map(|s| s.name.as_str()).collect();
        let mut disabled = Vec::new();
        for job in existing.values() {
            if job.source != "api" && job.enabled && !declared.contains(job.name.as_str()) {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_jobs SET enabled = false, version = version + 1, updated_at = $1 WHERE id = $2",
                    [Value::from(ms(now)), Value::from(job.id)],
                ))
                .await?;
                disabled.push(job.name.clone());
            }
        }
        bump(&txn, self).await?;
        txn.commit().await?;
        disabled.sort();
        Ok(disabled)
    }

    /// Every job, by name.
    pub async fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        job::Entity::find()
            .order_by_asc(job::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Job::try_from)
            .collect()
    }

    /// The job of this name.
    pub async fn job(&self, name: &str) -> Result<Job, StoreError> {
        use sea_orm::{ColumnTrait, QueryFilter};
        let m = job::Entity::find()
            .filter(job::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::JobNotFound(name.to_string()))?;
        Job::try_from(m)
    }

    /// Names of these jobs, by id.
    pub(crate) async fn job_names(&self, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT id, name FROM kairos_jobs WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            for r in self
                .db
                .query_all_raw(self.stmt(&sql, chunk.iter().map(|i| Value::from(*i))))
                .await?
            {
                out.insert(r.try_get_by_index(0)?, r.try_get_by_index(1)?);
            }
        }
        Ok(out)
    }

    /// Pauses or resumes a job. A resumed job's missed slots are coalesced into one
    /// run (the `run_once` misfire policy) by the planner.
    pub async fn set_job_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<Job, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let res = txn
            .execute_raw(self.stmt(
                "UPDATE kairos_jobs SET paused = $1, version = version + 1, updated_at = $2 WHERE name = $3",
                [Value::from(paused), Value::from(ms(now)), Value::from(name.to_string())],
            ))
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::JobNotFound(name.to_string()));
        }
        bump(&txn, self).await?;
        txn.commit().await?;
        self.job(name).await
    }

    /// Enabled, unpaused jobs whose next slot is at or before `due_by`.
    pub async fn due_jobs(
        &self,
        due_by: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT * FROM kairos_jobs WHERE enabled AND NOT paused AND next_run_at <= $1 \
                 ORDER BY next_run_at LIMIT $2",
                [Value::from(ms(due_by)), Value::from(limit as i64)],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                use sea_orm::FromQueryResult;
                Job::try_from(job::Model::from_query_result(r, "")?)
            })
            .collect()
    }

    /// The earliest next slot of any enabled, unpaused job.
    pub async fn next_job_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT MIN(next_run_at) FROM kairos_jobs WHERE enabled AND NOT paused",
                [],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get_by_index::<Option<i64>>(0)?.map(from_ms),
            None => None,
        })
    }

    /// Stops a job whose row cannot be planned from firing again (its next slot is
    /// cleared); the row is kept for an operator to inspect and fix.
    pub async fn park_job(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_jobs SET next_run_at = NULL, version = version + 1, updated_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(id)],
            ))
            .await?;
        Ok(())
    }

    /// Fires these slots in one transaction (see "Exactly-once firing" above).
    pub async fn fire(
        &self,
        plans: &[FirePlan],
        now: DateTime<Utc>,
    ) -> Result<Vec<FireOutcome>, StoreError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        let mut out = Vec::with_capacity(plans.len());
        for p in plans {
            let cas = txn
                .execute_raw(self.stmt(
                    "UPDATE kairos_jobs SET next_run_at = $1, last_fired_at = $2, version = version + 1, \
                     updated_at = $3 WHERE id = $4 AND version = $5 AND enabled AND NOT paused",
                    [
                        Value::from(p.next.map(ms)),
                        Value::from(ms(p.slot)),
                        Value::from(ms(now)),
                        Value::from(p.job_id),
                        Value::from(p.version),
                    ],
                ))
                .await?;
            if cas.rows_affected() == 0 {
                out.push(FireOutcome::Lost);
                continue;
            }
            if let Some(max) = p.max_instances {
                let row = txn
                    .query_one_raw(self.stmt(
                        "SELECT COUNT(*) FROM kairos_runs WHERE job_id = $1 AND status IN ('queued', 'running')",
                        [Value::from(p.job_id)],
                    ))
                    .await?;
                let active: i64 = match row {
                    Some(r) => r.try_get_by_index(0)?,
                    None => 0,
                };
                if active >= i64::from(max) {
                    out.push(FireOutcome::Skipped);
                    continue;
                }
            }
            let row = self
                .insert_job_run(&txn, p.job_id, &p.run, p.slot, now)
                .await?;
            out.push(match row {
                Some(id) => FireOutcome::Fired(id),
                None => FireOutcome::Lost,
            });
        }
        txn.commit().await?;
        Ok(out)
    }

    /// Enqueues `run` (built from the job: its task, params and priority) now, outside
    /// the schedule ("run now"). Its slot is `now`, so triggering twice in the same
    /// millisecond yields one run.
    pub async fn trigger_job(
        &self,
        job: &Job,
        run: NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let id = self.insert_job_run(&txn, job.id, &run, now, now).await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Inserts the run of one slot of a job; `None` when that slot already has a run.
    async fn insert_job_run<C: ConnectionTrait>(
        &self,
        conn: &C,
        job_id: i64,
        r: &NewRun,
        slot: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let row = conn
            .query_one_raw(self.stmt(
                "INSERT INTO kairos_runs (task, job_id, params, priority, queue, run_at, scheduled_for, \
                 max_retries, retry_delay_ms, timeout_ms, created_at, status, attempt, cancel_requested) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', 0, false) \
                 ON CONFLICT (job_id, scheduled_for) DO NOTHING RETURNING id",
                [
                    Value::from(r.task.clone()),
                    Value::from(job_id),
                    Value::from(r.params.to_string()),
                    Value::from(r.priority),
                    Value::from(r.queue.clone()),
                    Value::from(ms(r.run_at)),
                    Value::from(ms(slot)),
                    Value::from(r.max_retries as i32),
                    Value::from(duration_ms(r.retry_delay)),
                    Value::from(duration_ms(r.timeout)),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get_by_index(0)?),
            None => None,
        })
    }

    /// Publishes the node's task catalogue (effective policies), so the CLI can check
    /// task names and apply defaults without the application's code.
    pub async fn sync_tasks(
        &self,
        tasks: &[(String, TaskPolicy, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        for (name, p, location) in tasks {
            txn.execute_raw(self.stmt(
                "INSERT INTO kairos_tasks (name, priority, max_retries, retry_delay_ms, timeout_ms, max_instances, \
                 queue, location, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (name) DO UPDATE SET priority = excluded.priority, max_retries = excluded.max_retries, \
                 retry_delay_ms = excluded.retry_delay_ms, timeout_ms = excluded.timeout_ms, \
                 max_instances = excluded.max_instances, queue = excluded.queue, location = excluded.location, \
                 updated_at = excluded.updated_at",
                [
                    Value::from(name.clone()),
                    Value::from(p.priority),
                    Value::from(p.max_retries as i32),
                    Value::from(duration_ms(p.retry_delay)),
                    Value::from(duration_ms(p.timeout)),
                    Value::from(p.max_instances.map(|m| m as i32)),
                    Value::from(p.queue.clone()),
                    Value::from(location.clone()),
                    Value::from(ms(now)),
                ],
            ))
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The task catalogue published by nodes.
    pub async fn tasks(&self) -> Result<Vec<StoredTask>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                "SELECT name, priority, max_retries, retry_delay_ms, timeout_ms, max_instances, queue, location \
                 FROM kairos_tasks ORDER BY name",
                [],
            ))
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredTask {
                    name: r.try_get_by_index(0)?,
                    priority: r.try_get_by_index(1)?,
                    max_retries: r.try_get_by_index(2)?,
                    retry_delay_ms: r.try_get_by_index(3)?,
                    timeout_ms: r.try_get_by_index(4)?,
                    max_instances: r.try_get_by_index(5)?,
                    queue: r.try_get_by_index(6)?,
                    location: r.try_get_by_index(7)?,
                })
            })
            .collect::<Result<_, sea_orm::DbErr>>()
            .map_err(StoreError::from)
    }
}
