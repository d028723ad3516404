//! Wake-ups across processes: a node hears at once when another process enqueues,
//! commits a transaction with a run in it, creates or triggers a job, or cancels a run.
//! On PostgreSQL the database notifies it; on SQLite (on Linux) it sees the commit
//! written to the database's write-ahead log. The node under test polls only once an
//! hour, so whatever it does within the test's bound it did because it heard.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use kairos::schedule::{CronSchedule, Schedule, Tz};
use kairos::sea_orm::{Database, TransactionTrait};
use kairos::task::TaskOutcome;
use kairos::{Admin, Enqueue, NewJob, Registry, RunFilter, RunStatus, TaskContext, TaskDef};

use common::cli::{Node, blocks, hello, node_builder};

fn registry() -> Registry {
    let here = "tests/cluster_notify.rs";
    Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef::new("blocks", blocks, here),
        TaskDef::new("counted", counted, here),
    ])
    .unwrap()
}

/// Runs of `counted` executing now, and the most seen at once.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

/// Takes 30 ms, counted in [`RUNNING`] and [`MOST`].
fn counted(_: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async {
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(None)
    })
}

/// A node that would notice other processes' changes only after an hour of polling,
/// and an admin of its own (as the CLI or another node would be).
async fn deaf_node(url: &str) -> (Node, Admin) {
    let builder = node_builder(url, registry(), None).poll_interval(Duration::from_secs(3600));
    let node = Node::start_with(url, builder).await;
    // Let the node settle into its idle sleep before the other process acts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (node, Admin::connect(url).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_enqueued_by_another_process_wakes_an_idle_node() {
    for db in common::databases("notify_enqueue").await {
        let (node, other) = deaf_node(&db.url).await;
        for _ in 0..3 {
            let id = other.enqueue(Enqueue::new("hello")).await.unwrap().id;
            common::wait_status(&other, id, RunStatus::Succeeded).await;
        }
        node.stop().await;
    }
}

/// Each insert by another process is announced to the node, which claims on hearing
/// it as well as in its dispatcher: together they never start more runs than the node
/// has workers, and every run ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_announced_by_another_process_never_exceed_the_nodes_workers() {
    for db in common::databases("notify_workers").await {
        let builder = node_builder(&db.url, registry(), None)
            .poll_interval(Duration::from_secs(3600))
            .max_workers(2);
        let node = Node::start_with(&db.url, builder).await;
        let other = Admin::connect(&db.url).await.unwrap();
        MOST.store(0, Ordering::SeqCst);
        // In batches, each announced once (the first to an idle node), and one at a
        // time, each announced on its own.
        for round in 0..3 {
            let mut ids = Vec::new();
            let batch = (0..10).map(|_| Enqueue::new("counted")).collect();
            for e in other.enqueue_many(batch).await.unwrap() {
                ids.push(e.id);
            }
            for _ in 0..5 {
                ids.push(other.enqueue(Enqueue::new("counted")).await.unwrap().id);
            }
            for id in ids {
                let run = common::wait_status(&other, id, RunStatus::Succeeded).await;
                assert_eq!(run.attempt, 1, "{}: round {round}: run {id}", db.name);
            }
        }
        let most = MOST.load(Ordering::SeqCst);
        assert_eq!(
            most, 2,
            "{}: at most 2 runs at once, and both workers used",
            db.name
        );
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_written_in_an_application_transaction_starts_when_it_commits() {
    for db in common::databases("notify_txn").await {
        let (node, other) = deaf_node(&db.url).await;
        let app = Database::connect(db.url.as_str()).await.unwrap();
        let txn = app.begin().await.unwrap();
        let id = other
            .enqueue_in(&txn, Enqueue::new("hello"))
            .await
            .unwrap()
            .id;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let page = other.runs(&RunFilter::new()).await.unwrap();
        assert_eq!(
            page.total, 0,
            "{}: the run is invisible before the commit",
            db.name
        );
        txn.commit().await.unwrap();
        common::wait_status(&other, id, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_created_or_triggered_and_runs_cancelled_elsewhere_reach_the_node() {
    for db in common::databases("notify_changes").await {
        let (node, other) = deaf_node(&db.url).await;

        // A job created by another process fires on the node: its planner was asleep
        // with nothing to plan.
        let every_second = Schedule::Cron(CronSchedule::parse("* * * * * *", Tz::UTC).unwrap());
        other
            .create_job(NewJob::new("made_elsewhere", "hello", every_second))
            .await
            .unwrap();
        common::wait_until("the new job's first run", || async {
            let runs = other
                .runs(
                    &RunFilter::new()
                        .job("made_elsewhere")
                        .status(RunStatus::Succeeded),
                )
                .await
                .unwrap();
            runs.total > 0
        })
        .await;
        other.pause_job("made_elsewhere").await.unwrap();

        // A running run cancelled by another process stops.
        let id = other.enqueue(Enqueue::new("blocks")).await.unwrap().id;
        common::wait_status(&other, id, RunStatus::Running).await;
        other.cancel_run(id).await.unwrap();
        common::wait_status(&other, id, RunStatus::Cancelled).await;
        node.stop().await;
    }
}
