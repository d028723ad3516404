//! The admin CLI as a user runs it: the `kairos` binary against a database a node has
//! written, checking exit codes, tables, JSON and the effect on the database.

mod common;

use std::process::Command;
use std::time::Duration;

use futures::future::BoxFuture;
use kairos::schedule::Schedule;
use kairos::task::TaskOutcome;
use kairos::testing::JobSpec;
use kairos::{
    Admin, Enqueue, JobPolicy, JobSource, Registry, RunStatus, Scheduler, TaskContext, TaskDef,
};
use serde_json::{Value, json};

fn kairos(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(args)
        .env("KAIROS_DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run kairos");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "2026-12-07T00:00:00+00:00",
            "2026-12-14T00:00:00+00:00",
            "2026-12-21T00:00:00+00:00"
        ],
        "Monday, and not the --from instant itself"
    );
    let (code, out, _) = kairos(
        "sqlite://unused.db",
        &[
            "cron",
            "next",
            "30 2 * * *",
            "--tz",
            "America/New_York",
            "--from",
            "2026-03-08T05:00:00Z",
            "--count",
            "2",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        "a time skipped by spring-forward runs right after the gap"
    );
}

#[test]
fn cron_next_rejects_bad_input_with_one_line_naming_the_field() {
    let (code, out, err) = kairos("sqlite://unused.db", &["cron", "next", "0 25 * * *"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("hour"), "{err}");
    let (code, _, err) = kairos(
        "sqlite://unused.db",
        &["cron", "next", "* * * * *", "--tz", "Mars/Base"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown time zone `Mars/Base`"), "{err}");
}

fn hello(_: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(p)) })
}

#[tokio::test]
async fn jobs_and_runs_commands_read_and_steer_the_database() {
    let db = common::sqlite();
    // The CLI stamps runs with the wall clock, so the node uses it too.
    let t0 = chrono::Utc::now();
    kairos::testing::sync_jobs(
        &db.url,
        &[JobSpec {
            name: "hourly_hello".into(),
            task: "hello".into(),
            schedule: Schedule::Every(Duration::from_secs(3600)),
            params: json!({"who": "job"}),
            enabled: true,
            priority: None,
            policy: JobPolicy::default(),
            source: JobSource::Api,
            callback_url: None,
        }],
        t0,
    )
    .await
    .unwrap();
    let store = Admin::connect(&db.url).await.unwrap();
    let sched = Scheduler::builder()
        .database_url(&db.url)
        .registry(
            Registry::from_tasks([TaskDef::new("hello", hello, "tests/cli_admin.rs")]).unwrap(),
        )
        .build()
        .await
        .unwrap();
    let h = sched.handle();
    let id = h
        .enqueue(Enqueue::new("hello").params(json!({"who": "ada"})))
        .await
        .unwrap();
    let node = tokio::spawn(sched.run());
    common::wait_status(&store, id, RunStatus::Succeeded).await;

    let url = db.url.clone();
    let run = move |args: Vec<&'static str>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || kairos(&url, &args))
    };

    let (code, out, err) = run(vec!["runs", "list", "--json"]).await.unwrap();
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

    let (code, out, _) = run(vec!["jobs", "list"]).await.unwrap();
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("JOB"), "{out}");
    assert!(
        out.contains("hourly_hello") && out.contains("active"),
        "{out}"
    );

    let (code, _, err) = run(vec!["jobs", "pause", "hourly_hello"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(store.job("hourly_hello").await.unwrap().paused);
    let (code, _, err) = run(vec!["jobs", "pause", "hourly_helo"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("no job named `hourly_helo`"), "{err}");

    // Enqueue from the CLI: the task is known from the catalogue the node published,
    // and the running node picks it up through the change counter.
    let (code, out, err) = run(vec![
        "enqueue",
        "hello",
        "--params",
        r#"{"who":"cli"}"#,
        "--json",
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let cli_id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = common::wait_status(&store, cli_id, RunStatus::Succeeded).await;
    assert_eq!(r.result, Some(json!({"who": "cli"})));

    let (code, _, err) = run(vec!["enqueue", "helo"]).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `hello`"), "{err}");
    let (code, _, err) = run(vec!["enqueue", "hello", "--params", "[1]"])
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("must be a JSON object"), "{err}");

    // Cancel a run scheduled for later.
    let (_, out, _) = run(vec!["enqueue", "hello", "--in", "2h", "--json"])
        .await
        .unwrap();
    let later = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (code, _, err) = run(vec!["runs", "cancel", "later"]).await.unwrap();
    assert_eq!(code, 2, "a non-numeric id is a usage error: {err}");
    let later_s: &'static str = Box::leak(later.to_string().into_boxed_str());
    let (code, _, err) = run(vec!["runs", "cancel", later_s]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(store.run(later).await.unwrap().status, RunStatus::Cancelled);
    let (code, out, _) = run(vec!["runs", "show", later_s]).await.unwrap();
    assert_eq!(code, 0);
    assert!(out.contains("cancelled"), "{out}");

    h.shutdown();
    node.await.unwrap().unwrap();
}
