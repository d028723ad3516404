//! `kairos runs ...`: list (filtered, paginated), show, cancel, retry, delete.

use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;

use super::output::{CliError, Out, fields, opt_time, rfc3339, table, truncate};
use super::{parse_since, parse_tag};
use crate::model::{Run, RunFilter, RunLog, RunStatus};
use crate::ops::{Admin, CancelResult};
use crate::webhook::RunDelivery;

#[derive(Debug, Subcommand)]
pub(super) enum RunsCmd {
    /// Runs, newest first, a page at a time.
    List {
        /// Only runs with this status (queued, running, succeeded, failed, timed_out,
        /// cancelled, expired); repeat for several.
        #[arg(long)]
        status: Vec<RunStatus>,
        /// Only runs of this task.
        #[arg(long)]
        task: Option<String>,
        /// Only runs in this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only runs of this job.
        #[arg(long)]
        job: Option<String>,
        /// Only runs with this tag (key=value); repeat to require several.
        #[arg(long, value_parser = parse_tag)]
        tag: Vec<(String, String)>,
        /// Only runs enqueued since this age (e.g. 1h) or RFC 3339 time.
        #[arg(long)]
        created_after: Option<String>,
        /// Only runs enqueued before this age (e.g. 1h) or RFC 3339 time.
        #[arg(long)]
        created_before: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        page: u64,
        /// Runs per page.
        #[arg(long, alias = "limit", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        page_size: u64,
    },
    /// One run in full, with its history (earlier attempts, retries, snoozes).
    Show {
        /// Run id.
        #[arg(value_parser = parse_run_id)]
        id: i64,
    },
    /// Cancel a queued run at once, or a running one (cooperatively, then dropped).
    Cancel {
        /// Run id.
        #[arg(value_parser = parse_run_id)]
        id: i64,
    },
    /// Live progress bars of running runs (stage, attempt, elapsed time), until the
    /// run finishes (with an ID) or Ctrl-C; plain lines when the output is not a
    /// terminal; with --json, the events as JSON lines.
    Watch {
        /// Watch this run until it finishes.
        id: Option<i64>,
        /// Only runs of this task.
        #[arg(long, conflicts_with = "id")]
        task: Option<String>,
        /// Only runs of this job.
        #[arg(long, conflicts_with = "id")]
        job: Option<String>,
        /// Only runs with this tag (key=value).
        #[arg(long, value_parser = parse_tag, conflicts_with = "id")]
        tag: Option<(String, String)>,
    },
    /// The lines a run's task wrote with `ctx.log`, oldest first.
    Logs {
        /// Run id.
        #[arg(value_parser = parse_run_id)]
        id: i64,
        /// Keep printing new lines until the run finishes.
        #[arg(long, short)]
        follow: bool,
    },
    /// Queue a failed, timed-out or cancelled run again as its next attempt.
    Retry {
        /// Run id.
        #[arg(value_parser = parse_run_id)]
        id: i64,
    },
    /// Delete a run that is not running, with its history.
    Delete {
        /// Run id.
        #[arg(value_parser = parse_run_id)]
        id: i64,
    },
    /// Delete finished runs older than an age (with their history and logs); prints
    /// how many.
    Cleanup {
        /// Finished more than this long ago, e.g. 24h or 7d.
        #[arg(long, value_parser = super::parse_duration_arg)]
        older_than: std::time::Duration,
        /// Only runs with this final status; repeat for several (default: every
        /// finished status).
        #[arg(long)]
        status: Vec<RunStatus>,
    },
}

#[derive(Serialize)]
struct CleanedUp {
    deleted: u64,
}

/// `runs show`: the run, for a queued one when it should start and end, and its
/// webhook delivery attempts.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    run: &'a Run,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimate: Option<crate::model::RunEstimate>,
    deliveries: &'a [RunDelivery],
}

#[derive(Serialize)]
struct Cancelled<'a> {
    #[serde(flatten)]
    run: &'a Run,
    outcome: CancelResult,
}

#[derive(Serialize)]
struct DeletedRun {
    id: i64,
    deleted: bool,
    status: RunStatus,
}

pub(super) async fn run(
    cmd: RunsCmd,
    admin: &Admin,
    now: DateTime<Utc>,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    match cmd {
        RunsCmd::List {
            status,
            task,
            queue,
            job,
            tag,
            created_after,
            created_before,
            page,
            page_size,
        } => {
            let mut filter = RunFilter::new().page(page, page_size);
            filter.status = status;
            filter.task = task;
            filter.queue = queue;
            filter.job = job;
            filter.tags = tag;
            filter.created_after = created_after
                .map(|s| parse_since(&s, now, "--created-after"))
                .transpose()?;
            filter.created_before = created_before
                .map(|s| parse_since(&s, now, "--created-before"))
                .transpose()?;
            let page = admin.runs(&filter).await?;
            out.print(&page, || {
                let pages = page.total.div_ceil(page.page_size).max(1);
                format!(
                    "{}\npage {} of {pages} ({} runs)",
                    runs_table(&page.runs),
                    page.page,
                    page.total
                )
            })
        }
        RunsCmd::Show { id } => {
            let run = admin.run(id).await?;
            let estimate = admin.estimate(&run).await?;
            let deliveries = admin.deliveries(id).await?;
            // The node by the name its operator knows it by, too.
            let node = match &run.node_id {
                Some(id) => admin.node(id).await?,
                None => None,
            };
            out.print(
                &Shown {
                    run: &run,
                    estimate: estimate.clone(),
                    deliveries: &deliveries,
                },
                || {
                    let mut s = run_detail(&run, node.as_ref().map(|n| n.name.as_str()));
                    s.push_str(&deliveries_text(&run, &deliveries));
                    if let Some(e) = estimate {
                        // A held run's times hold only if released now: said so first,
                        // rather than as a start that will not happen.
                        let times = match &e.held {
                            Some(held) => format!(
                                "held: {held}; released now, it would start {} and end {}",
                                rfc3339(e.start),
                                opt_time(e.completion)
                            ),
                            None => format!(
                                "starts {}, ends {}",
                                rfc3339(e.start),
                                opt_time(e.completion)
                            ),
                        };
                        s.push_str(&format!("\n\nestimate: {} run(s) ahead; {times}", e.ahead));
                    }
                    s
                },
            )
        }
        RunsCmd::Cancel { id } => {
            let outcome = admin.cancel_run(id).await?;
            let run = admin.run(id).await?;
            out.print(&Cancelled { run: &run, outcome }, || match outcome {
                CancelResult::Cancelled => format!("cancelled run {id}"),
                CancelResult::Requested => format!(
                    "cancel requested for run {id}: its node asks the task to stop within a \
                     second, and drops it if it has not stopped 5 s later (the node's \
                     cancel_grace)"
                ),
            })
        }
        RunsCmd::Retry { id } => {
            let run = admin.retry_run(id).await?;
            out.print(&run, || {
                format!(
                    "queued run {id} again for attempt {} of {}",
                    run.attempt + 1,
                    run.max_attempts
                )
            })
        }
        RunsCmd::Logs { id, follow } => logs(admin, id, follow, out).await,
        RunsCmd::Watch { id, task, job, tag } => {
            let mut filter = crate::events::EventFilter::all();
            filter.run_id = id;
            filter.task = task;
            filter.job = job;
            filter.tag = tag;
            super::watch::watch(super::watch::Watch { run: id, filter }, admin, out).await
        }
        RunsCmd::Cleanup { older_than, status } => {
            let deleted = admin.cleanup_runs(older_than, &status).await?;
            out.print(&CleanedUp { deleted }, || {
                format!(
                    "deleted {deleted} finished run(s) older than {}",
                    crate::schedule::format_duration(older_than)
                )
            })
        }
        RunsCmd::Delete { id } => {
            let status = admin.delete_run(id).await?;
            out.print(
                &DeletedRun {
                    id,
                    deleted: true,
                    status,
                },
                || format!("deleted run {id} ({status})"),
            )
        }
    }
}

/// Prints a run's log; with `follow`, polls for new lines until the run has finished
/// (and its last lines are printed). JSON: an array, or one object per line when
/// following.
async fn logs(admin: &Admin, id: i64, follow: bool, out: &mut Out<'_>) -> Result<(), CliError> {
    let line = |l: &RunLog| {
        format!(
            "{}  attempt {}  {:<5}  {}",
            rfc3339(l.at),
            l.attempt,
            l.level,
            l.message
        )
    };
    if !follow {
        let lines = admin.run_logs(id, 0, 10_000).await?;
        return out.print(&lines, || {
            if lines.is_empty() {
                "(no log lines)".into()
            } else {
                lines.iter().map(line).collect::<Vec<_>>().join("\n")
            }
        });
    }
    let mut after = 0;
    loop {
        // Read the status first: lines written before it finished are then all seen.
        let finished = admin.run(id).await?.status.is_finished();
        for l in admin.run_logs(id, after, 1000).await? {
            after = l.id;
            out.print_line(&l, || line(&l))?;
        }
        if finished {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Attempts as `made/allowed` while the run may still make more, else the attempts it
/// made.
fn attempts(r: &Run) -> String {
    if r.status.is_finished() {
        r.attempt.to_string()
    } else {
        r.attempts_text()
    }
}

pub(super) fn runs_table(runs: &[Run]) -> String {
    let rows = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.task.clone(),
                r.job.clone().unwrap_or_else(|| "-".into()),
                r.queue.clone(),
                r.status.to_string(),
                attempts(r),
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
            "QUEUE",
            "STATUS",
            "ATTEMPTS",
            "PRI",
            "SCHEDULED FOR",
            "FINISHED",
            "ERROR",
        ],
        rows,
    )
}

/// The "deliveries:" block of `runs show` (empty for a run without a callback URL).
fn deliveries_text(r: &Run, deliveries: &[RunDelivery]) -> String {
    if deliveries.is_empty() {
        return match &r.callback_url {
            Some(_) if r.status.is_finished() => "\n\ndeliveries: none recorded yet".into(),
            _ => String::new(),
        };
    }
    let mut s = String::from("\n\ndeliveries:");
    for d in deliveries {
        let outcome = match (&d.error, d.status_code) {
            (None, Some(code)) => format!("delivered (HTTP {code})"),
            (None, None) => "delivered".into(),
            (Some(e), None) if e == crate::webhook::IN_PROGRESS => "in progress".into(),
            (Some(e), _) => format!("failed: {}", truncate(e, 200)),
        };
        s.push_str(&format!(
            "\n  {}  attempt {}  {outcome}",
            rfc3339(d.at),
            d.attempt
        ));
        if r.callback_url.as_deref() != Some(d.url.as_str()) {
            s.push_str(&format!("  (to {})", d.url));
        }
    }
    s
}

fn run_detail(r: &Run, node_name: Option<&str>) -> String {
    let tags = if r.tags.is_empty() {
        "-".to_string()
    } else {
        r.tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut s = fields(&[
        ("id", r.id.to_string()),
        ("task", r.task.clone()),
        ("queue", r.queue.clone()),
        ("job", r.job.clone().unwrap_or_else(|| "-".into())),
        ("origin", r.origin.to_string()),
        ("status", r.status.to_string()),
        // Worded alike whether the run may still make more attempts or is finished.
        (
            "attempts",
            format!("{} of at most {}", r.attempt, r.max_attempts),
        ),
        ("priority", r.priority.to_string()),
        ("params", r.params.to_string()),
        ("tags", tags),
        (
            "idempotency key",
            r.idempotency_key.clone().unwrap_or_else(|| "-".into()),
        ),
        ("scheduled for", rfc3339(r.scheduled_for)),
        ("run at", rfc3339(r.run_at)),
        ("created", rfc3339(r.created_at)),
        ("started", opt_time(r.started_at)),
        ("finished", opt_time(r.finished_at)),
        (
            "node",
            match (&r.node_id, node_name) {
                (Some(id), Some(name)) => format!("{id} ({name})"),
                (Some(id), None) => id.clone(),
                (None, _) => "-".into(),
            },
        ),
        ("lease until", opt_time(r.lease_until)),
        (
            "cancel requested",
            if r.cancel_requested { "yes" } else { "no" }.into(),
        ),
        (
            "result",
            r.result.as_ref().map_or("-".into(), |v| v.to_string()),
        ),
        ("error", r.error.clone().unwrap_or_else(|| "-".into())),
        (
            "progress",
            match (r.progress, &r.progress_message) {
                (Some(p), Some(m)) => format!("{p}% {m}"),
                (Some(p), None) => format!("{p}%"),
                (None, _) => "-".into(),
            },
        ),
        ("stage", r.stage.clone().unwrap_or_else(|| "-".into())),
        ("expires", opt_time(r.expires_at)),
        (
            "callback url",
            r.callback_url.clone().unwrap_or_else(|| "-".into()),
        ),
    ]);
    if !r.history.is_empty() {
        s.push_str("\n\nhistory:");
        for h in &r.history {
            // A run taken back says from which node: the one that died or was cut off.
            let from = match (&h.event, &h.node_id) {
                (crate::model::RunEventKind::Recovered, Some(node)) => {
                    format!(" (from node {node})")
                }
                _ => String::new(),
            };
            // A message that names its event already ("cancelled: its job was
            // deleted") is not prefixed with it a second time.
            let event = h.event.to_string();
            let message = h.message.as_deref().map(|m| {
                m.strip_prefix(event.as_str())
                    .and_then(|rest| rest.strip_prefix(": "))
                    .unwrap_or(m)
            });
            s.push_str(&format!(
                "\n  {}  attempt {}  {event}{from}{}",
                rfc3339(h.at),
                h.attempt,
                message.map_or(String::new(), |m| format!(": {}", truncate(m, 200)))
            ));
        }
    }
    s
}

/// A run id from the command line, refused with what it is when it is not one.
fn parse_run_id(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|_| {
        format!(
            "`{}` is not a run id (a whole number)",
            crate::error::clip(s)
        )
    })
}
