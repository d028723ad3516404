//! Operations on jobs: listing, pause and resume, trigger, create, update and delete
//! (for jobs made at run time), and the record of every slot.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Admin;
use super::enqueue::check_params;
use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::job::JobSpec;
use crate::model::{DisabledReason, Job, JobPolicy, JobSlot, JobSource, RunOrigin, SlotOutcome};
use crate::schedule::{CronSchedule, DstPolicy, Schedule, Tz};
use crate::store::NewRun;
use crate::task::{Misfire, Overlap};

/// How many milliseconds on a trigger looks for a free slot of its job.
const TRIGGER_TRIES: i64 = 50;

/// Most slots one listing expands.
const MAX_EXPAND: usize = 200_000;

/// A job to create at run time (source `api`): kept across restarts and never
/// disabled by `jobs.toml` reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    name: String,
    task: String,
    schedule: Schedule,
    params: Option<Value>,
    priority: Option<i32>,
    changes: JobChanges,
    paused: bool,
    callback_url: Option<String>,
}

impl NewJob {
    /// A job named `name` firing `task` on `schedule`, with the task's policies.
    pub fn new(name: impl Into<String>, task: impl Into<String>, schedule: Schedule) -> Self {
        NewJob {
            name: name.into(),
            task: task.into(),
            schedule,
            params: None,
            priority: None,
            changes: JobChanges::default(),
            paused: false,
            callback_url: None,
        }
    }
    /// POST each finished run of the job as JSON to this URL.
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }
    /// Params of every run.
    pub fn params(mut self, params: Value) -> Self {
        self.params = Some(params);
        self
    }
    /// Priority of its runs (else the task's).
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = Some(p);
        self
    }
    /// Misfire, overlap and grace overrides.
    pub fn policies(mut self, changes: JobChanges) -> Self {
        self.changes = changes;
        self
    }
    /// Create it paused.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }
}

/// Changes to a job made at run time; `None` leaves a field as it is.
///
/// A new schedule restarts the job's slots from now. [`JobChanges::schedule`] replaces
/// the whole schedule, the zone and DST policy of a cron one included;
/// [`JobChanges::cron`] gives only the expression and keeps the job's zone and DST
/// policy. [`JobChanges::timezone`] and [`JobChanges::dst`] change those of the job's
/// cron schedule (the new one or the current one); on a job that fires on an interval
/// or once they are refused.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JobChanges {
    /// A new schedule, zone and DST policy included.
    pub schedule: Option<Schedule>,
    /// A new cron expression, in the job's current zone and DST policy unless
    /// `timezone` or `dst` is given (in the configured default zone if the job was not
    /// on a cron schedule). Not with `schedule`.
    pub cron: Option<String>,
    /// A new zone for the job's cron schedule.
    pub timezone: Option<Tz>,
    /// A new daylight-saving policy for the job's cron schedule.
    pub dst: Option<DstPolicy>,
    /// New params.
    pub params: Option<Value>,
    /// New priority (`Some(None)`: the task's).
    pub priority: Option<Option<i32>>,
    /// Misfire policy.
    pub misfire: Option<Misfire>,
    /// Catch-up bound.
    pub max_catch_up: Option<u32>,
    /// Misfire grace.
    pub misfire_grace: Option<Duration>,
    /// Overlap policy.
    pub overlap: Option<Overlap>,
    /// Webhook URL (`Some(None)`: none).
    pub callback_url: Option<Option<String>>,
}

impl JobChanges {
    /// No change.
    pub fn new() -> Self {
        JobChanges::default()
    }
    /// A new schedule, zone and DST policy included.
    pub fn schedule(mut self, s: Schedule) -> Self {
        self.schedule = Some(s);
        self
    }
    /// A new cron expression in the job's current zone and DST policy (checked when
    /// the change is applied).
    pub fn cron(mut self, expr: impl Into<String>) -> Self {
        self.cron = Some(expr.into());
        self
    }
    /// Another zone for the job's cron schedule.
    pub fn timezone(mut self, tz: Tz) -> Self {
        self.timezone = Some(tz);
        self
    }
    /// Another daylight-saving policy for the job's cron schedule.
    pub fn dst(mut self, dst: DstPolicy) -> Self {
        self.dst = Some(dst);
        self
    }
    /// New params.
    pub fn params(mut self, p: Value) -> Self {
        self.params = Some(p);
        self
    }
    /// New priority.
    pub fn priority(mut self, p: Option<i32>) -> Self {
        self.priority = Some(p);
        self
    }
    /// Misfire policy.
    pub fn misfire(mut self, m: Misfire) -> Self {
        self.misfire = Some(m);
        self
    }
    /// Catch-up bound.
    pub fn max_catch_up(mut self, n: u32) -> Self {
        self.max_catch_up = Some(n);
        self
    }
    /// Misfire grace.
    pub fn misfire_grace(mut self, d: Duration) -> Self {
        self.misfire_grace = Some(d);
        self
    }
    /// Overlap policy.
    pub fn overlap(mut self, o: Overlap) -> Self {
        self.overlap = Some(o);
        self
    }
    /// Webhook URL of its finished runs (`None` removes it).
    pub fn callback_url(mut self, url: Option<String>) -> Self {
        self.callback_url = Some(url);
        self
    }

    fn apply(&self, mut p: JobPolicy) -> Result<JobPolicy, Error> {
        if let Some(m) = self.misfire {
            p.misfire = m;
            // A bound only catch_up reads goes back to the default with it, as a job
            // created with this policy has.
            if m != Misfire::CatchUp {
                p.max_catch_up = JobPolicy::default().max_catch_up;
            }
        }
        if let Some(n) = self.max_catch_up {
            if n == 0 {
                return Err(Error::invalid(
                    "max_catch_up",
                    "must be at least 1 (use misfire = skip to run no missed slot)",
                ));
            }
            if n > crate::config::MAX_CATCH_UP {
                return Err(Error::invalid(
                    "max_catch_up",
                    format!(
                        "{n} is more than the {} missed slots kairos runs at once; use 1 to {}",
                        crate::config::MAX_CATCH_UP,
                        crate::config::MAX_CATCH_UP
                    ),
                ));
            }
            p.max_catch_up = n;
        }
        if let Some(g) = self.misfire_grace {
            if g > crate::schedule::MAX_DURATION {
                return Err(Error::invalid("misfire_grace", "at most 100 years"));
            }
            p.misfire_grace = g;
        }
        if let Some(o) = self.overlap {
            p.overlap = o;
        }
        if self.max_catch_up.is_some() && p.misfire != Misfire::CatchUp {
            return Err(Error::invalid(
                "max_catch_up",
                format!(
                    "applies only with misfire catch_up, and the job's misfire policy is {}; \
                     give misfire catch_up too, or leave max_catch_up out",
                    p.misfire.as_str()
                ),
            ));
        }
        Ok(p)
    }

    /// `overlap` says what a new run does while the task's `max_instances` runs are
    /// going; without that limit it would silently do nothing (runs overlap freely).
    fn check_overlap(&self, task: &str, max_instances: Option<u32>) -> Result<(), Error> {
        match self.overlap {
            Some(o) if max_instances.is_none() => Err(Error::invalid(
                "overlap",
                format!(
                    "{} has no effect: it says what a new run does while task `{task}` \
                         has its max_instances runs going, and it has no max_instances (its \
                         runs overlap freely; set one in #[kairos::task] or [tasks.{task}] of \
                         jobs.toml); leave overlap out",
                    o.as_str()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The schedule of `job` after these changes; `default_tz` is the zone of a cron
    /// expression given to a job that had no cron schedule.
    fn schedule_of(&self, job: &Job, default_tz: Tz) -> Result<Schedule, Error> {
        let current = match &job.schedule {
            Schedule::Cron(c) => Some(c),
            _ => None,
        };
        if let Some(expr) = &self.cron {
            if self.schedule.is_some() {
                return Err(Error::invalid(
                    "schedule",
                    "give a whole schedule or a cron expression, not both",
                ));
            }
            let tz = self
                .timezone
                .or(current.map(|c| c.timezone()))
                .unwrap_or(default_tz);
            let dst = self.dst.or(current.map(|c| c.dst())).unwrap_or_default();
            let cron = CronSchedule::parse(expr, tz)
                .map_err(|e| Error::invalid("schedule", e.to_string()))?;
            return Ok(Schedule::Cron(cron.with_dst(dst)));
        }
        let schedule = self.schedule.as_ref().unwrap_or(&job.schedule);
        if self.timezone.is_none() && self.dst.is_none() {
            return Ok(schedule.clone());
        }
        let Schedule::Cron(cron) = schedule else {
            let (field, what) = match self.timezone {
                Some(_) => ("timezone", "a time zone"),
                None => ("dst", "a daylight-saving policy"),
            };
            let message = if self.schedule.is_some() {
                format!("{what} applies only to a cron schedule, and the new one is `{schedule}`")
            } else {
                format!(
                    "job `{}` fires `{schedule}`, not on a cron schedule, and {what} applies \
                     only to a cron one; give a cron `schedule` with it to make it a cron job",
                    job.name
                )
            };
            return Err(Error::invalid(field, message));
        };
        let tz = self.timezone.unwrap_or(cron.timezone());
        let dst = self.dst.unwrap_or(cron.dst());
        Ok(Schedule::Cron(cron.clone().with_timezone(tz).with_dst(dst)))
    }
}

fn check_schedule(s: &Schedule) -> Result<(), Error> {
    if let Schedule::Every(d) = s {
        if d.is_zero() {
            return Err(Error::invalid("interval", "must be longer than zero"));
        }
        if let Some(problem) = crate::config::short_interval(*d) {
            return Err(Error::invalid(
                "interval",
                format!("{problem}; use at least 1s, or enqueue runs for finer work"),
            ));
        }
        if *d > crate::schedule::MAX_DURATION {
            return Err(Error::invalid(
                "interval",
                format!(
                    "{} is so long the job would never fire; use at most {}",
                    crate::schedule::format_duration(*d),
                    crate::schedule::format_duration(crate::schedule::MAX_DURATION)
                ),
            ));
        }
    }
    Ok(())
}

impl Admin {
    /// Every job, by name.
    pub async fn jobs(&self) -> Result<Vec<Job>, Error> {
        Ok(self.store().jobs().await?)
    }

    /// The job of this name, or an error with a suggestion.
    pub async fn job(&self, name: &str) -> Result<Job, Error> {
        match self.store().job(name).await? {
            Some(j) => Ok(j),
            None => Err(self.job_not_found(name).await),
        }
    }

    pub(crate) async fn job_not_found(&self, name: &str) -> Error {
        let jobs = self.store().jobs().await.unwrap_or_default();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        Error::JobNotFound {
            name: name.to_string(),
            hint: crate::suggest::hint(name, &names, "jobs", "there are no jobs"),
        }
    }

    /// Pauses a job: it fires nothing until it is resumed; runs it already queued still
    /// run (cancel them to stop them). On resume, the slots that passed meanwhile are
    /// missed, however recent, and its misfire policy decides: by default one run
    /// stands for them (`misfire = "skip"` records them as skipped instead).
    ///
    /// A disabled job can be paused and resumed too: the pause is the operator's and
    /// the disabling the declaration's, and a job fires only when neither holds, so a
    /// job paused while disabled stays paused when its declaration enables it again.
    pub async fn pause_job(&self, name: &str) -> Result<Job, Error> {
        match self.store().set_job_paused(name, true, self.now()).await? {
            Some(j) => {
                self.jobs_changed();
                self.job_event(EventKind::JobPaused, &j.name, &j.task, "paused")
                    .await;
                Ok(j)
            }
            None => Err(self.job_not_found(name).await),
        }
    }

    /// Resumes a paused job; the slots missed while paused go through its misfire
    /// policy (by default one run stands for them). A disabled job is resumed too, and
    /// still fires nothing until its declaration enables it (see [`Admin::pause_job`]).
    pub async fn resume_job(&self, name: &str) -> Result<Job, Error> {
        match self.store().set_job_paused(name, false, self.now()).await? {
            Some(j) => {
                self.jobs_changed();
                self.job_event(EventKind::JobResumed, &j.name, &j.task, "resumed")
                    .await;
                Ok(j)
            }
            None => Err(self.job_not_found(name).await),
        }
    }

    /// Enqueues a run of the job now, outside its schedule (origin `manual`). Returns
    /// the run's id. A paused or disabled job can be triggered: the operator asks for
    /// this one run, and the job fires nothing more on its own.
    pub async fn trigger_job(&self, name: &str) -> Result<i64, Error> {
        let job = self.job(name).await?;
        let view = self.task_view(&job.task).await?;
        let now = self.now();
        // A slot is one per job and millisecond: two triggers in one millisecond (two
        // operators, a script) each get a run, the later a millisecond on.
        for late_ms in 0..TRIGGER_TRIES {
            let at = now + chrono::Duration::milliseconds(late_ms);
            let mut run = NewRun::of_job(&job, &view.policy, at, RunOrigin::Manual);
            // Due now all the same: only its slot is a millisecond on.
            run.run_at = now;
            if let Some(id) = self.store().trigger_job(&run, now).await? {
                self.runs_changed();
                self.emit(|| {
                    vec![super::enqueue::queued(id, &run, now).job(Some(job.name.clone()))]
                })
                .await;
                return Ok(id);
            }
        }
        Err(Error::conflict(format!(
            "job `{name}` was triggered {TRIGGER_TRIES} times within {TRIGGER_TRIES} ms; try again"
        )))
    }

    /// Creates a job (source `api`).
    pub async fn create_job(&self, new: NewJob) -> Result<Job, Error> {
        if let Some(problem) = crate::config::job_name_problem(&new.name) {
            return Err(Error::invalid("name", format!("the job name {problem}")));
        }
        check_schedule(&new.schedule)?;
        let view = self.task_view(&new.task).await?;
        new.changes
            .check_overlap(&new.task, view.policy.max_instances)?;
        let params = check_params(&new.task, new.params, &view.check)?;
        let spec = JobSpec {
            name: new.name.clone(),
            task: new.task,
            schedule: new.schedule,
            params,
            enabled: true,
            priority: new.priority,
            policy: new.changes.apply(view.policy.job_policy)?,
            source: JobSource::Api,
            callback_url: checked_url(new.callback_url)?,
        };
        if !self
            .store()
            .create_job(&spec, new.paused, self.now())
            .await?
        {
            let existing = self.job(&new.name).await?;
            let then = if existing.source == JobSource::Api {
                format!("`kairos jobs update {}` it", new.name)
            } else {
                "change it where it is declared".to_string()
            };
            return Err(Error::conflict(format!(
                "a job named `{}` already exists (declared by {}); choose another name or \
                 {then}",
                new.name,
                source_text(existing.source)
            )));
        }
        self.jobs_changed();
        self.job_event(EventKind::JobChanged, &new.name, &spec.task, "created")
            .await;
        self.job(&new.name).await
    }

    /// Changes a job created at run time (see [`JobChanges`] for how a new schedule,
    /// zone or DST policy combine with the job's).
    pub async fn update_job(&self, name: &str, changes: JobChanges) -> Result<Job, Error> {
        let job = self.job(name).await?;
        if job.disabled_reason == Some(DisabledReason::Undeclared) {
            return Err(Error::conflict(format!(
                "job `{name}` was declared by {} and no longer is, so it is disabled; \
                 declare it again to change it, or `kairos jobs delete {name}` and create \
                 it anew",
                source_text(job.source)
            )));
        }
        if job.source != JobSource::Api {
            return Err(Error::conflict(format!(
                "job `{name}` is declared by {}; change it there (a declared job is restored \
                 from its declaration at every start)",
                source_text(job.source)
            )));
        }
        let schedule = changes.schedule_of(&job, self.defaults().timezone)?;
        check_schedule(&schedule)?;
        if changes.overlap.is_some() {
            let view = self.task_view(&job.task).await?;
            changes.check_overlap(&job.task, view.policy.max_instances)?;
        }
        let params = match &changes.params {
            Some(p) => {
                let view = self.task_view(&job.task).await?;
                check_params(&job.task, Some(p.clone()), &view.check)?
            }
            None => job.params.clone(),
        };
        let spec = JobSpec {
            name: job.name.clone(),
            task: job.task.clone(),
            schedule,
            params,
            enabled: job.enabled,
            priority: changes.priority.unwrap_or(job.priority),
            policy: changes.apply(job.policy)?,
            source: JobSource::Api,
            callback_url: match changes.callback_url.clone() {
                Some(u) => checked_url(u)?,
                None => job.callback_url.clone(),
            },
        };
        if !self.store().update_job(&spec, self.now()).await? {
            return Err(self.job_not_found(name).await);
        }
        self.jobs_changed();
        self.job_event(EventKind::JobChanged, name, &spec.task, "updated")
            .await;
        self.job(name).await
    }

    /// Deletes a job created at run time, or one disabled because it is no longer
    /// declared. Its queued runs are cancelled and its running ones asked to stop;
    /// unless `keep_history`, its finished runs and slot records go too. Returns (runs
    /// cancelled, runs deleted).
    pub async fn delete_job(&self, name: &str, keep_history: bool) -> Result<(u64, u64), Error> {
        let job = self.job(name).await?;
        let undeclared = job.disabled_reason == Some(DisabledReason::Undeclared);
        if job.source != JobSource::Api && !undeclared {
            return Err(Error::conflict(format!(
                "job `{name}` is declared by {}; remove it there (it is then disabled and can \
                 be deleted), or pause it with `kairos jobs pause {name}`",
                source_text(job.source)
            )));
        }
        match self
            .store()
            .delete_job(name, keep_history, self.now())
            .await?
        {
            Some(counts) => {
                self.jobs_changed();
                self.job_event(EventKind::JobChanged, name, &job.task, "deleted")
                    .await;
                Ok(counts)
            }
            None => Err(self.job_not_found(name).await),
        }
    }

    /// What became of each slot of the job from `since` on, oldest first: at most the
    /// `limit` most recent ones.
    pub async fn job_slots(
        &self,
        name: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<JobSlot>, Error> {
        let job = self.job(name).await?;
        let mut slots: BTreeMap<DateTime<Utc>, JobSlot> = BTreeMap::new();
        for stored in self.store().slot_ranges(job.id, since).await? {
            let r = &stored.record;
            let anchor = job.anchor_at.unwrap_or(r.first);
            let mut s = if r.first >= since {
                Some(r.first)
            } else {
                job.schedule
                    .next_after(anchor, since - chrono::Duration::milliseconds(1))
            };
            let mut n = 0;
            while let Some(t) = s.filter(|t| *t <= r.last) {
                slots.insert(
                    t,
                    JobSlot {
                        scheduled_for: t,
                        outcome: r.outcome,
                        run_id: stored.run_id,
                        reason: r.reason,
                    },
                );
                n += 1;
                if n >= MAX_EXPAND {
                    break;
                }
                s = job.schedule.next_after(anchor, t);
            }
        }
        // A slot that has its own run shows that run, whatever range covered it.
        for (t, id, origin) in self.store().slot_runs(job.id, since).await? {
            slots.insert(
                t,
                JobSlot {
                    scheduled_for: t,
                    outcome: if origin == RunOrigin::CatchUp {
                        SlotOutcome::CaughtUp
                    } else {
                        SlotOutcome::Ran
                    },
                    run_id: Some(id),
                    reason: None,
                },
            );
        }
        let all: Vec<JobSlot> = slots.into_values().collect();
        let skip = all.len().saturating_sub(limit);
        Ok(all.into_iter().skip(skip).collect())
    }
}

fn checked_url(url: Option<String>) -> Result<Option<String>, Error> {
    match url {
        Some(u) => {
            super::check_url(&u).map_err(|why| Error::invalid("callback_url", why))?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

impl Admin {
    /// A job's event, naming the task it runs (so that a task's subscribers hear of
    /// its jobs too).
    async fn job_event(&self, kind: EventKind, name: &str, task: &str, change: &str) {
        let now = self.now();
        self.emit(|| {
            let mut e = Event::new(kind, now).job(Some(name.to_string()));
            e.task = Some(task.to_string());
            vec![e.data(serde_json::json!({ "change": change }))]
        })
        .await;
    }
}

/// Why `job` is disabled and how to enable it again, or `None` when it is enabled:
/// for the messages of pause, resume and trigger, which work on a disabled job but do
/// not make it fire.
pub(crate) fn disabled_why(job: &Job) -> Option<String> {
    if job.enabled {
        return None;
    }
    Some(match job.disabled_reason {
        Some(DisabledReason::Config) => "it is disabled by `enabled = false` in jobs.toml (set \
             `enabled = true` there to let it fire)"
            .to_string(),
        _ => format!(
            "it is disabled because it is no longer declared in code or jobs.toml (declare it \
             again to let it fire, or `kairos jobs delete {}`)",
            job.name
        ),
    })
}

fn source_text(s: JobSource) -> &'static str {
    match s {
        JobSource::Code => "#[kairos::task] in the application's code",
        JobSource::Config => "a [[jobs]] entry in jobs.toml",
        JobSource::Api => "`kairos jobs create` (or the API)",
    }
}
