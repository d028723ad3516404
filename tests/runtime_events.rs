//! The event stream: a run's life as events in order, filters, a subscriber that falls
//! behind dropped with a notice while the scheduler goes on, and changes made by
//! another process reaching a node's subscribers through the database.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::events::{Event, EventFilter, EventKind, EventStream};
use kairos::schedule::Schedule;
use kairos::task::TaskOutcome;
use kairos::test_support::JobSpec;
use kairos::{
    Admin, Enqueue, ManualClock, Registry, RunStatus, Scheduler, SchedulerHandle, TaskContext,
    TaskDef,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn reports(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.stage("working");
        ctx.progress(50, "half way");
        ctx.info("a line");
        Ok(None)
    })
}

fn noop(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async { Ok(None) })
}

async fn start(url: &str, clock: &ManualClock) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    let sched = Scheduler::builder()
        .database_url(url)
        .registry(
            Registry::from_tasks([
                TaskDef::new("reports", reports, "tests/runtime_events.rs"),
                TaskDef::new("noop", noop, "tests/runtime_events.rs"),
            ])
            .unwrap(),
        )
        .clock(clock.clone())
        .max_workers(4)
        .build()
        .await
        .unwrap();
    let h = sched.handle();
    (h, tokio::spawn(async move { sched.run().await.unwrap() }))
}

/// The next event within a few seconds.
async fn next(s: &mut EventStream) -> Event {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
}

/// Events until one of `kind` (included).
async fn until(s: &mut EventStream, kind: EventKind) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let e = next(s).await;
        let done = e.kind == kind;
        out.push(e);
        if done {
            return out;
        }
    }
}

#[tokio::test]
async fn a_run_s_life_arrives_in_order_and_filters_select() {
    for db in common::databases("events_in_order").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let mut all = h.events();
        let mut tagged = h.events_matching(EventFilter::all().tag("kb_id", "42"));
        let mut other_task = h.events_matching(EventFilter::all().task("noop"));
        let id = h
            .enqueue(Enqueue::new("reports").tag("kb_id", "42"))
            .await
            .unwrap();
        let events = until(&mut all, EventKind::RunFinished).await;
        let kinds: Vec<EventKind> = events
            .iter()
            .filter(|e| e.run_id == Some(id))
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::RunQueued,
                EventKind::RunStarted,
                EventKind::RunStage,
                EventKind::RunProgress,
                EventKind::RunLog,
                EventKind::RunFinished
            ],
            "{}",
            db.name
        );
        let last = events.last().unwrap();
        assert_eq!(last.data["status"], json!("succeeded"));
        assert_eq!(last.tags.get("kb_id").map(String::as_str), Some("42"));
        let progress = events
            .iter()
            .find(|e| e.kind == EventKind::RunProgress)
            .unwrap();
        assert_eq!(progress.data["percent"], json!(50));
        assert_eq!(progress.data["message"], json!("half way"));
        // The tag filter sees the run; the task filter sees nothing of it.
        assert_eq!(next(&mut tagged).await.kind, EventKind::RunQueued);
        let n = h.enqueue(Enqueue::new("noop")).await.unwrap();
        let e = next(&mut other_task).await;
        assert_eq!((e.kind, e.run_id), (EventKind::RunQueued, Some(n)));
        h.shutdown();
        node.await.unwrap();
    }
}

/// Runs enqueued through the node while its dispatcher claims (every worker busy, so
/// enqueues take the normal path and the dispatcher claims as slots free): each run's
/// `run_queued` still comes before its `run_started`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_s_queueing_is_heard_before_its_start_while_the_node_claims() {
    for db in common::databases("queued_before_started").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock).await;
        let mut all = h.events();
        let n = 500;
        // Read while the runs are enqueued, so that the subscriber keeps up.
        let reader = tokio::spawn(async move {
            let mut queued = std::collections::HashSet::new();
            let mut early = Vec::new();
            let mut started = 0;
            while started < n {
                let e = next(&mut all).await;
                let Some(id) = e.run_id else { continue };
                match e.kind {
                    EventKind::RunQueued => {
                        queued.insert(id);
                    }
                    EventKind::RunStarted => {
                        if !queued.contains(&id) {
                            early.push(id);
                        }
                        started += 1;
                    }
                    _ => {}
                }
            }
            (queued, early)
        });
        let enqueues = (0..n).map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.enqueue(Enqueue::new("noop")).await.unwrap() })
        });
        let ids: Vec<i64> = futures::future::try_join_all(enqueues).await.unwrap();
        let (queued, early) = reader.await.unwrap();
        assert_eq!(
            early,
            Vec::<i64>::new(),
            "{}: runs started before their queueing was heard",
            db.name
        );
        assert!(ids.iter().all(|id| queued.contains(id)), "{}", db.name);
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_dropped_and_the_scheduler_goes_on() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, node) = start(&db.url, &clock).await;
    let mut lazy = h.events();
    let ids = h
        .enqueue_many((0..2500).map(|_| Enqueue::new("noop")).collect())
        .await
        .unwrap();
    common::wait_until("all runs done", || async {
        h.runs(&kairos::RunFilter::new().status(RunStatus::Succeeded))
            .await
            .unwrap()
            .total
            == ids.len() as u64
    })
    .await;
    let mut first = next(&mut lazy).await;
    while first.kind != EventKind::Dropped {
        first = next(&mut lazy).await;
    }
    assert!(first.data["missed"].as_u64().unwrap() > 0);
    assert!(
        lazy.next().await.is_none(),
        "the stream ended after the notice"
    );
    h.shutdown();
    node.await.unwrap();
}

#[tokio::test]
async fn changes_made_by_another_process_reach_the_node_s_subscribers() {
    for db in common::databases("events_across_processes").await {
        let clock = ManualClock::new(t0());
        kairos::test_support::sync_jobs(
            &db.url,
            &[JobSpec::new(
                "hourly",
                "noop",
                Schedule::Every(Duration::from_secs(3600)),
            )],
            t0(),
        )
        .await
        .unwrap();
        let (h, node) = start(&db.url, &clock).await;
        let mut jobs = h.events_matching(EventFilter::all().job("hourly"));
        // The node registers as a subscriber within a beat; then the CLI's change
        // reaches it through the event log.
        let cli = Admin::connect(&db.url).await.unwrap();
        let paused = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                cli.pause_job("hourly").await.unwrap();
                cli.resume_job("hourly").await.unwrap();
                match tokio::time::timeout(Duration::from_millis(700), jobs.next()).await {
                    Ok(Some(e)) => return e,
                    _ => continue,
                }
            }
        })
        .await
        .expect("the CLI's change arrives");
        assert!(
            matches!(paused.kind, EventKind::JobPaused | EventKind::JobResumed),
            "{paused:?}"
        );
        assert_eq!(paused.job.as_deref(), Some("hourly"), "{}", db.name);
        assert_eq!(paused.node_id, None, "made by a tool, not a node");
        h.shutdown();
        node.await.unwrap();
    }
}

/// A job created and triggered by another process, which the node never fired: the
/// events of its run still name the job, so that its subscribers hear them.
#[tokio::test]
async fn the_run_of_a_job_made_elsewhere_is_heard_by_the_job_s_subscribers() {
    for db in common::databases("events_job_made_elsewhere").await {
        // The other process keeps the wall clock: its run is due at once.
        let clock = ManualClock::new(Utc::now());
        let (h, node) = start(&db.url, &clock).await;
        let mut job = h.events_matching(EventFilter::all().job("made_elsewhere"));
        let cli = Admin::connect(&db.url).await.unwrap();
        cli.create_job(kairos::NewJob::new(
            "made_elsewhere",
            "reports",
            Schedule::Every(Duration::from_secs(3600)),
        ))
        .await
        .unwrap();
        let id = cli.trigger_job("made_elsewhere").await.unwrap();
        clock.set(Utc::now() + chrono::Duration::seconds(1));
        common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        let mut kinds = Vec::new();
        while kinds.last() != Some(&EventKind::RunFinished) {
            let e = next(&mut job).await;
            if e.run_id == Some(id) {
                assert_eq!(e.job.as_deref(), Some("made_elsewhere"), "{e:?}");
                kinds.push(e.kind);
            }
        }
        assert!(
            kinds.contains(&EventKind::RunStarted) && kinds.contains(&EventKind::RunProgress),
            "{}: {kinds:?}",
            db.name
        );
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn a_node_announces_that_it_joined_and_left() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let sched = Scheduler::builder()
        .database_url(&db.url)
        .registry(
            Registry::from_tasks([TaskDef::new("noop", noop, "tests/runtime_events.rs")]).unwrap(),
        )
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let id = sched.node_id().to_string();
    let h = sched.handle();
    let mut s = h.events();
    let run = tokio::spawn(async move { sched.run().await.unwrap() });
    let joined = until(&mut s, EventKind::NodeJoined).await.pop().unwrap();
    assert_eq!(joined.data["node_id"], json!(id));
    assert_eq!(joined.data["workers"].as_u64().map(|w| w > 0), Some(true));
    let name = joined.data["name"].clone();
    assert!(name.is_string(), "{joined:?}");
    h.shutdown();
    let left = until(&mut s, EventKind::NodeLeft).await.pop().unwrap();
    assert_eq!(
        left.data,
        json!({ "node_id": id, "name": name, "reason": "stopped" })
    );
    run.await.unwrap();
    // The node stopped: the stream ends, although the handle (and so the bus) lives on.
    let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    let mut late = h.events();
    let end = tokio::time::timeout(Duration::from_secs(5), late.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    drop(h);
}
