//! Jobs through embedded nodes on the injected clock: interval and cron jobs fire once
//! per slot, two nodes on one database never fire a slot twice, missed slots coalesce,
//! and a pause made by another process (as the CLI does) stops and resumes firing.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::schedule::Schedule;
use kairos::task::TaskOutcome;
use kairos::test_support::JobSpec;
use kairos::testing::TestScheduler;
use kairos::{
    Admin, ManualClock, Registry, RunFilter, RunStatus, Scheduler, SlotOutcome, TaskContext,
    TaskDef,
};
use serde_json::{Value, json};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn noop(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(json!(ctx.scheduled_for()))) })
}

fn registry() -> Registry {
    Registry::from_tasks([TaskDef::new("tick", noop, "tests/runtime_jobs.rs")]).unwrap()
}

fn spec(name: &str, schedule: Schedule) -> JobSpec {
    JobSpec::new(name, "tick", schedule)
}

/// Creates the database with these jobs, as a node would, and connects to it.
async fn with_jobs(url: &str, specs: &[JobSpec], now: DateTime<Utc>) -> Admin {
    kairos::test_support::sync_jobs(url, specs, now)
        .await
        .unwrap();
    Admin::connect(url).await.unwrap()
}

/// A database holding one interval job, `every_minute`, anchored at `t0()`.
async fn minute_job(url: &str) -> Admin {
    let every_minute = spec("every_minute", Schedule::Every(Duration::from_secs(60)));
    with_jobs(url, &[every_minute], t0()).await
}

async fn node(
    url: &str,
    clock: &ManualClock,
) -> (kairos::SchedulerHandle, tokio::task::JoinHandle<()>) {
    let s = Scheduler::builder()
        .database_url(url)
        .registry(registry())
        .clock(clock.clone())
        .shutdown_grace(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let h = s.handle();
    (h, tokio::spawn(async move { s.run().await.unwrap() }))
}

async fn slots(store: &Admin, job: &str) -> Vec<DateTime<Utc>> {
    let mut v: Vec<_> = store
        .runs(&RunFilter::new().job(job).page(1, 1000))
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|r| r.scheduled_for)
        .collect();
    v.sort();
    v
}

async fn wait_slots(store: &Admin, job: &str, n: usize) -> Vec<DateTime<Utc>> {
    common::wait_until(&format!("{n} runs of {job}"), || async {
        slots(store, job).await.len() >= n
    })
    .await;
    slots(store, job).await
}

#[tokio::test]
async fn two_nodes_fire_each_slot_exactly_once() {
    for db in common::databases("two_nodes_fire_each_slot_exactly_once").await {
        let clock = ManualClock::new(t0());
        let store = minute_job(&db.url).await;
        let (a, ta) = node(&db.url, &clock).await;
        let (b, tb) = node(&db.url, &clock).await;
        for k in 1..=5 {
            clock.advance(Duration::from_secs(60));
            let got = wait_slots(&store, "every_minute", k).await;
            assert_eq!(got.len(), k, "{}: slot {k} fired twice", db.name);
        }
        let expected: Vec<_> = (1..=5)
            .map(|k| t0() + chrono::Duration::minutes(k))
            .collect();
        assert_eq!(slots(&store, "every_minute").await, expected, "{}", db.name);
        for id in store
            .runs(&RunFilter::default())
            .await
            .unwrap()
            .runs
            .iter()
            .map(|r| r.id)
        {
            common::wait_status(&store, id, RunStatus::Succeeded).await;
        }
        a.shutdown();
        b.shutdown();
        ta.await.unwrap();
        tb.await.unwrap();
    }
}

#[tokio::test]
async fn cron_job_fires_at_zone_local_times() {
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let h = TestScheduler::builder()
        .start_at(t("2026-03-01T15:59:00Z"))
        .registry(registry())
        .config_toml(
            r#"
[[jobs]]
name = "midnight_shanghai"
task = "tick"
schedule = "0 0 * * *"
timezone = "Asia/Shanghai"
"#,
        )
        .build()
        .await
        .unwrap();
    let ran = h.advance(Duration::from_secs(2 * 86_400)).await;
    let got: Vec<_> = ran
        .iter()
        .map(|r| (r.scheduled_for, r.started_at))
        .collect();
    // Midnight in Shanghai is 16:00 UTC.
    assert_eq!(
        got,
        [
            (t("2026-03-01T16:00:00Z"), Some(t("2026-03-01T16:00:00Z"))),
            (t("2026-03-02T16:00:00Z"), Some(t("2026-03-02T16:00:00Z"))),
        ]
    );
    let job = h.admin().job("midnight_shanghai").await.unwrap();
    assert_eq!(job.next_run_at, Some(t("2026-03-03T16:00:00Z")));
    h.shutdown().await;
}

#[tokio::test]
async fn missed_slots_coalesce_into_one_run() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let store = minute_job(&db.url).await;
    // No node runs for ten and a half minutes: slots 1-9 are missed (more than the
    // 30 s grace late); slot 10 is 30 s late, within the grace, and runs for itself.
    clock.advance(Duration::from_secs(630));
    let (h, t) = node(&db.url, &clock).await;
    let got = wait_slots(&store, "every_minute", 2).await;
    let m = |k| t0() + chrono::Duration::minutes(k);
    assert_eq!(got, vec![m(9), m(10)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slots(&store, "every_minute").await.len(), 2);
    assert_eq!(
        store.job("every_minute").await.unwrap().next_run_at,
        Some(m(11))
    );
    let record = store.job_slots("every_minute", t0(), 100).await.unwrap();
    let outcomes: Vec<_> = record
        .iter()
        .map(|s| (s.scheduled_for, s.outcome))
        .collect();
    let mut expected: Vec<_> = (1..=8).map(|k| (m(k), SlotOutcome::Coalesced)).collect();
    expected.push((m(9), SlotOutcome::Ran));
    expected.push((m(10), SlotOutcome::Ran));
    assert_eq!(outcomes, expected);
    assert_eq!(
        record[0].run_id, record[8].run_id,
        "coalesced into the run of 00:09"
    );
    h.shutdown();
    t.await.unwrap();
}

#[tokio::test]
async fn pause_from_another_process_stops_firing_and_resume_restarts_it() {
    for db in common::databases("pause_from_another_process").await {
        let clock = ManualClock::new(t0());
        let store = minute_job(&db.url).await;
        let (h, t) = node(&db.url, &clock).await;
        clock.advance(Duration::from_secs(60));
        wait_slots(&store, "every_minute", 1).await;
        // A separate connection, as the CLI would open.
        let cli = Admin::connect(&db.url).await.unwrap();
        cli.pause_job("every_minute").await.unwrap();
        clock.advance(Duration::from_secs(180));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            slots(&store, "every_minute").await.len(),
            1,
            "{}: paused job fired",
            db.name
        );
        cli.resume_job("every_minute").await.unwrap();
        // The node notices within its watch interval: 00:02 and 00:03 were missed
        // while paused and coalesce into one run; 00:04 is on time.
        let got = wait_slots(&store, "every_minute", 3).await;
        let m = |k| t0() + chrono::Duration::minutes(k);
        assert_eq!(got, vec![m(1), m(3), m(4)], "{}", db.name);
        h.shutdown();
        t.await.unwrap();
    }
}

#[tokio::test]
async fn trigger_runs_a_job_now() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let store = with_jobs(
        &db.url,
        &[spec("hourly", Schedule::Every(Duration::from_secs(3600)))],
        t0(),
    )
    .await;
    let (h, t) = node(&db.url, &clock).await;
    let id = h.trigger_job("hourly").await.unwrap();
    let run = common::wait_status(&store, id, RunStatus::Succeeded).await;
    assert_eq!(run.scheduled_for, t0());
    assert_eq!(run.job.as_deref(), Some("hourly"));
    assert_eq!(run.origin, kairos::RunOrigin::Manual);
    // Triggered again in the same instant (the clock stands still): a second run, a
    // millisecond on, rather than a conflict.
    let again = h.trigger_job("hourly").await.unwrap();
    assert_ne!(again, id);
    let run = common::wait_status(&store, again, RunStatus::Succeeded).await;
    assert_eq!(run.scheduled_for, t0() + chrono::Duration::milliseconds(1));
    let err = h.trigger_job("hourl").await.unwrap_err().to_string();
    assert!(err.contains("no job named `hourl`"), "{err}");
    h.shutdown();
    t.await.unwrap();
}

#[tokio::test]
async fn build_reconciles_macro_and_config_jobs_into_the_table() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let registry = Registry::from_tasks([
        TaskDef {
            schedule: Some("0 * * * *"),
            ..TaskDef::new("tick", noop, "tests/runtime_jobs.rs:1")
        },
        TaskDef {
            interval: Some(Duration::from_secs(600)),
            ..TaskDef::new("sweep", noop, "tests/runtime_jobs.rs:2")
        },
    ])
    .unwrap();
    let text = r#"
[tasks.sweep]
enabled = false

[[jobs]]
name = "tick_eu"
task = "tick"
schedule = "30 6 * * *"
timezone = "Europe/Berlin"
params = { region = "eu" }
"#;
    let build = |config: kairos::config::Config| {
        Scheduler::builder()
            .database_url(&db.url)
            .registry(registry.clone())
            .clock(clock.clone())
            .config(config)
            .build()
    };
    let config = kairos::config::Config::parse(text, "jobs.toml").unwrap();
    build(config).await.unwrap();
    let store = Admin::connect(&db.url).await.unwrap();
    let jobs = store.jobs().await.unwrap();
    let summary: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.name.as_str(),
                j.task.as_str(),
                j.enabled,
                j.source.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sweep", "sweep", false, "code"),
            ("tick", "tick", true, "code"),
            ("tick_eu", "tick", true, "config"),
        ]
    );
    let eu = store.job("tick_eu").await.unwrap();
    assert_eq!(eu.params, json!({"region": "eu"}));
    assert_eq!(
        eu.next_run_at,
        Some("2026-03-02T05:30:00Z".parse().unwrap())
    );
    assert_eq!(
        store.job("tick").await.unwrap().next_run_at,
        Some("2026-03-01T13:00:00Z".parse().unwrap())
    );
    // Removing the [[jobs]] entry disables the job but keeps it; pausing and resuming
    // it do not make it fire.
    build(kairos::config::Config::default()).await.unwrap();
    let eu = store.job("tick_eu").await.unwrap();
    assert!(!eu.enabled);
    assert_eq!(eu.next_run_at, None, "a disabled job shows no next run");
    assert!(store.pause_job("tick_eu").await.unwrap().paused);
    let eu = store.resume_job("tick_eu").await.unwrap();
    assert!(!eu.enabled && !eu.paused, "{eu:?}");
    assert_eq!(
        eu.next_run_at, None,
        "a resumed disabled job still fires nothing"
    );
}
