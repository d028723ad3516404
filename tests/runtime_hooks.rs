//! Scheduler-wide hooks: `on_success`, `on_failure`, `on_retry` and `on_skip` are called
//! with what happened, after it is stored; a hook that panics or errs is logged and
//! changes nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::schedule::Schedule;
use kairos::task::TaskOutcome;
use kairos::test_support::JobSpec;
use kairos::{
    Enqueue, ManualClock, Registry, RunOutcome, RunStatus, Scheduler, SkipReason, SkippedSlots,
    TaskContext, TaskDef, TaskError,
};
use serde_json::Value;

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn ok(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Ok(None) })
}

fn fails(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Err(TaskError::Failed("boom".into())) })
}

fn hangs(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.cancelled().await;
        Ok(None)
    })
}

#[derive(Default)]
struct Seen {
    success: Vec<RunOutcome>,
    failure: Vec<RunOutcome>,
    retry: Vec<RunOutcome>,
    skip: Vec<SkippedSlots>,
}

#[tokio::test]
async fn hooks_see_each_outcome_and_never_break_the_scheduler() {
    for db in common::databases("scheduler_hooks").await {
        let clock = ManualClock::new(t0());
        kairos::test_support::sync_jobs(
            &db.url,
            &[JobSpec::new(
                "every_minute",
                "hangs",
                Schedule::Every(Duration::from_secs(60)),
            )],
            t0(),
        )
        .await
        .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
        let sched = Scheduler::builder()
            .database_url(&db.url)
            .registry(
                Registry::from_tasks([
                    TaskDef::new("ok", ok, "tests/runtime_hooks.rs"),
                    TaskDef {
                        max_retries: Some(1),
                        retry_delay: Some(Duration::from_secs(1)),
                        ..TaskDef::new("fails", fails, "tests/runtime_hooks.rs")
                    },
                    TaskDef {
                        max_instances: Some(1),
                        ..TaskDef::new("hangs", hangs, "tests/runtime_hooks.rs")
                    },
                ])
                .unwrap(),
            )
            .clock(clock.clone())
            .shutdown_grace(Duration::from_millis(200))
            .on_success(move |o| {
                s1.lock().unwrap().success.push(o);
                async {}
            })
            // A panicking and a failing hook beside the recording ones; one panics
            // before it returns its future.
            .on_success(|o: RunOutcome| async move {
                if o.run_id > 0 {
                    panic!("a broken hook");
                }
            })
            .on_success(|o: RunOutcome| {
                if o.run_id > 0 {
                    panic!("a hook broken before its future");
                }
                async {}
            })
            .on_failure(move |o| {
                s2.lock().unwrap().failure.push(o);
                async { Err::<(), _>("the pager is down") }
            })
            .on_retry(move |o| {
                s3.lock().unwrap().retry.push(o);
                async {}
            })
            .on_skip(move |s| {
                s4.lock().unwrap().skip.push(s);
                async {}
            })
            .build()
            .await
            .unwrap();
        let h = sched.handle();
        let node = tokio::spawn(async move { sched.run().await.unwrap() });

        let good = h.enqueue(Enqueue::new("ok")).await.unwrap();
        common::wait_status(h.admin(), good, RunStatus::Succeeded).await;
        let bad = h.enqueue(Enqueue::new("fails")).await.unwrap();
        common::wait_until("retry scheduled", || async {
            !seen.lock().unwrap().retry.is_empty()
        })
        .await;
        clock.advance(Duration::from_secs(5));
        common::wait_status(h.admin(), bad, RunStatus::Failed).await;
        // The job's first run hangs; its next slot is skipped for overlap.
        clock.advance(Duration::from_secs(60));
        common::wait_until("first run of the job", || async {
            h.runs(&kairos::RunFilter::new().job("every_minute"))
                .await
                .unwrap()
                .total
                == 1
        })
        .await;
        clock.advance(Duration::from_secs(60));
        common::wait_until("hooks called", || async {
            let s = seen.lock().unwrap();
            !s.success.is_empty() && !s.failure.is_empty() && !s.skip.is_empty()
        })
        .await;
        {
            let s = seen.lock().unwrap();
            assert_eq!(s.success.len(), 1, "{}", db.name);
            assert_eq!(
                (
                    s.success[0].run_id,
                    &*s.success[0].task,
                    s.success[0].status
                ),
                (good, "ok", RunStatus::Succeeded)
            );
            assert_eq!(s.retry.len(), 1);
            assert_eq!(
                (s.retry[0].run_id, s.retry[0].attempt, s.retry[0].status),
                (bad, 1, RunStatus::Queued)
            );
            assert!(s.retry[0].retry_at.is_some());
            assert_eq!(s.failure.len(), 1);
            assert_eq!(
                (
                    s.failure[0].run_id,
                    s.failure[0].attempt,
                    s.failure[0].error.as_deref()
                ),
                (bad, 2, Some("boom"))
            );
            assert_eq!(s.skip.len(), 1);
            assert_eq!(s.skip[0].reason, SkipReason::Overlap);
            assert_eq!(s.skip[0].first, t0() + chrono::Duration::minutes(2));
        }
        // The node survived its broken hooks.
        let again = h.enqueue(Enqueue::new("ok")).await.unwrap();
        common::wait_status(h.admin(), again, RunStatus::Succeeded).await;
        h.shutdown();
        node.await.unwrap();
    }
}
