//! A cluster under faults, with real node processes on one database: three nodes
//! sharing an every-second cron job, a burst of one-off runs and a task limited to one
//! instance while one node is killed with SIGKILL; nodes whose machines' clocks are off
//! by minutes; and the database unreachable for a while mid-workload.
//!
//! The node processes are this test binary run again with `KAIROS_TEST_NODE_URL` set:
//! then `node_process` runs a node until it is killed. Its jobs.toml comes in
//! `KAIROS_TEST_NODE_JOBS`, a clock skew in milliseconds in `KAIROS_TEST_NODE_SKEW_MS`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Admin, Enqueue, Registry, Run, RunFilter, RunStatus, TaskContext, TaskDef};
use serde_json::{Value, json};

use common::cli::{kairos, node_builder};
use common::process::NodeProcess;

const NODE_URL_ENV: &str = "KAIROS_TEST_NODE_URL";
const NODE_JOBS_ENV: &str = "KAIROS_TEST_NODE_JOBS";
const NODE_SKEW_ENV: &str = "KAIROS_TEST_NODE_SKEW_MS";

/// Returns at once.
fn tick(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Ok(None) })
}

/// Microseconds since the epoch on this machine's clock, which every node process
/// reads alike.
fn epoch_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Sleeps `params.ms` milliseconds; its result says when it began and ended, in
/// [`epoch_us`].
fn work(_: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    let ms = p.get("ms").and_then(Value::as_u64).unwrap_or(100);
    Box::pin(async move {
        let began = epoch_us();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Some(json!({ "began_us": began, "ended_us": epoch_us() })))
    })
}

/// As `work`, and reports its last progress, stage and log line as it ends.
fn work_then_report(ctx: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let out = work(ctx.clone(), p).await;
        ctx.progress(100, "all done");
        ctx.stage("finished");
        ctx.info("the last line");
        out
    })
}

/// When a succeeded run of `work` executed, from its result: (began, ended), in
/// microseconds. The run's `started_at` and `finished_at` cannot tell: a claim stamps
/// the time it was asked for, and on a loaded machine it may only run after another
/// node's completion committed moments later, so two runs that never ran together
/// seem to overlap.
fn executed(r: &Run) -> (i64, i64) {
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    let at = |k: &str| {
        r.result
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("`{k}` in the result of {r:?}"))
    };
    (at("began_us"), at("ended_us"))
}

fn registry() -> Registry {
    let here = "tests/cluster_faults.rs";
    Registry::from_tasks([
        TaskDef::new("tick", tick, here),
        TaskDef {
            max_retries: Some(3),
            ..TaskDef::new("work", work, here)
        },
        TaskDef {
            max_instances: Some(1),
            max_retries: Some(3),
            ..TaskDef::new("single", work, here)
        },
        TaskDef {
            max_retries: Some(0),
            ..TaskDef::new("once", work_then_report, here)
        },
        TaskDef {
            queue: Some("narrow"),
            max_retries: Some(3),
            ..TaskDef::new("narrow", work, here)
        },
    ])
    .unwrap()
}

/// Not a test of its own: the body of a node process (see the module docs).
#[test]
fn node_process() {
    let Ok(url) = std::env::var(NODE_URL_ENV) else {
        return;
    };
    let jobs = std::env::var(NODE_JOBS_ENV).ok();
    let skew = std::env::var(NODE_SKEW_ENV)
        .ok()
        .map(|ms| chrono::Duration::milliseconds(ms.parse().unwrap()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut builder = node_builder(&url, registry(), jobs.as_deref()).max_workers(16);
        if let Some(skew) = skew {
            builder = builder.clock(kairos::test_support::SkewedClock(skew));
        }
        let node = builder.build().await.unwrap();
        node.run().await.unwrap();
    });
}

fn spawn(url: &str, jobs: Option<&str>, skew_ms: Option<i64>) -> NodeProcess {
    spawn_with(url, jobs, skew_ms, Vec::new())
}

/// [`spawn`] with more environment variables for the node process.
fn spawn_with(
    url: &str,
    jobs: Option<&str>,
    skew_ms: Option<i64>,
    mut env: Vec<(&str, String)>,
) -> NodeProcess {
    env.push((NODE_URL_ENV, url.to_string()));
    if let Some(jobs) = jobs {
        env.push((NODE_JOBS_ENV, jobs.to_string()));
    }
    if let Some(ms) = skew_ms {
        env.push((NODE_SKEW_ENV, ms.to_string()));
    }
    NodeProcess::spawn("node_process", &env)
}

const EVERY_SECOND: &str = r#"
[queues.narrow]
concurrency = 2

[[jobs]]
name = "every_second"
task = "tick"
schedule = "* * * * * *"
"#;

/// Connects once the database exists, and waits until `n` nodes are alive.
async fn wait_for_nodes(url: &str, n: usize) -> Admin {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(admin) = Admin::connect(url).await
            && let Ok(nodes) = admin.nodes().await
            && nodes.iter().filter(|n| n.alive).count() >= n
        {
            return admin;
        }
        assert!(Instant::now() < deadline, "{n} nodes never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_runs(admin: &Admin, filter: RunFilter) -> Vec<Run> {
    let filter = filter.page(1, RunFilter::MAX_PAGE_SIZE);
    admin.runs(&filter).await.unwrap().runs
}

fn job_runs(job: &str) -> RunFilter {
    RunFilter::new().job(job)
}

fn task_runs(task: &str) -> RunFilter {
    RunFilter::new().task(task)
}

/// Every slot of the job's runs ran once, and the slots follow each other second by
/// second without a gap; returns the slots.
fn assert_each_second_once(runs: &[Run], what: &str) -> Vec<DateTime<Utc>> {
    let mut slots: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for r in runs {
        *slots.entry(r.scheduled_for).or_default() += 1;
    }
    let twice: Vec<_> = slots.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: slots fired more than once: {twice:?}"
    );
    let slots: Vec<_> = slots.into_keys().collect();
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "{what}: a slot was missed between {} and {}",
            pair[0],
            pair[1]
        );
    }
    slots
}

/// Waits until no run of `filter` is queued or running; returns them all.
async fn wait_all_finished(admin: &Admin, filter: RunFilter, within: Duration) -> Vec<Run> {
    let deadline = Instant::now() + within;
    loop {
        let runs = all_runs(admin, filter.clone()).await;
        let open: Vec<_> = runs
            .iter()
            .filter(|r| !r.status.is_finished())
            .map(|r| (r.id, r.status, r.node_id.clone()))
            .collect();
        if open.is_empty() {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs never finished: {:?}",
            open.len(),
            &open[..open.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fire_each_slot_once_and_finish_every_run_through_a_kill() {
    let Some(db) = common::postgres("three_nodes").await else {
        return;
    };
    let url = &db.url;
    // Each named through the environment, as a container would name it.
    let mut nodes: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let name = vec![(kairos::NODE_NAME_ENV, format!("worker-{i}"))];
            spawn_with(url, Some(EVERY_SECOND), None, name)
        })
        .collect();
    let admin = wait_for_nodes(url, 3).await;
    let mut names: Vec<String> = admin
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    names.sort();
    assert_eq!(names, ["worker-0", "worker-1", "worker-2"]);
    let burst: Vec<Enqueue> = (0..300)
        .map(|i| Enqueue::new("work").params(json!({ "ms": 200 + (i % 7) * 200 })))
        .collect();
    let burst: HashSet<i64> = admin
        .enqueue_many(burst)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    let singles = (0..15).map(|_| Enqueue::new("single").params(json!({ "ms": 300 })));
    admin.enqueue_many(singles.collect()).await.unwrap();
    let narrow = (0..20).map(|_| Enqueue::new("narrow").params(json!({ "ms": 250 })));
    admin.enqueue_many(narrow.collect()).await.unwrap();

    // Kill the node that holds the most running runs, while the burst runs.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = all_runs(&admin, RunFilter::new().status(RunStatus::Running)).await;
    let node_ids: Vec<String> = admin
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    let holds = |id: &str| {
        running
            .iter()
            .filter(|r| r.node_id.as_deref() == Some(id))
            .count()
    };
    let victim_id = node_ids.iter().max_by_key(|id| holds(id)).unwrap().clone();
    let victim_pid = admin
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.id == victim_id)
        .unwrap()
        .pid;
    let victim = nodes.iter().position(|p| p.pid() == victim_pid).unwrap();
    let held = holds(&victim_id);
    nodes[victim].kill();
    let killed = Instant::now();

    assert!(held > 0, "the killed node held no running run");
    // Its runs are taken back within 20 s (default heartbeat settings).
    loop {
        let still = all_runs(&admin, RunFilter::new().status(RunStatus::Running))
            .await
            .into_iter()
            .filter(|r| r.node_id.as_deref() == Some(victim_id.as_str()))
            .count();
        if still == 0 {
            break;
        }
        assert!(
            killed.elapsed() <= Duration::from_secs(20),
            "{still} runs still held by the killed node after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = killed.elapsed();
    // The survivors finish every run, the killed node's included.
    let work = wait_all_finished(&admin, task_runs("work"), Duration::from_secs(30)).await;
    assert_eq!(work.len(), 300);
    for r in &work {
        assert!(burst.contains(&r.id));
        assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    }
    let retaken = work.iter().filter(|r| r.attempt > 1).count();
    eprintln!(
        "killed node held {held} running runs, taken back after {took:?}; {retaken} work runs needed a second attempt"
    );
    let singles = wait_all_finished(&admin, task_runs("single"), Duration::from_secs(30)).await;
    // One instance at a time across all nodes: no two executions overlap.
    let mut spans: Vec<_> = singles
        .iter()
        .map(|r| {
            let (began, ended) = executed(r);
            (began, ended, r.node_id.clone())
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "max_instances = 1 broken across nodes: {pair:?}"
        );
    }
    // Two at a time in the narrow queue across all nodes: at no start were two others
    // of its runs still executing.
    let narrow = wait_all_finished(&admin, task_runs("narrow"), Duration::from_secs(30)).await;
    let spans: Vec<_> = narrow.iter().map(executed).collect();
    for (start, _) in &spans {
        let during = spans
            .iter()
            .filter(|(s, f)| s <= start && start < f)
            .count();
        assert!(
            during <= 2,
            "queue concurrency 2 broken across nodes: {during} at {start} µs: {spans:?}"
        );
    }
    let ran_on: HashSet<_> = work.iter().filter_map(|r| r.node_id.clone()).collect();
    assert!(ran_on.len() >= 2, "the work was shared: {ran_on:?}");

    // Cron went on through the kill: 20 s of slots, each once, none missed.
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(killed.elapsed())).await;
    let cron = all_runs(&admin, job_runs("every_second")).await;
    let slots = assert_each_second_once(&cron, "every_second");
    assert!(slots.len() >= 18, "only {} slots in 20 s", slots.len());
    let cron = wait_all_finished(&admin, job_runs("every_second"), Duration::from_secs(20)).await;
    assert!(cron.iter().all(|r| r.status == RunStatus::Succeeded));
}

/// Nodes whose machines run five minutes fast and five minutes slow agree with the
/// database on when each slot is due: no slot fires early, none twice, none is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_skewed_clocks_fire_each_slot_once_on_time() {
    for db in common::databases("skewed_clocks").await {
        let url = &db.url;
        let five_min = 5 * 60 * 1000;
        let _fast = spawn(url, Some(EVERY_SECOND), Some(five_min));
        let _slow = spawn(url, Some(EVERY_SECOND), Some(-five_min));
        let admin = wait_for_nodes(url, 2).await;
        let start = Utc::now();
        let mut early = Vec::new();
        while Utc::now() - start < chrono::Duration::seconds(8) {
            let now = Utc::now();
            for r in all_runs(&admin, job_runs("every_second")).await {
                let slot = r.scheduled_for;
                // The test reads the machine's (and the database's) true time.
                if slot > now + chrono::Duration::milliseconds(500) {
                    early.push((slot, now));
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(
            early.is_empty(),
            "{}: {} slots fired early, first: {:?}",
            db.name,
            early.len(),
            &early[..early.len().min(5)]
        );
        let runs =
            wait_all_finished(&admin, job_runs("every_second"), Duration::from_secs(20)).await;
        let slots = assert_each_second_once(&runs, db.name);
        assert!(slots.len() >= 6, "{}: only {} slots", db.name, slots.len());
        for r in &runs {
            let late = r.started_at.unwrap() - r.scheduled_for;
            assert!(
                late > chrono::Duration::milliseconds(-200) && late < chrono::Duration::seconds(3),
                "{}: run {} started {late} after its slot",
                db.name,
                r.id
            );
        }
    }
}

/// The database refuses every connection for a few seconds mid-workload: nodes log it,
/// back off and reconnect; outcomes of runs that ended meanwhile are kept (no run needs
/// a second attempt, none is left running), with their last reports and the time they
/// ended; `kairos health` says unhealthy during the outage and healthy after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_database_outage() {
    let Some(db) = common::postgres("outage").await else {
        return;
    };
    let url = &db.url;
    // Each try to reach the database gives up soon, as it would on a network that
    // answers at once, so that the outage spans many of the nodes' tries.
    let quick = Some("[scheduler]\nconnect_timeout = \"500ms\"\n");
    let _a = spawn(url, quick, None);
    let _b = spawn(url, quick, None);
    let admin = wait_for_nodes(url, 2).await;
    kairos(url, &["health"]).ok();
    let runs = (0..200).map(|i| Enqueue::new("once").params(json!({ "ms": 200 + (i % 10) * 150 })));
    admin.enqueue_many(runs.collect()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Outage: no new connections, and every open one cut.
    db.cut_off().await;
    let health = kairos(url, &["health"]);
    let (code, out, err) = health.into_parts();
    assert_ne!(code, 0, "healthy during the outage: {out}");
    assert!(
        format!("{out}{err}").contains("unhealthy"),
        "health during the outage: {out}{err}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    db.reopen().await;

    let runs = wait_all_finished(&admin, task_runs("once"), Duration::from_secs(60)).await;
    let bad: Vec<_> = runs
        .iter()
        .filter(|r| r.status != RunStatus::Succeeded || r.attempt != 1)
        .map(|r| (r.id, r.status, r.attempt, r.error.clone()))
        .collect();
    assert!(bad.is_empty(), "runs hurt by the outage: {bad:?}");
    // Those that ended during the outage too: what they reported last is kept, and
    // they are stored as finished when they ended, not when the database was back.
    for r in &runs {
        assert_eq!(
            (r.progress, r.stage.as_deref()),
            (Some(100), Some("finished")),
            "the last report of run {}",
            r.id
        );
        let logs = admin.run_logs(r.id, 0, 10).await.unwrap();
        assert!(
            logs.iter().any(|l| l.message == "the last line"),
            "the last log line of run {}: {logs:?}",
            r.id
        );
        let (_, ended_us) = executed(r);
        let finished_us = r.finished_at.unwrap().timestamp_micros();
        assert!(
            (finished_us - ended_us).abs() < 1_000_000,
            "run {} ended at {ended_us} µs but is stored as finished at {finished_us} µs",
            r.id
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, _) = kairos(url, &["health"]).into_parts();
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never healthy again: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let alive = admin
        .nodes()
        .await
        .unwrap()
        .iter()
        .filter(|n| n.alive)
        .count();
    assert_eq!(alive, 2, "both nodes reconnected");
}
