//! Queues and nodes through the `kairos` binary, against a running node: `queues list`
//! (load and limits), `queues pause|resume NAME`, `nodes list`, and
//! `nodes pause|resume [ID]` (one node, or every node including later ones). Paused
//! means no new runs start; queued runs wait and run once resumed.

mod common;

use std::time::Duration;

use kairos::{Admin, Registry, RunStatus, TaskDef};

use common::cli::{Node, cli, enqueue, hello};

/// Asserts that run `id` is still queued after the node had time to start it (its
/// watcher notices CLI changes within half a second).
async fn assert_stays_queued(admin: &Admin, id: i64) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = admin.run(id).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued, "{run:?}");
}

// ---------------------------------------------------------------------------------
// A node

/// Queue `mail` runs one at a time, at most 100 starts a minute.
const QUEUES: &str = r#"
[queues.mail]
concurrency = 1
rate_limit = "100/1m"
"#;

/// A node with `hello` (queue `default`) and `send` (queue `mail`), once registered.
async fn start_node(url: &str) -> Node {
    let here = "tests/cli_cluster.rs";
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef {
            queue: Some("mail"),
            ..TaskDef::new("send", hello, here)
        },
    ])
    .unwrap();
    let node = Node::start(url, registry, Some(QUEUES)).await;
    let (admin, id) = (node.admin.clone(), node.id.clone());
    common::wait_until("the node to register", move || {
        let (admin, id) = (admin.clone(), id.clone());
        async move { admin.nodes().await.unwrap().iter().any(|n| n.id == id) }
    })
    .await;
    node
}

// ---------------------------------------------------------------------------------
// queues

#[tokio::test]
async fn queues_list_shows_each_queue_with_its_limits_and_load() {
    for db in common::databases("queues_list_shows_each_queue").await {
        let node = start_node(&db.url).await;
        cli(&db.url, &["enqueue", "send", "--in", "1h"]).await.ok();
        let queues = cli(&db.url, &["queues", "list", "--json"])
            .await
            .ok()
            .json();
        let mail = queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "mail")
            .expect("queue mail")
            .clone();
        assert_eq!(mail["concurrency"], 1);
        assert_eq!(mail["rate_limit"], 100);
        assert_eq!(mail["rate_window_ms"], 60_000);
        assert_eq!(mail["queued"], 1);
        assert_eq!(mail["running"], 0);
        assert_eq!(mail["paused"], false);

        let table = cli(&db.url, &["queues", "list"]).await.ok().stdout;
        let header = table.lines().next().unwrap();
        assert!(header.starts_with("QUEUE"), "{table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("mail"))
            .expect("a mail row");
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["mail", "1", "0", "1", "100/1m", "no"], "{table}");
        assert!(table.lines().any(|l| l.starts_with("default")), "{table}");
        node.stop().await;
    }
}

#[tokio::test]
async fn a_paused_queue_starts_nothing_until_resumed() {
    for db in common::databases("a_paused_queue_starts_nothing").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let out = cli(url, &["queues", "pause", "mail"]).await.ok();
        assert!(out.stdout.contains("paused queue `mail`"), "{out:#?}");
        let table = cli(url, &["queues", "list"]).await.ok().stdout;
        let row = table.lines().find(|l| l.starts_with("mail")).unwrap();
        assert!(row.trim_end().ends_with("yes"), "{table}");

        let held = enqueue(url, &["send"]).await;
        let other = enqueue(url, &["hello"]).await;
        common::wait_status(&node.admin, other, RunStatus::Succeeded).await;
        assert_stays_queued(&node.admin, held).await;

        let out = cli(url, &["queues", "resume", "mail", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(out["paused"], false);
        common::wait_status(&node.admin, held, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

#[tokio::test]
async fn pausing_an_unknown_queue_suggests_a_known_one() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    let err = cli(&db.url, &["queues", "pause", "mial"]).await.fails();
    assert!(err.contains("no queue named `mial`"), "{err}");
    assert!(err.contains("did you mean `mail`"), "{err}");
    let err = cli(&db.url, &["queues", "resume", "nothing-like-it"])
        .await
        .fails();
    assert!(
        err.contains("default") && err.contains("mail"),
        "lists the queues: {err}"
    );
    node.stop().await;
}

// ---------------------------------------------------------------------------------
// nodes

#[tokio::test]
async fn nodes_list_shows_the_running_node() {
    for db in common::databases("nodes_list_shows_the_running_node").await {
        let node = start_node(&db.url).await;
        let nodes = cli(&db.url, &["nodes", "list", "--json"]).await.ok().json();
        let me = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == node.id.as_str())
            .expect("this node")
            .clone();
        assert_eq!(me["status"], "running");
        assert_eq!(me["paused"], false);
        assert_eq!(me["pid"], std::process::id());
        assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));

        let table = cli(&db.url, &["nodes", "list"]).await.ok().stdout;
        let row = table
            .lines()
            .find(|l| l.starts_with(&node.id))
            .unwrap_or_else(|| panic!("a row for {}: {table}", node.id));
        assert!(row.contains("running"), "{table}");
        assert!(row.contains("s ago)"), "the heartbeat's age: {table}");

        node.stop().await;
        let nodes = cli(&db.url, &["nodes", "list", "--json"]).await.ok().json();
        assert_eq!(nodes[0]["status"], "stopped", "{nodes}");
    }
}

#[tokio::test]
async fn a_node_paused_by_id_starts_nothing_until_resumed() {
    for db in common::databases("a_node_paused_by_id").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let out = cli(url, &["nodes", "pause", &node.id]).await.ok();
        assert_eq!(out.stdout.trim(), format!("paused node {}", node.id));
        let nodes = node.admin.nodes().await.unwrap();
        assert!(nodes.iter().find(|n| n.id == node.id).unwrap().paused);

        let held = enqueue(url, &["hello"]).await;
        assert_stays_queued(&node.admin, held).await;

        cli(url, &["nodes", "resume", &node.id]).await.ok();
        common::wait_status(&node.admin, held, RunStatus::Succeeded).await;

        let err = cli(url, &["nodes", "pause", "no-such-node"]).await.fails();
        assert!(err.contains("no node `no-such-node`"), "{err}");
        node.stop().await;
    }
}

#[tokio::test]
async fn pausing_every_node_holds_later_nodes_too() {
    for db in common::databases("pausing_every_node_holds_later_nodes").await {
        let node = start_node(&db.url).await;
        let url = db.url.as_str();
        let out = cli(url, &["nodes", "pause"]).await.ok();
        assert!(out.stdout.contains("paused every node"), "{out:#?}");
        let held = enqueue(url, &["hello"]).await;
        assert_stays_queued(&node.admin, held).await;

        // A node started while every node is paused is paused too.
        node.stop().await;
        let node = start_node(&db.url).await;
        assert_stays_queued(&node.admin, held).await;
        let listed = cli(url, &["nodes", "list", "--json"]).await.ok().json();
        let me = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == node.id.as_str())
            .expect("the new node")
            .clone();
        assert_eq!(me["paused"], true, "{listed:#}");

        let out = cli(url, &["nodes", "resume", "--json"]).await.ok().json();
        assert!(
            out.as_array().unwrap().iter().all(|n| n["paused"] == false),
            "{out:#}"
        );
        common::wait_status(&node.admin, held, RunStatus::Succeeded).await;
        node.stop().await;
    }
}

#[tokio::test]
async fn resuming_every_node_undoes_a_pause_by_id_too() {
    let db = common::sqlite();
    let node = start_node(&db.url).await;
    cli(&db.url, &["nodes", "pause", &node.id]).await.ok();
    let held = enqueue(&db.url, &["hello"]).await;
    assert_stays_queued(&node.admin, held).await;
    cli(&db.url, &["nodes", "resume"]).await.ok();
    common::wait_status(&node.admin, held, RunStatus::Succeeded).await;
    node.stop().await;
}

/// After `nodes pause` (every node), `nodes resume ID` starts runs on that node again.
#[tokio::test]
async fn resuming_one_node_after_pausing_every_node_starts_runs_on_it() {
    for db in common::databases("resuming_one_node_after_pausing_every_node").await {
        let node = start_node(&db.url).await;
        cli(&db.url, &["nodes", "pause"]).await.ok();
        let out = cli(&db.url, &["nodes", "resume", &node.id]).await.ok();
        assert_eq!(out.stdout.trim(), format!("resumed node {}", node.id));
        let listed = node.admin.nodes().await.unwrap();
        assert!(!listed.iter().find(|n| n.id == node.id).unwrap().paused);
        let id = enqueue(&db.url, &["hello"]).await;
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
        node.stop().await;
    }
}
