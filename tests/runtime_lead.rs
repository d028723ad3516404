//! Starting on the dot: with a lead, a slot is fired and its run claimed ahead of its
//! time, and the task starts exactly at the slot; jobs with an instance limit fire only
//! when due; a run cancelled or released while it waits for its time never executes.
//! With the system clock, runs claimed ahead are released by the node's own timer and
//! still never start before their time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::testing::TestScheduler;
use kairos::{Enqueue, Registry, RunFilter, RunStatus, Scheduler, TaskContext, TaskDef};
use serde_json::Value;

static EXECUTED: AtomicUsize = AtomicUsize::new(0);

fn count(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    EXECUTED.fetch_add(1, Ordering::SeqCst);
    Box::pin(async { Ok(None) })
}

/// (run id, microseconds from its due time to the task's start) of `stamp` runs.
static STAMPS: std::sync::Mutex<Vec<(i64, i64)>> = std::sync::Mutex::new(Vec::new());

fn stamp(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    let early_or_late = (Utc::now() - ctx.scheduled_for()).num_microseconds();
    STAMPS
        .lock()
        .unwrap()
        .push((ctx.run_id(), early_or_late.unwrap_or(i64::MAX)));
    Box::pin(async { Ok(None) })
}

static LATE_EXECUTED: AtomicUsize = AtomicUsize::new(0);

fn count_late(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    LATE_EXECUTED.fetch_add(1, Ordering::SeqCst);
    Box::pin(async { Ok(None) })
}

fn registry() -> Registry {
    let here = "tests/runtime_lead.rs";
    Registry::from_tasks([
        TaskDef::new("count", count, here),
        TaskDef::new("count_late", count_late, here),
        TaskDef {
            max_instances: Some(1),
            ..TaskDef::new("single", count, here)
        },
    ])
    .unwrap()
}

const JOBS: &str = r#"
[[jobs]]
name = "on_the_dot"
task = "count"
schedule = "*/10 * * * * *"

[[jobs]]
name = "limited"
task = "single"
schedule = "*/10 * * * * *"
"#;

fn t0() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn ms(n: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(n)
}

async fn harness() -> TestScheduler {
    TestScheduler::builder()
        .start_at(t0() + ms(1))
        .registry(registry())
        .config_toml(JOBS)
        .with(|b| b.lead(Duration::from_millis(200)))
        .build()
        .await
        .unwrap()
}

async fn job_runs(ts: &TestScheduler, job: &str) -> Vec<kairos::Run> {
    ts.runs(RunFilter::new().job(job)).await
}

/// One test, run in order: the counter of executions is shared.
#[tokio::test]
async fn runs_fired_and_claimed_ahead_start_exactly_at_their_slot() {
    let ts = harness().await;
    let slot = t0() + chrono::Duration::seconds(10);

    // 150 ms before the slot: fired and claimed, waiting for its time.
    ts.advance_to(slot - ms(150)).await;
    let runs = job_runs(&ts, "on_the_dot").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].scheduled_for, slot);
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(runs[0].started_at, Some(slot), "it starts at its slot");
    assert_eq!(EXECUTED.load(Ordering::SeqCst), 0, "nothing executed early");
    // The limited job waits for its slot: whether it is free is decided then.
    assert!(job_runs(&ts, "limited").await.is_empty());

    // At the slot both execute; the early one started exactly on time.
    ts.advance_to(slot).await;
    let runs = job_runs(&ts, "on_the_dot").await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{runs:?}");
    assert_eq!(runs[0].started_at, Some(slot));
    let limited = job_runs(&ts, "limited").await;
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].status, RunStatus::Succeeded);
    assert_eq!(EXECUTED.load(Ordering::SeqCst), 2);

    // Cancelled while it waits for its time: it never executes.
    let next = slot + chrono::Duration::seconds(10);
    ts.advance_to(next - ms(100)).await;
    let waiting = job_runs(&ts, "on_the_dot")
        .await
        .into_iter()
        .find(|r| r.scheduled_for == next)
        .expect("the next slot was fired ahead");
    assert_eq!(waiting.status, RunStatus::Running);
    ts.admin().cancel_run(waiting.id).await.unwrap();
    ts.advance_to(next).await;
    let run = ts.admin().run(waiting.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    // It never started: no attempt counted, no start time shown after its end.
    assert_eq!((run.attempt, run.started_at), (0, None), "{run:?}");
    assert_eq!(
        EXECUTED.load(Ordering::SeqCst),
        3,
        "only the limited job ran"
    );

    // Shut down while one waits: it goes back to the queue, its attempt not counted.
    let after = next + chrono::Duration::seconds(10);
    ts.advance_to(after - ms(100)).await;
    let waiting = job_runs(&ts, "on_the_dot")
        .await
        .into_iter()
        .find(|r| r.scheduled_for == after)
        .expect("fired ahead");
    let admin = ts.admin().clone();
    ts.shutdown().await;
    let run = admin.run(waiting.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued, "{run:?}");
    assert_eq!(run.attempt, 0);
    assert_eq!(EXECUTED.load(Ordering::SeqCst), 3);
}

/// A node held up (stopped, starved) past a claimed-ahead run's time may have lost the
/// run meanwhile: it starts it only if the run is still its own.
#[tokio::test]
async fn a_run_that_starts_late_starts_only_if_it_is_still_the_node_s() {
    // No jobs: those of `harness` count in `EXECUTED`, which another test reads.
    let ts = TestScheduler::builder()
        .start_at(t0() + ms(1))
        .registry(registry())
        .with(|b| b.lead(Duration::from_millis(200)))
        .build()
        .await
        .unwrap();
    let slot = t0() + chrono::Duration::seconds(10);
    let taken = ts
        .enqueue(Enqueue::new("count_late").at(slot))
        .await
        .unwrap();
    let kept = ts
        .enqueue(Enqueue::new("count_late").at(slot))
        .await
        .unwrap();
    ts.advance_to(slot - ms(150)).await;
    for id in [taken, kept] {
        assert_eq!(ts.admin().run(id).await.unwrap().status, RunStatus::Running);
    }
    // Meanwhile another node took one back and runs it.
    kairos::test_support::execute(
        ts.database_url(),
        &format!("UPDATE kairos_runs SET node_id = 'other', attempt = 2 WHERE id = {taken}"),
    )
    .await
    .unwrap();
    // The node wakes 10 s after the runs' time.
    ts.clock().set(slot + chrono::Duration::seconds(10));
    common::wait_status(ts.admin(), kept, RunStatus::Succeeded).await;
    ts.run_until_idle().await;
    assert_eq!(
        LATE_EXECUTED.load(Ordering::SeqCst),
        1,
        "only the run it kept"
    );
    let run = ts.admin().run(taken).await.unwrap();
    assert_eq!(
        (run.status, run.node_id.as_deref(), run.attempt),
        (RunStatus::Running, Some("other"), 2),
        "{run:?}"
    );
}

#[tokio::test]
async fn a_lead_over_a_second_is_refused() {
    let err = TestScheduler::builder()
        .registry(registry())
        .with(|b| b.lead(Duration::from_secs(5)))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lead = 5s"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_system_clock_runs_claimed_ahead_never_start_early() {
    for db in common::databases("claimed_ahead_never_early").await {
        // Run ids repeat across the databases.
        STAMPS.lock().unwrap().clear();
        let sched = Scheduler::builder()
            .database_url(&db.url)
            .registry(
                Registry::from_tasks([TaskDef::new("stamp", stamp, "tests/runtime_lead.rs")])
                    .unwrap(),
            )
            .lead(Duration::from_millis(800))
            // A run claimed ahead holds its worker while it waits: enough for all.
            .max_workers(64)
            .build()
            .await
            .unwrap();
        let h = sched.handle();
        let node = tokio::spawn(async move { sched.run().await.expect("run") });
        // Two groups of runs with one due time each, far enough ahead to be claimed
        // before it.
        let mut ids = Vec::new();
        for delay in [600, 900] {
            ids.extend(
                h.enqueue_many(
                    (0..20)
                        .map(|_| Enqueue::new("stamp").delay(Duration::from_millis(delay)))
                        .collect(),
                )
                .await
                .unwrap(),
            );
        }
        common::wait_until("the first group claimed ahead", || async {
            h.run(ids[0]).await.unwrap().status == RunStatus::Running
        })
        .await;
        for id in &ids {
            common::wait_status(h.admin(), *id, RunStatus::Succeeded).await;
        }
        let stamps: Vec<(i64, i64)> = STAMPS
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .copied()
            .collect();
        assert_eq!(
            stamps.len(),
            ids.len(),
            "{}: each run executed once",
            db.name
        );
        for (id, us) in &stamps {
            assert!(
                *us >= 0,
                "{}: run {id} started {us} µs before its time",
                db.name
            );
            let run = h.run(*id).await.unwrap();
            assert_eq!(
                run.started_at,
                Some(run.scheduled_for),
                "{}: {run:?}",
                db.name
            );
        }
        h.shutdown();
        node.await.unwrap();
    }
}
