//! Run insight through the binary: `runs logs`, `runs watch --json`, `runs cleanup`,
//! `stats` and `health`, against a real-clock node in the test process.

mod common;

use std::time::Duration;

use common::cli::{Node, cli, cli_json, enqueue, kairos, noop};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Registry, RunStatus, TaskContext, TaskDef};
use serde_json::Value;

/// Takes a second and a half, reporting as it goes.
fn slow_report(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.stage("counting");
        for i in 1..=5u8 {
            ctx.progress(i * 20, format!("step {i} of 5"));
            ctx.info(format!("step {i}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(None)
    })
}

/// Reports every quarter second for two seconds, then its last stage and progress,
/// and returns at once.
fn ends_reporting(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.stage("working");
        for i in 1..=8u8 {
            ctx.progress(i * 10, format!("step {i} of 8"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ctx.stage("finishing");
        ctx.progress(100, "done");
        Ok(None)
    })
}

async fn start(url: &str) -> Node {
    Node::start(
        url,
        Registry::from_tasks([
            TaskDef::new("slow_report", slow_report, "tests/cli_insight.rs"),
            TaskDef::new("noop", noop, "tests/cli_insight.rs"),
            TaskDef::new("ends_reporting", ends_reporting, "tests/cli_insight.rs"),
        ])
        .unwrap(),
        None,
    )
    .await
}

#[tokio::test]
async fn logs_and_watch_follow_a_run_from_another_process() {
    for db in common::databases("cli_logs_and_watch").await {
        let node = start(&db.url).await;
        let url = db.url.as_str();
        let id = enqueue(url, &["slow_report"]).await;
        let id_s = id.to_string();
        // Watching a run ends when the run does; JSON lines are events.
        let watch = cli(url, &["runs", "watch", &id_s, "--json"]).await.ok();
        let events: Vec<Value> = watch
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let last = events.last().expect("at least the final state");
        assert!(
            last["kind"] == "run_finished" || last["status"] == "succeeded",
            "{}: {last}",
            db.name
        );
        let r = node.admin.run(id).await.unwrap();
        assert_eq!(r.status, RunStatus::Succeeded);
        assert_eq!(r.progress, Some(100));
        assert_eq!(r.stage.as_deref(), Some("counting"));
        let logs = cli_json(url, &["runs", "logs", &id_s]).await;
        let lines: Vec<&str> = logs
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["message"].as_str().unwrap())
            .collect();
        assert_eq!(lines, ["step 1", "step 2", "step 3", "step 4", "step 5"]);
        let text = cli(url, &["runs", "logs", &id_s]).await.ok().stdout;
        assert!(text.contains("info   step 3"), "{text}");
        // Following a finished run prints its lines and returns.
        let follow = cli(url, &["runs", "logs", &id_s, "--follow"]).await.ok();
        assert_eq!(follow.stdout.lines().count(), 5);
        node.stop().await;
    }
}

/// The lines a watch prints, read as they come, up to the one starting with `last`;
/// fails when a line takes over 15 s or the watch ends first.
async fn lines_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    last: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with(last)) {
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line within 15 s; so far: {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the watch ended; so far: {seen:#?}"));
        seen.push(line);
    }
    seen
}

/// `kairos runs watch --task TASK` as a process whose output is a pipe.
fn spawn_watch(url: &str, task: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["runs", "watch", "--task", task])
        .env("KAIROS_DATABASE_URL", url)
        .env_remove("RUST_LOG")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kairos runs watch")
}

/// A job deleted while it is watched ends the watch, saying so, rather than failing on
/// a job it no longer finds; a job that never existed is an error.
#[tokio::test]
async fn watching_a_job_that_is_deleted_ends_the_watch() {
    let db = common::sqlite();
    let node = start(&db.url).await;
    let url = db.url.as_str();
    cli(
        url,
        &[
            "jobs",
            "create",
            "wj",
            "--task",
            "slow_report",
            "--interval",
            "1h",
        ],
    )
    .await
    .ok();
    let watch = tokio::spawn(
        common::cli::Kairos::new(&["runs", "watch", "--job", "wj"])
            .url(url)
            .spawn(),
    );
    // The watch reads the runs table every 2 s: let it find the job first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cli(url, &["jobs", "delete", "wj"]).await.ok();
    let out = tokio::time::timeout(Duration::from_secs(15), watch)
        .await
        .expect("the watch ends")
        .unwrap()
        .ok();
    assert_eq!(
        out.stdout.lines().last(),
        Some("job `wj` was deleted; the watch ends"),
        "{out:#?}"
    );
    // A job that does not exist is an error, not a watch that ended.
    let err = cli(url, &["runs", "watch", "--job", "wj"]).await.fails();
    assert!(err.starts_with("error: no job named `wj`"), "{err}");
    node.stop().await;
}

/// Into a file or a pipe, `runs watch` prints plain lines as things happen (bars would
/// show nothing there): the start, progress and stage, log lines and the outcome, each
/// flushed at once, until Ctrl-C.
#[tokio::test]
async fn watch_prints_plain_lines_when_stdout_is_not_a_terminal() {
    use tokio::io::AsyncBufReadExt;

    let db = common::sqlite();
    let node = start(&db.url).await;
    let url = db.url.as_str();
    let mut watch = spawn_watch(url, "slow_report");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    // The watch registers once it has started and connected (a second or so for a
    // debug build), and nodes look for watchers every 2 s before they log their
    // events: 3 s was not always enough.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let id = enqueue(url, &["slow_report"]).await;
    // Watching the one run ends with its outcome, printed once.
    let one = tokio::spawn(
        common::cli::Kairos::new(&["runs", "watch", &id.to_string()])
            .url(url)
            .spawn(),
    );

    // Each line arrives while the watch still runs: it is not held until the end.
    let outcome = format!("run {id} of `slow_report` succeeded");
    let seen = lines_until(&mut lines, &outcome).await;
    let at = |want: &str| {
        seen.iter()
            .position(|l| l == want)
            .unwrap_or_else(|| panic!("no line {want:?} in {seen:#?}"))
    };
    // Started: from its event, or from the runs table when a refresh came first.
    let started = seen
        .iter()
        .position(|l| l.starts_with(&format!("run {id} slow_report: ")))
        .unwrap();
    assert!(seen[started].contains("attempt 1"), "{seen:#?}");
    // Progress as it changes, never going back. Which steps show depends on timing:
    // a refresh of the runs table may show a later step before the events of the
    // earlier ones are read, and those are then left out.
    let progress: Vec<usize> = seen
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("% attempt 1 · counting · step "))
        .map(|(i, _)| i)
        .collect();
    let percents: Vec<u32> = progress
        .iter()
        .map(|&i| {
            seen[i]
                .split('%')
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] < w[1]), "{seen:#?}");
    assert_eq!(percents.last(), Some(&100), "{seen:#?}");
    let step = progress[0];
    let log = at(&format!("run {id}: [info] step 5"));
    let done = seen.len() - 1;
    assert!(started <= step && step < log && log < done, "{seen:#?}");
    // No bar, no control characters: plain text.
    assert!(
        seen.iter()
            .all(|l| !l.contains('\u{1b}') && !l.contains('\r')),
        "{seen:#?}"
    );

    // Ctrl-C ends it normally.
    let pid = watch.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    let status = tokio::time::timeout(Duration::from_secs(10), watch.wait())
        .await
        .expect("the watch stops on Ctrl-C")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{seen:#?}");
    assert_eq!(lines.next_line().await.unwrap(), None);

    let one = one.await.unwrap().ok();
    let last = one.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with(&outcome), "{one:#?}");
    assert_eq!(one.stdout.matches(&outcome).count(), 1, "{one:#?}");
    node.stop().await;
}

/// Watching one run into a pipe prints the stage and progress it reported just before
/// it returned, then its outcome: the runs table shows the end before the events that
/// tell them are read, and the watch waits for those.
#[tokio::test]
async fn watching_a_run_prints_its_last_progress_before_its_outcome() {
    for db in common::databases("cli_watch_last_progress").await {
        let node = start(&db.url).await;
        let url = db.url.as_str();
        // Nodes look for watchers every 2 s before they log their events: one watches
        // already, so the run's events are logged from its start.
        let _watch = spawn_watch(url, "ends_reporting");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let id = enqueue(url, &["ends_reporting"]).await;
        let one = cli(url, &["runs", "watch", &id.to_string()]).await.ok();
        let lines: Vec<&str> = one.stdout.lines().collect();
        let n = lines.len();
        assert!(n >= 2, "{}: {one:#?}", db.name);
        assert_eq!(
            lines[n - 2],
            format!("run {id} ends_reporting: 100% attempt 1 · finishing · done"),
            "{}: {one:#?}",
            db.name
        );
        assert!(
            lines[n - 1].starts_with(&format!("run {id} of `ends_reporting` succeeded")),
            "{}: {one:#?}",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn stats_health_and_cleanup() {
    let db = common::sqlite();
    let node = start(&db.url).await;
    let url = db.url.as_str();
    for _ in 0..3 {
        let id = enqueue(url, &["noop"]).await;
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
    }
    let s = cli_json(url, &["stats"]).await;
    assert_eq!(s["counts"]["succeeded"], 3);
    assert_eq!(s["completed_last_hour"], 3);
    assert_eq!(s["completion_rate"], 1.0);
    assert!(s["tasks"][0]["p95_duration_ms"].is_u64(), "{s}");
    let text = cli(url, &["stats", "--task", "noop"]).await.ok().stdout;
    assert!(text.contains("succeeded 3"), "{text}");
    // The task's columns add up: 3 finished, 3 succeeded, none failed, none other.
    let row = text
        .lines()
        .find(|l| l.starts_with("noop "))
        .unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..5], ["3", "3", "0", "0"], "{text}");
    let h = cli(url, &["health", "--json"]).await.ok().json();
    assert_eq!(h["healthy"], true);
    // A max age shorter than a beat: the age is told to the millisecond (it used to
    // say "0s old" for any age under a second).
    let out = cli(url, &["health", "--max-age", "1ms"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    let age = out
        .stdout
        .split("the newest heartbeat is ")
        .nth(1)
        .and_then(|rest| rest.split(" old").next())
        .unwrap_or_else(|| panic!("{out:#?}"));
    let age = kairos::schedule::parse_duration(age).unwrap();
    assert!(age < Duration::from_secs(10), "{out:#?}");
    let deleted = cli_json(url, &["runs", "cleanup", "--older-than", "1h"]).await;
    assert_eq!(deleted["deleted"], 0, "nothing finished an hour ago");
    let deleted = cli_json(url, &["runs", "cleanup", "--older-than", "0s"]).await;
    assert_eq!(deleted["deleted"], 3);
    node.stop().await;
    let out = cli(url, &["health"]).await;
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("unhealthy"), "{out:#?}");
    // With every node stopped, the report still says when the last one beat.
    assert!(
        out.stdout
            .contains("no node is running against this database (the last heartbeat was at 20"),
        "{out:#?}"
    );
    let h = cli(url, &["health", "--json"]).await.json();
    let last = h["last_heartbeat"].as_str().expect("the last heartbeat");
    let last = chrono::DateTime::parse_from_rfc3339(last).unwrap();
    let age = chrono::Utc::now() - last.with_timezone(&chrono::Utc);
    assert!(age < chrono::Duration::minutes(1), "{h}");
}

/// A zero `--max-age` would call every node stale: it is refused as a usage error
/// (exit 2) that says what to give, before any database is read.
#[test]
fn health_refuses_a_zero_max_age() {
    for age in ["0s", "0ms"] {
        let out = kairos("sqlite://unused.db", &["health", "--max-age", age]);
        assert_eq!(out.code, 2, "{out:#?}");
        assert!(out.stdout.is_empty(), "{out:#?}");
        assert!(
            out.stderr.starts_with("error: ")
                && out.stderr.contains("--max-age")
                && out.stderr.contains("e.g. 10s"),
            "{out:#?}"
        );
        let out = kairos(
            "sqlite://unused.db",
            &["health", "--max-age", age, "--json"],
        );
        assert_eq!(out.code, 2, "{out:#?}");
        assert_eq!(out.json()["error"]["code"], "usage", "{out:#?}");
    }
}

/// `health` judges a node live as `nodes list` does: a running node silent for 15 s
/// (killed, say) is dead to both, unless `--max-age` gives it longer.
#[tokio::test]
async fn health_and_nodes_list_agree_on_a_silent_node() {
    for db in common::databases("health_agrees_with_nodes_list").await {
        let url = db.url.as_str();
        cli(url, &["migrate"]).await.ok();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        kairos::test_support::insert_node(url, "killed", "running", now_ms - 15_000)
            .await
            .unwrap();
        let nodes = cli_json(url, &["nodes", "list"]).await;
        assert_eq!(nodes[0]["alive"], false, "{}: {nodes:#}", db.name);

        let out = cli(url, &["health"]).await;
        assert_eq!(out.code, 1, "{}: {out:#?}", db.name);
        assert!(
            out.stdout
                .starts_with("unhealthy: no node beat within its heartbeat timeout"),
            "{}: {out:#?}",
            db.name
        );
        let out = cli(url, &["health", "--max-age", "30s"]).await.ok();
        assert!(out.stdout.starts_with("healthy"), "{}: {out:#?}", db.name);

        // A node started with a longer heartbeat timeout is judged by it: silent for
        // 15 s of its 60, it is alive for both commands.
        kairos::test_support::execute(
            url,
            "UPDATE kairos_nodes SET heartbeat_timeout_ms = 60000 WHERE id = 'killed'",
        )
        .await
        .unwrap();
        let nodes = cli_json(url, &["nodes", "list"]).await;
        assert_eq!(nodes[0]["alive"], true, "{}: {nodes:#}", db.name);
        let out = cli(url, &["health"]).await.ok();
        assert!(out.stdout.starts_with("healthy"), "{}: {out:#?}", db.name);
        let out = cli(url, &["health", "--max-age", "10s"]).await;
        assert_eq!(out.code, 1, "{}: an explicit age wins: {out:#?}", db.name);
    }
    let help = kairos("sqlite://unused.db", &["health", "--help"]).ok();
    assert!(
        help.stdout.contains("its own heartbeat_timeout"),
        "{help:#?}"
    );
}

/// A watch outlives a database outage: it says once that the database is out of reach,
/// retries, and shows what happens after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rides_out_a_database_outage() {
    use tokio::io::AsyncBufReadExt;

    let Some(db) = common::postgres("watch_outage").await else {
        return;
    };
    let url = db.url.as_str();
    let node = start(url).await;
    let mut watch = spawn_watch(url, "noop");
    let mut lines = tokio::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Every connection cut, and none taken for three seconds.
    db.cut_off().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    db.reopen().await;
    assert!(
        watch.try_wait().unwrap().is_none(),
        "the watch ended with the outage"
    );

    // Nodes look for watchers every 2 s before they log their events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let id = enqueue(url, &["noop"]).await;
    let outcome = format!("run {id} of `noop` succeeded");
    lines_until(&mut lines, &outcome).await;

    watch.start_kill().unwrap();
    let stderr = watch.wait_with_output().await.unwrap().stderr;
    let stderr = String::from_utf8_lossy(&stderr);
    assert_eq!(stderr.matches("retrying every 1s").count(), 1, "{stderr}");
    assert!(stderr.contains("the database answers again"), "{stderr}");
    node.stop().await;
}
