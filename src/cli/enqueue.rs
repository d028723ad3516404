//! `kairos enqueue TASK ...` and `kairos enqueue --batch runs.jsonl`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde::Serialize;

use super::output::{CliError, Out, clip, rfc3339};
use super::{parse_duration_arg, parse_json, parse_tag, parse_time};
use crate::model::Run;
use crate::ops::{Admin, Enqueue};

#[derive(Debug, Args)]
pub(super) struct EnqueueArgs {
    /// Task name.
    #[arg(required_unless_present = "batch", conflicts_with = "batch")]
    task: Option<String>,
    /// Params as a JSON object, e.g. '{"doc_id": "42"}'.
    #[arg(long)]
    params: Option<String>,
    /// Start no earlier than this RFC 3339 time.
    #[arg(long, conflicts_with = "in_")]
    at: Option<String>,
    /// Start after this delay, e.g. 10m.
    // Hyphen values are taken, so that `--in -5m` is told durations cannot be negative
    // rather than that `-5m` is an unknown flag (likewise below).
    #[arg(long = "in", id = "in_", value_name = "DELAY", value_parser = parse_duration_arg, allow_hyphen_values = true)]
    in_: Option<Duration>,
    /// Priority (lower runs first); default the task's.
    #[arg(long, allow_negative_numbers = true)]
    priority: Option<i32>,
    /// Limit of one attempt (default the task's), e.g. 5m.
    #[arg(long, value_parser = parse_duration_arg, allow_hyphen_values = true)]
    timeout: Option<Duration>,
    /// Retries after a failed attempt, 0 to 10000 (default the task's).
    #[arg(long, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(0..=crate::ops::MAX_RETRIES as i64))]
    max_retries: Option<u32>,
    /// A key=value tag; repeat for several.
    #[arg(long, value_parser = parse_tag)]
    tag: Vec<(String, String)>,
    /// While a run with this key is queued or running, return it instead of adding one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Expire the run (never start it) if it has not started this long after now.
    #[arg(long, value_parser = parse_duration_arg, allow_hyphen_values = true)]
    ttl: Option<Duration>,
    /// POST the finished run as JSON to this URL.
    #[arg(long)]
    callback_url: Option<String>,
    /// Enqueue every run of this JSON-lines file in one transaction, all or nothing.
    /// Each line: {"task", "params", "at" | "in", "priority", "timeout", "max_retries",
    /// "tags", "idempotency_key"} (all but task optional).
    #[arg(long, conflicts_with_all = ["params", "at", "in_", "priority", "timeout", "max_retries", "tag", "idempotency_key", "ttl", "callback_url"])]
    batch: Option<PathBuf>,
}

/// One line of a batch file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    task: String,
    #[serde(default)]
    params: Option<serde_json::Value>,
    #[serde(default, alias = "run_at")]
    at: Option<String>,
    #[serde(default, rename = "in", alias = "delay")]
    in_: Option<String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    max_retries: Option<u32>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    callback_url: Option<String>,
}

#[derive(Serialize)]
struct EnqueuedRun<'a> {
    #[serde(flatten)]
    run: &'a Run,
    existing: bool,
}

pub(super) async fn run(
    args: EnqueueArgs,
    admin: &Admin,
    out: &mut Out<'_>,
) -> Result<(), CliError> {
    if let Some(path) = &args.batch {
        return batch(path, admin, out).await;
    }
    let task = args.task.clone().unwrap_or_default();
    let mut e = Enqueue::new(task.clone());
    if let Some(p) = &args.params {
        e = e.params(parse_json(p, "--params")?);
    }
    if let Some(at) = &args.at {
        e = e.at(parse_time(at, "--at")?);
    }
    if let Some(d) = args.in_ {
        e = e.delay(d);
    }
    if let Some(p) = args.priority {
        e = e.priority(p);
    }
    if let Some(t) = args.timeout {
        e = e.timeout(t);
    }
    if let Some(n) = args.max_retries {
        e = e.max_retries(n);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in args.tag {
        // A second value would silently replace the first.
        if !seen.insert(k.clone()) {
            return Err(CliError::usage(format!(
                "--tag: key `{k}` is given twice; a run has one value per tag key"
            )));
        }
        e = e.tag(k, v);
    }
    if let Some(k) = args.idempotency_key {
        e = e.idempotency_key(k);
    }
    if let Some(t) = args.ttl {
        e = e.ttl(t);
    }
    if let Some(u) = args.callback_url {
        e = e.callback_url(u);
    }
    let enqueued = admin.enqueue(e).await?;
    let run = admin.run(enqueued.id).await?;
    out.print(
        &EnqueuedRun {
            run: &run,
            existing: enqueued.existing,
        },
        || {
            if enqueued.existing {
                format!(
                    "run {} of `{task}` with this idempotency key is already {}; nothing added",
                    run.id, run.status
                )
            } else {
                format!(
                    "enqueued run {} of `{task}` for {}",
                    run.id,
                    rfc3339(run.run_at)
                )
            }
        },
    )
}

async fn batch(path: &PathBuf, admin: &Admin, out: &mut Out<'_>) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            "invalid_input",
            format!("--batch: cannot read {}: {e}", path.display()),
        )
    })?;
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        match parse_line(line) {
            Ok(e) => items.push((n, e)),
            Err(msg) => problems.push((n, msg)),
        }
    }
    if !problems.is_empty() {
        // The lines that did parse are checked too, so that one pass names every bad
        // line, not only those that are not JSON.
        let (lines, parsed): (Vec<usize>, Vec<Enqueue>) = items.into_iter().unzip();
        if let Err(crate::Error::Batch { errors, .. }) = admin.prepare_many(parsed).await {
            problems.extend(
                errors
                    .iter()
                    .map(|(i, e)| (lines[*i], by_line(&e.to_string(), &lines))),
            );
        }
        problems.sort_by_key(|(n, _)| *n);
        let named: Vec<String> = problems
            .iter()
            .map(|(n, msg)| format!("{}:{n}: {msg}", path.display()))
            .collect();
        return Err(CliError::new(
            "invalid_batch",
            format!(
                "{} invalid line(s), nothing was enqueued: {}",
                named.len(),
                named.join("; ")
            ),
        ));
    }
    if items.is_empty() {
        return Err(CliError::new(
            "invalid_batch",
            format!(
                "--batch: {} holds no runs (one JSON object per line)",
                path.display()
            ),
        ));
    }
    let lines: Vec<usize> = items.iter().map(|(n, _)| *n).collect();
    let result = admin
        .enqueue_many(items.into_iter().map(|(_, e)| e).collect())
        .await;
    let enqueued = match result {
        Ok(v) => v,
        Err(crate::Error::Batch { errors, .. }) => {
            let msgs: Vec<String> = errors
                .iter()
                .map(|(i, e)| {
                    let e = by_line(&e.to_string(), &lines);
                    format!("{}:{}: {e}", path.display(), lines[*i])
                })
                .collect();
            return Err(CliError::new(
                "invalid_batch",
                format!(
                    "{} invalid run(s), nothing was enqueued: {}",
                    msgs.len(),
                    msgs.join("; ")
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let added = enqueued.iter().filter(|e| !e.existing).count();
    out.print(&enqueued, || {
        format!(
            "enqueued {added} run(s) from {} ({} already queued by idempotency key); ids {}",
            path.display(),
            enqueued.len() - added,
            id_ranges(&enqueued.iter().map(|e| e.id).collect::<Vec<_>>())
        )
    })
}

/// A batch error names other items as `runs[i]`, counting the runs given; in a file
/// they are lines (blank ones skipped), so `runs[i]` becomes `line N`.
fn by_line(message: &str, lines: &[usize]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("runs[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "runs[".len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match (
            after[..digits].parse::<usize>(),
            after[digits..].starts_with(']'),
        ) {
            (Ok(i), true) if i < lines.len() => {
                out.push_str(&format!("line {}", lines[i]));
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str("runs[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn parse_line(line: &str) -> Result<Enqueue, String> {
    let l: BatchLine = serde_json::from_str(line)
        .map_err(|e| format!("not a run object ({e}): {}", clip(line)))?;
    let mut e = Enqueue::new(l.task);
    if let Some(p) = l.params {
        e = e.params(p);
    }
    if let (Some(_), Some(_)) = (&l.at, &l.in_) {
        return Err(
            "give either a start time (\"at\", or \"run_at\") or a delay (\"in\", or \"delay\"), \
             not both"
                .into(),
        );
    }
    if let Some(at) = &l.at {
        e = e.at(parse_time(at, "at").map_err(|e| e.to_string())?);
    }
    if let Some(d) = &l.in_ {
        e = e.delay(parse_duration_arg(d).map_err(|m| format!("in: {m}"))?);
    }
    if let Some(p) = l.priority {
        e = e.priority(p);
    }
    if let Some(t) = &l.timeout {
        e = e.timeout(parse_duration_arg(t).map_err(|m| format!("timeout: {m}"))?);
    }
    if let Some(n) = l.max_retries {
        e = e.max_retries(n);
    }
    for (k, v) in l.tags {
        e = e.tag(k, v);
    }
    if let Some(k) = l.idempotency_key {
        e = e.idempotency_key(k);
    }
    if let Some(t) = &l.ttl {
        e = e.ttl(parse_duration_arg(t).map_err(|m| format!("ttl: {m}"))?);
    }
    if let Some(u) = l.callback_url {
        e = e.callback_url(u);
    }
    Ok(e)
}

/// `1-3, 7` for ids 1, 2, 3, 7.
fn id_ranges(ids: &[i64]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn other_items_are_named_by_their_line() {
        let lines = [1, 3, 4];
        assert_eq!(
            super::by_line("the key `k` is also given to runs[1] of this batch", &lines),
            "the key `k` is also given to line 3 of this batch"
        );
        // Not an item reference: left as written.
        assert_eq!(
            super::by_line("runs[x] and runs[9]", &lines),
            "runs[x] and runs[9]"
        );
    }
}
