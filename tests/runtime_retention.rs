//! Forgetting and measuring: a queued run past its time to live ends `expired` without
//! running, `[retention]` prunes finished runs per status (with their history), cleanup
//! deletes finished runs by age, nodes that ended long ago are forgotten, and stats,
//! estimates and health report what the database holds. On the injected clock, with a
//! short maintenance interval.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{
    Admin, Enqueue, ManualClock, Registry, RunFilter, RunStatus, Scheduler, SchedulerHandle,
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
    Box::pin(async { Err(TaskError::Failed("no".into())) })
}

async fn start(
    url: &str,
    clock: &ManualClock,
    config: &str,
) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    start_with(url, clock, config, Some(Duration::from_millis(20))).await
}

/// [`start`] with the maintenance interval given (`None`: the default, 10 s).
async fn start_with(
    url: &str,
    clock: &ManualClock,
    config: &str,
    maintenance: Option<Duration>,
) -> (SchedulerHandle, tokio::task::JoinHandle<()>) {
    let mut builder = Scheduler::builder()
        .database_url(url)
        .registry(
            Registry::from_tasks([
                TaskDef::new("ok", ok, "tests/runtime_retention.rs"),
                TaskDef::new("fails", fails, "tests/runtime_retention.rs"),
            ])
            .unwrap(),
        )
        .config(kairos::config::Config::parse(config, "jobs.toml").unwrap())
        .clock(clock.clone());
    if let Some(every) = maintenance {
        builder = builder.maintenance_interval(every);
    }
    let sched = builder.build().await.unwrap();
    let h = sched.handle();
    (h, tokio::spawn(async move { sched.run().await.unwrap() }))
}

#[tokio::test]
async fn a_queued_run_past_its_time_to_live_expires_without_running() {
    for db in common::databases("ttl_expires").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock, "").await;
        // A time to live that ends before the run is due could only expire it.
        let refused = h
            .enqueue(
                Enqueue::new("ok")
                    .delay(Duration::from_secs(600))
                    .ttl(Duration::from_secs(300)),
            )
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("ends before the run is due"),
            "{refused}"
        );
        // Due in 1 minute, worth running within 5; its queue is paused past that (not
        // the nodes: this one may not have registered yet, and would miss the pause).
        h.admin().set_queue_paused("default", true).await.unwrap();
        let id = h
            .enqueue(
                Enqueue::new("ok")
                    .delay(Duration::from_secs(60))
                    .ttl(Duration::from_secs(300)),
            )
            .await
            .unwrap();
        let r = h.run(id).await.unwrap();
        assert_eq!(r.expires_at, Some(t0() + chrono::Duration::seconds(300)));
        let mut events = h.events_matching(kairos::events::EventFilter::all().run(id));
        clock.advance(Duration::from_secs(301));
        let r = common::wait_status(h.admin(), id, RunStatus::Expired).await;
        assert_eq!(r.attempt, 0, "{}: it never started", db.name);
        // Watchers hear that it ended.
        let e = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event")
            .expect("the stream is open");
        assert_eq!(
            (e.kind, e.data["status"].as_str()),
            (kairos::events::EventKind::RunFinished, Some("expired")),
            "{}: {e:?}",
            db.name
        );
        assert!(r.error.unwrap().contains("time to live"));
        assert!(r.finished_at.is_some());
        h.shutdown();
        node.await.unwrap();
    }
}

/// With maintenance rounds an hour apart, only the deadline's own timer can expire a
/// run: through this node, and from another process (which the node hears of through
/// the database).
#[tokio::test]
async fn a_queued_run_expires_when_its_time_to_live_ends_not_at_the_next_round() {
    for db in common::databases("ttl_on_time").await {
        // The other process keeps the wall clock: the node's starts at it too.
        let clock = ManualClock::new(Utc::now());
        let hour = Some(Duration::from_secs(3600));
        let (h, node) = start_with(&db.url, &clock, "", hour).await;
        // The queue, not the nodes: a node may not have registered yet, and a pause
        // of every node would then miss it. The queue is stored when the node is built.
        h.admin().set_queue_paused("default", true).await.unwrap();
        let here = h
            .enqueue(Enqueue::new("ok").ttl(Duration::from_secs(300)))
            .await
            .unwrap();
        let other = Admin::connect(&db.url).await.unwrap();
        let there = other
            .enqueue(Enqueue::new("ok").ttl(Duration::from_secs(600)))
            .await
            .unwrap()
            .id;
        clock.advance(Duration::from_secs(301));
        let r = common::wait_status(h.admin(), here, RunStatus::Expired).await;
        assert_eq!(r.attempt, 0, "{}", db.name);
        assert_eq!(h.run(there).await.unwrap().status, RunStatus::Queued);
        clock.advance(Duration::from_secs(300));
        let r = common::wait_status(h.admin(), there, RunStatus::Expired).await;
        assert_eq!(r.attempt, 0, "{}", db.name);
        h.shutdown();
        node.await.unwrap();
    }
}

#[tokio::test]
async fn retention_prunes_finished_runs_per_status() {
    for db in common::databases("retention_prunes").await {
        let clock = ManualClock::new(t0());
        let config = "[retention]\nsucceeded = \"1h\"\nfailed = \"1d\"\nevery = \"1m\"\n";
        let (h, node) = start(&db.url, &clock, config).await;
        let good = h.enqueue(Enqueue::new("ok").tag("k", "v")).await.unwrap();
        let bad = h.enqueue(Enqueue::new("fails")).await.unwrap();
        common::wait_status(h.admin(), good, RunStatus::Succeeded).await;
        common::wait_status(h.admin(), bad, RunStatus::Failed).await;
        // Two hours later: the success is past its hour, the failure within its day.
        clock.advance(Duration::from_secs(2 * 3600));
        common::wait_until("the success pruned", || async {
            h.admin().run(good).await.is_err()
        })
        .await;
        assert_eq!(
            h.run(bad).await.unwrap().status,
            RunStatus::Failed,
            "{}",
            db.name
        );
        let tagged = h.runs(&RunFilter::new().tag("k", "v")).await.unwrap();
        assert_eq!(tagged.total, 0, "its tags went with it");
        h.shutdown();
        node.await.unwrap();
    }
}

/// `[retention] every` shorter than the maintenance interval is kept: the node
/// prunes that often, not at the next maintenance pass.
#[tokio::test]
async fn a_short_retention_every_is_kept() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let config = "[retention]\nsucceeded = \"1h\"\nevery = \"200ms\"\n";
    let (h, node) = start_with(&db.url, &clock, config, None).await;
    let good = h.enqueue(Enqueue::new("ok")).await.unwrap();
    common::wait_status(h.admin(), good, RunStatus::Succeeded).await;
    clock.advance(Duration::from_secs(2 * 3600));
    let began = std::time::Instant::now();
    while h.admin().run(good).await.is_ok() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "not pruned within 5 s with `every = 200ms` (the maintenance interval is 10 s)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.shutdown();
    node.await.unwrap();
}

#[tokio::test]
async fn cleanup_deletes_finished_runs_older_than_an_age() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let (h, node) = start(&db.url, &clock, "").await;
    let a = h.enqueue(Enqueue::new("ok")).await.unwrap();
    let b = h.enqueue(Enqueue::new("fails")).await.unwrap();
    common::wait_status(h.admin(), a, RunStatus::Succeeded).await;
    common::wait_status(h.admin(), b, RunStatus::Failed).await;
    let later = h
        .enqueue(Enqueue::new("ok").delay(Duration::from_secs(86_400)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3600));
    let admin = h.admin();
    assert_eq!(
        admin
            .cleanup_runs(Duration::from_secs(7200), &[])
            .await
            .unwrap(),
        0,
        "nothing finished two hours ago"
    );
    assert_eq!(
        admin
            .cleanup_runs(Duration::from_secs(1800), &[RunStatus::Failed])
            .await
            .unwrap(),
        1
    );
    assert!(admin.run(b).await.is_err());
    assert!(admin.run(a).await.is_ok(), "only the failed one");
    let err = admin
        .cleanup_runs(Duration::from_secs(1), &[RunStatus::Queued])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    assert_eq!(
        admin.cleanup_runs(Duration::ZERO, &[]).await.unwrap(),
        1,
        "every finished run, never the queued one"
    );
    assert_eq!(admin.run(later).await.unwrap().status, RunStatus::Queued);
    h.shutdown();
    node.await.unwrap();
}

#[tokio::test]
async fn stats_estimates_and_health_describe_the_database() {
    for db in common::databases("stats_and_health").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock, "[queues.slow]\nconcurrency = 1\n").await;
        for _ in 0..3 {
            let id = h.enqueue(Enqueue::new("ok")).await.unwrap();
            common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        }
        let f = h.enqueue(Enqueue::new("fails")).await.unwrap();
        common::wait_status(h.admin(), f, RunStatus::Failed).await;
        let waiting = h
            .enqueue(Enqueue::new("ok").delay(Duration::from_secs(60)))
            .await
            .unwrap();
        let s = h.admin().stats(None, &[]).await.unwrap();
        assert_eq!(s.counts[&RunStatus::Succeeded], 3, "{}", db.name);
        assert_eq!(s.counts[&RunStatus::Failed], 1);
        assert_eq!(s.queued, 1);
        assert_eq!(s.completed_last_hour, 4);
        assert_eq!(s.completed_last_minute, 4);
        assert_eq!(s.completion_rate, Some(0.75));
        assert_eq!(s.failure_rate, Some(0.25));
        let ok = s.tasks.iter().find(|t| t.task == "ok").unwrap();
        assert_eq!((ok.finished, ok.succeeded, ok.failed), (3, 3, 0));
        assert_eq!(ok.p95_duration_ms, Some(0), "instant on the manual clock");
        let scoped = h.admin().stats(Some("fails"), &[]).await.unwrap();
        assert_eq!(scoped.counts[&RunStatus::Succeeded], 0);
        assert_eq!(scoped.counts[&RunStatus::Failed], 1);
        // The task's own queue, though none of its runs waits there now.
        let names: Vec<&str> = scoped.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["default"], "{}", db.name);
        // A run due in a minute, nothing ahead of it: it starts when due.
        let run = h.run(waiting).await.unwrap();
        let e = h.admin().estimate(&run).await.unwrap().unwrap();
        assert_eq!(e.ahead, 0);
        assert_eq!(e.start, t0() + chrono::Duration::seconds(60));
        assert_eq!(e.completion, Some(e.start), "the task takes no time here");
        assert_eq!(e.held, None);
        let health = h.admin().health(Some(Duration::from_secs(30))).await;
        assert!(health.healthy, "{health:?}");
        assert!(health.live_workers > 0);
        assert!(health.warnings.is_empty(), "{health:?}");
        // Held by a paused queue, then by every node paused (healthy, with a warning).
        h.admin().set_queue_paused("default", true).await.unwrap();
        let e = h.admin().estimate(&run).await.unwrap().unwrap();
        let held = e.held.unwrap_or_default();
        assert!(held.contains("queue `default` is paused"), "{held}");
        h.admin().set_queue_paused("default", false).await.unwrap();
        h.admin().set_nodes_paused(None, true).await.unwrap();
        let e = h.admin().estimate(&run).await.unwrap().unwrap();
        let held = e.held.unwrap_or_default();
        assert!(held.contains("every live node is paused"), "{held}");
        let health = h.admin().health(Some(Duration::from_secs(30))).await;
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.warnings.len(), 1, "{health:?}");
        assert!(health.warnings[0].contains("kairos nodes resume"));
        h.admin().set_nodes_paused(None, false).await.unwrap();
        h.shutdown();
        node.await.unwrap();
        let after = Admin::connect(&db.url).await.unwrap();
        let health = after.health(Some(Duration::from_secs(30))).await;
        assert!(!health.healthy);
        assert!(health.database);
        assert!(
            health.reasons[0].contains("no node is running"),
            "{health:?}"
        );
        // A run whose time to live has run out can only expire: no start is promised.
        let brief = after
            .enqueue(Enqueue::new("ok").ttl(Duration::from_millis(50)))
            .await
            .unwrap()
            .id;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let run = after.run(brief).await.unwrap();
        assert_eq!(run.status, RunStatus::Queued, "no node runs to expire it");
        assert!(after.estimate(&run).await.unwrap().is_none(), "{}", db.name);
    }
}

#[tokio::test]
async fn nodes_that_ended_longer_ago_than_kept_are_forgotten_and_a_live_one_registers_again() {
    for db in common::databases("nodes_forgotten").await {
        let clock = ManualClock::new(t0());
        let (h, node) = start(&db.url, &clock, "[retention]\nnodes = \"1h\"\n").await;
        // Ages are judged on the database's clock: the server runs beside this test.
        let now_ms = Utc::now().timestamp_millis();
        let day_ago = now_ms - 86_400_000;
        for (id, status, beat) in [
            ("stopped-a-day-ago", "stopped", day_ago),
            ("dead-a-day-ago", "dead", day_ago),
            ("stopped-a-minute-ago", "stopped", now_ms - 60_000),
        ] {
            kairos::test_support::insert_node(&db.url, id, status, beat)
                .await
                .unwrap();
        }
        // The next prune (every 10 minutes by default, on the node's clock).
        clock.advance(Duration::from_secs(601));
        let listed = || async {
            let nodes = h.admin().nodes().await.unwrap();
            nodes.into_iter().map(|n| n.id).collect::<Vec<_>>()
        };
        common::wait_until("the nodes that ended a day ago forgotten", || async {
            !listed().await.iter().any(|id| id.ends_with("a-day-ago"))
        })
        .await;
        let left = listed().await;
        assert!(
            left.iter().any(|id| id == "stopped-a-minute-ago"),
            "{}: {left:?}",
            db.name
        );
        // A live node whose record went (deleted by hand here) registers again at its
        // next heartbeat, paused as it was.
        let mine = || async {
            h.admin()
                .nodes()
                .await
                .unwrap()
                .into_iter()
                .find(|n| n.hostname != "elsewhere")
                .expect("this node is listed")
        };
        let me = mine().await.id;
        h.admin().set_nodes_paused(Some(&me), true).await.unwrap();
        let paused_at = mine().await.heartbeat_at;
        common::wait_until("a heartbeat after the pause", || async {
            mine().await.heartbeat_at > paused_at
        })
        .await;
        kairos::test_support::execute(
            &db.url,
            &format!("DELETE FROM kairos_nodes WHERE id = '{me}'"),
        )
        .await
        .unwrap();
        common::wait_until("this node registered again", || async {
            h.admin()
                .nodes()
                .await
                .unwrap()
                .iter()
                .any(|n| n.id == me && n.status == "running")
        })
        .await;
        assert!(mine().await.paused, "{}: the pause was lost", db.name);
        h.shutdown();
        node.await.unwrap();
    }
}
