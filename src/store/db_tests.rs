//! Store-level behaviour that the runtime relies on and that is hard to reach from the
//! outside: claim order, fencing, lease recovery and its attempt rule, cancellation
//! winning over a late completion, idempotency keys, tags and history. On SQLite always,
//! on PostgreSQL when `KAIROS_TEST_POSTGRES_URL` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::codec::ms;
use super::{ClaimLimits, Completion, NewRun, OpenMode, QueueLimit, Store};
use crate::model::{RunEventKind, RunOrigin, RunStatus};
use crate::test_support::{TestDb, databases};

pub(super) fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

pub(super) fn run(task: &str, priority: i32, max_retries: u32) -> NewRun {
    NewRun {
        task: task.into(),
        queue: "default".into(),
        job_id: None,
        origin: RunOrigin::Enqueue,
        params: json!({}),
        tags: BTreeMap::new(),
        run_at: t0(),
        scheduled_for: t0(),
        priority,
        max_retries,
        retry_delay: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        idempotency_key: None,
        expires_at: None,
        callback_url: None,
    }
}

pub(super) async fn open(db: &TestDb) -> Store {
    Store::open(&db.url, OpenMode::Create, Duration::from_secs(5))
        .await
        .unwrap()
}

pub(super) const LEASE: Duration = Duration::from_secs(30);

pub(super) async fn claim(
    store: &Store,
    node: &str,
    at: DateTime<Utc>,
    n: usize,
) -> Vec<(i64, u32)> {
    store
        .claim(node, at, &|| at, n, LEASE, &ClaimLimits::default())
        .await
        .unwrap()
        .runs
        .iter()
        .map(|c| (c.id, c.attempt))
        .collect()
}

pub(super) fn ids(v: &[(i64, bool)]) -> Vec<i64> {
    v.iter().map(|(id, _)| *id).collect()
}

#[tokio::test]
async fn claims_follow_priority_then_due_time_and_completions_are_fenced() {
    for db in databases("store_claim_order_and_fencing").await {
        let store = open(&db).await;
        let ids = ids(&store
            .enqueue(
                &[
                    run("a", 5, 0),
                    run("a", 1, 0),
                    run("a", 3, 0),
                    run("a", 1, 0),
                ],
                t0(),
            )
            .await
            .unwrap());
        let got: Vec<i64> = claim(&store, "n1", t0(), 3)
            .await
            .iter()
            .map(|c| c.0)
            .collect();
        assert_eq!(got, vec![ids[1], ids[3], ids[2]], "{}", db.name);
        let ok = |attempt| Completion::Succeeded {
            id: ids[1],
            attempt,
            result: None,
        };
        // The wrong attempt or the wrong node changes nothing.
        assert!(
            store
                .complete("n1", &[ok(7)], t0(), true)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .complete("n2", &[ok(1)], t0(), true)
                .await
                .unwrap()
                .is_empty()
        );
        store.complete("n1", &[ok(1)], t0(), true).await.unwrap();
        let r = store.run(ids[1]).await.unwrap().unwrap();
        assert_eq!(
            (r.status, r.attempt, r.finished_at),
            (RunStatus::Succeeded, 1, Some(t0()))
        );
    }
}

#[tokio::test]
async fn a_cancel_requested_before_the_completion_wins() {
    for db in databases("store_cancel_wins").await {
        let store = open(&db).await;
        let id = ids(&store.enqueue(&[run("a", 0, 3)], t0()).await.unwrap())[0];
        claim(&store, "n1", t0(), 1).await;
        assert_eq!(
            store.cancel_run(id, t0()).await.unwrap(),
            super::CancelOutcome::Requested
        );
        // The task returned Ok before the node saw the request: still cancelled.
        let done = store
            .complete(
                "n1",
                &[Completion::Succeeded {
                    id,
                    attempt: 1,
                    result: Some(json!(1)),
                }],
                t0(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(done.get(&id), Some(&RunStatus::Cancelled), "{}", db.name);
        let r = store.run(id).await.unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Cancelled);
        assert!(r.finished_at.is_some());
        // A retry decided by the node is not applied either.
        let id2 = ids(&store.enqueue(&[run("a", 0, 3)], t0()).await.unwrap())[0];
        claim(&store, "n1", t0(), 1).await;
        store.cancel_run(id2, t0()).await.unwrap();
        let retry = Completion::Retry {
            id: id2,
            attempt: 1,
            error: "boom".into(),
            run_at: t0(),
        };
        store.complete("n1", &[retry], t0(), true).await.unwrap();
        assert_eq!(
            store.run(id2).await.unwrap().unwrap().status,
            RunStatus::Cancelled
        );
    }
}

/// A released attempt goes back to the queue uncounted, and its history says why: at
/// shutdown, or because its node could not renew the lease.
#[tokio::test]
async fn a_release_is_uncounted_and_says_why() {
    for db in databases("store_release_says_why").await {
        let store = open(&db).await;
        let id = ids(&store.enqueue(&[run("a", 0, 3)], t0()).await.unwrap())[0];
        for (why, note) in [
            (super::Release::LeaseLost, "could not renew the lease"),
            (super::Release::Shutdown, "its node shut down"),
        ] {
            assert_eq!(claim(&store, "n1", t0(), 1).await, [(id, 1)], "{}", db.name);
            let release = Completion::Released {
                id,
                attempt: 1,
                why,
            };
            store.complete("n1", &[release], t0(), true).await.unwrap();
            let r = store.run(id).await.unwrap().unwrap();
            assert_eq!((r.status, r.attempt), (RunStatus::Queued, 0), "{}", db.name);
            let last = store.history(id).await.unwrap().pop().unwrap();
            assert_eq!(last.event, RunEventKind::Released, "{}", db.name);
            assert!(
                last.message.as_deref().is_some_and(|m| m.contains(note)),
                "{}: {last:?}",
                db.name
            );
        }
    }
}

/// A run whose cancellation its node never carried out (it died) ends cancelled when
/// its lease is taken back, and its history and error say it was cancelled.
#[tokio::test]
async fn a_run_being_cancelled_whose_node_died_ends_cancelled_and_says_so() {
    for db in databases("store_cancel_dead_node").await {
        let store = open(&db).await;
        let id = ids(&store.enqueue(&[run("a", 0, 3)], t0()).await.unwrap())[0];
        claim(&store, "dead", t0(), 1).await;
        assert!(matches!(
            store.cancel_run(id, t0()).await.unwrap(),
            super::CancelOutcome::Requested
        ));
        let later = t0() + chrono::Duration::seconds(31);
        store.recover_expired(later).await.unwrap();
        let r = store.run(id).await.unwrap().unwrap();
        assert_eq!(r.status, RunStatus::Cancelled, "{}", db.name);
        assert!(
            r.error.as_deref().unwrap().starts_with("cancelled:"),
            "{r:?}"
        );
        let events: Vec<_> = r.history.iter().map(|h| h.event).collect();
        assert!(events.contains(&RunEventKind::Cancelled), "{events:?}");
        assert!(!events.contains(&RunEventKind::Recovered), "{events:?}");
    }
}

#[tokio::test]
async fn expired_leases_requeue_runs_with_attempts_left_and_fail_the_others() {
    for db in databases("store_lease_recovery").await {
        let store = open(&db).await;
        // One run with retries left, one on its only attempt.
        let ids = ids(&store
            .enqueue(&[run("a", 0, 1), run("a", 1, 0), run("a", 2, 0)], t0())
            .await
            .unwrap());
        claim(&store, "dead", t0(), 2).await;
        let alive = claim(&store, "alive", t0(), 1).await;
        let later = t0() + chrono::Duration::seconds(31);
        assert_eq!(
            store
                .renew_leases("alive", &alive, later + chrono::Duration::seconds(30))
                .await
                .unwrap(),
            alive,
            "{}",
            db.name
        );
        // The dead node's runs are not its own: nothing renewed, nothing owned.
        assert!(
            store
                .renew_leases("alive", &[(ids[0], 1)], later)
                .await
                .unwrap()
                .is_empty()
        );
        let taken: Vec<(i64, RunStatus)> = store
            .recover_expired(later)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.id, t.status))
            .collect();
        assert_eq!(taken.len(), 2, "{}: {taken:?}", db.name);
        assert!(taken.contains(&(ids[0], RunStatus::Queued)), "{taken:?}");
        assert!(
            taken
                .iter()
                .any(|(id, s)| *id != ids[0] && *s == RunStatus::Failed),
            "{taken:?}"
        );
        let again = store.run(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (again.status, again.node_id.as_deref()),
            (RunStatus::Queued, None)
        );
        assert_eq!(again.history[0].event, RunEventKind::Recovered);
        let lost = store.run(ids[1]).await.unwrap().unwrap();
        assert_eq!(lost.status, RunStatus::Failed);
        assert_eq!(
            (lost.attempt, lost.max_attempts),
            (1, 1),
            "never attempt 2 of 1"
        );
        assert!(lost.error.unwrap().contains("final attempt"));
        assert_eq!(
            store.run(ids[2]).await.unwrap().unwrap().status,
            RunStatus::Running
        );
        // The stale worker cannot complete the run it lost; the next claim is attempt 2.
        let stale = Completion::Succeeded {
            id: ids[0],
            attempt: 1,
            result: None,
        };
        assert!(
            store
                .complete("dead", &[stale], later, true)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(claim(&store, "alive", later, 1).await, vec![(ids[0], 2)]);
        // Stats time the run that ended on its node, not the one failed when its
        // node's lease ran out: that is not how long the task takes.
        let done = Completion::Succeeded {
            id: ids[2],
            attempt: 1,
            result: None,
        };
        let at = later + chrono::Duration::seconds(1);
        store.complete("alive", &[done], at, true).await.unwrap();
        let scope = super::StatsScope {
            task: None,
            tags: Vec::new(),
        };
        let finished = store.finished_since(t0(), &scope, 10).await.unwrap();
        let timed: Vec<(RunStatus, Option<i64>)> =
            finished.iter().map(|f| (f.status, f.duration_ms)).collect();
        assert_eq!(
            timed,
            vec![
                (RunStatus::Succeeded, Some(32_000)),
                (RunStatus::Failed, None)
            ],
            "{}",
            db.name
        );
    }
}

#[tokio::test]
async fn idempotency_keys_name_one_unfinished_run() {
    for db in databases("store_idempotency").await {
        let store = open(&db).await;
        let keyed = |k: &str| NewRun {
            idempotency_key: Some(k.into()),
            ..run("a", 0, 0)
        };
        let first = store.enqueue(&[keyed("k")], t0()).await.unwrap();
        assert!(!first[0].1);
        // Again, and twice in one batch: the same run.
        let again = store
            .enqueue(&[keyed("k"), keyed("other"), keyed("k")], t0())
            .await
            .unwrap();
        assert_eq!(again[0], (first[0].0, true), "{}", db.name);
        assert_eq!(again[2], (first[0].0, true));
        assert!(!again[1].1);
        // Once finished, the key is free again.
        claim(&store, "n", t0(), 10).await;
        let done = Completion::Succeeded {
            id: first[0].0,
            attempt: 1,
            result: None,
        };
        store.complete("n", &[done], t0(), true).await.unwrap();
        let fresh = store.enqueue(&[keyed("k")], t0()).await.unwrap();
        assert_ne!(fresh[0].0, first[0].0);
        assert!(!fresh[0].1);
    }
}

#[tokio::test]
async fn queue_limits_hold_in_the_claim() {
    for db in databases("store_queue_limits").await {
        let store = open(&db).await;
        let in_queue = |q: &str, p: i32| NewRun {
            queue: q.into(),
            ..run("a", p, 0)
        };
        store
            .enqueue(
                &[
                    in_queue("one", 2),
                    in_queue("one", 1),
                    in_queue("free", 3),
                    in_queue("rate", 0),
                    in_queue("rate", 0),
                    in_queue("rate", 0),
                ],
                t0(),
            )
            .await
            .unwrap();
        let mut limits = ClaimLimits::default();
        limits.queues.insert(
            "one".into(),
            QueueLimit {
                concurrency: Some(1),
                rate: None,
            },
        );
        limits.queues.insert(
            "rate".into(),
            QueueLimit {
                concurrency: None,
                rate: Some((2, Duration::from_secs(60))),
            },
        );
        let c = store
            .claim("n", t0(), &t0, 10, LEASE, &limits)
            .await
            .unwrap();
        let queues: Vec<&str> = c.runs.iter().map(|r| r.queue.as_str()).collect();
        assert_eq!(queues, vec!["rate", "rate", "one", "free"], "{}", db.name);
        assert_eq!(c.runs[2].id, 2, "priority 1 of queue `one` first");
        // The rate limit's budget returns a minute after the first start.
        assert_eq!(c.retry_at, Some(t0() + chrono::Duration::seconds(60)));
        let later = t0() + chrono::Duration::seconds(59);
        let c = store
            .claim("n", later, &|| later, 10, LEASE, &limits)
            .await
            .unwrap();
        assert!(c.runs.is_empty(), "`one` is busy and `rate` out of budget");
        let later = t0() + chrono::Duration::seconds(61);
        let c = store
            .claim("n", later, &|| later, 10, LEASE, &limits)
            .await
            .unwrap();
        assert_eq!(c.runs.len(), 1);
        assert_eq!(c.runs[0].queue, "rate");
    }
}

/// A node stopped in the middle of a limited claim holds the limits lock until the
/// server ends its transaction: meanwhile the others still claim the runs no limit
/// applies to, and look again for the rest soon.
#[tokio::test]
async fn a_claim_does_not_wait_long_for_a_limits_lock_held_elsewhere() {
    for db in databases("store_limits_lock_held").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        let limited = NewRun {
            queue: "q".into(),
            ..run("a", 0, 0)
        };
        let ids = ids(&store
            .enqueue(&[limited, run("b", 0, 0)], t0())
            .await
            .unwrap());
        let mut limits = ClaimLimits::default();
        limits.queues.insert(
            "q".into(),
            QueueLimit {
                concurrency: Some(1),
                rate: None,
            },
        );
        // Another node's claim, stopped while it holds the lock.
        use sea_orm::TransactionTrait;
        let other = store.connection().begin().await.unwrap();
        store.lock(&other, super::Lock::Limits).await.unwrap();
        let c = tokio::time::timeout(
            Duration::from_secs(5),
            store.claim("n", t0(), &t0, 10, LEASE, &limits),
        )
        .await
        .expect("the claim does not wait for the lock")
        .unwrap();
        let got: Vec<i64> = c.runs.iter().map(|r| r.id).collect();
        assert_eq!(got, vec![ids[1]], "only the run no limit applies to");
        assert!(c.retry_at.is_some());
        other.rollback().await.unwrap();
        let c = store
            .claim("n", t0(), &t0, 10, LEASE, &limits)
            .await
            .unwrap();
        let got: Vec<i64> = c.runs.iter().map(|r| r.id).collect();
        assert_eq!(got, vec![ids[0]], "once the lock is free");
    }
}

/// Runs claimed ahead of their time count against the rate limit from when they start,
/// not from the claim: else the next window would open early by as much.
#[tokio::test]
async fn a_rate_limit_counts_runs_claimed_ahead_from_their_start() {
    for db in databases("store_rate_ahead").await {
        let store = open(&db).await;
        let at = |ms: i64| t0() + chrono::Duration::milliseconds(ms);
        let ahead = |due_ms: i64| NewRun {
            queue: "rate".into(),
            run_at: at(due_ms),
            scheduled_for: at(due_ms),
            ..run("a", 0, 0)
        };
        store
            .enqueue(
                &[ahead(200), ahead(200), ahead(10_200), ahead(10_200)],
                t0(),
            )
            .await
            .unwrap();
        let mut limits = ClaimLimits::default();
        limits.queues.insert(
            "rate".into(),
            QueueLimit {
                concurrency: None,
                rate: Some((2, Duration::from_secs(10))),
            },
        );
        // 200 ms ahead: the first two start at 0.2 s.
        let c = store
            .claim("n", at(200), &t0, 10, LEASE, &limits)
            .await
            .unwrap();
        let starts: Vec<_> = c.runs.iter().map(|r| r.started_at).collect();
        assert_eq!(starts, vec![at(200), at(200)], "{}", db.name);
        assert_eq!(c.retry_at, Some(at(10_200)), "{}", db.name);
        // At 10.0 s, claiming 200 ms ahead again: the window of the first two ends at
        // 10.2 s, so none fits before then.
        let c = store
            .claim("n", at(10_200), &|| at(10_000), 10, LEASE, &limits)
            .await
            .unwrap();
        assert!(c.runs.is_empty(), "{}: {:?}", db.name, c.runs);
        assert_eq!(c.retry_at, Some(at(10_200)), "{}", db.name);
        let c = store
            .claim("n", at(10_400), &|| at(10_200), 10, LEASE, &limits)
            .await
            .unwrap();
        assert_eq!(c.runs.len(), 2, "{}", db.name);
    }
}

#[tokio::test]
async fn retry_and_delete_keep_attempts_within_their_maximum() {
    for db in databases("store_retry_delete").await {
        let store = open(&db).await;
        let id = ids(&store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap())[0];
        assert_eq!(
            store.delete_run(12345).await.unwrap(),
            super::DeleteOutcome::NotFound
        );
        claim(&store, "n", t0(), 1).await;
        assert_eq!(
            store.delete_run(id).await.unwrap(),
            super::DeleteOutcome::Running
        );
        let fail = Completion::Finished {
            id,
            attempt: 1,
            status: RunStatus::Failed,
            error: "boom".into(),
            unstarted: false,
        };
        store.complete("n", &[fail], t0(), true).await.unwrap();
        assert!(matches!(
            store.retry_run(id, t0()).await.unwrap(),
            super::RetryOutcome::Queued(r) if r.status == RunStatus::Queued
        ));
        let r = store.run(id).await.unwrap().unwrap();
        assert_eq!(
            (r.status, r.attempt, r.max_attempts),
            (RunStatus::Queued, 1, 2),
            "{}",
            db.name
        );
        let events: Vec<RunEventKind> = r.history.iter().map(|h| h.event).collect();
        assert_eq!(
            events,
            vec![RunEventKind::Failed, RunEventKind::ManualRetry]
        );
        assert_eq!(r.history[0].message.as_deref(), Some("boom"));
        assert_eq!(claim(&store, "n", t0(), 1).await, vec![(id, 2)]);
        assert_eq!(
            store.retry_run(id, t0()).await.unwrap(),
            super::RetryOutcome::NotRetryable(RunStatus::Running)
        );
        let ok = Completion::Succeeded {
            id,
            attempt: 2,
            result: None,
        };
        store.complete("n", &[ok], t0(), true).await.unwrap();
        assert_eq!(
            store.delete_run(id).await.unwrap(),
            super::DeleteOutcome::Deleted(RunStatus::Succeeded)
        );
        assert!(store.run(id).await.unwrap().is_none());
        // It was the newest run: its id is not given again (webhook receivers and
        // slot records name runs by id).
        let next = ids(&store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap())[0];
        assert!(next > id, "{}: id {id} given again as {next}", db.name);
    }
}

/// After a burst, PostgreSQL's statistics may still say that no run is queued (they were
/// gathered when none was). The claim must follow the claim index in order all the
/// same: reading and sorting every queued run at each claim made draining 100,000 runs
/// five times slower. Completions likewise must look their runs up by id.
#[tokio::test]
async fn the_claim_follows_its_index_with_statistics_from_an_empty_queue() {
    use sea_orm::ConnectionTrait;
    for db in databases("claim_plan").await {
        let store = open(&db).await;
        let pg = store.is_pg();
        let finished: Vec<NewRun> = (0..500).map(|_| run("a", 0, 0)).collect();
        store.enqueue(&finished, t0()).await.unwrap();
        store
            .db
            .execute_unprepared("UPDATE kairos_runs SET status = 'succeeded'")
            .await
            .unwrap();
        store
            .db
            .execute_unprepared("ANALYZE kairos_runs")
            .await
            .unwrap();
        let burst: Vec<NewRun> = (0..5000).map(|i| run("a", i % 3, 0)).collect();
        store.enqueue(&burst, t0()).await.unwrap();
        let pick = super::claim::pick_sql(pg, "id", "");
        let plan = explain(
            &store,
            &pick,
            vec!["n".into(), ms(t0()).into(), 64i64.into()],
        )
        .await;
        assert!(plan.contains("kairos_runs_claim"), "{}: {plan}", db.name);
        assert!(
            !plan.contains("Sort") && !plan.contains("TEMP B-TREE"),
            "{}: the claim sorts: {plan}",
            db.name
        );
        // Half the burst is running on node `n` now, still under statistics that say
        // nothing runs: ending 1,000 of them must look the ids up by primary key, not
        // scan the node's running runs.
        let running = claim(&store, "n", t0(), 2500).await;
        let mut values: Vec<sea_orm::Value> = vec![ms(t0()).into(), "n".into(), 1i32.into()];
        values.extend(running.iter().take(1000).map(|(id, _)| (*id).into()));
        let end = super::complete::plain_success_sql(1000, false);
        let plan = explain(&store, &end, values).await;
        assert!(
            !plan.contains("kairos_runs_running"),
            "{}: the completion scans the running runs: {plan}",
            db.name
        );
    }
}

/// The plan of `sql` with `values`, one line per step.
async fn explain(store: &Store, sql: &str, values: Vec<sea_orm::Value>) -> String {
    use sea_orm::ConnectionTrait;
    let pg = store.is_pg();
    let explain = if pg { "EXPLAIN" } else { "EXPLAIN QUERY PLAN" };
    let rows = store
        .db
        .query_all_raw(store.stmt(&format!("{explain} {sql}"), values))
        .await
        .unwrap();
    let col = if pg { "QUERY PLAN" } else { "detail" };
    let lines: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", col).unwrap())
        .collect();
    lines.join("\n")
}

/// Results are stored exactly as the task's value serialises, in a batch on its own
/// (one statement) and beside other outcomes (a transaction), with and without the
/// statuses read back; a result for a run the node no longer owns is not written.
#[tokio::test]
async fn results_are_stored_as_serialised_in_every_kind_of_batch() {
    use sea_orm::ConnectionTrait;
    for db in databases("results_batch").await {
        let store = open(&db).await;
        let runs: Vec<NewRun> = (0..6).map(|_| run("a", 0, 3)).collect();
        let ids = ids(&store.enqueue(&runs, t0()).await.unwrap());
        assert_eq!(claim(&store, "n", t0(), 6).await.len(), 6);
        // Keys a JSONB value would reorder (it sorts by length), escapes, non-ASCII.
        let value = |i: i64| json!({ "long_key": i, "b": "say \"hi\"\n", "ü": [1, 2.5, null] });
        let ok = |i: usize| Completion::Succeeded {
            id: ids[i],
            attempt: 1,
            result: Some(value(ids[i])),
        };
        // Alone, statuses not wanted: one statement.
        store
            .complete("n", &[ok(0), ok(1)], t0(), false)
            .await
            .unwrap();
        // Alone, statuses wanted.
        let got = store.complete("n", &[ok(2)], t0(), true).await.unwrap();
        assert_eq!(got.get(&ids[2]), Some(&RunStatus::Succeeded), "{}", db.name);
        // Beside a failure and a plain success: one transaction.
        let failed = Completion::Finished {
            id: ids[4],
            attempt: 1,
            status: RunStatus::Failed,
            error: "boom".into(),
            unstarted: false,
        };
        let plain = Completion::Succeeded {
            id: ids[5],
            attempt: 1,
            result: None,
        };
        let got = store
            .complete("n", &[ok(3), failed, plain], t0(), true)
            .await
            .unwrap();
        assert_eq!(got.get(&ids[3]), Some(&RunStatus::Succeeded), "{}", db.name);
        // Another node's result for a run it does not own changes nothing.
        let stale = Completion::Succeeded {
            id: ids[0],
            attempt: 1,
            result: Some(json!("stale")),
        };
        assert!(
            store
                .complete("other", &[stale], t0(), true)
                .await
                .unwrap()
                .is_empty()
        );
        let rows = store
            .db
            .query_all_raw(store.stmt("SELECT id, status, result FROM kairos_runs ORDER BY id", []))
            .await
            .unwrap();
        let stored: Vec<(i64, String, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "id").unwrap(),
                    r.try_get("", "status").unwrap(),
                    r.try_get("", "result").unwrap(),
                )
            })
            .collect();
        for (i, (id, status, result)) in stored.iter().enumerate() {
            let (want_status, want_result) = match i {
                0..=3 => ("succeeded", Some(value(*id).to_string())),
                4 => ("failed", None),
                _ => ("succeeded", None),
            };
            assert_eq!(status, want_status, "{}: run {i}", db.name);
            assert_eq!(result, &want_result, "{}: run {i}", db.name);
        }
    }
}

#[tokio::test]
async fn a_claimed_run_says_whether_it_has_a_callback_on_every_claim_path() {
    for db in databases("claim_callback_flag").await {
        let store = open(&db).await;
        let hooked = || NewRun {
            callback_url: Some("http://127.0.0.1:9/hook".into()),
            ..run("a", 0, 0)
        };
        let queued = ids(&store
            .enqueue(&[hooked(), run("a", 1, 0), hooked(), run("a", 1, 0)], t0())
            .await
            .unwrap());
        let flags = |c: super::claim::Claim| -> Vec<(i64, bool)> {
            c.runs.iter().map(|r| (r.id, r.callback)).collect()
        };
        // The plain claim (one statement) and the limited one (counted in a
        // transaction) return the flag alike.
        let plain = store
            .claim("n", t0(), &t0, 2, LEASE, &ClaimLimits::default())
            .await
            .unwrap();
        assert_eq!(
            flags(plain),
            vec![(queued[0], true), (queued[2], true)],
            "{}",
            db.name
        );
        let mut limits = ClaimLimits::default();
        limits.max_instances.insert("a".into(), 10);
        let limited = store
            .claim("n", t0(), &t0, 2, LEASE, &limits)
            .await
            .unwrap();
        assert_eq!(
            flags(limited),
            vec![(queued[1], false), (queued[3], false)],
            "{}",
            db.name
        );
        // So does a run enqueued straight onto this node.
        for (new, expected) in [(hooked(), true), (run("a", 0, 0), false)] {
            let c = store
                .enqueue_claimed(&new, "n", t0(), LEASE)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(c.callback, expected, "{}", db.name);
        }
    }
}

/// A PostgreSQL setting as `conn`'s sessions have it.
async fn setting(conn: &sea_orm::DatabaseConnection, name: &str) -> String {
    use sea_orm::ConnectionTrait;
    conn.query_one_raw(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT current_setting($1) AS s",
        [name.into()],
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<String>("", "s")
    .unwrap()
}

#[tokio::test]
async fn claims_commit_without_waiting_for_the_log_flush_on_postgresql_only() {
    for db in databases("claims_commit_mode").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        let claims = store.claims_db();
        assert_eq!(setting(claims, "synchronous_commit").await, "off");
        // Everything else (enqueues, completions) stays durable at its commit.
        assert_eq!(setting(&store.db, "synchronous_commit").await, "on");
        // The claims' connections carry the main pool's name, so the node still
        // recognises its own notifications.
        assert_eq!(
            setting(claims, "application_name").await,
            setting(&store.db, "application_name").await
        );
    }
}

#[tokio::test]
async fn a_tool_sees_its_own_subscription_at_once_and_another_processs_when_it_reads() {
    for db in databases("a_tool_sees_its_own_subscription").await {
        let tool = open(&db).await;
        let since = || Utc::now() - crate::runtime::SUBSCRIBER_TTL;
        assert!(
            !tool.watched_lately(since()).await.unwrap(),
            "nobody watches yet"
        );
        // Its own subscription counts at once, although it read "nobody" just now.
        tool.subscriber_beat("own", Utc::now()).await.unwrap();
        assert!(tool.watched_lately(since()).await.unwrap());
        tool.subscriber_leave("own").await.unwrap();
        // Another process's: read from the database by a process that has not looked.
        let watcher = open(&db).await;
        watcher
            .subscriber_beat("elsewhere", Utc::now())
            .await
            .unwrap();
        assert!(open(&db).await.watched_lately(since()).await.unwrap());
        watcher.subscriber_leave("elsewhere").await.unwrap();
        assert!(!open(&db).await.watched_lately(since()).await.unwrap());
    }
}

#[tokio::test]
async fn ended_nodes_are_forgotten_after_the_kept_time_unless_a_run_is_still_theirs() {
    use sea_orm::ConnectionTrait;
    for db in databases("ended_nodes_forgotten").await {
        let store = open(&db).await;
        let now_ms = Utc::now().timestamp_millis();
        let day_ago = now_ms - 86_400_000;
        for (id, status, beat) in [
            ("stopped-long-ago", "stopped", day_ago),
            ("dead-long-ago", "dead", day_ago),
            ("stopped-lately", "stopped", now_ms - 60_000),
            ("dead-holding-a-run", "dead", day_ago),
            ("running-but-silent", "running", day_ago),
        ] {
            crate::test_support::insert_node(&db.url, id, status, beat)
                .await
                .unwrap();
        }
        let ids = store.enqueue(&[run("t", 0, 0)], t0()).await.unwrap();
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE kairos_runs SET status = 'running', attempt = 1, \
                 node_id = 'dead-holding-a-run' WHERE id = {}",
                ids[0].0
            ))
            .await
            .unwrap();
        let gone = store.forget_nodes(Duration::from_secs(3600)).await.unwrap();
        assert_eq!(gone, 2, "{}", db.name);
        let mut left: Vec<String> = store
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["dead-holding-a-run", "running-but-silent", "stopped-lately"],
            "{}: a silent running node is declared dead first; a run still recorded as a \
             node's keeps it",
            db.name
        );
        // One node by its id, with only its own runs counted.
        let one = store.node("dead-holding-a-run").await.unwrap().unwrap();
        assert_eq!((one.id.as_str(), one.running), ("dead-holding-a-run", 1));
        let other = store.node("stopped-lately").await.unwrap().unwrap();
        assert_eq!(other.running, 0, "{}", db.name);
        assert!(store.node("never-was").await.unwrap().is_none());
    }
}

/// A heartbeat is one statement that also says whether another node fell silent, a
/// lease ended or another process watches the event log, leaving the beating node out
/// of each.
#[tokio::test]
async fn a_heartbeat_reports_silent_nodes_ended_leases_and_watchers() {
    use sea_orm::ConnectionTrait;
    for db in databases("heartbeat_reports").await {
        let store = open(&db).await;
        let now = Utc::now();
        let look = super::BeatLook {
            dead_after: Duration::from_secs(10),
            leases_before: now,
            watchers_since: now - chrono::Duration::seconds(10),
        };
        let quiet_ms = now.timestamp_millis() - 60_000;
        crate::test_support::insert_node(&db.url, "me", "running", quiet_ms)
            .await
            .unwrap();
        // Silent for a minute itself, and watching itself: neither counts.
        store.subscriber_beat("me", now).await.unwrap();
        let flags = |b: &super::nodes::Beat| (b.alive, b.silent_nodes, b.ended_leases, b.watched);
        let beat = store.heartbeat("me", &look).await.unwrap();
        assert_eq!(flags(&beat), (true, false, false, false), "{}", db.name);
        assert!(beat.at_ms.is_some_and(|t| t >= quiet_ms + 60_000 - 5_000));

        crate::test_support::insert_node(&db.url, "other", "running", quiet_ms)
            .await
            .unwrap();
        store.subscriber_beat("a-watcher", now).await.unwrap();
        let ids = store.enqueue(&[run("t", 0, 0)], t0()).await.unwrap();
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE kairos_runs SET status = 'running', attempt = 1, node_id = 'other', \
                 lease_until = {} WHERE id = {}",
                now.timestamp_millis() - 1,
                ids[0].0
            ))
            .await
            .unwrap();
        let beat = store.heartbeat("me", &look).await.unwrap();
        assert_eq!(flags(&beat), (true, true, true, true), "{}", db.name);

        // Declared dead meanwhile: the beat says so and revives it; gone: no time.
        store
            .connection()
            .execute_unprepared("UPDATE kairos_nodes SET status = 'dead' WHERE id = 'me'")
            .await
            .unwrap();
        let beat = store.heartbeat("me", &look).await.unwrap();
        assert!(
            !beat.alive && beat.at_ms.is_some() && beat.silent_nodes,
            "{beat:?}"
        );
        let back = store.heartbeat("me", &look).await.unwrap();
        assert!(back.alive, "{}: running again after the beat", db.name);
        let none = store.heartbeat("nobody", &look).await.unwrap();
        assert_eq!(none, super::nodes::Beat::default(), "{}", db.name);
    }
}

/// Buffers what a test logs (see [`a_pooled_connection_the_server_dropped_is_replaced_quietly`]).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connections the server ended (a restart) are found dead when next used after a
/// second idle, dropped and replaced: the statement succeeds, and nothing is logged
/// above debug for each of them.
#[tokio::test]
async fn a_pooled_connection_the_server_dropped_is_replaced_quietly() {
    for db in databases("pooled_connection_dropped").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        store.db_time_ms().await.unwrap();
        db.end_sessions().await;
        tokio::time::sleep(super::connect::PING_IF_IDLE_FOR + Duration::from_millis(100)).await;
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        store.db_time_ms().await.expect("a new connection answers");
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(!log.contains("before_acquire"), "{log}");
    }
}

/// Connections the server ended moments ago (`pg_terminate_backend`, a failover): an
/// enqueue on one is tried once more on a checked connection, and reads after it do
/// not fail one by one on the other cut connections of the pool.
#[tokio::test]
async fn an_enqueue_on_a_connection_the_server_just_ended_goes_through() {
    for db in databases("enqueue_after_cut").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        // Several pooled connections, all in use moments ago.
        let reads: Vec<_> = (0..4).map(|_| store.db_time_ms()).collect();
        for r in futures::future::join_all(reads).await {
            r.unwrap();
        }
        db.end_sessions().await;
        let ids = store
            .enqueue(&[run("a", 0, 0)], t0())
            .await
            .unwrap_or_else(|e| panic!("the enqueue after the cut: {e:?}"));
        assert_eq!(ids.len(), 1);
        for _ in 0..4 {
            store
                .db_time_ms()
                .await
                .expect("a checked connection answers");
        }
        assert_eq!(
            store.run(ids[0].0).await.unwrap().unwrap().status,
            RunStatus::Queued
        );
    }
}

/// A silent node is judged by the heartbeat timeout it recorded: a peer with a shorter
/// one neither flags it as silent nor declares it dead before its own time is up.
#[tokio::test]
async fn a_silent_node_is_declared_dead_after_its_own_heartbeat_timeout() {
    use sea_orm::ConnectionTrait;
    for db in databases("dead_after_own_timeout").await {
        let store = open(&db).await;
        let now = Utc::now();
        let look = super::BeatLook {
            dead_after: Duration::from_secs(10),
            leases_before: now,
            watchers_since: now,
        };
        let now_ms = now.timestamp_millis();
        crate::test_support::insert_node(&db.url, "me", "running", now_ms)
            .await
            .unwrap();
        // Silent for 30 s, with a timeout of 60 s recorded.
        crate::test_support::insert_node(&db.url, "patient", "running", now_ms - 30_000)
            .await
            .unwrap();
        store
            .connection()
            .execute_unprepared(
                "UPDATE kairos_nodes SET heartbeat_timeout_ms = 60000, name = 'slow-beater' \
                 WHERE id = 'patient'",
            )
            .await
            .unwrap();
        let beat = store.heartbeat("me", &look).await.unwrap();
        assert!(!beat.silent_nodes, "{}: {beat:?}", db.name);
        let dead = store
            .declare_dead_nodes("me", look.dead_after)
            .await
            .unwrap();
        assert!(dead.is_empty(), "{}: {dead:?}", db.name);
        // Past its own timeout: declared dead, by id and name.
        store
            .connection()
            .execute_unprepared(&format!(
                "UPDATE kairos_nodes SET heartbeat_at = {} WHERE id = 'patient'",
                now_ms - 61_000
            ))
            .await
            .unwrap();
        assert!(store.heartbeat("me", &look).await.unwrap().silent_nodes);
        let dead = store
            .declare_dead_nodes("me", look.dead_after)
            .await
            .unwrap();
        assert_eq!(
            dead,
            [("patient".to_string(), "slow-beater".to_string())],
            "{}",
            db.name
        );
    }
}

/// An application's SQLite transaction is deferred: `enqueue_in` checks which database
/// it is on before inserting, and that check must not open a read snapshot, or the
/// insert fails ("database is locked") whenever another connection (a node's
/// heartbeat) wrote in between.
#[tokio::test]
async fn naming_the_database_takes_no_snapshot_in_a_deferred_sqlite_transaction() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    let db = crate::test_support::sqlite();
    let store = open(&db).await;
    let app = Database::connect(db.url.as_str()).await.unwrap();
    let txn = app.begin().await.unwrap();
    let theirs = store.database_of(&txn).await.unwrap();
    assert_eq!(theirs, store.own_database().await.unwrap());
    assert!(theirs.ends_with("kairos.db"), "{theirs}");
    // Another connection writes after the check and before the application's insert.
    store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap();
    store
        .enqueue_on(&txn, &[run("b", 0, 0)], t0())
        .await
        .unwrap_or_else(|e| panic!("the insert after another writer: {e:?}"));
    txn.commit().await.unwrap();
    let n = store
        .connection()
        .query_one_raw(store.stmt("SELECT COUNT(*) AS n FROM kairos_runs", []))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(n, 2);
}

/// Nodes sharing a database with different declarations replace each other's jobs at
/// each start; the node says so, naming what differed (its log warns from this).
#[tokio::test]
async fn a_declaration_that_differs_from_the_stored_one_is_reported_with_what_differs() {
    use crate::job::JobSpec;
    use crate::model::JobSource;
    use crate::schedule::Schedule;
    let db = crate::test_support::sqlite();
    let store = open(&db).await;
    let spec = |every: u64, priority: Option<i32>| JobSpec {
        source: JobSource::Config,
        priority,
        ..JobSpec::new(
            "digest",
            "mail",
            Schedule::Every(Duration::from_secs(every)),
        )
    };
    let first = store.sync_jobs(&[spec(20, None)], t0()).await.unwrap();
    assert!(first.changed.is_empty(), "{first:?}");
    let same = store.sync_jobs(&[spec(20, None)], t0()).await.unwrap();
    assert!(same.changed.is_empty(), "{same:?}");
    let other = store.sync_jobs(&[spec(3600, Some(5))], t0()).await.unwrap();
    assert_eq!(
        other.changed,
        vec![(
            "digest".to_string(),
            "schedule `every 20s` → `every 1h`, priority".to_string()
        )]
    );
    assert!(other.disabled.is_empty() && other.taken_over.is_empty());
}

/// SQLite's "database is locked" (another process holds the file's lock) is a database
/// out of reach for now, as a refused connection is: `database_unavailable`, which
/// HTTP answers with 503 and `Retry-After`, not a failed statement.
#[tokio::test]
async fn a_locked_sqlite_database_is_unavailable_not_broken() {
    use sea_orm::{ConnectionTrait, Database, TransactionTrait};
    let db = crate::test_support::sqlite();
    let store = open(&db).await;
    let app = Database::connect(db.url.as_str()).await.unwrap();
    // A deferred transaction that read, then another writer: SQLite refuses the
    // transaction's write at once with SQLITE_BUSY_SNAPSHOT, no busy wait.
    let txn = app.begin().await.unwrap();
    txn.execute_unprepared("SELECT COUNT(*) FROM kairos_runs")
        .await
        .unwrap();
    store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap();
    let err = super::StoreError::from(
        txn.execute_unprepared("DELETE FROM kairos_runs")
            .await
            .unwrap_err(),
    );
    assert!(err.is_connection(), "{err}");
    assert_eq!(crate::Error::Store(err).code(), "database_unavailable");
    txn.rollback().await.unwrap();
}

/// A node that registers while every node is being paused is paused too: its
/// registration waits for the pause to commit and sees it (PostgreSQL; SQLite runs one
/// writer at a time).
#[tokio::test]
async fn a_node_that_registers_while_every_node_is_paused_starts_paused() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    for db in databases("pause_while_registering").await {
        let store = open(&db).await;
        if !store.is_pg() {
            continue;
        }
        // The pause of every node, as `set_nodes_paused(None, true)` makes it, held
        // open while the node registers.
        let pause = store.db.begin().await.unwrap();
        for sql in [
            "UPDATE kairos_meta SET value = 1 WHERE key = 'nodes_paused'",
            "UPDATE kairos_nodes SET paused = true",
        ] {
            pause.execute_unprepared(sql).await.unwrap();
        }
        let node = super::NodeRow {
            id: "late".into(),
            name: "late".into(),
            hostname: "h".into(),
            pid: 1,
            max_workers: 1,
            heartbeat_timeout: Duration::from_secs(30),
        };
        let other = open(&db).await;
        let registering = tokio::spawn(async move { other.register_node(&node, false).await });
        // Until the registration waits on the flag's lock (or, were it not to wait,
        // for a bound: it then registers at once, and misses the pause).
        let waiting = "SELECT COUNT(*) AS n FROM pg_stat_activity \
                       WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let row = store
                .db
                .query_one_raw(store.stmt(waiting, []))
                .await
                .unwrap();
            if row.is_some_and(|r| r.try_get::<i64>("", "n").unwrap_or(0) > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pause.commit().await.unwrap();
        registering.await.unwrap().unwrap();
        let row = store
            .db
            .query_one_raw(store.stmt("SELECT paused FROM kairos_nodes WHERE id = 'late'", []))
            .await
            .unwrap()
            .expect("the node is registered");
        assert!(
            row.try_get::<bool>("", "paused").unwrap(),
            "the node missed the pause of every node"
        );
    }
}

/// A run released by a stopping node moves the change counter: only the other nodes
/// can run it now, and an update of its row alone would tell none of them.
#[tokio::test]
async fn a_release_moves_the_change_counter() {
    for db in databases("release_moves_counter").await {
        let store = open(&db).await;
        let ids = ids(&store.enqueue(&[run("a", 0, 0)], t0()).await.unwrap());
        assert_eq!(claim(&store, "n", t0(), 1).await.len(), 1);
        let before = store.change_marker().await.unwrap();
        let released = Completion::Released {
            id: ids[0],
            attempt: 1,
            why: super::Release::Shutdown,
        };
        store.complete("n", &[released], t0(), false).await.unwrap();
        let after = store.change_marker().await.unwrap();
        assert_eq!(after.0, before.0 + 1, "{}", db.name);
        let run = store.run(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (run.status, run.attempt),
            (RunStatus::Queued, 0),
            "{}",
            db.name
        );
    }
}
