//! Runs through the `kairos` binary, against a running node: `enqueue` (with tags,
//! delays and idempotency keys), `enqueue --batch` (all or nothing, naming bad lines),
//! `runs list` filters and pagination, `runs show`, `runs retry` (never past the
//! maximum attempts, earlier errors kept in the history), `runs cancel` and
//! `runs delete`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use kairos::{Registry, RunEventKind, RunStatus, TaskDef};
use serde_json::{Value, json};

use common::cli::{Node, blocks, cli, cli_at_once, enqueue, fails, hello, node_builder};

// ---------------------------------------------------------------------------------
// Running the binary

/// `kairos runs list ARGS --json`.
async fn list(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["runs", "list"];
    all.extend_from_slice(args);
    all.push("--json");
    cli(url, &all).await.ok().json()
}

/// The ids of a `runs list --json` page.
fn ids(page: &Value) -> Vec<i64> {
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------
// A node

/// The `attempts` line of `runs show`, its spaces collapsed.
fn attempts_line(shown: &str) -> String {
    let line = shown
        .lines()
        .find(|l| l.starts_with("attempts "))
        .unwrap_or_else(|| panic!("an attempts line: {shown}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A node with `hello`, `fails` (one quick retry), `blocks` and `send` (queue `mail`).
async fn start_node(url: &str) -> Node {
    let here = "tests/cli_runs.rs";
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef {
            max_retries: Some(1),
            retry_delay: Some(Duration::from_millis(10)),
            ..TaskDef::new("fails", fails, here)
        },
        TaskDef::new("blocks", blocks, here),
        TaskDef {
            queue: Some("mail"),
            ..TaskDef::new("send", hello, here)
        },
    ])
    .unwrap();
    let builder = node_builder(url, registry, None).cancel_grace(Duration::from_millis(500));
    Node::start_with(url, builder).await
}

// ---------------------------------------------------------------------------------
// retry

#[tokio::test]
async fn runs_retry_queues_a_failed_run_again_within_its_max_attempts() {
    for db in common::databases("runs_retry_queues_a_failed_run_again").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let id = enqueue(url, &["fails"]).await;
        let run = common::wait_status(&node.admin, id, RunStatus::Failed).await;
        assert_eq!(
            (run.attempt, run.max_attempts),
            (2, 2),
            "one retry, then failed"
        );
        assert_eq!(run.error.as_deref(), Some("attempt 2 failed"));

        let out = cli(url, &["runs", "retry", &id.to_string()]).await.ok();
        assert!(
            out.stdout
                .contains(&format!("queued run {id} again for attempt 3 of 3")),
            "{out:#?}"
        );
        let run = common::wait_status(&node.admin, id, RunStatus::Failed).await;
        assert_eq!((run.attempt, run.max_attempts), (3, 3));
        assert_eq!(run.error.as_deref(), Some("attempt 3 failed"));

        // Every earlier attempt's error stays in the history.
        let shown = cli(url, &["runs", "show", &id.to_string(), "--json"])
            .await
            .ok()
            .json();
        let history = shown["history"].as_array().expect("a history");
        for n in 1..=2 {
            assert!(
                history.iter().any(|h| h["attempt"] == n
                    && h["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("attempt {n} failed")))),
                "attempt {n}'s error: {shown:#}"
            );
        }
        assert!(
            history.iter().any(|h| h["event"] == "manual_retry"),
            "{shown:#}"
        );
        for h in history {
            assert!(h["attempt"].as_u64().unwrap() <= 3, "{h}");
        }
        let text = cli(url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(text.contains("history:"), "{text}");
        assert!(
            text.contains("attempt 1 failed") && text.contains("attempt 2 failed"),
            "{text}"
        );
        assert_eq!(attempts_line(&text), "attempts 3 of at most 3", "{text}");
        let table = cli(url, &["runs", "list"]).await.ok().stdout;
        assert!(!table.contains("4/3") && !table.contains("3/2"), "{table}");
        node.stop().await;
    }
}

#[tokio::test]
async fn a_run_without_retries_can_be_retried_by_hand() {
    for db in common::databases("a_run_without_retries_can_be_retried").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let id = enqueue(url, &["fails", "--max-retries", "0"]).await;
        let run = common::wait_status(&node.admin, id, RunStatus::Failed).await;
        assert_eq!((run.attempt, run.max_attempts), (1, 1));
        let retried = cli(url, &["runs", "retry", &id.to_string(), "--json"])
            .await
            .ok()
            .json();
        assert_eq!(retried["status"], "queued");
        assert!(
            retried["attempt"].as_u64() < retried["max_attempts"].as_u64(),
            "room for the next attempt: {retried}"
        );
        let run = common::wait_status(&node.admin, id, RunStatus::Failed).await;
        assert_eq!((run.attempt, run.max_attempts), (2, 2));
        assert!(
            run.history
                .iter()
                .any(|h| h.event == RunEventKind::ManualRetry)
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn only_failed_timed_out_or_cancelled_runs_can_be_retried() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let url = db.url.as_str();
    let ok = enqueue(url, &["hello"]).await;
    common::wait_status(&node.admin, ok, RunStatus::Succeeded).await;
    let err = cli(url, &["runs", "retry", &ok.to_string()]).await.fails();
    assert!(
        err.contains("succeeded") && err.contains("enqueue a new run"),
        "{err}"
    );
    let later = enqueue(url, &["hello", "--in", "1h"]).await;
    let err = cli(url, &["runs", "retry", &later.to_string()])
        .await
        .fails();
    assert!(err.contains("queued"), "{err}");
    let err = cli(url, &["runs", "retry", "999999"]).await.fails();
    assert!(err.contains("no run with id 999999"), "{err}");

    // A cancelled run may be retried: it runs now (the node hears the CLI's commit).
    cli(url, &["runs", "cancel", &later.to_string()]).await.ok();
    cli(url, &["runs", "retry", &later.to_string()]).await.ok();
    let run = common::wait_status(&node.admin, later, RunStatus::Succeeded).await;
    assert!(
        run.history
            .iter()
            .any(|h| h.event == RunEventKind::ManualRetry),
        "{run:?}"
    );
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// cancel, delete

#[tokio::test]
async fn runs_cancel_on_a_finished_run_exits_1() {
    for db in common::databases("runs_cancel_on_a_finished_run_exits_1").await {
        let node = start_node(&db.url).await;
        let id = enqueue(&db.url, &["hello"]).await;
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
        let err = cli(&db.url, &["runs", "cancel", &id.to_string()])
            .await
            .fails();
        assert!(err.contains("already finished (succeeded)"), "{err}");
        assert_eq!(
            node.admin.run(id).await.unwrap().status,
            RunStatus::Succeeded
        );
        let out = cli(&db.url, &["runs", "cancel", &id.to_string(), "--json"]).await;
        assert_eq!(out.code, 1);
        assert_eq!(out.json()["error"]["code"], "conflict");
        let err = cli(&db.url, &["runs", "cancel", "424242"]).await.fails();
        assert!(err.contains("no run with id 424242"), "{err}");
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_cancel_stops_a_running_run() {
    for db in common::databases("runs_cancel_stops_a_running_run").await {
        let node = start_node(&db.url).await;
        let id = enqueue(&db.url, &["blocks"]).await;
        common::wait_status(&node.admin, id, RunStatus::Running).await;
        // Attempts are worded as for a finished run.
        let shown = cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert_eq!(attempts_line(&shown), "attempts 1 of at most 1", "{shown}");
        let out = cli(&db.url, &["runs", "cancel", &id.to_string()])
            .await
            .ok();
        assert!(out.stdout.contains("cancel requested"), "{out:#?}");
        let run = common::wait_status(&node.admin, id, RunStatus::Cancelled).await;
        assert!(run.finished_at.is_some());
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_delete_removes_a_run_that_is_not_running() {
    for db in common::databases("runs_delete_removes_a_run").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let done = enqueue(url, &["hello"]).await;
        common::wait_status(&node.admin, done, RunStatus::Succeeded).await;
        let out = cli(url, &["runs", "delete", &done.to_string()]).await.ok();
        assert_eq!(out.stdout.trim(), format!("deleted run {done} (succeeded)"));
        assert!(node.admin.run(done).await.is_err(), "gone");
        let err = cli(url, &["runs", "show", &done.to_string()]).await.fails();
        assert!(err.contains(&format!("no run with id {done}")), "{err}");
        let err = cli(url, &["runs", "delete", &done.to_string()])
            .await
            .fails();
        assert!(err.contains("no run"), "{err}");

        let queued = enqueue(url, &["hello", "--in", "1h", "--tag", "t=1"]).await;
        cli(url, &["runs", "delete", &queued.to_string()])
            .await
            .ok();
        assert_eq!(
            list(url, &["--tag", "t=1"]).await["total"],
            0,
            "tags go with it"
        );

        let running = enqueue(url, &["blocks"]).await;
        common::wait_status(&node.admin, running, RunStatus::Running).await;
        let err = cli(url, &["runs", "delete", &running.to_string()])
            .await
            .fails();
        assert!(
            err.contains("is running") && err.contains("kairos runs cancel"),
            "{err}"
        );
        assert_eq!(
            node.admin.run(running).await.unwrap().status,
            RunStatus::Running
        );
        cli(url, &["runs", "cancel", &running.to_string()])
            .await
            .ok();
        common::wait_status(&node.admin, running, RunStatus::Cancelled).await;
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// idempotency keys

#[tokio::test]
async fn an_idempotency_key_returns_the_same_run_while_it_is_unfinished() {
    for db in common::databases("an_idempotency_key_returns_the_same_run").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let args = [
            "enqueue",
            "hello",
            "--in",
            "1h",
            "--idempotency-key",
            "k",
            "--json",
        ];
        let first = cli(url, &args).await.ok().json();
        assert_eq!(first["existing"], false);
        let second = cli(url, &args).await.ok().json();
        assert_eq!(second["id"], first["id"], "the same run");
        assert_eq!(second["existing"], true);
        let text = cli(url, &args[..6]).await.ok().stdout;
        assert!(text.contains("already queued; nothing added"), "{text}");
        assert_eq!(node.total_runs().await, 1);

        let other = enqueue(url, &["hello", "--in", "1h", "--idempotency-key", "other"]).await;
        assert_ne!(json!(other), first["id"]);

        // The key held by a run of another task, or with other params, is refused on
        // every path: returning that run would hand back something not asked for.
        let held = first["id"].as_i64().unwrap();
        for args in [
            &["enqueue", "send", "--idempotency-key", "k"][..],
            &[
                "enqueue",
                "hello",
                "--params",
                r#"{"who": "x"}"#,
                "--idempotency-key",
                "k",
            ],
        ] {
            let err = cli(url, args).await.fails();
            assert!(
                err.contains(&format!(
                    "belongs to run {held} (task `hello`, still queued)"
                )),
                "{args:?}: {err}"
            );
        }
        let json_err = cli(
            url,
            &["enqueue", "send", "--idempotency-key", "k", "--json"],
        )
        .await;
        assert_eq!(json_err.code, 1, "{json_err:?}");
        assert_eq!(
            json_err.json()["error"]["code"],
            "idempotency_conflict",
            "{json_err:?}"
        );
        let err = batch_error(
            url,
            &[
                r#"{"task": "hello"}"#,
                r#"{"task": "send", "idempotency_key": "k"}"#,
            ],
        )
        .await;
        assert!(
            err.contains("runs.jsonl:2") && err.contains("belongs to run"),
            "{err}"
        );
        assert_eq!(node.total_runs().await, 2, "nothing added by the refusals");

        // Once finished, the key is free again.
        let id = first["id"].as_i64().unwrap();
        cli(url, &["runs", "cancel", &id.to_string()]).await.ok();
        let third = enqueue(url, &["hello", "--idempotency-key", "k"]).await;
        assert_ne!(third, id);
        common::wait_status(&node.admin, third, RunStatus::Succeeded).await;
        let fourth = enqueue(url, &["hello", "--idempotency-key", "k"]).await;
        assert_ne!(fourth, third);
        assert_eq!(node.total_runs().await, 4);
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueues_with_one_idempotency_key_at_once_make_one_run() {
    for db in common::databases("enqueues_with_one_idempotency_key_at_once").await {
        let node = start_node(&db.url).await;
        for round in 0..5 {
            let key = format!("once{round}");
            let args = [
                "enqueue",
                "hello",
                "--in",
                "1h",
                "--idempotency-key",
                &key,
                "--json",
            ];
            let each = vec![args.map(String::from).to_vec(); 6];
            let outs = cli_at_once(&db.url, each).await;
            let ids: BTreeSet<i64> = outs
                .iter()
                .map(|o| {
                    assert_eq!(o.code, 0, "{o:#?}");
                    o.json()["id"].as_i64().unwrap()
                })
                .collect();
            assert_eq!(ids.len(), 1, "one run for one key: {outs:#?}");
            let fresh = outs
                .iter()
                .filter(|o| o.json()["existing"] == false)
                .count();
            assert_eq!(fresh, 1, "exactly one was added: {outs:#?}");
        }
        assert_eq!(node.total_runs().await, 5);
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// runs list

/// Runs of every kind: 4 `hello` succeeded (3 tagged kb_id=42, 1 kb_id=7), 2 `send`
/// in queue `mail` for later (one then cancelled), 1 `fails` failed, 1 run of job `j`
/// succeeded. Returns the ids in creation order.
async fn a_mix_of_runs(node: &Node, url: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(enqueue(url, &["hello", "--tag", "kb_id=42", "--tag", "team=a"]).await);
    }
    ids.push(enqueue(url, &["hello", "--tag", "kb_id=7"]).await);
    ids.push(enqueue(url, &["send", "--in", "1h"]).await);
    ids.push(enqueue(url, &["send", "--in", "1h"]).await);
    cli(url, &["runs", "cancel", &ids[5].to_string()])
        .await
        .ok();
    ids.push(enqueue(url, &["fails", "--max-retries", "0"]).await);
    cli(
        url,
        &["jobs", "create", "j", "--task", "hello", "--interval", "1h"],
    )
    .await
    .ok();
    let trigger = cli(url, &["jobs", "trigger", "j", "--json"])
        .await
        .ok()
        .json();
    ids.push(trigger["id"].as_i64().unwrap());
    for id in [ids[0], ids[1], ids[2], ids[3], ids[7]] {
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
    }
    common::wait_status(&node.admin, ids[6], RunStatus::Failed).await;
    ids
}

#[tokio::test]
async fn runs_list_filters_by_tag_status_task_queue_job_and_creation_time() {
    for db in common::databases("runs_list_filters").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let all = a_mix_of_runs(&node, url).await;

        let page = list(url, &[]).await;
        assert_eq!(page["total"], 8);

        let tagged = list(url, &["--tag", "kb_id=42"]).await;
        assert_eq!(tagged["total"], 3, "{tagged:#}");
        assert_eq!(ids(&tagged), [all[2], all[1], all[0]], "newest first");
        for r in tagged["runs"].as_array().unwrap() {
            assert_eq!(r["tags"]["kb_id"], "42");
        }
        assert_eq!(
            list(url, &["--tag", "kb_id=42", "--tag", "team=a"]).await["total"],
            3
        );
        assert_eq!(
            list(url, &["--tag", "kb_id=42", "--tag", "team=b"]).await["total"],
            0
        );
        assert_eq!(
            list(url, &["--tag", "kb_id=4"]).await["total"],
            0,
            "exact values"
        );

        let cases: [(&[&str], Vec<i64>); 9] = [
            (
                &["--status", "succeeded"],
                vec![all[7], all[3], all[2], all[1], all[0]],
            ),
            (
                &["--status", "queued", "--status", "cancelled"],
                vec![all[5], all[4]],
            ),
            (&["--status", "failed"], vec![all[6]]),
            (&["--task", "send"], vec![all[5], all[4]]),
            (&["--queue", "mail"], vec![all[5], all[4]]),
            (&["--job", "j"], vec![all[7]]),
            (
                &[
                    "--task",
                    "hello",
                    "--status",
                    "succeeded",
                    "--tag",
                    "kb_id=7",
                ],
                vec![all[3]],
            ),
            (
                &["--created-after", "1h"],
                all.iter().rev().copied().collect(),
            ),
            (&["--created-before", "1h"], vec![]),
        ];
        for (args, expected) in cases {
            let page = list(url, args).await;
            assert_eq!(ids(&page), expected, "{args:?}");
            assert_eq!(page["total"], expected.len(), "{args:?}");
        }
        let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        assert_eq!(list(url, &["--created-after", &future]).await["total"], 0);
        assert_eq!(list(url, &["--created-before", &future]).await["total"], 8);
        assert_eq!(list(url, &["--queue", "default"]).await["total"], 6);

        let out = cli(url, &["runs", "list", "--status", "exploded"]).await;
        assert_eq!(out.code, 2, "{out:#?}");
        assert!(
            out.stderr.contains("succeeded"),
            "lists the valid statuses: {out:#?}"
        );
        let out = cli(url, &["runs", "list", "--created-after", "yesterday"]).await;
        assert_eq!(
            out.code, 2,
            "a malformed flag value is a usage error: {out:#?}"
        );
        assert!(out.stderr.contains("--created-after"), "{out:#?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_list_paginates_with_a_total() {
    for db in common::databases("runs_list_paginates_with_a_total").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let all = a_mix_of_runs(&node, url).await;
        let mut seen = Vec::new();
        for (n, expected_len) in [(1, 3), (2, 3), (3, 2), (4, 0)] {
            let page = list(url, &["--page", &n.to_string(), "--page-size", "3"]).await;
            assert_eq!(page["total"], 8, "page {n}");
            assert_eq!(page["page"], n);
            assert_eq!(page["page_size"], 3);
            assert_eq!(ids(&page).len(), expected_len, "page {n}: {page:#}");
            seen.extend(ids(&page));
        }
        let mut newest_first = all.clone();
        newest_first.reverse();
        assert_eq!(
            seen, newest_first,
            "the pages cover every run once, newest first"
        );

        let limited = list(url, &["--limit", "2"]).await;
        assert_eq!(
            (ids(&limited).len(), limited["page_size"].clone()),
            (2, json!(2))
        );

        let filtered = list(
            url,
            &["--status", "succeeded", "--page", "2", "--page-size", "2"],
        )
        .await;
        assert_eq!(filtered["total"], 5);
        assert_eq!(ids(&filtered), [all[2], all[1]]);

        let text = cli(url, &["runs", "list", "--page-size", "3"])
            .await
            .ok()
            .stdout;
        assert!(text.trim_end().ends_with("page 1 of 3 (8 runs)"), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(char::is_numeric))
                .count(),
            3
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// enqueue --batch

#[tokio::test]
async fn enqueue_batch_enqueues_every_line_in_one_go() {
    for db in common::databases("enqueue_batch_enqueues_every_line").await {
        let node = start_node(&db.url).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("runs.jsonl");
        std::fs::write(
            &file,
            [
                r#"{"task": "hello", "params": {"n": 1}, "tags": {"batch": "b1"}}"#,
                r#"{"task": "hello", "params": {"n": 2}, "tags": {"batch": "b1"}, "priority": -5}"#,
                "",
                r#"{"task": "send", "in": "1h", "tags": {"batch": "b1"}}"#,
                r#"{"task": "hello", "at": "2020-01-01T00:00:00Z", "idempotency_key": "b", "tags": {"batch": "b1"}}"#,
            ]
            .join("\n"),
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let out = cli(&db.url, &["enqueue", "--batch", path]).await.ok();
        assert!(out.stdout.contains("enqueued 4 run(s)"), "{out:#?}");
        let page = list(&db.url, &["--tag", "batch=b1"]).await;
        assert_eq!(page["total"], 4);
        let runs = page["runs"].as_array().unwrap();
        let send = runs.iter().find(|r| r["task"] == "send").unwrap();
        assert_eq!(send["queue"], "mail");
        assert_eq!(send["status"], "queued");
        assert!(runs.iter().any(|r| r["priority"] == -5));
        let batch_ids: BTreeSet<i64> = ids(&page).into_iter().collect();
        assert_eq!(batch_ids.len(), 4);
        for r in runs.iter().filter(|r| r["task"] == "hello") {
            common::wait_status(&node.admin, r["id"].as_i64().unwrap(), RunStatus::Succeeded).await;
        }

        // With --json, one entry per line in order, with `id` and `existing`.
        let json = cli(&db.url, &["enqueue", "--batch", path, "--json"])
            .await
            .ok()
            .json();
        let items = json.as_array().expect("an array");
        assert_eq!(items.len(), 4);
        assert!(
            items
                .iter()
                .all(|i| i["id"].is_i64() && i.get("existing").is_some())
        );
        assert_eq!(node.total_runs().await, 8);
        node.stop().await;
    }
}

/// Writes `lines` as runs.jsonl, runs `enqueue --batch` on it and returns the error.
async fn batch_error(url: &str, lines: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runs.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    cli(url, &["enqueue", "--batch", file.to_str().unwrap()])
        .await
        .fails()
}

#[tokio::test]
async fn a_batch_with_one_bad_line_enqueues_nothing_and_names_the_line() {
    for db in common::databases("a_batch_with_one_bad_line_enqueues_nothing").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let good = r#"{"task": "hello"}"#;

        let err = batch_error(url, &[good, r#"{"task": "helo"}"#, good]).await;
        assert!(err.contains("runs.jsonl:2"), "{err}");
        assert!(err.contains("unknown task `helo`"), "{err}");
        assert!(err.contains("did you mean `hello`"), "{err}");
        assert!(err.contains("nothing was enqueued"), "{err}");

        let err = batch_error(url, &[good, good, "{not json"]).await;
        assert!(err.contains("runs.jsonl:3"), "{err}");

        // One key for two different requests: the other is named by its line too (the
        // blank line counts in the file, not in the batch).
        let err = batch_error(
            url,
            &[
                good,
                "",
                r#"{"task": "hello", "idempotency_key": "k", "params": {"n": 1}}"#,
                r#"{"task": "hello", "idempotency_key": "k", "params": {"n": 2}}"#,
            ],
        )
        .await;
        assert!(
            err.contains("runs.jsonl:4: ") && err.contains("also given to line 3 of this batch"),
            "{err}"
        );

        // Lines that are not JSON and runs that are invalid, named in one pass, in
        // the order of the file.
        let bad_task = r#"{"task": "helo"}"#;
        let err = batch_error(url, &[good, bad_task, "{not json", bad_task]).await;
        assert!(err.starts_with("error: 3 invalid line(s)"), "{err}");
        let at = |line: &str| err.find(line).unwrap_or_else(|| panic!("{line}: {err}"));
        assert!(
            at("runs.jsonl:2") < at("runs.jsonl:3") && at("runs.jsonl:3") < at("runs.jsonl:4"),
            "{err}"
        );

        let err = batch_error(url, &[r#"{"task": "hello", "in": "soon"}"#, good]).await;
        assert!(
            err.contains("runs.jsonl:1") && err.contains("soon"),
            "{err}"
        );

        let err = batch_error(url, &[good, r#"{"task": "hello", "colour": "red"}"#]).await;
        assert!(
            err.contains("runs.jsonl:2") && err.contains("colour"),
            "{err}"
        );

        let err = batch_error(url, &[good, r#"{"task": "hello", "params": [1]}"#]).await;
        assert!(
            err.contains("runs.jsonl:2") && err.contains("object"),
            "{err}"
        );

        let err = batch_error(url, &[good, r#"{"task": "hello", "in": "100000000d"}"#]).await;
        assert!(err.contains("runs.jsonl:2"), "{err}");

        let err = batch_error(url, &["", "  "]).await;
        assert!(err.contains("no runs"), "{err}");

        let err = cli(url, &["enqueue", "--batch", "/no/such/runs.jsonl"])
            .await
            .fails();
        assert!(err.contains("/no/such/runs.jsonl"), "{err}");

        assert_eq!(node.total_runs().await, 0, "nothing was enqueued");
        let out = cli(url, &["enqueue", "hello", "--batch", "x.jsonl"]).await;
        assert_eq!(out.code, 2, "a task and --batch together: {out:#?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn enqueue_with_tags_and_a_delay_is_listed_as_asked() {
    for db in common::databases("enqueue_with_tags_and_a_delay").await {
        let node = start_node(&db.url).await;
        let before = chrono::Utc::now();
        let out = cli(
            &db.url,
            &[
                "enqueue",
                "send",
                "--in",
                "2h",
                "--tag",
                "kb_id=42",
                "--priority",
                "-1",
                "--params",
                r#"{"to":"ada"}"#,
            ],
        )
        .await
        .ok();
        assert!(out.stdout.starts_with("enqueued run "), "{out:#?}");
        let page = list(&db.url, &["--tag", "kb_id=42"]).await;
        let run = &page["runs"][0];
        assert_eq!(run["queue"], "mail");
        assert_eq!(run["priority"], -1);
        assert_eq!(run["params"], json!({"to": "ada"}));
        assert_eq!(run["status"], "queued");
        let at = chrono::DateTime::parse_from_rfc3339(run["run_at"].as_str().unwrap()).unwrap();
        let delay = at.with_timezone(&chrono::Utc) - before;
        assert!(
            delay >= chrono::Duration::hours(2)
                && delay < chrono::Duration::hours(2) + chrono::Duration::minutes(1),
            "{delay}"
        );
        node.stop().await;
    }
}
