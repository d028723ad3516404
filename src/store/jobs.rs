//! Job queries and mutations: reconciling declared jobs into the table, jobs created
//! and changed at run time, firing due slots with their records, pausing and
//! triggering.
//!
//! # Exactly-once firing
//! A job's due slots fire inside one transaction that (1) advances the job's
//! `next_run_at` with a compare-and-set on its `version` and (2) inserts the runs and
//! the slot records. A node that lost the race updates no row and inserts nothing; the
//! unique index on `(job_id, scheduled_for)` rejects a second run for the same slot even
//! if two writers got past the first check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value};

use super::codec::{duration_ms, from_ms, int, ms, schedule_values};
use super::entity::job;
use super::runs::NewRun;
use super::sql::{columns, placeholders};
use super::{Lock, Store, StoreError, bump, write_txn};
use crate::job::JobSpec;
use crate::model::{DisabledReason, Job, JobSource, RunOrigin, SkipReason, SlotOutcome};
use crate::schedule::Schedule;
use crate::task::Overlap;

/// A range of consecutive slots of a job with one outcome (every slot of the job's
/// schedule from `first` to `last`, both included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRecord {
    pub(crate) first: DateTime<Utc>,
    pub(crate) last: DateTime<Utc>,
    pub(crate) outcome: SlotOutcome,
    pub(crate) reason: Option<SkipReason>,
}

/// One run a fire inserts, with the missed slots it stands for.
#[derive(Debug, Clone)]
pub(crate) struct PlannedRun {
    pub(crate) run: NewRun,
    /// Earlier missed slots covered by this run (`coalesced`), if any.
    pub(crate) coalesced: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// Everything one job's due slots come to.
#[derive(Debug, Clone)]
pub(crate) struct FirePlan {
    /// The job as read (its id and version are the compare-and-set).
    pub(crate) job_id: i64,
    pub(crate) version: i64,
    /// The last slot fired before this plan (to extend a run of skipped slots).
    pub(crate) prev_slot: Option<DateTime<Utc>>,
    /// The last slot this plan accounts for.
    pub(crate) last_slot: DateTime<Utc>,
    /// The job's next slot after this plan.
    pub(crate) next: Option<DateTime<Utc>>,
    /// Pause windows still ahead of the slots this plan accounts for.
    pub(crate) pause_windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Runs to insert, oldest slot first.
    pub(crate) runs: Vec<PlannedRun>,
    /// Slots that pass without a run.
    pub(crate) skipped: Vec<SlotRecord>,
    /// Overlap handling when `max_instances` runs of the job are active.
    pub(crate) overlap: Overlap,
    pub(crate) max_instances: Option<u32>,
}

/// What happened to one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FireOutcome {
    /// The plan was applied: these runs were inserted (id and slot); these slots
    /// skipped for overlap; these running runs asked to stop (`overlap = "replace"`).
    Fired {
        runs: Vec<(i64, DateTime<Utc>)>,
        overlap_skipped: Vec<SlotRecord>,
        replaced: Vec<i64>,
    },
    /// Another node fired these slots first, or the job changed meanwhile.
    Lost,
}

/// The columns a job's definition is stored in, in the order of [`spec_values`].
/// Simple plans applied per statement (five values each in the compare-and-set,
/// thirteen per run in the insert: well under both engines' parameter limits).
const FIRE_CHUNK: usize = 500;

const SPEC_COLUMNS: [&str; 18] = [
    "task",
    "kind",
    "cron",
    "timezone",
    "dst",
    "interval_ms",
    "anchor_at",
    "params",
    "priority",
    "misfire",
    "max_catch_up",
    "misfire_grace_ms",
    "overlap",
    "enabled",
    "disabled_reason",
    "source",
    "next_run_at",
    "callback_url",
];

/// A job's definition as the values of [`SPEC_COLUMNS`].
fn spec_values(
    spec: &JobSpec,
    anchor: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    disabled_reason: Option<&str>,
) -> Vec<Value> {
    let [kind, cron, tz, dst, interval, anchor] = schedule_values(&spec.schedule, anchor);
    vec![
        Value::from(spec.task.clone()),
        kind,
        cron,
        tz,
        dst,
        interval,
        anchor,
        Value::from(spec.params.to_string()),
        Value::from(spec.priority),
        Value::from(spec.policy.misfire.as_str()),
        Value::from(int(spec.policy.max_catch_up)),
        Value::from(duration_ms(spec.policy.misfire_grace)),
        Value::from(spec.policy.overlap.as_str()),
        Value::from(spec.enabled),
        Value::from(disabled_reason.map(str::to_string)),
        Value::from(spec.source.as_str()),
        Value::from(next.map(ms)),
        Value::from(spec.callback_url.clone()),
    ]
}

/// Pause windows as stored: `[[from_ms, to_ms], ...]`, or NULL when there are none.
pub(crate) fn windows_text(w: &[(DateTime<Utc>, DateTime<Utc>)]) -> Option<String> {
    (!w.is_empty()).then(|| {
        let v: Vec<(i64, i64)> = w.iter().map(|(a, b)| (ms(*a), ms(*b))).collect();
        serde_json::to_string(&v).unwrap_or_default()
    })
}

/// The first slot of a new (or rescheduled) job created at `now`.
fn first_slot(s: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match s {
        // A one-off time in the past still fires once (it was missed, not cancelled).
        Schedule::Once(t) => Some(*t),
        other => other.next_after(now, now),
    }
}

/// What reconciling declared jobs did to jobs that were already stored.
#[derive(Debug, Default)]
pub(crate) struct Synced {
    /// Code or config jobs no longer declared, now disabled.
    pub(crate) disabled: Vec<String>,
    /// Jobs created at run time whose name a declaration took.
    pub(crate) taken_over: Vec<String>,
    /// Declared jobs stored with another declaration (another version of the code or
    /// jobs.toml, maybe another node's), and what differed.
    pub(crate) changed: Vec<(String, String)>,
}

/// What a declaration changes in a stored job, in words, if anything it declares.
fn differences(old: &Job, spec: &JobSpec) -> Option<String> {
    let mut parts = Vec::new();
    if old.schedule != spec.schedule {
        parts.push(format!("schedule `{}` → `{}`", old.schedule, spec.schedule));
    }
    if old.task != spec.task {
        parts.push(format!("task `{}` → `{}`", old.task, spec.task));
    }
    if old.params != spec.params {
        parts.push(format!(
            "params {} → {}",
            crate::error::clip(&old.params.to_string()),
            crate::error::clip(&spec.params.to_string())
        ));
    }
    if old.enabled != spec.enabled {
        parts.push(format!("enabled {} → {}", old.enabled, spec.enabled));
    }
    if old.priority != spec.priority {
        parts.push("priority".into());
    }
    if old.policy != spec.policy {
        parts.push("misfire, overlap or grace policy".into());
    }
    if old.callback_url != spec.callback_url {
        parts.push("callback_url".into());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

impl Store {
    /// Reconciles declared jobs into the table by name: new ones are inserted, changed
    /// ones updated (a changed schedule, or a job enabled again, restarts from `now`),
    /// and code/config jobs no longer declared are disabled (kept with their history).
    /// Jobs created through the API are left alone, unless a declaration takes their
    /// name. Returns what it did to jobs that existed (see [`Synced`]).
    pub(crate) async fn sync_jobs(
        &self,
        specs: &[JobSpec],
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        self.lock(&txn, Lock::Sync).await?;
        let rows = txn
            .query_all_raw(self.stmt(
                &format!("SELECT {} FROM kairos_jobs", columns::<job::Entity>()),
                [],
            ))
            .await?;
        let mut existing: HashMap<String, Job> = HashMap::new();
        for r in &rows {
            let j = Job::try_from(job::Model::from_query_result(r, "")?)?;
            existing.insert(j.name.clone(), j);
        }
        let mut taken_over = Vec::new();
        let mut changed = Vec::new();
        for spec in specs {
            match existing.get(&spec.name) {
                Some(old) => {
                    if old.source == JobSource::Api && spec.source != JobSource::Api {
                        taken_over.push(spec.name.clone());
                    } else if let Some(what) = differences(old, spec) {
                        changed.push((spec.name.clone(), what));
                    }
                    self.write_spec(&txn, Some(old), spec, now).await?;
                }
                None => {
                    self.write_spec(&txn, None, spec, now).await?;
                }
            }
        }
        let declared: std::collections::HashSet<&str> =
            specs.iter().map(|s| s.name.as_str()).collect();
        let mut disabled = Vec::new();
        for job in existing.values() {
            if job.source != JobSource::Api && job.enabled && !declared.contains(job.name.as_str())
            {
                txn.execute_raw(self.stmt(
                    "UPDATE kairos_jobs SET enabled = false, disabled_reason = $1, version = version + 1, \
                     updated_at = $2 WHERE id = $3",
                    [
                        Value::from(DisabledReason::Undeclared.as_str()),
                        Value::from(ms(now)),
                        Value::from(job.id),
                    ],
                ))
                .await?;
                disabled.push(job.name.clone());
            }
        }
        bump(&txn, self).await?;
        txn.commit().await?;
        disabled.sort();
        Ok(Synced {
            disabled,
            taken_over,
            changed,
        })
    }

    /// Inserts `spec` or updates `old` to it (only if something changed).
    async fn write_spec<C: ConnectionTrait>(
        &self,
        conn: &C,
        old: Option<&Job>,
        spec: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reason = (!spec.enabled).then_some(DisabledReason::Config.as_str());
        let Some(old) = old else {
            let mut values = vec![Value::from(spec.name.clone()), Value::from(ms(now))];
            values.extend(spec_values(
                spec,
                now,
                first_slot(&spec.schedule, now),
                reason,
            ));
            conn.execute_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_jobs (name, created_at, updated_at, paused, version, {}) \
                     VALUES ($1, $2, $2, false, 0, {})",
                    SPEC_COLUMNS.join(", "),
                    placeholders(3, SPEC_COLUMNS.len())
                ),
                values,
            ))
            .await?;
            return Ok(());
        };
        let same_schedule = old.schedule == spec.schedule;
        let restart = !same_schedule || (spec.enabled && !old.enabled);
        let (anchor, next) = if restart {
            (now, first_slot(&spec.schedule, now))
        } else {
            (old.anchor_at.unwrap_or(now), old.due_at)
        };
        let changed = restart
            || old.task != spec.task
            || old.params != spec.params
            || old.enabled != spec.enabled
            || old.priority != spec.priority
            || old.policy != spec.policy
            || old.source != spec.source
            || old.callback_url != spec.callback_url
            || old.disabled_reason.map(|r| r.as_str()) != reason;
        if !changed {
            return Ok(());
        }
        let mut values = vec![Value::from(old.id), Value::from(ms(now))];
        values.extend(spec_values(spec, anchor, next, reason));
        let set: Vec<String> = SPEC_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 3))
            .collect();
        conn.execute_raw(self.stmt(
            &format!(
                "UPDATE kairos_jobs SET {}, version = version + 1, updated_at = $2 WHERE id = $1",
                set.join(", ")
            ),
            values,
        ))
        .await?;
        Ok(())
    }

    /// Creates a job (source `api`); `false` if the name is taken.
    pub(crate) async fn create_job(
        &self,
        spec: &JobSpec,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        // Two creators of one name must not both pass the check (PostgreSQL's read
        // committed would let them; SQLite's write lock already orders them).
        self.lock(&txn, Lock::Sync).await?;
        let exists = txn
            .query_one_raw(self.stmt(
                "SELECT id FROM kairos_jobs WHERE name = $1",
                [Value::from(spec.name.clone())],
            ))
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        self.write_spec(&txn, None, spec, now).await?;
        if paused {
            txn.execute_raw(self.stmt(
                "UPDATE kairos_jobs SET paused = true, paused_at = $1 WHERE name = $2",
                [Value::from(ms(now)), Value::from(spec.name.clone())],
            ))
            .await?;
        }
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Replaces a job's definition (its name, source and pause state stay); a changed
    /// schedule restarts from `now`. `false` if there is no such job.
    pub(crate) async fn update_job(
        &self,
        spec: &JobSpec,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some(old) = self.job_in(&txn, &spec.name).await? else {
            return Ok(false);
        };
        self.write_spec(&txn, Some(&old), spec, now).await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Deletes a job. Its queued runs are cancelled and its running runs asked to
    /// stop; unless `keep_history`, its finished runs and slot records are deleted too.
    /// Returns `None` if there is no such job, else (runs cancelled, runs deleted).
    pub(crate) async fn delete_job(
        &self,
        name: &str,
        keep_history: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some(job) = self.job_in(&txn, name).await? else {
            return Ok(None);
        };
        let id = Value::from(job.id);
        let cancelled = txn
            .execute_raw(self.stmt(
                "UPDATE kairos_runs SET status = 'cancelled', finished_at = $1, cancel_requested = true, \
                 error = $3 WHERE job_id = $2 AND status = 'queued'",
                [
                    Value::from(ms(now)),
                    id.clone(),
                    Value::from(super::JOB_DELETED),
                ],
            ))
            .await?
            .rows_affected();
        let requested = txn
            .execute_raw(self.stmt(
                "UPDATE kairos_runs SET cancel_requested = true, error = $2 \
                 WHERE job_id = $1 AND status = 'running'",
                [id.clone(), Value::from(super::JOB_DELETED)],
            ))
            .await?
            .rows_affected();
        let mut deleted = 0;
        if !keep_history {
            for table in super::retention::RUN_CHILDREN {
                let sql = format!(
                    "DELETE FROM {table} WHERE run_id IN \
                     (SELECT id FROM kairos_runs WHERE job_id = $1 AND status <> 'running')"
                );
                txn.execute_raw(self.stmt(&sql, [id.clone()])).await?;
            }
            txn.execute_raw(self.stmt(
                "DELETE FROM kairos_job_slots WHERE job_id = $1",
                [id.clone()],
            ))
            .await?;
            deleted = txn
                .execute_raw(self.stmt(
                    "DELETE FROM kairos_runs WHERE job_id = $1 AND status <> 'running'",
                    [id.clone()],
                ))
                .await?
                .rows_affected();
        }
        // Remembered: the runs kept (all with `keep_history`, the running ones anyway)
        // still name their job.
        txn.execute_raw(self.stmt(
            "INSERT INTO kairos_former_jobs (id, name, deleted_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
            [
                id.clone(),
                Value::from(job.name.clone()),
                Value::from(ms(now)),
            ],
        ))
        .await?;
        txn.execute_raw(self.stmt("DELETE FROM kairos_jobs WHERE id = $1", [id]))
            .await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(Some((cancelled + requested, deleted)))
    }

    /// Every job, by name.
    pub(crate) async fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_jobs ORDER BY name",
                    columns::<job::Entity>()
                ),
                [],
            ))
            .await?;
        rows.iter()
            .map(|r| Job::try_from(job::Model::from_query_result(r, "")?))
            .collect()
    }

    /// The job of this name.
    pub(crate) async fn job(&self, name: &str) -> Result<Option<Job>, StoreError> {
        self.job_in(&self.db, name).await
    }

    async fn job_in<C: ConnectionTrait>(
        &self,
        conn: &C,
        name: &str,
    ) -> Result<Option<Job>, StoreError> {
        conn.query_one_raw(self.stmt(
            &format!(
                "SELECT {} FROM kairos_jobs WHERE name = $1",
                columns::<job::Entity>()
            ),
            [Value::from(name.to_string())],
        ))
        .await?
        .map(|r| Job::try_from(job::Model::from_query_result(&r, "")?))
        .transpose()
    }

    /// Pauses or resumes a job, remembering when (slots missed while paused are
    /// accounted for with the reason `paused`). `None` if there is no such job.
    pub(crate) async fn set_job_paused(
        &self,
        name: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let Some(job) = self.job_in(&txn, name).await? else {
            return Ok(None);
        };
        let (paused_at, windows) = match (paused, job.paused, job.paused_at) {
            // Pausing: remember since when (a second pause changes nothing).
            (true, false, _) => (Some(now), job.pause_windows),
            (true, true, at) => (at, job.pause_windows),
            // Resuming: the pause becomes a window the planner accounts for.
            (false, true, Some(from)) => {
                let mut w = job.pause_windows;
                w.push((from, now));
                (None, w)
            }
            (false, _, _) => (None, job.pause_windows),
        };
        txn.execute_raw(self.stmt(
            "UPDATE kairos_jobs SET paused = $1, paused_at = $2, pause_windows = $3, \
             version = version + 1, updated_at = $4 WHERE id = $5",
            [
                Value::from(paused),
                Value::from(paused_at.map(ms)),
                Value::from(windows_text(&windows)),
                Value::from(ms(now)),
                Value::from(job.id),
            ],
        ))
        .await?;
        bump(&txn, self).await?;
        let job = self.job_in(&txn, name).await?;
        txn.commit().await?;
        Ok(job)
    }

    /// Enabled, unpaused jobs whose next slot is at or before `due_by`.
    pub(crate) async fn due_jobs(
        &self,
        due_by: DateTime<Utc>,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let rows = self
            .db
            .query_all_raw(self.stmt(
                &format!(
                    "SELECT {} FROM kairos_jobs WHERE enabled AND NOT paused AND next_run_at <= $1 \
                     ORDER BY next_run_at LIMIT $2",
                    columns::<job::Entity>()
                ),
                [
                    Value::from(ms(due_by)),
                    Value::from(i64::try_from(limit).unwrap_or(i64::MAX)),
                ],
            ))
            .await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for r in &rows {
            let m = job::Model::from_query_result(r, "")?;
            let (id, name) = (m.id, m.name.clone());
            match Job::try_from(m) {
                Ok(j) => jobs.push(j),
                // One bad row must not stop every other job from firing.
                Err(e) => {
                    tracing::error!(job = %name, error = %e, "cannot read job; it stops firing until fixed");
                    self.park_job(id, due_by).await?;
                }
            }
        }
        Ok(jobs)
    }

    /// The earliest next slot after `after` of any enabled, unpaused job.
    pub(crate) async fn next_job_at(
        &self,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = self
            .db
            .query_one_raw(self.stmt(
                "SELECT MIN(next_run_at) AS t FROM kairos_jobs WHERE enabled AND NOT paused \
                 AND next_run_at > $1",
                [Value::from(ms(after))],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<i64>>("", "t")?.map(from_ms),
            None => None,
        })
    }

    /// Stops a job whose row cannot be planned from firing again (its next slot is
    /// cleared); the row is kept for an operator to inspect and fix.
    async fn park_job(&self, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.db
            .execute_raw(self.stmt(
                "UPDATE kairos_jobs SET next_run_at = NULL, version = version + 1, updated_at = $1 WHERE id = $2",
                [Value::from(ms(now)), Value::from(id)],
            ))
            .await?;
        Ok(())
    }

    /// Applies these plans in one transaction (see "Exactly-once firing" above).
    pub(crate) async fn fire(
        &self,
        plans: &[FirePlan],
        now: DateTime<Utc>,
    ) -> Result<Vec<FireOutcome>, StoreError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let txn = self.db.begin_with_options(write_txn()).await?;
        // The common plan (one run for one slot, nothing skipped, no instance limit) is
        // applied in bulk: one compare-and-set and one insert per chunk of jobs rather
        // than two statements per job, which is what 1,000 jobs due in one second
        // spend their time on.
        let (simple, complex): (Vec<usize>, Vec<usize>) = (0..plans.len()).partition(|&i| {
            let p = &plans[i];
            p.skipped.is_empty()
                && p.max_instances.is_none()
                && p.runs.len() == 1
                && p.runs[0].coalesced.is_none()
        });
        let mut out: Vec<Option<FireOutcome>> = vec![None; plans.len()];
        for chunk in simple.chunks(FIRE_CHUNK) {
            let fired = self.fire_simple(&txn, plans, chunk, now).await?;
            for &i in chunk {
                out[i] = Some(match fired.get(&plans[i].job_id) {
                    Some(run) => FireOutcome::Fired {
                        runs: run.iter().copied().collect(),
                        overlap_skipped: Vec::new(),
                        replaced: Vec::new(),
                    },
                    None => FireOutcome::Lost,
                });
            }
        }
        let mut changed_others = false;
        for i in complex {
            let p = &plans[i];
            let cas = txn
                .execute_raw(self.stmt(
                    "UPDATE kairos_jobs SET next_run_at = $1, last_fired_at = $2, version = version + 1, \
                     updated_at = $3, pause_windows = $6 WHERE id = $4 AND version = $5 AND enabled AND NOT paused",
                    [
                        Value::from(p.next.map(ms)),
                        Value::from(ms(p.last_slot)),
                        Value::from(ms(now)),
                        Value::from(p.job_id),
                        Value::from(p.version),
                        Value::from(windows_text(&p.pause_windows)),
                    ],
                ))
                .await?;
            if cas.rows_affected() == 0 {
                out[i] = Some(FireOutcome::Lost);
                continue;
            }
            let mut prev = p.prev_slot;
            let mut skipped_overlap = Vec::new();
            let mut ids = Vec::new();
            let mut replaced = Vec::new();
            for r in &p.skipped {
                self.record_slots(&txn, p.job_id, prev, r, None, now)
                    .await?;
                prev = Some(r.last);
            }
            // Runs already queued or running count for every slot. Runs this plan
            // inserts count for the slots after them (several slots found due at once,
            // after a pause or downtime within the grace, are as many slots coming
            // while the first runs are still queued), except for slots the job's
            // `catch_up` policy runs on purpose, which count only the runs before.
            let mut active = match p.max_instances {
                Some(_) => self.active_job_runs(&txn, p.job_id).await?,
                None => 0,
            };
            let mut inserted = 0;
            for planned in &p.runs {
                let slot = planned.run.scheduled_for;
                let caught_up = planned.run.origin == RunOrigin::CatchUp;
                let counted = if caught_up { active } else { active + inserted };
                let full = p.max_instances.is_some_and(|m| counted >= i64::from(m));
                if full && p.overlap == Overlap::Skip {
                    let first = planned.coalesced.map_or(slot, |(f, _)| f);
                    let rec = SlotRecord {
                        first,
                        last: slot,
                        outcome: SlotOutcome::Skipped,
                        reason: Some(SkipReason::Overlap),
                    };
                    self.record_slots(&txn, p.job_id, prev, &rec, None, now)
                        .await?;
                    skipped_overlap.push(rec);
                    prev = Some(slot);
                    continue;
                }
                if full && p.overlap == Overlap::Replace {
                    replaced.extend(self.replace_active(&txn, p.job_id, now).await?);
                    changed_others = true;
                    (active, inserted) = (0, 0);
                }
                let Some(id) = self.insert_job_run(&txn, &planned.run, now).await? else {
                    continue;
                };
                inserted += 1;
                ids.push((id, slot));
                if let Some((first, last)) = planned.coalesced {
                    let rec = SlotRecord {
                        first,
                        last,
                        outcome: SlotOutcome::Coalesced,
                        reason: None,
                    };
                    self.record_slots(&txn, p.job_id, None, &rec, Some(id), now)
                        .await?;
                }
                prev = Some(slot);
            }
            out[i] = Some(FireOutcome::Fired {
                runs: ids,
                overlap_skipped: skipped_overlap,
                replaced,
            });
        }
        if changed_others {
            bump(&txn, self).await?;
        }
        txn.commit().await?;
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or(FireOutcome::Lost))
            .collect())
    }

    /// Applies the simple plans `chunk` (indexes into `plans`): one compare-and-set of
    /// every job, then one insert of the runs of the jobs that won it. Returns, by job
    /// id, the run inserted (none when the slot already had one) for each job whose
    /// compare-and-set held; a job missing from the map lost it.
    async fn fire_simple<C: ConnectionTrait>(
        &self,
        conn: &C,
        plans: &[FirePlan],
        chunk: &[usize],
        now: DateTime<Utc>,
    ) -> Result<HashMap<i64, Option<(i64, DateTime<Utc>)>>, StoreError> {
        let mut values = vec![Value::from(ms(now))];
        let mut rows = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let p = &plans[i];
            let k = values.len();
            rows.push(format!(
                "(CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS BIGINT), \
                 CAST(${} AS BIGINT), CAST(${} AS TEXT))",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5
            ));
            values.extend([
                Value::from(p.job_id),
                Value::from(p.version),
                Value::from(p.next.map(ms)),
                Value::from(ms(p.last_slot)),
                Value::from(windows_text(&p.pause_windows)),
            ]);
        }
        let sql = format!(
            "WITH v (id, version, next_run_at, last_fired_at, pause_windows) AS (VALUES {}) \
             UPDATE kairos_jobs SET next_run_at = v.next_run_at, last_fired_at = v.last_fired_at, \
             version = kairos_jobs.version + 1, updated_at = $1, pause_windows = v.pause_windows \
             FROM v WHERE kairos_jobs.id = v.id AND kairos_jobs.version = v.version \
             AND kairos_jobs.enabled AND NOT kairos_jobs.paused RETURNING kairos_jobs.id",
            rows.join(", ")
        );
        let mut fired: HashMap<i64, Option<(i64, DateTime<Utc>)>> = HashMap::new();
        for row in conn.query_all_raw(self.stmt(&sql, values)).await? {
            fired.insert(row.try_get("", "id")?, None);
        }
        let runs: Vec<&NewRun> = chunk
            .iter()
            .map(|&i| &plans[i].runs[0].run)
            .filter(|r| r.job_id.is_some_and(|j| fired.contains_key(&j)))
            .collect();
        if runs.is_empty() {
            return Ok(fired);
        }
        let mut values = Vec::with_capacity(runs.len() * 13);
        let mut rows = Vec::with_capacity(runs.len());
        for r in runs {
            rows.push(format!(
                "({}, 'queued', 0, false)",
                placeholders(values.len() + 1, 13)
            ));
            values.extend(job_run_values(r, now));
        }
        let sql = format!(
            "INSERT INTO kairos_runs ({JOB_RUN_COLUMNS}) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING id, job_id, scheduled_for",
            rows.join(", ")
        );
        for row in conn.query_all_raw(self.stmt(&sql, values)).await? {
            let job: i64 = row.try_get("", "job_id")?;
            let slot: i64 = row.try_get("", "scheduled_for")?;
            fired.insert(job, Some((row.try_get("", "id")?, from_ms(slot))));
        }
        Ok(fired)
    }

    /// Queued and running runs of a job.
    async fn active_job_runs<C: ConnectionTrait>(
        &self,
        conn: &C,
        job_id: i64,
    ) -> Result<i64, StoreError> {
        let row = conn
            .query_one_raw(self.stmt(
                "SELECT COUNT(*) AS n FROM kairos_runs WHERE job_id = $1 AND status IN ('queued', 'running')",
                [Value::from(job_id)],
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        })
    }

    /// `overlap = "replace"`: cancels the job's queued runs and asks its running ones to
    /// stop. Returns the ids of the running ones.
    async fn replace_active<C: ConnectionTrait>(
        &self,
        conn: &C,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        conn.execute_raw(self.stmt(
            "UPDATE kairos_runs SET status = 'cancelled', finished_at = $1, cancel_requested = true, \
             error = $3 WHERE job_id = $2 AND status = 'queued'",
            [
                Value::from(ms(now)),
                Value::from(job_id),
                Value::from(super::REPLACED),
            ],
        ))
        .await?;
        // The reason goes with the request: the outcome its node writes keeps it (see
        // `complete`), wherever that node is.
        let rows = conn
            .query_all_raw(self.stmt(
                "UPDATE kairos_runs SET cancel_requested = true, error = $2 \
                 WHERE job_id = $1 AND status = 'running' RETURNING id",
                [Value::from(job_id), Value::from(super::REPLACED)],
            ))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64>("", "id").map_err(StoreError::from))
            .collect()
    }

    /// Enqueues a run of the job now, outside its schedule ("run now"), marked
    /// `manual`. Its slot is `now`, so triggering twice in the same millisecond yields
    /// one run: `None` for the second.
    pub(crate) async fn trigger_job(
        &self,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let txn = self.db.begin_with_options(write_txn()).await?;
        let id = self.insert_job_run(&txn, run, now).await?;
        bump(&txn, self).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Inserts the run of one slot of a job; `None` when that slot already has a run.
    async fn insert_job_run<C: ConnectionTrait>(
        &self,
        conn: &C,
        r: &NewRun,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let row = conn
            .query_one_raw(self.stmt(
                &format!(
                    "INSERT INTO kairos_runs ({JOB_RUN_COLUMNS}) VALUES ({}, 'queued', 0, false) \
                     ON CONFLICT DO NOTHING RETURNING id",
                    placeholders(1, 13)
                ),
                job_run_values(r, now),
            ))
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("", "id")?),
            None => None,
        })
    }
}

/// The columns of a job's run as [`Store::fire`] inserts it: [`job_run_values`], then
/// the status, attempt and cancel flag of a new run.
const JOB_RUN_COLUMNS: &str = "task, queue, job_id, origin, params, priority, run_at, \
     scheduled_for, max_retries, retry_delay_ms, timeout_ms, created_at, callback_url, \
     status, attempt, cancel_requested";

/// The values of a job's run for the `INSERT` of [`Store::fire`], in the order of
/// [`JOB_RUN_COLUMNS`].
fn job_run_values(r: &NewRun, now: DateTime<Utc>) -> [Value; 13] {
    [
        Value::from(r.task.clone()),
        Value::from(r.queue.clone()),
        Value::from(r.job_id),
        Value::from(r.origin.as_str()),
        Value::from(r.params.to_string()),
        Value::from(r.priority),
        Value::from(ms(r.run_at)),
        Value::from(ms(r.scheduled_for)),
        Value::from(int(r.max_retries)),
        Value::from(duration_ms(r.retry_delay)),
        Value::from(duration_ms(r.timeout)),
        Value::from(ms(now)),
        Value::from(r.callback_url.clone()),
    ]
}
