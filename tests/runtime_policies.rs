//! Scheduling policies end to end, on embedded nodes driven by the injected clock:
//!
//! - misfire after downtime (`run_once`, `skip`, `catch_up` with `max_catch_up`,
//!   `misfire_grace`), set on the job, in `[[jobs]]` and in `[tasks.<name>]`;
//! - misfire at resume, with `paused` (not `misfire`) as the reason of slots that
//!   passed while the job was paused;
//! - overlap at `max_instances` (`skip`, `queue`, `replace`, also across two nodes),
//!   and catch-up runs under `max_instances = 1`;
//! - the record of every slot (`job_slots`): each nominal slot once, in order;
//! - queues: `concurrency = 1` with priority then due-time order (held across two
//!   nodes), `rate_limit` counted from the database (a restart does not reset it),
//!   pausing a queue and every node;
//! - the per-job DST override reaching the schedule.
//!
//! Everything is asserted on what the database holds, read back through [`Admin`]:
//! runs (`scheduled_for`, `origin`, status, `started_at`), slot records and queues.
//! SQLite always; PostgreSQL too (`KAIROS_TEST_POSTGRES_URL`) wherever firing or
//! claiming is involved. Runs whose end a test must control wait on a [`Gate`].

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use kairos::config::Config;
use kairos::schedule::Schedule;
use kairos::task::TaskOutcome;
use kairos::test_support::JobSpec;
use kairos::testing::TestScheduler;
use kairos::{
    Admin, Enqueue, JobPolicy, JobSlot, ManualClock, Misfire, Overlap, Registry, Run, RunFilter,
    RunOrigin, RunStatus, Scheduler, SchedulerHandle, SkipReason, SlotOutcome, TaskContext,
    TaskDef,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// Time

const MINUTE: Duration = Duration::from_secs(60);

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// The `k`-th slot of a job firing every minute from `t0()`.
fn m(k: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(k)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Real time given to a node to (not) do something: the bound of negative checks.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------------------------
// Gates: runs that end when the test says so

/// Runs of the `gated` handler with `params.gate = NAME` wait on the gate of that name
/// until the test opens it (one permit ends one run) or the run is cancelled.
struct Gate {
    permits: tokio::sync::Semaphore,
    started: Mutex<Vec<i64>>,
    active: AtomicUsize,
    peak: AtomicUsize,
}

static GATES: Mutex<BTreeMap<String, Arc<Gate>>> = Mutex::new(BTreeMap::new());

/// The gate of this name (created closed).
fn gate(name: &str) -> Arc<Gate> {
    GATES
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(Gate {
                permits: tokio::sync::Semaphore::new(0),
                started: Mutex::new(Vec::new()),
                active: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            })
        })
        .clone()
}

impl Gate {
    /// Lets `n` waiting runs finish.
    fn open(&self, n: usize) {
        self.permits.add_permits(n);
    }

    /// Run ids in the order their attempts started.
    fn started(&self) -> Vec<i64> {
        self.started.lock().unwrap().clone()
    }

    /// Most runs that were inside the gate at once.
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    async fn wait_started(&self, n: usize) -> Vec<i64> {
        common::wait_until(&format!("{n} gated runs started"), || async {
            self.started().len() >= n
        })
        .await;
        self.started()
    }
}

/// A gate name unique to a test and a database.
fn gate_name(test: &str, db: &common::TestDb) -> String {
    format!("{test}:{}", db.name)
}

// ---------------------------------------------------------------------------------
// Tasks

fn noop(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move { Ok(Some(json!(ctx.scheduled_for()))) })
}

/// Waits on `params.gate` (or returns at once without one); a cancel ends the wait and
/// the task returns `Ok`, as a cooperative task would.
fn gated(ctx: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let Some(name) = params.get("gate").and_then(Value::as_str) else {
            return Ok(None);
        };
        let g = gate(name);
        g.started.lock().unwrap().push(ctx.run_id());
        let now = g.active.fetch_add(1, Ordering::SeqCst) + 1;
        g.peak.fetch_max(now, Ordering::SeqCst);
        let out = tokio::select! {
            p = g.permits.acquire() => {
                p.expect("gate semaphore closed").forget();
                json!("released")
            }
            _ = ctx.cancelled() => json!("noticed the cancel"),
        };
        g.active.fetch_sub(1, Ordering::SeqCst);
        Ok(Some(out))
    })
}

const HERE: &str = "tests/runtime_policies.rs";

fn registry() -> Registry {
    Registry::from_tasks([
        TaskDef::new("tick", noop, HERE),
        TaskDef::new("own", noop, HERE),
        TaskDef::new("nightly", noop, HERE),
        TaskDef {
            max_instances: Some(1),
            ..TaskDef::new("solo", gated, HERE)
        },
        TaskDef {
            queue: Some("q"),
            ..TaskDef::new("mailer", gated, HERE)
        },
        TaskDef::new("reporter", gated, HERE),
        TaskDef {
            queue: Some("rl"),
            ..TaskDef::new("limited", noop, HERE)
        },
    ])
    .unwrap()
}

// ---------------------------------------------------------------------------------
// Nodes

fn config(text: &str) -> Config {
    Config::parse(text, "jobs.toml").unwrap()
}

/// A node built (database opened, declarations reconciled at the clock's time) but not
/// running.
async fn build(url: &str, clock: &ManualClock, jobs_toml: &str) -> Scheduler {
    Scheduler::builder()
        .database_url(url)
        .registry(registry())
        .clock(clock.clone())
        .config(config(jobs_toml))
        .max_workers(8)
        .shutdown_grace(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// A running node.
struct Node {
    handle: SchedulerHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(url: &str, clock: &ManualClock, jobs_toml: &str) -> Node {
        let s = build(url, clock, jobs_toml).await;
        let handle = s.handle();
        Node {
            handle,
            task: tokio::spawn(async move { s.run().await.unwrap() }),
        }
    }

    fn admin(&self) -> &Admin {
        self.handle.admin()
    }

    async fn stop(self) {
        self.handle.shutdown();
        self.task.await.unwrap();
    }
}

/// An admin on the manual clock with no node running (a built node that never runs),
/// to pause and resume jobs "while no node runs".
async fn offline_admin(url: &str, clock: &ManualClock) -> Admin {
    build(url, clock, "").await.handle().admin().clone()
}

// ---------------------------------------------------------------------------------
// Jobs, runs and slots

fn policy(misfire: Misfire, grace: Duration) -> JobPolicy {
    JobPolicy {
        misfire,
        misfire_grace: grace,
        ..JobPolicy::default()
    }
}

/// A job firing `task` every minute from the time it is created.
fn every_minute(name: &str, task: &str, policy: JobPolicy, params: Value) -> JobSpec {
    JobSpec {
        params,
        policy,
        ..JobSpec::new(name, task, Schedule::Every(MINUTE))
    }
}

/// Creates the jobs at `t0()`, as a node starting then would.
async fn create_jobs(url: &str, specs: &[JobSpec]) -> Admin {
    kairos::test_support::sync_jobs(url, specs, t0())
        .await
        .unwrap();
    Admin::connect(url).await.unwrap()
}

/// Runs of a job, by slot.
async fn job_runs(admin: &Admin, job: &str) -> Vec<Run> {
    let mut runs = admin
        .runs(&RunFilter::new().job(job).page(1, 1000))
        .await
        .unwrap()
        .runs;
    runs.sort_by_key(|r| (r.scheduled_for, r.id));
    runs
}

async fn wait_job_runs(admin: &Admin, job: &str, n: usize) -> Vec<Run> {
    common::wait_until(&format!("{n} runs of {job}"), || async {
        job_runs(admin, job).await.len() >= n
    })
    .await;
    job_runs(admin, job).await
}

/// Waits until every run of the job has finished.
async fn wait_job_idle(admin: &Admin, job: &str) {
    common::wait_until(&format!("runs of {job} finished"), || async {
        job_runs(admin, job)
            .await
            .iter()
            .all(|r| r.status.is_finished())
    })
    .await;
}

/// Waits until the job's next slot is `at` (the planner has dealt with the ones before).
async fn wait_next(admin: &Admin, job: &str, at: DateTime<Utc>) {
    common::wait_until(&format!("{job} next at {at}"), || async {
        admin.job(job).await.unwrap().next_run_at == Some(at)
    })
    .await;
}

fn slots_of(runs: &[Run]) -> Vec<DateTime<Utc>> {
    runs.iter().map(|r| r.scheduled_for).collect()
}

/// Every slot record of the job since `t0()`.
async fn slots(admin: &Admin, job: &str) -> Vec<JobSlot> {
    admin.job_slots(job, t0(), 10_000).await.unwrap()
}

fn slot(k: i64, outcome: SlotOutcome, run_id: Option<i64>, reason: Option<SkipReason>) -> JobSlot {
    JobSlot {
        scheduled_for: m(k),
        outcome,
        run_id,
        reason,
    }
}

fn ran(k: i64, run: i64) -> JobSlot {
    slot(k, SlotOutcome::Ran, Some(run), None)
}

fn caught_up(k: i64, run: i64) -> JobSlot {
    slot(k, SlotOutcome::CaughtUp, Some(run), None)
}

fn coalesced(k: i64, into: i64) -> JobSlot {
    slot(k, SlotOutcome::Coalesced, Some(into), None)
}

fn skipped(k: i64, reason: SkipReason) -> JobSlot {
    slot(k, SlotOutcome::Skipped, None, Some(reason))
}

/// The id of the job's run for slot `k`.
fn run_at(runs: &[Run], k: i64) -> i64 {
    runs.iter()
        .find(|r| r.scheduled_for == m(k))
        .unwrap_or_else(|| panic!("no run for slot {k}: {:?}", slots_of(runs)))
        .id
}

// ---------------------------------------------------------------------------------
// 1. Misfire after downtime

#[tokio::test]
async fn run_once_after_downtime_runs_the_latest_missed_slot_for_all_of_them() {
    for db in common::databases("run_once_after_downtime").await {
        let clock = ManualClock::new(t0());
        let spec = every_minute(
            "once",
            "tick",
            policy(Misfire::RunOnce, secs(150)),
            json!({}),
        );
        let admin = create_jobs(&db.url, &[spec]).await;
        // Down until 00:10:05 with a 2m30s grace: slots 1-7 are missed (more than the
        // grace late), 8-10 are merely late and run each for itself.
        clock.advance(secs(605));
        let node = Node::start(&db.url, &clock, "").await;
        let runs = wait_job_runs(&admin, "once", 4).await;
        wait_job_idle(&admin, "once").await;
        settle().await;
        let runs_now = job_runs(&admin, "once").await;
        assert_eq!(
            slots_of(&runs_now),
            [m(7), m(8), m(9), m(10)],
            "{}",
            db.name
        );
        assert!(
            runs_now
                .iter()
                .all(|r| r.origin == RunOrigin::Schedule && r.status == RunStatus::Succeeded),
            "{}: {runs_now:?}",
            db.name
        );
        let id7 = run_at(&runs, 7);
        let mut expected: Vec<JobSlot> = (1..=6).map(|k| coalesced(k, id7)).collect();
        expected.extend((7..=10).map(|k| ran(k, run_at(&runs, k))));
        assert_eq!(slots(&admin, "once").await, expected, "{}", db.name);
        assert_eq!(admin.job("once").await.unwrap().next_run_at, Some(m(11)));
        node.stop().await;
    }
}

#[tokio::test]
async fn skip_after_downtime_runs_no_missed_slot_and_the_next_on_time_slot_runs() {
    for db in common::databases("skip_after_downtime").await {
        let clock = ManualClock::new(t0());
        let spec = every_minute(
            "skipper",
            "tick",
            policy(Misfire::Skip, secs(10)),
            json!({}),
        );
        let admin = create_jobs(&db.url, &[spec]).await;
        // Down until 00:10:30: every slot 1-10 is more than 10 s late.
        clock.advance(secs(630));
        let node = Node::start(&db.url, &clock, "").await;
        wait_next(&admin, "skipper", m(11)).await;
        settle().await;
        assert!(job_runs(&admin, "skipper").await.is_empty(), "{}", db.name);
        let expected: Vec<JobSlot> = (1..=10).map(|k| skipped(k, SkipReason::Misfire)).collect();
        assert_eq!(slots(&admin, "skipper").await, expected, "{}", db.name);
        clock.advance(secs(30));
        let runs = wait_job_runs(&admin, "skipper", 1).await;
        assert_eq!(slots_of(&runs), [m(11)], "{}", db.name);
        assert_eq!(runs[0].origin, RunOrigin::Schedule);
        let mut expected = expected;
        expected.push(ran(11, runs[0].id));
        assert_eq!(slots(&admin, "skipper").await, expected, "{}", db.name);
        node.stop().await;
    }
}

#[tokio::test]
async fn catch_up_after_downtime_runs_the_most_recent_missed_slots_oldest_first() {
    for db in common::databases("catch_up_after_downtime").await {
        let clock = ManualClock::new(t0());
        let spec = every_minute(
            "catcher",
            "tick",
            JobPolicy {
                max_catch_up: 3,
                ..policy(Misfire::CatchUp, secs(10))
            },
            json!({}),
        );
        let admin = create_jobs(&db.url, &[spec]).await;
        clock.advance(secs(630));
        let node = Node::start(&db.url, &clock, "").await;
        let runs = wait_job_runs(&admin, "catcher", 3).await;
        wait_next(&admin, "catcher", m(11)).await;
        settle().await;
        let runs = {
            let now = job_runs(&admin, "catcher").await;
            assert_eq!(
                now.len(),
                runs.len(),
                "{}: more runs than caught up",
                db.name
            );
            now
        };
        assert_eq!(slots_of(&runs), [m(8), m(9), m(10)], "{}", db.name);
        assert!(runs.iter().all(|r| r.origin == RunOrigin::CatchUp));
        // Oldest first: fired in slot order, and each due at its own slot.
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(runs.iter().all(|r| r.run_at == r.scheduled_for));
        let mut expected: Vec<JobSlot> = (1..=7).map(|k| skipped(k, SkipReason::Misfire)).collect();
        expected.extend((8..=10).map(|k| caught_up(k, run_at(&runs, k))));
        assert_eq!(slots(&admin, "catcher").await, expected, "{}", db.name);
        // Back on time: an ordinary slot.
        clock.advance(secs(30));
        let runs = wait_job_runs(&admin, "catcher", 4).await;
        assert_eq!(runs[3].scheduled_for, m(11));
        assert_eq!(runs[3].origin, RunOrigin::Schedule);
        node.stop().await;
    }
}

#[tokio::test]
async fn slots_found_less_late_than_the_grace_simply_run() {
    for db in common::databases("misfire_grace").await {
        let clock = ManualClock::new(t0());
        let patient = every_minute(
            "patient",
            "tick",
            policy(Misfire::Skip, secs(300)),
            json!({}),
        );
        let strict = every_minute("strict", "tick", JobPolicy::default(), json!({}));
        let admin = create_jobs(&db.url, &[patient, strict]).await;
        // Down until 00:04:10: slot 1 is 3m10s late, inside a 5m grace, outside 30 s.
        clock.advance(secs(250));
        let node = Node::start(&db.url, &clock, "").await;
        wait_job_runs(&admin, "patient", 4).await;
        wait_job_runs(&admin, "strict", 2).await;
        settle().await;
        let p = job_runs(&admin, "patient").await;
        assert_eq!(slots_of(&p), [m(1), m(2), m(3), m(4)], "{}", db.name);
        assert!(p.iter().all(|r| r.origin == RunOrigin::Schedule));
        let expected: Vec<JobSlot> = (1..=4).map(|k| ran(k, run_at(&p, k))).collect();
        assert_eq!(slots(&admin, "patient").await, expected, "{}", db.name);
        // The default 30 s grace: 1-3 missed and coalesced into 3; 4 is 10 s late.
        let s = job_runs(&admin, "strict").await;
        assert_eq!(slots_of(&s), [m(3), m(4)], "{}", db.name);
        let id3 = run_at(&s, 3);
        assert_eq!(
            slots(&admin, "strict").await,
            [
                coalesced(1, id3),
                coalesced(2, id3),
                ran(3, id3),
                ran(4, s[1].id)
            ],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn misfire_keys_from_jobs_toml_and_task_tables_reach_the_jobs() {
    let jobs_toml = r#"
[tasks.own]
interval = "1m"
misfire = "skip"
misfire_grace = "10s"

[[jobs]]
name = "own_copy"
task = "own"
interval = "1m"

[[jobs]]
name = "tick_catch_up"
task = "tick"
interval = "1m"
misfire = "catch_up"
max_catch_up = 3
misfire_grace = "10s"
"#;
    for db in common::databases("misfire_keys_from_jobs_toml").await {
        let clock = ManualClock::new(t0());
        // Declared at t0 by a node that then goes away.
        drop(build(&db.url, &clock, jobs_toml).await);
        let admin = Admin::connect(&db.url).await.unwrap();
        let skip10 = JobPolicy {
            misfire: Misfire::Skip,
            max_catch_up: 10,
            misfire_grace: secs(10),
            overlap: Overlap::Skip,
        };
        assert_eq!(
            admin.job("own").await.unwrap().policy,
            skip10,
            "[tasks.own]"
        );
        assert_eq!(
            admin.job("own_copy").await.unwrap().policy,
            skip10,
            "a [[jobs]] entry inherits its task's [tasks.*] policy"
        );
        let catch3 = JobPolicy {
            misfire: Misfire::CatchUp,
            max_catch_up: 3,
            misfire_grace: secs(10),
            overlap: Overlap::Skip,
        };
        assert_eq!(admin.job("tick_catch_up").await.unwrap().policy, catch3);
        let as_json = serde_json::to_value(admin.job("tick_catch_up").await.unwrap()).unwrap();
        assert_eq!(as_json["misfire"], "catch_up");
        assert_eq!(as_json["max_catch_up"], 3);
        assert_eq!(as_json["misfire_grace_ms"], 10_000);

        clock.advance(secs(630));
        let node = Node::start(&db.url, &clock, jobs_toml).await;
        let runs = wait_job_runs(&admin, "tick_catch_up", 3).await;
        for job in ["own", "own_copy", "tick_catch_up"] {
            wait_next(&admin, job, m(11)).await;
        }
        settle().await;
        assert_eq!(slots_of(&runs), [m(8), m(9), m(10)], "{}", db.name);
        assert!(runs.iter().all(|r| r.origin == RunOrigin::CatchUp));
        let mut expected: Vec<JobSlot> = (1..=7).map(|k| skipped(k, SkipReason::Misfire)).collect();
        expected.extend((8..=10).map(|k| caught_up(k, run_at(&runs, k))));
        assert_eq!(
            slots(&admin, "tick_catch_up").await,
            expected,
            "{}",
            db.name
        );
        for job in ["own", "own_copy"] {
            assert!(job_runs(&admin, job).await.is_empty(), "{}: {job}", db.name);
            let expected: Vec<JobSlot> =
                (1..=10).map(|k| skipped(k, SkipReason::Misfire)).collect();
            assert_eq!(slots(&admin, job).await, expected, "{}: {job}", db.name);
        }
        clock.advance(secs(30));
        for job in ["own", "own_copy", "tick_catch_up"] {
            let runs = wait_job_runs(&admin, job, 1).await;
            let last = runs.last().unwrap();
            assert_eq!(
                (last.scheduled_for, last.origin),
                (m(11), RunOrigin::Schedule),
                "{}: {job}",
                db.name
            );
        }
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// 2. Pause and resume

#[tokio::test]
async fn slots_missed_while_paused_follow_the_policy_at_resume() {
    for db in common::databases("missed_while_paused").await {
        let clock = ManualClock::new(t0());
        let grace = secs(10);
        let specs = [
            every_minute("p_skip", "tick", policy(Misfire::Skip, grace), json!({})),
            every_minute("p_once", "tick", policy(Misfire::RunOnce, grace), json!({})),
            every_minute(
                "p_catch",
                "tick",
                JobPolicy {
                    max_catch_up: 2,
                    ..policy(Misfire::CatchUp, grace)
                },
                json!({}),
            ),
        ];
        let names = ["p_skip", "p_once", "p_catch"];
        let store = create_jobs(&db.url, &specs).await;
        let node = Node::start(&db.url, &clock, "").await;
        let admin = node.admin();
        clock.advance(MINUTE);
        for job in names {
            wait_job_runs(admin, job, 1).await;
            wait_next(admin, job, m(2)).await;
        }
        clock.advance(secs(30));
        for job in names {
            let j = admin.pause_job(job).await.unwrap();
            assert!(j.paused);
            assert_eq!(j.next_run_at, None, "a paused job shows no next run");
        }
        // Paused from 00:01:30 to 00:05:30: slots 2-5 pass.
        clock.advance(secs(240));
        settle().await;
        for job in names {
            assert_eq!(job_runs(&store, job).await.len(), 1, "{}: {job}", db.name);
        }
        for job in names {
            admin.resume_job(job).await.unwrap();
        }
        for job in names {
            wait_next(admin, job, m(6)).await;
        }
        clock.advance(secs(30));
        for (job, n) in [("p_skip", 2), ("p_once", 3), ("p_catch", 4)] {
            wait_job_runs(admin, job, n).await;
        }
        settle().await;

        let r = job_runs(&store, "p_skip").await;
        assert_eq!(slots_of(&r), [m(1), m(6)], "{}", db.name);
        let mut expected = vec![ran(1, r[0].id)];
        expected.extend((2..=5).map(|k| skipped(k, SkipReason::Paused)));
        expected.push(ran(6, r[1].id));
        assert_eq!(slots(&store, "p_skip").await, expected, "{}", db.name);

        let r = job_runs(&store, "p_once").await;
        assert_eq!(slots_of(&r), [m(1), m(5), m(6)], "{}", db.name);
        let id5 = r[1].id;
        assert_eq!(
            slots(&store, "p_once").await,
            [
                ran(1, r[0].id),
                coalesced(2, id5),
                coalesced(3, id5),
                coalesced(4, id5),
                ran(5, id5),
                ran(6, r[2].id)
            ],
            "{}",
            db.name
        );

        let r = job_runs(&store, "p_catch").await;
        assert_eq!(slots_of(&r), [m(1), m(4), m(5), m(6)], "{}", db.name);
        let origins: Vec<RunOrigin> = r.iter().map(|r| r.origin).collect();
        assert_eq!(
            origins,
            [
                RunOrigin::Schedule,
                RunOrigin::CatchUp,
                RunOrigin::CatchUp,
                RunOrigin::Schedule
            ]
        );
        assert_eq!(
            slots(&store, "p_catch").await,
            [
                ran(1, r[0].id),
                skipped(2, SkipReason::Paused),
                skipped(3, SkipReason::Paused),
                caught_up(4, r[1].id),
                caught_up(5, r[2].id),
                ran(6, r[3].id)
            ],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn skipped_slots_tell_a_pause_from_downtime() {
    for db in common::databases("pause_or_downtime").await {
        let clock = ManualClock::new(t0());
        let spec = every_minute("split", "tick", policy(Misfire::Skip, secs(10)), json!({}));
        create_jobs(&db.url, &[spec]).await;
        // No node runs at all; an operator pauses the job at 00:03:30 and resumes it
        // at 00:06:30; a node starts at 00:08:45.
        let offline = offline_admin(&db.url, &clock).await;
        clock.advance(secs(210));
        offline.pause_job("split").await.unwrap();
        clock.advance(secs(180));
        offline.resume_job("split").await.unwrap();
        clock.advance(secs(135));
        let node = Node::start(&db.url, &clock, "").await;
        wait_next(node.admin(), "split", m(9)).await;
        settle().await;
        let admin = node.admin();
        assert!(job_runs(admin, "split").await.is_empty(), "{}", db.name);
        let expected: Vec<JobSlot> = (1..=8)
            .map(|k| {
                let reason = if (4..=6).contains(&k) {
                    SkipReason::Paused
                } else {
                    SkipReason::Misfire
                };
                skipped(k, reason)
            })
            .collect();
        assert_eq!(slots(admin, "split").await, expected, "{}", db.name);
        node.stop().await;
    }
}

#[tokio::test]
async fn every_pause_while_no_node_runs_is_told_from_downtime() {
    for db in common::databases("two_pauses_while_down").await {
        let clock = ManualClock::new(t0());
        let spec = every_minute("split", "tick", policy(Misfire::Skip, secs(10)), json!({}));
        create_jobs(&db.url, &[spec]).await;
        // No node runs; the job is paused over slot 2 and again over slot 4.
        let offline = offline_admin(&db.url, &clock).await;
        for (pause, resume) in [(90, 150), (210, 270)] {
            clock.set(t0() + chrono::Duration::seconds(pause));
            offline.pause_job("split").await.unwrap();
            clock.set(t0() + chrono::Duration::seconds(resume));
            offline.resume_job("split").await.unwrap();
        }
        clock.set(t0() + chrono::Duration::seconds(330));
        let node = Node::start(&db.url, &clock, "").await;
        let admin = node.admin();
        wait_next(admin, "split", m(6)).await;
        assert_eq!(
            slots(admin, "split").await,
            [
                skipped(1, SkipReason::Misfire),
                skipped(2, SkipReason::Paused),
                skipped(3, SkipReason::Misfire),
                skipped(4, SkipReason::Paused),
                skipped(5, SkipReason::Misfire),
            ],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// 3. Overlap at max_instances

/// `solo_job`: every minute from `t0()`, runs of the `solo` task (`max_instances = 1`)
/// that wait on `gate`.
fn solo_spec(policy: JobPolicy, gate: &str) -> JobSpec {
    every_minute("solo_job", "solo", policy, json!({ "gate": gate }))
}

/// `solo_job` with this overlap policy, and a node running it from `t0()`.
async fn solo_job(db: &common::TestDb, clock: &ManualClock, overlap: Overlap, gate: &str) -> Node {
    let policy = JobPolicy {
        overlap,
        ..JobPolicy::default()
    };
    create_jobs(&db.url, &[solo_spec(policy, gate)]).await;
    Node::start(&db.url, clock, "").await
}

/// Moves to slot `k` of `solo_job` and waits until the planner has dealt with it.
async fn to_slot(clock: &ManualClock, admin: &Admin, k: i64) {
    clock.set(m(k));
    wait_next(admin, "solo_job", m(k + 1)).await;
}

#[tokio::test]
async fn overlap_skip_skips_each_slot_that_comes_while_a_run_is_running() {
    for db in common::databases("overlap_skip").await {
        let name = gate_name("overlap_skip", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let node = solo_job(&db, &clock, Overlap::Skip, &name).await;
        let admin = node.admin();
        to_slot(&clock, admin, 1).await;
        let first = g.wait_started(1).await[0];
        to_slot(&clock, admin, 2).await;
        to_slot(&clock, admin, 3).await;
        settle().await;
        assert_eq!(
            slots_of(&job_runs(admin, "solo_job").await),
            [m(1)],
            "{}",
            db.name
        );
        g.open(1);
        common::wait_status(admin, first, RunStatus::Succeeded).await;
        to_slot(&clock, admin, 4).await;
        let fourth = g.wait_started(2).await[1];
        g.open(1);
        common::wait_status(admin, fourth, RunStatus::Succeeded).await;
        assert_eq!(
            slots(admin, "solo_job").await,
            [
                ran(1, first),
                skipped(2, SkipReason::Overlap),
                skipped(3, SkipReason::Overlap),
                ran(4, fourth)
            ],
            "{}",
            db.name
        );
        assert_eq!(g.peak(), 1);
        node.stop().await;
    }
}

/// Several slots found due at once (after a pause or downtime, within the grace) are
/// slots that come while the first one's run is queued: with `overlap = "skip"`, only
/// the first runs.
#[tokio::test]
async fn overlap_skip_counts_the_runs_of_slots_found_due_together() {
    for db in common::databases("overlap_skip_together").await {
        let name = gate_name("overlap_skip_together", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let policy = JobPolicy {
            misfire_grace: secs(300),
            ..JobPolicy::default()
        };
        create_jobs(&db.url, &[solo_spec(policy, &name)]).await;
        let node = Node::start(&db.url, &clock, "").await;
        let admin = node.admin();
        // Slots 1, 2 and 3 are due together, all within the grace.
        to_slot(&clock, admin, 3).await;
        let first = g.wait_started(1).await[0];
        settle().await;
        assert_eq!(
            slots(admin, "solo_job").await,
            [
                ran(1, first),
                skipped(2, SkipReason::Overlap),
                skipped(3, SkipReason::Overlap)
            ],
            "{}",
            db.name
        );
        g.open(1);
        common::wait_status(admin, first, RunStatus::Succeeded).await;
        assert_eq!(g.peak(), 1);
        node.stop().await;
    }
}

#[tokio::test]
async fn overlap_queue_runs_the_next_slot_after_the_running_one() {
    for db in common::databases("overlap_queue").await {
        let name = gate_name("overlap_queue", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let node = solo_job(&db, &clock, Overlap::Queue, &name).await;
        let admin = node.admin();
        to_slot(&clock, admin, 1).await;
        let first = g.wait_started(1).await[0];
        to_slot(&clock, admin, 2).await;
        let runs = wait_job_runs(admin, "solo_job", 2).await;
        let second = run_at(&runs, 2);
        settle().await;
        assert_eq!(admin.run(second).await.unwrap().status, RunStatus::Queued);
        assert_eq!(admin.run(first).await.unwrap().status, RunStatus::Running);
        g.open(1);
        common::wait_status(admin, first, RunStatus::Succeeded).await;
        common::wait_status(admin, second, RunStatus::Running).await;
        g.open(1);
        common::wait_status(admin, second, RunStatus::Succeeded).await;
        assert_eq!(g.started(), [first, second]);
        assert_eq!(g.peak(), 1, "{}: never two running at once", db.name);
        let (a, b) = (
            admin.run(first).await.unwrap(),
            admin.run(second).await.unwrap(),
        );
        assert!(a.finished_at <= b.started_at);
        assert_eq!(
            slots(admin, "solo_job").await,
            [ran(1, first), ran(2, second)],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn overlap_replace_cancels_the_running_run_and_starts_the_new_one() {
    for db in common::databases("overlap_replace").await {
        let name = gate_name("overlap_replace", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let node = solo_job(&db, &clock, Overlap::Replace, &name).await;
        let admin = node.admin();
        to_slot(&clock, admin, 1).await;
        let first = g.wait_started(1).await[0];
        to_slot(&clock, admin, 2).await;
        let replaced = common::wait_status(admin, first, RunStatus::Cancelled).await;
        // It says why: not an operator's cancel, in its history too.
        assert_eq!(
            replaced.error.as_deref(),
            Some("replaced by a newer run of its job (overlap = replace)"),
            "{}",
            db.name
        );
        let last = replaced
            .history
            .last()
            .expect("the cancel is in the history");
        assert_eq!(
            (last.event.to_string(), last.message.as_deref()),
            (
                "cancelled".to_string(),
                Some("replaced by a newer run of its job (overlap = replace)")
            ),
            "{}",
            db.name
        );
        let second = g.wait_started(2).await[1];
        common::wait_status(admin, second, RunStatus::Running).await;
        g.open(1);
        let done = common::wait_status(admin, second, RunStatus::Succeeded).await;
        assert_eq!(done.scheduled_for, m(2));
        assert_eq!(g.peak(), 1, "{}", db.name);
        assert_eq!(
            slots(admin, "solo_job").await,
            [ran(1, first), ran(2, second)],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn overlap_replace_reaches_a_run_on_another_node() {
    for db in common::databases("overlap_replace_two_nodes").await {
        let name = gate_name("overlap_replace_two_nodes", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let a = solo_job(&db, &clock, Overlap::Replace, &name).await;
        let b = Node::start(&db.url, &clock, "").await;
        to_slot(&clock, a.admin(), 1).await;
        let first = g.wait_started(1).await[0];
        to_slot(&clock, a.admin(), 2).await;
        let replaced = common::wait_status(a.admin(), first, RunStatus::Cancelled).await;
        assert_eq!(
            replaced.error.as_deref(),
            Some("replaced by a newer run of its job (overlap = replace)"),
            "{}",
            db.name
        );
        let second = g.wait_started(2).await[1];
        g.open(1);
        let done = common::wait_status(a.admin(), second, RunStatus::Succeeded).await;
        assert_eq!(done.scheduled_for, m(2), "{}", db.name);
        assert_eq!(g.peak(), 1, "{}", db.name);
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn catch_up_runs_start_oldest_first() {
    for db in common::databases("catch_up_oldest_first").await {
        let name = gate_name("catch_up_oldest_first", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let policy = JobPolicy {
            max_catch_up: 3,
            overlap: Overlap::Queue,
            ..policy(Misfire::CatchUp, secs(10))
        };
        let admin = create_jobs(&db.url, &[solo_spec(policy, &name)]).await;
        clock.advance(secs(630));
        let node = Node::start(&db.url, &clock, "").await;
        let runs = wait_job_runs(&admin, "solo_job", 3).await;
        assert_eq!(slots_of(&runs), [m(8), m(9), m(10)], "{}", db.name);
        for k in 1..=3 {
            g.wait_started(k).await;
            g.open(1);
        }
        wait_job_idle(&admin, "solo_job").await;
        let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
        assert_eq!(g.started(), ids, "{}: not started oldest first", db.name);
        assert_eq!(g.peak(), 1);
        node.stop().await;
    }
}

#[tokio::test]
async fn catch_up_with_max_instances_one_runs_every_caught_up_slot() {
    // The default overlap (`skip`) applies to runs already queued or running when a
    // slot comes; the slots of one catch-up are not overlapping one another.
    for db in common::databases("catch_up_max_instances_one").await {
        let name = gate_name("catch_up_max_instances_one", &db);
        let g = gate(&name);
        g.open(100);
        let clock = ManualClock::new(t0());
        let policy = JobPolicy {
            max_catch_up: 3,
            ..policy(Misfire::CatchUp, secs(10))
        };
        let admin = create_jobs(&db.url, &[solo_spec(policy, &name)]).await;
        clock.advance(secs(630));
        let node = Node::start(&db.url, &clock, "").await;
        wait_next(&admin, "solo_job", m(11)).await;
        wait_job_idle(&admin, "solo_job").await;
        settle().await;
        let runs = job_runs(&admin, "solo_job").await;
        let record = slots(&admin, "solo_job").await;
        assert_eq!(
            slots_of(&runs),
            [m(8), m(9), m(10)],
            "{}: slots 8-10 were recorded as {:?}",
            db.name,
            &record[7..]
        );
        assert_eq!(
            record[7..],
            [
                caught_up(8, run_at(&runs, 8)),
                caught_up(9, run_at(&runs, 9)),
                caught_up(10, run_at(&runs, 10))
            ],
            "{}",
            db.name
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// 4. Every slot accounted for

#[tokio::test]
async fn every_nominal_slot_is_listed_once_in_order() {
    for db in common::databases("every_slot_listed_once").await {
        let name = gate_name("every_slot", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let cron = Schedule::Cron(
            kairos::schedule::CronSchedule::parse("* * * * *", kairos::schedule::Tz::UTC).unwrap(),
        );
        let spec = JobSpec {
            schedule: cron,
            ..every_minute(
                "solo_job",
                "solo",
                policy(Misfire::RunOnce, secs(10)),
                json!({ "gate": name }),
            )
        };
        create_jobs(&db.url, &[spec]).await;
        // Down until 00:03:30: slots 1-3 coalesce into the run of 3, which keeps
        // running through slots 4 and 5 (skipped: overlap); slot 6 runs.
        clock.advance(secs(210));
        let node = Node::start(&db.url, &clock, "").await;
        let admin = node.admin();
        let third = g.wait_started(1).await[0];
        wait_next(admin, "solo_job", m(4)).await;
        to_slot(&clock, admin, 4).await;
        to_slot(&clock, admin, 5).await;
        g.open(1);
        common::wait_status(admin, third, RunStatus::Succeeded).await;
        to_slot(&clock, admin, 6).await;
        let sixth = g.wait_started(2).await[1];
        g.open(1);
        common::wait_status(admin, sixth, RunStatus::Succeeded).await;

        let all = slots(admin, "solo_job").await;
        let times: Vec<DateTime<Utc>> = all.iter().map(|s| s.scheduled_for).collect();
        assert_eq!(times, (1..=6).map(m).collect::<Vec<_>>(), "{}", db.name);
        assert_eq!(
            all,
            [
                coalesced(1, third),
                coalesced(2, third),
                ran(3, third),
                skipped(4, SkipReason::Overlap),
                skipped(5, SkipReason::Overlap),
                ran(6, sixth)
            ],
            "{}",
            db.name
        );
        // From the middle of a coalesced range, and the most recent ones only.
        assert_eq!(
            admin.job_slots("solo_job", m(2), 100).await.unwrap(),
            all[1..].to_vec()
        );
        assert_eq!(
            admin.job_slots("solo_job", t0(), 2).await.unwrap(),
            all[4..].to_vec()
        );
        // The JSON shape: every key present, null where it does not apply.
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(
            json[3],
            json!({"scheduled_for": "2026-03-01T12:04:00Z", "outcome": "skipped", "run_id": null, "reason": "overlap"})
        );
        assert_eq!(
            json[0],
            json!({"scheduled_for": "2026-03-01T12:01:00Z", "outcome": "coalesced", "run_id": third, "reason": null})
        );
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// 5. Queues, rate limits, pauses

fn queue_info(queues: &[kairos::QueueInfo], name: &str) -> kairos::QueueInfo {
    queues
        .iter()
        .find(|q| q.name == name)
        .unwrap_or_else(|| panic!("no queue {name} in {queues:?}"))
        .clone()
}

#[tokio::test]
async fn queue_with_concurrency_one_runs_one_at_a_time_by_priority_then_due_time() {
    let jobs_toml = "[queues.q]\nconcurrency = 1\n";
    for db in common::databases("queue_concurrency_one").await {
        let qname = gate_name("queue_concurrency_q", &db);
        let oname = gate_name("queue_concurrency_other", &db);
        let (gq, go) = (gate(&qname), gate(&oname));
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, jobs_toml).await;
        let h = &node.handle;
        let mail = |priority: i32, delay: u64| {
            Enqueue::new("mailer")
                .params(json!({ "gate": qname }))
                .priority(priority)
                .delay(secs(delay))
        };
        let a = h.enqueue(mail(5, 0)).await.unwrap();
        common::wait_status(h.admin(), a, RunStatus::Running).await;
        let b = h.enqueue(mail(5, 30)).await.unwrap();
        let d = h.enqueue(mail(5, 10)).await.unwrap();
        let c = h.enqueue(mail(1, 20)).await.unwrap();
        // Another queue runs in parallel.
        let x = h
            .enqueue(Enqueue::new("reporter").params(json!({ "gate": oname })))
            .await
            .unwrap();
        common::wait_status(h.admin(), x, RunStatus::Running).await;
        clock.advance(MINUTE);
        settle().await;
        for id in [b, c, d] {
            assert_eq!(
                h.run(id).await.unwrap().status,
                RunStatus::Queued,
                "{}",
                db.name
            );
        }
        let queues = h.admin().queues().await.unwrap();
        let q = queue_info(&queues, "q");
        assert_eq!(
            (q.concurrency, q.queued, q.running, q.paused),
            (Some(1), 3, 1, false),
            "{}: {q:?}",
            db.name
        );
        assert_eq!(queue_info(&queues, "default").running, 1);
        // Priority 1 first, then priority 5 by due time.
        for (k, next) in [(1, c), (2, d), (3, b)] {
            gq.open(1);
            common::wait_status(h.admin(), next, RunStatus::Running).await;
            assert_eq!(gq.wait_started(k + 1).await[k], next, "{}", db.name);
        }
        gq.open(1);
        common::wait_status(h.admin(), b, RunStatus::Succeeded).await;
        assert_eq!(gq.started(), [a, c, d, b], "{}", db.name);
        assert_eq!(gq.peak(), 1, "{}: queue q ran two at once", db.name);
        go.open(1);
        common::wait_status(h.admin(), x, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

/// Two runs of `mailer` (queue `q`, limited to one at a time) through `h`, gated by
/// `gate`: the second waits while the first runs, then runs once it is done.
async fn one_mailer_at_a_time(
    h: &SchedulerHandle,
    clock: &ManualClock,
    name: &str,
    gate: &Gate,
    db: &str,
) {
    let mail = || Enqueue::new("mailer").params(json!({ "gate": name }));
    let a = h.enqueue(mail()).await.unwrap();
    common::wait_status(h.admin(), a, RunStatus::Running).await;
    let b = h.enqueue(mail()).await.unwrap();
    clock.advance(MINUTE);
    settle().await;
    assert_eq!(
        h.run(b).await.unwrap().status,
        RunStatus::Queued,
        "{db}: queue q's limit did not hold"
    );
    gate.open(2);
    common::wait_status(h.admin(), b, RunStatus::Succeeded).await;
    assert_eq!(gate.peak(), 1, "{db}: queue q ran two at once");
}

/// A node whose jobs.toml lacks a queue's limits, which another node declared, keeps
/// them in the database and holds them too; a node that declares them replaces them.
#[tokio::test]
async fn a_queue_s_limits_declared_by_another_node_hold_on_a_node_that_lacks_them() {
    for db in common::databases("queue_limit_from_elsewhere").await {
        let name = gate_name("queue_limit_elsewhere", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        Node::start(&db.url, &clock, "[queues.q]\nconcurrency = 1\n")
            .await
            .stop()
            .await;
        // Its tasks use queue `q`, its file says nothing of it.
        let node = Node::start(&db.url, &clock, "").await;
        let h = &node.handle;
        let q = queue_info(&h.admin().queues().await.unwrap(), "q");
        assert_eq!(q.concurrency, Some(1), "{}: kept: {q:?}", db.name);
        one_mailer_at_a_time(h, &clock, &name, &g, db.name).await;
        node.stop().await;
        // Declared otherwise, the declaration wins.
        let node = Node::start(&db.url, &clock, "[queues.q]\nconcurrency = 3\n").await;
        let q = queue_info(&node.handle.admin().queues().await.unwrap(), "q");
        assert_eq!(q.concurrency, Some(3), "{}", db.name);
        node.stop().await;
    }
}

/// A node already running takes up the limits another node declares after it started,
/// without a restart.
#[tokio::test]
async fn a_queue_s_limits_declared_while_a_node_runs_hold_on_it() {
    for db in common::databases("queue_limit_later").await {
        let name = gate_name("queue_limit_later", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, "").await;
        let h = &node.handle;
        // Another node declares a limit on queue `q`, which this node's tasks use.
        let other = build(&db.url, &clock, "[queues.q]\nconcurrency = 1\n").await;
        // The change reaches the node by notification, or at its next look at the
        // change marker (every half second).
        tokio::time::sleep(Duration::from_secs(2)).await;
        one_mailer_at_a_time(h, &clock, &name, &g, db.name).await;
        drop(other);
        node.stop().await;
    }
}

/// A run queued again by an update that announces nothing (a retry written by a node
/// that then stopped, say) is found by an idle node's backstop look, a few seconds on.
#[tokio::test]
async fn an_idle_node_finds_a_due_run_that_nothing_announced() {
    for db in common::databases("unannounced_due").await {
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, "").await;
        let h = &node.handle;
        let id = h.enqueue(Enqueue::new("tick")).await.unwrap();
        common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        settle().await;
        kairos::test_support::execute(
            &db.url,
            &format!(
                "UPDATE kairos_runs SET status = 'queued', finished_at = NULL WHERE id = {id}"
            ),
        )
        .await
        .unwrap();
        settle().await;
        assert_eq!(
            h.run(id).await.unwrap().status,
            RunStatus::Queued,
            "{}: nothing told the node",
            db.name
        );
        clock.advance(secs(6));
        let run = common::wait_status(h.admin(), id, RunStatus::Succeeded).await;
        assert_eq!(run.attempt, 2, "{}", db.name);
        node.stop().await;
    }
}

/// Runs waiting on a queue at its limit must not hold back a run due later in another
/// queue: the node sleeps until that run's time, not until the limit frees a slot.
#[tokio::test]
async fn a_queue_at_its_limit_does_not_delay_runs_due_later_elsewhere() {
    let jobs_toml = "[queues.q]\nconcurrency = 1\n";
    for db in common::databases("queue_limit_no_delay").await {
        let qname = gate_name("queue_limit_no_delay", &db);
        let gq = gate(&qname);
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, jobs_toml).await;
        let h = &node.handle;
        let mail = || Enqueue::new("mailer").params(json!({ "gate": qname }));
        let a = h.enqueue(mail()).await.unwrap();
        common::wait_status(h.admin(), a, RunStatus::Running).await;
        let waiting = h.enqueue(mail()).await.unwrap();
        let later = h
            .enqueue(Enqueue::new("tick").delay(secs(30)))
            .await
            .unwrap();
        settle().await;
        clock.advance(secs(30));
        let run = common::wait_status(h.admin(), later, RunStatus::Succeeded).await;
        assert_eq!(
            run.started_at,
            Some(t0() + chrono::Duration::seconds(30)),
            "{}",
            db.name
        );
        assert_eq!(h.run(waiting).await.unwrap().status, RunStatus::Queued);
        gq.open(2);
        common::wait_status(h.admin(), waiting, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

#[tokio::test]
async fn queue_concurrency_holds_across_nodes() {
    let jobs_toml = "[queues.q]\nconcurrency = 1\n";
    for db in common::databases("queue_concurrency_two_nodes").await {
        let name = gate_name("queue_concurrency_two_nodes", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let a = Node::start(&db.url, &clock, jobs_toml).await;
        let b = Node::start(&db.url, &clock, jobs_toml).await;
        let ids = a
            .handle
            .enqueue_many(
                (0..4)
                    .map(|_| Enqueue::new("mailer").params(json!({ "gate": name })))
                    .collect(),
            )
            .await
            .unwrap();
        for k in 1..=4 {
            g.wait_started(k).await;
            settle().await;
            assert_eq!(g.started().len(), k, "{}: queue q ran two at once", db.name);
            g.open(1);
        }
        for id in ids {
            common::wait_status(a.admin(), id, RunStatus::Succeeded).await;
        }
        assert_eq!(g.peak(), 1, "{}", db.name);
        a.stop().await;
        b.stop().await;
    }
}

/// When each run of the `limited` task started, in order.
async fn starts(admin: &Admin) -> Vec<DateTime<Utc>> {
    let mut v: Vec<DateTime<Utc>> = admin
        .runs(&RunFilter::new().task("limited").page(1, 1000))
        .await
        .unwrap()
        .runs
        .iter()
        .filter_map(|r| r.started_at)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn rate_limit_caps_starts_per_window_across_a_restart() {
    let jobs_toml = "[queues.rl]\nrate_limit = \"2/1m\"\n";
    for db in common::databases("rate_limit").await {
        let clock = ManualClock::new(t0());
        let at = |s: i64| t0() + chrono::Duration::seconds(s);
        let node = Node::start(&db.url, &clock, jobs_toml).await;
        let ids = node
            .handle
            .enqueue_many((0..3).map(|_| Enqueue::new("limited")).collect())
            .await
            .unwrap();
        common::wait_status(node.admin(), ids[0], RunStatus::Succeeded).await;
        common::wait_status(node.admin(), ids[1], RunStatus::Succeeded).await;
        settle().await;
        assert_eq!(
            node.handle.run(ids[2]).await.unwrap().status,
            RunStatus::Queued
        );
        let rl = queue_info(&node.admin().queues().await.unwrap(), "rl");
        assert_eq!(
            (rl.rate_limit, rl.rate_window, rl.queued, rl.running),
            (Some(2), Some(MINUTE), 1, 0),
            "{}: {rl:?}",
            db.name
        );
        clock.advance(secs(59));
        settle().await;
        assert_eq!(
            node.handle.run(ids[2]).await.unwrap().status,
            RunStatus::Queued,
            "{}: started before the window freed",
            db.name
        );
        clock.advance(secs(1));
        let third = common::wait_status(node.admin(), ids[2], RunStatus::Succeeded).await;
        assert_eq!(third.started_at, Some(at(60)), "{}", db.name);
        // One start used in the window (00:00, 01:00]: one more may start now.
        let more = node
            .handle
            .enqueue_many((0..2).map(|_| Enqueue::new("limited")).collect())
            .await
            .unwrap();
        common::wait_status(node.admin(), more[0], RunStatus::Succeeded).await;
        node.stop().await;

        // A new node on the same database still counts the starts recorded there.
        let node = Node::start(&db.url, &clock, jobs_toml).await;
        settle().await;
        assert_eq!(
            node.handle.run(more[1]).await.unwrap().status,
            RunStatus::Queued,
            "{}: a restart reset the rate limit",
            db.name
        );
        clock.advance(secs(59));
        settle().await;
        assert_eq!(
            node.handle.run(more[1]).await.unwrap().status,
            RunStatus::Queued
        );
        clock.advance(secs(1));
        let last = common::wait_status(node.admin(), more[1], RunStatus::Succeeded).await;
        assert_eq!(last.started_at, Some(at(120)), "{}", db.name);
        let all = starts(node.admin()).await;
        assert_eq!(all, [at(0), at(0), at(60), at(60), at(120)], "{}", db.name);
        for s in &all {
            let window_end = *s + chrono::Duration::minutes(1);
            let n = all.iter().filter(|t| *t >= s && *t < &window_end).count();
            assert!(n <= 2, "{}: {n} starts in the minute from {s}", db.name);
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn a_paused_queue_keeps_its_runs_queued_while_other_queues_run() {
    for db in common::databases("paused_queue").await {
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, "").await;
        let (h, admin) = (&node.handle, node.admin());
        let q = admin.set_queue_paused("q", true).await.unwrap();
        assert!(q.paused);
        let mails = [
            h.enqueue(Enqueue::new("mailer")).await.unwrap(),
            h.enqueue(Enqueue::new("mailer").delay(secs(5)))
                .await
                .unwrap(),
        ];
        let report = h.enqueue(Enqueue::new("reporter")).await.unwrap();
        common::wait_status(admin, report, RunStatus::Succeeded).await;
        clock.advance(secs(10));
        settle().await;
        for id in mails {
            assert_eq!(
                h.run(id).await.unwrap().status,
                RunStatus::Queued,
                "{}",
                db.name
            );
        }
        let q = queue_info(&admin.queues().await.unwrap(), "q");
        assert_eq!((q.paused, q.queued, q.running), (true, 2, 0), "{}", db.name);
        let q = admin.set_queue_paused("q", false).await.unwrap();
        assert!(!q.paused);
        for id in mails {
            common::wait_status(admin, id, RunStatus::Succeeded).await;
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn pausing_every_node_starts_nothing_new_and_lets_running_runs_finish() {
    for db in common::databases("paused_nodes").await {
        let name = gate_name("paused_nodes", &db);
        let g = gate(&name);
        let clock = ManualClock::new(t0());
        let node = Node::start(&db.url, &clock, "").await;
        let (h, admin) = (&node.handle, node.admin());
        let running = h
            .enqueue(Enqueue::new("reporter").params(json!({ "gate": name })))
            .await
            .unwrap();
        common::wait_status(admin, running, RunStatus::Running).await;
        let nodes = admin.set_nodes_paused(None, true).await.unwrap();
        assert!(nodes.iter().all(|n| n.paused), "{nodes:?}");
        let waiting = [
            h.enqueue(Enqueue::new("reporter")).await.unwrap(),
            h.enqueue(Enqueue::new("mailer")).await.unwrap(),
            h.enqueue(Enqueue::new("tick").delay(secs(5)))
                .await
                .unwrap(),
        ];
        clock.advance(secs(10));
        settle().await;
        for id in waiting {
            assert_eq!(
                h.run(id).await.unwrap().status,
                RunStatus::Queued,
                "{}",
                db.name
            );
        }
        assert_eq!(h.run(running).await.unwrap().status, RunStatus::Running);
        g.open(1);
        common::wait_status(admin, running, RunStatus::Succeeded).await;
        settle().await;
        for id in waiting {
            assert_eq!(
                h.run(id).await.unwrap().status,
                RunStatus::Queued,
                "{}",
                db.name
            );
        }
        admin.set_nodes_paused(None, false).await.unwrap();
        for id in waiting {
            common::wait_status(admin, id, RunStatus::Succeeded).await;
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn a_node_started_while_every_node_is_paused_is_paused_too() {
    for db in common::databases("node_started_while_paused").await {
        let clock = ManualClock::new(t0());
        let first = Node::start(&db.url, &clock, "").await;
        first.admin().set_nodes_paused(None, true).await.unwrap();
        first.stop().await;
        let node = Node::start(&db.url, &clock, "").await;
        let id = node.handle.enqueue(Enqueue::new("tick")).await.unwrap();
        settle().await;
        assert_eq!(
            node.handle.run(id).await.unwrap().status,
            RunStatus::Queued,
            "{}",
            db.name
        );
        let nodes = node.admin().nodes().await.unwrap();
        let me = nodes
            .iter()
            .find(|n| n.status == "running")
            .expect("the running node is listed");
        assert!(
            me.paused,
            "{}: a node that starts nothing because every node is paused must show paused: {me:?}",
            db.name
        );
        node.admin().set_nodes_paused(None, false).await.unwrap();
        common::wait_status(node.admin(), id, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

// ---------------------------------------------------------------------------------
// 6. Per-job DST override

#[tokio::test]
async fn a_per_job_dst_override_reaches_the_schedule() {
    let jobs_toml = r#"
[tasks.nightly]
schedule = "30 2 * * *"
timezone = "America/New_York"
dst = "skip"

[[jobs]]
name = "ny_skip"
task = "tick"
schedule = "30 2 * * *"
timezone = "America/New_York"
dst = "skip"

[[jobs]]
name = "ny_debian"
task = "tick"
schedule = "30 2 * * *"
timezone = "America/New_York"
"#;
    let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    // 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day.
    let h = TestScheduler::builder()
        .start_at(t("2026-03-07T12:00:00Z"))
        .registry(registry())
        .config_toml(jobs_toml)
        .build()
        .await
        .unwrap();
    let dst_of = |job: &kairos::Job| serde_json::to_value(job).unwrap()["schedule"]["dst"].clone();
    for (job, dst, next) in [
        ("ny_skip", "skip", "2026-03-09T06:30:00Z"),
        ("nightly", "skip", "2026-03-09T06:30:00Z"),
        ("ny_debian", "debian", "2026-03-08T07:00:00Z"),
    ] {
        let j = h.admin().job(job).await.unwrap();
        assert_eq!(dst_of(&j), dst, "{job}");
        assert_eq!(j.next_run_at, Some(t(next)), "{job}");
    }
    // At 03:00 EDT the Debian job runs for its 02:30; the others wait for the 9th, when
    // all three run.
    let mut ran: Vec<(DateTime<Utc>, Option<String>)> = h
        .advance_to(t("2026-03-09T12:00:00Z"))
        .await
        .into_iter()
        .map(|r| (r.started_at.unwrap(), r.job))
        .collect();
    ran.sort();
    let job = |n: &str| Some(n.to_string());
    assert_eq!(
        ran,
        [
            (t("2026-03-08T07:00:00Z"), job("ny_debian")),
            (t("2026-03-09T06:30:00Z"), job("nightly")),
            (t("2026-03-09T06:30:00Z"), job("ny_debian")),
            (t("2026-03-09T06:30:00Z"), job("ny_skip")),
        ]
    );
    h.shutdown().await;
}
