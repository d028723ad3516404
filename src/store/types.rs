//! The store's public records: jobs and runs as the API and CLI see them, with real
//! times and enums instead of the raw columns.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::entity::{job, run};
use super::{StoreError, from_ms};

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
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
}

impl RunStatus {
    /// Every status, in life order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Cancelled,
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
        }
    }

    /// True once the run can no longer change.
    pub fn is_finished(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown run status `{s}`; use one of: {}",
                    RunStatus::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A persisted job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Task it runs.
    pub task: String,
    /// `cron`, `interval` or `once`.
    pub kind: String,
    /// Cron expression.
    pub cron: Option<String>,
    /// Zone of the cron expression.
    pub timezone: Option<String>,
    /// Interval in milliseconds.
    pub interval_ms: Option<i64>,
    /// Interval anchor or one-off instant.
    pub anchor_at: Option<DateTime<Utc>>,
    /// Params of each run.
    pub params: Value,
    /// False when disabled by configuration.
    pub enabled: bool,
    /// True when paused by an operator.
    pub paused: bool,
    /// Priority of its runs, if set on the job.
    pub priority: Option<i32>,
    /// `code`, `config` or `api`.
    pub source: String,
    /// Next slot; none when the schedule has no more.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Last slot that fired.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Change counter.
    pub version: i64,
}

impl Job {
    /// The schedule this row describes.
    pub fn schedule(&self) -> Result<crate::schedule::Schedule, StoreError> {
        use crate::schedule::{CronSchedule, Schedule, parse_timezone};
        let corrupt = |message: String| StoreError::Corrupt {
            table: "kairos_jobs",
            id: self.id.to_string(),
            message,
        };
        match self.kind.as_str() {
            "cron" => {
                let tz = parse_timezone(self.timezone.as_deref().unwrap_or("UTC"))
                    .map_err(|e| corrupt(e.to_string()))?;
                let expr = self
                    .cron
                    .as_deref()
                    .ok_or_else(|| corrupt("no cron".into()))?;
                Ok(Schedule::Cron(
                    CronSchedule::parse(expr, tz).map_err(|e| corrupt(e.to_string()))?,
                ))
            }
            "interval" => {
                let ms = self
                    .interval_ms
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| corrupt("no interval".into()))?;
                Ok(Schedule::Every(std::time::Duration::from_millis(ms as u64)))
            }
            "once" => Ok(Schedule::Once(
                self.anchor_at.ok_or_else(|| corrupt("no time".into()))?,
            )),
            other => Err(corrupt(format!("unknown kind `{other}`"))),
        }
    }

    /// A one-line description of the schedule.
    pub fn schedule_text(&self) -> String {
        match self.schedule() {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        }
    }
}

impl TryFrom<job::Model> for Job {
    type Error = StoreError;
    fn try_from(m: job::Model) -> Result<Self, StoreError> {
        let params = serde_json::from_str(&m.params).map_err(|e| StoreError::Corrupt {
            table: "kairos_jobs",
            id: m.id.to_string(),
            message: format!("params: {e}"),
        })?;
        Ok(Job {
            id: m.id,
            name: m.name,
            task: m.task,
            kind: m.kind,
            cron: m.cron,
            timezone: m.timezone,
            interval_ms: m.interval_ms,
            anchor_at: m.anchor_at.map(from_ms),
            params,
            enabled: m.enabled,
            paused: m.paused,
            priority: m.priority,
            source: m.source,
            next_run_at: m.next_run_at.map(from_ms),
            last_fired_at: m.last_fired_at.map(from_ms),
            version: m.version,
        })
    }
}

/// A persisted run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Row id.
    pub id: i64,
    /// Task name.
    pub task: String,
    /// The job that fired it.
    pub job_id: Option<i64>,
    /// The job's name, when listed with it.
    pub job: Option<String>,
    /// Params.
    pub params: Value,
    /// Status.
    pub status: RunStatus,
    /// Priority.
    pub priority: i32,
    /// Queue.
    pub queue: Option<String>,
    /// Earliest start of the next attempt.
    pub run_at: DateTime<Utc>,
    /// Nominal slot or requested start.
    pub scheduled_for: DateTime<Utc>,
    /// Attempts started.
    pub attempt: i32,
    /// Retries allowed.
    pub max_retries: i32,
    /// Limit of one attempt, ms.
    pub timeout_ms: i64,
    /// Owner node of the running attempt.
    pub node_id: Option<String>,
    /// Operator asked to cancel.
    pub cancel_requested: bool,
    /// JSON result.
    pub result: Option<Value>,
    /// Last error.
    pub error: Option<String>,
    /// Enqueue time.
    pub created_at: DateTime<Utc>,
    /// Start of the last attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// End of the run.
    pub finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<run::Model> for Run {
    type Error = StoreError;
    fn try_from(m: run::Model) -> Result<Self, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            table: "kairos_runs",
            id: m.id.to_string(),
            message,
        };
        let status = m.status.parse::<RunStatus>().map_err(corrupt)?;
        let params =
            serde_json::from_str(&m.params).map_err(|e| corrupt(format!("params: {e}")))?;
        let result = match &m.result {
            Some(r) => Some(serde_json::from_str(r).map_err(|e| corrupt(format!("result: {e}")))?),
            None => None,
        };
        Ok(Run {
            id: m.id,
            task: m.task,
            job_id: m.job_id,
            job: None,
            params,
            status,
            priority: m.priority,
            queue: m.queue,
            run_at: from_ms(m.run_at),
            scheduled_for: from_ms(m.scheduled_for),
            attempt: m.attempt,
            max_retries: m.max_retries,
            timeout_ms: m.timeout_ms,
            node_id: m.node_id,
            cancel_requested: m.cancel_requested,
            result,
            error: m.error,
            created_at: from_ms(m.created_at),
            started_at: m.started_at.map(from_ms),
            finished_at: m.finished_at.map(from_ms),
        })
    }
}

/// A run to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// Task name.
    pub task: String,
    /// Params (a JSON object).
    pub params: Value,
    /// Earliest start.
    pub run_at: DateTime<Utc>,
    /// Priority (lower first).
    pub priority: i32,
    /// Queue.
    pub queue: Option<String>,
    /// Retries allowed.
    pub max_retries: u32,
    /// Base backoff.
    pub retry_delay: std::time::Duration,
    /// Limit of one attempt.
    pub timeout: std::time::Duration,
}

/// A task as the nodes registered it, for tools that have no registry of their own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredTask {
    /// Task name.
    pub name: String,
    /// Effective priority.
    pub priority: i32,
    /// Effective retries.
    pub max_retries: i32,
    /// Effective base backoff, ms.
    pub retry_delay_ms: i64,
    /// Effective timeout, ms.
    pub timeout_ms: i64,
    /// Instance limit.
    pub max_instances: Option<i32>,
    /// Queue.
    pub queue: Option<String>,
    /// Where it is defined.
    pub location: String,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this task.
    pub task: Option<String>,
    /// Only this job.
    pub job_id: Option<i64>,
    /// At most this many (newest first); default 50.
    pub limit: Option<u64>,
}
