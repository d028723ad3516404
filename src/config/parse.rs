//! The parser that builds a [`Config`] from toml's span-preserving tree ([`DeTable`]).
//!
//! Walking the tree by hand (rather than deriving `Deserialize`) keeps the span of every
//! key and value, so each error points at the offending token and can say how to fix
//! it: unknown keys list the valid ones with a "did you mean", type errors show an
//! example, and cron expressions, zones and durations are checked here with the
//! schedule crate's messages.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::model::{JobEntry, Located, PolicyKeys, QueueConfig, RateLimit, TaskOverride, Trigger};
use super::{Config, ConfigError, Pos, did_you_mean, invalid, list_names};
use crate::schedule::{self, CronSchedule, Tz};

/// Valid keys of a table with an example line for each, used in messages.
type Keys = &'static [(&'static str, &'static str)];

const TOP_KEYS: Keys = &[
    ("scheduler", "[scheduler]"),
    ("queues", "[queues.<queue name>]"),
    ("retention", "[retention]"),
    ("webhooks", "[webhooks]"),
    ("http", "[http]"),
    ("tasks", "[tasks.<task name>]"),
    ("jobs", "[[jobs]]"),
];

const SCHEDULER_KEYS: Keys = &[
    ("database_url", "database_url = \"sqlite://kairos.db\""),
    ("max_workers", "max_workers = 16"),
    ("default_timeout", "default_timeout = \"30m\""),
    ("max_retries", "max_retries = 3"),
    ("retry_delay", "retry_delay = \"10s\""),
    ("timezone", "timezone = \"UTC\""),
    ("shutdown_grace", "shutdown_grace = \"30s\""),
    ("connect_timeout", "connect_timeout = \"5s\""),
    ("lease", "lease = \"60s\""),
    ("heartbeat_interval", "heartbeat_interval = \"2s\""),
    ("heartbeat_timeout", "heartbeat_timeout = \"10s\""),
    ("node_name", "node_name = \"worker-1\""),
];

const RETENTION_KEYS: Keys = &[
    ("succeeded", "succeeded = \"7d\""),
    ("failed", "failed = \"30d\""),
    ("timed_out", "timed_out = \"30d\""),
    ("cancelled", "cancelled = \"7d\""),
    ("expired", "expired = \"1d\""),
    ("every", "every = \"10m\""),
    ("nodes", "nodes = \"7d\""),
];

const WEBHOOK_KEYS: Keys = &[
    ("secret", "secret = \"a long random string\""),
    ("timeout", "timeout = \"10s\""),
    ("max_attempts", "max_attempts = 5"),
    ("retry_delay", "retry_delay = \"1s\""),
];

const HTTP_KEYS: Keys = &[("token", "token = \"a long random string\"")];

const QUEUE_KEYS: Keys = &[
    ("concurrency", "concurrency = 1"),
    ("rate_limit", "rate_limit = \"100/1m\""),
];

/// The job-policy keys, valid in `[tasks.<name>]` and in `[[jobs]]`.
const POLICY_KEYS: [(&str, &str); 5] = [
    ("misfire", "misfire = \"skip\""),
    ("max_catch_up", "max_catch_up = 10"),
    ("misfire_grace", "misfire_grace = \"30s\""),
    ("overlap", "overlap = \"queue\""),
    ("dst", "dst = \"debian\""),
];

const TASK_KEYS: Keys = &[
    ("schedule", "schedule = \"*/5 * * * *\""),
    ("interval", "interval = \"15m\""),
    ("timezone", "timezone = \"Europe/Paris\""),
    ("enabled", "enabled = false"),
    ("max_instances", "max_instances = 1"),
    ("max_retries", "max_retries = 3"),
    ("retry_delay", "retry_delay = \"1m\""),
    ("timeout", "timeout = \"5m\""),
    ("priority", "priority = 5"),
    ("queue", "queue = \"mail\""),
    (
        "callback_url",
        "callback_url = \"https://example.com/hooks/kairos\"",
    ),
    POLICY_KEYS[0],
    POLICY_KEYS[1],
    POLICY_KEYS[2],
    POLICY_KEYS[3],
    POLICY_KEYS[4],
];

const JOB_KEYS: Keys = &[
    ("name", "name = \"report_eu\""),
    ("task", "task = \"daily_report\""),
    ("schedule", "schedule = \"0 7 * * MON-FRI\""),
    ("interval", "interval = \"15m\""),
    ("at", "at = 2025-06-01T09:00:00Z"),
    ("timezone", "timezone = \"Europe/Berlin\""),
    ("params", "params = { region = \"eu\" }"),
    ("enabled", "enabled = true"),
    ("priority", "priority = 2"),
    (
        "callback_url",
        "callback_url = \"https://example.com/hooks/kairos\"",
    ),
    POLICY_KEYS[0],
    POLICY_KEYS[1],
    POLICY_KEYS[2],
    POLICY_KEYS[3],
    POLICY_KEYS[4],
];

const CRON_HINT: &str = "write 5 fields `minute hour day-of-month month day-of-week` such as \
    `0 7 * * MON-FRI`, 6 fields with seconds first, or one of @hourly, @daily, @weekly, \
    @monthly, @yearly";

/// The text being parsed, to turn spans into errors.
struct Cx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Cx<'_> {
    fn pos(&self, span: &Range<usize>) -> Pos {
        Pos::of_offset(self.text, span.start)
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        invalid(self.file, self.pos(span), message)
    }
}

/// One key of a table: its name, and the spans of the key and of the value.
struct Entry<'a, 'i> {
    key: &'a str,
    key_span: Range<usize>,
    value: &'a Spanned<DeValue<'i>>,
}

impl Entry<'_, '_> {
    fn span(&self) -> Range<usize> {
        self.value.span()
    }
}

/// The entries of `table` in file order, refusing keys not in `valid`.
/// `table_name` names the table in messages (`None` for the document root).
fn entries<'a, 'i>(
    cx: &Cx<'_>,
    table: &'a DeTable<'i>,
    valid: Keys,
    table_name: Option<&str>,
) -> Result<Vec<Entry<'a, 'i>>, ConfigError> {
    let mut out: Vec<Entry<'a, 'i>> = table
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref().as_ref(),
            key_span: k.span(),
            value: v,
        })
        .collect();
    out.sort_by_key(|e| e.key_span.start);
    for e in &out {
        if !valid.iter().any(|(k, _)| *k == e.key) {
            let names = valid.iter().map(|(k, _)| *k);
            let hint = did_you_mean(e.key, names.clone());
            let sep = if hint.is_empty() { ";" } else { "" };
            let message = match table_name {
                None => format!(
                    "unknown top-level key `{}`{hint}{sep} a jobs.toml holds only {}",
                    e.key,
                    valid
                        .iter()
                        .map(|(_, ex)| *ex)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                Some(t) => format!(
                    "unknown key `{}` in {t}{hint}{sep} valid keys: {}",
                    e.key,
                    list_names(names, usize::MAX),
                ),
            };
            return Err(cx.err(&e.key_span, message));
        }
    }
    Ok(out)
}

/// The example line of `key` in `keys`.
fn example(keys: Keys, key: &str) -> &'static str {
    keys.iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, ex)| *ex)
}

/// A parsing context for the keys of one table.
struct TableCx<'a> {
    cx: &'a Cx<'a>,
    /// e.g. `[tasks.sync_emails]`.
    name: String,
    keys: Keys,
}

impl TableCx<'_> {
    fn what(&self, e: &Entry<'_, '_>) -> String {
        format!("`{}` in {}", e.key, self.name)
    }

    fn type_err(&self, e: &Entry<'_, '_>, expected: &str) -> ConfigError {
        self.cx.err(
            &e.span(),
            format!(
                "{} must be {expected}, found {}; write e.g. `{}`",
                self.what(e),
                article(e.value.get_ref().type_str()),
                example(self.keys, e.key),
            ),
        )
    }

    fn string<'v>(&self, e: &'v Entry<'_, '_>) -> Result<&'v str, ConfigError> {
        match e.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.type_err(e, "a string")),
        }
    }

    fn non_empty(&self, e: &Entry<'_, '_>) -> Result<String, ConfigError> {
        let s = self.string(e)?;
        if s.trim().is_empty() {
            return Err(self.cx.err(
                &e.span(),
                format!(
                    "{} is empty; write e.g. `{}`",
                    self.what(e),
                    example(self.keys, e.key)
                ),
            ));
        }
        if s.trim() != s {
            return Err(self.cx.err(
                &e.span(),
                format!(
                    "{} has leading or trailing spaces; write `\"{}\"`",
                    self.what(e),
                    s.trim()
                ),
            ));
        }
        Ok(s.to_string())
    }

    fn boolean(&self, e: &Entry<'_, '_>) -> Result<bool, ConfigError> {
        match e.value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.type_err(e, "`true` or `false`")),
        }
    }

    /// An integer in `min..=max`; `range_hint` explains the bounds.
    fn int(
        &self,
        e: &Entry<'_, '_>,
        min: i64,
        max: i64,
        range_hint: &str,
    ) -> Result<i64, ConfigError> {
        let DeValue::Integer(i) = e.value.get_ref() else {
            return Err(self.type_err(e, "an integer"));
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.cx.err(
                &e.span(),
                format!("{} is {i}, out of range: {range_hint}", self.what(e)),
            )),
        }
    }

    fn u32(&self, e: &Entry<'_, '_>, min: u32, range_hint: &str) -> Result<u32, ConfigError> {
        self.int(e, min.into(), u32::MAX.into(), range_hint)
            .map(|n| n as u32)
    }

    fn max_retries(&self, e: &Entry<'_, '_>) -> Result<u32, ConfigError> {
        let max = crate::ops::MAX_RETRIES;
        self.int(e, 0, max.into(), &format!("use 0 to {max}"))
            .map(|n| n as u32)
    }

    fn priority(&self, e: &Entry<'_, '_>) -> Result<i32, ConfigError> {
        self.int(
            e,
            i32::MIN.into(),
            i32::MAX.into(),
            "use a 32-bit integer (lower runs first)",
        )
        .map(|n| n as i32)
    }

    fn duration(&self, e: &Entry<'_, '_>, allow_zero: bool) -> Result<Duration, ConfigError> {
        let DeValue::String(s) = e.value.get_ref() else {
            return Err(self.type_err(e, "a duration string"));
        };
        let d = schedule::parse_duration(s)
            .map_err(|err| self.cx.err(&e.span(), format!("{}: {err}", self.what(e))))?;
        if d.is_zero() && !allow_zero {
            return Err(self.cx.err(
                &e.span(),
                format!(
                    "{} must be greater than zero; write e.g. `{}`",
                    self.what(e),
                    example(self.keys, e.key)
                ),
            ));
        }
        Ok(d)
    }

    /// A job's `interval`: a duration of at least [`MIN_INTERVAL`](super::MIN_INTERVAL).
    fn interval(&self, e: &Entry<'_, '_>) -> Result<Duration, ConfigError> {
        let d = self.duration(e, false)?;
        if let Some(problem) = super::short_interval(d) {
            return Err(self.cx.err(
                &e.span(),
                format!(
                    "{} of {problem}; write at least `interval = \"1s\"`",
                    self.what(e)
                ),
            ));
        }
        Ok(d)
    }

    fn timezone(&self, e: &Entry<'_, '_>) -> Result<Located<Tz>, ConfigError> {
        let name = self.string(e)?;
        let tz = schedule::parse_timezone(name).map_err(|err| {
            let zones = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
            self.cx.err(
                &e.span(),
                format!("{}: {err}{}", self.what(e), did_you_mean(name, zones)),
            )
        })?;
        Ok(Located {
            value: tz,
            pos: self.cx.pos(&e.span()),
        })
    }

    fn cron(&self, e: &Entry<'_, '_>) -> Result<String, ConfigError> {
        let expr = self.string(e)?;
        // The zone does not affect validity; resolution binds the real one.
        CronSchedule::parse(expr, Tz::UTC).map_err(|err| {
            self.cx.err(
                &e.span(),
                format!(
                    "{}: {}; {CRON_HINT}",
                    self.what(e),
                    err.to_string().trim_end_matches('.')
                ),
            )
        })?;
        Ok(expr.to_string())
    }

    fn at(&self, e: &Entry<'_, '_>) -> Result<DateTime<Utc>, ConfigError> {
        let hint = "write an RFC 3339 time with an offset, e.g. `at = 2025-06-01T09:00:00Z` or \
                    `at = 2025-06-01T09:00:00+02:00`";
        let text = match e.value.get_ref() {
            DeValue::Datetime(dt)
                if dt.date.is_some() && dt.time.is_some() && dt.offset.is_some() =>
            {
                dt.to_string()
            }
            DeValue::Datetime(dt) => {
                let lacks = if dt.date.is_some() && dt.time.is_some() {
                    "has no UTC offset"
                } else {
                    "is not a full date and time"
                };
                return Err(self.cx.err(
                    &e.span(),
                    format!("{} is `{dt}`, which {lacks}; {hint}", self.what(e)),
                ));
            }
            DeValue::String(s) => s.to_string(),
            _ => return Err(self.type_err(e, "a date-time")),
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| {
                self.cx.err(
                    &e.span(),
                    format!(
                        "{} is not a valid time `{text}` ({err}); {hint}",
                        self.what(e)
                    ),
                )
            })
    }

    fn params(&self, e: &Entry<'_, '_>) -> Result<Value, ConfigError> {
        if !matches!(e.value.get_ref(), DeValue::Table(_)) {
            return Err(self.type_err(e, "a table (its keys become the run's JSON params)"));
        }
        to_json(self.cx, e.value)
    }

    /// An `http://` or `https://` URL.
    fn url(&self, e: &Entry<'_, '_>) -> Result<String, ConfigError> {
        let s = self.non_empty(e)?;
        crate::ops::check_url(&s).map_err(|why| {
            self.cx.err(
                &e.span(),
                format!(
                    "{} {why}; write e.g. `{}`",
                    self.what(e),
                    example(self.keys, e.key)
                ),
            )
        })?;
        Ok(s)
    }

    /// One of the names `T` accepts (`FromStr` lists them), with a "did you mean".
    fn named<T: std::str::FromStr<Err = String>>(
        &self,
        e: &Entry<'_, '_>,
        valid: &[&str],
    ) -> Result<T, ConfigError> {
        let s = self.string(e)?;
        s.parse::<T>().map_err(|_| {
            self.cx.err(
                &e.span(),
                format!(
                    "{} is `{s}`, not one of: {}{}",
                    self.what(e),
                    valid.join(", "),
                    did_you_mean(s, valid.iter().copied())
                ),
            )
        })
    }

    /// `"100/1m"`: at most 100 starts in any one-minute window.
    fn rate_limit(&self, e: &Entry<'_, '_>) -> Result<RateLimit, ConfigError> {
        let s = self.string(e)?;
        let hint =
            "write `count/window` such as `100/1m` (at most 100 starts in any minute) or `5/1s`";
        let bad = |why: String| {
            self.cx.err(
                &e.span(),
                format!("{} is `{s}`: {why}; {hint}", self.what(e)),
            )
        };
        let (count, window) = s
            .split_once('/')
            .ok_or_else(|| bad("it has no `/`".into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                bad(format!(
                    "`{}` is not a whole number from 1 to {}",
                    count.trim(),
                    u32::MAX
                ))
            })?;
        let window = schedule::parse_duration(window.trim()).map_err(|err| bad(err.to_string()))?;
        if window.is_zero() {
            return Err(bad("the window must be longer than zero".into()));
        }
        Ok(RateLimit { count, window })
    }

    /// Reads one of the job-policy keys into `keys`; false if `e` is not one.
    fn policy_key(&self, e: &Entry<'_, '_>, keys: &mut PolicyKeys) -> Result<bool, ConfigError> {
        match e.key {
            "misfire" => keys.misfire = Some(self.named(e, &["skip", "run_once", "catch_up"])?),
            "max_catch_up" => {
                let n = self.int(
                    e,
                    1,
                    super::MAX_CATCH_UP.into(),
                    "use 1 to 100000 (or misfire = \"skip\" to run none)",
                )? as u32;
                keys.max_catch_up = Some(self.located(e, n));
            }
            "misfire_grace" => keys.misfire_grace = Some(self.duration(e, true)?),
            "overlap" => {
                let o = self.named(e, &["skip", "queue", "replace"])?;
                keys.overlap = Some(self.located(e, o));
            }
            "dst" => {
                let d = self.named(e, &["debian", "skip", "both"])?;
                keys.dst = Some(self.located(e, d));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn located<T>(&self, e: &Entry<'_, '_>, value: T) -> Located<T> {
        Located {
            value,
            pos: self.cx.pos(&e.span()),
        }
    }
}

/// "an integer", "a string", ...
fn article(type_name: &str) -> String {
    let a = if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{a} {type_name}")
}

/// A TOML value as JSON (date-times become their RFC 3339 text).
fn to_json(cx: &Cx<'_>, v: &Spanned<DeValue<'_>>) -> Result<Value, ConfigError> {
    Ok(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::from(n),
            Err(_) => {
                return Err(cx.err(
                    &v.span(),
                    format!("integer {i} does not fit in 64 bits; write it as a string"),
                ));
            }
        },
        DeValue::Float(f) => {
            let n: Option<f64> = f.as_str().parse().ok();
            match n.and_then(serde_json::Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    return Err(cx.err(
                        &v.span(),
                        format!("float {f} cannot be a JSON param (JSON has no NaN or infinity); write it as a string"),
                    ));
                }
            }
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(dt) => Value::String(dt.to_string()),
        DeValue::Array(a) => {
            Value::Array(a.iter().map(|x| to_json(cx, x)).collect::<Result<_, _>>()?)
        }
        DeValue::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, x) in t {
                map.insert(k.get_ref().to_string(), to_json(cx, x)?);
            }
            Value::Object(map)
        }
    })
}

/// Parses and validates a whole document.
pub(super) fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let cx = Cx { text, file };
    let doc = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim_end();
        // What the line at the error holds tells which hint fits: a second
        // `[tasks.x]` is merged into the first, a second `[jobs]` is an array entry.
        let line = text[..span.start.min(text.len())]
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .to_string()
            + text[span.start.min(text.len())..]
                .split('\n')
                .next()
                .unwrap_or_default();
        let hint = if !message.contains("duplicate key") {
            ""
        } else if line.trim_start().starts_with("[jobs") {
            "; a key or table may appear only once (write `[[jobs]]` for each job)"
        } else if line.trim_start().starts_with('[') {
            "; a table may appear only once: put all its keys under one header"
        } else {
            "; a key may appear only once in a table: keep one"
        };
        cx.err(&span, format!("invalid TOML: {message}{hint}"))
    })?;
    let mut config = Config {
        file: Some(file.to_string()),
        ..Config::default()
    };
    for e in entries(&cx, doc.get_ref(), TOP_KEYS, None)? {
        match e.key {
            "scheduler" => parse_scheduler(&cx, &e, &mut config)?,
            "tasks" => parse_tasks(&cx, &e, &mut config)?,
            "queues" => parse_queues(&cx, &e, &mut config)?,
            "retention" => parse_retention(&cx, &e, &mut config)?,
            "webhooks" => parse_webhooks(&cx, &e, &mut config)?,
            "http" => parse_http(&cx, &e, &mut config)?,
            "jobs" => parse_jobs(&cx, &e, &mut config)?,
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    Ok(config)
}

fn parse_scheduler(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`scheduler` must be a table; write `[scheduler]` on its own line, followed by keys \
             such as `max_workers = 16`",
        ));
    };
    let t = TableCx {
        cx,
        name: "[scheduler]".to_string(),
        keys: SCHEDULER_KEYS,
    };
    let mut timeout_span = None;
    for e in entries(cx, table, SCHEDULER_KEYS, Some("[scheduler]"))? {
        match e.key {
            "database_url" => {
                let url = t.non_empty(&e)?;
                let known = ["sqlite:", "postgres:", "postgresql:"];
                if !known.iter().any(|k| url.starts_with(k)) {
                    return Err(cx.err(
                        &e.span(),
                        format!(
                            "`database_url` in [scheduler]: `{}` names no supported database; \
                             write `sqlite://path/to/file.db` or `postgres://user:pass@host/db`",
                            crate::store::redact_url(&url)
                        ),
                    ));
                }
                config.scheduler.database_url = Some(url);
            }
            "max_workers" => {
                config.scheduler.max_workers = Some(t.int(
                    &e,
                    1,
                    super::MAX_WORKERS as i64,
                    "use 1 to 100000 (runs executing at once on a node)",
                )? as usize)
            }
            "default_timeout" => config.defaults.timeout = t.duration(&e, false)?,
            "max_retries" => config.defaults.max_retries = t.max_retries(&e)?,
            "retry_delay" => config.defaults.retry_delay = t.duration(&e, true)?,
            "timezone" => config.defaults.timezone = t.timezone(&e)?.value,
            "shutdown_grace" => config.scheduler.shutdown_grace = Some(t.duration(&e, true)?),
            "connect_timeout" => config.scheduler.connect_timeout = Some(t.duration(&e, false)?),
            "lease" => {
                let lease = t.duration(&e, false)?;
                if let Some(problem) = super::lease_problem(lease) {
                    return Err(cx.err(&e.span(), format!("[scheduler] {problem}")));
                }
                config.scheduler.lease = Some(lease);
            }
            "heartbeat_interval" => {
                let interval = t.duration(&e, false)?;
                if let Some(problem) = super::heartbeat_interval_problem(interval) {
                    return Err(cx.err(&e.span(), format!("[scheduler] {problem}")));
                }
                config.scheduler.heartbeat_interval = Some(interval);
            }
            "heartbeat_timeout" => {
                config.scheduler.heartbeat_timeout = Some(t.duration(&e, false)?);
                timeout_span = Some(e.span());
            }
            "node_name" => {
                let name = t.non_empty(&e)?;
                if let Some(problem) = super::node_name_problem(&name) {
                    return Err(cx.err(&e.span(), format!("[scheduler] node_name: {problem}")));
                }
                config.scheduler.node_name = Some(name);
            }
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    // Checked here when the file sets both; otherwise (the builder may set the
    // interval) when the node is built.
    if let (Some(span), Some(timeout), Some(interval)) = (
        timeout_span,
        config.scheduler.heartbeat_timeout,
        config.scheduler.heartbeat_interval,
    ) && let Some(problem) = super::heartbeat_timeout_problem(timeout, interval)
    {
        return Err(cx.err(&span, format!("[scheduler] {problem}")));
    }
    Ok(())
}

fn parse_tasks(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`tasks` must hold one table per task; write `[tasks.<task name>]` followed by the \
             values to override, e.g. `max_retries = 3`",
        ));
    };
    let mut names: Vec<_> = table.iter().collect();
    names.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in names {
        let name: &str = key.get_ref().as_ref();
        let DeValue::Table(body) = value.get_ref() else {
            return Err(cx.err(
                &value.span(),
                format!(
                    "`tasks.{name}` must be a table of overrides; write `[tasks.{name}]` followed \
                     by keys such as `max_retries = 3`"
                ),
            ));
        };
        let table_name = format!("[tasks.{name}]");
        let t = TableCx {
            cx,
            name: table_name.clone(),
            keys: TASK_KEYS,
        };
        let mut o = TaskOverride {
            pos: cx.pos(&key.span()),
            ..TaskOverride::default()
        };
        let mut trigger_key = "";
        for e in entries(cx, body, TASK_KEYS, Some(&table_name))? {
            match e.key {
                "schedule" | "interval" => {
                    if let Some(prev) = &o.trigger {
                        return Err(cx.err(
                            &e.key_span,
                            format!(
                                "{table_name} sets both `{trigger_key}` (at {}) and `{}`; keep one: \
                                 a cron `schedule` or a fixed `interval`",
                                prev.pos, e.key
                            ),
                        ));
                    }
                    let trigger = if e.key == "schedule" {
                        Trigger::Cron(t.cron(&e)?)
                    } else {
                        Trigger::Every(t.interval(&e)?)
                    };
                    trigger_key = e.key;
                    o.trigger = Some(t.located(&e, trigger));
                }
                "timezone" => o.timezone = Some(t.timezone(&e)?),
                "enabled" => o.enabled = Some(t.boolean(&e)?),
                "max_instances" => {
                    o.max_instances =
                        Some(t.u32(&e, 1, "use at least 1, or leave it out for no limit")?)
                }
                "max_retries" => o.max_retries = Some(t.max_retries(&e)?),
                "retry_delay" => o.retry_delay = Some(t.duration(&e, true)?),
                "timeout" => o.timeout = Some(t.duration(&e, false)?),
                "priority" => o.priority = Some(t.priority(&e)?),
                "queue" => {
                    let name = t.non_empty(&e)?;
                    if let Some(problem) = super::control_character_problem(&name) {
                        return Err(cx.err(&e.span(), format!("queue: the queue name {problem}")));
                    }
                    o.queue = Some(name);
                }
                "callback_url" => o.callback_url = Some(t.located(&e, t.url(&e)?)),
                _ if t.policy_key(&e, &mut o.policy)? => {}
                _ => unreachable!("entries() refuses other keys"),
            }
        }
        if let (
            Some(tz),
            Some(Located {
                value: Trigger::Every(_),
                ..
            }),
        ) = (&o.timezone, &o.trigger)
        {
            return Err(invalid(
                cx.file,
                tz.pos,
                format!(
                    "`timezone` in {table_name} only applies to a cron `schedule`, but this task runs \
                     on an `interval`; remove `timezone`"
                ),
            ));
        }
        config.tasks.insert(name.to_string(), o);
    }
    Ok(())
}

fn parse_retention(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`retention` must be a table; write `[retention]` on its own line, followed by ages \
             such as `succeeded = \"7d\"`",
        ));
    };
    let t = TableCx {
        cx,
        name: "[retention]".to_string(),
        keys: RETENTION_KEYS,
    };
    let r = &mut config.retention;
    for e in entries(cx, table, RETENTION_KEYS, Some("[retention]"))? {
        let d = Some(t.duration(&e, false)?);
        match e.key {
            "succeeded" => r.succeeded = d,
            "failed" => r.failed = d,
            "timed_out" => r.timed_out = d,
            "cancelled" => r.cancelled = d,
            "expired" => r.expired = d,
            "every" => r.every = d,
            "nodes" => r.nodes = d,
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    Ok(())
}

fn parse_webhooks(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`webhooks` must be a table; write `[webhooks]` on its own line, followed by keys \
             such as `timeout = \"10s\"`",
        ));
    };
    let t = TableCx {
        cx,
        name: "[webhooks]".to_string(),
        keys: WEBHOOK_KEYS,
    };
    let w = &mut config.webhooks;
    for e in entries(cx, table, WEBHOOK_KEYS, Some("[webhooks]"))? {
        match e.key {
            // Not trimmed or otherwise changed: the receiver must use the same bytes.
            "secret" => {
                if t.string(&e)?.is_empty() {
                    return Err(cx.err(
                        &e.span(),
                        "`secret` in [webhooks] is empty; write a long random string, or leave \
                         the key out to send deliveries unsigned",
                    ));
                }
                w.secret = Some(t.string(&e)?.to_string());
            }
            "timeout" => w.timeout = Some(t.duration(&e, false)?),
            "max_attempts" => {
                w.max_attempts = Some(t.int(
                    &e,
                    1,
                    crate::webhook::MAX_ATTEMPTS_LIMIT.into(),
                    &format!(
                        "use 1 (no retries) to {}",
                        crate::webhook::MAX_ATTEMPTS_LIMIT
                    ),
                )? as u32)
            }
            "retry_delay" => w.retry_delay = Some(t.duration(&e, true)?),
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    Ok(())
}

fn parse_http(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`http` must be a table; write `[http]` on its own line, followed by \
             `token = \"a long random string\"`",
        ));
    };
    let t = TableCx {
        cx,
        name: "[http]".to_string(),
        keys: HTTP_KEYS,
    };
    for e in entries(cx, table, HTTP_KEYS, Some("[http]"))? {
        match e.key {
            "token" => {
                let token = t.string(&e)?;
                if token.trim().is_empty() {
                    return Err(cx.err(
                        &e.span(),
                        "`token` in [http] is empty; write a long random string, or leave the \
                         key out to serve without one (loopback addresses only)",
                    ));
                }
                config.http.token = Some(token.to_string());
            }
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    Ok(())
}

fn parse_queues(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let DeValue::Table(table) = e.value.get_ref() else {
        return Err(cx.err(
            &e.span(),
            "`queues` must hold one table per queue; write `[queues.<queue name>]` followed by \
             its limits, e.g. `concurrency = 1`",
        ));
    };
    let mut names: Vec<_> = table.iter().collect();
    names.sort_by_key(|(k, _)| k.span().start);
    for (key, value) in names {
        let name: &str = key.get_ref().as_ref();
        let DeValue::Table(body) = value.get_ref() else {
            return Err(cx.err(
                &value.span(),
                format!(
                    "`queues.{name}` must be a table of limits; write `[queues.{name}]` followed \
                     by `concurrency = 1` or `rate_limit = \"100/1m\"`"
                ),
            ));
        };
        if name.trim().is_empty() {
            return Err(cx.err(&key.span(), "a queue name must not be empty"));
        }
        if let Some(problem) = super::control_character_problem(name) {
            return Err(cx.err(&key.span(), format!("the queue name {problem}")));
        }
        let table_name = format!("[queues.{name}]");
        let t = TableCx {
            cx,
            name: table_name.clone(),
            keys: QUEUE_KEYS,
        };
        let mut q = QueueConfig::default();
        for e in entries(cx, body, QUEUE_KEYS, Some(&table_name))? {
            match e.key {
                "concurrency" => {
                    q.concurrency = Some(t.u32(
                        &e,
                        1,
                        "use 1 to 4294967295 (1 runs the queue's runs one at a time), or leave it out for no limit",
                    )?)
                }
                "rate_limit" => q.rate_limit = Some(t.rate_limit(&e)?),
                _ => unreachable!("entries() refuses other keys"),
            }
        }
        config.queues.insert(name.to_string(), q);
    }
    Ok(())
}

fn parse_jobs(cx: &Cx<'_>, e: &Entry<'_, '_>, config: &mut Config) -> Result<(), ConfigError> {
    let not_array = "`jobs` must be an array of tables; write each job as a `[[jobs]]` section \
                     (note the double brackets) with `name`, `task` and a `schedule`";
    let DeValue::Array(items) = e.value.get_ref() else {
        return Err(cx.err(&e.span(), not_array));
    };
    let mut seen: HashMap<String, Pos> = HashMap::new();
    for item in items.iter() {
        let DeValue::Table(body) = item.get_ref() else {
            return Err(cx.err(&item.span(), not_array));
        };
        let job = parse_job(cx, &item.span(), body)?;
        if let Some(first) = seen.get(&job.name.value) {
            return Err(invalid(
                cx.file,
                job.name.pos,
                format!(
                    "job name `{}` is already used by the [[jobs]] entry at {first}; give each job \
                     a unique `name`",
                    job.name.value
                ),
            ));
        }
        seen.insert(job.name.value.clone(), job.name.pos);
        config.jobs.push(job);
    }
    Ok(())
}

fn parse_job(
    cx: &Cx<'_>,
    span: &Range<usize>,
    body: &DeTable<'_>,
) -> Result<JobEntry, ConfigError> {
    let t = TableCx {
        cx,
        name: "[[jobs]]".to_string(),
        keys: JOB_KEYS,
    };
    let mut name = None;
    let mut task = None;
    let mut trigger: Option<(&str, Located<Trigger>)> = None;
    let mut timezone = None;
    let mut params = Value::Object(serde_json::Map::new());
    let mut enabled = true;
    let mut priority = None;
    let mut params_pos = None;
    let mut policy = PolicyKeys::default();
    let mut callback_url = None;
    for e in entries(cx, body, JOB_KEYS, Some("[[jobs]]"))? {
        match e.key {
            "name" => {
                let value = t.non_empty(&e)?;
                if let Some(problem) = super::job_name_problem(&value) {
                    return Err(cx.err(&e.span(), format!("[[jobs]] name {problem}")));
                }
                name = Some(t.located(&e, value));
            }
            "task" => task = Some(t.located(&e, t.non_empty(&e)?)),
            "schedule" | "interval" | "at" => {
                if let Some((prev_key, prev)) = &trigger {
                    return Err(cx.err(
                        &e.key_span,
                        format!(
                            "this [[jobs]] entry sets both `{prev_key}` (at {}) and `{}`; keep \
                             exactly one of `schedule` (cron), `interval` or `at` (one-off)",
                            prev.pos, e.key
                        ),
                    ));
                }
                let value = match e.key {
                    "schedule" => Trigger::Cron(t.cron(&e)?),
                    "interval" => Trigger::Every(t.interval(&e)?),
                    _ => Trigger::Once(t.at(&e)?),
                };
                trigger = Some((e.key, t.located(&e, value)));
            }
            "timezone" => timezone = Some(t.timezone(&e)?),
            "params" => {
                params = t.params(&e)?;
                params_pos = Some(cx.pos(&e.span()));
            }
            "enabled" => enabled = t.boolean(&e)?,
            "priority" => priority = Some(t.priority(&e)?),
            "callback_url" => callback_url = Some(t.url(&e)?),
            _ if t.policy_key(&e, &mut policy)? => {}
            _ => unreachable!("entries() refuses other keys"),
        }
    }
    let missing =
        |key: &str, fix: &str| cx.err(span, format!("this [[jobs]] entry has no `{key}`; {fix}"));
    let name = name.ok_or_else(|| {
        missing(
            "name",
            "add `name = \"...\"`, a name unique across all jobs",
        )
    })?;
    let task = task.ok_or_else(|| missing("task", "add `task = \"<registered task name>\"`"))?;
    let (trigger_key, trigger) = trigger.ok_or_else(|| {
        missing(
            "schedule",
            "add one of `schedule = \"0 7 * * *\"` (cron), `interval = \"15m\"` or \
             `at = 2025-06-01T09:00:00Z` (one-off)",
        )
    })?;
    if let (Some(tz), false) = (&timezone, trigger_key == "schedule") {
        return Err(invalid(
            cx.file,
            tz.pos,
            format!(
                "`timezone` in [[jobs]] `{}` only applies to a cron `schedule`, but this job uses \
                 `{trigger_key}`; remove `timezone`",
                name.value
            ),
        ));
    }
    if let (Some(dst), false) = (&policy.dst, trigger_key == "schedule") {
        return Err(invalid(
            cx.file,
            dst.pos,
            format!(
                "`dst` in [[jobs]] `{}` only applies to a cron `schedule`, but this job uses \
                 `{trigger_key}`; remove `dst`",
                name.value
            ),
        ));
    }
    Ok(JobEntry {
        pos: cx.pos(span),
        name,
        task,
        trigger,
        timezone,
        params,
        params_pos,
        enabled,
        priority,
        policy,
        callback_url,
    })
}
