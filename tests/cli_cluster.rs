//! Queues and nodes through the `kairos` binary, against a running node: `queues list`
//! (load and limits), `queues pause|resume NAME`, `nodes list`, and
//! `nodes pause|resume [ID|NAME]` (one node, or every node including later ones). Paused
//! means no new runs start; queued runs wait and run once resumed.

mod common;

use std::time::Duration;

use kairos::{Admin, Registry, RunStatus, TaskDef};

use common::cli::{Node, cli, enqueue, hello, node_builder};

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
    start_named(url, None).await
}

/// [`start_node`], named `name` by its operator when given.
async fn start_named(url: &str, name: Option<&str>) -> Node {
    let here = "tests/cli_cluster.rs";
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, here),
        TaskDef {
            queue: Some("mail"),
            ..TaskDef::new("send", hello, here)
        },
    ])
    .unwrap();
    let mut builder = node_builder(url, registry, Some(QUEUES));
    if let Some(name) = name {
        builder = builder.node_name(name);
    }
    let node = Node::start_with(url, builder).await;
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
        // `runs show` says it is held before giving times that hold only once released.
        let shown = cli(url, &["runs", "show", &held.to_string()])
            .await
            .ok()
            .stdout;
        assert!(
            shown.contains("estimate: 0 run(s) ahead; held: its queue `mail` is paused")
                && shown.contains("released now, it would start "),
            "{shown}"
        );

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
        // Unnamed by its operator, a node goes by its host and process.
        let host = me["hostname"].as_str().unwrap();
        assert_eq!(me["name"], format!("{host}:{}", std::process::id()));
        assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));

        let table = cli(&db.url, &["nodes", "list"]).await.ok().stdout;
        let row = table
            .lines()
            .find(|l| l.starts_with(&node.id))
            .unwrap_or_else(|| panic!("a row for {}: {table}", node.id));
        assert!(row.contains("running"), "{table}");
        assert!(row.contains("s ago)"), "the heartbeat's age: {table}");
        // Whether it is alive, in a column of its own: a running record may be silent.
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        let alive = header
            .iter()
            .position(|h| *h == "ALIVE")
            .expect("an ALIVE column");
        let cells: Vec<&str> = row.split_whitespace().collect();
        // LAST HEARTBEAT spans three words (time, age, "ago)"), so count from the end.
        assert_eq!(
            cells[cells.len() - (header.len() - alive)],
            "yes",
            "{table}"
        );

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

/// A node its operator named lists under that name and is paused and resumed by it;
/// a name two live nodes share picks neither and names their ids.
#[tokio::test]
async fn a_node_is_listed_paused_and_resumed_by_the_name_its_operator_gave() {
    for db in common::databases("a_node_paused_by_name").await {
        let url = db.url.as_str();
        let node = start_named(url, Some("mailer-1")).await;
        let nodes = cli(url, &["nodes", "list", "--json"]).await.ok().json();
        assert_eq!(nodes[0]["name"], "mailer-1", "{nodes}");
        assert_eq!(nodes[0]["id"], node.id.as_str(), "{nodes}");
        let table = cli(url, &["nodes", "list"]).await.ok().stdout;
        assert!(table.lines().next().unwrap().contains("NAME"), "{table}");
        let row = table.lines().find(|l| l.starts_with(&node.id)).unwrap();
        assert!(row.contains("mailer-1"), "{table}");

        let out = cli(url, &["nodes", "pause", "mailer-1"]).await.ok();
        assert_eq!(
            out.stdout.trim(),
            format!("paused node mailer-1 ({})", node.id)
        );
        let held = enqueue(url, &["hello"]).await;
        assert_stays_queued(&node.admin, held).await;
        cli(url, &["nodes", "resume", "mailer-1"]).await.ok();
        common::wait_status(&node.admin, held, RunStatus::Succeeded).await;
        // `runs show` names the node that ran it.
        let shown = cli(url, &["runs", "show", &held.to_string()])
            .await
            .ok()
            .stdout;
        let line = shown.lines().find(|l| l.starts_with("node")).unwrap();
        assert!(
            line.ends_with(&format!("{} (mailer-1)", node.id)),
            "{shown}"
        );

        // An earlier node of that name, stopped: the error offers only the live ones.
        let old = start_named(url, Some("mailer-1")).await;
        let old_id = old.id.clone();
        old.stop().await;
        let twin = start_named(url, Some("mailer-1")).await;
        let err = cli(url, &["nodes", "pause", "mailer-1"]).await.fails();
        assert!(
            err.contains("3 nodes are named `mailer-1` and 2 are alive"),
            "{err}"
        );
        assert!(err.contains(&node.id) && err.contains(&twin.id), "{err}");
        assert!(!err.contains(&old_id), "{err}");
        let listed = node.admin.nodes().await.unwrap();
        assert!(listed.iter().all(|n| !n.paused), "{listed:?}");
        // Once the twin stopped, the name means the live node again.
        twin.stop().await;
        let out = cli(url, &["nodes", "pause", "mailer-1", "--json"])
            .await
            .ok()
            .json();
        assert_eq!(out[0]["id"], node.id.as_str(), "{out}");
        assert_eq!(out[0]["paused"], true, "{out}");

        let err = cli(url, &["nodes", "pause", "mailer-2"]).await.fails();
        assert!(err.contains("did you mean `mailer-1`?"), "{err}");
        node.stop().await;
    }
}

/// An unknown node is answered with the names to give, each once and the live ones
/// first, rather than every name and id ever recorded; a near miss of a name or an id
/// is still suggested.
#[tokio::test]
async fn an_unknown_node_is_answered_with_each_known_name_once() {
    let db = common::sqlite();
    let url = db.url.as_str();
    let first = start_named(url, Some("worker-1")).await;
    start_named(url, Some("worker-2")).await.stop().await;
    start_named(url, Some("worker-3")).await.stop().await;
    let restarted = start_named(url, Some("worker-2")).await;

    let err = cli(url, &["nodes", "pause", "no-such-node"]).await.fails();
    assert_eq!(
        err.trim_end(),
        "error: no node `no-such-node`; live nodes: worker-2, worker-1; stopped or dead: \
         worker-3; `kairos nodes list` shows their ids"
    );
    let err = cli(url, &["nodes", "resume", "worker-9"]).await.fails();
    assert!(
        err.contains("did you mean `worker-1`? live nodes:"),
        "{err}"
    );
    let mut typo = restarted.id.clone();
    let last = if typo.ends_with('0') { "1" } else { "0" };
    typo.replace_range(typo.len() - 1.., last);
    let err = cli(url, &["nodes", "pause", &typo]).await.fails();
    assert!(
        err.contains(&format!("did you mean `{}`?", restarted.id)),
        "{err}"
    );
    restarted.stop().await;
    first.stop().await;
    let err = cli(url, &["nodes", "pause", "no-such-node"]).await.fails();
    assert!(
        err.contains("no node is live; stopped or dead: worker-2, worker-3, worker-1;"),
        "{err}"
    );
}

/// Pausing a stopped node succeeds but says, on stderr, that it has no effect (the
/// node never runs again) and how to hold nodes that start later; pausing one declared
/// dead says that it is (the pause holds should it come back); pausing a live node
/// says nothing more.
#[tokio::test]
async fn pausing_a_stopped_node_notes_that_it_has_no_effect() {
    for db in common::databases("pausing_a_stopped_node").await {
        let url = db.url.as_str();
        let stopped = start_named(url, Some("worker-3")).await;
        let stopped_id = stopped.id.clone();
        stopped.stop().await;
        let live = start_named(url, Some("worker-1")).await;

        let out = cli(url, &["nodes", "pause", "worker-3"]).await.ok();
        assert_eq!(
            out.stdout.trim(),
            format!("paused node worker-3 ({stopped_id})")
        );
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "note: node worker-3 ({stopped_id}) is stopped and never runs again (a node \
                 that starts again gets a new id), so this pause has no effect; `kairos \
                 nodes pause` with no name pauses every node, including those that start \
                 later"
            ),
            "{}",
            db.name
        );
        let out = cli(url, &["nodes", "pause", &stopped_id, "--json"])
            .await
            .ok();
        assert_eq!(out.json()[0]["status"], "stopped", "{out:#?}");
        assert!(out.stderr.starts_with("note: node "), "{out:#?}");

        let out = cli(url, &["nodes", "pause", "worker-1"]).await.ok();
        assert!(out.stderr.is_empty(), "{}: {out:#?}", db.name);
        // Declared dead a minute ago (recent enough that retention keeps it).
        let beat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            - 60_000;
        kairos::test_support::insert_node(url, "declared-dead", "dead", beat)
            .await
            .unwrap();
        let out = cli(url, &["nodes", "pause", "declared-dead"]).await.ok();
        assert_eq!(out.stdout.trim(), "paused node declared-dead", "{out:#?}");
        assert!(
            out.stderr
                .starts_with("note: node declared-dead is dead (silent past its heartbeat timeout); the pause holds should it come back"),
            "{}: {out:#?}",
            db.name
        );
        live.stop().await;
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
    // Both the output and the help say that every pause is lifted.
    let out = cli(&db.url, &["nodes", "resume"]).await.ok();
    assert_eq!(
        out.stdout.trim(),
        "resumed every node (1 known), including nodes paused one by one by id or name"
    );
    common::wait_status(&node.admin, held, RunStatus::Succeeded).await;
    let help = cli(&db.url, &["nodes", "resume", "--help"])
        .await
        .ok()
        .stdout;
    assert!(
        help.starts_with(
            "Start runs again on a node, or on every node (no id), which also lifts the \
             pauses of nodes paused one by one"
        ),
        "{help}"
    );
    let listed = cli(&db.url, &["nodes", "--help"]).await.ok().stdout;
    assert!(
        listed.contains("lifts the pauses of nodes paused one by one"),
        "{listed}"
    );
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

/// The builder's name wins over `[scheduler] node_name`; a name that cannot be shown
/// or typed is refused before the database is created.
#[tokio::test]
async fn a_node_name_from_the_builder_wins_and_a_bad_one_is_refused_before_the_database_opens() {
    let db = common::sqlite();
    let toml = "[scheduler]\nnode_name = \"from-toml\"\n";
    let registry = || Registry::from_tasks([TaskDef::new("hello", hello, "here")]).unwrap();
    let Err(err) = node_builder(&db.url, registry(), Some(toml))
        .node_name("two\nlines")
        .build()
        .await
    else {
        panic!("a name with a newline is refused");
    };
    assert!(
        err.to_string().contains("node_name(..)") && err.to_string().contains("control"),
        "{err}"
    );
    let file = db.dir().unwrap().join("kairos.db");
    assert!(
        !file.exists(),
        "the database was created for a refused node"
    );

    let from_toml = Node::start(&db.url, registry(), Some(toml)).await;
    let given = Node::start_with(
        &db.url,
        node_builder(&db.url, registry(), Some(toml)).node_name("from-code"),
    )
    .await;
    let names = |nodes: Vec<kairos::NodeInfo>, id: &str| {
        nodes.into_iter().find(|n| n.id == id).map(|n| n.name)
    };
    let admin = from_toml.admin.clone();
    common::wait_until("both nodes to register", || {
        let admin = admin.clone();
        async move { admin.nodes().await.unwrap().len() == 2 }
    })
    .await;
    let nodes = admin.nodes().await.unwrap();
    assert_eq!(
        names(nodes.clone(), &from_toml.id).as_deref(),
        Some("from-toml")
    );
    assert_eq!(names(nodes, &given.id).as_deref(), Some("from-code"));
    given.stop().await;
    from_toml.stop().await;
}
