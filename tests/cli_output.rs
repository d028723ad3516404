//! What the `kairos` binary prints: `--json` on every command (valid JSON with the
//! documented field names, `id` for a run's id everywhere), errors as
//! `{"error": {"code", "message"}}` with exit status 1 (2 for usage errors), errors
//! without `--json` as one `error:` line and never a Rust backtrace, and a description
//! in the `--help` of every command.

mod common;

use kairos::{Registry, RunStatus, TaskDef};
use serde_json::{Value, json};

use common::cli::{Node, Output, cli, cli_json, fails, hello, kairos, kairos_env};

// ---------------------------------------------------------------------------------
// Checking the output

/// Asserts that `{"error": {"code", "message"}}` is all `out` printed.
fn assert_json_error(out: &Output, status: i32, code: &str) {
    assert_eq!(out.code, status, "{out:#?}");
    let v = out.json();
    let err = v["error"].as_object().expect("an `error` object");
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "only `error` at the top: {v}"
    );
    assert_eq!(err["code"], code, "{v}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {v}"
    );
    assert_eq!(err.len(), 2, "exactly code and message: {v}");
}

/// Asserts that `v` has every key of `keys`.
fn assert_keys(v: &Value, keys: &[&str]) {
    for k in keys {
        assert!(v.get(k).is_some(), "missing `{k}` in {v}");
    }
}

/// Asserts that no object in `v` names a run's id `run_id` (the slot record aside).
fn assert_no_run_id(v: &Value) {
    match v {
        Value::Object(m) => {
            assert!(!m.contains_key("run_id"), "`id`, not `run_id`: {v}");
            m.values().for_each(assert_no_run_id);
        }
        Value::Array(a) => a.iter().for_each(assert_no_run_id),
        _ => {}
    }
}

const RUN_KEYS: &[&str] = &[
    "id",
    "task",
    "queue",
    "job_id",
    "job",
    "origin",
    "params",
    "tags",
    "status",
    "priority",
    "run_at",
    "scheduled_for",
    "attempt",
    "max_attempts",
    "max_retries",
    "retry_delay_ms",
    "timeout_ms",
    "node_id",
    "lease_until",
    "cancel_requested",
    "idempotency_key",
    "result",
    "error",
    "created_at",
    "started_at",
    "finished_at",
];

const JOB_KEYS: &[&str] = &[
    "id",
    "name",
    "task",
    "schedule",
    "params",
    "priority",
    "misfire",
    "max_catch_up",
    "misfire_grace_ms",
    "overlap",
    "enabled",
    "disabled_reason",
    "paused",
    "source",
    "next_run_at",
    "last_fired_at",
    "created_at",
    "updated_at",
];

// ---------------------------------------------------------------------------------
// A node that prepares the database

/// A node with the tasks `hello` and `fails` (queue `mail`), running.
async fn start_node(url: &str) -> Node {
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, "tests/cli_output.rs"),
        TaskDef {
            queue: Some("mail"),
            ..TaskDef::new("fails", fails, "tests/cli_output.rs")
        },
    ])
    .unwrap();
    Node::start(url, registry, None).await
}

// ---------------------------------------------------------------------------------
// --json on every command

#[tokio::test]
async fn jobs_commands_print_json_with_the_documented_fields() {
    for db in common::databases("jobs_commands_print_json").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();

        let job = cli_json(
            url,
            &[
                "jobs",
                "create",
                "tick",
                "--task",
                "hello",
                "--interval",
                "1s",
            ],
        )
        .await;
        assert_keys(&job, JOB_KEYS);
        assert_eq!(job["name"], "tick");
        assert_eq!(job["source"], "api");
        assert_eq!(job["schedule"]["kind"], "interval");
        assert_eq!(job["schedule"]["interval_ms"], 1000);

        let list = cli_json(url, &["jobs", "list"]).await;
        let jobs = list.as_array().expect("jobs list --json is an array");
        assert_eq!(jobs.len(), 1);
        assert_keys(&jobs[0], JOB_KEYS);

        // Wait for the job to fire a slot, so `slots` has something to show.
        common::wait_until("a slot of `tick`", || {
            let admin = node.admin.clone();
            async move {
                let since = chrono::Utc::now() - chrono::Duration::hours(1);
                !admin.job_slots("tick", since, 10).await.unwrap().is_empty()
            }
        })
        .await;
        let slots = cli_json(url, &["jobs", "slots", "tick"]).await;
        let slots = slots.as_array().expect("jobs slots --json is an array");
        assert!(!slots.is_empty());
        for s in slots {
            let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                ["outcome", "reason", "run_id", "scheduled_for"],
                "{s}"
            );
        }
        assert_eq!(slots[0]["outcome"], "ran");
        assert!(slots[0]["run_id"].is_i64(), "{}", slots[0]);
        assert!(slots[0]["reason"].is_null(), "{}", slots[0]);

        let show = cli_json(url, &["jobs", "show", "tick"]).await;
        assert_keys(&show, JOB_KEYS);
        let recent = show["recent_runs"].as_array().expect("recent_runs");
        assert!(!recent.is_empty());
        assert_keys(&recent[0], RUN_KEYS);
        assert_no_run_id(&show);

        let paused = cli_json(url, &["jobs", "pause", "tick"]).await;
        assert_eq!(paused["paused"], true);
        assert!(paused["next_run_at"].is_null(), "{paused}");
        let resumed = cli_json(url, &["jobs", "resume", "tick"]).await;
        assert_eq!(resumed["paused"], false);

        let triggered = cli_json(url, &["jobs", "trigger", "tick"]).await;
        assert_keys(&triggered, RUN_KEYS);
        assert_eq!(triggered["origin"], "manual");
        assert_eq!(triggered["job"], "tick");

        let updated = cli_json(url, &["jobs", "update", "tick", "--interval", "1h"]).await;
        assert_keys(&updated, JOB_KEYS);
        assert_eq!(updated["schedule"]["interval_ms"], 3_600_000);

        let deleted = cli_json(url, &["jobs", "delete", "tick"]).await;
        assert_eq!(deleted["name"], "tick");
        assert_eq!(deleted["deleted"], true);
        assert!(deleted["runs_cancelled"].is_u64(), "{deleted}");
        assert!(deleted["runs_deleted"].is_u64(), "{deleted}");
        node.stop().await;
    }
}

#[tokio::test]
async fn runs_and_enqueue_commands_print_json_with_the_documented_fields() {
    for db in common::databases("runs_and_enqueue_commands_print_json").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();

        let run = cli_json(
            url,
            &[
                "enqueue",
                "hello",
                "--params",
                r#"{"who":"json"}"#,
                "--tag",
                "k=v",
            ],
        )
        .await;
        assert_keys(&run, RUN_KEYS);
        assert_eq!(run["existing"], false);
        assert_eq!(run["tags"], json!({"k": "v"}));
        let id = run["id"].as_i64().expect("a numeric id");
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;

        let page = cli_json(url, &["runs", "list"]).await;
        let keys: Vec<&str> = page
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["page", "page_size", "runs", "total"], "{page}");
        assert_eq!(page["total"], 1);
        assert_eq!(page["page"], 1);
        assert_eq!(page["page_size"], 50);
        assert_keys(&page["runs"][0], RUN_KEYS);
        assert_eq!(page["runs"][0]["id"], id);
        assert_no_run_id(&page);

        let shown = cli_json(url, &["runs", "show", &id.to_string()]).await;
        assert_keys(&shown, RUN_KEYS);
        assert_eq!(shown["result"], json!({"who": "json"}));

        // A failing run to retry, a later one to cancel.
        let failed = cli_json(url, &["enqueue", "fails", "--max-retries", "0"]).await;
        let failed_id = failed["id"].as_i64().unwrap();
        common::wait_status(&node.admin, failed_id, RunStatus::Failed).await;
        let retried = cli_json(url, &["runs", "retry", &failed_id.to_string()]).await;
        assert_keys(&retried, RUN_KEYS);
        assert_eq!(retried["id"], failed_id);
        assert_eq!(retried["status"], "queued");
        common::wait_status(&node.admin, failed_id, RunStatus::Failed).await;
        let with_history = cli_json(url, &["runs", "show", &failed_id.to_string()]).await;
        let history = with_history["history"].as_array().expect("a history");
        for h in history {
            assert_keys(h, &["attempt", "at", "event", "message", "node_id"]);
        }

        let later = cli_json(url, &["enqueue", "hello", "--in", "1h"]).await;
        let later_id = later["id"].as_i64().unwrap();
        let cancelled = cli_json(url, &["runs", "cancel", &later_id.to_string()]).await;
        assert_keys(&cancelled, RUN_KEYS);
        assert_eq!(cancelled["id"], later_id);
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(cancelled["outcome"], "cancelled");

        let deleted = cli_json(url, &["runs", "delete", &later_id.to_string()]).await;
        assert_eq!(deleted["status"], "cancelled", "{deleted}");

        let dir = tempfile::tempdir().unwrap();
        let batch = dir.path().join("runs.jsonl");
        std::fs::write(
            &batch,
            "{\"task\": \"hello\"}\n{\"task\": \"hello\", \"in\": \"1h\"}\n",
        )
        .unwrap();
        let many = cli_json(url, &["enqueue", "--batch", batch.to_str().unwrap()]).await;
        let many = many.as_array().expect("enqueue --batch --json is an array");
        assert_eq!(many.len(), 2);
        for e in many {
            assert!(e["id"].is_i64(), "{e}");
            assert_eq!(e["existing"], false);
        }
        assert_no_run_id(&Value::Array(many.clone()));
        node.stop().await;
    }
}

/// `runs delete --json` names the run's id `id`, as every other command does.
#[tokio::test]
async fn runs_delete_json_names_the_run_id_id() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let later = cli_json(&db.url, &["enqueue", "hello", "--in", "1h"]).await;
    let id = later["id"].as_i64().unwrap();
    let deleted = cli_json(&db.url, &["runs", "delete", &id.to_string()]).await;
    assert_eq!(deleted["id"], id, "{deleted}");
    node.stop().await;
}

#[tokio::test]
async fn cluster_commands_print_json_with_the_documented_fields() {
    for db in common::databases("cluster_commands_print_json").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();

        let queues = cli_json(url, &["queues", "list"]).await;
        let queues = queues.as_array().expect("queues list --json is an array");
        let names: Vec<&str> = queues.iter().filter_map(|q| q["name"].as_str()).collect();
        assert!(
            names.contains(&"default") && names.contains(&"mail"),
            "{names:?}"
        );
        for q in queues {
            assert_keys(
                q,
                &[
                    "name",
                    "concurrency",
                    "rate_limit",
                    "rate_window_ms",
                    "paused",
                    "queued",
                    "running",
                ],
            );
        }
        let q = cli_json(url, &["queues", "pause", "mail"]).await;
        assert_eq!(
            (q["name"].clone(), q["paused"].clone()),
            (json!("mail"), json!(true))
        );
        let q = cli_json(url, &["queues", "resume", "mail"]).await;
        assert_eq!(q["paused"], false);

        // The node registers itself when it starts running.
        common::wait_until("the node in `nodes list`", || {
            let admin = node.admin.clone();
            async move { !admin.nodes().await.unwrap().is_empty() }
        })
        .await;
        let nodes = cli_json(url, &["nodes", "list"]).await;
        let nodes = nodes.as_array().expect("nodes list --json is an array");
        assert_eq!(nodes.len(), 1);
        assert_keys(
            &nodes[0],
            &[
                "id",
                "name",
                "hostname",
                "pid",
                "version",
                "max_workers",
                "status",
                "paused",
                "started_at",
                "heartbeat_at",
                "running",
            ],
        );
        assert_eq!(nodes[0]["id"], node.id.as_str());
        let paused = cli_json(url, &["nodes", "pause", &node.id]).await;
        assert_eq!(paused[0]["paused"], true, "{paused}");
        let resumed = cli_json(url, &["nodes", "resume"]).await;
        assert!(
            resumed.as_array().is_some_and(|a| !a.is_empty()),
            "{resumed}"
        );
        assert_eq!(resumed[0]["paused"], false, "{resumed}");

        let tasks = cli_json(url, &["tasks", "list"]).await;
        let tasks = tasks.as_array().expect("tasks list --json is an array");
        let hello = tasks.iter().find(|t| t["name"] == "hello").expect("hello");
        assert_keys(
            hello,
            &[
                "name",
                "queue",
                "priority",
                "max_retries",
                "retry_delay_ms",
                "timeout_ms",
                "max_instances",
                "job_policy",
                "params_schema",
                "location",
            ],
        );
        assert_eq!(hello["params_schema"]["type"], "object");

        let migrated = cli_json(url, &["migrate"]).await;
        assert_keys(&migrated, &["database", "applied", "repaired"]);
        assert_eq!(migrated["applied"], json!([]));
        assert_eq!(migrated["repaired"], json!([]));
        node.stop().await;
    }
}

#[test]
fn cron_next_json_is_an_array_of_rfc3339_times() {
    let out = kairos(
        "sqlite://unused.db",
        &[
            "cron",
            "next",
            "0 9 * * MON-FRI",
            "--tz",
            "Europe/Paris",
            "--from",
            "2026-01-02T12:00:00Z",
            "--count",
            "2",
            "--json",
        ],
    )
    .ok();
    assert_eq!(
        out.json(),
        json!(["2026-01-05T09:00:00+01:00", "2026-01-06T09:00:00+01:00"])
    );
}

// ---------------------------------------------------------------------------------
// Errors

#[tokio::test]
async fn errors_print_a_json_error_object_with_exit_1() {
    for db in common::databases("errors_print_a_json_error_object").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let later = cli_json(url, &["enqueue", "hello"]).await["id"]
            .as_i64()
            .unwrap();
        common::wait_status(&node.admin, later, RunStatus::Succeeded).await;
        let later = later.to_string();
        for (args, code) in [
            (vec!["runs", "show", "999999"], "not_found"),
            (vec!["runs", "cancel", later.as_str()], "conflict"),
            (vec!["runs", "retry", later.as_str()], "conflict"),
            (vec!["jobs", "pause", "nope"], "not_found"),
            (vec!["jobs", "slots", "nope"], "not_found"),
            (vec!["queues", "pause", "nope"], "not_found"),
            (vec!["nodes", "resume", "nope"], "not_found"),
            (vec!["enqueue", "helo"], "unknown_task"),
            (
                vec!["enqueue", "hello", "--params", "[1]"],
                "invalid_params",
            ),
            (vec!["cron", "next", "0 25 * * *"], "invalid_cron"),
        ] {
            let mut args = args.clone();
            args.push("--json");
            let out = cli(url, &args).await;
            assert_json_error(&out, 1, code);
            assert!(
                out.stderr.is_empty(),
                "{args:?}: nothing on stderr: {out:#?}"
            );
        }
        node.stop().await;
    }
}

#[test]
fn usage_errors_print_a_json_error_object_with_exit_2() {
    for args in [
        &["runs", "show", "abc", "--json"][..],
        &["--json", "runs", "cancel", "1.5"],
        &["runs", "list", "--page", "0", "--json"],
        &["jobs", "frobnicate", "--json"],
        &["enqueue", "--json"],
        &["cron", "next", "* * * * *", "--count", "x", "--json"],
    ] {
        let out = kairos("sqlite://unused.db", args);
        assert_json_error(&out, 2, "usage");
        assert!(out.stderr.is_empty(), "{args:?}: {out:#?}");
    }
    // A missing argument is named, not only announced.
    let out = kairos("sqlite://unused.db", &["--json", "jobs", "show"]);
    assert_json_error(&out, 2, "usage");
    assert_eq!(
        out.json()["error"]["message"],
        "the following required arguments were not provided: <NAME>",
        "{out:#?}"
    );
}

#[test]
fn a_missing_database_is_a_json_error_too() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = kairos(&url, &["jobs", "list", "--json"]);
    assert_json_error(&out, 1, "database_unavailable");
    assert!(
        out.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none.db")
    );
}

/// An error line: one line on stderr starting `error:`, nothing on stdout, and no sign
/// of a Rust panic or backtrace.
fn assert_error_line(out: &Output, status: i32) {
    assert_eq!(out.code, status, "{out:#?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {out:#?}");
    assert!(out.stderr.starts_with("error: "), "{out:#?}");
    for sign in ["panicked", "backtrace", "RUST_BACKTRACE", "internal error"] {
        assert!(!out.stderr.contains(sign), "{sign}: {out:#?}");
    }
}

#[tokio::test]
async fn errors_without_json_are_one_line_even_with_rust_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let db = common::sqlite();
    kairos(&db.url, &["migrate"]).ok();
    for (url, args) in [
        (missing.as_str(), &["runs", "list"][..]),
        (db.url.as_str(), &["runs", "show", "42"]),
        (db.url.as_str(), &["jobs", "resume", "nope"]),
        (db.url.as_str(), &["enqueue", "anything"]),
        (db.url.as_str(), &["queues", "resume", "nope"]),
        (db.url.as_str(), &["cron", "next", "*/61 * * * *"]),
        (db.url.as_str(), &["--config", "nope.toml", "jobs", "list"]),
        ("mysql://x/y", &["jobs", "list"]),
    ] {
        for bt in ["1", "full"] {
            let out = kairos_env(
                url,
                args,
                &[("RUST_BACKTRACE", bt), ("RUST_LIB_BACKTRACE", bt)],
            );
            assert_error_line(&out, 1);
            assert_eq!(
                out.stderr.trim_end().lines().count(),
                1,
                "{args:?}: {out:#?}"
            );
        }
    }
}

#[test]
fn usage_errors_start_with_an_error_line_and_exit_2() {
    for args in [
        &["runs", "show", "abc"][..],
        &["runs", "list", "--limit", "9223372036854775808"],
        &[
            "jobs",
            "create",
            "x",
            "--task",
            "t",
            "--interval",
            "forever",
        ],
    ] {
        let out = kairos_env("sqlite://unused.db", args, &[("RUST_BACKTRACE", "1")]);
        assert_error_line(&out, 2);
        assert!(
            out.stderr.lines().next().unwrap().len() < 200,
            "a short first line: {out:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// --help

/// The subcommands a `--help` page lists under `Commands:`, with their descriptions.
fn subcommands(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let l = l.trim();
            let (name, about) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name != "help").then(|| (name.to_string(), about.trim().to_string()))
        })
        .collect()
}

#[test]
fn every_command_has_help_that_describes_it() {
    let top = kairos("sqlite://unused.db", &["--help"]).ok();
    assert!(
        top.stdout
            .lines()
            .next()
            .is_some_and(|l| !l.is_empty() && !l.starts_with("Usage")),
        "{top:#?}"
    );
    let mut seen = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = kairos("sqlite://unused.db", &args).ok();
        let about = out.stdout.lines().next().unwrap_or("");
        assert!(
            !about.trim().is_empty() && !about.starts_with("Usage"),
            "`kairos {}` has no description: {out:#?}",
            path.join(" ")
        );
        assert!(out.stdout.contains("Usage: kairos"), "{out:#?}");
        for (name, desc) in subcommands(&out.stdout) {
            assert!(
                !desc.is_empty(),
                "`kairos {} {name}` is listed without a description",
                path.join(" ")
            );
            let mut sub = path.clone();
            sub.push(name);
            todo.push(sub);
        }
        seen.push(path.join(" "));
    }
    for expected in [
        "jobs list",
        "jobs show",
        "jobs pause",
        "jobs resume",
        "jobs trigger",
        "jobs slots",
        "jobs create",
        "jobs update",
        "jobs delete",
        "runs list",
        "runs show",
        "runs cancel",
        "runs retry",
        "runs delete",
        "enqueue",
        "queues list",
        "queues pause",
        "queues resume",
        "nodes list",
        "nodes pause",
        "nodes resume",
        "tasks list",
        "cron next",
        "migrate",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "`kairos {expected}` is missing from the help: {seen:?}"
        );
    }
}

#[test]
fn every_flag_in_help_is_described() {
    for args in [
        &["runs", "list", "--help"][..],
        &["jobs", "create", "--help"],
        &["enqueue", "--help"],
        &["cron", "next", "--help"],
    ] {
        let out = kairos("sqlite://unused.db", args).ok();
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .skip_while(|l| l.trim() != "Options:")
            .skip(1)
            .collect();
        let is_option = |l: &str| l.trim_start().starts_with('-');
        assert!(lines.iter().any(|l| is_option(l)), "{out:#?}");
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| is_option(l)) {
            // `--flag <VALUE>  Description`, or the description on the next line.
            let t = line.trim();
            let same_line = t.split("  ").nth(1).is_some_and(|d| !d.trim().is_empty());
            let next_line = lines
                .get(i + 1)
                .is_some_and(|n| !n.trim().is_empty() && !is_option(n));
            assert!(same_line || next_line, "{args:?}: undescribed option `{t}`");
        }
    }
}

/// `--help` names the environment variables that hold secrets (the database URL with
/// its password, the API token) but never shows their values.
#[test]
fn help_names_secret_variables_without_their_values() {
    let url = "postgres://kairos:hunter2@127.0.0.1:1/app";
    let env = [("KAIROS_ADMIN_TOKEN", "tok-s3cret")];
    for args in [
        &["--help"][..],
        &["runs", "show", "--help"],
        &["nodes", "pause", "--help"],
        &["serve", "--help"],
    ] {
        let out = kairos_env(url, args, &env).ok();
        assert!(
            out.stdout.contains("KAIROS_DATABASE_URL"),
            "{args:?}: {out:#?}"
        );
        assert!(!out.stdout.contains("hunter2"), "{args:?}: {out:#?}");
        assert!(!out.stdout.contains("tok-s3cret"), "{args:?}: {out:#?}");
    }
    let serve = kairos_env(url, &["serve", "--help"], &env).ok();
    assert!(serve.stdout.contains("KAIROS_ADMIN_TOKEN"), "{serve:#?}");
}

/// Placeholders in `--help` and in usage errors are upper-case names (`<DURATION>`),
/// not Rust identifiers.
#[test]
fn help_placeholders_are_upper_case_names() {
    for args in [
        &["enqueue", "--help"][..],
        &["runs", "list", "--help"],
        &["jobs", "create", "--help"],
        &["jobs", "slots", "--help"],
        &["cron", "next", "--help"],
    ] {
        let out = kairos("sqlite://unused.db", args).ok();
        for placeholder in out
            .stdout
            .split('<')
            .skip(1)
            .filter_map(|s| s.split('>').next())
        {
            assert!(
                !placeholder.chars().any(|c| c.is_ascii_lowercase()),
                "{args:?}: placeholder <{placeholder}>"
            );
        }
    }
}

/// A malformed flag value is a usage error however the flag is parsed: exit status
/// 2 and code `usage`, as for `--in tomorrow` (today `--at tomorrow` and
/// `--created-after yesterday` exit 1 with code `invalid_input`).
#[tokio::test]
async fn malformed_flag_values_are_usage_errors_with_exit_2() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    for args in [
        &["enqueue", "hello", "--in", "tomorrow", "--json"][..],
        &["enqueue", "hello", "--at", "tomorrow", "--json"],
        &["enqueue", "hello", "--params", "{", "--json"],
        &["runs", "list", "--created-after", "yesterday", "--json"],
        &["jobs", "slots", "x", "--since", "yesterday", "--json"],
    ] {
        let out = cli(&db.url, args).await;
        assert_json_error(&out, 2, "usage");
    }
    node.stop().await;
}
