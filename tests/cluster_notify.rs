//! Wake-ups across processes: a node hears at once when another process enqueues,
//! commits a transaction with a run in it, creates or triggers a job, or cancels a run.
//! On PostgreSQL the database notifies it; on SQLite (on Linux) it sees the commit
//! written to the database's write-ahead log. The node under test polls only once an
//! hour, so whatever it does within the test's bound it did because it heard.

mod common;

use std::time::Duration;

use kairos::schedule::{CronSchedule, Schedule, Tz};
use kairos::sea_orm::{Database, TransactionTrait};
use kairos::{Admin, Enqueue, NewJob, Registry, RunFilter, RunStatus, TaskDef};

use common::cli::{Node, blocks, hello, node_builder};

fn registry() -> Registry {
    let here = "tests/cluster_notify.rs";
    Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef::new("blocks", blocks, here),
    ])
    .unwrap()
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
