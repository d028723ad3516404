//! Starting on the dot: with a lead, a slot is fired and its run claimed ahead of its
//! time, and the task starts exactly at the slot; jobs with an instance limit fire only
//! when due; a run cancelled or released while it waits for its time never executes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::testing::TestScheduler;
use kairos::{Registry, RunFilter, RunStatus, TaskContext, TaskDef};
use serde_json::Value;

static EXECUTED: AtomicUsize = AtomicUsize::new(0);

fn count(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    EXECUTED.fetch_add(1, Ordering::SeqCst);
    Box::pin(async { Ok(None) })
}

fn registry() -> Registry {
    let here = "tests/runtime_lead.rs";
    Registry::from_tasks([
        TaskDef::new("count", count, here),
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
