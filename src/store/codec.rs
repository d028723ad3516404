//! Column encodings, in both directions: instants and durations as milliseconds, JSON
//! as text, enums by name, schedules as their columns. Rows become the typed records of
//! [`crate::model`] here and nowhere else.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::Value;
use serde_json::Value as Json;

use super::StoreError;
use super::entity::{job, node, queue, run, task};
use crate::model::{
    DisabledReason, Job, JobPolicy, JobSource, NodeInfo, QueueInfo, Run, RunOrigin, RunStatus,
    TaskInfo,
};
use crate::schedule::{CronSchedule, DstPolicy, Schedule, parse_timezone};

/// Milliseconds since the epoch.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant `ms` milliseconds after the epoch (clamped to what chrono can hold).
pub(crate) fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(if ms < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A stored millisecond count as a duration (negative counts as zero).
pub(crate) fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A stored count as `u32` (negative as zero).
pub(crate) fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A `u32` for an INTEGER column (saturating).
pub(crate) fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Decodes `text` as `T` by name, or reports the row as corrupt.
fn parse<T: FromStr<Err = String>>(
    table: &'static str,
    id: impl ToString,
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt {
        table,
        id: id.to_string(),
        message: format!("{column}: {e}"),
    })
}

fn json(
    table: &'static str,
    id: impl ToString,
    column: &str,
    text: &str,
) -> Result<Json, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        id: id.to_string(),
        message: format!("{column}: {e}"),
    })
}

/// The columns a schedule is stored in: kind, cron, timezone, dst, interval_ms,
/// anchor_at.
pub(crate) fn schedule_values(s: &Schedule, anchor: DateTime<Utc>) -> [Value; 6] {
    match s {
        Schedule::Cron(c) => [
            Value::from("cron"),
            Value::from(Some(c.expr().to_string())),
            Value::from(Some(c.timezone().name().to_string())),
            Value::from(c.dst().as_str()),
            Value::from(None::<i64>),
            Value::from(None::<i64>),
        ],
        Schedule::Every(d) => [
            Value::from("interval"),
            Value::from(None::<String>),
            Value::from(None::<String>),
            Value::from(DstPolicy::Debian.as_str()),
            Value::from(Some(duration_ms(*d))),
            Value::from(Some(ms(anchor))),
        ],
        Schedule::Once(t) => [
            Value::from("once"),
            Value::from(None::<String>),
            Value::from(None::<String>),
            Value::from(DstPolicy::Debian.as_str()),
            Value::from(None::<i64>),
            Value::from(Some(ms(*t))),
        ],
    }
}

/// Parsed cron expressions by (expression, zone, dst): the planner decodes every due
/// job on every fire, and parsing is the expensive part of that.
static CRON_CACHE: Mutex<Option<HashMap<CronKey, CronSchedule>>> = Mutex::new(None);

/// Expression, zone name and DST policy.
type CronKey = (String, String, DstPolicy);

fn cron(expr: &str, tz: &str, dst: DstPolicy) -> Result<CronSchedule, String> {
    let key = (expr.to_string(), tz.to_string(), dst);
    if let Some(c) = CRON_CACHE
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned()))
    {
        return Ok(c);
    }
    let zone = parse_timezone(tz).map_err(|e| e.to_string())?;
    let c = CronSchedule::parse(expr, zone)
        .map_err(|e| e.to_string())?
        .with_dst(dst);
    if let Ok(mut m) = CRON_CACHE.lock() {
        let m = m.get_or_insert_with(HashMap::new);
        // Bounded: an application has a fixed set of expressions; this only guards
        // against a runaway number of API-created ones.
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(key, c.clone());
    }
    Ok(c)
}

impl TryFrom<job::Model> for Job {
    type Error = StoreError;
    fn try_from(m: job::Model) -> Result<Self, StoreError> {
        const T: &str = "kairos_jobs";
        let corrupt = |message: String| StoreError::Corrupt {
            table: T,
            id: m.id.to_string(),
            message,
        };
        let dst: DstPolicy = parse(T, m.id, "dst", &m.dst)?;
        let schedule = match m.kind.as_str() {
            "cron" => {
                let expr = m.cron.as_deref().ok_or_else(|| corrupt("no cron".into()))?;
                let tz = m.timezone.as_deref().unwrap_or("UTC");
                Schedule::Cron(cron(expr, tz, dst).map_err(corrupt)?)
            }
            "interval" => {
                let ms = m
                    .interval_ms
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| corrupt("no interval".into()))?;
                Schedule::Every(ms_duration(ms))
            }
            "once" => Schedule::Once(from_ms(
                m.anchor_at.ok_or_else(|| corrupt("no time".into()))?,
            )),
            other => return Err(corrupt(format!("unknown kind `{other}`"))),
        };
        let policy = JobPolicy {
            misfire: parse(T, m.id, "misfire", &m.misfire)?,
            max_catch_up: count(m.max_catch_up),
            misfire_grace: ms_duration(m.misfire_grace_ms),
            overlap: parse(T, m.id, "overlap", &m.overlap)?,
        };
        let next = m.next_run_at.map(from_ms);
        let firing = m.enabled && !m.paused;
        Ok(Job {
            id: m.id,
            task: m.task,
            anchor_at: match schedule {
                Schedule::Every(_) => m.anchor_at.map(from_ms),
                _ => None,
            },
            schedule,
            params: json(T, m.id, "params", &m.params)?,
            priority: m.priority,
            policy,
            enabled: m.enabled,
            disabled_reason: m
                .disabled_reason
                .as_deref()
                .map(|r| parse::<DisabledReason>(T, m.id, "disabled_reason", r))
                .transpose()?,
            paused: m.paused,
            source: parse::<JobSource>(T, m.id, "source", &m.source)?,
            callback_url: m.callback_url,
            // A paused or disabled job has no next run to show, whatever slot it
            // would resume from.
            next_run_at: next.filter(|_| firing),
            last_fired_at: m.last_fired_at.map(from_ms),
            created_at: from_ms(m.created_at),
            updated_at: from_ms(m.updated_at),
            version: m.version,
            due_at: next,
            paused_at: m.paused_at.map(from_ms),
            pause_windows: match m.pause_windows.as_deref() {
                Some(text) => serde_json::from_str::<Vec<(i64, i64)>>(text)
                    .map_err(|e| corrupt(format!("pause_windows: {e}")))?
                    .into_iter()
                    .map(|(a, b)| (from_ms(a), from_ms(b)))
                    .collect(),
                None => Vec::new(),
            },
            name: m.name,
        })
    }
}

impl TryFrom<run::Model> for Run {
    type Error = StoreError;
    fn try_from(m: run::Model) -> Result<Self, StoreError> {
        const T: &str = "kairos_runs";
        let tags: BTreeMap<String, String> = match &m.tags {
            Some(t) => serde_json::from_str(t).map_err(|e| StoreError::Corrupt {
                table: T,
                id: m.id.to_string(),
                message: format!("tags: {e}"),
            })?,
            None => BTreeMap::new(),
        };
        let max_retries = count(m.max_retries);
        Ok(Run {
            id: m.id,
            task: m.task,
            queue: m.queue,
            job_id: m.job_id,
            job: None,
            origin: parse::<RunOrigin>(T, m.id, "origin", &m.origin)?,
            params: json(T, m.id, "params", &m.params)?,
            tags,
            status: parse::<RunStatus>(T, m.id, "status", &m.status)?,
            priority: m.priority,
            run_at: from_ms(m.run_at),
            scheduled_for: from_ms(m.scheduled_for),
            attempt: count(m.attempt),
            max_attempts: max_retries.saturating_add(1),
            max_retries,
            retry_delay: ms_duration(m.retry_delay_ms),
            timeout: ms_duration(m.timeout_ms),
            node_id: m.node_id,
            lease_until: m.lease_until.map(from_ms),
            cancel_requested: m.cancel_requested,
            idempotency_key: m.idempotency_key,
            result: m
                .result
                .as_deref()
                .map(|r| json(T, m.id, "result", r))
                .transpose()?,
            error: m.error,
            created_at: from_ms(m.created_at),
            started_at: m.started_at.map(from_ms),
            finished_at: m.finished_at.map(from_ms),
            expires_at: m.expires_at.map(from_ms),
            progress: m.progress.map(|p| p.clamp(0, 100) as u8),
            progress_message: m.progress_message,
            stage: m.stage,
            checkpoint: m
                .checkpoint
                .as_deref()
                .map(|c| json(T, m.id, "checkpoint", c))
                .transpose()?,
            callback_url: m.callback_url,
            history: Vec::new(),
        })
    }
}

impl TryFrom<task::Model> for TaskInfo {
    type Error = StoreError;
    fn try_from(m: task::Model) -> Result<Self, StoreError> {
        const T: &str = "kairos_tasks";
        Ok(TaskInfo {
            queue: m.queue,
            priority: m.priority,
            max_retries: count(m.max_retries),
            retry_delay: ms_duration(m.retry_delay_ms),
            timeout: ms_duration(m.timeout_ms),
            max_instances: m.max_instances.map(count),
            job_policy: JobPolicy {
                misfire: parse(T, &m.name, "misfire", &m.misfire)?,
                max_catch_up: count(m.max_catch_up),
                misfire_grace: ms_duration(m.misfire_grace_ms),
                overlap: parse(T, &m.name, "overlap", &m.overlap)?,
            },
            params_schema: json(T, &m.name, "params_schema", &m.params_schema)?,
            location: m.location,
            name: m.name,
        })
    }
}

/// A queue row with its counts.
pub(crate) fn queue_info(m: queue::Model, queued: u64, running: u64) -> QueueInfo {
    QueueInfo {
        name: m.name,
        concurrency: m.concurrency.map(count),
        rate_limit: m.rate_limit.map(count),
        rate_window: m.rate_window_ms.map(ms_duration),
        paused: m.paused,
        queued,
        running,
    }
}

/// A node row with its running count.
pub(crate) fn node_info(m: node::Model, running: u64, alive: bool) -> NodeInfo {
    NodeInfo {
        name: m
            .name
            .unwrap_or_else(|| super::nodes::default_name(&m.hostname, m.pid)),
        id: m.id,
        hostname: m.hostname,
        pid: u32::try_from(m.pid).unwrap_or(0),
        version: m.version,
        max_workers: count(m.max_workers),
        alive,
        status: m.status,
        paused: m.paused,
        started_at: from_ms(m.started_at),
        heartbeat_at: from_ms(m.heartbeat_at),
        running,
    }
}
