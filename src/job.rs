//! The desired state the runtime reconciles into the database: job specs (what should
//! fire, and when) and task policies (how runs of a task execute), resolved from the
//! macro's defaults, `jobs.toml` and the scheduler-wide defaults.

use std::time::Duration;

use serde_json::Value;

use crate::model::{JobPolicy, JobSource};
use crate::schedule::Schedule;

/// The queue of a task that names none.
pub const DEFAULT_QUEUE: &str = "default";

/// A job as declared: upserted by name into the jobs table at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Unique job name (a task's own schedule uses the task's name).
    pub name: String,
    /// The task it runs.
    pub task: String,
    /// When it fires.
    pub schedule: Schedule,
    /// Params passed to every run.
    pub params: Value,
    /// A disabled job stays in the table but never fires.
    pub enabled: bool,
    /// Priority of the runs it fires; `None` uses the task's.
    pub priority: Option<i32>,
    /// Misfire, overlap and grace.
    pub policy: JobPolicy,
    /// Where it was declared.
    pub source: JobSource,
    /// Where its finished runs are POSTed.
    pub callback_url: Option<String>,
}

impl JobSpec {
    /// An enabled job of `task` without params, with the default policies, declared
    /// through the API (the fields are public for everything else).
    pub fn new(name: impl Into<String>, task: impl Into<String>, schedule: Schedule) -> Self {
        JobSpec {
            name: name.into(),
            task: task.into(),
            schedule,
            params: Value::Object(Default::default()),
            enabled: true,
            priority: None,
            policy: JobPolicy::default(),
            source: JobSource::Api,
            callback_url: None,
        }
    }
}

/// How runs of one task execute, after every default and override is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPolicy {
    /// Runs of this task allowed at once (across all nodes).
    pub max_instances: Option<u32>,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Base delay of the exponential backoff.
    pub retry_delay: Duration,
    /// Limit of one attempt.
    pub timeout: Duration,
    /// Lower runs first.
    pub priority: i32,
    /// The queue its runs go to.
    pub queue: String,
    /// Default misfire/overlap policy of the task's jobs.
    pub job_policy: JobPolicy,
}

/// Scheduler-wide defaults for what a task leaves unset.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Default limit of one attempt.
    pub timeout: Duration,
    /// Default retries.
    pub max_retries: u32,
    /// Default base retry delay.
    pub retry_delay: Duration,
    /// Default time zone of cron jobs.
    pub timezone: crate::schedule::Tz,
    /// Default priority.
    pub priority: i32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: Duration::from_secs(30 * 60),
            max_retries: 0,
            retry_delay: Duration::from_secs(10),
            timezone: crate::schedule::Tz::UTC,
            priority: 0,
        }
    }
}

impl Defaults {
    /// The policy of a task this process does not know (runs of it fail as unknown).
    pub(crate) fn unknown_task_policy(&self) -> TaskPolicy {
        TaskPolicy {
            max_instances: None,
            max_retries: self.max_retries,
            retry_delay: self.retry_delay,
            timeout: self.timeout,
            priority: self.priority,
            queue: DEFAULT_QUEUE.to_string(),
            job_policy: JobPolicy::default(),
        }
    }
}
