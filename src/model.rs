//! The records kairos reads back: jobs, runs, slots, queues, nodes and published tasks,
//! as typed values (times, durations, enums, JSON) decoded once from the database.
//! They are what the handle, the admin API and the CLI return, and what `--json`
//! prints: one `Serialize` shape everywhere, with the same field names.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::schedule::Schedule;
use crate::task::{Misfire, Overlap};

/// Serializes a `Duration` as whole milliseconds.
pub(crate) fn ser_ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Implements `as_str`-based `Display`, `FromStr` (listing the valid names) and
/// `Serialize` (by name) for an enum with an `ALL` constant.
macro_rules! names {
    ($t:ident, $what:literal) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $t::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| {
                        format!(
                            concat!("unknown ", $what, " `{}`; use one of: {}"),
                            s,
                            $t::ALL.map(|v| v.as_str()).join(", ")
                        )
                    })
            }
        }

        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use names;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunStatus {
    /// Waiting for its `run_at` and a free worker.
    Queued,
    /// An attempt is executing on a node.
    Running,
    /// Finished without error.
    Succeeded,
    /// The final attempt failed.
    Failed,
    /// The final attempt ran past its timeout.
    TimedOut,
    /// Cancelled by an operator.
    Cancelled,
    /// Still queued when its time to live (`ttl` at enqueue) ran out: never run.
    Expired,
}

impl RunStatus {
    /// Every status, in life order.
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
        RunStatus::Expired,
    ];

    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Expired => "expired",
        }
    }

    /// True once the run can no longer change (unless retried by an operator).
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

names!(RunStatus, "run status");

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunOrigin {
    /// Enqueued through the handle, the CLI or the API.
    Enqueue,
    /// Fired by its job for a slot.
    Schedule,
    /// Fired by its job for a missed slot under `misfire = "catch_up"`.
    CatchUp,
    /// A job run by an operator outside its schedule (`jobs trigger`).
    Manual,
}

impl RunOrigin {
    /// Every origin.
    pub const ALL: [RunOrigin; 4] = [
        RunOrigin::Enqueue,
        RunOrigin::Schedule,
        RunOrigin::CatchUp,
        RunOrigin::Manual,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOrigin::Enqueue => "enqueue",
            RunOrigin::Schedule => "schedule",
            RunOrigin::CatchUp => "catch_up",
            RunOrigin::Manual => "manual",
        }
    }
}

names!(RunOrigin, "run origin");

/// Where a job was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobSource {
    /// `schedule`/`interval_minutes` on `#[kairos::task]` (possibly overridden in config).
    Code,
    /// A `[[jobs]]` entry in `jobs.toml`.
    Config,
    /// Created at run time through the API or CLI (`jobs create`); kept across
    /// restarts and never disabled by reconciliation.
    Api,
}

impl JobSource {
    /// Every source.
    pub const ALL: [JobSource; 3] = [JobSource::Code, JobSource::Config, JobSource::Api];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobSource::Code => "code",
            JobSource::Config => "config",
            JobSource::Api => "api",
        }
    }
}

names!(JobSource, "job source");

/// How a job handles missed, overlapping and daylight-saving slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobPolicy {
    /// What happens to slots missed by more than `misfire_grace`.
    pub misfire: Misfire,
    /// With `catch_up`, how many missed slots run at most.
    pub max_catch_up: u32,
    /// A slot found later than this is missed; earlier, it simply runs late.
    #[serde(rename = "misfire_grace_ms", serialize_with = "ser_ms")]
    pub misfire_grace: Duration,
    /// What a slot does when `max_instances` runs of the job are active.
    pub overlap: Overlap,
}

impl Default for JobPolicy {
    fn default() -> Self {
        JobPolicy {
            misfire: Misfire::RunOnce,
            max_catch_up: 10,
            misfire_grace: Duration::from_secs(30),
            overlap: Overlap::Skip,
        }
    }
}

/// Why a job does not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisabledReason {
    /// `enabled = false` in `jobs.toml`.
    Config,
    /// The job is no longer declared in code or `jobs.toml`.
    Undeclared,
}

impl DisabledReason {
    /// Every reason.
    pub const ALL: [DisabledReason; 2] = [DisabledReason::Config, DisabledReason::Undeclared];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Config => "config",
            DisabledReason::Undeclared => "undeclared",
        }
    }
}

names!(DisabledReason, "disabled reason");

/// A persisted job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Task it runs.
    pub task: String,
    /// When it fires.
    #[serde(serialize_with = "ser_schedule")]
    pub schedule: Schedule,
    /// First slot of an interval job (slots are `anchor + k * interval`).
    pub anchor_at: Option<DateTime<Utc>>,
    /// Params of each run.
    pub params: Value,
    /// Priority of its runs, if set on the job (else the task's).
    pub priority: Option<i32>,
    /// Misfire, overlap and grace.
    #[serde(flatten)]
    pub policy: JobPolicy,
    /// False when the job does not fire (see `disabled_reason`).
    pub enabled: bool,
    /// Why it is disabled.
    pub disabled_reason: Option<DisabledReason>,
    /// True when paused by an operator.
    pub paused: bool,
    /// Where it was declared.
    pub source: JobSource,
    /// Where its finished runs are POSTed as JSON.
    pub callback_url: Option<String>,
    /// The next slot it fires; `None` when paused, disabled or exhausted.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The last slot it fired (or skipped).
    pub last_fired_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    #[serde(skip)]
    pub(crate) version: i64,
    #[serde(skip)]
    pub(crate) due_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub(crate) paused_at: Option<DateTime<Utc>>,
    /// Pauses (from, to) whose missed slots are not accounted for yet.
    #[serde(skip)]
    pub(crate) pause_windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Job {
    /// `active`, `paused` or `disabled`.
    pub fn state(&self) -> &'static str {
        if !self.enabled {
            "disabled"
        } else if self.paused {
            "paused"
        } else {
            "active"
        }
    }
}

fn ser_schedule<S: Serializer>(s: &Schedule, ser: S) -> Result<S::Ok, S::Error> {
    ScheduleView::of(s).serialize(ser)
}

/// The JSON shape of a schedule: its kind, its parts and a one-line text.
#[derive(Serialize)]
struct ScheduleView {
    kind: &'static str,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
}

impl ScheduleView {
    fn of(s: &Schedule) -> Self {
        let mut v = ScheduleView {
            kind: schedule_kind(s),
            text: s.to_string(),
            cron: None,
            timezone: None,
            dst: None,
            interval_ms: None,
            at: None,
        };
        match s {
            Schedule::Cron(c) => {
                v.cron = Some(c.expr().to_string());
                v.timezone = Some(c.timezone().name().to_string());
                v.dst = Some(c.dst().as_str());
            }
            Schedule::Every(d) => v.interval_ms = u64::try_from(d.as_millis()).ok(),
            Schedule::Once(t) => v.at = Some(*t),
        }
        v
    }
}

/// `cron`, `interval` or `once`.
pub(crate) fn schedule_kind(s: &Schedule) -> &'static str {
    match s {
        Schedule::Cron(_) => "cron",
        Schedule::Every(_) => "interval",
        Schedule::Once(_) => "once",
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Row id.
    pub id: i64,
    /// Task name.
    pub task: String,
    /// Queue it belongs to.
    pub queue: String,
    /// The job that fired it.
    pub job_id: Option<i64>,
    /// The job's name, if the job still exists.
    pub job: Option<String>,
    /// Why it exists.
    pub origin: RunOrigin,
    /// Params.
    pub params: Value,
    /// Key/value tags.
    pub tags: BTreeMap<String, String>,
    /// Status.
    pub status: RunStatus,
    /// Priority (lower runs first).
    pub priority: i32,
    /// Earliest start of the next attempt.
    pub run_at: DateTime<Utc>,
    /// The job's nominal slot, or the requested start of an enqueued run.
    pub scheduled_for: DateTime<Utc>,
    /// Attempts started so far (never more than `max_attempts`).
    pub attempt: u32,
    /// Attempts allowed: `max_retries + 1`.
    pub max_attempts: u32,
    /// Retries allowed after the first attempt.
    pub max_retries: u32,
    /// Base delay of the retry backoff.
    #[serde(rename = "retry_delay_ms", serialize_with = "ser_ms")]
    pub retry_delay: Duration,
    /// Limit of one attempt.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
    /// Node running the current attempt.
    pub node_id: Option<String>,
    /// Until when that node owns it.
    pub lease_until: Option<DateTime<Utc>>,
    /// An operator asked to cancel it.
    pub cancel_requested: bool,
    /// Idempotency key given at enqueue.
    pub idempotency_key: Option<String>,
    /// JSON result of a successful run.
    pub result: Option<Value>,
    /// Error of the last failed attempt.
    pub error: Option<String>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// Start of the current or last attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// A queued run not started by then ends `expired`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Progress the task last reported, 0 to 100.
    pub progress: Option<u8>,
    /// What the task said with its progress ("district 7 of 19").
    pub progress_message: Option<String>,
    /// The stage the task last reported ("searching_web").
    pub stage: Option<String>,
    /// The state the task saved for its next attempt.
    pub checkpoint: Option<Value>,
    /// Where the finished run is POSTed as JSON.
    pub callback_url: Option<String>,
    /// Earlier attempts and other events (only filled by `run`, not by listings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<RunEvent>,
}

impl Run {
    /// `2/3` while attempts remain to be made, the attempts used once finished.
    pub fn attempts_text(&self) -> String {
        format!("{}/{}", self.attempt, self.max_attempts)
    }
}

/// What happened to a run, besides its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEventKind {
    /// An attempt failed and a retry was scheduled.
    Retried,
    /// An attempt failed for good (the run's final error).
    Failed,
    /// An attempt ran past its timeout.
    TimedOut,
    /// The task asked to be run again later without using up an attempt.
    Snoozed,
    /// Its node stopped renewing the lease; the attempt was taken back.
    Recovered,
    /// Released to the queue at shutdown without counting the attempt.
    Released,
    /// An operator queued it again (`runs retry`).
    ManualRetry,
    /// An operator cancelled it.
    Cancelled,
}

impl RunEventKind {
    /// Every kind.
    pub const ALL: [RunEventKind; 8] = [
        RunEventKind::Retried,
        RunEventKind::Failed,
        RunEventKind::TimedOut,
        RunEventKind::Snoozed,
        RunEventKind::Recovered,
        RunEventKind::Released,
        RunEventKind::ManualRetry,
        RunEventKind::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEventKind::Retried => "retried",
            RunEventKind::Failed => "failed",
            RunEventKind::TimedOut => "timed_out",
            RunEventKind::Snoozed => "snoozed",
            RunEventKind::Recovered => "recovered",
            RunEventKind::Released => "released",
            RunEventKind::ManualRetry => "manual_retry",
            RunEventKind::Cancelled => "cancelled",
        }
    }
}

names!(RunEventKind, "run event");

/// One entry of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEvent {
    /// The attempt it concerns.
    pub attempt: u32,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: RunEventKind,
    /// The error or note.
    pub message: Option<String>,
    /// The node involved.
    pub node_id: Option<String>,
}

/// Which runs to list: every field narrows the selection.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only these statuses (any of them).
    pub status: Vec<RunStatus>,
    /// Only this task.
    pub task: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// Only runs of the job with this name.
    pub job: Option<String>,
    /// Only runs of the job with this id.
    pub job_id: Option<i64>,
    /// Only runs carrying every one of these tags.
    pub tags: Vec<(String, String)>,
    /// Only runs enqueued at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only runs enqueued before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Page number, from 1.
    pub page: u64,
    /// Runs per page (newest first); 0 means the default, 50.
    pub page_size: u64,
}

/// A filter's instant, given as RFC 3339 or as an age before `now` (`1h`: an hour
/// ago), as the CLI's flags and the HTTP API's query parameters take it. The error says
/// what to write instead.
pub(crate) fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = crate::schedule::parse_duration(s).map_err(|e| {
        format!(
            "`{}` is neither an RFC 3339 time nor an age such as `1h` or `7d` ({e})",
            crate::error::clip(s)
        )
    })?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| format!("`{}` is too long ago", crate::error::clip(s)))
}

impl RunFilter {
    /// The largest page size accepted.
    pub const MAX_PAGE_SIZE: u64 = 10_000;

    /// Every run, newest first, first page of 50.
    pub fn new() -> Self {
        RunFilter::default()
    }
    /// Only this status (may be given several times: any of them).
    pub fn status(mut self, s: RunStatus) -> Self {
        self.status.push(s);
        self
    }
    /// Only this task.
    pub fn task(mut self, t: impl Into<String>) -> Self {
        self.task = Some(t.into());
        self
    }
    /// Only this queue.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Only runs of this job.
    pub fn job(mut self, name: impl Into<String>) -> Self {
        self.job = Some(name.into());
        self
    }
    /// Only runs carrying this tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
    /// Only runs enqueued at or after `t`.
    pub fn created_after(mut self, t: DateTime<Utc>) -> Self {
        self.created_after = Some(t);
        self
    }
    /// Only runs enqueued before `t`.
    pub fn created_before(mut self, t: DateTime<Utc>) -> Self {
        self.created_before = Some(t);
        self
    }
    /// Which page (from 1) of how many runs.
    pub fn page(mut self, page: u64, page_size: u64) -> Self {
        self.page = page;
        self.page_size = page_size;
        self
    }
    /// The page size in effect.
    pub(crate) fn effective_page_size(&self) -> u64 {
        if self.page_size == 0 {
            50
        } else {
            self.page_size
        }
    }
    /// The page in effect.
    pub(crate) fn effective_page(&self) -> u64 {
        self.page.max(1)
    }
}

/// One page of runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<Run>,
    /// How many runs match the filter in all.
    pub total: u64,
    /// This page's number, from 1.
    pub page: u64,
    /// Runs per page.
    pub page_size: u64,
}

/// What became of one nominal slot of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotOutcome {
    /// A run was fired for it.
    Ran,
    /// A run was fired for it late, under `misfire = "catch_up"`.
    CaughtUp,
    /// It was missed and covered by the run of a later slot (`misfire = "run_once"`).
    Coalesced,
    /// It passed without a run (see the reason).
    Skipped,
}

impl SlotOutcome {
    /// Every outcome.
    pub const ALL: [SlotOutcome; 4] = [
        SlotOutcome::Ran,
        SlotOutcome::CaughtUp,
        SlotOutcome::Coalesced,
        SlotOutcome::Skipped,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotOutcome::Ran => "ran",
            SlotOutcome::CaughtUp => "caught_up",
            SlotOutcome::Coalesced => "coalesced",
            SlotOutcome::Skipped => "skipped",
        }
    }
}

names!(SlotOutcome, "slot outcome");

/// Why a slot was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// `max_instances` runs of the job were active (`overlap = "skip"`).
    Overlap,
    /// The job was paused at that time.
    Paused,
    /// No node ran it in time (`misfire = "skip"`, or beyond `max_catch_up`).
    Misfire,
}

impl SkipReason {
    /// Every reason.
    pub const ALL: [SkipReason; 3] = [SkipReason::Overlap, SkipReason::Paused, SkipReason::Misfire];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Overlap => "overlap",
            SkipReason::Paused => "paused",
            SkipReason::Misfire => "misfire",
        }
    }
}

names!(SkipReason, "skip reason");

/// One nominal slot of a job and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSlot {
    /// The slot's nominal time.
    pub scheduled_for: DateTime<Utc>,
    /// What became of it.
    pub outcome: SlotOutcome,
    /// The run that ran or covered it.
    pub run_id: Option<i64>,
    /// Why it was skipped.
    pub reason: Option<SkipReason>,
}

/// A queue with its limits and load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// Runs of the queue allowed to run at once across all nodes.
    pub concurrency: Option<u32>,
    /// At most this many starts...
    pub rate_limit: Option<u32>,
    /// ...in any window this long.
    #[serde(rename = "rate_window_ms", serialize_with = "ser_opt_ms")]
    pub rate_window: Option<Duration>,
    /// No new runs start while paused.
    pub paused: bool,
    /// Runs waiting (due or not).
    pub queued: u64,
    /// Runs running.
    pub running: u64,
}

fn ser_opt_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ms(d, s),
        None => s.serialize_none(),
    }
}

/// A node that runs or ran the scheduler against this database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// Unique id.
    pub id: String,
    /// What operators call it: `[scheduler] node_name` or `KAIROS_NODE_NAME`, else
    /// `<hostname>:<pid>`. Not necessarily unique.
    pub name: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// kairos version.
    pub version: String,
    /// Worker slots.
    pub max_workers: u32,
    /// `running`, `stopped` (shut down), or `dead` (declared dead by another node after
    /// it missed its heartbeats; its runs were taken back).
    pub status: String,
    /// Running and heard from within the default heartbeat timeout (10s), on the
    /// database's clock.
    pub alive: bool,
    /// Claims no new runs while paused.
    pub paused: bool,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// Last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Runs it is running now.
    pub running: u64,
}

/// A task as nodes published it, for tools without the application's code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskInfo {
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Effective priority.
    pub priority: i32,
    /// Effective retries.
    pub max_retries: u32,
    /// Effective base backoff.
    #[serde(rename = "retry_delay_ms", serialize_with = "ser_ms")]
    pub retry_delay: Duration,
    /// Effective timeout.
    #[serde(rename = "timeout_ms", serialize_with = "ser_ms")]
    pub timeout: Duration,
    /// Instance limit.
    pub max_instances: Option<u32>,
    /// Default policy of jobs of this task.
    pub job_policy: JobPolicy,
    /// JSON Schema of its params.
    pub params_schema: Value,
    /// Where it is defined.
    pub location: String,
}

/// Numbers about runs, for a dashboard or a health check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// When these were computed.
    pub at: DateTime<Utc>,
    /// Runs of each status (every status listed, zeros included).
    pub counts: BTreeMap<RunStatus, u64>,
    /// Runs running now.
    pub running: u64,
    /// Runs waiting now.
    pub queued: u64,
    /// Each queue's waiting and running runs.
    pub queues: Vec<QueueInfo>,
    /// Runs that finished in the last minute.
    pub completed_last_minute: u64,
    /// Runs that finished in the last hour.
    pub completed_last_hour: u64,
    /// Average finished runs per minute over the last hour.
    pub per_minute_last_hour: f64,
    /// Share of runs finished in the last hour that succeeded (0 to 1; `null` when none
    /// finished).
    pub completion_rate: Option<f64>,
    /// Share of runs finished in the last hour that failed or timed out.
    pub failure_rate: Option<f64>,
    /// Per task, over the last hour.
    pub tasks: Vec<TaskStats>,
}

/// One task's recent runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStats {
    /// Task name.
    pub task: String,
    /// Runs that finished in the last hour.
    pub finished: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed or timed out (the rest were cancelled or expired).
    pub failed: u64,
    /// Mean duration of their last attempts.
    pub mean_duration_ms: Option<u64>,
    /// 95th percentile of those durations.
    pub p95_duration_ms: Option<u64>,
}

/// When a queued run should start and finish, from the runs ahead of it in its queue,
/// the capacity that serves the queue and its task's mean duration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEstimate {
    /// Queued runs a claim takes before this one.
    pub ahead: u64,
    /// Estimated start.
    pub start: DateTime<Utc>,
    /// Estimated end (`null` when the task has no recent duration to go by).
    pub completion: Option<DateTime<Utc>>,
    /// Why it will not start until somebody acts, if so: its queue is paused, every
    /// live node is paused, or no node is alive. The times above then count from now.
    pub held: Option<String>,
}

/// Whether kairos is working: the database answers and some node beat recently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// True when everything below is fine.
    pub healthy: bool,
    /// The database answered.
    pub database: bool,
    /// Nodes whose heartbeat is fresh.
    pub live_workers: u64,
    /// The newest heartbeat of a running node; when none is running, the last beat
    /// of any (when the last node stopped or died). `None`: no node ever ran.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// What is wrong, in words.
    pub reasons: Vec<String>,
    /// What is worth knowing though it is not wrong: every live node is paused (an
    /// operator's choice, so still healthy), say.
    pub warnings: Vec<String>,
}

impl Health {
    /// The report when the database cannot even be opened.
    pub(crate) fn unreachable(why: &crate::store::StoreError) -> Health {
        // A database without kairos's tables, or with some missing, did answer.
        let answered = !why.is_connection()
            || matches!(
                why,
                crate::store::StoreError::NotInitialised { .. }
                    | crate::store::StoreError::Damaged { .. }
            );
        let reason = if answered {
            format!("the database cannot be used: {why}")
        } else {
            format!("the database does not answer: {why}")
        };
        Health {
            healthy: false,
            database: answered,
            live_workers: 0,
            last_heartbeat: None,
            reasons: vec![reason],
            warnings: Vec::new(),
        }
    }
}

/// A line a task wrote to its run's log (`ctx.log`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLog {
    /// Its id: lines are ordered by it; `--follow` continues after the last one seen.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// The attempt that wrote it.
    pub attempt: u32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// How much it matters.
    pub level: crate::context::LogLevel,
    /// The text.
    pub message: String,
}
