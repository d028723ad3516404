//! Jobs through embedded nodes on the injected clock: interval and cron jobs fire once
//! per slot, two nodes on one database never fire a slot twice, missed slots coalesce,
//! and a pause made by another process (as the CLI does) stops and resumes firing.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::job::{JobSource, JobSpec};
use kairos::schedule::{CronSchedule, Schedule, Tz};
use kairos::store::Store;
use kairos::task::TaskOutcome;
use kairos::{Clock, ManualClock, Registry, RunFilter, RunStatus, Scheduler, TaskContext, TaskDef};
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
    JobSpec {
        name: name.into(),
        task: "tick".into(),
        schedule,
        params: json!({}),
        enabled: true,
        priority: None,
        source: JobSource::Api,
    }
}

/// A store holding one interval job, `every_minute`, anchored at `t0()`.
async fn minute_job(url: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    let every_minute = spec("every_minute", Schedule::Every(Duration::from_secs(60)));
    store.sync_jobs(&[every_minute], t0()).await.unwrap();
    store
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

async fn slots(store: &Store, job: &str) -> Vec<DateTime<Utc>> {
    let job = store.job(job).await.unwrap();
    let mut v: Vec<_> = store
        .runs(&RunFilter {
            job_id: Some(job.id),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.scheduled_for)
        .collect();
    v.sort();
    v
}

async fn wait_slots(store: &Store, job: &str, n: usize) -> Vec<DateTime<Utc>> {
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
    let db = common::sqlite();
    let clock = ManualClock::new("2026-03-01T15:59:00Z".parse().unwrap());
    let store = Store::connect(&db.url).await.unwrap();
    let tz: Tz = "Asia/Shanghai".parse().unwrap();
    let cron = Schedule::Cron(CronSchedule::parse("0 0 * * *", tz).unwrap());
    store
        .sync_jobs(&[spec("midnight_shanghai", cron)], clock.now())
        .await
        .unwrap();
    let (h, t) = node(&db.url, &clock).await;
    clock.advance(Duration::from_secs(60));
    let got = wait_slots(&store, "midnight_shanghai", 1).await;
    assert_eq!(
        got,
        vec!["2026-03-01T16:00:00Z".parse::<DateTime<Utc>>().unwrap()]
    );
    let job = store.job("midnight_shanghai").await.unwrap();
    assert_eq!(
        job.next_run_at,
        Some("2026-03-02T16:00:00Z".parse().unwrap())
    );
    h.shutdown();
    t.await.unwrap();
}

#[tokio::test]
async fn missed_slots_coalesce_into_one_run() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let store = minute_job(&db.url).await;
    // No node runs for ten and a half minutes.
    clock.advance(Duration::from_secs(630));
    let (h, t) = node(&db.url, &clock).await;
    let got = wait_slots(&store, "every_minute", 1).await;
    assert_eq!(got, vec![t0() + chrono::Duration::minutes(10)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slots(&store, "every_minute").await.len(), 1);
    assert_eq!(
        store.job("every_minute").await.unwrap().next_run_at,
        Some(t0() + chrono::Duration::minutes(11))
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
        let cli = Store::connect(&db.url).await.unwrap();
        cli.set_job_paused("every_minute", true, t0())
            .await
            .unwrap();
        clock.advance(Duration::from_secs(180));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            slots(&store, "every_minute").await.len(),
            1,
            "{}: paused job fired",
            db.name
        );
        cli.set_job_paused("every_minute", false, t0())
            .await
            .unwrap();
        // The node notices within its watch interval and coalesces the paused slots.
        let got = wait_slots(&store, "every_minute", 2).await;
        assert_eq!(got[1], t0() + chrono::Duration::minutes(4), "{}", db.name);
        h.shutdown();
        t.await.unwrap();
    }
}

#[tokio::test]
async fn trigger_runs_a_job_now() {
    let db = common::sqlite();
    let clock = ManualClock::new(t0());
    let store = Store::connect(&db.url).await.unwrap();
    store
        .sync_jobs(
            &[spec("hourly", Schedule::Every(Duration::from_secs(3600)))],
            t0(),
        )
        .await
        .unwrap();
    let (h, t) = node(&db.url, &clock).await;
    let id = h.trigger_job("hourly").await.unwrap().expect("a run");
    let run = common::wait_status(&store, id, RunStatus::Succeeded).await;
    assert_eq!(run.scheduled_for, t0());
    assert_eq!(run.job.as_deref(), Some("hourly"));
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
    let store = Store::connect(&db.url).await.unwrap();
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
    // Removing the [[jobs]] entry disables the job but keeps it.
    build(kairos::config::Config::default()).await.unwrap();
    let eu = store.job("tick_eu").await.unwrap();
    assert!(!eu.enabled);
}
