//! Dead-node recovery with real processes: a node process killed with SIGKILL while it
//! runs a run, and the run taken back at default settings (heartbeat every 2 s, dead
//! after 10 s) by a node that survives it, or by the next node started on the
//! database. Also: a node that loses a run's lease stops that attempt, and one whose
//! claim the database lost keeps only the execution of its new claim.
//!
//! The node processes are this test binary run again with `KAIROS_TEST_NODE_URL` set:
//! then `node_process` runs a node until it is killed.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kairos::task::TaskOutcome;
use kairos::{Admin, Enqueue, Registry, RunStatus, TaskContext, TaskDef};
use serde_json::Value;

use common::cli::{Node, node_builder};
use common::process::NodeProcess;

const NODE_URL_ENV: &str = "KAIROS_TEST_NODE_URL";

/// Attempts of `sleepy` that were stopped: (run id, attempt).
static STOPPED: Mutex<Vec<(i64, u32)>> = Mutex::new(Vec::new());

/// Waits until cancelled (then records it in `STOPPED`), or an hour.
fn sleepy(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        tokio::select! {
            _ = ctx.cancelled() => STOPPED.lock().unwrap().push((ctx.run_id(), ctx.attempt())),
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        Ok(None)
    })
}

/// Executions of `held` that were stopped: the `token` param of each.
static HELD_STOPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Like `sleepy`, but records its `token` param when stopped (run ids repeat across the
/// databases of concurrent tests; tokens do not).
fn held(ctx: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let token = params["token"].as_str().unwrap_or_default().to_string();
        tokio::select! {
            _ = ctx.cancelled() => {
                // Reported once stopped: by then another execution may own the attempt.
                ctx.info(format!("stopped {token}"));
                ctx.progress(99, "stopping");
                HELD_STOPPED.lock().unwrap().push(token);
            }
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
        Ok(None)
    })
}

/// Executions of `naps` started: the `token` param of each.
static NAPS_STARTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records its start, then sleeps 4 s, ignoring a shutdown's cancel.
fn naps(_: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        let token = params["token"].as_str().unwrap_or_default().to_string();
        NAPS_STARTED.lock().unwrap().push(token);
        tokio::time::sleep(Duration::from_secs(4)).await;
        Ok(None)
    })
}

/// Executions of `deaf` that were dropped: the `token` param of each.
static DEAF_DROPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Sleeps an hour, deaf to cancels; records its `token` param when it is dropped.
fn deaf(_: TaskContext, params: Value) -> BoxFuture<'static, TaskOutcome> {
    struct Dropped(String);
    impl Drop for Dropped {
        fn drop(&mut self) {
            DEAF_DROPPED
                .lock()
                .unwrap()
                .push(std::mem::take(&mut self.0));
        }
    }
    Box::pin(async move {
        let _dropped = Dropped(params["token"].as_str().unwrap_or_default().to_string());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(None)
    })
}

fn registry() -> Registry {
    let here = "tests/cluster_recovery.rs";
    Registry::from_tasks([
        TaskDef::new("naps", naps, here),
        TaskDef::new("deaf", deaf, here),
        TaskDef {
            max_retries: Some(1),
            ..TaskDef::new("sleepy", sleepy, here)
        },
        TaskDef::new("held", held, here),
    ])
    .unwrap()
}

/// Not a test of its own: the body of a node process (see the module docs).
#[test]
fn node_process() {
    let Ok(url) = std::env::var(NODE_URL_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let node = node_builder(&url, registry(), None).build().await.unwrap();
        node.run().await.unwrap();
    });
}

/// Enqueues a `sleepy` run once the node process has published its tasks, and waits
/// until that process runs it; returns the run id and the process's node id.
async fn running_on_the_process(url: &str) -> (Admin, i64, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (admin, id) = loop {
        if let Ok(admin) = Admin::connect(url).await
            && let Ok(e) = admin.enqueue(Enqueue::new("sleepy")).await
        {
            break (admin, e.id);
        }
        assert!(Instant::now() < deadline, "the node process never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let run = common::wait_status(&admin, id, RunStatus::Running).await;
    (admin, id, run.node_id.expect("a running run has an owner"))
}

/// Waits until run `id` runs on node `on` (a second attempt); returns how long it took.
async fn taken_back_by(admin: &Admin, id: i64, on: &str, since: Instant) -> Duration {
    loop {
        let run = admin.run(id).await.unwrap();
        if run.status == RunStatus::Running && run.node_id.as_deref() == Some(on) {
            assert_eq!(run.attempt, 2, "the lost attempt counts: {run:?}");
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(40),
            "run {id} was not taken back: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_run_is_taken_back_by_a_survivor_within_20_s() {
    for db in common::databases("killed_node_survivor").await {
        let mut process = NodeProcess::spawn("node_process", &[(NODE_URL_ENV, db.url.clone())]);
        let (admin, id, dead) = running_on_the_process(&db.url).await;
        let survivor = Node::start(&db.url, registry(), None).await;
        let mut events = survivor
            .handle
            .events_matching(kairos::events::EventFilter::all().run(id));
        process.kill();
        let killed = Instant::now();
        let took = taken_back_by(&admin, id, &survivor.id, killed).await;
        // Watchers hear that the run went back to the queue, then started again.
        let mut heard = Vec::new();
        while heard.len() < 2 {
            let e = tokio::time::timeout(Duration::from_secs(10), events.next())
                .await
                .expect("an event")
                .expect("the stream is open");
            heard.push((e.kind, e.data["recovered"].clone()));
        }
        assert_eq!(
            heard,
            [
                (
                    kairos::events::EventKind::RunQueued,
                    serde_json::json!(true)
                ),
                (
                    kairos::events::EventKind::RunStarted,
                    serde_json::Value::Null
                ),
            ],
            "{}",
            db.name
        );
        assert!(
            took <= Duration::from_secs(20),
            "{}: taken back after {took:?}",
            db.name
        );
        let run = admin.run(id).await.unwrap();
        assert!(
            run.history
                .iter()
                .any(|e| e.event == kairos::RunEventKind::Recovered),
            "{run:?}"
        );
        // `runs show` says which node the run was taken from.
        let shown = common::cli::cli(&db.url, &["runs", "show", &id.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            shown.contains(&format!("recovered (from node {dead})")),
            "{shown}"
        );
        // The survivor declared the killed node dead; `nodes list` says so.
        let nodes = admin.nodes().await.unwrap();
        let gone = nodes.iter().find(|n| n.id == dead).unwrap();
        assert_eq!(
            (gone.status.as_str(), gone.alive),
            ("dead", false),
            "{gone:?}"
        );
        let alive = nodes.iter().find(|n| n.id == survivor.id).unwrap();
        assert!(alive.alive, "{alive:?}");
        survivor.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_a_crash_takes_back_the_dead_node_s_run() {
    // One machine, one SQLite file: the node is restarted after the crash.
    let db = common::sqlite();
    let mut process = NodeProcess::spawn("node_process", &[(NODE_URL_ENV, db.url.clone())]);
    let (admin, id, _) = running_on_the_process(&db.url).await;
    process.kill();
    let killed = Instant::now();
    let restarted = Node::start(&db.url, registry(), None).await;
    let took = taken_back_by(&admin, id, &restarted.id, killed).await;
    assert!(took <= Duration::from_secs(20), "taken back after {took:?}");
    restarted.stop().await;
}

/// A node with a 3 s lease, renewed every 100 ms, that declares others dead after 1 s.
async fn quick_lease_node(url: &str) -> Node {
    Node::start_with(
        url,
        node_builder(url, registry(), None)
            .lease(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(100))
            .heartbeat_timeout(Duration::from_secs(1)),
    )
    .await
}

/// Pauses `node`, so that it claims nothing new, and takes its run `id` back as another
/// node's recovery would (after a network partition, say): the run is queued again and
/// no longer the node's, which it notices at its next renewal.
async fn take_back_from(node: &Node, url: &str, id: i64) {
    node.admin
        .set_nodes_paused(Some(&node.id), true)
        .await
        .unwrap();
    kairos::test_support::execute(
        url,
        &format!(
            "UPDATE kairos_runs SET status = 'queued', node_id = NULL, lease_until = NULL \
             WHERE id = {id}"
        ),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_a_run_s_lease_stops_that_attempt() {
    for db in common::databases("lost_lease_stops").await {
        let node = quick_lease_node(&db.url).await;
        let id = node.handle.enqueue(Enqueue::new("sleepy")).await.unwrap();
        common::wait_status(&node.admin, id, RunStatus::Running).await;
        take_back_from(&node, &db.url, id).await;
        // The node notices at its next renewal and stops its attempt.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !STOPPED.lock().unwrap().contains(&(id, 1)) {
            assert!(
                Instant::now() < deadline,
                "{}: attempt 1 still runs beside the queued run",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its outcome is not written over the run another node may own now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let run = node.admin.run(id).await.unwrap();
        assert_eq!((run.status, run.attempt), (RunStatus::Queued, 1), "{run:?}");
        node.stop().await;
    }
}

/// A run the node lost is another node's by now: its execution is dropped at once, even
/// one whose task ignores the cancel, rather than run on for the cancel grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_run_whose_task_ignores_the_cancel_is_dropped_at_once() {
    for db in common::databases("lost_run_dropped").await {
        let builder = node_builder(&db.url, registry(), None)
            .lease(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(100))
            .heartbeat_timeout(Duration::from_secs(1))
            .cancel_grace(Duration::from_secs(120));
        let node = Node::start_with(&db.url, builder).await;
        let token = uuid::Uuid::new_v4().to_string();
        let id = node
            .handle
            .enqueue(Enqueue::new("deaf").params(serde_json::json!({ "token": token })))
            .await
            .unwrap();
        common::wait_status(&node.admin, id, RunStatus::Running).await;
        take_back_from(&node, &db.url, id).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !DEAF_DROPPED.lock().unwrap().contains(&token) {
            assert!(
                Instant::now() < deadline,
                "{}: the lost execution runs on beside the queued run",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node.stop().await;
    }
}

/// A node shutting down goes on renewing the leases of the runs it lets finish in its
/// grace period: the other node must not take them back and run them a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_finishing_its_runs_at_shutdown_keeps_their_leases() {
    let db = common::sqlite();
    let url = db.url.as_str();
    let builder = || {
        node_builder(url, registry(), None)
            .lease(Duration::from_secs(3))
            .heartbeat_interval(Duration::from_millis(100))
            .heartbeat_timeout(Duration::from_secs(1))
            .shutdown_grace(Duration::from_secs(10))
    };
    let leaving = Node::start_with(url, builder()).await;
    let token = uuid::Uuid::new_v4().to_string();
    let id = leaving
        .handle
        .enqueue(Enqueue::new("naps").params(serde_json::json!({ "token": token })))
        .await
        .unwrap();
    common::wait_status(&leaving.admin, id, RunStatus::Running).await;
    let staying = Node::start_with(url, builder()).await;
    let admin = staying.admin.clone();
    // The run outlasts its 3 s lease by the time the leaving node has let it finish.
    leaving.stop().await;
    let run = admin.run(id).await.unwrap();
    assert_eq!(
        (run.status, run.attempt),
        (RunStatus::Succeeded, 1),
        "{run:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = NAPS_STARTED
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t == token)
        .count();
    assert_eq!(
        started, 1,
        "the run was started again beside its first execution"
    );
    staying.stop().await;
}

/// How many executions of `held` with this token were stopped.
fn held_stops(token: &str) -> usize {
    HELD_STOPPED
        .lock()
        .unwrap()
        .iter()
        .filter(|t| *t == token)
        .count()
}

/// Enqueues a `held` run on `node` with `token`, waits until it runs, then undoes its
/// claim in the database as a crashed PostgreSQL server would lose it (claims commit
/// without waiting for the disk): the run is as before the claim, queued with its
/// attempt uncounted, while attempt 1 still runs on the node. Returns the run's id.
async fn run_whose_claim_is_lost(node: &Node, url: &str, token: &str) -> i64 {
    let id = node
        .handle
        .enqueue(Enqueue::new("held").params(serde_json::json!({ "token": token })))
        .await
        .unwrap();
    common::wait_status(&node.admin, id, RunStatus::Running).await;
    kairos::test_support::execute(
        url,
        &format!(
            "UPDATE kairos_runs SET status = 'queued', attempt = 0, node_id = NULL, \
             started_at = NULL, lease_until = NULL WHERE id = {id}"
        ),
    )
    .await
    .unwrap();
    id
}

/// After the reporter's and the completer's next rounds, run `id` is still running on
/// `node` as attempt 1, under its new claim, with nothing the stopped execution
/// reported (progress, logs), and only that one execution of `token` was stopped.
async fn only_the_new_claim_counts(node: &Node, db: &str, id: i64, token: &str) {
    // Two of the reporter's rounds and the completer's, had they anything to write.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = node.admin.run(id).await.unwrap();
    assert_eq!(
        (run.status, run.attempt, run.node_id.as_deref()),
        (RunStatus::Running, 1, Some(node.id.as_str())),
        "{db}: {run:?}"
    );
    assert_eq!(
        held_stops(token),
        1,
        "{db}: only the first execution was stopped"
    );
    assert_eq!(run.progress, None, "{db}: {run:?}");
    let logs = node.admin.run_logs(id, 0, 100).await.unwrap();
    assert!(logs.is_empty(), "{db}: {logs:?}");
}

/// A claim the database lost (a crashed PostgreSQL server) and the node made again, as
/// the same attempt, while its first execution still ran: only the new execution
/// counts; the first one's outcome and reports are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_the_database_lost_and_the_node_made_again_keeps_only_the_new_execution() {
    for db in common::databases("claim_lost_and_made_again").await {
        let node = Node::start(&db.url, registry(), None).await;
        let token = format!("{}-{}", db.name, std::process::id());
        let stops = || held_stops(&token);
        // The node claims the run again, as attempt 1 again, before its next renewal
        // (every 2 s) notices anything.
        let id = run_whose_claim_is_lost(&node, &db.url, &token).await;
        // A run for later goes through the queue and wakes the node's claims.
        let other = node
            .handle
            .enqueue(Enqueue::new("held").delay(Duration::from_secs(3600)))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while stops() == 0 {
            assert!(
                Instant::now() < deadline,
                "{}: the first execution still runs beside the new claim",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first execution returned `Ok` once stopped: had its outcome been written,
        // it would have ended the new claim (same node, same attempt) as succeeded.
        // Nor does what it reported once stopped land on the new claim.
        only_the_new_claim_counts(&node, db.name, id, &token).await;
        for run in [id, other] {
            node.admin.cancel_run(run).await.unwrap();
        }
        node.stop().await;
    }
}

/// A claim the database lost, noticed by the node's renewal before it claims the run
/// again (its one worker busy with that very execution): the stopped execution's
/// outcome and reports are dropped, not written over the node's new claim of the same
/// attempt, which runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_renewal_found_lost_and_the_node_claimed_again_keeps_the_new_claim() {
    for db in common::databases("lost_then_claimed_again").await {
        let node = Node::start_with(
            &db.url,
            node_builder(&db.url, registry(), None)
                .max_workers(1)
                .heartbeat_interval(Duration::from_millis(100)),
        )
        .await;
        let token = format!("{}-{}-renewed", db.name, std::process::id());
        let stops = || held_stops(&token);
        // The node's one worker runs the first execution, so nothing claims the run
        // again until the renewal stops it; then the worker is free, and the node
        // claims the run at once, as attempt 1 again, while the stopped execution's
        // outcome (`Ok`) is on its way to be written.
        let id = run_whose_claim_is_lost(&node, &db.url, &token).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = node.admin.run(id).await.unwrap();
            if stops() > 0 && run.status == RunStatus::Running {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not stopped and claimed again: {run:?}, {} stops",
                db.name,
                stops()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        only_the_new_claim_counts(&node, db.name, id, &token).await;
        node.admin.cancel_run(id).await.unwrap();
        node.stop().await;
    }
}

/// A run the database shows as a live node's but that the node does not run (its
/// claim committed, but the answer was lost with the connection) is not kept alive by
/// that node's renewals: its lease runs out and it is taken back.
#[tokio::test]
async fn a_run_its_node_does_not_know_is_taken_back_although_the_node_lives() {
    for db in common::databases("orphan_taken_back").await {
        let node = quick_lease_node(&db.url).await;
        // Paused, the node claims nothing: the run is only ever "its" by the write below.
        node.admin
            .set_nodes_paused(Some(&node.id), true)
            .await
            .unwrap();
        let id = node.handle.enqueue(Enqueue::new("sleepy")).await.unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        kairos::test_support::execute(
            &db.url,
            &format!(
                "UPDATE kairos_runs SET status = 'running', node_id = '{}', attempt = 1, \
                 started_at = {now}, lease_until = {} WHERE id = {id}",
                node.id,
                now + 3_000
            ),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let run = node.admin.run(id).await.unwrap();
            if run.status == RunStatus::Queued {
                assert_eq!(run.attempt, 1, "{}: {run:?}", db.name);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the live node keeps renewing a run it does not run: {run:?}",
                db.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node.stop().await;
    }
}

/// Refused before the database is opened (no file is left behind), and in jobs.toml
/// with the place of the setting.
#[tokio::test]
async fn leases_and_heartbeats_that_cannot_work_are_refused_before_the_database_opens() {
    let db = common::sqlite();
    let file = db.dir().unwrap().join("kairos.db");
    let Err(err) = node_builder(&db.url, registry(), None)
        .lease(Duration::from_secs(2))
        .build()
        .await
    else {
        panic!("a 2s lease is refused");
    };
    assert!(err.to_string().contains("at least 3s"), "{err}");
    let Err(err) = node_builder(&db.url, registry(), None)
        .heartbeat_interval(Duration::from_secs(5))
        .heartbeat_timeout(Duration::from_secs(10))
        .build()
        .await
    else {
        panic!("a timeout of two heartbeats is refused");
    };
    assert!(err.to_string().contains("at least 15s"), "{err}");
    assert!(
        !file.exists(),
        "the database was created for a refused node"
    );
    // The same settings from jobs.toml, refused where they are written.
    for (toml, place, says) in [
        (
            "[scheduler]\nheartbeat_interval = \"1s\"\nheartbeat_timeout = \"2s\"\n",
            "jobs.toml:3:",
            "heartbeat_timeout = 2s with heartbeat_interval = 1s",
        ),
        (
            "[scheduler]\nlease = \"2999ms\"\n",
            "jobs.toml:2:",
            "lease = 2s999ms: a lease is renewed",
        ),
        (
            "[scheduler]\nheartbeat_interval = \"5ms\"\n",
            "jobs.toml:2:",
            "heartbeat_interval = 5ms: use at least 10ms",
        ),
    ] {
        let err = kairos::config::Config::parse(toml, "jobs.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(place) && err.contains(says),
            "{toml}: {err}"
        );
    }
    // A timeout the file sets against an interval only the builder sets.
    let toml = "[scheduler]\nheartbeat_timeout = \"5s\"\n";
    let Err(err) = node_builder(&db.url, registry(), Some(toml))
        .heartbeat_interval(Duration::from_secs(2))
        .build()
        .await
    else {
        panic!("a timeout of two heartbeats is refused");
    };
    assert!(err.to_string().contains("at least 6s"), "{err}");
    assert!(
        err.to_string().contains(
            "(the timeout is from jobs.toml's [scheduler], the interval set by the builder)"
        ),
        "{err}"
    );
    // An interval the file sets against the default timeout: the message says which
    // is which.
    let toml = "[scheduler]\nheartbeat_interval = \"30s\"\n";
    let Err(err) = node_builder(&db.url, registry(), Some(toml)).build().await else {
        panic!("a 30s interval with the 10s default timeout is refused");
    };
    assert!(
        err.to_string()
            .contains("(the timeout is the default, the interval from jobs.toml's [scheduler])"),
        "{err}"
    );
    let toml = "[scheduler]\nlease = \"10s\"\nheartbeat_interval = \"1s\"\n";
    let node = node_builder(&db.url, registry(), Some(toml))
        .build()
        .await
        .expect("a 10s lease renewed every second is fine");
    drop(node);
}
