//! The admin CLI: `kairos jobs|runs|enqueue|queues|nodes|tasks|cron|migrate|serve`. It only
//! parses arguments and prints results: every operation is the front door's
//! ([`Admin`]). The `kairos` binary runs it with no tasks of its own (it uses the task
//! catalogue nodes publish); an application can embed the same CLI with [`run`] so its
//! own tasks are known.
//!
//! Every command takes `--json`: results print as the library's `Serialize` types,
//! errors as `{"error": {"code", "message"}}` (exit status 1; 2 for usage errors).
//! Read commands never create a database.

mod cron;
mod enqueue;
mod jobs;
mod output;
mod runs;
mod serve;
mod system;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Error;
use crate::ops::{Admin, Tasks};
use crate::store::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE_URL, OpenMode, Store};
use crate::task::Registry;

pub use output::CliError;
use output::Out;

/// Command-line arguments of the admin CLI.
#[derive(Debug, Parser)]
#[command(
    name = "kairos",
    version,
    about = "Inspect and steer kairos jobs, runs, queues and nodes",
    long_about = "Inspect and steer kairos jobs, runs, queues and nodes in the database your \
                  application's nodes use. Read commands never create a database.\n\n\
                  Database: --database-url, else KAIROS_DATABASE_URL, else [scheduler] \
                  database_url in the config file, else sqlite://kairos.db."
)]
pub struct Cli {
    /// Database URL (sqlite://file.db or postgres://user:pass@host/db).
    // The value stays out of `--help`: a PostgreSQL URL carries its password.
    #[arg(
        long,
        env = "KAIROS_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    /// Configuration file (default: jobs.toml, read if it exists; a file named here
    /// must exist).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of tables (errors too, as {"error": {"code", "message"}}).
    #[arg(long, global = true)]
    json: bool,
    /// How long connecting to the database may take (e.g. 5s).
    #[arg(long, global = true, value_parser = parse_positive_duration)]
    connect_timeout: Option<Duration>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, inspect, pause, resume, trigger, create, update and delete jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCmd),
    /// List, inspect, cancel, retry and delete runs.
    #[command(subcommand)]
    Runs(runs::RunsCmd),
    /// Enqueue a run of a task (or many, from a JSON-lines file).
    Enqueue(enqueue::EnqueueArgs),
    /// List queues with their load and limits; pause and resume them.
    #[command(subcommand)]
    Queues(system::QueuesCmd),
    /// List nodes; pause and resume them (no new runs start on a paused node).
    #[command(subcommand)]
    Nodes(system::NodesCmd),
    /// List the tasks nodes have registered, with their effective policies.
    #[command(subcommand)]
    Tasks(system::TasksCmd),
    /// Counts by status, queue depths, throughput and per-task durations.
    Stats(system::StatsArgs),
    /// Exit 0 when the database answers and a node is alive (heard from within
    /// --max-age), else 1 with the reason.
    Health(system::HealthArgs),
    /// Cron expression tools.
    #[command(subcommand)]
    Cron(cron::CronCmd),
    /// Create the kairos tables, upgrade them, or repair ones dropped by hand.
    Migrate,
    /// Serve the HTTP API (JSON, live events, Prometheus metrics, OpenAPI document)
    /// until Ctrl-C or SIGTERM.
    Serve(serve::ServeArgs),
}

/// Parses the process arguments and runs the CLI with the program's registered tasks;
/// exits the process with status 1 on error (2 on a usage error).
pub async fn run() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let msg = e.kind().as_str().map_or_else(
                    || e.to_string().lines().next().unwrap_or("").to_string(),
                    str::to_string,
                );
                let detail = e.to_string();
                let first = usage_message(&detail).unwrap_or(msg);
                output::print_error_json("usage", &output::clip_quoted(&first));
                std::process::exit(2);
            }
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let _ = write!(
                std::io::stderr(),
                "{}",
                output::clip_quoted(&e.render().to_string())
            );
            std::process::exit(e.exit_code());
        }
    };
    let registry = match Registry::from_inventory() {
        Ok(r) => r,
        Err(e) => fail(json, "duplicate_task", &e.to_string()),
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = execute(cli, &registry, Arc::new(SystemClock), &mut stdout).await {
        if e.code() == "broken_pipe" {
            std::process::exit(0);
        }
        if e.is_silent() {
            std::process::exit(1);
        }
        let _ = stdout.flush();
        fail(json, e.code(), &e.to_string());
    }
}

/// The `error:` line of a clap error, with the indented lines that complete it (the
/// arguments "the following required arguments were not provided:" names), as one
/// line.
fn usage_message(rendered: &str) -> Option<String> {
    let mut lines = rendered.lines().skip_while(|l| !l.starts_with("error:"));
    let mut message = lines
        .next()?
        .trim_start_matches("error:")
        .trim()
        .to_string();
    for more in lines.take_while(|l| l.starts_with(char::is_whitespace) && !l.trim().is_empty()) {
        message.push(' ');
        message.push_str(more.trim());
    }
    Some(message)
}

/// Prints the error and exits: status 2 for usage errors, 1 for the rest.
fn fail(json: bool, code: &str, message: &str) -> ! {
    if json {
        output::print_error_json(code, message);
    } else {
        let _ = writeln!(std::io::stderr(), "error: {message}");
    }
    std::process::exit(if code == "usage" { 2 } else { 1 });
}

/// Runs parsed arguments against `clock`, writing to `out`.
pub async fn execute(
    mut cli: Cli,
    registry: &Registry,
    clock: Arc<dyn Clock>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut out = Out::new(out, cli.json);
    let now = clock.now();
    if let Command::Cron(cmd) = &cli.command {
        return cron::run(cmd, now, &mut out);
    }
    let config = match &cli.config {
        Some(path) if !path.exists() => {
            return Err(CliError::new(
                "config_not_found",
                format!(
                    "the configuration file {} does not exist; check --config",
                    path.display()
                ),
            ));
        }
        Some(path) => Config::load(path)?,
        None if PathBuf::from("jobs.toml").is_file() => Config::load("jobs.toml".as_ref())?,
        None => Config::default(),
    };
    let url = cli
        .database_url
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| config.scheduler.database_url.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
    let timeout = cli
        .connect_timeout
        .or(config.scheduler.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if let Command::Migrate = cli.command {
        return system::migrate(&url, timeout, &mut out).await;
    }
    if let Command::Serve(args) = &mut cli.command {
        args.with_config(&config.http);
        args.check()?;
    }
    let store = match Store::open(&url, OpenMode::Existing, timeout).await {
        Ok(store) => store,
        // A database that cannot be reached is the first thing a health check reports.
        Err(e) if matches!(cli.command, Command::Health(_)) => {
            return system::print_health(&crate::model::Health::unreachable(&e), &mut out);
        }
        Err(e) => return Err(Error::from(e).into()),
    };
    let tasks = if registry.is_empty() {
        Tasks::Catalog
    } else {
        let (_, policies) = config.resolve(registry)?;
        Tasks::App {
            registry: registry.clone(),
            policies,
        }
    };
    let shown = store.url().to_string();
    let admin = Admin::new(store, tasks, clock, config.defaults.clone(), None);
    let result = match cli.command {
        Command::Jobs(cmd) => jobs::run(cmd, &admin, now, &mut out).await,
        Command::Runs(cmd) => runs::run(cmd, &admin, now, &mut out).await,
        Command::Enqueue(args) => enqueue::run(args, &admin, &mut out).await,
        Command::Queues(cmd) => system::queues(cmd, &admin, &mut out).await,
        Command::Nodes(cmd) => system::nodes(cmd, &admin, now, &mut out).await,
        Command::Tasks(cmd) => system::tasks(cmd, &admin, &mut out).await,
        Command::Stats(args) => system::stats(args, &admin, &mut out).await,
        Command::Health(args) => system::health(args, &admin, &mut out).await,
        Command::Serve(args) => serve::run(args, admin.clone(), &mut out).await,
        Command::Cron(_) | Command::Migrate => unreachable!("handled above"),
    };
    result.map_err(|e| e.in_database(&shown))
}

/// A duration such as `10m` for a flag.
fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::schedule::parse_duration(s).map_err(|e| e.to_string())
}

/// A duration longer than zero, such as `5s`, for a flag.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration_arg(s)? {
        d if d.is_zero() => Err("must be longer than zero; write e.g. `5s`".into()),
        d => Ok(d),
    }
}

/// An instant given as RFC 3339 or as an age before `now` (`1h`: an hour ago).
fn parse_since(s: &str, now: DateTime<Utc>, flag: &str) -> Result<DateTime<Utc>, CliError> {
    crate::model::parse_since(s, now).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

/// An RFC 3339 instant for a flag.
fn parse_time(s: &str, flag: &str) -> Result<DateTime<Utc>, CliError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::usage(format!(
                "{flag}: `{}` is not an RFC 3339 time ({e}); write e.g. 2026-01-31T09:00:00Z",
                output::clip(s)
            ))
        })
}

/// A JSON value for a flag.
fn parse_json(s: &str, flag: &str) -> Result<serde_json::Value, CliError> {
    serde_json::from_str(s).map_err(|e| {
        CliError::usage(format!(
            "{flag} is not valid JSON ({e}); pass an object such as '{{\"doc_id\": \"42\"}}'"
        ))
    })
}

/// `key=value` tags.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not a tag; write key=value, e.g. kb_id=42"
        )),
    }
}
