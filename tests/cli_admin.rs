//! The admin CLI as a user runs it: the `kairos` binary against a database a node has
//! written, checking exit codes, tables, JSON and the effect on the database.

mod common;

use std::time::Duration;

use kairos::schedule::Schedule;
use kairos::test_support::JobSpec;
use kairos::{Admin, Enqueue, Registry, RunStatus, TaskDef};
use serde_json::{Value, json};

use common::cli::{Node, cli, hello, kairos, node_builder};

#[test]
fn cron_next_prints_rfc3339_times_strictly_after_from() {
    let (code, out, err) = kairos(
        "sqlite://unused.db",
        &[
            "cron",
            "next",
            "0 0 * * 1",
            "--from",
            "2026-11-30T00:00:00Z",
            "--count",
            "3",
        ],
    )
    .into_parts();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2026-12-07T00:00:00Z",
            "2026-12-14T00:00:00Z",
            "2026-12-21T00:00:00Z"
        ],
        "Monday, and not the --from instant itself"
    );
    let (code, out, _) = kairos(
        "sqlite://unused.db",
        &[
            "cron",
            "next",
            "30 2 * * *",
            "--timezone",
            "America/New_York",
            "--from",
            "2026-03-08T05:00:00Z",
            "--count",
            "2",
        ],
    )
    .into_parts();
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        "a time skipped by spring-forward runs right after the gap"
    );
}

#[test]
fn cron_next_rejects_bad_input_with_one_line_naming_the_field() {
    let (code, out, err) =
        kairos("sqlite://unused.db", &["cron", "next", "0 25 * * *"]).into_parts();
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("hour"), "{err}");
    let (code, _, err) = kairos(
        "sqlite://unused.db",
        &["cron", "next", "* * * * *", "--tz", "Mars/Base"],
    )
    .into_parts();
    assert_ne!(code, 0);
    assert!(err.contains("unknown time zone `Mars/Base`"), "{err}");
}

#[tokio::test]
async fn jobs_and_runs_commands_read_and_steer_the_database() {
    let db = common::sqlite();
    // The CLI stamps runs with the wall clock, so the node uses it too.
    let t0 = chrono::Utc::now();
    kairos::test_support::sync_jobs(
        &db.url,
        &[JobSpec {
            params: json!({"who": "job"}),
            ..JobSpec::new(
                "hourly_hello",
                "hello",
                Schedule::Every(Duration::from_secs(3600)),
            )
        }],
        t0,
    )
    .await
    .unwrap();
    let store = Admin::connect(&db.url).await.unwrap();
    let registry =
        Registry::from_tasks([TaskDef::new("hello", hello, "tests/cli_admin.rs")]).unwrap();
    let sched = node_builder(&db.url, registry, None).build().await.unwrap();
    let id = sched
        .handle()
        .enqueue(Enqueue::new("hello").params(json!({"who": "ada"})))
        .await
        .unwrap();
    let node = Node::run(&db.url, sched).await;
    common::wait_status(&store, id, RunStatus::Succeeded).await;
    let url = db.url.as_str();

    let (code, out, err) = cli(url, &["runs", "list", "--json"]).await.into_parts();
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("runs list --json is JSON");
    assert_eq!(page["total"], 1);
    assert_eq!(page["page"], 1);
    let runs = page["runs"].as_array().expect("a runs array");
    assert_eq!(runs.len(), 1);
    for key in [
        "id",
        "task",
        "job",
        "status",
        "attempt",
        "priority",
        "scheduled_for",
        "started_at",
        "finished_at",
        "error",
    ] {
        assert!(runs[0].get(key).is_some(), "missing {key} in {}", runs[0]);
    }
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["task"], "hello");

    let (code, out, _) = cli(url, &["jobs", "list"]).await.into_parts();
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("JOB"), "{out}");
    assert!(
        out.contains("hourly_hello") && out.contains("active"),
        "{out}"
    );

    let (code, _, err) = cli(url, &["jobs", "pause", "hourly_hello"])
        .await
        .into_parts();
    assert_eq!(code, 0, "{err}");
    assert!(store.job("hourly_hello").await.unwrap().paused);
    let (code, _, err) = cli(url, &["jobs", "pause", "hourly_helo"])
        .await
        .into_parts();
    assert_eq!(code, 1);
    assert!(err.contains("no job named `hourly_helo`"), "{err}");

    // Enqueue from the CLI: the task is known from the catalogue the node published,
    // and the running node picks it up through the change counter.
    let (code, out, err) = cli(
        url,
        &["enqueue", "hello", "--params", r#"{"who":"cli"}"#, "--json"],
    )
    .await
    .into_parts();
    assert_eq!(code, 0, "{err}");
    let cli_id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = common::wait_status(&store, cli_id, RunStatus::Succeeded).await;
    assert_eq!(r.result, Some(json!({"who": "cli"})));

    let (code, _, err) = cli(url, &["enqueue", "helo"]).await.into_parts();
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `hello`"), "{err}");
    let (code, _, err) = cli(url, &["enqueue", "hello", "--params", "[1]"])
        .await
        .into_parts();
    assert_eq!(code, 1);
    assert!(err.contains("must be a JSON object"), "{err}");

    // Cancel a run scheduled for later.
    let (_, out, _) = cli(url, &["enqueue", "hello", "--in", "2h", "--json"])
        .await
        .into_parts();
    let later = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, _, err) = cli(url, &["runs", "cancel", "later"]).await.into_parts();
    assert_eq!(code, 2, "a non-numeric id is a usage error: {err}");
    let later_s = later.to_string();
    let (code, _, err) = cli(url, &["runs", "cancel", &later_s]).await.into_parts();
    assert_eq!(code, 0, "{err}");
    assert_eq!(store.run(later).await.unwrap().status, RunStatus::Cancelled);
    let (code, out, _) = cli(url, &["runs", "show", &later_s]).await.into_parts();
    assert_eq!(code, 0);
    assert!(out.contains("cancelled"), "{out}");

    // A filter on a task nobody registered is a typo, as with jobs; a known task
    // without runs lists none.
    for args in [
        &["runs", "list", "--task", "helo"][..],
        &["stats", "--task", "helo"],
        &["runs", "watch", "--task", "helo"],
    ] {
        let (code, _, err) = cli(url, args).await.into_parts();
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("unknown task `helo`") && err.contains("did you mean `hello`"),
            "{args:?}: {err}"
        );
    }
    let (code, _, err) = cli(url, &["runs", "list", "--queue", "defualt"])
        .await
        .into_parts();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no queue named `defualt`") && err.contains("did you mean `default`"),
        "{err}"
    );
    let (code, out, err) = cli(
        url,
        &["runs", "list", "--task", "hello", "--status", "failed"],
    )
    .await
    .into_parts();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(none)"), "{out}");

    node.stop().await;
}

#[tokio::test]
async fn a_tool_finds_a_task_published_after_it_looked_for_it() {
    let db = common::sqlite();
    let hello_def = || TaskDef::new("hello", hello, "tests/cli_admin.rs");
    let first = node_builder(&db.url, Registry::from_tasks([hello_def()]).unwrap(), None)
        .build()
        .await
        .unwrap();
    let admin = Admin::connect(&db.url).await.unwrap();
    // Enqueues one after another: the second is checked against the catalogue entry
    // the first read.
    for who in ["a", "b"] {
        admin
            .enqueue(Enqueue::new("hello").params(json!({ "who": who })))
            .await
            .unwrap();
    }
    let err = admin.enqueue(Enqueue::new("later")).await.unwrap_err();
    assert!(matches!(err, kairos::Error::UnknownTask { .. }), "{err}");
    // A node of a newer version publishes `later`: the very next enqueue finds it,
    // although the tool looked for it a moment ago.
    let registry = Registry::from_tasks([
        hello_def(),
        TaskDef::new("later", hello, "tests/cli_admin.rs"),
    ])
    .unwrap();
    let second = node_builder(&db.url, registry, None).build().await.unwrap();
    let id = admin
        .enqueue(Enqueue::new("later").params(json!({ "who": "c" })))
        .await
        .unwrap()
        .id;
    let run = admin.run(id).await.unwrap();
    assert_eq!(
        (run.task.as_str(), run.status),
        ("later", RunStatus::Queued)
    );
    drop((first, second));
}
