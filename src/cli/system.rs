//! `kairos queues|nodes|tasks|migrate`: the cluster's queues and nodes, the published
//! tasks, and the schema.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::output::{CliError, Out, rfc3339, table};
use crate::error::Error;
use crate::model::{NodeInfo, QueueInfo, TaskInfo};
use crate::ops::Admin;
use crate::schedule::format_duration;
use crate::store::{OpenMode, Store};

#[derive(Debug, Subcommand)]
pub(super) enum QueuesCmd {
    /// Every queue: waiting and running runs, limits, paused.
    List,
    /// Start no new runs from this queue (running ones continue; queued ones wait).
    Pause {
        /// Queue name.
        name: String,
    },
    /// Start runs from this queue again.
    Resume {
        /// Queue name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum NodesCmd {
    /// Every node that ran against this database.
    List,
    /// Start no new runs on a node (by id or name), or on every node, including
    /// those that start later (no id). Running runs continue.
    Pause {
        /// Node id or name (see `kairos nodes list`); every node when left out.
        id: Option<String>,
    },
    /// Start runs again on a node, or on every node (no id), which also lifts the
    /// pauses of nodes paused one by one.
    Resume {
        /// Node id or name; every node when left out, including those paused by id or
        /// name.
        id: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub(super) struct StatsArgs {
    /// Only runs of this task.
    #[arg(long)]
    task: Option<String>,
    /// Only runs with this tag (key=value); repeat to require several.
    #[arg(long, value_parser = super::parse_tag)]
    tag: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
pub(super) struct HealthArgs {
    /// A node whose last heartbeat is older than this is not live. By default each node
    /// is judged by its own heartbeat_timeout (10s unless configured), as `kairos nodes
    /// list` judges it.
    #[arg(long, value_parser = parse_max_age)]
    max_age: Option<Duration>,
}

/// `--max-age`: more than zero (see `max_age_problem`).
fn parse_max_age(s: &str) -> Result<Duration, String> {
    let age = super::parse_duration_arg(s)?;
    match crate::ops::max_age_problem(age) {
        Some(problem) => Err(problem.into()),
        None => Ok(age),
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum TasksCmd {
    /// Every task nodes registered, with its effective policies.
    List,
}

pub(super) async fn queues(
    cmd: QueuesCmd,
    admin: &Admin,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match cmd {
        QueuesCmd::List => {
            let queues = admin.queues().await?;
            out.print(&queues, || queues_table(&queues))
        }
        QueuesCmd::Pause { name } => {
            let q = admin.set_queue_paused(&name, true).await?;
            out.print(&q, || {
                format!(
                    "paused queue `{name}`: no new runs start from it ({} queued, {} running)",
                    q.queued, q.running
                )
            })
        }
        QueuesCmd::Resume { name } => {
            let q = admin.set_queue_paused(&name, false).await?;
            out.print(&q, || format!("resumed queue `{name}`"))
        }
    }
}

pub(super) async fn nodes(
    cmd: NodesCmd,
    admin: &Admin,
    now: DateTime<Utc>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let (id, paused) = match cmd {
        NodesCmd::List => {
            let nodes = admin.nodes().await?;
            return out.print(&nodes, || nodes_table(&nodes, now));
        }
        NodesCmd::Pause { id } => (id, true),
        NodesCmd::Resume { id } => (id, false),
    };
    let nodes = admin.set_nodes_paused(id.as_deref(), paused).await?;
    let verb = if paused { "paused" } else { "resumed" };
    // Named as the operator named it, with the id when that was a name.
    let named = |key: &str, n: &NodeInfo| {
        if key == n.id {
            key.to_string()
        } else {
            format!("{key} ({})", n.id)
        }
    };
    out.print(&nodes, || match (&id, nodes.as_slice()) {
        (Some(key), [n]) => format!("{verb} node {}", named(key, n)),
        (Some(key), _) => format!("{verb} node {key}"),
        (None, _) if paused => format!(
            "paused every node ({} known; nodes that start later are paused too)",
            nodes.len()
        ),
        (None, _) => format!(
            "resumed every node ({} known), including nodes paused one by one by id or name",
            nodes.len()
        ),
    })?;
    if let (true, Some(key), [n]) = (paused, &id, nodes.as_slice())
        && n.status == "stopped"
    {
        // The pause is recorded, but a stopped node never runs again: every start of a
        // node gets a new id, so an operator who meant to hold the restarted process
        // would find it running. A dead node may still come back, so it gets no note.
        let _ = writeln!(
            std::io::stderr(),
            "note: node {} is stopped and never runs again (a node that starts again \
             gets a new id), so this pause has no effect; `kairos nodes pause` with no \
             name pauses every node, including those that start later",
            named(key, n)
        );
    }
    if let (true, Some(key), [n]) = (paused, &id, nodes.as_slice())
        && n.status == "dead"
    {
        let _ = writeln!(
            std::io::stderr(),
            "note: node {} is dead (silent past its heartbeat timeout); the pause holds \
             should it come back (after a stall, say), and a node started anew gets a new \
             id: `kairos nodes pause` with no name pauses every node, including those \
             that start later",
            named(key, n)
        );
    }
    Ok(())
}

pub(super) async fn tasks(cmd: TasksCmd, admin: &Admin, out: &mut Out<'_>) -> Result<(), CliError> {
    let TasksCmd::List = cmd;
    let tasks = admin.tasks().await?;
    out.print(&tasks, || tasks_table(&tasks))
}

pub(super) async fn stats(
    args: StatsArgs,
    admin: &Admin,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let s = admin.stats(args.task.as_deref(), &args.tag).await?;
    out.print(&s, || stats_text(&s))
}

pub(super) async fn health(
    args: HealthArgs,
    admin: &Admin,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    print_health(&admin.health(args.max_age).await, out)
}

/// Prints a health report; an unhealthy one makes the command fail (silently: the
/// report says why).
pub(super) fn print_health(h: &crate::model::Health, out: &mut Out<'_>) -> Result<(), CliError> {
    out.print(h, || {
        if h.healthy {
            let mut s = format!(
                "healthy: the database answers; {} worker(s) on live nodes; last heartbeat {}",
                h.live_workers,
                h.last_heartbeat.map_or("-".into(), rfc3339)
            );
            for w in &h.warnings {
                s.push_str(&format!("\nwarning: {w}"));
            }
            s
        } else {
            format!("unhealthy: {}", h.reasons.join("; "))
        }
    })?;
    if h.healthy {
        Ok(())
    } else {
        Err(CliError::new("unhealthy", "").silent())
    }
}

fn stats_text(s: &crate::model::Stats) -> String {
    let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let pct = |r: Option<f64>| r.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
    let mut out = format!(
        "runs: {}
last minute: {} finished; last hour: {} finished ({:.1}/min), {} succeeded, {} failed

{}",
        counts.join(", "),
        s.completed_last_minute,
        s.completed_last_hour,
        s.per_minute_last_hour,
        pct(s.completion_rate),
        pct(s.failure_rate),
        queues_table(&s.queues)
    );
    let rows = s
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.task.clone(),
                t.finished.to_string(),
                t.succeeded.to_string(),
                t.failed.to_string(),
                // Cancelled and expired: so that the columns add up to FINISHED.
                t.finished
                    .saturating_sub(t.succeeded + t.failed)
                    .to_string(),
                t.mean_duration_ms.map_or("-".into(), |d| format!("{d} ms")),
                t.p95_duration_ms.map_or("-".into(), |d| format!("{d} ms")),
            ]
        })
        .collect();
    out.push_str(
        "

",
    );
    out.push_str(&table(
        &[
            "TASK (LAST HOUR)",
            "FINISHED",
            "SUCCEEDED",
            "FAILED",
            "CANCELLED/EXPIRED",
            "MEAN",
            "P95",
        ],
        rows,
    ));
    out
}

/// `kairos migrate`'s report.
#[derive(Serialize)]
struct Migrated<'a> {
    database: &'a str,
    applied: &'a [String],
    repaired: &'a [String],
}

pub(super) async fn migrate(
    url: &str,
    timeout: Duration,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    let store = Store::connect(url, OpenMode::Create, timeout)
        .await
        .map_err(Error::from)?;
    let report = store.migrate().await.map_err(Error::from)?;
    let m = Migrated {
        database: store.url(),
        applied: &report.applied,
        repaired: &report.repaired,
    };
    out.print(&m, || {
        let mut s = if report.applied.is_empty() {
            format!("{}: the schema is up to date", store.url())
        } else {
            format!("{}: applied {}", store.url(), report.applied.join(", "))
        };
        if !report.repaired.is_empty() {
            s.push_str(&format!("; repaired: {}", report.repaired.join(", ")));
        }
        s
    })
}

fn queues_table(queues: &[QueueInfo]) -> String {
    let rows = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.queued.to_string(),
                q.running.to_string(),
                q.concurrency.map_or("-".into(), |c| c.to_string()),
                match (q.rate_limit, q.rate_window) {
                    (Some(n), Some(w)) => format!("{n}/{}", format_duration(w)),
                    _ => "-".into(),
                },
                if q.paused { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    table(
        &[
            "QUEUE",
            "QUEUED",
            "RUNNING",
            "CONCURRENCY",
            "RATE LIMIT",
            "PAUSED",
        ],
        rows,
    )
}

fn nodes_table(nodes: &[NodeInfo], now: DateTime<Utc>) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            let age = (now - n.heartbeat_at).num_seconds().max(0);
            vec![
                n.id.clone(),
                n.name.clone(),
                n.hostname.clone(),
                n.pid.to_string(),
                n.version.clone(),
                rfc3339(n.started_at),
                format!("{} ({age}s ago)", rfc3339(n.heartbeat_at)),
                if n.alive || n.status != "running" {
                    n.status.clone()
                } else {
                    "dead (silent)".into()
                },
                if n.alive { "yes" } else { "no" }.into(),
                if n.paused { "yes" } else { "no" }.into(),
                n.running.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "NODE",
            "NAME",
            "HOST",
            "PID",
            "VERSION",
            "STARTED",
            "LAST HEARTBEAT",
            "STATUS",
            "ALIVE",
            "PAUSED",
            "RUNNING",
        ],
        rows,
    )
}

fn tasks_table(tasks: &[TaskInfo]) -> String {
    let rows = tasks
        .iter()
        .map(|t| {
            let params = t.params_schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            vec![
                t.name.clone(),
                t.queue.clone(),
                t.priority.to_string(),
                t.max_retries.to_string(),
                format_duration(t.retry_delay),
                format_duration(t.timeout),
                t.max_instances.map_or("-".into(), |m| m.to_string()),
                if params.is_empty() {
                    "-".into()
                } else {
                    params
                },
                t.location.clone(),
            ]
        })
        .collect();
    table(
        &[
            "TASK",
            "QUEUE",
            "PRIORITY",
            "RETRIES",
            "RETRY_DELAY",
            "TIMEOUT",
            "MAX_INSTANCES",
            "PARAMS",
            "DEFINED AT",
        ],
        rows,
    )
}
