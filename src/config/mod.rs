//! `jobs.toml`: the configuration model, loading with `file:line:column` errors, and the
//! resolution of the task registry plus the config into job specs and task policies.
//!
//! This module owns everything about the file:
//!
//! - `model`: the parsed, validated model ([`Config`], [`TaskOverride`], [`JobEntry`]).
//! - `parse`: the parser that builds it from the span-preserving TOML tree. Every cron
//!   expression, time zone and duration is checked here, with the schedule crate's
//!   messages, so a bad file fails at load time rather than when a job first fires.
//! - `resolve` ([`Config::resolve`]): checks the config against the [`Registry`] (unknown
//!   tasks, with a "did you mean" suggestion; job names clashing with a task's own job)
//!   and merges config > macro > `[scheduler]` defaults into [`JobSpec`]s and
//!   [`TaskPolicy`]s.
//!
//! Every error that concerns a place in the file is a [`ConfigError::Invalid`] naming
//! the file, the 1-based line and column of the offending key or value, what is wrong
//! and how to fix it:
//!
//! ```text
//! jobs.toml:12:8: unknown task `sync_emial`; did you mean `sync_emails`? registered tasks: daily_report, sync_emails
//! ```
//!
//! The file format:
//!
//! ```toml
//! [scheduler]
//! database_url = "sqlite://kairos.db"
//! max_workers = 16
//! default_timeout = "30m"
//! max_retries = 0
//! retry_delay = "10s"
//! timezone = "UTC"          # default zone of cron jobs
//! shutdown_grace = "30s"
//! connect_timeout = "5s"    # how long connecting to the database may take
//! lease = "60s"             # a claimed run stays owned this long without a renewal
//! heartbeat_interval = "2s" # how often a node beats and renews its leases
//! heartbeat_timeout = "10s" # a node silent this long is dead; its runs are taken back
//! node_name = "worker-1"    # how this node is listed (KAIROS_NODE_NAME wins; else host:pid)
//!
//! [retention]               # how long finished runs are kept (default: forever)
//! succeeded = "7d"          # also failed, timed_out, cancelled, expired
//! failed = "30d"
//! every = "10m"             # how often a node prunes
//! nodes = "7d"              # how long nodes that stopped or died stay listed (default 7d)
//!
//! [webhooks]                # POSTs of finished runs to their callback_url
//! secret = "s3cret"         # signs each delivery (X-Kairos-Signature); or KAIROS_WEBHOOK_SECRET
//! timeout = "10s"           # limit of one delivery attempt
//! max_attempts = 5          # deliveries tried at most (the first included)
//! retry_delay = "1s"        # wait after the first failure, doubling after each further one
//!
//! [queues.mail]             # limits of a queue, held across all nodes
//! concurrency = 1           # its runs one at a time (priority, then due time)
//! rate_limit = "100/1m"     # at most 100 starts in any one-minute window
//!
//! [tasks.sync_emails]       # overrides of a registered task's #[kairos::task] values
//! schedule = "*/5 * * * *"  # or interval = "15m" (not both)
//! timezone = "Europe/Paris"
//! enabled = false           # the task's own job does not fire (enqueued runs still run)
//! max_instances = 1
//! max_retries = 3
//! retry_delay = "1m"
//! timeout = "5m"
//! priority = 5
//! queue = "mail"
//! misfire = "catch_up"      # skip | run_once (default) | catch_up
//! max_catch_up = 10         # with catch_up: at most this many missed slots run
//! misfire_grace = "30s"     # a slot found later than this is missed
//! overlap = "queue"         # skip (default) | queue | replace, at max_instances
//! dst = "debian"            # debian (default) | skip | both
//!
//! [[jobs]]                  # extra schedules of a registered task
//! name = "report_eu"        # required, unique across all jobs
//! task = "daily_report"
//! schedule = "0 7 * * MON-FRI"  # exactly one of schedule / interval / at (RFC 3339)
//! timezone = "Europe/Berlin"
//! params = { region = "eu" }  # checked against the task's parameters
//! enabled = true
//! priority = 2
//! misfire = "skip"          # and the other policy keys of [tasks.*]
//! ```

mod model;
mod parse;
mod resolve;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::job::Defaults;
use crate::job::{JobSpec, TaskPolicy};
use crate::task::Registry;

pub use model::{
    HttpConfig, JobEntry, Located, PolicyKeys, QueueConfig, RateLimit, Retention, TaskOverride,
    Trigger, WebhookConfig,
};

/// Why `jobs.toml` was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is read but wrong at a place.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A problem not tied to one place in the file (e.g. an invalid schedule on a task
    /// registered by hand).
    #[error("{0}")]
    Other(String),
}

/// A 1-based line and column (in characters) in `jobs.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

impl Pos {
    /// The position of byte `offset` in `text` (clamped to the text, rounded down to a
    /// character boundary).
    pub fn of_offset(text: &str, offset: usize) -> Pos {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The `[scheduler]` table, minus the defaults that go to [`Config::defaults`].
#[derive(Debug, Clone, Default)]
pub struct SchedulerConfig {
    /// Database URL (`database_url`).
    pub database_url: Option<String>,
    /// Runs executing at once on a node (`max_workers`, at least 1).
    pub max_workers: Option<usize>,
    /// How long shutdown waits for running runs (`shutdown_grace`).
    pub shutdown_grace: Option<std::time::Duration>,
    /// How long connecting to the database may take (`connect_timeout`).
    pub connect_timeout: Option<std::time::Duration>,
    /// How long a claimed run stays owned without a renewal (`lease`).
    pub lease: Option<std::time::Duration>,
    /// How often a node beats its heartbeat and renews its leases
    /// (`heartbeat_interval`).
    pub heartbeat_interval: Option<std::time::Duration>,
    /// After how long without a heartbeat a node is declared dead
    /// (`heartbeat_timeout`).
    pub heartbeat_timeout: Option<std::time::Duration>,
    /// The name this node shows under in `kairos nodes list` (`node_name`);
    /// `KAIROS_NODE_NAME` wins over it.
    pub node_name: Option<String>,
}

/// The shortest lease a node accepts: it renews every third of it.
pub(crate) const MIN_LEASE: Duration = Duration::from_secs(3);
/// The shortest heartbeat interval a node accepts.
pub(crate) const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);

/// What is wrong with a lease, if anything.
pub(crate) fn lease_problem(lease: Duration) -> Option<String> {
    (lease < MIN_LEASE).then(|| {
        format!(
            "lease = {}: a lease is renewed every third of it, so one shorter than 3s may run \
             out under a live node; use at least 3s",
            crate::schedule::format_duration(lease)
        )
    })
}

/// What is wrong with a heartbeat interval, if anything.
pub(crate) fn heartbeat_interval_problem(interval: Duration) -> Option<String> {
    (interval < MIN_HEARTBEAT_INTERVAL).then(|| {
        format!(
            "heartbeat_interval = {}: use at least {}",
            crate::schedule::format_duration(interval),
            crate::schedule::format_duration(MIN_HEARTBEAT_INTERVAL)
        )
    })
}

/// What is wrong with a heartbeat timeout given the interval, if anything: a node
/// must miss at least three heartbeats before it counts as dead.
pub(crate) fn heartbeat_timeout_problem(timeout: Duration, interval: Duration) -> Option<String> {
    (timeout < interval * 3).then(|| {
        format!(
            "heartbeat_timeout = {} with heartbeat_interval = {}: a node would be declared dead \
             after missing fewer than three heartbeats; use a timeout of at least {}",
            crate::schedule::format_duration(timeout),
            crate::schedule::format_duration(interval),
            crate::schedule::format_duration(interval * 3)
        )
    })
}

/// Longest node name accepted, in characters.
pub const MAX_NODE_NAME: usize = 100;

/// What is wrong with a node name, if anything: it must be non-empty, at most
/// [`MAX_NODE_NAME`] characters, without surrounding spaces or control characters (it
/// is printed in tables and typed on command lines).
pub(crate) fn node_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("the name is empty; write e.g. `worker-1`".into());
    }
    // Before the spaces check, which echoes the name as it is.
    if let Some(problem) = control_character_problem(name) {
        return Some(problem);
    }
    if name.trim() != name {
        return Some(format!(
            "`{name}` has leading or trailing spaces; write `{}`",
            name.trim()
        ));
    }
    let len = name.chars().count();
    if len > MAX_NODE_NAME {
        return Some(format!(
            "the name is {len} characters long; use at most {MAX_NODE_NAME}"
        ));
    }
    None
}

/// What is wrong with a name that holds a control character, or an invisible one that
/// reorders or hides text, naming the first one and where it is. Node and job names are
/// printed in tables, logs and one-line errors, where a newline, tab or escape sequence
/// would break the line or forge another, and a right-to-left override (U+202E) or a
/// zero-width space would make one name look like another.
pub(crate) fn control_character_problem(name: &str) -> Option<String> {
    let (at, c) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() || invisible(c))?;
    let code = format!("U+{:04X}", u32::from(c));
    let what = match c {
        '\n' => format!("a control character, a newline ({code})"),
        '\r' => format!("a control character, a carriage return ({code})"),
        '\t' => format!("a control character, a tab ({code})"),
        '\u{1b}' => format!("a control character, an escape ({code})"),
        c if c.is_control() => format!("a control character, {code}"),
        _ => format!("an invisible character that hides or reorders text, {code}"),
    };
    Some(format!(
        "`{}` holds {what}, at character {}, which is not allowed; use letters, digits and \
         punctuation",
        crate::error::clip(&name.escape_debug().to_string()),
        at + 1
    ))
}

/// Unicode format characters that change how the text around them shows without
/// showing themselves: zero-width spaces and joiners, direction marks, embeddings,
/// overrides and isolates, word joiners and invisible operators, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

/// The shortest interval a job may have: each firing is a stored run, and cron's
/// finest resolution is the second too.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most runs one node may execute at once (`max_workers`).
pub const MAX_WORKERS: usize = 100_000;

/// Most missed slots a job with `misfire = "catch_up"` may run at once
/// (`max_catch_up`).
pub const MAX_CATCH_UP: u32 = 100_000;

/// What is wrong with a job interval shorter than [`MIN_INTERVAL`], if it is; each
/// place that takes one adds how to write it there.
pub(crate) fn short_interval(d: std::time::Duration) -> Option<String> {
    (d < MIN_INTERVAL).then(|| {
        format!(
            "{} is shorter than a second, the finest a job fires at (each firing is a stored run)",
            crate::schedule::format_duration(d)
        )
    })
}

/// Longest job name accepted, in characters.
pub const MAX_JOB_NAME: usize = 200;

/// What is wrong with a job name, if anything: 1 to [`MAX_JOB_NAME`] characters,
/// without surrounding spaces, control or invisible characters.
pub(crate) fn job_name_problem(name: &str) -> Option<String> {
    if let Some(problem) = control_character_problem(name) {
        return Some(problem);
    }
    let len = name.chars().count();
    if name.trim().is_empty() || len > MAX_JOB_NAME || name.trim() != name {
        let what = if name.trim().is_empty() {
            "is empty".to_string()
        } else if len > MAX_JOB_NAME {
            format!("is {len} characters long")
        } else {
            format!("`{name}` has leading or trailing spaces")
        };
        return Some(format!(
            "{what}; a job name is 1 to {MAX_JOB_NAME} characters, without leading or \
             trailing spaces"
        ));
    }
    // In an address (`/api/v1/jobs/{name}`), clients resolve these as path steps.
    if name == "." || name == ".." {
        return Some(format!(
            "`{name}` cannot be a job name: in the HTTP API's addresses it would be read as \
             a step up the path; use letters, digits or other characters too"
        ));
    }
    None
}

/// A parsed and validated `jobs.toml`. [`Config::default()`] means "no file".
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `[scheduler]`.
    pub scheduler: SchedulerConfig,
    /// Scheduler-wide defaults: `[scheduler]` `default_timeout`, `max_retries`,
    /// `retry_delay` and `timezone` over [`Defaults::default()`].
    pub defaults: Defaults,
    /// `[tasks.<name>]` overrides, by task name.
    pub tasks: BTreeMap<String, TaskOverride>,
    /// `[[jobs]]` entries, in file order.
    pub jobs: Vec<JobEntry>,
    /// `[queues.<name>]` limits, by queue name.
    pub queues: BTreeMap<String, QueueConfig>,
    /// `[retention]`: how long finished runs are kept.
    pub retention: Retention,
    /// `[webhooks]`: signing, timeout and retries of run callbacks.
    pub webhooks: WebhookConfig,
    /// `[http]`: the token of `kairos serve`.
    pub http: HttpConfig,
    /// The file name used in errors; `None` when the config did not come from a file.
    pub file: Option<String>,
}

impl Config {
    /// Reads and parses a file; errors name the file as `path` displays.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates the text of a `jobs.toml`; `file` names it in errors.
    ///
    /// Checks syntax, keys, value types, cron expressions, time zones, durations and
    /// `[[jobs]]` name uniqueness. What needs the task registry is checked by
    /// [`Config::resolve`].
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        parse::parse(text, file)
    }

    /// Job specs (from the macro, `[tasks.*]` and `[[jobs]]`, sorted by name) and the
    /// policy of every registered task, checked against the registry.
    ///
    /// Precedence is `[tasks.<name>]` > `#[kairos::task]` > [`Config::defaults`]. A
    /// task's own job is named after the task and exists when the task has a cron
    /// `schedule` or an `interval` from either source (a config `schedule` replaces a
    /// macro `interval` and vice versa).
    #[doc(hidden)]
    pub fn resolve(
        &self,
        registry: &Registry,
    ) -> Result<(Vec<JobSpec>, HashMap<String, TaskPolicy>), ConfigError> {
        resolve::resolve(self, registry)
    }

    /// The file name used in errors (`jobs.toml` when there is none).
    fn file_name(&self) -> &str {
        self.file.as_deref().unwrap_or("jobs.toml")
    }

    /// An [`ConfigError::Invalid`] at `pos` in this config's file.
    fn invalid(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        invalid(self.file_name(), pos, message)
    }
}

fn invalid(file: &str, pos: Pos, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

pub(crate) use crate::suggest::{did_you_mean, list_names};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_name_that_is_a_path_step_is_refused() {
        for name in [".", ".."] {
            let problem = job_name_problem(name).expect("refused");
            assert!(
                problem.starts_with(&format!("`{name}` cannot be a job name")),
                "{problem}"
            );
        }
        for name in ["...", "a.b", ".hidden", "nightly report"] {
            assert_eq!(job_name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn pos_counts_lines_and_characters() {
        let text = "a\nbé = 1\n";
        assert_eq!(Pos::of_offset(text, 0), Pos { line: 1, column: 1 });
        assert_eq!(Pos::of_offset(text, 2), Pos { line: 2, column: 1 });
        // "é" (bytes 3..5) is two bytes but one column: the space after it is column 3.
        assert_eq!(Pos::of_offset(text, 5), Pos { line: 2, column: 3 });
        // An offset inside "é" rounds down to its start.
        assert_eq!(Pos::of_offset(text, 4), Pos { line: 2, column: 2 });
        assert_eq!(Pos::of_offset(text, 100), Pos { line: 3, column: 1 });
    }
}
