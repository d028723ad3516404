//! The parsed model of `jobs.toml`: [`TaskOverride`] (`[tasks.<name>]`), [`JobEntry`]
//! (`[[jobs]]`) and [`Trigger`], each value carrying the [`Pos`] that resolution needs
//! to point back into the file. Built by the `parse` module; read by `resolve`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::Pos;
use crate::schedule::{DstPolicy, Tz};
use crate::task::{Misfire, Overlap};

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
    /// Misfire, overlap and daylight-saving policy of the task's own job (and default
    /// of its `[[jobs]]`).
    pub policy: PolicyKeys,
    /// `callback_url`: where the runs of the task's own job are POSTed when finished.
    pub callback_url: Option<Located<String>>,
}

/// The job-policy keys shared by `[tasks.<name>]` and `[[jobs]]`; `None` keeps the
/// value from the level below.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PolicyKeys {
    /// `misfire = "skip" | "run_once" | "catch_up"`.
    pub misfire: Option<Misfire>,
    /// `max_catch_up` (at least 1).
    pub max_catch_up: Option<Located<u32>>,
    /// `misfire_grace = "30s"`.
    pub misfire_grace: Option<Duration>,
    /// `overlap = "skip" | "queue" | "replace"`.
    pub overlap: Option<Located<Overlap>>,
    /// `dst = "debian" | "skip" | "both"` (cron schedules only).
    pub dst: Option<Located<DstPolicy>>,
}

/// The `[retention]` table: how long finished runs are kept, per final status, before
/// a node prunes them (with their history, logs and webhook deliveries), and how long
/// nodes that ended stay listed. A status left out is kept forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Retention {
    /// `succeeded = "7d"`.
    pub succeeded: Option<Duration>,
    /// `failed = "30d"`.
    pub failed: Option<Duration>,
    /// `timed_out = "30d"`.
    pub timed_out: Option<Duration>,
    /// `cancelled = "7d"`.
    pub cancelled: Option<Duration>,
    /// `expired = "1d"`.
    pub expired: Option<Duration>,
    /// `every = "10m"`: how often a node prunes (default 10 minutes).
    pub every: Option<Duration>,
    /// `nodes = "7d"`: how long a node that stopped or was declared dead stays listed
    /// (`kairos nodes list`) after its last heartbeat (default 7 days). Unlike runs,
    /// node records are always pruned: every start of a node adds one.
    pub nodes: Option<Duration>,
}

/// How long an ended node stays listed when `[retention] nodes` says nothing.
const NODES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Retention {
    /// How long a node that stopped or was declared dead stays listed.
    pub fn nodes_kept(&self) -> Duration {
        self.nodes.unwrap_or(NODES_KEPT)
    }

    /// The kept age of each status that has one.
    pub fn ages(&self) -> Vec<(crate::RunStatus, Duration)> {
        use crate::RunStatus as S;
        [
            (S::Succeeded, self.succeeded),
            (S::Failed, self.failed),
            (S::TimedOut, self.timed_out),
            (S::Cancelled, self.cancelled),
            (S::Expired, self.expired),
        ]
        .into_iter()
        .filter_map(|(s, d)| d.map(|d| (s, d)))
        .collect()
    }
}

/// The `[webhooks]` table: how finished runs are POSTed to their `callback_url` (see
/// [`crate::webhook`]). `None` keeps the default. The same shape holds the
/// [`SchedulerBuilder`](crate::SchedulerBuilder)'s `webhook_*` settings, which win over
/// the file.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// `secret = "..."`: signs each delivery (`X-Kairos-Signature`); unsigned without
    /// one. `KAIROS_WEBHOOK_SECRET` in the environment wins over the file.
    pub secret: Option<String>,
    /// `timeout = "10s"`: limit of one delivery attempt, connecting included.
    pub timeout: Option<Duration>,
    /// `max_attempts = 5`: deliveries tried at most, the first included.
    pub max_attempts: Option<u32>,
    /// `retry_delay = "1s"`: the wait after the first failed delivery, doubling after each
    /// further one.
    pub retry_delay: Option<Duration>,
}

// By hand: the secret must not reach logs through `{:?}`.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// `[http]`: settings of `kairos serve`.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// `token = "..."`: the bearer token mutating endpoints require. `--token-file`,
    /// `--token` and `KAIROS_ADMIN_TOKEN` win over the file.
    pub token: Option<String>,
}

// By hand: the token must not reach logs through `{:?}`.
impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A `[queues.<name>]` table: limits of one queue, enforced across all nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct QueueConfig {
    /// `concurrency = N`: runs of the queue running at once (1: one at a time).
    pub concurrency: Option<u32>,
    /// `rate_limit = "100/1m"`: at most this many starts in any such window.
    pub rate_limit: Option<RateLimit>,
}

/// At most `count` starts in any window of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Starts allowed per window (at least 1).
    pub count: u32,
    /// The window (longer than zero).
    pub window: Duration,
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
    /// Where `params` is written; `None` when the entry has none.
    pub params_pos: Option<Pos>,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `priority` of the runs it fires; `None` uses the task's.
    pub priority: Option<i32>,
    /// Misfire, overlap and daylight-saving policy (over the task's).
    pub policy: PolicyKeys,
    /// `callback_url`: where the job's finished runs are POSTed.
    pub callback_url: Option<String>,
}
