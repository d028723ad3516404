//! PostgreSQL's notifications of inserted runs, as the store sends and reads them: an
//! insert of kairos's announces the ids it added and the trigger stands down for it,
//! other inserts are announced by the trigger, runs inserted already claimed and
//! inserts that add none are not announced, and a claim among announced ids takes only
//! those; the listening connection claims as the claims pool does. Skipped (with a
//! note) without `KAIROS_TEST_POSTGRES_URL`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::sqlx::postgres::PgListener;

use super::db_tests::{LEASE, claim, ids, open, run, t0};
use super::{Announced, ClaimedRun, NewRun, Notice, Store};
use crate::model::RunStatus;
use crate::sqlx_txn::SqlxTxn;
use crate::test_support::{TestDb, databases};

/// The store and a listener on it, on PostgreSQL; `None` on SQLite.
async fn listening(db: &TestDb) -> Option<(Store, PgListener)> {
    let store = open(db).await;
    if !store.is_pg() {
        return None;
    }
    let listener = store.listen().await.unwrap().unwrap();
    Some((store, listener))
}

/// A claim of up to 5 runs due by `at` for node `n` on the listening connection,
/// among `among` when given.
async fn claim_on(
    store: &Store,
    listener: &mut PgListener,
    at: DateTime<Utc>,
    among: Option<Announced>,
) -> Vec<ClaimedRun> {
    store
        .claim_plain(&SqlxTxn::listener(listener), "n", at, at, 5, LEASE, among)
        .await
        .unwrap()
}

/// The next notification, read.
async fn next(listener: &mut PgListener) -> Notice {
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    Notice::read(n.payload())
}

/// A run inserted by plain SQL, as another program could.
const PLAIN_INSERT: &str = "INSERT INTO kairos_runs (task, queue, origin, params, priority, \
     run_at, scheduled_for, max_retries, retry_delay_ms, timeout_ms, created_at, status, \
     attempt, cancel_requested) VALUES ('a', 'default', 'enqueue', '{}', 0, 0, 0, 0, 0, \
     1000, 0, 'queued', 0, false)";

/// Runs with a time to live: the announcement says when the earliest one ends, so
/// that listening nodes expire it on time; the ids are read as before.
#[tokio::test]
async fn an_insert_of_runs_with_a_time_to_live_announces_the_earliest_end() {
    for db in databases("announced_expiry").await {
        let Some((store, mut listener)) = listening(&db).await else {
            continue;
        };
        let end = |s: i64| t0() + chrono::Duration::seconds(s);
        let mut later = run("a", 0, 0);
        later.expires_at = Some(end(90));
        let mut sooner = run("a", 0, 0);
        sooner.expires_at = Some(end(30));
        let ids = store
            .enqueue(&[later, run("a", 0, 0), sooner], t0())
            .await
            .unwrap();
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        assert_eq!(
            Notice::read(n.payload()),
            Notice::Runs(Some(Announced {
                first: ids[0].0,
                last: ids[2].0
            }))
        );
        assert_eq!(
            Notice::expiry(n.payload()),
            Some(end(30)),
            "{}",
            n.payload()
        );
        // Without one, nothing is said of it.
        store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap();
        let n = listener.recv().await.unwrap();
        assert_eq!(Notice::expiry(n.payload()), None, "{}", n.payload());
    }
}

#[tokio::test]
async fn inserts_announce_their_ids_and_a_claim_among_them_takes_only_those() {
    for db in databases("announced_runs").await {
        let Some((store, mut listener)) = listening(&db).await else {
            continue;
        };
        let early = store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap()[0].0;
        assert_eq!(
            next(&mut listener).await,
            Notice::Runs(Some(Announced {
                first: early,
                last: early
            }))
        );
        let batch: Vec<i64> = store
            .enqueue(&[run("a", 1, 0), run("a", 0, 0)], t0())
            .await
            .unwrap()
            .iter()
            .map(|r| r.0)
            .collect();
        let Notice::Runs(Some(among)) = next(&mut listener).await else {
            panic!("the batch announces its ids");
        };
        assert_eq!((among.first, among.last), (batch[0], batch[1]));

        // A batch too large to be worth naming is announced by the trigger.
        let big = vec![run("b", 0, 0); super::runs::ANNOUNCED_AT_MOST + 1];
        store.enqueue(&big, t0()).await.unwrap();
        assert_eq!(next(&mut listener).await, Notice::Runs(None));

        // Only the announced runs, in claim order, though older ones are due too.
        let claimed = claim_on(&store, &mut listener, t0(), Some(among)).await;
        let got: Vec<i64> = claimed.iter().map(|c| c.id).collect();
        assert_eq!(got, vec![batch[1], batch[0]]);
        assert_eq!(
            store.run(early).await.unwrap().unwrap().status,
            RunStatus::Queued
        );

        // A run inserted already claimed is announced to no one; a plain insert is
        // announced by the trigger, without ids. Notifications arrive in commit order,
        // so the next one is the plain insert's.
        store
            .enqueue_claimed(&run("a", 0, 0), "n", t0(), LEASE)
            .await
            .unwrap()
            .expect("nothing is paused");
        // An insert that adds no run (its idempotency key is taken) is announced to no
        // one either, where the trigger used to send every node a claim for nothing.
        let keyed = NewRun {
            idempotency_key: Some("once".into()),
            ..run("a", 0, 0)
        };
        let (holder, _) = store
            .enqueue(std::slice::from_ref(&keyed), t0())
            .await
            .unwrap()[0];
        assert_eq!(
            next(&mut listener).await,
            Notice::Runs(Some(Announced {
                first: holder,
                last: holder
            }))
        );
        assert_eq!(
            store.enqueue(&[keyed], t0()).await.unwrap(),
            vec![(holder, true)]
        );
        store.db.execute_unprepared(PLAIN_INSERT).await.unwrap();
        assert_eq!(next(&mut listener).await, Notice::Runs(None));

        // In one transaction, kairos's insert announces its ids and a plain insert
        // after it is still announced: the trigger stands down for one statement only.
        let txn = sea_orm::TransactionTrait::begin(&store.db).await.unwrap();
        let id = store
            .enqueue_on(&txn, &[run("a", 0, 0)], t0())
            .await
            .unwrap()[0]
            .0;
        txn.execute_unprepared(PLAIN_INSERT).await.unwrap();
        txn.commit().await.unwrap();
        assert_eq!(
            next(&mut listener).await,
            Notice::Runs(Some(Announced {
                first: id,
                last: id
            }))
        );
        assert_eq!(next(&mut listener).await, Notice::Runs(None));
        // ... and nothing more was sent: the next notification is this marker's.
        store
            .db
            .execute_unprepared("NOTIFY kairos, 'marker'")
            .await
            .unwrap();
        assert_eq!(next(&mut listener).await, Notice::Changed);
    }
}

#[tokio::test]
async fn the_listening_connection_claims_in_order_and_commits_as_the_claims_pool_does() {
    for db in databases("listener_claim").await {
        let Some((store, mut listener)) = listening(&db).await else {
            continue;
        };
        let (mode,): (String,) =
            sea_orm::sqlx::query_as("SELECT current_setting('synchronous_commit')")
                .fetch_one(&mut listener)
                .await
                .unwrap();
        assert_eq!(mode, "off");
        let later = t0() + chrono::Duration::seconds(60);
        let queued = ids(&store
            .enqueue(
                &[
                    run("a", 1, 0),
                    run("a", 0, 0),
                    NewRun {
                        run_at: later,
                        ..run("a", 0, 0)
                    },
                ],
                t0(),
            )
            .await
            .unwrap());
        // Due runs only, in claim order (priority first), marked as this node's.
        let claimed = claim_on(&store, &mut listener, t0(), None).await;
        let got: Vec<(i64, u32)> = claimed.iter().map(|c| (c.id, c.attempt)).collect();
        assert_eq!(got, vec![(queued[1], 1), (queued[0], 1)]);
        for id in &queued[..2] {
            let r = store.run(*id).await.unwrap().unwrap();
            assert_eq!(r.status, RunStatus::Running);
            assert_eq!(r.node_id.as_deref(), Some("n"));
        }
        // Nothing claimed twice: the dispatcher's claim finds only what was left.
        assert_eq!(claim(&store, "n", later, 5).await, vec![(queued[2], 1)]);
    }
}

/// The runs table's storage options, as `name=value`.
async fn runs_options(store: &Store) -> Vec<String> {
    let (options,): (Vec<String>,) = sea_orm::sqlx::query_as(
        "SELECT reloptions FROM pg_class WHERE oid = 'kairos_runs'::regclass",
    )
    .fetch_one(store.db.get_postgres_connection_pool())
    .await
    .unwrap();
    options
}

#[tokio::test]
async fn autovacuum_visits_the_runs_table_after_few_changes() {
    for db in databases("runs_autovacuum").await {
        let store: Store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        let options = runs_options(&store).await;
        for set in [
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_threshold=1000",
        ] {
            assert!(options.contains(&set.to_string()), "{options:?}");
        }
        // An operator's own value is kept when the migrations run again (as `kairos
        // migrate` runs them to repair a damaged schema); the other one is still set.
        store
            .db
            .execute_unprepared(
                "ALTER TABLE kairos_runs RESET (autovacuum_vacuum_threshold); \
                 ALTER TABLE kairos_runs SET (autovacuum_vacuum_scale_factor = 0.2); \
                 DROP INDEX kairos_runs_next_due",
            )
            .await
            .unwrap();
        let report = store.migrate().await.unwrap();
        assert_eq!(report.repaired, ["index kairos_runs_next_due"]);
        let mut options = runs_options(&store).await;
        options.sort();
        assert_eq!(
            options,
            [
                "autovacuum_vacuum_scale_factor=0.2",
                "autovacuum_vacuum_threshold=1000"
            ]
        );
    }
}

/// kairos's sessions on PostgreSQL have the server end a transaction left idle for
/// seconds (a frozen process's), so its row locks do not hold up other nodes' take-back.
#[tokio::test]
async fn a_transaction_left_idle_is_ended_by_the_server() {
    for db in databases("idle_in_transaction").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        let row = store
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT current_setting('idle_in_transaction_session_timeout') AS t",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<String>("", "t").unwrap(), "10s");
    }
}
