//! Tasks: the registered async functions, their defaults, the context a run sees,
//! and the registry that collects them from `#[kairos::task]` through `inventory`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

/// What a handler returns: the run's JSON result (if any) or why it failed.
pub type TaskOutcome = Result<Option<Value>, TaskError>;

/// The type-erased entry point the macro generates for each task.
pub type Handler = fn(TaskContext, Value) -> BoxFuture<'static, TaskOutcome>;

/// A task's failure callback, called once after its final attempt failed.
pub type FailureHook = fn(FailedRun) -> BoxFuture<'static, ()>;

/// Why a handler did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The run's params could not be turned into the function's arguments.
    /// Permanent: retrying would fail the same way.
    InvalidParams(String),
    /// The function returned an error (its `Display` text). Retried per policy.
    Failed(String),
    /// The task asked to be run again after this delay without using up an attempt
    /// (an upstream said "come back later"). See [`snooze`].
    Snooze(Duration),
}

impl TaskError {
    /// Whether retrying could change the outcome.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TaskError::InvalidParams(_))
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::InvalidParams(m) => write!(f, "invalid params: {m}"),
            TaskError::Failed(m) => f.write_str(m),
            TaskError::Snooze(d) => {
                write!(f, "snoozed for {}", kairos_schedule::format_duration(*d))
            }
        }
    }
}

impl std::error::Error for TaskError {}

/// Ends the current attempt and queues the run again after `delay`, without using up
/// an attempt: for an upstream that said "come back later". Return it as the task's
/// error (`return Err(kairos::snooze(Duration::from_secs(60)).into())` in a task
/// returning `anyhow::Result`). The snooze is recorded in the run's history.
pub fn snooze(delay: Duration) -> TaskError {
    TaskError::Snooze(delay)
}

/// What a job does with slots it missed (no node ran, or the job was paused) by more
/// than its `misfire_grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Misfire {
    /// Missed slots are skipped (recorded as `skipped`, reason `misfire` or `paused`).
    Skip,
    /// One run stands for all missed slots, stamped with the latest of them; the others
    /// are recorded as `coalesced` into it. The default.
    #[default]
    RunOnce,
    /// The missed slots run, oldest first, at most `max_catch_up` of them (the most
    /// recent ones when more were missed; the older ones are skipped).
    CatchUp,
}

impl Misfire {
    /// Every policy.
    pub const ALL: [Misfire; 3] = [Misfire::Skip, Misfire::RunOnce, Misfire::CatchUp];

    /// The name used in `jobs.toml`, the macro, the CLI and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "skip",
            Misfire::RunOnce => "run_once",
            Misfire::CatchUp => "catch_up",
        }
    }
}

/// What a job does when a slot comes while `max_instances` of its runs are already
/// queued or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overlap {
    /// The slot passes without a run (recorded as `skipped`, reason `overlap`). The
    /// default.
    #[default]
    Skip,
    /// The run is queued anyway and starts when an instance is free.
    Queue,
    /// The running runs of the job are cancelled, then the new one starts.
    Replace,
}

impl Overlap {
    /// Every policy.
    pub const ALL: [Overlap; 3] = [Overlap::Skip, Overlap::Queue, Overlap::Replace];

    /// The name used in `jobs.toml`, the macro, the CLI and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }
}

crate::model::names!(Misfire, "misfire policy");
crate::model::names!(Overlap, "overlap policy");

/// One parameter of a task function, as `#[kairos::task]` publishes it so params can be
/// checked where a run is enqueued, not only when it executes.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    /// The parameter's name: the key in the run's JSON params.
    pub name: &'static str,
    /// Its Rust type as written (`String`, `Option<u32>`).
    pub rust_type: &'static str,
    /// False for `Option<T>` parameters, which may be left out.
    pub required: bool,
    /// The JSON Schema of its values (`{}` when the type has none kairos knows).
    pub schema: fn() -> Value,
}

/// Checks a run's params against a task's parameters without running it.
pub type ParamsCheck = fn(&Value) -> Result<(), TaskError>;

/// A task as registered by `#[kairos::task]`: a handler plus its defaults.
///
/// Built by the macro in a `const` context, hence plain fields and fn pointers.
/// Every `Option` left `None` falls back to `jobs.toml`'s `[scheduler]` defaults.
#[derive(Clone, Copy)]
pub struct TaskDef {
    /// Unique task name (defaults to the function name).
    pub name: &'static str,
    /// Cron expression (5 or 6 fields, or a `@macro`), if the task is scheduled by cron.
    pub schedule: Option<&'static str>,
    /// IANA time zone for `schedule`.
    pub timezone: Option<&'static str>,
    /// Fixed interval, if the task is scheduled by interval.
    pub interval: Option<Duration>,
    /// How many runs of this task may run at once.
    pub max_instances: Option<u32>,
    /// How many times a failed run is retried.
    pub max_retries: Option<u32>,
    /// Base delay of the exponential retry backoff.
    pub retry_delay: Option<Duration>,
    /// How long one attempt may run before it is cancelled as `timed_out`.
    pub timeout: Option<Duration>,
    /// Lower runs first.
    pub priority: Option<i32>,
    /// Named queue the task's runs belong to.
    pub queue: Option<&'static str>,
    /// Called after the final attempt failed.
    pub on_failure: Option<FailureHook>,
    /// Missed-slot policy of the task's own job.
    pub misfire: Option<Misfire>,
    /// With `misfire = catch_up`, how many missed slots run at most.
    pub max_catch_up: Option<u32>,
    /// How late a slot may be found and still run as an ordinary (late) slot.
    pub misfire_grace: Option<Duration>,
    /// What the task's own job does when `max_instances` runs are already active.
    pub overlap: Option<Overlap>,
    /// How the task's own cron job treats daylight-saving gaps and overlaps.
    pub dst: Option<crate::schedule::DstPolicy>,
    /// The function's parameters (besides `TaskContext`), in order; `None` when
    /// unknown (a task registered by hand), so any JSON object is accepted.
    pub params: Option<&'static [ParamDef]>,
    /// Checks params exactly as the handler will read them; `None` when unknown.
    pub check_params: Option<ParamsCheck>,
    /// The generated entry point.
    pub handler: Handler,
    /// Where the task is defined (`file:line`), for duplicate-name reports.
    pub location: &'static str,
}

impl fmt::Debug for TaskDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskDef")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("timezone", &self.timezone)
            .field("interval", &self.interval)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl TaskDef {
    /// A task with only a name and a handler; every default comes from the scheduler.
    /// Useful for registering tasks by hand (tests, plugins) instead of with the macro.
    pub const fn new(name: &'static str, handler: Handler, location: &'static str) -> Self {
        TaskDef {
            name,
            schedule: None,
            timezone: None,
            interval: None,
            max_instances: None,
            max_retries: None,
            retry_delay: None,
            timeout: None,
            priority: None,
            queue: None,
            on_failure: None,
            misfire: None,
            max_catch_up: None,
            misfire_grace: None,
            overlap: None,
            dst: None,
            params: None,
            check_params: None,
            handler,
            location,
        }
    }
}

impl TaskDef {
    /// The JSON Schema of the task's params: an object with one property per parameter,
    /// `required` listing those that are not `Option`, and no other keys. A task
    /// registered by hand (no [`TaskDef::params`]) accepts any object.
    pub fn params_schema(&self) -> Value {
        let Some(params) = self.params else {
            return serde_json::json!({ "type": "object" });
        };
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        for p in params {
            let mut schema = (p.schema)();
            if let Value::Object(m) = &mut schema {
                m.insert("x-rust-type".into(), Value::from(p.rust_type));
            }
            properties.insert(p.name.to_string(), schema);
            if p.required {
                required.push(Value::from(p.name));
            }
        }
        serde_json::json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }
}

inventory::collect!(TaskDef);

/// What a failure callback learns about the run that failed for good.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FailedRun {
    /// The run's id.
    pub run_id: i64,
    /// The task's name.
    pub task: String,
    /// The job that fired the run, if any.
    pub job_id: Option<i64>,
    /// The attempt that failed last (1-based).
    pub attempt: u32,
    /// The final error text.
    pub error: String,
    /// The run's params.
    pub params: Value,
}

impl FailedRun {
    /// A failed run as the runtime reports it; useful to test `on_failure` functions.
    pub fn new(
        run_id: i64,
        task: impl Into<String>,
        job_id: Option<i64>,
        attempt: u32,
        error: impl Into<String>,
        params: Value,
    ) -> Self {
        FailedRun {
            run_id,
            task: task.into(),
            job_id,
            attempt,
            error: error.into(),
            params,
        }
    }
}

pub use crate::context::{LogLevel, TaskContext};

/// Two tasks registered under one name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "task name `{name}` is registered twice: at {first} and at {second}; give one of them another `name = \"...\"`"
)]
pub struct DuplicateTask {
    /// The name both use.
    pub name: String,
    /// Where the first is defined.
    pub first: String,
    /// Where the second is defined.
    pub second: String,
}

/// The tasks a node can run, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    tasks: HashMap<&'static str, TaskDef>,
}

impl Registry {
    /// Every task registered with `#[kairos::task]` in the program.
    pub fn from_inventory() -> Result<Self, DuplicateTask> {
        Self::from_tasks(inventory::iter::<TaskDef>.into_iter().copied())
    }

    /// A registry of exactly these tasks.
    pub fn from_tasks(tasks: impl IntoIterator<Item = TaskDef>) -> Result<Self, DuplicateTask> {
        let mut reg = Registry::default();
        for t in tasks {
            reg.insert(t)?;
        }
        Ok(reg)
    }

    /// Adds one task, refusing a second task of the same name.
    pub fn insert(&mut self, task: TaskDef) -> Result<(), DuplicateTask> {
        if let Some(prev) = self.tasks.get(task.name) {
            // Sort the two locations so the message does not depend on link order.
            let (a, b) = if prev.location <= task.location {
                (prev.location, task.location)
            } else {
                (task.location, prev.location)
            };
            return Err(DuplicateTask {
                name: task.name.to_string(),
                first: a.to_string(),
                second: b.to_string(),
            });
        }
        self.tasks.insert(task.name, task);
        Ok(())
    }

    /// The task of this name.
    pub fn get(&self, name: &str) -> Option<&TaskDef> {
        self.tasks.get(name)
    }

    /// All tasks, sorted by name.
    pub fn tasks(&self) -> Vec<&TaskDef> {
        let mut v: Vec<_> = self.tasks.values().collect();
        v.sort_by_key(|t| t.name);
        v
    }

    /// All task names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.tasks.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no task is registered.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// A JSON value's kind with an article ("an array"), for error messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The message of a panic's payload (a `&str` or a `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
        Box::pin(async { Ok(None) })
    }

    #[test]
    fn duplicate_names_are_refused_with_both_locations() {
        let err = Registry::from_tasks([
            TaskDef::new("sync", h, "src/b.rs:20"),
            TaskDef::new("other", h, "src/c.rs:1"),
            TaskDef::new("sync", h, "src/a.rs:10"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "sync");
        assert_eq!(
            (err.first.as_str(), err.second.as_str()),
            ("src/a.rs:10", "src/b.rs:20")
        );
        assert!(
            err.to_string()
                .contains("registered twice: at src/a.rs:10 and at src/b.rs:20")
        );
    }

    #[test]
    fn registry_lists_tasks_by_name() {
        let reg =
            Registry::from_tasks([TaskDef::new("b", h, "x"), TaskDef::new("a", h, "y")]).unwrap();
        assert_eq!(reg.names(), ["a", "b"]);
        assert_eq!(reg.get("a").map(|t| t.location), Some("y"));
        assert!(reg.get("c").is_none());
    }
}
