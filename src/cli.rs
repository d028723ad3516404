//! The admin CLI: `kairos jobs|runs|enqueue|cron|tasks|migrate`. The `kairos` binary
//! runs it with no registry of its own (it reads the task catalogue nodes publish); an
//! application can embed the same CLI with [`run`] so its own tasks are known.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::config::Config;
use crate::schedule::{CronSchedule, format_duration, parse_duration, parse_timezone};
use crate::store::{
    CancelOutcome, DEFAULT_DATABASE_URL, Job, NewRun, Run, RunFilter, RunStatus, Store,
};
use crate::task::Registry;

/// Command-line arguments of the admin CLI.
#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Inspect and steer kairos jobs and runs"
)]
pub struct Cli {
    /// Database URL (sqlite://file.db or postgres://...). Default: [scheduler]
    /// database_url in the config file, else sqlite://kairos.db.
    #[arg(long, env = "KAIROS_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Configuration file; read if it exists.
    #[arg(long, default_value = "jobs.toml", global = true)]
    config: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, inspect, pause, resume and trigger jobs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// List, inspect and cancel runs.
    #[command(subcommand)]
    Runs(RunsCmd),
    /// Enqueue a run of a task.
    Enqueue(EnqueueArgs),
    /// Cron expression tools.
    #[command(subcommand)]
    Cron(CronCmd),
    /// List the tasks nodes have registered.
    #[command(subcommand)]
    Tasks(TasksCmd),
    /// Create or upgrade the kairos tables.
    Migrate,
}

#[derive(Debug, Subcommand)]
enum JobsCmd {
    /// All jobs.
    List,
    /// One job, with its recent runs.
    Show {
        /// Job name.
        name: String,
    },
    /// Stop firing a job until resumed.
    Pause {
        /// Job name.
        name: String,
    },
    /// Resume a paused job (missed slots coalesce into one run).
    Resume {
        /// Job name.
        name: String,
    },
    /// Run a job now, outside its schedule.
    Trigger {
        /// Job name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum RunsCmd {
    /// Recent runs, newest first.
    List {
        /// Only runs with this status (queued, running, succeeded, failed, timed_out, cancelled).
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// Only runs of this task.
        #[arg(long)]
        task: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// One run in full.
    Show {
        /// Run id.
        id: i64,
    },
    /// Cancel a queued or running run.
    Cancel {
        /// Run id.
        id: i64,
    },
}

#[derive(Debug, Args)]
struct EnqueueArgs {
    /// Task name.
    task: String,
    /// Params as a JSON object, e.g. '{"doc_id": "42"}'.
    #[arg(long, default_value = "{}")]
    params: String,
    /// Start no earlier than this RFC3339 time.
    #[arg(long, conflicts_with = "in_")]
    at: Option<String>,
    /// Start after this delay, e.g. 10m.
    #[arg(long = "in", id = "in_")]
    in_: Option<String>,
    /// Priority (lower runs first); default the task's.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
}

#[derive(Debug, Subcommand)]
enum CronCmd {
    /// Print the next fire times, one RFC3339 timestamp per line.
    Next {
        /// Cron expression (5 fields, 6 with seconds, or @daily ...).
        expr: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Times strictly after this RFC3339 instant (default now).
        #[arg(long)]
        from: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
}

#[derive(Debug, Subcommand)]
enum TasksCmd {
    /// All tasks registered by nodes, with their effective policies.
    List,
}

/// A CLI failure: printed as `error: ...`, exit status 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(String);

impl CliError {
    fn new(s: impl Into<String>) -> Self {
        CliError(s.into())
    }
}

impl<E: Into<crate::store::StoreError>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.into().to_string())
    }
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
}

/// Parses the process arguments and runs the CLI with the program's registered tasks;
/// exits the process with status 1 on error.
pub async fn run() {
    let registry = match Registry::from_inventory() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    if let Err(e) = execute(cli, &registry, Utc::now(), &mut out).await {
        let _ = out.flush();
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Runs parsed arguments, writing to `out`; `now` is the time used for `--in` and
/// `cron next` without `--from`.
pub async fn execute(
    cli: Cli,
    registry: &Registry,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let json_out = cli.json;
    if let Command::Cron(CronCmd::Next {
        expr,
        tz,
        from,
        count,
    }) = &cli.command
    {
        return cron_next(expr, tz, from.as_deref(), *count, now, out);
    }
    let config = if cli.config.exists() {
        Config::load(&cli.config).map_err(|e| CliError::new(e.to_string()))?
    } else {
        Config::default()
    };
    let url = cli
        .database_url
        .clone()
        .or_else(|| config.scheduler.database_url.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
    let store = Store::connect(&url).await?;
    let w = |out: &mut dyn Write, s: String| -> Result<(), CliError> {
        writeln!(out, "{s}").map_err(|e| CliError::new(e.to_string()))
    };
    match cli.command {
        Command::Cron(_) => unreachable!("handled above"),
        Command::Migrate => w(out, format!("migrations applied to {url}"))?,
        Command::Jobs(JobsCmd::List) => {
            let jobs = store.jobs().await?;
            if json_out {
                w(out, to_json(&jobs.iter().map(job_json).collect::<Vec<_>>()))?;
            } else {
                w(out, jobs_table(&jobs))?;
            }
        }
        Command::Jobs(JobsCmd::Show { name }) => {
            let job = store.job(&name).await?;
            let runs = store
                .runs(&RunFilter {
                    job_id: Some(job.id),
                    limit: Some(10),
                    ..Default::default()
                })
                .await?;
            if json_out {
                let mut j = job_json(&job);
                j["recent_runs"] = Value::Array(runs.iter().map(run_json).collect());
                w(out, to_json(&j))?;
            } else {
                w(out, job_detail(&job))?;
                w(out, String::new())?;
                w(out, runs_table(&runs))?;
            }
        }
        Command::Jobs(JobsCmd::Pause { name }) => {
            let job = store.set_job_paused(&name, true, now).await?;
            report(
                out,
                json_out,
                &job_json(&job),
                format!("paused job `{name}`"),
            )?;
        }
        Command::Jobs(JobsCmd::Resume { name }) => {
            let job = store.set_job_paused(&name, false, now).await?;
            report(
                out,
                json_out,
                &job_json(&job),
                format!("resumed job `{name}`"),
            )?;
        }
        Command::Jobs(JobsCmd::Trigger { name }) => {
            let job = store.job(&name).await?;
            let mut run = new_run(&store, registry, &config, &job.task, now).await?;
            run.params = job.params.clone();
            if let Some(p) = job.priority {
                run.priority = p;
            }
            match store.trigger_job(&job, run, now).await? {
                Some(id) => report(
                    out,
                    json_out,
                    &json!({"run_id": id}),
                    format!("triggered job `{name}`: run {id}"),
                )?,
                None => {
                    return Err(CliError::new(format!(
                        "job `{name}` was already triggered at this instant"
                    )));
                }
            }
        }
        Command::Runs(RunsCmd::List {
            status,
            task,
            limit,
        }) => {
            let runs = store
                .runs(&RunFilter {
                    status,
                    task,
                    job_id: None,
                    limit: Some(limit),
                })
                .await?;
            if json_out {
                w(out, to_json(&runs.iter().map(run_json).collect::<Vec<_>>()))?;
            } else {
                w(out, runs_table(&runs))?;
            }
        }
        Command::Runs(RunsCmd::Show { id }) => {
            let run = store.run(id).await?;
            if json_out {
                w(out, to_json(&run_json(&run)))?;
            } else {
                w(out, run_detail(&run))?;
            }
        }
        Command::Runs(RunsCmd::Cancel { id }) => {
            let outcome = store.cancel_run(id, now).await?;
            let (msg, state) = match outcome {
                CancelOutcome::Cancelled => (format!("cancelled run {id}"), "cancelled"),
                CancelOutcome::Requested => (
                    format!("cancel requested for run {id}; its node stops it within a second"),
                    "cancel_requested",
                ),
                CancelOutcome::AlreadyFinished(s) => {
                    return Err(CliError::new(format!(
                        "run {id} already finished ({s}); nothing to cancel"
                    )));
                }
            };
            report(out, json_out, &json!({"run_id": id, "outcome": state}), msg)?;
        }
        Command::Enqueue(args) => {
            let params: Value = serde_json::from_str(&args.params).map_err(|e| {
                CliError::new(format!("--params is not valid JSON ({e}); pass an object such as '{{\"doc_id\": \"42\"}}'"))
            })?;
            if !params.is_object() {
                return Err(CliError::new(format!(
                    "--params must be a JSON object of parameter names to values, got {}",
                    crate::task::json_kind(&params)
                )));
            }
            let mut run = new_run(&store, registry, &config, &args.task, now).await?;
            run.params = params;
            if let Some(at) = &args.at {
                run.run_at = parse_time(at, "--at")?;
            } else if let Some(d) = &args.in_ {
                let d = parse_duration(d).map_err(|e| CliError::new(format!("--in: {e}")))?;
                run.run_at = now + chrono::Duration::from_std(d).unwrap_or_default();
            }
            if let Some(p) = args.priority {
                run.priority = p;
            }
            let id = store.enqueue(std::slice::from_ref(&run), now).await?[0];
            report(
                out,
                json_out,
                &json!({"run_id": id, "task": run.task, "run_at": run.run_at}),
                format!(
                    "enqueued run {id} of `{}` for {}",
                    run.task,
                    rfc3339(run.run_at)
                ),
            )?;
        }
        Command::Tasks(TasksCmd::List) => {
            let tasks = store.tasks().await?;
            if json_out {
                w(out, to_json(&tasks))?;
            } else {
                let rows = tasks
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.priority.to_string(),
                            t.max_retries.to_string(),
                            format_duration(std::time::Duration::from_millis(
                                t.retry_delay_ms as u64,
                            )),
                            format_duration(std::time::Duration::from_millis(t.timeout_ms as u64)),
                            t.max_instances.map_or("-".into(), |m| m.to_string()),
                            t.queue.clone().unwrap_or_else(|| "-".into()),
                            t.location.clone(),
                        ]
                    })
                    .collect();
                w(
                    out,
                    table(
                        &[
                            "TASK",
                            "PRIORITY",
                            "RETRIES",
                            "RETRY_DELAY",
                            "TIMEOUT",
                            "MAX_INSTANCES",
                            "QUEUE",
                            "DEFINED AT",
                        ],
                        rows,
                    ),
                )?;
            }
        }
    }
    Ok(())
}

/// A run of `task` with its effective policy: from the embedded registry when the
/// task is compiled in, else from the catalogue nodes published.
async fn new_run(
    store: &Store,
    registry: &Registry,
    config: &Config,
    task: &str,
    now: DateTime<Utc>,
) -> Result<NewRun, CliError> {
    let base = |priority, max_retries, retry_delay, timeout, queue| NewRun {
        task: task.to_string(),
        params: json!({}),
        run_at: now,
        priority,
        queue,
        max_retries,
        retry_delay,
        timeout,
    };
    if registry.get(task).is_some() {
        let (_, policies) = config
            .resolve(registry)
            .map_err(|e| CliError::new(e.to_string()))?;
        if let Some(p) = policies.get(task) {
            return Ok(base(
                p.priority,
                p.max_retries,
                p.retry_delay,
                p.timeout,
                p.queue.clone(),
            ));
        }
    }
    let tasks = store.tasks().await?;
    match tasks.iter().find(|t| t.name == task) {
        Some(t) => Ok(base(
            t.priority,
            t.max_retries.max(0) as u32,
            std::time::Duration::from_millis(t.retry_delay_ms.max(0) as u64),
            std::time::Duration::from_millis(t.timeout_ms.max(0) as u64),
            t.queue.clone(),
        )),
        None if tasks.is_empty() && registry.is_empty() => Err(CliError::new(format!(
            "unknown task `{task}`: no node has registered tasks in this database yet; start your application once (or check --database-url)"
        ))),
        None => {
            let mut names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
            names.extend(registry.names());
            names.sort_unstable();
            names.dedup();
            Err(CliError::new(format!(
                "unknown task `{task}`{}",
                crate::suggest::hint(task, names)
            )))
        }
    }
}

fn cron_next(
    expr: &str,
    tz: &str,
    from: Option<&str>,
    count: usize,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let tz = parse_timezone(tz).map_err(|e| CliError::new(e.to_string()))?;
    let cron = CronSchedule::parse(expr, tz).map_err(|e| CliError::new(e.to_string()))?;
    let mut t = match from {
        Some(f) => parse_time(f, "--from")?,
        None => now,
    };
    for _ in 0..count {
        match cron.next_after(t) {
            Some(n) => {
                writeln!(out, "{}", n.with_timezone(&tz).to_rfc3339())
                    .map_err(|e| CliError::new(e.to_string()))?;
                t = n;
            }
            None => break,
        }
    }
    Ok(())
}

fn parse_time(s: &str, flag: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::new(format!(
                "{flag}: `{s}` is not an RFC3339 time ({e}); write e.g. 2026-01-31T09:00:00Z"
            ))
        })
}

fn report(out: &mut dyn Write, json_out: bool, j: &Value, text: String) -> Result<(), CliError> {
    let s = if json_out { to_json(j) } else { text };
    writeln!(out, "{s}").map_err(|e| CliError::new(e.to_string()))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), rfc3339)
}

fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id,
        "name": j.name,
        "task": j.task,
        "schedule": j.schedule_text(),
        "kind": j.kind,
        "cron": j.cron,
        "timezone": j.timezone,
        "interval_ms": j.interval_ms,
        "params": j.params,
        "enabled": j.enabled,
        "paused": j.paused,
        "priority": j.priority,
        "source": j.source,
        "next_run_at": j.next_run_at,
        "last_fired_at": j.last_fired_at,
    })
}

fn run_json(r: &Run) -> Value {
    json!({
        "id": r.id,
        "task": r.task,
        "job": r.job,
        "job_id": r.job_id,
        "status": r.status,
        "attempt": r.attempt,
        "max_retries": r.max_retries,
        "priority": r.priority,
        "params": r.params,
        "scheduled_for": r.scheduled_for,
        "run_at": r.run_at,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "node_id": r.node_id,
        "result": r.result,
        "error": r.error,
    })
}

fn jobs_table(jobs: &[Job]) -> String {
    let rows = jobs
        .iter()
        .map(|j| {
            let state = if !j.enabled {
                "disabled"
            } else if j.paused {
                "paused"
            } else {
                "active"
            };
            vec![
                j.name.clone(),
                j.task.clone(),
                j.schedule_text(),
                state.into(),
                opt_time(j.next_run_at),
                opt_time(j.last_fired_at),
            ]
        })
        .collect();
    table(
        &["JOB", "TASK", "SCHEDULE", "STATE", "NEXT RUN", "LAST FIRED"],
        rows,
    )
}

fn runs_table(runs: &[Run]) -> String {
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.task.clone(),
                r.job.clone().unwrap_or_else(|| "-".into()),
                r.status.to_string(),
                format!("{}/{}", r.attempt, r.max_retries + 1),
                r.priority.to_string(),
                rfc3339(r.scheduled_for),
                opt_time(r.finished_at),
                r.error.as_deref().map_or("-".into(), |e| truncate(e, 60)),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "TASK",
            "JOB",
            "STATUS",
            "ATTEMPT",
            "PRI",
            "SCHEDULED FOR",
            "FINISHED",
            "ERROR",
        ],
        rows,
    )
}

fn job_detail(j: &Job) -> String {
    let fields = [
        ("name", j.name.clone()),
        ("task", j.task.clone()),
        ("schedule", j.schedule_text()),
        ("params", j.params.to_string()),
        ("enabled", j.enabled.to_string()),
        ("paused", j.paused.to_string()),
        (
            "priority",
            j.priority.map_or("(task's)".into(), |p| p.to_string()),
        ),
        ("source", j.source.clone()),
        ("next run", opt_time(j.next_run_at)),
        ("last fired", opt_time(j.last_fired_at)),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{k:<12} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_detail(r: &Run) -> String {
    let fields = [
        ("id", r.id.to_string()),
        ("task", r.task.clone()),
        ("job", r.job.clone().unwrap_or_else(|| "-".into())),
        ("status", r.status.to_string()),
        ("attempt", format!("{} of {}", r.attempt, r.max_retries + 1)),
        ("priority", r.priority.to_string()),
        ("params", r.params.to_string()),
        ("scheduled for", rfc3339(r.scheduled_for)),
        ("run at", rfc3339(r.run_at)),
        ("created", rfc3339(r.created_at)),
        ("started", opt_time(r.started_at)),
        ("finished", opt_time(r.finished_at)),
        ("node", r.node_id.clone().unwrap_or_else(|| "-".into())),
        (
            "result",
            r.result.as_ref().map_or("-".into(), |v| v.to_string()),
        ),
        ("error", r.error.clone().unwrap_or_else(|| "-".into())),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{k:<14} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn truncate(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() <= n && !s.contains('\n') {
        return line.to_string();
    }
    format!("{}…", line.chars().take(n).collect::<String>())
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)".into();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut lines = vec![fmt(headers.iter().map(|h| h.to_string()).collect())];
    lines.extend(rows.into_iter().map(fmt));
    lines.join("\n")
}
