//! Inside a run: progress, stage, per-run logs and checkpoints reported through the
//! `TaskContext` are stored (the last report always), a retried attempt resumes from
//! the last checkpoint, and a node that lost a run cannot report for it.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{
    Enqueue, LogLevel, ManualClock, Registry, RunStatus, Scheduler, SchedulerHandle, TaskContext,
    TaskDef, TaskError,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// Reports a lot, as a refresh over 19 districts would.
fn refresh(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.stage("loading");
        ctx.info("starting the refresh");
        for d in 1..=19u8 {
            for step in 0..10u8 {
                let pct = ((u32::from(d - 1) * 10 + u32::from(step)) * 100 / 190) as u8;
                ctx.progress(pct, format!("district {d} of 19"));
            }
        }
        ctx.stage("storing");
        ctx.log(LogLevel::Warn, "district 7 had no rows");
        ctx.progress(100, "done");
        Ok(None)
    })
}

/// Saves where it got to, fails the first attempt, resumes on the second.
fn resumable(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let start: u32 = ctx.last_checkpoint().unwrap_or(0);
        if ctx.attempt() == 1 {
            ctx.stage("paging");
            ctx.progress(70, "page 7 of 10");
            ctx.checkpoint(&7u32)?;
            return Err(TaskError::Failed("upstream went away at page 7".into()));
        }
        Ok(Some(json!({ "resumed_from": start })))
    })
}

async fn start(url: &str, clock: &ManualClock) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    let sched = Scheduler::builder()
        .database_url(url)
        .registry(
            Registry::from_tasks([
                TaskDef::new("refresh", refresh, "tests/runtime_insight.rs"),
                TaskDef {
                    max_retries: Some(1),
                    retry_delay: Some(Duration::from_secs(1)),
                    ..TaskDef::new("resumable", resumable, "tests/runtime_insight.rs")
                },
            ])
            .unwrap(),
        )
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let h = sched.handle();
    (h, tokio::spawn(async move { sched.run().await.unwrap() }))
}

#[tokio::test]
async fn progress_stage_and_logs_are_stored_with_the_last_report() {
    for db in common::databases("progress_stage_logs").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let id = h.enqueue(Enqueue::new("refresh")).await.unwrap();
        let r = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        assert_eq!(r.progress, Some(100), "{}", db.name);
        assert_eq!(r.progress_message.as_deref(), Some("done"));
        assert_eq!(r.stage.as_deref(), Some("storing"));
        let logs = h.admin().run_logs(id, 0, 100).await.unwrap();
        let lines: Vec<(LogLevel, &str)> =
            logs.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(
            lines,
            [
                (LogLevel::Info, "starting the refresh"),
                (LogLevel::Warn, "district 7 had no rows")
            ]
        );
        assert!(logs.iter().all(|l| l.attempt == 1 && l.at == t0()));
        let after_first = h.admin().run_logs(id, logs[0].id, 100).await.unwrap();
        assert_eq!(after_first.len(), 1, "reading on after a line");
        assert!(h.admin().run_logs(999_999, 0, 10).await.is_err());
        // Deleting the run deletes its log with it.
        h.admin().delete_run(id).await.unwrap();
        let sql = format!("SELECT COUNT(*) AS n FROM kairos_run_logs WHERE run_id = {id}");
        assert_eq!(
            kairos::test_support::query_i64(&db.url, &sql)
                .await
                .unwrap(),
            0
        );
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn a_retried_attempt_resumes_from_the_last_checkpoint() {
    for db in common::databases("checkpoint_resume").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let id = h.enqueue(Enqueue::new("resumable")).await.unwrap();
        common::wait_until("retry queued", || async {
            let r = h.run(id).await.unwrap();
            r.status == RunStatus::Queued && r.attempt == 1
        })
        .await;
        let queued = h.run(id).await.unwrap();
        assert_eq!(queued.checkpoint, Some(json!(7)));
        // The failed attempt's progress and stage are not the queued run's: they go,
        // and the checkpoint stays for the next attempt.
        assert_eq!(
            (queued.progress, queued.progress_message, queued.stage),
            (None, None, None),
            "{}",
            db.name
        );
        clock.advance(Duration::from_secs(5));
        let r = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        assert_eq!(r.result, Some(json!({"resumed_from": 7})), "{}", db.name);
        h.shutdown();
        node.await.unwrap();
    }
}
