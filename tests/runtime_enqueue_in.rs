//! Enqueueing in the application's own transaction (`enqueue_in`, `enqueue_many_in`):
//! the runs exist if and only if the business write beside them commits, on SQLite
//! and PostgreSQL, and a committed run is picked up by a running node.

mod common;

use kairos::sea_orm::{ConnectionTrait, Database, TransactionTrait};
use kairos::{Enqueue, Registry, RunFilter, RunStatus, TaskDef};
use serde_json::json;

use common::cli::{Node, hello};

fn registry() -> Registry {
    Registry::from_tasks([TaskDef::new(
        "ship_order",
        hello,
        "tests/runtime_enqueue_in.rs",
    )])
    .unwrap()
}

/// How many rows `sql` (`SELECT COUNT(*) AS n ...`) counts.
async fn count(url: &str, sql: &str) -> i64 {
    kairos::test_support::query_i64(url, sql).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_enqueued_in_the_application_s_transaction_exist_only_if_it_commits() {
    for db in common::databases("enqueue_in_txn").await {
        let node = Node::start(&db.url, registry(), None).await;
        let app = Database::connect(db.url.as_str()).await.unwrap();
        app.execute_unprepared("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
            .await
            .unwrap();

        // Rolled back: neither the order nor its run.
        let txn = app.begin().await.unwrap();
        txn.execute_unprepared("INSERT INTO orders (id) VALUES (1)")
            .await
            .unwrap();
        let lost = node
            .handle
            .enqueue_in(
                &txn,
                Enqueue::new("ship_order").params(json!({ "order": 1 })),
            )
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert!(
            node.admin.run(lost).await.is_err(),
            "{}: the run of a rolled-back transaction exists",
            db.name
        );

        // Committed: the order, and its runs (one keyed, one tagged), which run.
        let txn = app.begin().await.unwrap();
        txn.execute_unprepared("INSERT INTO orders (id) VALUES (2)")
            .await
            .unwrap();
        let ids = node
            .handle
            .enqueue_many_in(
                &txn,
                vec![
                    Enqueue::new("ship_order")
                        .params(json!({ "order": 2 }))
                        .idempotency_key("ship-2"),
                    Enqueue::new("ship_order")
                        .params(json!({ "order": 2, "copy": true }))
                        .tag("order", "2"),
                ],
            )
            .await
            .unwrap();
        // Bad params are refused before anything is written; the transaction goes on.
        let bad = node
            .admin
            .enqueue_in(&txn, Enqueue::new("ship_order").params(json!([1])))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), "invalid_params", "{bad}");
        txn.commit().await.unwrap();
        for id in &ids {
            let run = common::wait_status(&node.admin, *id, RunStatus::Succeeded).await;
            assert_eq!(run.result.as_ref().unwrap()["order"], 2, "{}", db.name);
        }
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM orders").await, 1);
        let page = node
            .admin
            .runs(&RunFilter::new().task("ship_order"))
            .await
            .unwrap();
        assert_eq!(page.total, 2, "{}: {:?}", db.name, page.runs);
        let tagged = node
            .admin
            .runs(&RunFilter::new().tag("order", "2"))
            .await
            .unwrap();
        assert_eq!(tagged.total, 1);
        app.close().await.unwrap();
        node.stop().await;
    }
}

#[tokio::test]
async fn a_transaction_on_another_engine_is_refused() {
    let db = common::sqlite();
    let node = Node::start(&db.url, registry(), None).await;
    let Ok(pg) = std::env::var("KAIROS_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED (postgres): a_transaction_on_another_engine_is_refused");
        node.stop().await;
        return;
    };
    let other = Database::connect(pg.as_str()).await.unwrap();
    let txn = other.begin().await.unwrap();
    let err = node
        .admin
        .enqueue_in(&txn, Enqueue::new("ship_order"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("kairos's database"), "{err}");
    txn.rollback().await.unwrap();
    node.stop().await;
}

/// A transaction on another database of the same engine (an application's own beside
/// kairos's, on one server) is refused before anything is written there.
#[tokio::test]
async fn a_transaction_on_another_database_of_the_same_engine_is_refused() {
    for db in common::databases("enqueue_in_other_db").await {
        let node = Node::start(&db.url, registry(), None).await;
        let other = if db.url.starts_with("postgres") {
            common::postgres("enqueue_in_other_db_app").await.unwrap()
        } else {
            common::sqlite()
        };
        // With kairos's tables there, the run would be written and never run.
        kairos::test_support::sync_jobs(&other.url, &[], chrono::Utc::now())
            .await
            .unwrap();
        let app = Database::connect(other.url.as_str()).await.unwrap();
        let txn = app.begin().await.unwrap();
        let err = node
            .handle
            .enqueue_in(&txn, Enqueue::new("ship_order"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input", "{}: {err}", db.name);
        assert!(
            err.to_string()
                .contains("open the transaction on kairos's database"),
            "{err}"
        );
        txn.commit().await.unwrap();
        assert_eq!(
            count(&other.url, "SELECT COUNT(*) AS n FROM kairos_runs").await,
            0,
            "{}",
            db.name
        );
        // On kairos's own database it goes through.
        let own = Database::connect(db.url.as_str()).await.unwrap();
        let txn = own.begin().await.unwrap();
        node.handle
            .enqueue_in(&txn, Enqueue::new("ship_order"))
            .await
            .unwrap();
        txn.commit().await.unwrap();
        app.close().await.unwrap();
        own.close().await.unwrap();
        node.stop().await;
    }
}

/// In sqlx transactions on `$pool` (lent through `SqlxTxn::$lend`): a run enqueued in
/// one that rolls back does not exist; the runs of one that commits are returned.
macro_rules! in_sqlx_transactions {
    ($node:expr, $pool:expr, $lend:ident) => {{
        let pool = $pool;
        sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id) VALUES (1)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let lost = $node
            .handle
            .enqueue_in(
                &SqlxTxn::$lend(&mut tx),
                Enqueue::new("ship_order").params(json!({ "order": 1 })),
            )
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        // Checked now: SQLite may give the id to the next run.
        assert!(
            $node.admin.run(lost).await.is_err(),
            "the run of a rolled-back transaction exists"
        );
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO orders (id) VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        let lent = SqlxTxn::$lend(&mut tx);
        let mut kept = vec![
            $node
                .admin
                .enqueue_in(
                    &lent,
                    Enqueue::new("ship_order")
                        .params(json!({ "order": 2 }))
                        .idempotency_key("ship-2"),
                )
                .await
                .unwrap()
                .id,
        ];
        kept.extend(
            $node
                .handle
                .enqueue_many_in(
                    &lent,
                    vec![
                        Enqueue::new("ship_order")
                            .params(json!({ "order": 2, "copy": true }))
                            .tag("order", "2"),
                    ],
                )
                .await
                .unwrap(),
        );
        tx.commit().await.unwrap();
        pool.close().await;
        kept
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_enqueued_in_a_sqlx_transaction_exist_only_if_it_commits() {
    use kairos::SqlxTxn;
    use kairos::sea_orm::sqlx;
    for db in common::databases("enqueue_in_sqlx").await {
        let node = Node::start(&db.url, registry(), None).await;
        let kept = if db.url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            in_sqlx_transactions!(node, pool, postgres)
        } else {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            in_sqlx_transactions!(node, pool, sqlite)
        };
        for id in &kept {
            let run = common::wait_status(&node.admin, *id, RunStatus::Succeeded).await;
            assert_eq!(run.result.as_ref().unwrap()["order"], 2, "{}", db.name);
        }
        assert_eq!(count(&db.url, "SELECT COUNT(*) AS n FROM orders").await, 1);
        let tagged = node
            .admin
            .runs(&RunFilter::new().tag("order", "2"))
            .await
            .unwrap();
        assert_eq!(tagged.total, 1, "{}: the tag went in with its run", db.name);
        node.stop().await;
    }
}

/// On SQLite, a run committed by a connection that syncs the write-ahead log at each
/// commit (SQLite's default `synchronous`, which an application's own connection keeps)
/// reaches an idle node through its watch of the log, not at its next poll: the log is
/// written, and the watch woken, before the commit is visible.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_syncs_the_log_reaches_an_idle_sqlite_node_before_its_poll() {
    use kairos::sea_orm::ConnectOptions;

    let db = common::sqlite();
    // A poll too slow to matter: only the watch can bring the runs in time.
    let node = Node::start_with(
        &db.url,
        common::cli::node_builder(&db.url, registry(), None)
            .poll_interval(std::time::Duration::from_secs(60)),
    )
    .await;
    // An admin tool, not the node's own admin, which would wake the node itself.
    let tool = kairos::Admin::connect(&db.url).await.unwrap();
    let mut options = ConnectOptions::new(db.url.clone());
    options.max_connections(1);
    let app = Database::connect(options).await.unwrap();
    for order in 0..5 {
        let txn = app.begin().await.unwrap();
        let id = tool
            .enqueue_in(
                &txn,
                Enqueue::new("ship_order").params(json!({ "order": order })),
            )
            .await
            .unwrap()
            .id;
        txn.commit().await.unwrap();
        let committed = std::time::Instant::now();
        common::wait_status(&node.admin, id, RunStatus::Succeeded).await;
        // The watch brings it within milliseconds; a missed wake-up waits for the
        // node's next look of another kind, a couple of seconds later.
        assert!(
            committed.elapsed() < std::time::Duration::from_secs(1),
            "run {id} started {:?} after its commit",
            committed.elapsed()
        );
        // Idle again before the next one.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    app.close().await.unwrap();
    node.stop().await;
}
