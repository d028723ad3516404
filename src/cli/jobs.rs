//! `kairos jobs ...`: list, show, pause, resume, trigger, slots, create, update, delete.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{CliError, Out, fields, opt_time, rfc3339, table, truncate};
use super::{parse_duration_arg, parse_json, parse_since, parse_time};
use crate::model::{Job, JobSlot, Run, RunFilter};
use crate::ops::{Admin, JobChanges, NewJob, disabled_why};
use crate::schedule::{CronSchedule, DstPolicy, Schedule, parse_timezone};
use crate::task::{Misfire, Overlap};

#[derive(Debug, Subcommand)]
pub(super) enum JobsCmd {
    /// All jobs, with their schedule, state and next run.
    List,
    /// One job, with its recent runs.
    Show {
        /// Job name.
        name: String,
    },
    /// Stop firing a job until resumed (runs it already queued still run).
    Pause {
        /// Job name.
        name: String,
    },
    /// Resume a paused job (slots missed meanwhile go through its misfire policy).
    Resume {
        /// Job name.
        name: String,
    },
    /// Run a job now, outside its schedule (the run is marked manual).
    Trigger {
        /// Job name.
        name: String,
    },
    /// What became of each slot: ran, caught_up, coalesced or skipped (with why).
    Slots {
        /// Job name.
        name: String,
        /// From this age (e.g. 1d) or RFC 3339 time on.
        #[arg(long, default_value = "1d")]
        since: String,
        /// At most this many (the most recent).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
    /// Create a job at run time (kept across restarts; jobs.toml never removes it).
    Create {
        /// Job name (unique).
        name: String,
        /// The task it runs.
        #[arg(long)]
        task: String,
        #[command(flatten)]
        def: JobDef,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// Change a job created at run time (a new schedule restarts from now).
    Update {
        /// Job name.
        name: String,
        #[command(flatten)]
        def: JobDef,
        /// Its runs take the task's priority again.
        #[arg(long, conflicts_with = "priority")]
        no_priority: bool,
        /// Its finished runs are no longer posted anywhere.
        #[arg(long, conflicts_with = "callback_url")]
        no_callback_url: bool,
        /// Pause it too (as `jobs pause`).
        #[arg(long)]
        paused: bool,
        /// Resume it too (as `jobs resume`).
        #[arg(long, conflicts_with = "paused")]
        no_paused: bool,
    },
    /// Delete a job created at run time (or one no longer declared): its queued runs
    /// are cancelled, its running ones asked to stop.
    Delete {
        /// Job name.
        name: String,
        /// Keep its finished runs and slot records.
        #[arg(long)]
        keep_history: bool,
    },
}

/// A job's schedule, params and policies as flags.
#[derive(Debug, Args)]
pub(super) struct JobDef {
    /// Cron expression (5 fields, 6 with seconds, or @daily ...).
    #[arg(long, conflicts_with_all = ["interval", "at"])]
    schedule: Option<String>,
    /// IANA zone of the cron schedule (create: default [scheduler] timezone, else UTC;
    /// update: the job's, and alone it changes the zone of a cron job).
    #[arg(long, alias = "tz")]
    timezone: Option<String>,
    /// Daylight-saving rule of the cron schedule: debian, skip or both (update: the
    /// job's unless given).
    #[arg(long)]
    dst: Option<DstPolicy>,
    /// Fixed interval, e.g. 15m.
    #[arg(long, value_parser = parse_interval, conflicts_with = "at")]
    interval: Option<Duration>,
    /// Once, at this RFC 3339 time.
    #[arg(long)]
    at: Option<String>,
    /// Params of every run, a JSON object.
    #[arg(long)]
    params: Option<String>,
    /// Priority of its runs (lower first).
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Missed slots: skip, run_once or catch_up.
    #[arg(long)]
    misfire: Option<Misfire>,
    /// With catch_up, how many missed slots run at most.
    #[arg(long,
          value_parser = clap::value_parser!(u32).range(1..=crate::config::MAX_CATCH_UP as i64))]
    max_catch_up: Option<u32>,
    /// A slot found later than this is missed (e.g. 30s).
    #[arg(long, value_parser = parse_duration_arg)]
    misfire_grace: Option<Duration>,
    /// At max_instances: skip, queue or replace.
    #[arg(long)]
    overlap: Option<Overlap>,
    /// POST each finished run of the job as JSON to this URL.
    #[arg(long)]
    callback_url: Option<String>,
}

impl JobDef {
    /// The schedule of `jobs create`: a cron `--schedule` in `--timezone` (default: the
    /// configured zone), `--interval` or `--at`.
    fn new_schedule(&self, admin: &Admin) -> Result<Schedule, CliError> {
        self.zone_needs_cron()?;
        if let Some(expr) = &self.schedule {
            let tz = match self.zone()? {
                Some(tz) => tz,
                None => admin.defaults().timezone,
            };
            let cron = CronSchedule::parse(expr, tz)
                .map_err(|e| CliError::new("invalid_cron", format!("--schedule: {e}")))?
                .with_dst(self.dst.unwrap_or_default());
            return Ok(Schedule::Cron(cron));
        }
        if self.timezone.is_some() || self.dst.is_some() {
            return Err(CliError::usage(
                "--timezone and --dst apply only to a cron --schedule; remove them or give --schedule",
            ));
        }
        if let Some(d) = self.interval {
            return Ok(Schedule::Every(d));
        }
        if let Some(at) = &self.at {
            return Ok(Schedule::Once(parse_time(at, "--at")?));
        }
        Err(CliError::usage(
            "give the job a schedule: --schedule \"0 7 * * *\", --interval 15m or --at 2026-12-24T18:00:00Z",
        ))
    }

    /// The changes of `jobs update`. A `--schedule` without `--timezone` or `--dst`
    /// keeps the job's, and those flags alone change the zone of its cron schedule, so
    /// the job itself decides (in `Admin::update_job`) what they apply to.
    fn changes(&self) -> Result<JobChanges, CliError> {
        self.zone_needs_cron()?;
        let mut c = JobChanges::new();
        if let Some(expr) = &self.schedule {
            // Checked here too, so a typo is reported against the flag as in `create`.
            CronSchedule::parse(expr, crate::schedule::Tz::UTC)
                .map_err(|e| CliError::new("invalid_cron", format!("--schedule: {e}")))?;
            c = c.cron(expr.clone());
        }
        c.timezone = self.zone()?;
        c.dst = self.dst;
        if let Some(d) = self.interval {
            c = c.schedule(Schedule::Every(d));
        }
        if let Some(at) = &self.at {
            c = c.schedule(Schedule::Once(parse_time(at, "--at")?));
        }
        if let Some(p) = &self.params {
            c = c.params(parse_json(p, "--params")?);
        }
        if let Some(p) = self.priority {
            c = c.priority(Some(p));
        }
        c.misfire = self.misfire;
        c.max_catch_up = self.max_catch_up;
        c.misfire_grace = self.misfire_grace;
        c.overlap = self.overlap;
        if let Some(u) = &self.callback_url {
            c = c.callback_url(Some(u.clone()));
        }
        Ok(c)
    }

    /// `--timezone` and `--dst` with `--interval` or `--at` (clap's `conflicts_with`
    /// cannot say "only with this one of three").
    fn zone_needs_cron(&self) -> Result<(), CliError> {
        let zone = self.timezone.is_some() || self.dst.is_some();
        if zone && (self.interval.is_some() || self.at.is_some()) {
            return Err(CliError::usage(
                "--timezone and --dst apply only to a cron --schedule, not to --interval or --at; remove them",
            ));
        }
        Ok(())
    }

    fn zone(&self) -> Result<Option<crate::schedule::Tz>, CliError> {
        self.timezone
            .as_deref()
            .map(|z| {
                parse_timezone(z)
                    .map_err(|e| CliError::new("invalid_input", format!("--timezone: {e}")))
            })
            .transpose()
    }
}

/// `jobs show`: the job and its recent runs.
#[derive(Serialize)]
struct JobDetail<'a> {
    #[serde(flatten)]
    job: &'a Job,
    recent_runs: &'a [Run],
}

/// `jobs delete`: what was done.
#[derive(Serialize)]
struct Deleted<'a> {
    name: &'a str,
    deleted: bool,
    runs_cancelled: u64,
    runs_deleted: u64,
}

pub(super) async fn run(
    cmd: JobsCmd,
    admin: &Admin,
    now: DateTime<Utc>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match cmd {
        JobsCmd::List => {
            let jobs = admin.jobs().await?;
            out.print(&jobs, || jobs_table(&jobs))
        }
        JobsCmd::Show { name } => {
            let job = admin.job(&name).await?;
            let runs = admin
                .runs(&RunFilter::new().job(name.clone()).page(1, 10))
                .await?
                .runs;
            let detail = JobDetail {
                job: &job,
                recent_runs: &runs,
            };
            out.print(&detail, || {
                format!("{}\n\n{}", job_detail(&job), super::runs::runs_table(&runs))
            })
        }
        JobsCmd::Pause { name } => {
            let job = admin.pause_job(&name).await?;
            out.print(&job, || match disabled_why(&job) {
                Some(why) => format!(
                    "paused job `{name}`; {why}, and once enabled it stays paused until resumed"
                ),
                None => format!(
                    "paused job `{name}`: it fires nothing until resumed; the slots that pass \
                     meanwhile then follow its misfire policy (`{}`)",
                    job.policy.misfire.as_str()
                ),
            })
        }
        JobsCmd::Resume { name } => {
            let job = admin.resume_job(&name).await?;
            out.print(&job, || match disabled_why(&job) {
                Some(why) => {
                    format!("resumed job `{name}`, but it still fires nothing: {why}")
                }
                None => resumed(&job, Utc::now()),
            })
        }
        JobsCmd::Trigger { name } => {
            let id = admin.trigger_job(&name).await?;
            let job = admin.job(&name).await?;
            let run = admin.run(id).await?;
            out.print(&run, || match disabled_why(&job) {
                Some(why) => {
                    format!("triggered job `{name}`: run {id}; {why}, so only this run happens")
                }
                None => format!("triggered job `{name}`: run {id}"),
            })
        }
        JobsCmd::Slots { name, since, limit } => {
            let since = parse_since(&since, now, "--since")?;
            let slots = admin.job_slots(&name, since, limit as usize).await?;
            out.print(&slots, || slots_table(&slots))
        }
        JobsCmd::Create {
            name,
            task,
            def,
            paused,
        } => {
            let schedule = def.new_schedule(admin)?;
            let mut changes = def.changes()?;
            let mut new = NewJob::new(name.clone(), task, schedule).paused(paused);
            if let Some(p) = changes.params.take() {
                new = new.params(p);
            }
            if let Some(Some(p)) = changes.priority.take() {
                new = new.priority(p);
            }
            if let Some(Some(u)) = changes.callback_url.take() {
                new = new.callback_url(u);
            }
            // The schedule is the job's own, above; what is left are its policies.
            let changes = JobChanges {
                schedule: None,
                cron: None,
                timezone: None,
                dst: None,
                ..changes
            };
            let job = admin.create_job(new.policies(changes)).await?;
            out.print(&job, || {
                format!(
                    "created job `{name}` ({}); next run {}",
                    job.schedule,
                    opt_time(job.next_run_at)
                )
            })
        }
        JobsCmd::Update {
            name,
            def,
            no_priority,
            no_callback_url,
            paused,
            no_paused,
        } => {
            let mut changes = def.changes()?;
            if no_priority {
                changes = changes.priority(None);
            }
            if no_callback_url {
                changes = changes.callback_url(None);
            }
            let pause = (paused || no_paused).then_some(paused);
            if changes == JobChanges::new() && pause.is_none() {
                return Err(CliError::usage(
                    "nothing to change: give --schedule, --timezone, --dst, --interval, --at, --params, --priority (or --no-priority), a policy flag, --callback-url (or --no-callback-url) or --paused (or --no-paused)",
                ));
            }
            // The changes first: should they be refused, the pause is not made either.
            let updated = match changes != JobChanges::new() {
                true => Some(admin.update_job(&name, changes).await?),
                false => None,
            };
            let job = match (pause, updated) {
                (Some(true), _) => admin.pause_job(&name).await?,
                (Some(false), _) => admin.resume_job(&name).await?,
                (None, job) => job.expect("a change was made"),
            };
            out.print(&job, || {
                format!(
                    "updated job `{name}` ({}); next run {}",
                    job.schedule,
                    opt_time(job.next_run_at)
                )
            })
        }
        JobsCmd::Delete { name, keep_history } => {
            let (cancelled, deleted) = admin.delete_job(&name, keep_history).await?;
            let d = Deleted {
                name: &name,
                deleted: true,
                runs_cancelled: cancelled,
                runs_deleted: deleted,
            };
            out.print(&d, || {
                format!(
                    "deleted job `{name}`: {cancelled} unfinished run(s) cancelled, {deleted} finished run(s) deleted"
                )
            })
        }
    }
}

fn jobs_table(jobs: &[Job]) -> String {
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                j.name.clone(),
                j.task.clone(),
                truncate(&j.schedule.to_string(), 48),
                // Both facts: each must be undone before the job fires again.
                if !j.enabled && j.paused {
                    "disabled, paused".into()
                } else {
                    j.state().into()
                },
                opt_time(j.next_run_at),
                opt_time(j.last_fired_at),
                j.source.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "JOB",
            "TASK",
            "SCHEDULE",
            "STATE",
            "NEXT RUN",
            "LAST FIRED",
            "SOURCE",
        ],
        rows,
    )
}

fn job_detail(j: &Job) -> String {
    // A disabled job may be paused too; both must be undone before it fires again.
    let state = match (j.state(), j.disabled_reason, j.paused) {
        ("disabled", Some(r), true) => format!("disabled ({r}), paused"),
        ("disabled", Some(r), false) => format!("disabled ({r})"),
        ("disabled", None, true) => "disabled, paused".to_string(),
        (s, _, _) => s.to_string(),
    };
    fields(&[
        ("name", j.name.clone()),
        ("task", j.task.clone()),
        ("schedule", j.schedule.to_string()),
        ("params", j.params.to_string()),
        ("state", state),
        (
            "priority",
            j.priority.map_or("(the task's)".into(), |p| p.to_string()),
        ),
        ("misfire", j.policy.misfire.to_string()),
        ("max catch-up", j.policy.max_catch_up.to_string()),
        (
            "misfire grace",
            crate::schedule::format_duration(j.policy.misfire_grace),
        ),
        ("overlap", j.policy.overlap.to_string()),
        (
            "callback url",
            j.callback_url.clone().unwrap_or_else(|| "-".into()),
        ),
        ("source", j.source.to_string()),
        ("next run", opt_time(j.next_run_at)),
        ("last fired", opt_time(j.last_fired_at)),
        ("created", rfc3339(j.created_at)),
    ])
}

fn slots_table(slots: &[JobSlot]) -> String {
    let rows = slots
        .iter()
        .map(|s| {
            vec![
                rfc3339(s.scheduled_for),
                s.outcome.to_string(),
                s.run_id.map_or("-".into(), |id| id.to_string()),
                s.reason.map_or("-".into(), |r| r.to_string()),
            ]
        })
        .collect();
    table(&["SCHEDULED FOR", "OUTCOME", "RUN", "REASON"], rows)
}

/// What `jobs resume` says: the next run, or what becomes of the slots that passed
/// while the job was paused.
fn resumed(job: &Job, now: DateTime<Utc>) -> String {
    let next = opt_time(job.next_run_at);
    match job.next_run_at {
        Some(at) if at <= now => {
            let what = match job.policy.misfire {
                Misfire::RunOnce => "one run now stands for them".to_string(),
                Misfire::Skip => "they are skipped".to_string(),
                Misfire::CatchUp => format!("up to {} of them run now", job.policy.max_catch_up),
            };
            format!(
                "resumed job `{}`; the slots that passed while it was paused (from {next}) \
                 follow its misfire policy (`{}`): {what}",
                job.name,
                job.policy.misfire.as_str()
            )
        }
        _ => format!("resumed job `{}`; next run {next}", job.name),
    }
}

/// A job's `--interval`: a duration of at least [`MIN_INTERVAL`](crate::config::MIN_INTERVAL),
/// refused as a usage error (exit 2) like any malformed flag.
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    match crate::config::short_interval(d) {
        Some(problem) => Err(format!("{problem}; use at least 1s")),
        None => Ok(d),
    }
}
