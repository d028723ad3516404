//! `kairos::testing`, used the way an application's own tests use it: tasks declared
//! with `#[kairos::task]`, days passing on the virtual clock in milliseconds, and
//! assertions on the runs that result.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kairos::events::EventKind;
use kairos::sea_orm::TransactionTrait;
use kairos::testing::TestScheduler;
use kairos::{Enqueue, FailedRun, RunFilter, RunStatus, TaskContext};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[kairos::task(schedule = "30 2 * * *", timezone = "America/New_York")]
async fn nightly_backup() {}

static UPLOAD_ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
static FAILED: Mutex<Vec<(i64, u32, String)>> = Mutex::new(Vec::new());

#[kairos::task(max_retries = 2, retry_delay = "10m", on_failure = page_someone)]
async fn flaky_upload(file: String) -> anyhow::Result<()> {
    UPLOAD_ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    anyhow::bail!("the bucket refused {file}")
}

async fn page_someone(run: FailedRun) {
    FAILED
        .lock()
        .unwrap()
        .push((run.run_id, run.attempt, run.error.clone()));
}

#[kairos::task(interval_minutes = 60)]
async fn hourly_report(ctx: TaskContext) {
    ctx.progress(100, "done");
}

#[kairos::task(timeout = "5m")]
async fn stuck_export(ctx: TaskContext) {
    // Waits until cancelled: only the timeout ends it.
    ctx.cancelled().await;
}

#[kairos::task]
async fn ship_order(order: u32) -> u32 {
    order
}

#[kairos::task(timeout = "30m")]
async fn fetch(ms: u64) -> String {
    // Real work: a call that takes real time.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "fetched".into()
}

#[kairos::task(max_instances = 1)]
async fn one_at_a_time(ctx: TaskContext) -> anyhow::Result<i64> {
    // Real work again, on a task that runs one instance at a time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(ctx.run_id())
}

/// Runs of one task among what `advance` returned.
fn of<'a>(runs: &'a [kairos::Run], task: &str) -> Vec<&'a kairos::Run> {
    runs.iter().filter(|r| r.task == task).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0230_job_runs_once_on_the_spring_forward_night_and_on_time_after() {
    let t = TestScheduler::builder()
        .start_at(at("2026-03-07T12:00:00Z"))
        .build()
        .await
        .unwrap();
    let ran = t.advance(Duration::from_secs(3 * 86_400)).await;
    let slots: Vec<_> = of(&ran, "nightly_backup")
        .iter()
        .map(|r| (r.scheduled_for, r.status))
        .collect();
    assert_eq!(
        slots,
        [
            // 02:30 does not exist in New York on 2026-03-08: it runs at 03:00 EDT.
            (at("2026-03-08T07:00:00Z"), RunStatus::Succeeded),
            (at("2026-03-09T06:30:00Z"), RunStatus::Succeeded),
            (at("2026-03-10T06:30:00Z"), RunStatus::Succeeded),
        ]
    );
    // Each ran at its slot on the virtual clock, not whenever the test got to it.
    for r in of(&ran, "nightly_backup") {
        assert_eq!(r.started_at, Some(r.scheduled_for), "{r:?}");
    }
    assert_eq!(t.now(), at("2026-03-10T12:00:00Z"));
    // The hourly job ran every hour of those three days, too.
    assert_eq!(of(&ran, "hourly_report").len(), 72);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failed_attempts_then_the_failure_callback_once() {
    let t = TestScheduler::builder()
        .start_at(at("2026-05-01T09:00:00Z"))
        .build()
        .await
        .unwrap();
    let id = t
        .enqueue(Enqueue::new("flaky_upload").params(serde_json::json!({ "file": "a.csv" })))
        .await
        .unwrap();
    let first = t.run_until_idle().await;
    assert_eq!(of(&first, "flaky_upload").len(), 0, "a retry is pending");
    let run = t.admin().run(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    // Retry delays are exact under the harness (no jitter): 10 minutes, then 20.
    assert_eq!(run.run_at, at("2026-05-01T09:10:00Z"));

    let ran = t.advance(Duration::from_secs(3600)).await;
    let finished = of(&ran, "flaky_upload");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].id, id);
    assert_eq!(finished[0].status, RunStatus::Failed);
    assert_eq!(finished[0].attempt, 3);
    assert_eq!(
        finished[0].finished_at,
        Some(at("2026-05-01T09:30:00Z")),
        "two retries, after 10 and 20 minutes"
    );
    assert_eq!(UPLOAD_ATTEMPTS.load(Ordering::SeqCst), 3);
    // The callback runs after the outcome is stored; give it a moment.
    for _ in 0..200 {
        if !FAILED.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        *FAILED.lock().unwrap(),
        [(id, 3, "the bucket refused a.csv".to_string())]
    );
    let retries = t
        .events()
        .iter()
        .filter(|e| e.run_id == Some(id) && e.kind == EventKind::RunRetried)
        .count();
    assert_eq!(retries, 2);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_job_catches_up_once_on_resume() {
    let t = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .build()
        .await
        .unwrap();
    t.advance(Duration::from_secs(2 * 3600)).await;
    t.admin().pause_job("hourly_report").await.unwrap();
    let paused = t.advance(Duration::from_secs(5 * 3600 + 1800)).await;
    assert!(of(&paused, "hourly_report").is_empty());

    t.admin().resume_job("hourly_report").await.unwrap();
    let resumed = t.run_until_idle().await;
    let catch_up = of(&resumed, "hourly_report");
    assert_eq!(catch_up.len(), 1, "run_once coalesces the missed slots");
    assert_eq!(catch_up[0].started_at, Some(at("2026-06-01T07:30:00Z")));
    // Then on schedule again.
    let next = t.advance(Duration::from_secs(3600)).await;
    assert_eq!(of(&next, "hourly_report").len(), 1);
    let mut started: Vec<_> = t
        .runs(RunFilter::default().task("hourly_report"))
        .await
        .iter()
        .map(|r| (r.scheduled_for, r.started_at.unwrap()))
        .collect();
    started.sort();
    assert_eq!(
        started,
        [
            // Anchored at the job's creation at 00:00.
            (at("2026-06-01T01:00:00Z"), at("2026-06-01T01:00:00Z")),
            (at("2026-06-01T02:00:00Z"), at("2026-06-01T02:00:00Z")),
            // 03:00 to 07:00 passed while paused: one run, stamped with the latest.
            (at("2026-06-01T07:00:00Z"), at("2026-06-01T07:30:00Z")),
            (at("2026-06-01T08:00:00Z"), at("2026-06-01T08:00:00Z")),
        ]
    );
    let slots = t.slots("hourly_report").await;
    let coalesced = slots
        .iter()
        .filter(|s| s.outcome == kairos::SlotOutcome::Coalesced)
        .count();
    assert_eq!(
        coalesced, 4,
        "03:00 to 06:00 are covered by the 07:00 run: {slots:?}"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_run_times_out_on_the_virtual_clock() {
    let t = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .build()
        .await
        .unwrap();
    let id = t.enqueue(Enqueue::new("stuck_export")).await.unwrap();
    assert!(of(&t.run_until_idle().await, "stuck_export").is_empty());
    let ran = t.advance(Duration::from_secs(600)).await;
    let done = of(&ran, "stuck_export");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].status, RunStatus::TimedOut);
    assert_eq!(done[0].finished_at, Some(at("2026-06-01T00:05:00Z")));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_enqueued_in_the_application_s_transaction_runs_only_if_it_commits() {
    let t = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .build()
        .await
        .unwrap();
    let app = t.connect().await.unwrap();
    let ship = |order: u32| {
        Enqueue::new("ship_order")
            .params(serde_json::json!({ "order": order }))
            .delay(Duration::from_secs(3600))
    };

    let txn = app.begin().await.unwrap();
    let lost = t.handle().enqueue_in(&txn, ship(1)).await.unwrap();
    txn.rollback().await.unwrap();
    assert!(t.admin().run(lost).await.is_err(), "rolled back: no run");
    let txn = app.begin().await.unwrap();
    let kept = t.handle().enqueue_in(&txn, ship(2)).await.unwrap();
    txn.commit().await.unwrap();

    let ran = t.advance(Duration::from_secs(2 * 3600)).await;
    let shipped = of(&ran, "ship_order");
    assert_eq!(shipped.len(), 1, "only the committed run: {ran:?}");
    assert_eq!(shipped[0].id, kept);
    assert_eq!(shipped[0].status, RunStatus::Succeeded);
    assert_eq!(shipped[0].result, Some(serde_json::json!(2)));
    // At its time on the virtual clock.
    assert_eq!(shipped[0].started_at, Some(at("2026-06-01T01:00:00Z")));
    assert!(
        t.database_url().starts_with("sqlite://"),
        "{}",
        t.database_url()
    );
    app.close().await.unwrap();
    t.shutdown().await;
}

/// A task that takes real time (a call, a query) is waited for: it finishes at the
/// virtual instant it started, whatever the machine's speed, instead of the clock
/// running on past its timeout meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_doing_real_work_finishes_at_the_instant_it_started() {
    let t = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .build()
        .await
        .unwrap();
    let id = t
        .enqueue(Enqueue::new("fetch").params(serde_json::json!({"ms": 300})))
        .await
        .unwrap();
    let ran = t.advance(Duration::from_secs(3 * 3600)).await;
    let done = of(&ran, "fetch");
    assert_eq!(done.len(), 1, "{ran:?}");
    assert_eq!(done[0].id, id);
    assert_eq!(done[0].status, RunStatus::Succeeded, "{:?}", done[0]);
    assert_eq!(done[0].finished_at, Some(at("2026-06-01T00:00:00Z")));
    t.shutdown().await;
}

/// A harness at 2026-06-01T00:00:00Z with three runs of `one_at_a_time` (one instance
/// at a time, 100 ms of real work each) enqueued: their ids.
async fn three_held_runs() -> (TestScheduler, Vec<i64>) {
    let t = TestScheduler::builder()
        .start_at(at("2026-06-01T00:00:00Z"))
        .build()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.enqueue(Enqueue::new("one_at_a_time")).await.unwrap());
    }
    (t, ids)
}

/// Every one of `ids` succeeded, in order, at the harness's start.
fn all_succeeded_at_the_start(ran: &[kairos::Run], ids: &[i64]) {
    let done: Vec<_> = of(ran, "one_at_a_time")
        .iter()
        .map(|r| (r.id, r.status, r.finished_at))
        .collect();
    let t0 = Some(at("2026-06-01T00:00:00Z"));
    assert_eq!(
        done,
        ids.iter()
            .map(|id| (*id, RunStatus::Succeeded, t0))
            .collect::<Vec<_>>()
    );
}

/// Runs held back by `max_instances` are due too: each starts once the one before it
/// has ended, at the same virtual instant, however short the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_held_by_max_instances_run_one_after_another_at_their_instant() {
    let (t, ids) = three_held_runs().await;
    let ran = t.advance(Duration::from_secs(10)).await;
    all_succeeded_at_the_start(&ran, &ids);
    t.shutdown().await;
}

/// `run_until_idle` waits for held runs as well: each starts once a slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_idle_runs_what_max_instances_held_back() {
    let (t, ids) = three_held_runs().await;
    let ran = t.run_until_idle().await;
    all_succeeded_at_the_start(&ran, &ids);
    t.shutdown().await;
}
