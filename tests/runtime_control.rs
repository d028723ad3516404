//! Steering runs through an embedded node: an operator's cancel wins over a task that
//! notices it and returns `Ok`, snooze re-queues without using an attempt, batches are
//! all or nothing, idempotency keys return the unfinished run, tags find runs, params
//! are checked at the door, and shutdown keeps to its grace period.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{
    Admin, CancelResult, Enqueue, ManualClock, Registry, RunEventKind, RunFilter, RunStatus,
    Scheduler, SchedulerHandle, TaskContext, TaskDef, TaskError,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// Waits for the cancel and returns `Ok`: the natural cooperative task.
fn cooperative(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Ok(Some(json!("stopped cleanly")))
    })
}

/// Snoozes on its first attempt, succeeds on the next.
fn busy_upstream(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        if SNOOZED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Err(TaskError::Snooze(Duration::from_secs(60)));
        }
        Ok(Some(json!(ctx.attempt())))
    })
}

static SNOOZED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn echo(_: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(p)) })
}

/// Takes `{"ms": n}` milliseconds of real time, and ignores cancellation.
fn sleeps(_: TaskContext, p: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let ms = p["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(Some(json!("slept")))
    })
}

/// Takes 20 s of real time unless cancelled first.
fn long_cooperative(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        tokio::select! {
            _ = ctx.cancelled() => Err(TaskError::Failed("stopped".into())),
            _ = tokio::time::sleep(Duration::from_secs(20)) => Ok(None),
        }
    })
}

fn registry() -> Registry {
    Registry::from_tasks([
        TaskDef::new("cooperative", cooperative, "tests/runtime_control.rs"),
        TaskDef {
            max_retries: Some(1),
            ..TaskDef::new("busy_upstream", busy_upstream, "tests/runtime_control.rs")
        },
        TaskDef::new("echo", echo, "tests/runtime_control.rs"),
        TaskDef::new("sleeps", sleeps, "tests/runtime_control.rs"),
        TaskDef::new(
            "long_cooperative",
            long_cooperative,
            "tests/runtime_control.rs",
        ),
    ])
    .unwrap()
}

async fn start(url: &str, clock: &ManualClock) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    let sched = Scheduler::builder()
        .database_url(url)
        .registry(registry())
        .clock(clock.clone())
        .max_workers(4)
        .shutdown_grace(Duration::from_millis(200))
        .build()
        .await
        .expect("build scheduler");
    let h = sched.handle();
    (
        h,
        tokio::spawn(async move { sched.run().await.expect("run") }),
    )
}

#[tokio::test]
async fn an_operator_cancel_wins_over_a_task_that_returns_ok() {
    for db in common::databases("cancel_wins_over_ok").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let id = h.enqueue(Enqueue::new("cooperative")).await.unwrap();
        common::wait_status(h.admin(), id, RunStatus::Running).await;
        // Through another connection, as the CLI does.
        let cli = Admin::connect(&db.url).await.unwrap();
        assert_eq!(cli.cancel_run(id).await.unwrap(), CancelResult::Requested);
        let r = common::wait_status(h.admin(), id, RunStatus::Cancelled).await;
        assert_eq!(r.result, None, "{}", db.name);
        assert_eq!(r.attempt, 1);
        let err = cli.cancel_run(id).await.unwrap_err();
        assert_eq!(err.code(), "conflict");
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn snooze_requeues_without_using_an_attempt() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, node) = start(&db.url, &clock).await;
    let id = h.enqueue(Enqueue::new("busy_upstream")).await.unwrap();
    common::wait_until("snoozed", || async {
        let r = h.run(id).await.unwrap();
        r.status == RunStatus::Queued && !r.history.is_empty()
    })
    .await;
    let r = h.run(id).await.unwrap();
    assert_eq!(r.attempt, 0, "a snooze gives the attempt back");
    assert_eq!(r.run_at, t0() + chrono::Duration::seconds(60));
    assert_eq!(r.history[0].event, RunEventKind::Snoozed);
    clock.advance(Duration::from_secs(61));
    let r = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
    assert_eq!(
        r.result,
        Some(json!(1)),
        "the next attempt is still attempt 1"
    );
    h.shutdown();
    node.await.unwrap();
}

#[tokio::test]
async fn batches_are_all_or_nothing_and_name_each_bad_item() {
    for db in common::databases("batch_all_or_nothing").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let err = h
            .enqueue_many(vec![
                Enqueue::new("echo"),
                Enqueue::new("ehco"),
                Enqueue::new("echo").params(json!([1])),
            ])
            .await
            .unwrap_err();
        let kairos::Error::Batch { total, errors } = &err else {
            panic!("{err}");
        };
        assert_eq!(*total, 3);
        let bad: Vec<usize> = errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad, vec![1, 2], "{}", db.name);
        assert!(err.to_string().contains("did you mean `echo`"), "{err}");
        let page = h.runs(&RunFilter::new()).await.unwrap();
        assert_eq!(page.total, 0, "nothing was enqueued");
        let ids = h
            .enqueue_many(
                (0..3)
                    .map(|i| Enqueue::new("echo").tag("i", i.to_string()))
                    .collect(),
            )
            .await
            .unwrap();
        assert_eq!(ids.len(), 3);
        let tagged = h.runs(&RunFilter::new().tag("i", "1")).await.unwrap();
        assert_eq!(tagged.total, 1);
        assert_eq!(tagged.runs[0].id, ids[1]);
        assert_eq!(tagged.runs[0].tags.get("i").map(String::as_str), Some("1"));
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn idempotency_keys_return_the_unfinished_run() {
    for db in common::databases("idempotency_through_the_handle").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let later = |k: &str| {
            Enqueue::new("echo")
                .delay(Duration::from_secs(600))
                .idempotency_key(k)
        };
        let a = h.enqueue(later("report-2026-03")).await.unwrap();
        let b = h.enqueue(later("report-2026-03")).await.unwrap();
        assert_eq!(a, b, "{}", db.name);
        let enq = h.admin().enqueue(later("report-2026-03")).await.unwrap();
        assert!(enq.existing);
        assert_eq!(enq.id, a);
        let other = h.enqueue(later("report-2026-04")).await.unwrap();
        assert_ne!(other, a);
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn bad_requests_are_refused_at_the_door() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, node) = start(&db.url, &clock).await;
    let e = h
        .enqueue(Enqueue::new("echo").delay(Duration::from_secs(200 * 365 * 86_400)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_input");
    assert!(e.to_string().contains("never start"), "{e}");
    let e = h
        .enqueue(Enqueue::new("echo").tag("", "x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tag key"), "{e}");
    let e = h
        .enqueue(Enqueue::new("echo").timeout(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timeout"), "{e}");
    // `null` params count as none, as the task itself reads them.
    let id = h
        .enqueue(Enqueue::new("echo").params(Value::Null))
        .await
        .unwrap();
    let r = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
    assert_eq!(r.params, json!({}));
    h.shutdown();
    node.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_grace_period_even_with_a_task_that_ignores_cancellation() {
    for db in common::databases("shutdown_within_grace").await {
        let clock = ManualClock::new(t0());
        // The default cancel grace (5 s): shutdown must not add it to its own.
        let sched = Scheduler::builder()
            .database_url(&db.url)
            .registry(registry())
            .clock(clock.clone())
            .max_workers(4)
            .shutdown_grace(Duration::from_secs(1))
            .build()
            .await
            .expect("build scheduler");
        let h = sched.handle();
        let node = tokio::spawn(sched.run());
        let quick = h
            .enqueue(Enqueue::new("sleeps").params(json!({ "ms": 300 })))
            .await
            .unwrap();
        let stubborn = h
            .enqueue(Enqueue::new("sleeps").params(json!({ "ms": 20_000 })))
            .await
            .unwrap();
        let cooperative = h.enqueue(Enqueue::new("long_cooperative")).await.unwrap();
        for id in [quick, stubborn, cooperative] {
            common::wait_status(h.admin(), id, RunStatus::Running).await;
        }
        let asked = std::time::Instant::now();
        h.shutdown();
        node.await.unwrap().expect("run");
        let took = asked.elapsed();
        // 1 s of grace plus a moment to stop and write outcomes; loose for a loaded
        // machine, but far below the grace plus the 5 s cancel grace.
        assert!(
            took < Duration::from_secs(3),
            "{}: shutdown took {took:?} with a 1 s grace",
            db.name
        );
        let admin = Admin::connect(&db.url).await.unwrap();
        let r = admin.run(quick).await.unwrap();
        assert_eq!(r.status, RunStatus::Succeeded, "{}", db.name);
        for id in [stubborn, cooperative] {
            let r = admin.run(id).await.unwrap();
            assert_eq!(
                (r.status, r.attempt, r.node_id),
                (RunStatus::Queued, 0, None),
                "{}: released, the attempt not counted",
                db.name
            );
            let last = r.history.last().map(|e| e.event);
            assert_eq!(last, Some(RunEventKind::Released), "{}", db.name);
        }
    }
}
