//! End-to-end runs through an embedded node: enqueue, execute, record results, retry
//! with persisted backoff, time out, fail permanently, panic, cancel, and respect
//! instance limits; on SQLite and (when configured) PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{
    Clock, Enqueue, ManualClock, Registry, RunStatus, Scheduler, TaskContext, TaskDef, TaskError,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn echo(_: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(json!({ "echo": params }))) })
}

fn always_fails(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Err(TaskError::Failed("boom".into())) })
}

fn bad_params(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Err(TaskError::InvalidParams("missing parameter `x`".into())) })
}

fn panics(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { panic!("kaboom") })
}

fn hangs(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Err(TaskError::Failed("stopped".into()))
    })
}

/// Stops when asked, and says all went well: whether its work was done, it cannot say.
fn stops_quietly(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Ok(Some(serde_json::json!("stopped")))
    })
}

/// The clock of the test of `overruns`.
static OVERRUN_CLOCK: std::sync::Mutex<Option<ManualClock>> = std::sync::Mutex::new(None);

/// Holds its thread past its 60 s timeout, as blocking code in an async fn does (the
/// time passes on the test's clock), then returns Ok.
fn overruns(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    if let Some(clock) = OVERRUN_CLOCK.lock().unwrap().as_ref() {
        clock.advance(Duration::from_secs(61));
    }
    Box::pin(async { Ok(None) })
}

static HOOK_CALLS: std::sync::Mutex<Vec<(i64, u32, String)>> = std::sync::Mutex::new(Vec::new());

fn record_failure(run: kairos::FailedRun) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        HOOK_CALLS
            .lock()
            .unwrap()
            .push((run.run_id, run.attempt, run.error));
    })
}

fn fails_then_hook(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        Err(TaskError::Failed(format!(
            "attempt {} failed",
            ctx.attempt()
        )))
    })
}

static SLOW_ACTIVE: AtomicUsize = AtomicUsize::new(0);
static SLOW_PEAK: AtomicUsize = AtomicUsize::new(0);

/// Runs for 20 ms, counted in `active` while it does (the most at once in `peak`).
async fn counted(active: &AtomicUsize, peak: &AtomicUsize) -> TaskOutcome {
    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    active.fetch_sub(1, Ordering::SeqCst);
    Ok(None)
}

fn slow(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(counted(&SLOW_ACTIVE, &SLOW_PEAK))
}

static BUSY_ACTIVE: AtomicUsize = AtomicUsize::new(0);
static BUSY_PEAK: AtomicUsize = AtomicUsize::new(0);

/// `slow` without an instance limit: only the node's worker slots bound it.
fn busy(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(counted(&BUSY_ACTIVE, &BUSY_PEAK))
}

fn registry() -> Registry {
    Registry::from_tasks([
        TaskDef::new("echo", echo, "tests/runtime_runs.rs"),
        TaskDef {
            max_retries: Some(2),
            retry_delay: Some(Duration::from_secs(10)),
            ..TaskDef::new("always_fails", always_fails, "tests/runtime_runs.rs")
        },
        TaskDef {
            max_retries: Some(5),
            ..TaskDef::new("bad_params", bad_params, "tests/runtime_runs.rs")
        },
        TaskDef::new("panics", panics, "tests/runtime_runs.rs"),
        TaskDef {
            timeout: Some(Duration::from_secs(60)),
            ..TaskDef::new("hangs", hangs, "tests/runtime_runs.rs")
        },
        TaskDef::new("stops_quietly", stops_quietly, "tests/runtime_runs.rs"),
        TaskDef {
            timeout: Some(Duration::from_secs(60)),
            ..TaskDef::new("overruns", overruns, "tests/runtime_runs.rs")
        },
        TaskDef {
            max_retries: Some(1),
            retry_delay: Some(Duration::from_secs(1)),
            on_failure: Some(record_failure),
            ..TaskDef::new("fails_then_hook", fails_then_hook, "tests/runtime_runs.rs")
        },
        TaskDef {
            max_instances: Some(2),
            ..TaskDef::new("slow", slow, "tests/runtime_runs.rs")
        },
    ])
    .unwrap()
}

async fn start(
    url: &str,
    clock: ManualClock,
) -> (kairos::SchedulerHandle, tokio::task::JoinHandle<()>) {
    let sched = Scheduler::builder()
        .database_url(url)
        .registry(registry())
        .clock(clock)
        .max_workers(8)
        .shutdown_grace(Duration::from_millis(200))
        .build()
        .await
        .expect("build scheduler");
    let handle = sched.handle();
    let task = tokio::spawn(async move { sched.run().await.expect("run") });
    (handle, task)
}

#[tokio::test]
async fn runs_succeed_and_store_their_result() {
    for db in common::databases("runs_succeed_and_store_their_result").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let id = h
            .enqueue(Enqueue::new("echo").params(json!({"doc": "a"})))
            .await
            .unwrap();
        let run = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        assert_eq!(
            run.result,
            Some(json!({"echo": {"doc": "a"}})),
            "{}",
            db.name
        );
        assert_eq!(run.attempt, 1);
        assert_eq!(run.started_at, Some(t0()));
        assert_eq!(run.finished_at, Some(t0()));
        assert_eq!(run.error, None);
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn failures_retry_with_persisted_backoff_then_fail() {
    for db in common::databases("failures_retry_with_persisted_backoff_then_fail").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let id = h.enqueue(Enqueue::new("always_fails")).await.unwrap();
        // First attempt fails; the retry is persisted as the run's next run_at.
        common::wait_until("retry queued", || async {
            let r = h.run(id).await.unwrap();
            r.status == RunStatus::Queued && r.attempt == 1
        })
        .await;
        let r = h.run(id).await.unwrap();
        assert_eq!(r.error.as_deref(), Some("boom"));
        let delay = r.run_at - t0();
        assert!(
            delay >= chrono::Duration::milliseconds(7500)
                && delay < chrono::Duration::milliseconds(12500),
            "first backoff {delay} not around 10s"
        );
        // Nothing runs before the backoff elapses.
        clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(h.run(id).await.unwrap().attempt, 1);
        clock.advance(Duration::from_secs(8));
        common::wait_until("second attempt", || async {
            let r = h.run(id).await.unwrap();
            r.status == RunStatus::Queued && r.attempt == 2
        })
        .await;
        let r = h.run(id).await.unwrap();
        let delay = r.run_at - clock.now();
        assert!(
            delay >= chrono::Duration::seconds(15),
            "second backoff {delay} should double"
        );
        clock.advance(Duration::from_secs(30));
        let r = common::wait_status(h.admin(), id, RunStatus::Failed).await;
        assert_eq!(r.attempt, 3, "{}: 1 attempt + 2 retries", db.name);
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn invalid_params_unknown_tasks_and_panics_fail_without_crashing() {
    for db in common::databases("invalid_params_unknown_tasks_and_panics").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let bad = h.enqueue(Enqueue::new("bad_params")).await.unwrap();
        let r = common::wait_status(h.admin(), bad, RunStatus::Failed).await;
        assert_eq!(r.attempt, 1, "invalid params are not retried");
        assert_eq!(
            r.error.as_deref(),
            Some("invalid params: missing parameter `x`")
        );
        let p = h.enqueue(Enqueue::new("panics")).await.unwrap();
        let r = common::wait_status(h.admin(), p, RunStatus::Failed).await;
        assert_eq!(r.error.as_deref(), Some("panicked: kaboom"));
        // The node survives and still runs work.
        let ok = h.enqueue(Enqueue::new("echo")).await.unwrap();
        common::wait_status(h.admin(), ok, RunStatus::Succeeded).await;
        let err = h
            .enqueue(Enqueue::new("ecko"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `echo`"), "{err}");
        let err = h
            .enqueue(Enqueue::new("echo").params(json!([1, 2])))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a JSON object"), "{err}");
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn timeouts_are_measured_on_the_clock() {
    for db in common::databases("timeouts_are_measured_on_the_clock").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let id = h.enqueue(Enqueue::new("hangs")).await.unwrap();
        common::wait_status(h.admin(), id, RunStatus::Running).await;
        clock.advance(Duration::from_secs(61));
        let r = common::wait_status(h.admin(), id, RunStatus::TimedOut).await;
        assert_eq!(r.error.as_deref(), Some("timed out after 1m"));
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn cancel_queued_and_running_runs() {
    for db in common::databases("cancel_queued_and_running_runs").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let later = h
            .enqueue(Enqueue::new("echo").delay(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(
            h.cancel_run(later).await.unwrap(),
            kairos::CancelResult::Cancelled
        );
        assert_eq!(h.run(later).await.unwrap().status, RunStatus::Cancelled);
        let running = h.enqueue(Enqueue::new("hangs")).await.unwrap();
        common::wait_status(h.admin(), running, RunStatus::Running).await;
        assert_eq!(
            h.cancel_run(running).await.unwrap(),
            kairos::CancelResult::Requested
        );
        let r = common::wait_status(h.admin(), running, RunStatus::Cancelled).await;
        assert_eq!(r.attempt, 1);
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn max_instances_limits_concurrent_runs_of_a_task() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, task) = start(&db.url, clock.clone()).await;
    let ids = h
        .enqueue_many((0..8).map(|_| Enqueue::new("slow")).collect())
        .await
        .unwrap();
    for id in ids {
        common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
    }
    assert_eq!(SLOW_PEAK.load(Ordering::SeqCst), 2);
    h.shutdown();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_as_many_runs_as_it_has_workers_and_claims_more_as_they_free_up() {
    for db in common::databases("worker_slots").await {
        BUSY_PEAK.store(0, Ordering::SeqCst);
        // No task with a limit: nothing but freed slots brings the node back to claim.
        let only_busy = Registry::from_tasks([TaskDef::new("busy", busy, "tests/runtime_runs.rs")]);
        let sched = Scheduler::builder()
            .database_url(&db.url)
            .registry(only_busy.unwrap())
            .max_workers(2)
            .build()
            .await
            .unwrap();
        let h = sched.handle();
        let task = tokio::spawn(async move { sched.run().await.expect("run") });
        // More runs than workers: each claim fills the slots, and a freed slot is
        // what the dispatcher then waits for.
        let ids = h
            .enqueue_many((0..12).map(|_| Enqueue::new("busy")).collect())
            .await
            .unwrap();
        for id in ids {
            common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        }
        assert_eq!(BUSY_PEAK.load(Ordering::SeqCst), 2, "{}", db.name);
        h.shutdown();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn on_failure_runs_once_after_the_final_attempt() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, task) = start(&db.url, clock.clone()).await;
    let id = h.enqueue(Enqueue::new("fails_then_hook")).await.unwrap();
    common::wait_until("retry queued", || async {
        let r = h.run(id).await.unwrap();
        r.status == RunStatus::Queued && r.attempt == 1
    })
    .await;
    assert!(
        HOOK_CALLS.lock().unwrap().iter().all(|(r, _, _)| *r != id),
        "hook must wait for the final attempt"
    );
    clock.advance(Duration::from_secs(5));
    common::wait_status(h.admin(), id, RunStatus::Failed).await;
    common::wait_until("hook called", || async {
        HOOK_CALLS.lock().unwrap().iter().any(|(r, _, _)| *r == id)
    })
    .await;
    let calls: Vec<_> = HOOK_CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.0 == id)
        .cloned()
        .collect();
    assert_eq!(calls, vec![(id, 2, "attempt 2 failed".to_string())]);
    h.shutdown();
    task.await.unwrap();
}

#[tokio::test]
async fn a_task_that_blocks_past_its_timeout_has_timed_out_whatever_it_returns() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    *OVERRUN_CLOCK.lock().unwrap() = Some(clock.clone());
    let (h, task) = start(&db.url, clock.clone()).await;
    let id = h.enqueue(Enqueue::new("overruns")).await.unwrap();
    let r = common::wait_status(h.admin(), id, RunStatus::TimedOut).await;
    assert_eq!(r.error.as_deref(), Some("timed out after 1m"));
    assert_eq!(r.result, None);
    h.shutdown();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_releases_unfinished_runs_to_the_queue() {
    for db in common::databases("shutdown_releases_unfinished_runs").await {
        let clock = ManualClock::new(t0());
        let (h, task) = start(&db.url, clock.clone()).await;
        let id = h.enqueue(Enqueue::new("hangs")).await.unwrap();
        common::wait_status(h.admin(), id, RunStatus::Running).await;
        // One that stops when asked and returns Ok is released too: its Ok says
        // nothing of whether its work was done.
        let quiet = h.enqueue(Enqueue::new("stops_quietly")).await.unwrap();
        common::wait_status(h.admin(), quiet, RunStatus::Running).await;
        let finished = h.enqueue(Enqueue::new("echo")).await.unwrap();
        common::wait_status(h.admin(), finished, RunStatus::Succeeded).await;
        h.shutdown();
        task.await.unwrap();
        let store = kairos::Admin::connect(&db.url).await.unwrap();
        for id in [id, quiet] {
            let r = store.run(id).await.unwrap();
            assert_eq!(r.status, RunStatus::Queued, "{}: {r:?}", db.name);
            assert_eq!(
                r.attempt, 0,
                "{}: a released attempt does not count",
                db.name
            );
            assert_eq!(r.node_id, None);
        }
        assert_eq!(
            store.run(finished).await.unwrap().status,
            RunStatus::Succeeded
        );
    }
}
