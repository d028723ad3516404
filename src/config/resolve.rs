//! Resolution of a parsed [`Config`] against the task [`Registry`] into the desired
//! state: one [`JobSpec`] per job (each scheduled task's own job, then every
//! `[[jobs]]` entry) and one [`TaskPolicy`] per registered task.
//!
//! Precedence everywhere is `[tasks.<name>]` > `#[kairos::task]` > the `[scheduler]`
//! defaults ([`Config::defaults`]). Errors that concern the file point at the key or
//! value; errors in a task registered by hand (the macro checks its own at compile
//! time) are [`ConfigError::Other`] naming the task's location.

use std::collections::HashMap;

use super::{
    Config, ConfigError, Located, PolicyKeys, Pos, TaskOverride, Trigger, did_you_mean, list_names,
};
use crate::job::{DEFAULT_QUEUE, JobSpec, TaskPolicy};
use crate::model::{JobPolicy, JobSource};
use crate::schedule::{self, CronSchedule, DstPolicy, Schedule, Tz};
use crate::task::{Misfire, Overlap};
use crate::task::{Registry, TaskDef};

/// See [`Config::resolve`].
pub(super) fn resolve(
    config: &Config,
    registry: &Registry,
) -> Result<(Vec<JobSpec>, HashMap<String, TaskPolicy>), ConfigError> {
    check_task_names(config, registry)?;

    let mut jobs = Vec::new();
    let mut policies = HashMap::new();
    for task in registry.tasks() {
        let o = config.tasks.get(task.name);
        let p = policy(config, task, o);
        if let Some(job) = own_job(config, task, o, &p)? {
            jobs.push(job);
        }
        policies.insert(task.name.to_string(), p);
    }

    let own_jobs: HashMap<String, ()> = jobs.iter().map(|j| (j.name.clone(), ())).collect();
    for entry in &config.jobs {
        let name = &entry.name.value;
        if own_jobs.contains_key(name) {
            let origin = match config.tasks.get(name).and_then(|o| o.trigger.as_ref()) {
                Some(t) => format!("[tasks.{name}] at {}", t.pos),
                None => format!(
                    "#[kairos::task] at {}",
                    registry.get(name).map_or("?", |t| t.location)
                ),
            };
            return Err(config.invalid(
                entry.name.pos,
                format!(
                    "job name `{name}` is already the name of task `{name}`'s own job (scheduled \
                     by {origin}); give this [[jobs]] entry another `name`, e.g. `{name}_2`"
                ),
            ));
        }
        let task_policy = &policies[&entry.task.value];
        let dst = entry
            .policy
            .dst
            .as_ref()
            .map(|d| d.value)
            .unwrap_or_default();
        let schedule = match &entry.trigger.value {
            Trigger::Cron(expr) => {
                let tz = entry
                    .timezone
                    .as_ref()
                    .map_or(config.defaults.timezone, |t| t.value);
                with_dst(cron(config, expr, tz, entry.trigger.pos)?, dst)
            }
            Trigger::Every(d) => Schedule::Every(*d),
            Trigger::Once(t) => Schedule::Once(*t),
        };
        check_job_params(config, registry, entry)?;
        let job_policy = apply_keys(task_policy.job_policy, &entry.policy);
        if let Some(n) = &entry.policy.max_catch_up
            && job_policy.misfire != Misfire::CatchUp
        {
            return Err(config.invalid(
                n.pos,
                catch_up_alone(&format!("[[jobs]] `{name}`"), job_policy.misfire),
            ));
        }
        if let Some(overlap) = &entry.policy.overlap {
            check_overlap(
                config,
                overlap.pos,
                &format!("[[jobs]] `{name}`"),
                &entry.task.value,
                job_policy.overlap,
                task_policy.max_instances,
            )?;
        }
        jobs.push(JobSpec {
            name: name.clone(),
            task: entry.task.value.clone(),
            schedule,
            params: entry.params.clone(),
            enabled: entry.enabled,
            priority: entry.priority,
            policy: job_policy,
            source: JobSource::Config,
            callback_url: entry.callback_url.clone(),
        });
    }

    check_task_policies(config, registry, &policies)?;
    jobs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((jobs, policies))
}

/// The message for a `max_catch_up` given where the misfire policy is not `catch_up`.
fn catch_up_alone(whose: &str, misfire: Misfire) -> String {
    format!(
        "`max_catch_up` applies only with `misfire = \"catch_up\"`, and the misfire policy of \
         {whose} is `{}`; add `misfire = \"catch_up\"` or remove `max_catch_up`",
        misfire.as_str()
    )
}

/// `overlap` says what a new run does while the task's `max_instances` runs are going;
/// without that limit it would silently do nothing (runs overlap freely).
fn check_overlap(
    config: &Config,
    pos: Pos,
    whose: &str,
    task: &str,
    overlap: Overlap,
    max_instances: Option<u32>,
) -> Result<(), ConfigError> {
    if max_instances.is_some() {
        return Ok(());
    }
    Err(config.invalid(
        pos,
        format!(
            "`overlap = \"{}\"` of {whose} has no effect: it says what a new run does while \
             task `{task}` has its `max_instances` runs going, and it has no `max_instances` \
             (its runs overlap freely); add `max_instances = 1` to [tasks.{task}] or remove \
             `overlap`",
            overlap.as_str()
        ),
    ))
}

/// `[tasks.<name>]` policy keys that could never act: `max_catch_up` where neither the
/// task's own job nor any of its [[jobs]] entries catches up, and an `overlap` (from the
/// file or the macro) on a task without `max_instances`.
fn check_task_policies(
    config: &Config,
    registry: &Registry,
    policies: &HashMap<String, TaskPolicy>,
) -> Result<(), ConfigError> {
    for task in registry.tasks() {
        let p = &policies[task.name];
        let o = config.tasks.get(task.name);
        if let Some(n) = o.and_then(|o| o.policy.max_catch_up.as_ref())
            && p.job_policy.misfire != Misfire::CatchUp
            && !config.jobs.iter().any(|e| {
                e.task.value == task.name
                    && apply_keys(p.job_policy, &e.policy).misfire == Misfire::CatchUp
            })
        {
            return Err(config.invalid(
                n.pos,
                catch_up_alone(&format!("task `{}`", task.name), p.job_policy.misfire),
            ));
        }
        match o.and_then(|o| o.policy.overlap.as_ref()) {
            Some(overlap) => check_overlap(
                config,
                overlap.pos,
                &format!("[tasks.{}]", task.name),
                task.name,
                p.job_policy.overlap,
                p.max_instances,
            )?,
            None if task.overlap.is_some() && p.max_instances.is_none() => {
                return Err(ConfigError::Other(format!(
                    "task `{}` (at {}) sets `overlap = \"{}\"`, which acts when its \
                     `max_instances` runs are going, and it has no `max_instances`; add \
                     `max_instances` to it or to [tasks.{}] in jobs.toml, or remove `overlap`",
                    task.name,
                    task.location,
                    p.job_policy.overlap.as_str(),
                    task.name
                )));
            }
            None => {}
        }
    }
    Ok(())
}

/// Every task named by `[tasks.<name>]` or `[[jobs]] task = ...` must be registered;
/// the first unknown one (in file order) is reported with the closest registered name.
fn check_task_names(config: &Config, registry: &Registry) -> Result<(), ConfigError> {
    let mut refs: Vec<(Pos, &str)> = config
        .tasks
        .iter()
        .map(|(name, o)| (o.pos, name.as_str()))
        .chain(
            config
                .jobs
                .iter()
                .map(|j| (j.task.pos, j.task.value.as_str())),
        )
        .collect();
    refs.sort();
    let names = registry.names();
    for (pos, name) in refs {
        if registry.get(name).is_some() {
            continue;
        }
        let message = if names.is_empty() {
            format!(
                "unknown task `{name}`: no task is registered; annotate an async fn with \
                 `#[kairos::task]` and make sure its crate is linked into this program"
            )
        } else {
            let hint = did_you_mean(name, names.iter().copied());
            let sep = if hint.is_empty() { ";" } else { "" };
            format!(
                "unknown task `{name}`{hint}{sep} registered tasks: {}",
                list_names(names.iter().copied(), 20)
            )
        };
        return Err(config.invalid(pos, message));
    }
    Ok(())
}

/// config > macro > defaults, field by field.
fn policy(config: &Config, task: &TaskDef, o: Option<&TaskOverride>) -> TaskPolicy {
    let d = &config.defaults;
    TaskPolicy {
        max_instances: o.and_then(|o| o.max_instances).or(task.max_instances),
        max_retries: o
            .and_then(|o| o.max_retries)
            .or(task.max_retries)
            .unwrap_or(d.max_retries),
        retry_delay: o
            .and_then(|o| o.retry_delay)
            .or(task.retry_delay)
            .unwrap_or(d.retry_delay),
        timeout: o
            .and_then(|o| o.timeout)
            .or(task.timeout)
            .unwrap_or(d.timeout),
        priority: o
            .and_then(|o| o.priority)
            .or(task.priority)
            .unwrap_or(d.priority),
        queue: o
            .and_then(|o| o.queue.clone())
            .or(task.queue.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
        job_policy: apply_keys(
            macro_job_policy(task),
            &o.map(|o| o.policy.clone()).unwrap_or_default(),
        ),
    }
}

/// The job policy `#[kairos::task]` gives, over the defaults.
fn macro_job_policy(task: &TaskDef) -> JobPolicy {
    let d = JobPolicy::default();
    JobPolicy {
        misfire: task.misfire.unwrap_or(d.misfire),
        max_catch_up: task.max_catch_up.unwrap_or(d.max_catch_up),
        misfire_grace: task.misfire_grace.unwrap_or(d.misfire_grace),
        overlap: task.overlap.unwrap_or(d.overlap),
    }
}

/// `keys` over `base`, key by key.
fn apply_keys(base: JobPolicy, keys: &PolicyKeys) -> JobPolicy {
    JobPolicy {
        misfire: keys.misfire.unwrap_or(base.misfire),
        max_catch_up: keys
            .max_catch_up
            .as_ref()
            .map_or(base.max_catch_up, |n| n.value),
        misfire_grace: keys.misfire_grace.unwrap_or(base.misfire_grace),
        overlap: keys.overlap.as_ref().map_or(base.overlap, |o| o.value),
    }
}

fn with_dst(s: Schedule, dst: DstPolicy) -> Schedule {
    match s {
        Schedule::Cron(c) => Schedule::Cron(c.with_dst(dst)),
        other => other,
    }
}

/// A `[[jobs]]` entry's params must fit its task's parameters, checked as the task
/// will read them; the error points at `params`, or at `task` when the entry has none
/// (the task is what asks for them).
fn check_job_params(
    config: &Config,
    registry: &Registry,
    entry: &super::JobEntry,
) -> Result<(), ConfigError> {
    let Some(check) = registry.get(&entry.task.value).and_then(|t| t.check_params) else {
        return Ok(());
    };
    if let Err(e) = check(&entry.params) {
        let msg = e.to_string();
        let msg = msg.trim_start_matches("invalid params: ");
        return Err(config.invalid(
            entry.params_pos.unwrap_or(entry.task.pos),
            format!(
                "params of [[jobs]] `{}` do not fit task `{}`: {msg}",
                entry.name.value, entry.task.value
            ),
        ));
    }
    Ok(())
}

/// The task's own job, named after the task, if the config or the macro schedules it.
fn own_job(
    config: &Config,
    task: &TaskDef,
    o: Option<&TaskOverride>,
    policy: &TaskPolicy,
) -> Result<Option<JobSpec>, ConfigError> {
    let config_tz = o.and_then(|o| o.timezone.as_ref());
    let schedule = match o.and_then(|o| o.trigger.as_ref()) {
        Some(Located {
            value: Trigger::Cron(expr),
            pos,
        }) => cron(config, expr, task_timezone(config, task, config_tz)?, *pos)?,
        Some(Located {
            value: Trigger::Every(d),
            ..
        }) => Schedule::Every(*d),
        Some(Located {
            value: Trigger::Once(t),
            ..
        }) => Schedule::Once(*t),
        None => match (task.schedule, task.interval) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Other(format!(
                    "task `{}` (at {}) sets both a cron schedule and an interval; keep one",
                    task.name, task.location
                )));
            }
            (Some(expr), None) => {
                let tz = task_timezone(config, task, config_tz)?;
                Schedule::Cron(CronSchedule::parse(expr, tz).map_err(|e| {
                    ConfigError::Other(format!("task `{}` (at {}): {e}", task.name, task.location))
                })?)
            }
            (None, Some(d)) if d.is_zero() => {
                return Err(ConfigError::Other(format!(
                    "task `{}` (at {}) has a zero interval; use a positive one",
                    task.name, task.location
                )));
            }
            (None, Some(d)) => Schedule::Every(d),
            (None, None) => {
                if let Some(tz) = config_tz {
                    return Err(config.invalid(
                        tz.pos,
                        format!(
                            "`timezone` in [tasks.{0}] has no effect: task `{0}` has no cron \
                             schedule; add `schedule = \"...\"` or remove `timezone`",
                            task.name
                        ),
                    ));
                }
                if let Some(url) = o.and_then(|o| o.callback_url.as_ref()) {
                    return Err(config.invalid(
                        url.pos,
                        format!(
                            "`callback_url` in [tasks.{0}] has no effect: it is for the runs of \
                             the task's own job, and task `{0}` has no schedule; give the URL \
                             per run (`Enqueue::callback_url`, `kairos enqueue \
                             --callback-url`) or on a [[jobs]] entry of the task",
                            task.name
                        ),
                    ));
                }
                return Ok(None);
            }
        },
    };
    if let (Some(tz), false) = (config_tz, matches!(schedule, Schedule::Cron(_))) {
        return Err(config.invalid(
            tz.pos,
            format!(
                "`timezone` in [tasks.{0}] only applies to a cron schedule, but task `{0}` runs \
                 on an interval; remove `timezone` or set `schedule = \"...\"`",
                task.name
            ),
        ));
    }
    let config_dst = o.and_then(|o| o.policy.dst.as_ref());
    if let (Some(dst), false) = (config_dst, matches!(schedule, Schedule::Cron(_))) {
        return Err(config.invalid(
            dst.pos,
            format!(
                "`dst` in [tasks.{0}] only applies to a cron schedule, but task `{0}` runs on \
                 an interval; remove `dst`",
                task.name
            ),
        ));
    }
    let dst = config_dst.map(|d| d.value).or(task.dst).unwrap_or_default();
    let params = serde_json::Value::Object(serde_json::Map::new());
    let enabled = o.and_then(|o| o.enabled).unwrap_or(true);
    if enabled {
        check_own_job_params(config, task, o, &params)?;
    }
    Ok(Some(JobSpec {
        name: task.name.to_string(),
        task: task.name.to_string(),
        schedule: with_dst(schedule, dst),
        params,
        enabled,
        priority: None,
        policy: policy.job_policy,
        source: JobSource::Code,
        callback_url: o.and_then(|o| o.callback_url.as_ref().map(|u| u.value.clone())),
    }))
}

/// A task's own job fires its runs with no params, so a task with a required
/// parameter would fail every run it schedules: refused at start-up instead, pointing
/// at the schedule in jobs.toml (or at the task, when the macro schedules it). A
/// disabled own job fires nothing and passes.
fn check_own_job_params(
    config: &Config,
    task: &TaskDef,
    o: Option<&TaskOverride>,
    params: &serde_json::Value,
) -> Result<(), ConfigError> {
    let Some(Err(e)) = task.check_params.map(|check| check(params)) else {
        return Ok(());
    };
    let msg = e.to_string();
    let msg = msg.trim_start_matches("invalid params: ");
    let name = task.name;
    let required: Vec<String> = task
        .params
        .unwrap_or_default()
        .iter()
        .filter(|p| p.required)
        .map(|p| format!("{} = ...", p.name))
        .collect();
    let example = if required.is_empty() {
        "...".to_string()
    } else {
        required.join(", ")
    };
    let declare = format!(
        "a [[jobs]] entry with `task = \"{name}\"`, a schedule and `params = {{ {example} }}`"
    );
    match o.and_then(|o| o.trigger.as_ref()) {
        Some(trigger) => {
            let key = match trigger.value {
                Trigger::Cron(_) => "schedule",
                Trigger::Every(_) => "interval",
                Trigger::Once(_) => "at",
            };
            Err(config.invalid(
                trigger.pos,
                format!(
                    "task `{name}` cannot run on a schedule of its own: {msg}, and a task's own \
                     job fires with no params; remove `{key}` from [tasks.{name}] and declare \
                     {declare}"
                ),
            ))
        }
        None => Err(ConfigError::Other(format!(
            "task `{name}` (at {}) is scheduled by #[kairos::task] but cannot run on that \
             schedule: {msg}, and a task's own job fires with no params; make the parameter \
             an `Option`, or remove the schedule from #[kairos::task] and declare {declare} in \
             jobs.toml",
            task.location
        ))),
    }
}

/// The zone of a task's cron schedule: config > macro > `[scheduler] timezone`.
fn task_timezone(
    config: &Config,
    task: &TaskDef,
    config_tz: Option<&Located<Tz>>,
) -> Result<Tz, ConfigError> {
    if let Some(tz) = config_tz {
        return Ok(tz.value);
    }
    match task.timezone {
        Some(name) => schedule::parse_timezone(name).map_err(|e| {
            ConfigError::Other(format!("task `{}` (at {}): {e}", task.name, task.location))
        }),
        None => Ok(config.defaults.timezone),
    }
}

/// A cron expression from the file (already validated by the parser) bound to `tz`.
fn cron(config: &Config, expr: &str, tz: Tz, pos: Pos) -> Result<Schedule, ConfigError> {
    CronSchedule::parse(expr, tz)
        .map(Schedule::Cron)
        .map_err(|e| config.invalid(pos, e.to_string()))
}
