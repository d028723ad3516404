//! The parsed model of `jobs.toml`: [`TaskOverride`] (`[tasks.<name>]`), [`JobEntry`]
//! (`[[jobs]]`) and [`Trigger`], each value carrying the [`Pos`] that resolution needs
//! to point back into the file. Built by the `parse` module; read by `resolve`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Pos;
use crate::schedule::Tz;

/// A value and where it is written in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Where the value (or, for names of tables, the key) starts.
    pub pos: Pos,
}

/// When a job declared in the config fires, as written (the zone of a cron expression
/// is bound by [`Config::resolve`](super::Config::resolve)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Trigger {
    /// `schedule = "<cron expression>"` (already validated).
    Cron(String),
    /// `interval = "15m"` (never zero).
    Every(Duration),
    /// `at = 2025-06-01T09:00:00Z` (a TOML offset date-time or an RFC 3339 string).
    Once(DateTime<Utc>),
}

/// A `[tasks.<name>]` table: overrides of a registered task's `#[kairos::task]` values.
/// `None` leaves the macro's value (or the scheduler default) in place.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct TaskOverride {
    /// Where the task's name is written in the `[tasks.<name>]` header.
    pub pos: Pos,
    /// `schedule` (cron) or `interval`: replaces the macro's schedule of either kind.
    pub trigger: Option<Located<Trigger>>,
    /// `timezone` of the cron schedule.
    pub timezone: Option<Located<Tz>>,
    /// `enabled = false` keeps the task's own job from firing (enqueued runs still run).
    pub enabled: Option<bool>,
    /// `max_instances` (at least 1).
    pub max_instances: Option<u32>,
    /// `max_retries`.
    pub max_retries: Option<u32>,
    /// `retry_delay`.
    pub retry_delay: Option<Duration>,
    /// `timeout` (never zero).
    pub timeout: Option<Duration>,
    /// `priority` (lower runs first).
    pub priority: Option<i32>,
    /// `queue`.
    pub queue: Option<String>,
}

/// A `[[jobs]]` entry: an extra schedule of a registered task.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobEntry {
    /// Where the entry starts (its `[[jobs]]` header).
    pub pos: Pos,
    /// `name`, unique across all jobs.
    pub name: Located<String>,
    /// `task`, the registered task it runs.
    pub task: Located<String>,
    /// Exactly one of `schedule`, `interval` or `at`.
    pub trigger: Located<Trigger>,
    /// `timezone` of a cron `schedule`; `None` uses the scheduler default.
    pub timezone: Option<Located<Tz>>,
    /// `params`, a JSON object (empty when not set).
    pub params: Value,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `priority` of the runs it fires; `None` uses the task's.
    pub priority: Option<i32>,
}
